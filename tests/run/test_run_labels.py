"""A dose from a run that did not do what was asked says so in every output (the long-runs audit, 2026-12-05,
F6/F7/F9): an RT Dose of a run stopped by its time limit at a fraction of its primaries looked exactly like a
complete one; a target uncertainty that was never reached ended silently as "primaries"; one batch gave a NaN
uncertainty without a word."""
from __future__ import annotations

import json

import pydicom
from run_helpers import read_h5, write_cfg

from mcproton.cli import main


def _run(tmp_path, capsys, *sets, rtdose=True):
    cfg = write_cfg(tmp_path / "job.toml", 20_000)
    out = tmp_path / "o.h5"
    argv = ["run", str(cfg), "--out", str(out), "--quiet", "--set", "beam.total_protons=1e9"]
    if rtdose:
        argv += ["--rtdose", str(tmp_path / "rd.dcm")]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    cap = capsys.readouterr()
    return json.loads(cap.out), cap.err, out


def test_a_run_stopped_by_its_time_limit_is_labelled_in_every_output(tmp_path, capsys, monkeypatch,
                                                                      warnings_to_stderr):
    import mcproton.plots as plots

    titles = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda plt, fig, path, **kw: (titles.append(fig.axes[0].get_title()),
                                                                    save(plt, fig, path, **kw))[1])
    summary, err, out = _run(tmp_path, capsys, "run.time_limit_s=1e-9", "run.batch_size=1000", "output.plot=true")
    assert summary["stop_reason"] == "time_limit" and summary["primaries"] == 1000
    assert summary["incomplete"].startswith("stopped by the time limit: 1,000 of 20,000 primaries (5 %)")
    # one batch: no uncertainty, and said so
    assert "only one batch was completed (the time limit stopped it" in err
    assert any("only one batch" in w for w in summary["warnings"])
    ds = pydicom.dcmread(tmp_path / "rd.dcm", stop_before_pixels=True)
    assert str(ds.DoseComment).startswith("INCOMPLETE 5 %")
    assert "INCOMPLETE 5 %" in str(ds.SeriesDescription)
    assert "1,000 primaries of 20,000 requested; stop reason: time_limit" in str(ds.ImageComments)
    assert "STOPPED BY THE TIME LIMIT" in str(ds.ImageComments)
    prov = read_h5(out)["provenance"]
    assert int(prov["primaries_requested"]) == 20_000 and prov["stop_reason"] == "time_limit"
    assert "STOPPED BY THE TIME LIMIT" in titles[0]


def test_a_target_uncertainty_out_of_reach_is_warned_early_and_reported(tmp_path, capsys, warnings_to_stderr):
    summary, err, out = _run(tmp_path, capsys, "run.target_uncertainty=0.0001")
    assert "needs about" in err and "far above run.primaries 20,000" in err   # once the estimate is known
    assert err.count("needs about") == 1
    assert "target not reached (" in err and "> 0.01 %" in err
    assert summary["target_uncertainty"] == 1e-4 and summary["target_reached"] is False
    assert "target uncertainty 0.01 % not reached" in summary["incomplete"]
    prov = read_h5(out)["provenance"]
    assert float(prov["target_uncertainty"]) == 1e-4 and not bool(prov["target_reached"])
    ds = pydicom.dcmread(tmp_path / "rd.dcm", stop_before_pixels=True)
    assert str(ds.DoseComment).startswith("TARGET UNC NOT REACHED")


def test_a_complete_run_is_not_labelled(tmp_path, capsys, warnings_to_stderr):
    summary, err, _ = _run(tmp_path, capsys)
    assert "incomplete" not in summary and "target_reached" not in summary and "warning" not in err
    ds = pydicom.dcmread(tmp_path / "rd.dcm", stop_before_pixels=True)
    assert str(ds.SeriesDescription) == "mcproton dose" and str(ds.DoseComment).startswith("MC dose")
    assert "20,000 primaries of 20,000 requested; stop reason: primaries" in str(ds.ImageComments)

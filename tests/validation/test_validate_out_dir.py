"""`mcproton validate --out DIR`: a DIR that is a file, that lies in the package's own input folders (the cases'
reference data, validation/report_figures), or that holds files of something else is refused before any case runs;
a DIR that holds an earlier validation report gets the new one whole, without the earlier run's figures.

Before: a file as DIR ran every case and then failed with FileExistsError (the results lost); DIR inside
validation/ wrote report.html, summary.json and the PNGs among the package's files (validation/report_figures: over
the committed report's figures); an earlier run's PNG stayed beside the new report when its case now failed or was
not run (and validation/markdown.py, which globbed <case>*.png, put it into REPORT.md as if current); a foreign
summary.json or report.html in DIR was overwritten.
"""
from __future__ import annotations

import json
from pathlib import Path

import fake_engine as fe
import pytest

from mcproton.validation import runner

HERE = Path(runner.__file__).resolve().parent
CASE = "ranges_water"
PNG = "ranges_water_range_energy.png"


def _never(*a, **k):
    raise AssertionError("a case ran although the output folder was refused")


def _refused(out, capsys) -> str:
    assert runner.main(["--out", str(out), "--cases", CASE], simulate_fn=_never) == 2
    return capsys.readouterr().err


def test_out_that_is_a_file_is_refused_before_any_case(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    err = _refused(f, capsys)
    assert "is a file" in err and str(f) in err, err
    assert f.read_text() == "mine"
    err = _refused(f / "sub", capsys)    # a folder below a file cannot be made either
    assert "notes.txt" in err, err


@pytest.mark.parametrize("where", [".", "report_figures", "dcpt_plan02", "dcpt_plan02/new"])
def test_out_inside_the_package_input_folders_is_refused(where, capsys):
    out = (HERE / where).resolve()
    before = sorted(p.name for p in out.parent.iterdir())
    err = _refused(out, capsys)
    assert "input" in err and "outside" in err, err
    assert sorted(p.name for p in out.parent.iterdir()) == before
    assert not (HERE / "summary.json").exists() and not (HERE / "report.html").exists()


def test_out_holding_other_files_named_like_the_report_is_refused(tmp_path, capsys):
    (tmp_path / "summary.json").write_text('{"patients": 3}')
    err = _refused(tmp_path, capsys)
    assert "summary.json" in err and "not" in err, err
    assert (tmp_path / "summary.json").read_text() == '{"patients": 3}'
    (tmp_path / "summary.json").unlink()
    (tmp_path / "report.html").write_text("<html>my report</html>")
    err = _refused(tmp_path, capsys)
    assert "report.html" in err, err
    assert (tmp_path / "report.html").read_text() == "<html>my report</html>"


def test_earlier_report_replaced_whole_no_stale_figure(tmp_path, monkeypatch):
    fe.install_fake_modules(monkeypatch)
    out = tmp_path / "v"
    runner.main(["--out", str(out), "--cases", CASE], simulate_fn=fe.fake_simulate)
    first = json.loads((out / "summary.json").read_text())
    assert first["cases"][0]["figures"] == [PNG] and (out / PNG).exists()
    (out / "my_notes.txt").write_text("kept")

    def broken(*a, **k):
        raise RuntimeError("engine exploded")

    assert runner.main(["--out", str(out), "--cases", CASE], simulate_fn=broken) == 4   # a crash (audit F5)
    s = json.loads((out / "summary.json").read_text())
    assert s["cases"][0]["status"] == "error" and s["cases"][0]["figures"] == []
    assert not (out / PNG).exists(), "the earlier run's figure stayed beside a report in which its case failed"
    assert (out / "my_notes.txt").read_text() == "kept"   # not the earlier report's: left alone


def test_markdown_takes_the_figures_the_summary_lists(tmp_path):
    from mcproton.validation.markdown import write_markdown

    run = tmp_path / "run"
    run.mkdir()
    summary = {"cases": [{"name": CASE, "title": "t", "status": "error", "metrics": [], "figures": []}]}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / PNG).write_bytes(b"\x89PNG stale")   # left by an earlier run
    md = write_markdown(run, tmp_path / "REPORT.md", tmp_path / "figs").read_text()
    assert PNG not in md


@pytest.mark.parametrize("cases", ["", ",", " , "])
def test_cases_naming_no_case_is_a_usage_error(cases, tmp_path, capsys):
    """--cases "" (an empty shell variable) or "," ran the whole suite, CPU-hours with --full (audit 26 exitcodes,
    F10): now refused, exit status 2, before anything is written."""
    assert runner.main(["--out", str(tmp_path / "v"), "--cases", cases], simulate_fn=_never) == 2
    err = capsys.readouterr().err
    assert "names no case" in err and "--list" in err, err
    assert not (tmp_path / "v").exists()

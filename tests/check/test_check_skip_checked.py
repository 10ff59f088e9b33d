"""``mcproton check --batch --skip-checked`` (automation audit 2026-12-06, F6b): a patient whose earlier check.json
records the same files, version, beam model, calibration, levels and options is not checked again (its verdict is
reused and marked so); a changed file, another option, a missing or refused record: checked again.  Real checks of a
small synthetic head (CPU, 3,000 primaries, one beam: seconds each); the second night's checks are counted."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_head import write_case  # noqa: E402

import mcproton._check.api as api

KW = dict(beam_model="dcpt_v5", primaries=3000, target_uncertainty=None, backend="cpu", threads=1, gamma_points=200,
          report=False, progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_case(root / "a", shape_zyx=(24, 64, 64), pixel_mm=2.0, slice_mm=2.5)
    shutil.copytree(root / "a", root / "b")
    return root


def test_a_second_night_reuses_the_unchanged_patients_and_checks_the_changed_ones(export, tmp_path, monkeypatch):
    pytest.importorskip("pymedphys")
    out = tmp_path / "checks"
    first = api.check_batch(export, out, skip_checked=True, **KW)   # nothing earlier: both checked
    assert {k: type(v).__name__ for k, v in first.items()} == {"a": "CheckResult", "b": "CheckResult"}
    rec = json.loads((out / "a" / "check.json").read_text(encoding="utf-8"))
    key = rec["provenance"]["batch_reuse_key"]
    assert key["mcproton_version"] and key["beam_model"]["sha256"] and "RP.dcm" in key["input_files_sha256"]

    real, calls = api.check, []

    def counted(**kw):
        calls.append(Path(kw["folder"]).name)
        return real(**kw)

    monkeypatch.setattr(api, "check", counted)
    second = api.check_batch(export, out, skip_checked=True, **KW)
    assert calls == [], "unchanged: nothing checked again"
    assert all(isinstance(r, api.ReusedCheck) for r in second.values())
    assert [second[k].passed for k in "ab"] == [first[k].passed for k in "ab"]
    rows = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert rows["a"]["reused"] is True and rows["a"]["status"] == ("pass" if first["a"].passed else "fail")

    # b's plan file changed (a re-export): b checked again, a reused; another option: both checked again
    work = tmp_path / "export2"
    shutil.copytree(export, work)
    shutil.copytree(out, tmp_path / "checks2")
    (work / "b" / "RP.dcm").write_bytes((work / "b" / "RP.dcm").read_bytes() + b"\0\0")
    third = api.check_batch(work, tmp_path / "checks2", skip_checked=True, **KW)
    assert calls == ["b"] and isinstance(third["a"], api.ReusedCheck)
    calls.clear()
    api.check_batch(work, tmp_path / "checks2", skip_checked=True, **{**KW, "seed": 7})
    assert calls == ["a", "b"]
    # without --skip-checked: every patient checked, as before
    calls.clear()
    api.check_batch(export, out, **KW)
    assert calls == ["a", "b"]


def test_a_refused_or_stopped_record_is_not_reused(tmp_path):
    key = {"k": 1}
    p = tmp_path / "check.json"
    for record in ({"status": "refused", "passed": False, "provenance": {"batch_reuse_key": key}},
                   {"status": "pass", "passed": True, "settings": {"mc_stopped_by_time_limit": [1]},
                    "provenance": {"batch_reuse_key": key}},
                   {"status": "pass", "passed": True, "provenance": {}}):
        p.write_text(json.dumps(record))
        assert api._reusable(p, key) is None
    p.write_text(json.dumps({"status": "pass", "passed": True, "provenance": {"batch_reuse_key": key}}))
    assert api._reusable(p, key) is not None
    assert api._reusable(tmp_path / "missing.json", key) is None


def test_skip_checked_without_batch_is_refused(tmp_path, capsys):
    from mcproton.cli import main

    assert main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), "--quiet",
                 "--skip-checked"]) == 2
    assert "--skip-checked" in capsys.readouterr().err

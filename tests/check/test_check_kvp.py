"""``mcproton check`` of a CT whose tube voltage is not the one its HU calibration states
(mcproton/_io/calibration_kvp.py).

Before (kvp audit, 2026-12-08) the check recorded the CT's KVP and compared it with nothing: an 80 kVp (paediatric)
scan checked with a 120 kVp curve PASSed with no word of it.  Now the check warns, its verdict line says it beside
PASS or FAIL (as a check without structures does), check.json's ``kvp_mismatch`` and its CT input's
``calibration_kvp`` record it, the report's files table shows both voltages; a CT below 100 kVp read with a curve that
states none is noted.

Each check runs a short transport (2 x 1500 primaries, seconds: test_check_record.py's ``fresh``); its verdict is not
what is tested.
"""
from __future__ import annotations

import html
import json
import shutil
import sys
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import FAST, _levels, _tps, base  # noqa: E402,F401  (base: test_check's module fixture, re-used here)


def _ct_at(base, folder: Path, kvp: str) -> Path:  # noqa: F811
    """A copy of the fixture's CT whose slices say KVP ``kvp``."""
    shutil.copytree(base["dir"] / "ct", folder)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.KVP = kvp
        ds.save_as(f)
    return folder


def _clinic_curve(folder: Path, kvp_line: str) -> Path:
    """MCsquare's default scanner as a clinic's folder, its density table stating ``kvp_line``."""
    from mcproton._io.hu_calibration import DATA_DIR

    folder.mkdir(parents=True)
    dens = (DATA_DIR / "mcsquare_scanner_default_hu_density.csv").read_text(encoding="utf-8")
    (folder / "HU_Density_Conversion.txt").write_text(f"{kvp_line}\n{dens}", encoding="utf-8")
    shutil.copy(DATA_DIR / "mcsquare_scanner_default_hu_material.csv", folder / "HU_Material_Conversion.txt")
    return folder


def _check(base, tmp: Path, ct: Path, calibration):  # noqa: F811
    from mcproton._check.api import check

    d = base["dir"]
    res = check(plan=d / "RP.dcm", dose=_tps(base, f"rd_{tmp.name}", base["blob"]), ct=ct, struct=d / "RS.dcm",
                beam_model="dcpt_v2", calibration=None if calibration is None else str(calibration),
                primaries=1500, target_uncertainty=None, out=tmp / "out", report=False, levels=_levels(),
                log=lambda m: None, **FAST)
    return res, json.loads(Path(res.report_json).read_text())


@pytest.fixture(scope="module")
def mismatch(base, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("kvp80")
    with pytest.warns(UserWarning):
        return _check(base, tmp, _ct_at(base, tmp / "ct80", "80"), _clinic_curve(tmp / "clinic_120", "# kVp: 120"))


def test_an_80_kvp_ct_checked_with_a_120_kvp_curve_says_so_beside_the_verdict(mismatch):
    from mcproton._check.batch_log import verdict_word

    res, js = mismatch
    said = "CT at 80 kVp, HU calibration stated for 120 kVp"
    assert res.kvp_mismatch == said
    assert res.summary().splitlines()[0].endswith(f"({said})"), res.summary().splitlines()[0]
    assert f"({said})" in verdict_word(res)
    warned = [w for w in res.warnings if w.startswith(said + ": ")]
    assert len(warned) == 1, res.warnings
    assert "give the clinic's curve for this scanner at 80 kVp as --calibration" in warned[0]
    # check.json: beside the verdict, and with the CT input where its acquisition is shown
    assert js["kvp_mismatch"] == said
    ct = next(f for f in js["provenance"]["inputs"] if f.get("slices"))
    assert ct["acquisition"]["KVP"] == 80.0
    assert ct["calibration_kvp"]["ct_kvp"] == 80.0 and ct["calibration_kvp"]["calibration_kvp"] == [120.0]
    assert ct["calibration_kvp"]["match"] is False
    assert ct["calibration_kvp"]["calibration_kvp_stated_in"].endswith("HU_Density_Conversion.txt line 1")


def test_the_reports_files_table_and_verdict_carry_the_mismatch(mismatch, report_figures_blank, tmp_path):
    from mcproton._check.report import _files_table, write_report

    res, js = mismatch
    table = html.unescape(_files_table(js["provenance"]["inputs"]))
    assert "(14 slices; 80 kVp, mcproton, kernel not given; HU calibration stated for 120 kVp: DIFFERS from the CT's)" \
        in table, table
    # under the verdict of the report, as a check without structures is
    page = html.unescape(write_report(res, tmp_path, {}).read_text(encoding="utf-8"))
    assert "<b>CT at 80 kVp, HU calibration stated for 120 kVp.</b>" in page


def test_a_matching_kvp_says_nothing_and_a_low_kvp_ct_with_a_curve_stating_none_is_noted(base, tmp_path):  # noqa: F811
    from mcproton._check.report import _files_table

    res, js = _check(base, tmp_path / "a", _ct_at(base, tmp_path / "ct80", "80"),
                     _clinic_curve(tmp_path / "clinic_80", "# kVp: 80"))
    assert res.kvp_mismatch == "" and js["kvp_mismatch"] == ""
    assert not [w for w in res.warnings if "kVp" in w], res.warnings
    table = html.unescape(_files_table(js["provenance"]["inputs"]))
    assert "stated for 80 kVp: the CT's kVp (no more is compared)" in table, table
    # the default calibration (schneider2000) states no kVp: an 80 kVp CT is noted, not warned of, and not a verdict
    res, js = _check(base, tmp_path / "b", tmp_path / "ct80", None)
    assert res.kvp_mismatch == "" and not [w for w in res.warnings if "kVp" in w], res.warnings
    notes = [n for n in js["provenance"].get("geometry_notes") or res.mc.provenance["geometry_notes"] if "kVp" in n]
    assert len(notes) == 1 and notes[0].startswith("the CT was acquired at 80 kVp (a low tube voltage"), notes
    assert "schneider2000 states no tube voltage" in notes[0]
    assert "HU calibration's kVp not stated" in html.unescape(_files_table(js["provenance"]["inputs"]))


def _batch_of_one(base, tmp_path: Path, dose_name: str) -> tuple[Path, Path]:  # noqa: F811
    """patients/p1 (the plan, the structure set, a TPS dose, an 80 kVp CT) and a clinic curve stating 120 kVp:
    (the curve's folder, the batch's --out)."""
    p1 = tmp_path / "patients" / "p1"
    p1.mkdir(parents=True)
    for f in ("RP.dcm", "RS.dcm"):
        shutil.copy2(base["dir"] / f, p1 / f)
    shutil.move(_tps(base, dose_name, base["blob"]), p1 / "RD.dcm")
    _ct_at(base, p1 / "ct", "80")
    return _clinic_curve(tmp_path / "clinic_120", "# kVp: 120"), tmp_path / "out"


def test_a_batch_row_and_index_carry_the_mismatch(base, tmp_path, capsys, report_figures_blank):  # noqa: F811
    """``mcproton check --batch`` of a patient whose 80 kVp CT is read with a 120 kVp curve: batch.json's row
    (``kvp_mismatch``), the console line and the index row say it beside PASS or FAIL, as check.json does."""
    from mcproton.cli import main

    cal, out = _batch_of_one(base, tmp_path, "rd_batch")
    main(["check", str(tmp_path / "patients"), "--batch", "--beam-model", "dcpt_v2", "--calibration", str(cal),
          "--out", str(out), "--primaries", "1500", "--target-uncertainty", "0", "--gamma-points", "200", "--quiet"])
    shown = capsys.readouterr()
    said = "CT at 80 kVp, HU calibration stated for 120 kVp"
    row = json.loads((out / "batch.json").read_text(encoding="utf-8"))["p1"]
    assert row["error"] is None and row["kvp_mismatch"] == said, row
    assert f"({said})" in shown.out + shown.err, shown
    assert f"({said})" in html.unescape((out / "index.html").read_text(encoding="utf-8"))


def test_a_reused_check_keeps_the_mismatch_beside_its_verdict(mismatch):
    """``check --batch --skip-checked`` reuses an earlier check.json (api.ReusedCheck): its verdict word says the
    mismatch from that record's CT input, as the fresh check's did."""
    from mcproton._check.api import ReusedCheck
    from mcproton._check.batch_log import verdict_word

    res, js = mismatch
    reused = ReusedCheck(passed=res.passed, failed=res.failed, record=js, report_json=str(res.report_json))
    assert reused.kvp_mismatch == "CT at 80 kVp, HU calibration stated for 120 kVp"
    assert "(CT at 80 kVp, HU calibration stated for 120 kVp)" in verdict_word(reused)
    # a record of before the comparison (no calibration_kvp in its CT input) says nothing
    old = json.loads(json.dumps(js))
    for f in old["provenance"]["inputs"]:
        f.pop("calibration_kvp", None)
    assert ReusedCheck(passed=res.passed, failed=res.failed, record=old, report_json="").kvp_mismatch == ""


def test_a_reused_mc_dose_is_compared_with_the_calibration_given_now(base, tmp_path):  # noqa: F811
    """Review a of audit 33, R2: ``check(mc=...)`` kept the reused MC dose's old kVp comparison.  A clinic folder
    without a kVp line, then given ``# kVp: 120`` (the same data SHA-256, so the reuse is accepted): a fresh check of
    an 80 kVp CT said "CT at 80 kVp, HU calibration stated for 120 kVp", the check reusing the first one's MC dose
    said nothing and warned of nothing.  Now the calibration given is compared (metadata: the dose is the same)."""
    import warnings

    from mcproton._check.api import check

    d = base["dir"]
    ct = _ct_at(base, tmp_path / "ct80", "80")
    cal = _clinic_curve(tmp_path / "clinic", "# a clinic curve")
    kw = dict(plan=d / "RP.dcm", ct=ct, struct=d / "RS.dcm", beam_model="dcpt_v2", primaries=1500,
              target_uncertainty=None, report=False, levels=_levels(), log=lambda m: None, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = check(dose=_tps(base, "rd_r2a", base["blob"]), calibration=str(cal), out=tmp_path / "o1", **kw)
    assert first.kvp_mismatch == ""
    table = cal / "HU_Density_Conversion.txt"
    table.write_text("# kVp: 120\n" + table.read_text(encoding="utf-8"), encoding="utf-8")
    said = "CT at 80 kVp, HU calibration stated for 120 kVp"
    with pytest.warns(UserWarning, match=said):
        reused = check(dose=_tps(base, "rd_r2b", base["blob"]), calibration=str(cal), mc=first.mc,
                       out=tmp_path / "o2", **kw)
    assert reused.kvp_mismatch == said
    assert len([w for w in reused.warnings if w.startswith(said + ": ")]) == 1, reused.warnings
    ct_in = next(f for f in json.loads(Path(reused.report_json).read_text())["provenance"]["inputs"]
                 if f.get("slices"))
    assert ct_in["calibration_kvp"]["calibration_kvp"] == [120.0] and ct_in["calibration_kvp"]["match"] is False
    # and the converse: the clinic validated its curve at 80 kVp too; the reuse no longer says it differs
    table.write_text(table.read_text(encoding="utf-8").replace("# kVp: 120", "# kVp: 80, 120"), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = check(dose=_tps(base, "rd_r2c", base["blob"]), calibration=str(cal), mc=reused.mc,
                      out=tmp_path / "o3", **kw)
    assert again.kvp_mismatch == "" and not [w for w in again.warnings if "kVp" in w], again.warnings
    # calibration left out: the reused MC dose's own comparison, as recorded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = check(dose=_tps(base, "rd_r2d", base["blob"]), mc=first.mc, out=tmp_path / "o4", **kw)
    assert own.kvp_mismatch == ""


def test_a_batch_reused_by_skip_checked_keeps_the_mismatch_in_its_row_and_index(base, tmp_path, capsys,  # noqa: F811
                                                                                report_figures_blank):
    """Review a of audit 33, R6: the test above builds a ReusedCheck by hand and so never runs api._reused_row; with
    its ``kvp_mismatch`` blanked every kVp test passed, yet a reused batch row and the index lost the qualifier.
    ``--batch --skip-checked`` run twice: the second run's row is reused and still says it."""
    from mcproton.cli import main

    cal, out = _batch_of_one(base, tmp_path, "rd_reused")
    said = "CT at 80 kVp, HU calibration stated for 120 kVp"
    for reused in (False, True):
        main(["check", str(tmp_path / "patients"), "--batch", "--skip-checked", "--beam-model", "dcpt_v2",
              "--calibration", str(cal), "--out", str(out), "--primaries", "1500", "--target-uncertainty", "0",
              "--gamma-points", "200", "--quiet"])
        shown = capsys.readouterr()
        row = json.loads((out / "batch.json").read_text(encoding="utf-8"))["p1"]
        assert bool(row.get("reused")) is reused, row
        assert row["kvp_mismatch"] == said, row
        assert [ln for ln in (shown.out + shown.err).splitlines() if ln.startswith("p1") and f"({said})" in ln], shown
        assert f"({said})" in html.unescape((out / "index.html").read_text(encoding="utf-8"))

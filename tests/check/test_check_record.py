"""The record of ``mcproton check`` (check.json's provenance and settings, the report's identification, settings
and provenance tables) identifies exactly what was checked and how (the report audit of 2026-12-05, F1-F5, F12):
each input file by its resolved path, UIDs, creation date and SHA-256 (the CT series by one hash over its slices),
the calibration folder's files, the physics, the patient and plan, every option as resolved, the working
directory and the command line or the Python call.

Fast: the TPS-dose tests reuse an analytic MC dose (``check(mc=...)``, no transport: test_report.py's); one check
runs a short transport (2 x 1500 primaries, seconds) for what only a fresh MC records (the CT read, the calibration
loaded, the physics used).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import _levels, _tps, base  # noqa: E402,F401  (base: test_check's module fixture, re-used here)
from test_report import FAST, _fake_mc  # noqa: E402


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_of(base, folder: Path, scale: float, **kw):  # noqa: F811
    """The check of a TPS plan dose RD.dcm in ``folder`` (the analytic dose x ``scale``) against the MC 5 % above
    the analytic dose; check.json only."""
    from mcproton._check.api import check

    folder.mkdir(parents=True, exist_ok=True)
    rd = _tps(base, f"rd_{folder.name}", base["blob"] * scale)
    shutil.move(rd, folder / "RD.dcm")
    d = base["dir"]
    return check(plan=d / "RP.dcm", dose=folder / "RD.dcm", ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                 mc=_fake_mc(base, 1.05), out=folder / "out", report=False, **{**FAST, **kw})


def test_two_tps_doses_differing_in_content_only_are_told_apart_by_the_record(base, tmp_path):  # noqa: F811
    """Before, a passing and a failing check of two RT Doses both named RD.dcm recorded the same identification
    (the file name): now each TPS dose's resolved path, SOPInstanceUID, creation date and SHA-256 are in check.json,
    with the plan and structure set's, and the working directory."""
    a = _check_of(base, tmp_path / "a", 1.0)
    b = _check_of(base, tmp_path / "b", 1.05)
    rec = {}
    for name, res in (("a", a), ("b", b)):
        js = json.loads(Path(res.report_json).read_text())
        inputs = {f["role"]: f for f in js["provenance"]["inputs"]}
        assert set(inputs) == {"RT Ion Plan", "TPS RT Dose (plan)", "RT Struct"}
        dose = inputs["TPS RT Dose (plan)"]
        rd = tmp_path / name / "RD.dcm"
        assert dose["path"] == str(rd.resolve()) and dose["sha256"] == _sha(rd)
        assert dose["sop_instance_uid"] == str(pydicom.dcmread(rd, stop_before_pixels=True).SOPInstanceUID)
        assert dose["created"] and dose["series_instance_uid"]
        assert inputs["RT Ion Plan"]["path"] == str((base["dir"] / "RP.dcm").resolve())
        assert inputs["RT Ion Plan"]["sha256"] == _sha(base["dir"] / "RP.dcm")
        assert inputs["RT Struct"]["sop_instance_uid"]
        assert js["provenance"]["working_directory"] == str(Path.cwd())
        rec[name] = dose
    assert rec["a"]["sha256"] != rec["b"]["sha256"] and rec["a"]["sop_instance_uid"] != rec["b"]["sop_instance_uid"]


def test_the_json_identifies_the_patient_and_the_plan(base, tmp_path):  # noqa: F811
    """check.json had no patient name or ID, no plan label, name, date or approval (only the HTML, read from the
    plan at report time): provenance.identification holds them."""
    res = _check_of(base, tmp_path / "a", 1.0)
    ident = json.loads(Path(res.report_json).read_text())["provenance"]["identification"]
    plan = pydicom.dcmread(base["dir"] / "RP.dcm", stop_before_pixels=True)
    assert ident["PatientID"] == str(plan.PatientID) and ident["PatientName"] == str(plan.PatientName)
    assert ident["RTPlanLabel"] == str(plan.RTPlanLabel) and ident["SOPInstanceUID"] == str(plan.SOPInstanceUID)
    assert ident["plan_file"] == str((base["dir"] / "RP.dcm").resolve())
    for key in ("RTPlanName", "RTPlanDate", "ApprovalStatus", "Manufacturer"):
        assert key in ident


def test_the_python_call_and_every_option_are_recorded(base, tmp_path):  # noqa: F811
    """The settings that decide the verdict were partly in the JSON only and partly nowhere: the Python call (the
    arguments that differ from the defaults), the target uncertainty, the dose type and position with their
    sources, the overrides, the levels' source are in ``settings`` and the report's Settings table."""
    from mcproton._check.report import _settings_table

    res = _check_of(base, tmp_path / "a", 1.0, target_uncertainty=0.015, dose_type="physical",
                    outside_external="ct", levels=_levels())
    st = json.loads(Path(res.report_json).read_text())["settings"]
    assert st["invoked_from"] == "Python" and st["invocation"].startswith("mcproton.check(")
    assert "target_uncertainty=0.015" in st["invocation"] and "dose_type='physical'" in st["invocation"]
    assert "outside_external" not in st["invocation"]   # the default: not repeated
    assert "progress" not in st["invocation"] and "ActionLevels(" in st["invocation"]
    assert st["target_uncertainty"] == 0.015 and st["dose_type"] == "PHYSICAL"
    assert st["dose_type_source"].startswith("given") and st["patient_position"] == ["HFS"]
    assert st["struct_overrides"] == "apply" and st["outside_external"] == "ct"
    assert st["levels_config"]["source"].startswith("given as ActionLevels(")
    table = _settings_table(res)
    assert "<td>target statistical uncertainty</td><td>1.5 %</td>" in table
    assert "<td>Python call</td>" in table and "target_uncertainty=0.015" in table
    assert "dose type</td><td>PHYSICAL</td><td>given (--dose-type)" in table


def test_a_plan_without_a_label_is_named_by_its_name(base, tmp_path):  # noqa: F811
    """An empty RTPlanLabel read ``label , name mcp_opentps``: it reads "label none" now, and the plan's one-word
    name (batch.json, the index) falls back to its RTPlanName, then its UID."""
    from mcproton._check.api import check
    from mcproton._check.record import plan_label
    from mcproton._check.report import _identification

    ds = pydicom.dcmread(base["dir"] / "RP.dcm")
    ds.RTPlanLabel, ds.RTPlanName = "", "mcp_opentps"
    d = tmp_path / "nolabel"
    d.mkdir()
    ds.save_as(d / "RP.dcm")
    rd = _tps(base, "rd_nolabel", base["blob"])
    res = check(plan=d / "RP.dcm", dose=rd, ct=base["dir"] / "ct", struct=base["dir"] / "RS.dcm",
                beam_model="dcpt_v2", mc=_fake_mc(base, 1.0), **FAST)
    head = _identification(res)
    assert "label , " not in head and "label none, name mcp_opentps" in head
    assert plan_label(res.provenance["identification"]) == "mcp_opentps"
    assert plan_label({"SOPInstanceUID": "1.2.3"}) == "1.2.3"


def test_the_command_line_is_recorded(monkeypatch, tmp_path):
    """``mcproton check`` records its command line as typed (settings.invocation): a re-run is a copy of it."""
    from mcproton._check import api
    from mcproton._check.record import INVOKED_AS
    from mcproton.cli import main

    seen = []

    def stand_in(**kw):
        seen.append(INVOKED_AS.get())
        raise ValueError("stopped here by the test")

    monkeypatch.setattr(api, "check", stand_in)
    line = ["check", "--plan", "RP.dcm", "--dose", "RD 1.dcm", "--beam-model", "dcpt_v5", "--out", str(tmp_path),
            "--target-uncertainty", "0.015"]
    assert main(line) == 2
    assert seen == [f"mcproton check --plan RP.dcm --dose 'RD 1.dcm' --beam-model dcpt_v5 --out {tmp_path} "
                    "--target-uncertainty 0.015"]
    assert INVOKED_AS.get() is None   # reset after the command


@pytest.fixture(scope="module")
def fresh(base, tmp_path_factory):  # noqa: F811
    """A check with its own (short) MC: a calibration given as a folder, the elemental I-values."""
    from mcproton._check.api import check
    from mcproton._io.hu_calibration import DATA_DIR

    tmp = tmp_path_factory.mktemp("record")
    cal = tmp / "hlut" / "clinic_hlut"
    cal.mkdir(parents=True)
    shutil.copy(DATA_DIR / "mcsquare_scanner_default_hu_density.csv", cal / "HU_Density_Conversion.txt")
    shutil.copy(DATA_DIR / "mcsquare_scanner_default_hu_material.csv", cal / "HU_Material_Conversion.txt")
    rd = _tps(base, "rd_fresh", base["blob"])
    d = base["dir"]
    res = check(plan=d / "RP.dcm", dose=rd, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                calibration=str(cal), physics={"ivalue_set": "elemental"}, primaries=1500, target_uncertainty=None,
                out=tmp / "out", report=False, levels=_levels(), log=lambda m: None, **FAST)
    return {"res": res, "cal": cal, "json": json.loads(Path(res.report_json).read_text())}


def test_a_calibration_folder_is_recorded_by_its_files_and_their_hashes(fresh):
    """--calibration clinic_hlut was recorded as "clinic_hlut": two folders of that name with other curves gave the
    same report.  Each file read is recorded by its resolved path and SHA-256, in the JSON and the HTML."""
    from mcproton._check.report import _identification

    p = fresh["json"]["provenance"]
    files = {Path(f["path"]).name: f for f in p["calibration_files"]}
    assert set(files) == {"HU_Density_Conversion.txt", "HU_Material_Conversion.txt"} and not p["calibration_builtin"]
    for name, f in files.items():
        assert f["path"] == str((fresh["cal"] / name).resolve()) and f["sha256"] == _sha(fresh["cal"] / name)
    head = _identification(fresh["res"])
    assert all(f["sha256"] in head and f["path"] in head for f in files.values())


def test_a_built_in_calibration_is_named_with_the_version(base, tmp_path):  # noqa: F811
    from mcproton import __version__
    from mcproton._check.record import calibration_record
    from mcproton._check.report import _calibration_text
    from mcproton._io.hu_calibration import HUCalibration

    rec = calibration_record(HUCalibration.load("mcsquare_default"), "mcsquare_default")
    assert rec == {"name": "mcsquare_default", "builtin": True, "files": [],
                   "data_sha256": HUCalibration.load("mcsquare_default").data_sha256()}
    text = _calibration_text({"calibration": "mcsquare_default", "calibration_builtin": True,
                              "mcproton_version": __version__})
    assert text == f"mcsquare_default (built into mcproton {__version__})"


def test_the_physics_settings_are_recorded_in_full(fresh):
    """physics={"ivalue_set": "elemental"} left no trace: provenance.physics holds every field of PhysicsSettings
    as used (defaults included), and the report's Settings and provenance tables show it."""
    from dataclasses import asdict

    from mcproton._check.report import _provenance_rows, _settings_table
    from mcproton.settings import PhysicsSettings

    phys = fresh["json"]["provenance"]["physics"]
    assert phys == asdict(PhysicsSettings(ivalue_set="elemental"))
    assert "ivalue_set elemental" in _settings_table(fresh["res"])
    rows = dict(_provenance_rows(fresh["res"].provenance, "Gy"))
    assert "ivalue_set elemental" in rows["physics (PhysicsSettings)"]
    # nested values as text, not Python's repr (F12): the beam model file's path and SHA-256
    assert not any("{'" in v or "[{" in v for v in rows.values())
    assert fresh["json"]["provenance"]["beam_model_file"]["sha256"] in rows["beam model file"]


def test_the_ct_series_is_recorded_by_one_hash_over_its_slices(fresh, base):  # noqa: F811
    """The CT: its folder resolved, SeriesInstanceUID, number of slices and one SHA-256 over the sorted SHA-256s of
    its slice files (stated as such)."""
    ct = [f for f in fresh["json"]["provenance"]["inputs"] if f["role"] == "CT series"]
    assert len(ct) == 1
    ct = ct[0]
    slices = sorted((base["dir"] / "ct").glob("*.dcm"))
    assert ct["path"] == str((base["dir"] / "ct").resolve()) and ct["slices"] == len(slices)
    want = hashlib.sha256("".join(h + "\n" for h in sorted(_sha(f) for f in slices)).encode()).hexdigest()
    assert ct["sha256"] == want and "sorted" in ct["sha256_of"]
    assert ct["series_instance_uid"] == str(pydicom.dcmread(slices[0], stop_before_pixels=True).SeriesInstanceUID)


def test_a_reused_mc_dose_keeps_the_record_of_what_made_it(fresh, base, tmp_path):  # noqa: F811
    """A check that reuses an MC dose (mc=) records the CT, calibration and physics of that MC dose."""
    from mcproton._check.api import check

    d = base["dir"]
    res = check(plan=d / "RP.dcm", dose=_tps(base, "rd_fresh2", base["blob"]), ct=d / "ct", struct=d / "RS.dcm",
                beam_model="dcpt_v2", mc=fresh["res"].mc, **FAST)
    p = res.provenance
    assert p["physics"]["ivalue_set"] == "elemental" and p["calibration_files"] == fresh["json"]["provenance"][
        "calibration_files"]
    ct = [f for f in p["inputs"] if f["role"].startswith("CT series")]
    assert ct[0]["role"] == "CT series (of the reused MC dose)"

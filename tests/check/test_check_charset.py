"""``mcproton check`` of a patient folder whose files declare no character set (identity audit 24, F4): the plan's,
the TPS dose's, the RT Struct's and the CT's PatientName hold UTF-8 bytes without SpecificCharacterSet.  Before, the
report's header, check.json's identification and RD_mc.dcm (declared ISO_IR 100) named the patient in mojibake
('Î Î±Ï...') without a word; now each reads the name as UTF-8, check.json's warnings and the report say so, naming the
files, and RD_mc.dcm declares ISO_IR 192.

Fast: the analytic MC dose of test_report.py (``check(mc=...)``, no transport) on test_check's ``base`` case."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_check import _tps, base  # noqa: E402,F401  (base: test_check's module fixture, re-used here)
from test_identity_charset import GREEK, undeclare  # noqa: E402
from test_report import FAST, _fake_mc  # noqa: E402

SAID = "no SpecificCharacterSet (0008,0005), but PatientName (0010,0010) holds bytes above 0x7F: read as UTF-8"


def test_a_folder_without_character_set_is_checked_under_the_utf8_name_and_said(base, tmp_path):  # noqa: F811
    from mcproton._check.api import check

    folder = tmp_path / "patient"
    shutil.copytree(base["dir"] / "ct", folder / "ct")
    for name in ("RP.dcm", "RS.dcm"):
        shutil.copy(base["dir"] / name, folder / name)
    shutil.move(_tps(base, "rd_charset", base["blob"]), folder / "RD.dcm")
    for f in [*sorted((folder / "ct").glob("*.dcm")), *(folder / n for n in ("RP.dcm", "RS.dcm", "RD.dcm"))]:
        undeclare(f, PatientName=GREEK.encode("utf-8"))
    res = check(plan=folder / "RP.dcm", dose=folder / "RD.dcm", ct=folder / "ct", struct=folder / "RS.dcm",
                beam_model="dcpt_v2", mc=_fake_mc(base, 1.0), out=folder / "out", **FAST)
    js = json.loads(Path(res.report_json).read_text())
    assert js["provenance"]["identification"]["PatientName"] == GREEK     # before: 'Î\xa0Î±Ï\x80...'
    said = [w for w in js["warnings"] if SAID in w]
    for name in ("RP.dcm", "RD.dcm", "RS.dcm"):
        assert len([w for w in said if w.startswith(f"{folder / name}: ")]) == 1, (name, said)   # once per file
    rd_mc = pydicom.dcmread(folder / "out" / "RD_mc.dcm", stop_before_pixels=True)
    assert rd_mc.SpecificCharacterSet == "ISO_IR 192" and str(rd_mc.PatientName) == GREEK
    report = (folder / "out" / "check.html").read_text(encoding="utf-8")
    assert f"patient {GREEK}" in report and "no SpecificCharacterSet (0008,0005)" in report


def test_one_name_in_the_report_and_rd_mc_where_another_text_of_the_plan_is_latin1(base, tmp_path):  # noqa: F811
    """Review of 2026-12-07, R3: the plan's PatientName is UTF-8 and its RTPlanDescription Latin-1, neither
    declared.  Before, the character set was decided once per read: the report's header (a read of some tags) gave
    the Greek name, RD_mc.dcm (its patient from a whole read of the plan) and the pairing Latin-1 mojibake.  Now each
    value is read by its own bytes: the report, check.json and RD_mc.dcm name one patient."""
    from mcproton._check.api import check

    folder = tmp_path / "patient"
    shutil.copytree(base["dir"] / "ct", folder / "ct")
    for name in ("RP.dcm", "RS.dcm"):
        shutil.copy(base["dir"] / name, folder / name)
    shutil.move(_tps(base, "rd_mixed", base["blob"]), folder / "RD.dcm")
    for f in [*sorted((folder / "ct").glob("*.dcm")), *(folder / n for n in ("RS.dcm", "RD.dcm"))]:
        undeclare(f, PatientName=GREEK.encode("utf-8"))
    undeclare(folder / "RP.dcm", PatientName=GREEK.encode("utf-8"),
              RTPlanDescription="Boost für Zoë".encode("latin-1"))
    res = check(plan=folder / "RP.dcm", dose=folder / "RD.dcm", ct=folder / "ct", struct=folder / "RS.dcm",
                beam_model="dcpt_v2", mc=_fake_mc(base, 1.0), out=folder / "out", **FAST)
    js = json.loads(Path(res.report_json).read_text())
    assert js["provenance"]["identification"]["PatientName"] == GREEK
    rd_mc = pydicom.dcmread(folder / "out" / "RD_mc.dcm", stop_before_pixels=True)
    assert str(rd_mc.PatientName) == GREEK and js["mc_rtdose"]["plan"]["patient"]["PatientName"] == GREEK
    assert not [w for w in js["warnings"] if "name the patient differently" in w], js["warnings"]
    said = [w for w in js["warnings"] if w.startswith(f"{folder / 'RP.dcm'}: no SpecificCharacterSet")]
    assert len(said) == 1 and "RTPlanDescription (300A,0004) holds bytes above 0x7F: read as Latin-1" in said[0], said

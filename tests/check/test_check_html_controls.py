"""``mcproton check``'s check.html where a DICOM string holds control characters (the 29th audit's untrusted inputs,
F6): a PatientName and an ROI name with ESC, BEL and a C1 control were written into the page raw (``html.escape``
leaves them), and an HTML document may not hold them (a validator's "forbidden code point").  Now every string the
report takes from an input is written with its control characters as visible escapes (``\\x1b``), as the console
prints them; line breaks and tabs are kept.

Fast: the analytic MC dose of test_report.py (``check(mc=...)``, no transport) on test_check's ``base`` case."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import _tps, base  # noqa: E402,F401  (base: test_check's module fixture, re-used here)
from test_report import FAST, _fake_mc  # noqa: E402

#: the code points an HTML document may not hold (HTML Living Standard, "control-character-in-input-stream" and
#: "null-character-reference": the C0 controls but ASCII whitespace, DEL, the C1 controls)
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def test_control_characters_of_dicom_strings_are_escaped_in_the_html_report(base, tmp_path):  # noqa: F811
    from mcproton._check.api import check

    folder = tmp_path / "patient"
    shutil.copytree(base["dir"] / "ct", folder / "ct")
    shutil.copy(base["dir"] / "RP.dcm", folder / "RP.dcm")
    shutil.move(_tps(base, "rd", base["blob"]), folder / "RD.dcm")
    rs = pydicom.dcmread(base["dir"] / "RS.dcm")
    roi = rs.StructureSetROISequence[0]
    name = str(roi.ROIName)
    roi.ROIName = f"{name}\x1b[8m\x85"
    rs.save_as(folder / "RS.dcm")
    rp = pydicom.dcmread(folder / "RP.dcm")
    rp.RTPlanLabel = "Boost\x1b]0;pwned\x07"
    rp.save_as(folder / "RP.dcm")
    res = check(plan=folder / "RP.dcm", dose=folder / "RD.dcm", ct=folder / "ct", struct=folder / "RS.dcm",
                beam_model="dcpt_v2", mc=_fake_mc(base, 1.0), out=folder / "out", **FAST)
    report = Path(res.report_html).read_text(encoding="utf-8")
    bad = sorted({f"U+{ord(c):04X}" for c in FORBIDDEN.findall(report)})
    assert not bad, f"check.html holds {bad}"          # before: U+0007, U+001B, U+0085
    assert f"{name}\\x1b[8m\\x85" in report and "Boost\\x1b]0;pwned\\x07" in report

"""The README's robustness-scenario block (set-up and range errors of a plan on a CT), as written but on a small
synthetic patient (a 120 mm water cube, one 70 MeV spot, a CTV at the Bragg peak) and 2000 protons."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dicom_factories import circle_contour, make_plan, make_rtstruct, save

README = Path(__file__).resolve().parents[2] / "README.md"


def _robustness_block() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    return next(b for b in blocks if "isocentre_shift_mm" in b)


def test_readme_robustness_block_runs(tmp_path, monkeypatch):
    from mcproton._io.dicom_common import PHANTOM_STUDY
    from mcproton.dicom import write_ct_series

    frame = "1.2.826.0.1.3680043.8.498.4712"
    n, v = 20, 6.0
    (tmp_path / "patient").mkdir()
    write_ct_series(np.zeros((n, n, n)), (v, v, v), (-(n - 1) * v / 2,) * 3, tmp_path / "patient" / "CT",
                    study=PHANTOM_STUDY.replace(frame_of_reference_uid=frame, patient_position="HFS"))
    save(make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, -20.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}], frame_of_reference_uid=frame, n_fractions=17), tmp_path / "patient" / "RP.dcm")
    ctv = [circle_contour(0.0, -20.0, 4.0, z) for z in (-3.0, 3.0)]   # in the xy plane, across the peak
    save(make_rtstruct({"CTV": ctv}, for_uid=frame), tmp_path / "patient" / "RS.dcm")
    code = _robustness_block()
    assert "primaries=1_000_000" in code
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code.replace("primaries=1_000_000", "primaries=2000"), "README.md", "exec"), ns)
    d95 = ns["ctv_d95"]
    assert set(d95) == {"nominal", "x +3 mm", "range +3.5 %"}
    assert all(np.isfinite(x) and x > 0 for x in d95.values()), d95
    assert d95["range +3.5 %"] != d95["nominal"]

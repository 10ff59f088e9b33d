"""A body outline that leaves a target mostly outside is refused (mcproton run and mcproton check): the dose
outside the outline is set to 0 (run) or not compared (check), so the target would get none.  A helper's audit
(2026-12-05) typed the brainstem EXTERNAL and the body ORGAN: the run zeroed the dose everywhere outside the
brainstem, the target's too (CTV mean 0 Gy), with exit status 0 and a warning that blamed the beam model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from mcproton.body import body_from_rtstruct, check_targets_inside
from mcproton.geometry import box_phantom

RS = Path(__file__).resolve().parents[1] / "data" / "dicom" / "aptg_check" / "RS_plan03.dcm"


def _retyped(tmp_path: Path, types: dict[str, str]) -> Path:
    """RayStation's plan03 structure set (External 205 mm cube, PMMA a 5 mm slab through it, targets Cube101010
    and Slope101004 of type PTV) with some ROIs' RTROIInterpretedType changed."""
    ds = pydicom.dcmread(RS)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    for obs in ds.RTROIObservationsSequence:
        name = names[int(obs.ReferencedROINumber)]
        if name in types:
            obs.RTROIInterpretedType = types[name]
    out = tmp_path / "RS.dcm"
    ds.save_as(out)
    return out


def test_a_body_roi_that_leaves_the_targets_outside_is_refused(tmp_path):
    g = box_phantom("water", (220, 220, 220), 4.0, origin_mm=(-108, -108, -108))
    assert body_from_rtstruct(RS, g).mask.any()          # as exported: the External holds the targets
    wrong = _retyped(tmp_path, {"External": "ORGAN", "PMMA": "EXTERNAL"})   # the slab taken for the body
    with pytest.raises(ValueError, match=r"the target\(s\) lie outside the body outline \(RT Struct ROI 'PMMA' "
                                         r"\(EXTERNAL\)\): 9\d % of 'Cube101010' \(PTV\), .*output.body_outline"):
        body_from_rtstruct(wrong, g)
    # ROIs typed CONTROL, however named, are not targets (a helper "PTV_flash" may reach beyond the skin)
    helpers = _retyped(tmp_path, {"External": "ORGAN", "PMMA": "EXTERNAL", "Cube101010": "CONTROL",
                                  "Slope101004": "CONTROL"})
    assert body_from_rtstruct(helpers, g).source == "RT Struct ROI 'PMMA' (EXTERNAL)"


def test_the_check_refuses_it_too_and_a_target_mostly_inside_passes():
    from mcproton._check.api import body_outline
    from mcproton._check.inputs import CheckInputError

    body = np.zeros((4, 4, 4), bool)
    body[:2] = True
    ptv = np.zeros_like(body)
    ptv[1:3, 1:3, 1:3] = True        # half inside: kept (a PTV grown beyond the skin)
    masks = {"Body": body, "PTV": ptv}
    assert body_outline(masks, {"Body": "EXTERNAL", "PTV": "PTV"}, None)[1] == "External ROI 'Body'"
    ptv[1] = False                   # now wholly outside
    with pytest.raises(CheckInputError, match=r"the target\(s\) lie outside the body outline \(External ROI "
                                              r"'Body'\): 100 % of 'PTV' \(PTV\).*RTROIInterpretedType"):
        body_outline(masks, {"Body": "EXTERNAL", "PTV": "PTV"}, None)
    # another target inside the body: the outline is the body (a PTV beyond the skin, a flash region, is possible)
    ctv = np.zeros_like(body)
    ctv[0, 1:3, 1:3] = True
    types = {"Body": "EXTERNAL", "PTV": "PTV", "CTV": "CTV"}
    assert body_outline({**masks, "CTV": ctv}, types, None)[1] == "External ROI 'Body'"
    # named like a target but typed otherwise (a helper ROI "PTV_flash" typed CONTROL): not a target
    assert body_outline({"Body": body, "PTV_flash": ptv}, {"Body": "EXTERNAL", "PTV_flash": "CONTROL"}, None)[0] \
        is body
    check_targets_inside(body, {"PTV": np.zeros_like(body)}, {"PTV": "PTV"}, "b", ValueError, "")   # empty: fine

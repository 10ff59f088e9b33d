"""The plan's prescription for V95/V100 (mcproton/_check/prescription.py) read from real plans: only TARGET dose
references of structure type VOLUME or SITE prescribe a target's dose (DICOM PS3.3 C.8.8.10); points are named."""
from __future__ import annotations

from pathlib import Path

import pytest

from mcproton._check.prescription import median_source, plan_dose_references, plan_prescriptions

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"


@pytest.mark.parametrize("plan,items,skipped", [
    ("RN_headphantom_rs.dcm", [], ["'Verification3' (COORDINATES)", "'Verification5' (COORDINATES)"]),
    ("RN_plan02_mono.dcm", [(None, 2.2)], ["'Mono_160' (COORDINATES)"]),   # Eclipse: SITE and a point
    ("RN_sobp_10x10.dcm", [(None, 2.2)], []),
    ("RP_plan05.dcm", [(None, 2.2)], []),                                   # RayStation: SITE
    ("RN_qa_4beams.dcm", [], []),                                           # ORGAN_AT_RISK, no dose
    ("aptg_plan03/ramped_2Gy_ver2_full.dcm", [], []),                       # an OAR point without a dose
    ("opentps_box100/RP.dcm", [], []),                                      # OpenTPS: VOLUME, no dose
])
def test_dose_references_of_real_plans(plan, items, skipped):
    refs = plan_dose_references(str(DATA / plan))
    assert refs.items == [(r, pytest.approx(v)) for r, v in items] and refs.skipped == skipped


def test_labels_and_rbe():
    refs = plan_dose_references(str(DATA / "RN_plan02_mono.dcm"))
    pres, how, notes = plan_prescriptions(refs, ["CTV", "PTV"], {"CTV": 1, "PTV": 2}, "PHYSICAL", None)
    assert pres == {"CTV": pytest.approx(2.0), "PTV": pytest.approx(2.0)} and notes == []
    assert "ReferencedROINumber" not in how and "2.2 Gy(RBE) / 1.1 = 2 Gy" in how
    pres, how, _ = plan_prescriptions(refs, ["PTV"], {"PTV": 2}, "EFFECTIVE", 1.3)   # Gy(RBE) against Gy(RBE)
    assert pres == {"PTV": pytest.approx(2.2)} and "Gy(RBE) /" not in how
    # a VOLUME reference of one target: that one by its ROI, the other by the plan's only dose
    refs.items = [(2, 2.2)]
    _, how, _ = plan_prescriptions(refs, ["CTV", "PTV"], {"CTV": 1, "PTV": 2}, "EFFECTIVE", None)
    assert "own dose reference (ReferencedROINumber) for 'PTV', the plan's only prescribed dose for the others" in how
    _, how, _ = plan_prescriptions(refs, ["PTV"], {"PTV": 2}, "EFFECTIVE", None)
    assert "of each target's dose reference (ReferencedROINumber)" in how
    from mcproton._check.prescription import DoseReferences

    assert "the plan gives no TargetPrescriptionDose" in median_source(DoseReferences())
    assert "could not be read (" + str(DATA / "RP_x.dcm") + ": cannot be read ([Errno 2] No such file" in \
        median_source(plan_dose_references(str(DATA / "RP_x.dcm")))


@pytest.mark.filterwarnings("ignore:Invalid value")
def test_an_unreadable_dose_reference_is_named_as_such(tmp_path):
    """A DoseReferenceSequence that cannot be read (a ReferencedROINumber that is not a number) leaves V95/V100
    relative to each target's median, and the report says why (before: "the plan gives no
    TargetPrescriptionDose", which was untrue; the review of 2026-12-05)."""
    import pydicom

    ds = pydicom.dcmread(DATA / "RP_plan05.dcm")
    ref = ds.DoseReferenceSequence[0]
    ref.DoseReferenceStructureType = "VOLUME"
    ref.add_new((0x3006, 0x0084), "IS", None)
    ref[0x3006, 0x0084]._value = "x"   # ReferencedROINumber that is not a number
    path = tmp_path / "RP.dcm"
    ds.save_as(path)
    refs = plan_dose_references(str(path))
    assert refs.items == [] and refs.unreadable
    assert "the plan's DoseReferenceSequence could not be read" in median_source(refs)

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


@pytest.mark.parametrize("refs, why", [
    (None, "the plan gives no TargetPrescriptionDose"),
    ({}, "the plan gives no TargetPrescriptionDose"),
    ({"unreadable": "ValueError: x"}, "the plan's DoseReferenceSequence could not be read (ValueError: x)"),
    ({"unreadable": "ValueError: x", "skipped": ["'P' (POINT)"]},
     "the plan's DoseReferenceSequence could not be read (ValueError: x)"),
    ({"skipped": ["'Verification3' (COORDINATES)", "'Verification5' (COORDINATES)"]},
     "the plan prescribes no target volume or site: its dose reference(s) 'Verification3' (COORDINATES), "
     "'Verification5' (COORDINATES) give the dose at a point, not a target's prescription"),
])
def test_the_median_source_says_why_in_its_words(refs, why):
    """median_source's words for each case: it takes the unreadable and none cases from no_target_prescription
    (the re-read of 2026-12-07, c 3: written twice), its own where the plan prescribes points only."""
    from mcproton._check.prescription import DoseReferences

    got = median_source(None if refs is None else DoseReferences(**refs))
    assert got == f"each target's own TPS median dose ({why}; give --prescription for the prescribed dose)"


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


# a simultaneous boost of 60 and 54 Gy(RBE) in 30 fractions, the TPS dose EFFECTIVE for all fractions, each target's
# TPS median at its own level (the review of 2026-12-07, R1: sib.py)
SIB_MEDIANS = {"CTV60": 60.2, "CTV54": 54.3}
SIB_ROIS = {"CTV60": 1, "CTV54": 2}


def _given(typed, items, medians=SIB_MEDIANS, dose_type="EFFECTIVE", **kw):
    from mcproton._check.prescription import DoseReferences, given_prescriptions

    return given_prescriptions(typed, list(medians), DoseReferences(items=items), dose_type, None, 30, False,
                               medians, roi_numbers=SIB_ROIS, **kw)


@pytest.mark.parametrize("items", [[(None, 60.0)], [(1, 60.0)]])   # one SITE, or one VOLUME of the boost's ROI
def test_a_boosts_own_level_per_target_is_not_a_slip_of_the_plans_other_level(items):
    """--prescription CTV54=54 with the plan's top-level (or CTV60's) 60 Gy(RBE): 0.9 x 60 is the RBE's slip factor,
    but 60 is not CTV54's prescription: accepted, compared with CTV54's own TPS median only.  Before (the review of
    2026-12-07, R1) it was refused as "a physical dose ...; give 60", and kept with --prescription-anyway under a
    false note."""
    pres, how, notes = _given({"CTV60": 60.0, "CTV54": 54.0}, items)
    assert pres == {"CTV60": 60.0, "CTV54": 54.0} and notes == [] and "anyway" not in how
    pres, how, notes = _given({"PTV66": 66.0, "PTV60": 60.0}, [(None, 66.0)], medians={"PTV66": 66.5, "PTV60": 60.3})
    assert pres == {"PTV66": 66.0, "PTV60": 60.0} and notes == []


def test_a_per_target_slip_is_refused_naming_that_targets_own_figures():
    """CTV54=5400 (cGy) is refused against CTV54's own TPS median (54.3), with CTV54=54 to give, never the plan's
    other level (60); a CTV54=49.1 (54 / 1.1: physical) is refused against CTV54's own dose reference (its
    ReferencedROINumber) where the plan has one, naming it."""
    from mcproton._check.inputs import CheckInputError

    with pytest.raises(CheckInputError, match=r"prescription of 'CTV54' \(--prescription CTV54=5400\): 5400 Gy\(RBE\) "
                                              r"is 99.4 x the TPS dose's median in the target 'CTV54' \(54.3 "
                                              r"Gy\(RBE\)\), so it looks like cGy; give about CTV54=54\. ") as e:
        _given({"CTV54": 5400.0}, [(None, 60.0)])
    assert "60" not in str(e.value)
    with pytest.raises(CheckInputError, match=r"prescription of 'CTV54' \(--prescription CTV54=49.1\): 49.1 is "
                                              r"0.9093 x the plan's TargetPrescriptionDose of 'CTV54' \(its dose "
                                              r"reference, "
                                              r"ReferencedROINumber 2\) 54 Gy\(RBE\), so it looks like a physical dose "
                                              r"\(Gy\(RBE\) / the RBE 1.1\); give CTV54=54\. ") as e:
        _given({"CTV54": 49.1}, [(1, 60.0), (2, 54.0)])
    assert "60" not in str(e.value)
    pres, _, _ = _given({"CTV60": 60.0, "CTV54": 54.0}, [(1, 60.0), (2, 54.0)])   # each its own: accepted
    assert pres == {"CTV60": 60.0, "CTV54": 54.0}
    # one dose for every target is still the treated target's (the highest median) against the plan's doses
    with pytest.raises(CheckInputError, match=r"prescription \(--prescription 54\): 54 is 0.9 x the plan's "
                                              r"TargetPrescriptionDose 60 Gy\(RBE\), so it looks like a physical dose"):
        _given(54.0, [(None, 60.0)])


def test_a_prescription_against_a_physical_dose_says_how_it_was_read():
    """Against a PHYSICAL TPS dose and a plan without a TargetPrescriptionDose (the OpenTPS case), --prescription
    1.8 is read as Gy(RBE), 1.636 Gy physical: a note says so, and what to give for 1.8 Gy physical (1.98).  Before
    (the review of 2026-12-07, R2) nothing did: V100 moved from 52 % to 98 % without a word.  A value the plan's
    TargetPrescriptionDose checked, or one against an EFFECTIVE dose, gets no note."""
    from mcproton._check.prescription import DoseReferences, given_prescriptions

    pres, _, notes = given_prescriptions(1.8, ["CTV_PF"], DoseReferences(), "PHYSICAL", None, 5, False,
                                         {"CTV_PF": 1.8})
    assert pres == {"CTV_PF": pytest.approx(1.8 / 1.1)}
    assert notes == ["--prescription 1.8 was read as Gy(RBE), as a TargetPrescriptionDose is: 1.8 Gy(RBE) / the RBE "
                     "1.1 = 1.636 Gy physical for this PHYSICAL TPS dose (the TPS dose's median in 'CTV_PF': 1.8 Gy), "
                     "and the plan gives no TargetPrescriptionDose of the target to check it against; if you meant "
                     "1.8 Gy physical, give --prescription 1.98 (the physical dose x the RBE 1.1)"]
    # --rbe 1.2: its RBE; a TPS dose of one of 5 fractions: the median of one fraction
    _, _, notes = given_prescriptions(9.0, ["CTV"], DoseReferences(), "PHYSICAL", 1.2, 5, True, {"CTV": 1.5})
    assert "9 Gy(RBE) / the RBE 1.2 = 7.5 Gy physical" in notes[0] and "median of one fraction in 'CTV': 1.5 Gy" \
        in notes[0] and "give --prescription 10.8 (the physical dose x the RBE 1.2)" in notes[0], notes
    # a target's own value with only the plan's SITE dose, which does not check it: noted in its ROI=GY form
    _, _, notes = _given({"CTV54": 54.0}, [(None, 60.0)], dose_type="PHYSICAL",
                         medians={"CTV60": 54.7, "CTV54": 49.4})
    assert len(notes) == 1 and notes[0].startswith("--prescription CTV54=54 was read as Gy(RBE)") and \
        "give --prescription CTV54=59.4" in notes[0], notes
    assert _given(60.0, [(None, 60.0)], dose_type="PHYSICAL", medians={"CTV60": 54.7})[2] == []   # the plan's
    assert _given(1.8, [], medians={"CTV60": 1.8})[2] == []                                        # EFFECTIVE


def test_the_source_of_a_given_prescription_names_the_plans_point_doses():
    """A plan whose TargetPrescriptionDoses are at points (RN_headphantom_rs: 'Verification3/5', COORDINATES): the
    source of a typed prescription says so (before, the review of 2026-12-07 R7: "the plan gives no
    TargetPrescriptionDose")."""
    from mcproton._check.prescription import given_prescriptions

    _, how, _ = given_prescriptions(8.64, ["PTV"], plan_dose_references(str(DATA / "RN_headphantom_rs.dcm")),
                                    "EFFECTIVE", None, 5, False, {"PTV": 8.5})
    assert how.endswith("; the plan gives no TargetPrescriptionDose of a target volume or site (only the dose at a "
                        "point of 'Verification3' (COORDINATES), 'Verification5' (COORDINATES))"), how


@pytest.mark.parametrize("items", [[(None, 54.0)], [(4, 54.0)], [(5, 60.0), (6, 54.0)]])
@pytest.mark.parametrize("dose_type,median", [("EFFECTIVE", 54.3), ("PHYSICAL", 49.4)])
def test_a_per_target_physical_slip_of_a_plan_dose_not_its_own_is_refused_where_its_median_sides_with_it(
        items, dose_type, median):
    """--prescription CTV=49.1 (54 / 1.1, a physical dose) where the plan's 54 Gy(RBE) is its one SITE dose, a VOLUME
    dose of another ROI, or a boost's other level: refused, naming 54, because CTV's own TPS median (54.3 Gy(RBE),
    49.4 Gy physical) lies nearer 54 than 49.1.  Before (review D of 2026-12-07, R1) it was compared with the median
    only, which cannot tell the RBE's 10 %, and passed without a word."""
    from mcproton._check.inputs import CheckInputError

    with pytest.raises(CheckInputError, match=r"prescription of 'CTV' \(--prescription CTV=49.1\): 49.1 is 0.9093 x "
                                              r"the plan's TargetPrescriptionDose of .* 54 Gy\(RBE\), so it looks like "
                                              r"a physical dose \(Gy\(RBE\) / the RBE 1.1\) \(no dose reference of the "
                                              r"plan names 'CTV', but the TPS dose's median in it, .* lies nearer 54 "
                                              r"Gy\(RBE\).* than 49.1 Gy\(RBE\).*\); give CTV=54\. ") as e:
        _given({"CTV": 49.1}, items, medians={"CTV": median}, dose_type=dose_type)
    assert "give CTV=60" not in str(e.value)
    # the target really at 49.1 (its median there): the plan's 54 is not its level, so no slip
    pres, _, _ = _given({"CTV": 49.1}, items, medians={"CTV": median * 49.1 / 54}, dose_type=dose_type)
    assert pres == {"CTV": pytest.approx(49.1 / (1.1 if dose_type == "PHYSICAL" else 1))}


def test_a_per_target_cgy_of_a_physical_figure_is_told_the_plans_gy_rbe_value():
    """CTV=4909 (cGy of 49.09 Gy physical = 54 Gy(RBE) / 1.1) with the plan's one SITE 54: "give CTV=54", the
    Gy(RBE) value (before, review D of 2026-12-07, R1: "give about CTV=49.1", the physical one, then accepted)."""
    from mcproton._check.inputs import CheckInputError

    with pytest.raises(CheckInputError, match=r"\(--prescription CTV=4909\): 4909 is 90.91 x the plan's "
                                              r"TargetPrescriptionDose of the site as a whole \(SITE\) 54 "
                                              r"Gy\(RBE\), so it looks like cGy and a physical dose .*; give "
                                              r"CTV=54\. ") as e:
        _given({"CTV": 4909.0}, [(None, 54.0)], medians={"CTV": 54.3})
    assert "49.1" not in str(e.value)
    # a boost's CTV54=5400 against the top level 60 (5400 / 60 = 100 / 1.1): cGy of CTV54's own 54, not of 60
    with pytest.raises(CheckInputError, match=r"so it looks like cGy; give about CTV54=54\. ") as e:
        _given({"CTV54": 5400.0}, [(5, 60.0)])
    assert "60" not in str(e.value)
    # the boost's own levels, typed right, stay accepted: each against a plan with other ROIs' levels
    pres, _, notes = _given({"CTV60": 60.0, "CTV54": 54.0}, [(5, 60.0), (6, 54.0)])
    assert pres == {"CTV60": 60.0, "CTV54": 54.0} and notes == []


def test_the_physical_dose_note_says_why_from_the_source_the_result_records():
    """Against a PHYSICAL TPS dose, CTV=54 with the plan's only (SITE) 54 Gy(RBE) is the plan's value: no note (before,
    review D of 2026-12-07, R2: "the plan gives no TargetPrescriptionDose ..." while the source named 54).  A value
    the plan's dose does not check is noted, naming that dose; a plan of point doses only is named as such."""
    from mcproton._check.prescription import given_prescriptions

    pres, how, notes = _given({"CTV": 54.0}, [(None, 54.0)], medians={"CTV": 49.4}, dose_type="PHYSICAL")
    assert notes == [] and how.endswith("the plan's TargetPrescriptionDose: 54 Gy(RBE)"), (how, notes)
    _, how, notes = _given({"CTV": 51.3}, [(None, 54.0), (4, 60.0)], medians={"CTV": 49.4}, dose_type="PHYSICAL")
    assert len(notes) == 1 and "the plan gives no TargetPrescriptionDose" not in notes[0], notes
    assert "and no dose reference names 'CTV', and the plan's TargetPrescriptionDoses (54 Gy(RBE) of the site as a " \
        "whole (SITE), 60 Gy(RBE) of ROINumber 4) are not the value typed, so none checks it; if you meant 51.3 Gy " \
        "physical, give --prescription CTV=56.43" in notes[0], notes
    _, _, notes = given_prescriptions(8.64, ["PTV"], plan_dose_references(str(DATA / "RN_headphantom_rs.dcm")),
                                      "PHYSICAL", None, 5, False, {"PTV": 7.8})
    assert "and nothing checks it: the plan gives no TargetPrescriptionDose of a target volume or site (only the " \
        "dose at a point of 'Verification3' (COORDINATES)" in notes[0], notes
    assert _given({"CTV": 54.0}, [], medians={"CTV": 49.4}, dose_type="PHYSICAL")[2][0].endswith(
        "and the plan gives no TargetPrescriptionDose of the target to check it against; if you meant 54 Gy physical, "
        "give --prescription CTV=59.4 (the physical dose x the RBE 1.1)")

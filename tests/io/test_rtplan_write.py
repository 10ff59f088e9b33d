"""The RT Ion Plan writer (mcproton/_io/rtplan_write.py): the demo's plan (posterior-fossa boost on dcpt_v5 with
RS_3CM, planned on the 4 mm phantom: under a second, no Monte Carlo) written and read back by mcproton's own reader
(load_rtplan, whose consistency checks it must pass without a warning, and plan_to_beams) gives the beams the demo
simulates: the same spots, energies, positions, directions, protons and range shifter.  Before 2026-12-05 the demo
wrote no plan and its RT Dose referenced a placeholder UID.

Tolerances.  Spot positions and weights are FL in DICOM (32-bit floats): the written (X, Y) are float32 of the
planner's, a relative 2^-24 (6e-8), at most 4e-6 mm for the demo's spots (|X| < 64 mm, and the isocentre-plane
offset shrinks by 1 - L/VSAD to the beam-model plane); weights within 6e-8 relative; IsocenterToRangeShifterDistance
(FL) within 4e-6 mm at 80 mm.  DS values carry 12 significant digits (the isocentre to 1e-10 mm)."""
from __future__ import annotations

import copy
import dataclasses
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from mcproton._io.dicom_common import PHANTOM_STUDY
from mcproton.dicom import beam_direction_lps, load_rtplan, plan_to_beams, write_rtplan
from mcproton._io.rtplan_write import gantry_angle_for, spot_order

FRACTIONS = 17


@pytest.fixture(scope="module")
def demo_plan(demo_plan_4mm_shared):
    # the demo's plan-building code (mcproton/demo.py), 4 mm instead of 2 (tests/conftest.py), a copy of this module
    return copy.deepcopy(demo_plan_4mm_shared[1])


@pytest.fixture(scope="module")
def written(demo_plan, tmp_path_factory):
    path = tmp_path_factory.mktemp("rtplan") / "rtplan.dcm"
    study = PHANTOM_STUDY.resolved()
    info = write_rtplan(demo_plan, path, study=study, fractions=FRACTIONS, label="PF boost",
                        structure_set_sop_instance_uid="1.2.826.0.1.3680043.8.498.1")
    return path, info, study


def read_back(path, model="dcpt_v5"):
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # every check of the reader passes, and nothing is warned about
        plan = load_rtplan(path)
        return plan, plan_to_beams(plan, model)


def test_round_trip_gives_the_demo_beams(demo_plan, written):
    path, info, study = written
    plan, beams = read_back(path)
    assert plan.number_of_fractions == FRACTIONS and plan.sop_instance_uid == info["sop_instance_uid"]
    assert (plan.frame_of_reference_uid, plan.study_instance_uid) == (study.frame_of_reference_uid,
                                                                      study.study_instance_uid)
    assert len(beams) == len(demo_plan.fields) == 3
    for f, b, rb in zip(demo_plan.fields, beams, plan.beams):
        assert rb.name == f.name and rb.machine == "TR1" and rb.patient_position == "HFS"
        assert (rb.scan_mode, rb.primary_dosimeter_unit, rb.couch_angle_deg) == ("MODULATED", "MU", 0.0)
        np.testing.assert_allclose(rb.isocenter_mm, f.isocentre_mm, rtol=0, atol=1e-9)
        np.testing.assert_allclose(b.meta["beam_direction"], f.direction, rtol=0, atol=1e-12)
        want = [s for s in f.spots()]           # one beam-model component per spot (dcpt_v5)
        want = [want[i] for i in spot_order(f)]  # the order of the file: layer by layer, highest energy first
        got = b.spots
        assert len(got) == len(want) == f.n_spots and b.meta["plan_spots"] == f.n_spots
        for attr in ("energy_mev", "energy_spread_mev", "sigma_mm", "divergence_rad", "correlation"):
            assert [getattr(s, attr) for s in got] == [getattr(s, attr) for s in want], attr
        np.testing.assert_allclose([s.position_mm for s in got], [s.position_mm for s in want], rtol=0, atol=5e-6)
        np.testing.assert_allclose([s.direction for s in got], [s.direction for s in want], rtol=0, atol=1e-9)
        np.testing.assert_allclose([s.weight for s in got], [s.weight for s in want], rtol=1e-6)
        assert b.total_protons == pytest.approx(float(f.weights.sum()), rel=1e-6)
        # the range shifter: the same slab (RS_3CM of the model), its face where the planner put it
        for s, t in zip(got, want):
            r, q = s.range_shifter, t.range_shifter
            assert (r.id, r.material, r.thickness_mm, r.density_g_cm3, r.wet_mm) == \
                (q.id, q.material, q.thickness_mm, q.density_g_cm3, q.wet_mm) == \
                ("RS_3CM", "polycarbonate", q.thickness_mm, 1.2, 34.3)
            assert r.upstream_face_mm == pytest.approx(q.upstream_face_mm, abs=1e-5)
        assert b.meta["range_shifters"]["RS_3CM"]["isocenter_distance_mm"] == \
            pytest.approx(f.machine.shifter_distance_mm, abs=1e-5)
    assert [b["gantry_angle_deg"] for b in info["beams"]] == [180.0, 140.0, 220.0]
    assert [b.gantry_angle_deg for b in plan.beams] == [180.0, 140.0, 220.0]


def test_the_file_is_what_a_planning_system_writes(written):
    """Layer pairs (weights, then zeros), the shifter IN from the first control point, MU from protons with the
    beam model's protons per MU, BeamMeterset = FinalCumulativeMetersetWeight; float32 spot positions exactly
    the planner's rounded."""
    import pydicom

    from mcproton._io.beam_model import load_beam_model

    path, info, _ = written
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTPLAN" and ds.ApprovalStatus == "UNAPPROVED" and ds.RTPlanGeometry == "PATIENT"
    assert ds.PatientSetupSequence[0].PatientPosition == "HFS" and ds.RTPlanLabel == "PF boost"
    fg = ds.FractionGroupSequence[0]
    assert fg.NumberOfFractionsPlanned == FRACTIONS and fg.NumberOfBeams == 3
    model = load_beam_model("dcpt_v5")
    for b, rb in zip(ds.IonBeamSequence, fg.ReferencedBeamSequence):
        assert (b.BeamType, b.RadiationType, b.TreatmentDeliveryType, b.ScanMode) == \
            ("STATIC", "PROTON", "TREATMENT", "MODULATED")
        assert list(b.VirtualSourceAxisDistances) == [2000.0, 2560.0]
        assert b.NumberOfRangeShifters == 1 and b.RangeShifterSequence[0].RangeShifterID == "RS_3CM"
        assert b.RangeShifterSequence[0].RangeShifterType == "BINARY"
        assert float(rb.BeamMeterset) == float(b.FinalCumulativeMetersetWeight)
        cps = b.IonControlPointSequence
        assert len(cps) == b.NumberOfControlPoints and len(cps) % 2 == 0
        rss = cps[0].RangeShifterSettingsSequence[0]
        assert rss.RangeShifterSetting == "IN" and rss.RangeShifterWaterEquivalentThickness == pytest.approx(34.3)
        energies = [float(c.NominalBeamEnergy) for c in cps[::2]]
        assert energies == sorted(energies, reverse=True) and len(set(energies)) == len(energies)
        for first, second in zip(cps[::2], cps[1::2]):
            assert not any(second.ScanSpotMetersetWeights) and list(second.ScanSpotPositionMap) == \
                list(first.ScanSpotPositionMap)
        assert float(cps[-1].CumulativeMetersetWeight) == float(b.FinalCumulativeMetersetWeight)
        # MU x protons/MU = protons
        mu = sum(float(np.sum(c.ScanSpotMetersetWeights)) for c in cps)
        protons = sum(model.at(float(c.NominalBeamEnergy)).protons_per_mu * np.sum(c.ScanSpotMetersetWeights)
                      for c in cps[::2])
        assert mu == pytest.approx(float(rb.BeamMeterset), rel=1e-9)
        meta = next(x for x in info["beams"] if x["number"] == b.BeamNumber)
        assert meta["mu_per_fraction"] == float(rb.BeamMeterset) and protons > 0


def test_spot_positions_are_the_planners_in_float32(demo_plan, written):
    path, _, _ = written
    plan, _ = read_back(path)
    f, rb = demo_plan.fields[0], plan.beams[0]          # PA G180: X = -u, Y = v (IEC gantry vs the field's axes)
    order = spot_order(f)
    xy = np.concatenate([layer.spot_xy_mm for layer in rb.layers])
    want = np.stack([-f.u_mm[order], f.v_mm[order]], axis=1).astype(np.float32).astype(float)
    assert np.array_equal(xy, want)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_rtplan_dciodvfy_no_errors(written):
    p = subprocess.run(["dciodvfy", str(written[0])], capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert "RTIonPlan" in out and "Error" not in out, out


@pytest.mark.parametrize("position", ["HFS", "HFP", "FFS", "FFP", "HFDL", "FFDR"])
def test_gantry_angle_for_inverts_beam_direction(position):
    for g in (0.0, 37.5, 90.0, 140.0, 180.0, 220.0, 270.0, 359.25):
        assert gantry_angle_for(beam_direction_lps(g, 0.0, position), position) == g
    with pytest.raises(ValueError, match="couch angle"):
        gantry_angle_for(beam_direction_lps(90.0, 30.0, position), position)


def test_plans_the_file_cannot_express_are_refused(demo_plan, tmp_path):
    """A field of generic pencil beams (no machine: no nominal energies, no MU) and one whose spot x axis is not the
    IEC gantry X axis (different virtual source-axis distances in x and y: other rays) are refused, not written."""
    f = demo_plan.fields[0]
    generic = dataclasses.replace(demo_plan, fields=[dataclasses.replace(f, machine=None)])
    with pytest.raises(ValueError, match="generic pencil beams"):
        write_rtplan(generic, tmp_path / "a.dcm", study=PHANTOM_STUDY)
    c, s = np.cos(0.3), np.sin(0.3)
    ax, ay = f.axis_x, f.axis_y
    turned = dataclasses.replace(demo_plan, fields=[dataclasses.replace(f, axis_x=c * ax + s * ay)])
    with pytest.raises(ValueError, match="not along the IEC gantry X axis"):
        write_rtplan(turned, tmp_path / "b.dcm", study=PHANTOM_STUDY)
    with pytest.raises(ValueError, match="fractions"):
        write_rtplan(demo_plan, tmp_path / "c.dcm", study=PHANTOM_STUDY, fractions=0)
    # a field without a spot of positive weight: before (review 2026-12-05) written as a beam of 0 control points,
    # which mcproton's reader and dciodvfy refuse
    empty = dataclasses.replace(demo_plan, fields=[dataclasses.replace(f, weights=np.zeros(len(f.weights)))])
    with pytest.raises(ValueError, match="no spot with a weight above 0"):
        write_rtplan(empty, tmp_path / "d.dcm", study=PHANTOM_STUDY)
    assert not any(tmp_path.iterdir())


def test_a_study_without_uids_gets_new_ones_and_says_which(demo_plan, tmp_path):
    """PHANTOM_STUDY has no study or frame UIDs: the plan gets new ones, and returns them, so that the RT Dose and
    the RT Struct can be written in the same frame (before: not returned, a script's dose landed in another)."""
    import pydicom

    info = write_rtplan(demo_plan, tmp_path / "p.dcm", study=PHANTOM_STUDY,
                        structure_set_sop_instance_uid="1.2.826.0.1.3680043.8.498.1")
    ds = pydicom.dcmread(tmp_path / "p.dcm", stop_before_pixels=True)
    assert info["frame_of_reference_uid"] == ds.FrameOfReferenceUID != ""
    assert info["study_instance_uid"] == ds.StudyInstanceUID != ""


def test_the_prescription_and_each_beams_dose_are_written(demo_plan, tmp_path):
    """The plan's prescription as a TARGET dose reference (before 2026-12-06 the file had none, so a planning system
    or ``mcproton check`` of the demo had no prescription: V95/V100 fell back to the TPS median): Gy(RBE) for all
    fractions, of the target ROI when its number is given (VOLUME), else of the SITE; each beam's BeamDose (its
    share of the target's mean model dose, Gy(RBE) per fraction) adds up to the prescription within the model's
    mean (1e-3), and mcproton's own readers of the prescription take it."""
    import pydicom

    from mcproton._check.prescription import plan_dose_references
    from mcproton._run.inputs import plan_prescription

    rx = demo_plan.prescription_gy_rbe
    path = tmp_path / "rp_volume.dcm"
    info = write_rtplan(demo_plan, path, study=PHANTOM_STUDY.resolved(), fractions=FRACTIONS,
                        structure_set_sop_instance_uid="1.2.826.0.1.3680043.8.498.1", target_roi_number=1)
    ds = pydicom.dcmread(path)
    (dref,) = ds.DoseReferenceSequence
    assert (dref.DoseReferenceType, dref.DoseReferenceStructureType, int(dref.ReferencedROINumber)) == (
        "TARGET", "VOLUME", 1)
    assert dref.DoseReferenceDescription == demo_plan.target_name
    assert float(dref.TargetPrescriptionDose) == pytest.approx(rx * FRACTIONS, rel=1e-10)
    assert info["target_prescription_gy_rbe"] == pytest.approx(rx * FRACTIONS, rel=1e-10)
    refs = ds.FractionGroupSequence[0].ReferencedBeamSequence
    doses = [float(r.BeamDose) for r in refs]
    assert all(r.ReferencedDoseReferenceUID == dref.DoseReferenceUID and r.BeamDoseType == "EFFECTIVE"
               for r in refs)
    assert all(0.15 * rx < d < 0.6 * rx for d in doses)           # three fields, each a share of the dose
    assert sum(doses) == pytest.approx(rx * demo_plan.model_stats["dmean_rel"], rel=1e-6)
    assert sum(doses) == pytest.approx(rx, rel=1e-3)
    assert plan_dose_references(str(path)).items == [(1, pytest.approx(rx * FRACTIONS))]
    assert plan_prescription(path) == (pytest.approx(rx * FRACTIONS), FRACTIONS, 1)
    read_back(path)                                               # the reader has nothing to say about it
    # no ROI number: the SITE; an ROI number without its structure set, or not a number, refused
    site = tmp_path / "rp_site.dcm"
    write_rtplan(demo_plan, site, study=PHANTOM_STUDY.resolved(), fractions=2)
    (dref,) = pydicom.dcmread(site).DoseReferenceSequence
    assert dref.DoseReferenceStructureType == "SITE" and "ReferencedROINumber" not in dref
    assert float(dref.TargetPrescriptionDose) == pytest.approx(2 * rx, rel=1e-10)
    with pytest.raises(ValueError, match="structure_set_sop_instance_uid"):
        write_rtplan(demo_plan, tmp_path / "x.dcm", study=PHANTOM_STUDY.resolved(), target_roi_number=1)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="target_roi_number"):
            write_rtplan(demo_plan, tmp_path / "x.dcm", study=PHANTOM_STUDY.resolved(), target_roi_number=bad,
                         structure_set_sop_instance_uid="1.2.826.0.1.3680043.8.498.1")


def test_greek_plan_and_beam_names_round_trip(demo_plan, tmp_path):
    """A plan and a field named in Greek for a patient named in Latin letters (identity audit 24, F9): the writer
    decides the character set from every text element it writes, the beams' names in the IonBeamSequence included,
    so the file declares ISO_IR 192 and the names read back as written (before: ISO_IR 100, chosen from the
    patient's name, and '????? PF', '????? 1', with pydicom's warning of replacement characters)."""
    import pydicom

    plan = copy.deepcopy(demo_plan)
    plan.name = "Πλάνο PF"
    plan.fields[0].name = "Πεδίο 1"
    plan.target_name = "Όγκος"
    study = dataclasses.replace(PHANTOM_STUDY, patient_name="Smith^Anna", patient_id="S1").resolved()
    path = tmp_path / "rp_greek.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no "Failed to encode value" from pydicom
        write_rtplan(plan, path, study=study, fractions=FRACTIONS, label="PF",
                     structure_set_sop_instance_uid="1.2.826.0.1.3680043.8.498.1")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.RTPlanName == "Πλάνο PF" and ds.DoseReferenceSequence[0].DoseReferenceDescription == "Όγκος"
    assert str(ds.PatientName) == "Smith^Anna"
    back, _ = read_back(path)
    assert [b.name for b in back.beams][:1] == ["Πεδίο 1"] and back.label == "PF"

# ruff: noqa: F811 - the fixtures folder and patient are imported from test_check_pairing
"""How ``mcproton check`` reads the planning system's RT Dose where the file is odd (the RT Dose audit of
2026-12-05, 14c): a plan sum referencing two plans, an empty dose, compressed or float pixel data, an absolute
GridFrameOffsetVector that disagrees with ImagePositionPatient, beam and fraction-group references a plan dose should
not carry, a missing DoseType with --dose-type, a reused MC dose of other inputs, a ratio of the constant RBE, and
the MC RT Dose of one fraction.  Each spoils the pairing test's small patient folder (test_check_pairing) with
pydicom; only the pairing (``gather``) and the functions concerned run: no transport."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_pairing import folder, patient  # noqa: F401 - the pairing tests' patient folder, copied per test

from mcproton._check.inputs import CheckInputError, gather
from mcproton._io.errors import DicomInputError

OTHER_PLAN = "1.2.826.0.1.3680043.8.498.424242"


def _edit(path: Path, fn) -> Path:
    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path)
    return path


def _refused(match: str, **kw) -> str:
    with pytest.raises((CheckInputError, DicomInputError), match=match) as exc:
        gather(**kw)
    return str(exc.value)


def _plan_only(folder: Path) -> dict:
    """gather's arguments for the plan dose alone (the beam doses left out)."""
    return {"plan": folder / "RP.dcm", "dose": folder / "RD_plan.dcm", "ct": folder / "ct"}


# ---- F1: a plan sum


def _add_plan_ref(first: bool):
    def fn(ds):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.8"
        item.ReferencedSOPInstanceUID = OTHER_PLAN
        seq = list(ds.ReferencedRTPlanSequence)
        ds.ReferencedRTPlanSequence = [item] + seq if first else seq + [item]
    return fn


@pytest.mark.parametrize("other_first", [False, True])
@pytest.mark.parametrize("how", ["dose", "folder"])
def test_a_dose_referencing_two_plans_is_refused_as_a_plan_sum_naming_both(folder, patient, other_first, how):
    """Before: this plan first was compared as this plan's dose without a word (a plan + boost read as 0.667); the
    other plan first was refused as 'another plan's dose' / 'no RT Dose refers to the plan'."""
    _edit(folder / "RD_plan.dcm", _add_plan_ref(other_first))
    if how == "folder":   # the sum the only dose of the plan (beside the plan's own doses it is skipped: below)
        for p in folder.glob("RD_beam*.dcm"):
            p.unlink()
    kw = _plan_only(folder) if how == "dose" else {"folder": folder}
    msg = _refused("references 2 RT Plans", **kw)
    assert OTHER_PLAN in msg and patient["plan_uid"] in msg and "DoseSummationType PLAN" in msg
    assert "MULTI_PLAN" in msg and "another plan's dose" not in msg and "--dose" in msg


def _plan_sum(folder: Path, name: str = "RD_sum.dcm", other: str = OTHER_PLAN) -> Path:
    """A MULTI_PLAN dose of the folder's plan and plan ``other`` (a CSI plan sum), beside the plan's own doses."""
    from pydicom.uid import generate_uid

    def fn(ds):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.DoseSummationType = "MULTI_PLAN"
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.8"
        item.ReferencedSOPInstanceUID = other
        ds.ReferencedRTPlanSequence = list(ds.ReferencedRTPlanSequence) + [item]
    ds = pydicom.dcmread(folder / "RD_plan.dcm")
    fn(ds)
    ds.save_as(folder / name)
    return folder / name


def test_a_plan_sum_beside_the_plans_own_dose_is_skipped_and_named(folder, patient):
    """Audit 18 course F4: plan, its dose and the plan sum (cranial + spinal) were refused, "export this plan's own
    dose", although it was there; the sum is skipped with a note, as doses of other plans are."""
    _plan_sum(folder)
    inp = gather(folder=folder)
    assert Path(inp.total.path).name == "RD_plan.dcm" and sorted(inp.beams) == [1, 2]
    assert any(s.startswith(f"skipped RT Dose RD_sum.dcm: a plan sum of RP.dcm and {OTHER_PLAN}") and
               "MULTI_PLAN" in s and "not this plan's dose" in s for s in inp.pairing), inp.pairing


def test_the_plan_choice_does_not_count_a_plan_sum_as_a_plans_dose(folder, patient):
    """Both plans and the sum of them, only the first with its own doses: before, "2 RT Plans ... RP_b.dcm: RT
    Dose(s) RD_sum.dcm"; now the plan with doses is checked, the other skipped naming the sum."""
    from test_check_pairing import _plan

    other = _plan(folder / "RP_b.dcm", "b")
    _plan_sum(folder, other=other)
    inp = gather(folder=folder)
    assert Path(inp.plan_path).name == "RP.dcm" and Path(inp.total.path).name == "RD_plan.dcm"
    assert any(s.startswith("skipped RT Plan RP_b.dcm") and "plan sum" in s and "RD_sum.dcm" in s
               for s in inp.pairing), inp.pairing
    assert any(s.startswith("skipped RT Dose RD_sum.dcm: a plan sum of RP.dcm and RP_b.dcm") for s in inp.pairing)


# ---- F4: an empty dose


@pytest.mark.parametrize("what, said", [("zeros", "zero everywhere"), ("tiny", "all but zero")])
def test_an_empty_or_all_but_zero_tps_dose_is_refused_before_the_transport(folder, what, said):
    def fn(ds):
        if what == "zeros":
            ds.PixelData = bytes(len(ds.PixelData))
        else:
            ds.DoseGridScaling = "1e-30"
    _edit(folder / "RD_plan.dcm", fn)
    msg = _refused(said, **_plan_only(folder))
    assert "RD_plan.dcm" in msg and "maximum" in msg and "DoseGridScaling" in msg


# ---- F5, F6: compressed and float pixel data


def test_an_rle_compressed_dose_is_read_as_the_uncompressed_one(folder):
    from pydicom.uid import RLELossless

    from mcproton._io.rtdose import read_rtdose

    plain = read_rtdose(folder / "RD_plan.dcm")
    _edit(folder / "RD_plan.dcm", lambda ds: ds.compress(RLELossless))
    assert pydicom.dcmread(folder / "RD_plan.dcm").file_meta.TransferSyntaxUID == RLELossless
    rle = read_rtdose(folder / "RD_plan.dcm")
    assert np.array_equal(rle.dose_gy_zyx, plain.dose_gy_zyx) and rle.origin_mm == plain.origin_mm
    assert gather(**_plan_only(folder)).total is not None


def test_float_pixel_data_is_refused_for_what_it_is(folder):
    from mcproton._io.rtdose import read_rtdose

    def fn(ds):
        arr = ds.pixel_array.astype(np.float32) * float(ds.DoseGridScaling)
        del ds.PixelData
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
        ds.FloatPixelData = arr.tobytes()
    _edit(folder / "RD_plan.dcm", fn)
    with pytest.raises(DicomInputError, match=r"Float Pixel Data|FloatPixelData \(7FE0,0008\)") as exc:
        read_rtdose(folder / "RD_plan.dcm")
    assert "truncated" not in str(exc.value) and "RT Dose IOD" in str(exc.value)


# ---- F7: an absolute GridFrameOffsetVector that disagrees with ImagePositionPatient


@pytest.mark.parametrize("iop", [[1, 0, 0, 0, 1, 0], [-1, 0, 0, 0, 1, 0]])
def test_an_absolute_offset_vector_off_the_image_position_is_refused_head_first_and_feet_first(folder, iop):
    """Before: head-first placed from ImagePositionPatient without a word, feet-first refused."""
    from mcproton._io.rtdose import read_rtdose

    def fn(ds):
        ds.ImageOrientationPatient = iop
        z0 = float(ds.ImagePositionPatient[2]) + 10.0   # absolute z values starting 10 mm off
        step = 4.0 if iop[0] > 0 else -4.0
        ds.GridFrameOffsetVector = [z0 + step * k for k in range(int(ds.NumberOfFrames))]
    _edit(folder / "RD_plan.dcm", fn)
    with pytest.raises(DicomInputError, match="GridFrameOffsetVector starts at .* disagree by 10 mm"):
        read_rtdose(folder / "RD_plan.dcm")


def test_an_absolute_offset_vector_at_the_image_position_is_read(folder):
    from mcproton._io.rtdose import read_rtdose

    plain = read_rtdose(folder / "RD_plan.dcm")

    def fn(ds):
        z0 = float(ds.ImagePositionPatient[2])
        ds.GridFrameOffsetVector = [z0 + 4.0 * k for k in range(int(ds.NumberOfFrames))]
    _edit(folder / "RD_plan.dcm", fn)
    assert read_rtdose(folder / "RD_plan.dcm").origin_mm == plain.origin_mm


# ---- F8: beam and fraction-group references


def _beam_refs(beams, summation="PLAN", group=1):
    def fn(ds):
        fg = Dataset()
        fg.ReferencedFractionGroupNumber = group
        fg.ReferencedBeamSequence = []
        for b in beams:
            rb = Dataset()
            rb.ReferencedBeamNumber = b
            fg.ReferencedBeamSequence.append(rb)
        ds.DoseSummationType = summation
        ds.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence = [fg]
    return fn


@pytest.mark.parametrize("summation", ["PLAN", "FRACTION"])
def test_a_plan_dose_naming_one_beam_is_refused_and_one_naming_every_beam_noted(folder, summation):
    _edit(folder / "RD_plan.dcm", _beam_refs([1], summation))
    msg = _refused("names beam\\(s\\) \\[1\\] of the plan's \\[1, 2\\]", **_plan_only(folder))
    assert "per-beam dose with the wrong DoseSummationType" in msg
    _edit(folder / "RD_plan.dcm", _beam_refs([1, 2], summation))
    inp = gather(**_plan_only(folder))
    assert inp.total is not None and any("names every beam of the plan" in line for line in inp.pairing)


def test_a_beam_dose_of_every_beam_is_refused_without_contradicting_itself(folder):
    """Before: 'for beam(s) [1, 2], but the plan's beams are [1, 2]: it cannot be paired'."""
    _edit(folder / "RD_plan.dcm", _beam_refs([1, 2], "BEAM"))
    msg = _refused("several beams", **_plan_only(folder))
    assert "but the plan's beams are" not in msg and "all the plan's beams" in msg


def test_a_fraction_group_the_plan_does_not_have_is_noted(folder):
    _edit(folder / "RD_plan.dcm", _beam_refs([], "FRACTION", group=2))
    inp = gather(**_plan_only(folder))
    assert any("names fraction group 2, which the plan does not have" in line for line in inp.pairing), inp.pairing


# ---- F9: a missing DoseType with --dose-type


def test_a_missing_dose_type_is_read_as_the_dose_type_given(folder):
    _edit(folder / "RD_plan.dcm", lambda ds: delattr(ds, "DoseType"))
    msg = _refused("DoseType .* is missing", **_plan_only(folder))
    assert "--dose-type" in msg
    inp = gather(**_plan_only(folder), dose_type="physical")
    assert inp.dose_type == "PHYSICAL"
    assert any("as given" in line and "no DoseType" in line for line in inp.pairing), inp.pairing


# ---- F3: a reused MC dose of other inputs


def _mc_for(inp, **change):
    from mcproton._check.compute import MCDose, reuse_key

    key = reuse_key(inp)
    prov = {"tps_grid": key["tps_grid"], "fractions_computed": key["fractions"],
            "plan_sop_instance_uid": inp.plan.sop_instance_uid, **change}
    shape = tuple(prov["tps_grid"]["shape_zyx"])
    z = np.zeros(shape)
    return MCDose(z, {1: z, 2: z}, z, 0.01, 1, 0.0, "cpu", "cpu", prov, "")


def test_a_reused_mc_dose_of_another_grid_fractions_or_plan_is_refused(folder):
    """Before: another shape gave numpy's 'operands could not be broadcast'; a moved origin or all fractions
    against one were compared as they were."""
    from mcproton._check.api import _check_reused_mc_inputs

    inp = gather(**_plan_only(folder))
    _check_reused_mc_inputs(_mc_for(inp), inp)   # its own inputs: accepted
    # one fraction of a 5-fraction plan holds the dose of one fraction, as all of this 1-fraction plan: accepted
    _check_reused_mc_inputs(_mc_for(inp, fractions_computed={"number": 5, "all": False}), inp)
    grid = _mc_for(inp).provenance["tps_grid"]
    cases = {"grid is": {"tps_grid": {**grid, "shape_zyx": [grid["shape_zyx"][0] + 2] + grid["shape_zyx"][1:]}},
             "origin": {"tps_grid": {**grid, "origin_mm": [grid["origin_mm"][0] + 10.0] + grid["origin_mm"][1:]}},
             "voxel size": {"tps_grid": {**grid, "voxel_size_mm": [2.0, 2.0, 2.0]}},
             "holds all 5 fractions": {"fractions_computed": {"number": 5, "all": True}},
             "computed for the plan": {"plan_sop_instance_uid": OTHER_PLAN}}
    for said, change in cases.items():
        with pytest.raises(CheckInputError, match=f"not of this check's inputs: .*{said}"):
            _check_reused_mc_inputs(_mc_for(inp, **change), inp)


# ---- F2: a ratio of the constant RBE


@pytest.mark.parametrize("scale, rbe", [(1.1, 1.0), (1 / 1.1, 1.0), (1.1, 1.1), (1.2 * 1.1, 1.2)])
def test_a_ratio_of_the_constant_rbe_is_named(scale, rbe):
    from mcproton._check.api import _diagnose

    z, y, x = np.meshgrid(np.arange(12.0), np.arange(12.0), np.arange(12.0), indexing="ij")
    ref = np.exp(-((x - 6) ** 2 + (y - 6) ** 2 + (z - 6) ** 2) / 10.0)
    mc = SimpleNamespace(total_gy_zyx=scale * ref, beams_gy_zyx={1: scale * ref}, provenance={"rbe": rbe})
    notes = _diagnose(ref, mc, np.ones_like(ref, bool), [np.arange(12.0)] * 3, SimpleNamespace(fractions=1), {})
    if abs(scale - rbe) < 1e-9 or abs(scale - 1.1) < 1e-9 or abs(scale - 1 / 1.1) < 1e-9:
        assert any("the constant RBE" in n and "--dose-type" in n and "--rbe" in n for n in notes), notes
    else:
        assert not any("the constant RBE" in n for n in notes), notes


@pytest.mark.parametrize("scale", [1.05, 1.3, 0.8])
def test_other_ratios_are_not_called_the_rbe(scale):
    from mcproton._check.api import _diagnose

    ref = np.ones((4, 4, 4))
    mc = SimpleNamespace(total_gy_zyx=scale * ref, beams_gy_zyx={1: scale * ref}, provenance={"rbe": 1.0})
    notes = _diagnose(ref, mc, np.ones_like(ref, bool), [np.arange(4.0)] * 3, SimpleNamespace(fractions=1), {})
    assert any("x the TPS dose" in n for n in notes) and not any("constant RBE" in n for n in notes)


# ---- F10: the MC RT Dose of one fraction


def test_the_mc_rt_dose_of_one_fraction_says_so(folder, tmp_path):
    """Before: a FRACTION TPS dose read as one fraction (fractions = 'one') gave an MC file labelled FRACTION (the
    whole fraction group), which a viewer shows N times too low, with no word of the fraction in its comment."""
    from mcproton._check.mc_rtdose import write_mc_rtdoses

    _edit(folder / "RP.dcm", lambda ds: setattr(ds.FractionGroupSequence[0], "NumberOfFractionsPlanned", 5))
    _edit(folder / "RD_plan.dcm", _beam_refs([], "FRACTION"))
    inp = gather(**_plan_only(folder), fractions="one")
    assert inp.all_fractions is False and inp.fractions == 5
    mc = _mc_for(inp)
    mc.provenance.update(dose_to="water", rbe=1.0, beam_model="test")
    mc.beam_meta = {}
    written = write_mc_rtdoses(inp, mc, tmp_path / "out")
    plan = pydicom.dcmread(tmp_path / "out" / written["plan"]["file"], stop_before_pixels=True)
    assert plan.DoseSummationType == "FRACTION_SESSION" and "1 of 5 fx" in plan.DoseComment
    assert written["plan"]["dose_summation_type"] == "FRACTION_SESSION"

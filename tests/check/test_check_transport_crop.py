"""The check's transport grid holds the CT's slices that the TPS grid and the beams' way to it need, not the whole CT
(scale audit of 2026-12-07, F1: a 1 mm head grid on a head-and-torso CT made a transport grid of the whole CT and was
refused as needing 16.1 GB, "config error: the dose grid of 512 x 512 x 360 ..."), and the CT's memory is estimated
for its reading in load_ct_series and for its conversion where its form is known (F2: a CT that the check converts
in blocks was refused for a conversion at its own resolution).

The long case: the synthetic head (tests/check/synthetic_head.py) on a CT three times its length, a torso of soft
tissue below it, and the RT Dose over the head only (a third of the CT).  A few tens of thousands of primaries: the
transport grid, the memory checks and the dose's agreement with the whole CT's (same seed) are asserted, not
physics."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from synthetic_head import FOR, write_case  # noqa: E402

#: 252 slices of 2.5 mm (630 mm) on 96 x 96 pixels of 2.5 mm; the RT Dose (2.5 mm) over the head, 210 mm of it
LONG = {"shape_zyx": (252, 96, 96), "pixel_mm": 2.5, "slice_mm": 2.5, "dose_mm": 2.5, "torso": True}
PRIMARIES = 40_000


@pytest.fixture(scope="module")
def long_case(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("long"), **LONG)


def _inputs(case):
    from mcproton._check.inputs import gather

    with warnings.catch_warnings():   # "the check compares mcproton with itself": the synthetic RT Dose is mcproton's
        warnings.simplefilter("ignore")
        return gather(plan=case["plan"], dose=case["dose"], ct=case["ct"])


def _beams_of(plan_path):
    """The beams of the plan in ``plan_path`` as the check transports them (dcpt_v5)."""
    from mcproton._io.beam_model import load_beam_model
    from mcproton._io.rtplan import load_rtplan, plan_to_beams

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan_to_beams(load_rtplan(plan_path), load_beam_model("dcpt_v5"))


def _faces_z(g):
    lo = g.origin_mm[2] - g.voxel_size_mm[2] / 2
    return lo, lo + g.shape_zyx[0] * g.voxel_size_mm[2]


def test_transport_grid_holds_the_tps_z_range_and_a_margin_only(long_case, monkeypatch):
    """The geometry covers the TPS grid's z range + the margin (snapped to whole slices), its blocks are the whole
    CT's bit for bit, and the transport memory estimate drops with it: a memory between the two estimates refuses
    the whole CT's grid and takes the cropped one.  Before the fix the geometry was the whole CT (252 slices)."""
    from mcproton._check import compute
    from mcproton._check.crop import CROP_MIN_MARGIN_MM
    from mcproton._io.errors import McprotonEnvironmentError
    from mcproton._run import inputs as run_inputs

    inp = _inputs(long_case)
    ref = inp.reference
    _, beams = compute.plan_beams(inp, "dcpt_v5")
    record: dict = {}
    g, _, ct = compute.build_geometry(long_case["ct"], "schneider2000", ref, beams=beams, transport=record)
    g0, _, _ = compute.build_geometry(long_case["ct"], "schneider2000", ref)   # no beams: the whole CT, as before
    assert ct.shape_zyx == g0.shape_zyx == LONG["shape_zyx"]
    tps_lo = ref.origin_mm[2] - ref.voxel_size_mm[2] / 2
    tps_hi = tps_lo + ref.shape_zyx[0] * ref.voxel_size_mm[2]
    margin = record["margin_mm"]
    assert margin >= CROP_MIN_MARGIN_MM
    lo, hi = _faces_z(g)
    dz = LONG["slice_mm"]
    assert tps_lo - margin - dz < lo <= tps_lo - margin + 1e-6, (lo, tps_lo, margin)
    assert tps_hi + margin - 1e-6 <= hi < tps_hi + margin + dz, (hi, tps_hi, margin)
    assert g.shape_zyx[0] < 0.5 * ct.shape_zyx[0] and g.shape_zyx[1:] == ct.shape_zyx[1:]   # x, y whole
    first = record["ct_slices"][0] - 1
    assert record["cropped"] and record["shape_zyx"] == list(g.shape_zyx)
    assert record["ct_slices"] == [first + 1, first + g.shape_zyx[0]] and record["ct_slices_of"] == 252
    np.testing.assert_array_equal(g.density_g_cm3_zyx, g0.density_g_cm3_zyx[first:first + g.shape_zyx[0]])
    np.testing.assert_array_equal(g.material_index_zyx, g0.material_index_zyx[first:first + g.shape_zyx[0]])
    assert [m.name for m in g.materials] == [m.name for m in g0.materials]
    assert "the TPS grid's z range -105.0..105.0 mm" in record["said"] and "margin" in record["said"]
    # the memory: between the whole CT's least and the cropped one's (under an address-space limit: the tallies and
    # running sums it allocates; the refusal is of what cannot fit however little gets dose, audit 25 memory)
    whole = run_inputs.host_memory_least(g0.material_index_zyx.size)
    cropped = run_inputs.host_memory_least(g.material_index_zyx.size)
    assert cropped < 0.5 * whole
    monkeypatch.setattr(run_inputs, "available_memory",
                        lambda: run_inputs.Memory(0.5 * (whole + cropped), 0.0, "the test's limit", True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the > 80 % warning
        compute.check_transport_memory(g, 1, ref, record)
    with pytest.raises(McprotonEnvironmentError, match="the transport grid of 96 x 96 x 252"):
        compute.check_transport_memory(g0, 1, ref, None)


def test_the_dose_on_the_tps_grid_is_the_whole_cts(long_case, monkeypatch):
    """The check on the cropped CT against the same check on the whole CT (the crop switched off), same seed: the dose
    on the TPS grid agrees within its statistical uncertainty in every voxel above half the maximum (|difference| <
    3 standard errors of the difference, the two runs' stated uncertainties in quadrature) and in the mean over them
    (within 3 x the mean's standard error); measured: 1e-6 relative (the same histories, rounded differently)."""
    import mcproton._check.api as api
    import mcproton._check.crop as crop

    def run(log):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return api.check(plan=long_case["plan"], dose=long_case["dose"], ct=long_case["ct"], beam_model="dcpt_v5",
                             primaries=PRIMARIES, target_uncertainty=None, backend="cpu", gamma_points=200,
                             progress=False, log=log, seed=7)

    said: list[str] = []
    a = run(said.append)
    monkeypatch.setattr(crop, "transport_crop", lambda *args, **kw: None)
    b = run(lambda m: None)
    assert a.provenance["transport_grid"]["cropped"] and not b.provenance["transport_grid"]["cropped"]
    assert a.provenance["transport_grid"]["shape_zyx"][0] < 0.5 * b.provenance["transport_grid"]["shape_zyx"][0]
    assert [m for m in said if "the transport grid holds the CT's slices" in m]
    assert "the transport grid holds the CT's slices" in a.provenance["grid"]
    da, db = a.mc.total_gy_zyx, b.mc.total_gy_zyx
    sa, sb = a.mc.uncertainty_rel_zyx * da, b.mc.uncertainty_rel_zyx * db
    high = db > 0.5 * db.max()
    assert high.sum() > 100
    se = np.sqrt(sa ** 2 + sb ** 2)[high]
    assert np.all(np.abs(da - db)[high] < 3 * se)
    assert abs(float(da[high].mean() - db[high].mean())) < 3 * float(np.sqrt(np.sum(se ** 2))) / high.sum()


def test_nothing_removed_is_the_check_of_before_bit_for_bit(tmp_path, monkeypatch):
    """A CT no longer than the TPS grid + the margin: the crop removes nothing, and the check is bit for bit the one
    without the crop (the geometry, the MC doses, their uncertainty), with no log line of it."""
    import mcproton._check.api as api
    import mcproton._check.crop as crop

    case = write_case(tmp_path / "short", shape_zyx=(40, 96, 96), pixel_mm=2.5, slice_mm=2.5, dose_mm=2.5)

    def run(log):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return api.check(plan=case["plan"], dose=case["dose"], ct=case["ct"], beam_model="dcpt_v5",
                             primaries=20_000, target_uncertainty=None, backend="cpu", gamma_points=200,
                             progress=False, log=log, seed=11)

    said: list[str] = []
    a = run(said.append)
    monkeypatch.setattr(crop, "transport_crop", lambda *args, **kw: None)
    b = run(lambda m: None)
    tg = a.provenance["transport_grid"]
    assert not tg["cropped"] and tg["ct_slices"] == [1, 40] and "all 40 slices of the CT" in tg["said"]
    assert not [m for m in said if "transport grid" in m]
    assert a.provenance["grid"] == b.provenance["grid"]
    for x, y in ((a.mc.total_gy_zyx, b.mc.total_gy_zyx), (a.mc.uncertainty_rel_zyx, b.mc.uncertainty_rel_zyx),
                 *((a.mc.beams_gy_zyx[k], b.mc.beams_gy_zyx[k]) for k in b.mc.beams_gy_zyx)):
        assert np.array_equal(x, y)
    assert a.mc.primaries == b.mc.primaries


def _plan_file(tmp_path, beams):
    from dicom_factories import make_plan, save

    return save(make_plan(beams, frame_of_reference_uid=FOR), tmp_path / "RP.dcm")


def _ray_z_upstream(beams, ct_lo, ct_hi, tps_lo, tps_hi):
    """The z extent of every spot's central ray inside the CT box before it enters the TPS box (sampled every 0.5 mm,
    independently of the code's slab intersection)."""
    zs = []
    t = np.arange(-4000.0, 4000.0, 0.5)
    for b in beams:
        for s in b.spots:
            p, d = np.asarray(s.position_mm, float), np.asarray(s.direction, float)
            pts = p + t[:, None] * d / np.linalg.norm(d)
            in_ct = np.all((pts >= ct_lo) & (pts <= ct_hi), axis=1)
            in_tps = np.all((pts >= tps_lo) & (pts <= tps_hi), axis=1)
            before = np.arange(len(t)) < (np.argmax(in_tps) if in_tps.any() else len(t))
            zs.append(pts[in_ct & before, 2])
    z = np.concatenate(zs)
    return float(z.min()), float(z.max())


def _boxes(case):
    from mcproton._check.crop import _faces
    from mcproton._check.inputs import read_tps_dose
    from mcproton._io.ct import load_ct_series

    ct = load_ct_series(case["ct"])
    ref = read_tps_dose(case["dose"])
    return (*_faces(ct.origin_mm, ct.voxel_size_mm, ct.shape_zyx),
            *_faces(ref.origin_mm, ref.voxel_size_mm, ref.shape_zyx), ct, ref)


def test_a_couch_rotated_beam_keeps_its_way_in_upstream(long_case, tmp_path):
    """Gantry 60, couch 90: the beam comes from anterior-inferior, its spots' rays enter the CT ~100 mm below the TPS
    grid's z range; the crop keeps their way in (and, the beam not perpendicular to z, the CT on that side whole:
    crop.py), and the other side, beyond the TPS grid, is cropped to the margin."""
    from mcproton._check import compute
    from mcproton._check.crop import transport_crop

    from dicom_factories import spot_grid

    beams = _beams_of(_plan_file(tmp_path, [{"gantry": 60.0, "couch": 90.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
                                             "layers": [(150.0, spot_grid(3, 8.0), [1.0] * 9)]}]))
    ct_lo, ct_hi, tps_lo, tps_hi, ct, ref = _boxes(long_case)
    z_lo, z_hi = _ray_z_upstream(beams, ct_lo, ct_hi, tps_lo, tps_hi)
    assert z_lo < tps_lo[2] - 80   # the rays leave the TPS grid's z range upstream (by more than any margin)
    c = transport_crop(ct, ref, beams, compute.block_factors_for(ref.voxel_size_mm, ct.voxel_size_mm))
    assert c.z_mm[0] <= z_lo - c.margin_mm or c.first == 0
    assert c.first == 0 and c.upstream_whole == ["1"]   # from -z: the CT below kept whole
    assert c.stop < c.n_slices and c.z_mm[1] < tps_hi[2] + c.margin_mm + LONG["slice_mm"]
    assert c.paths_z_mm[0] <= z_lo + 0.5 and "not perpendicular to z" in c.said()
    # a beam at couch 0 aimed beside the TPS grid (isocentre 180 mm above it): its whole way through the CT is kept,
    # with the margin, and the CT beyond it cropped
    beams = _beams_of(_plan_file(tmp_path, [{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 180.0),
                                             "meterset": 10.0, "layers": [(120.0, spot_grid(3, 8.0), [1.0] * 9)]}]))
    z_lo, z_hi = _ray_z_upstream(beams, ct_lo, ct_hi, tps_lo, tps_hi)
    c = transport_crop(ct, ref, beams, (1, 1, 1))
    assert not c.upstream_whole and 0 < c.first and c.stop < c.n_slices
    assert c.z_mm[0] <= tps_lo[2] - c.margin_mm and c.z_mm[1] >= z_hi + c.margin_mm > 180.0 + c.margin_mm


def test_the_memory_refusal_names_the_transport_grid_and_what_to_do(long_case, tmp_path, monkeypatch, capsys):
    """Before: "mcproton: config error: the dose grid of 512 x 512 x 360 ... the check computes on the planning
    system's dose grid, which a config's voxel keys do not change" (exit 2), the whole CT named as the TPS grid and
    only more memory offered.  Now an environment error (exit 3) naming the transport grid, the CT slices it holds
    and why, its blocks, the TPS grid, and a coarser TPS grid or a shorter one as remedies."""
    from mcproton._run import inputs as run_inputs
    from mcproton.cli import main

    # enough for the CT's reading and conversion (a few MB), not for the transport's tallies and running sums (104 bytes
    # a voxel since 2026-12-08, allocated whole: under an address-space limit)
    monkeypatch.setattr(run_inputs, "available_memory",
                        lambda: run_inputs.Memory(0.05e9, 0.0, "the test's limit", True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["check", "--ct", str(long_case["ct"]), "--plan", str(long_case["plan"]), "--dose",
                   str(long_case["dose"]), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "out"),
                   "--primaries", "100", "--backend", "cpu", "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 3, err
    assert "config error" not in err and "config's voxel keys" not in err
    assert "the transport grid of 96 x 96 x 108 = 1.0 M voxels of 2.5 x 2.5 x 2.5 mm (1 beam) needs at least 0.1 GB " \
        "of memory (the tallies and running sums it allocates; up to about 0.4 GB where every voxel gets dose): " \
        "the CT's slices" in err
    assert "the CT's slices 73-180 of 252 (z -135.0..135.0 mm: the TPS grid's z range -105.0..105.0 mm" in err
    assert "blocks of 1 x 1 x 1 (the most CT voxels within the TPS grid's 2.5 x 2.5 x 2.5 mm voxels)" in err
    assert "the TPS grid is 64 x 76 x 84 voxels of 2.5 x 2.5 x 2.5 mm" in err
    assert "bounded by the test's limit: free memory" in err
    assert "export the TPS dose on a coarser grid (the transport blocks follow its voxels: 5 mm voxels would give " \
           "blocks of 2 x 2 x 2 CT voxels" in err
    assert "a TPS dose grid over a shorter length along z" in err


# ---------------------------------------------------------------------- F2: the CT's memory, reading and conversion
@pytest.fixture(scope="module")
def ct512(tmp_path_factory):
    """64 slices of 512 x 512 (16.8 M voxels) of the synthetic head (1.25 mm, 0.98 mm pixels; 2.5 mm TPS grid: blocks
    of 2 x 2 x 2)."""
    return write_case(tmp_path_factory.mktemp("ct512"), shape_zyx=(64, 512, 512))


def test_the_ct_read_counts_the_conversion_the_caller_makes(ct512, monkeypatch):
    """With the memory between the conversion in blocks and the conversion on the CT's own voxels first (the
    structure set's overrides, air outside the External): the check's geometry in blocks is made, the one with
    overrides refused before a pixel is read, and so ``mcproton run``'s geometry (phantom.dose_voxel_mm, with and
    without plan.outside_external = "air").  Before: load_ct_series counted the conversion at the CT's own
    resolution for every caller (2 + 7 bytes a voxel), so neither the check nor the run told the two apart (the scale
    audit's 1024 x 1024 x 800 CT, checked in 3.8 GB, was refused under 8 GB)."""
    from mcproton._check import compute
    from mcproton._check.inputs import read_tps_dose
    from mcproton._io import ct as ct_module
    from mcproton._io.errors import McprotonEnvironmentError
    from mcproton._run import inputs as run_inputs
    from mcproton.config import build_geometry as run_geometry

    from dicom_factories import make_rtstruct, rect_contour, save
    from test_ct_memory import _count_pixel_reads

    files = sorted(Path(ct512["ct"]).iterdir())
    read = ct_module.ct_memory_estimate([(None, pydicom.dcmread(files[0], stop_before_pixels=True))] * 64, 512, 512)
    blocks = ct_module.conversion_memory_estimate((64, 512, 512), (2, 2, 2))
    full = ct_module.conversion_memory_estimate((64, 512, 512), (2, 2, 2), full_resolution=True)
    assert read < 60e6 and blocks + 50e6 < full
    calls = _count_pixel_reads(monkeypatch)
    monkeypatch.setattr(run_inputs, "available_memory",
                        lambda: run_inputs.Memory(read + (blocks + full) / 2, 0.0, "the test's limit"))
    ref = read_tps_dose(ct512["dose"])
    warnings.simplefilter("ignore")   # the > 80 % warnings (restored by pytest after the test)
    g = compute.build_geometry(ct512["ct"], "schneider2000", ref)[0]
    assert g.shape_zyx == (32, 256, 256) and calls[0] == 64
    calls[0] = 0
    with pytest.raises(McprotonEnvironmentError, match=r"to be read \(0\.0 GB\) and converted to the transport "
                       r"geometry over all its slices, first on the CT's own voxels .*without the overrides on the "
                       r"CT's own voxels \(--struct-overrides ignore, --outside-external ct\) the conversion in blocks "
                       r"would need about 0\.3 GB"):
        compute.build_geometry(ct512["ct"], "schneider2000", ref, at_ct_resolution=lambda g: None)
    assert calls[0] == 0
    # mcproton run: blocks of 2 x 2 x 2 (phantom.dose_voxel_mm) read; with air outside the External (the geometry on
    # the CT's own voxels first) refused before the pixels
    ph = {"type": "ct", "ct_dir": str(ct512["ct"]), "dose_voxel_mm": [1.9532, 1.9532, 2.5]}
    assert run_geometry({"phantom": ph}).shape_zyx == (32, 256, 256) and calls[0] == 64
    calls[0] = 0
    rs = save(make_rtstruct({"External": [rect_contour(-100, 100, -100, 100, z) for z in (-30.0, 0.0, 30.0)]},
                            for_uid=FOR), Path(ct512["ct"]).parent / "RS.dcm")
    with pytest.raises(McprotonEnvironmentError, match=r"converted to the geometry in blocks of 2 x 2 x 2 CT voxels "
                       r"\(phantom.dose_voxel_mm\), first on the CT's own voxels"):
        run_geometry({"phantom": ph, "plan": {"rtstruct": str(rs), "outside_external": "air"}})
    assert calls[0] == 0


def test_the_margin_counts_a_range_shifters_scattering_as_the_generalised_highland():
    """The spread a range shifter adds at the CT (crop._shifter_sigma_mm, Fermi-Eyges with Gottschalk's scattering
    power) against the generalised Highland formula of validation/range_shifter_model.py (Gottschalk et al. 1993,
    the X0 of polycarbonate): within 10 % (measured +4-5 %) for dcpt_v5's RS_3CM at 75-150 MeV and drifts of 80-300
    mm; 0 where the protons stop in the slab."""
    from mcproton._check.crop import _shifter_sigma_mm
    from mcproton.planning.machine import _engine_stopping_table
    from mcproton.source import RangeShifterSlab
    from mcproton.validation.range_shifter_model import highland_sigma_added_mm

    rs = RangeShifterSlab("polycarbonate", 29.9, 1.2, 100.0)
    for e in (75.0, 110.0, 150.0):
        for drift in (80.0, 160.0, 300.0):
            ours = _shifter_sigma_mm({"shifter": [rs], "mean_energy": np.array([e])}, np.array([100.0 + 29.9 + drift]))
            ref = highland_sigma_added_mm(e, "polycarbonate", _engine_stopping_table("polycarbonate"), 1.2, 29.9, drift)
            assert ours[0] == pytest.approx(ref, rel=0.10), (e, drift)
    thick = RangeShifterSlab("pmma", 64.0, 1.19, 100.0)   # WET ~74 mm: 75 MeV (46 mm of range) stops in it
    assert _shifter_sigma_mm({"shifter": [thick], "mean_energy": np.array([75.0])}, np.array([500.0]))[0] == 0.0

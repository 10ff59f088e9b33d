"""A range shifter in the beam line (Spot.range_shifter): transported through the slab with the full physics, on
both backends (the ``backend`` fixture also runs the CUDA data flow through the fake CuPy).

Statistics: 6000 protons per run; the Gaussian core fit of a 4-8 mm spot is then good to ~1 % (1 sigma) and R80
to ~0.05 mm, well inside the tolerances (8 % against the generalised Highland formula, whose own accuracy is
~3-5 %; 0.3 mm for the range shift), so a false failure is < 1e-4.  A shifter that only lowered the energy (the
old model) gives the beam sigma 3.0 mm and fails the sigma checks by > 20 %.
"""
from __future__ import annotations

import numpy as np
import pytest

from mcproton.geometry import slab_phantom
from mcproton.run import simulate
from mcproton.settings import RunSettings
from mcproton.source import Beam, RangeShifterSlab, Spot
from mcproton.validation import range_shifter_model as model
from mcproton.validation.metrics import distal_range, gaussian_sigma
from mcproton.validation.reference import icru90_water, pstar, water_equivalent_thickness

E0 = 120.0
SIGMA0 = 3.0
PLANE_MM = 400.0   # source plane upstream of the phantom's front face (the "isocentre" plane)
PMMA_T, PMMA_RHO = 30.0, 1.19


def _geometry():
    # a 2 mm layer of water at 1/1000 density as the detector plane at the front face (it scatters nothing),
    # then water for the depth dose
    return slab_phantom([("water", 2.0, 0.001), ("water", 128.0)], (100.0, 100.0), (2.0, 2.0, 1.0))


def _run(backend, rs, n=6000, seed=11):
    g = _geometry()
    beam = Beam([Spot(E0, position_mm=(0.0, 0.0, -PLANE_MM), sigma_mm=(SIGMA0, SIGMA0), range_shifter=rs)])
    r = simulate(g, beam, RunSettings(primaries=n, seed=seed, backend=backend, threads=2, batches=4))
    prof = r.edep_mev_zyx[:2].sum(axis=(0, 1))
    sigma = gaussian_sigma(g.axis_mm("x"), prof, 0.1, 2.0)
    z, idd = r.integrated_depth_dose()
    return r, sigma, distal_range(z, idd, 0.8)


def _slab(gap_mm, material="pmma", t=PMMA_T, rho=PMMA_RHO):
    return RangeShifterSlab(material, t, rho, upstream_face_mm=PLANE_MM - gap_mm - t, id="RS", wet_mm=None)


def test_shifter_widens_the_spot_as_highland_predicts_and_shifts_the_range_by_its_wet(backend):
    r0, s0, r80_0 = _run(backend, None)
    assert s0 == pytest.approx(SIGMA0, rel=0.03)
    # 0.1 mm steps: 34.915575 mm, within 1e-7 mm of the default 0.01 mm, ten times fewer PCHIP look-ups
    wet, _ = water_equivalent_thickness(pstar("pmma"), PMMA_RHO, PMMA_T, E0, icru90_water(), step_mm=0.1)
    sig = {}
    for gap in (100.0, 300.0):
        r, s, r80 = _run(backend, _slab(gap))
        pred = model.predicted_sigma_mm(SIGMA0, E0, "pmma", pstar("pmma"), PMMA_RHO, PMMA_T, gap)
        assert s == pytest.approx(pred, rel=0.08), (gap, s, pred)
        sig[gap] = s
        assert r80_0 - r80 == pytest.approx(wet, abs=0.3), (r80_0, r80, wet)
        led = r.ledger
        assert led["shifter"] > 0 and led["shifter_removed"] > 0
        assert abs(led["imbalance_rel"]) < 1e-6
        # the energy lost in the slab: about the CSDA loss of the primaries (mean ~ E0 - E_out) plus those removed
        assert 0.1 < led["shifter"] / led["incident"] < 0.5
    # the drift term grows with the air gap
    assert sig[300.0] > sig[100.0] * 1.25


def test_shifter_material_joins_the_run_tables():
    g = _geometry()
    beam = Beam([Spot(E0, position_mm=(0.0, 0.0, -PLANE_MM), range_shifter=_slab(100.0, "lexan", 20.0, 1.2))])
    assert [m.name for m in beam.run_materials(g.materials)] == ["water", "polycarbonate"]
    a = beam.spot_array(["water", "polycarbonate"])
    assert a[0]["rs_material"] == 1 and a[0]["rs_thickness_cm"] == pytest.approx(2.0)
    assert a[0]["rs_face_cm"] == pytest.approx((PLANE_MM - 120.0) / 10)
    with pytest.raises(ValueError, match="not in the run's material list"):
        beam.spot_array(["water"])
    # without a material list (a fingerprint: the checkpoint's beams_hash): the beam's own shifter materials
    assert beam.spot_array()[0]["rs_material"] == 0
    from mcproton._run.checkpoint import beams_hash

    other = Beam([Spot(E0, position_mm=(0.0, 0.0, -PLANE_MM), range_shifter=_slab(300.0, "lexan", 20.0, 1.2))])
    assert beams_hash([beam]) != beams_hash([other])


@pytest.mark.parametrize("kw, msg", [({"thickness_mm": 0.0}, "thickness_mm must be positive"),
                                     ({"thickness_mm": -5.0}, "thickness_mm must be positive"),
                                     ({"density_g_cm3": 0.0}, "density_g_cm3 must be positive"),
                                     ({"upstream_face_mm": -1.0}, "downstream of the source plane")])
def test_bad_shifter_slab_refused(kw, msg):
    args = dict(material="pmma", thickness_mm=30.0, density_g_cm3=1.19, upstream_face_mm=10.0)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        RangeShifterSlab(**args)


def test_unknown_shifter_material_refused():
    with pytest.raises(ValueError, match="unknown material"):
        RangeShifterSlab("unobtainium", 30.0, 1.0, 10.0)


def test_provenance_names_the_shifter_model_and_slabs():
    g = _geometry()
    b = Beam([Spot(E0, position_mm=(0.0, 0.0, -PLANE_MM), range_shifter=_slab(100.0))])
    r = simulate(g, b, RunSettings(primaries=200, seed=1, backend="cpu", batches=2))
    assert r.provenance["range_shifter_model"] == "transport"
    assert r.provenance["range_shifters"] == ["RS: pmma 30.00 mm"]
    assert "pmma" not in r.provenance["materials"]     # the geometry's materials; the tables hold pmma too
    b = Beam([Spot(E0, position_mm=(0.0, 0.0, -PLANE_MM))], meta={"range_shifter_model": "energy_only"})
    r = simulate(g, b, RunSettings(primaries=200, seed=1, backend="cpu", batches=2))
    assert r.provenance["range_shifter_model"] == "energy_only" and r.provenance["range_shifters"] == []


def test_a_sum_of_beams_names_every_beams_shifter():
    """sum_results took the provenance of the first beam's result, so a plan whose first beam has no shifter said
    range_shifters = [] for a dose that holds one (audit 17 "noncoplanar" F2): the union, in either order, and each
    beam's own in its summed_beams item."""
    from mcproton.run import sum_results

    g = _geometry()
    s = RunSettings(primaries=200, seed=1, backend="cpu", batches=2)
    bare = simulate(g, Beam([Spot(E0, position_mm=(0.0, 0.0, -PLANE_MM))], name="bare"), s, beam_index=0)
    with_rs = simulate(g, Beam([Spot(E0, position_mm=(0.0, 0.0, -PLANE_MM), range_shifter=_slab(100.0))],
                               name="rs"), s, beam_index=1)
    for results in ([bare, with_rs], [with_rs, bare]):
        p = sum_results(results).provenance
        assert p["range_shifters"] == ["RS: pmma 30.00 mm"]
        per_beam = {b["name"]: b["range_shifters"] for b in p["summed_beams"]}
        assert per_beam == {"bare": [], "rs": [{"id": "RS", "material": "pmma", "thickness_mm": 30.0}]}


def test_real_plan_with_range_shifter_end_to_end(backend):
    """The Eclipse head-phantom plan (RS_5CM IN, DCPT model: 49.6 mm polycarbonate 275.5 mm from the isocentre)
    on a water box around the isocentre: every proton crosses the slab (the ledger's shifter entry), the energy
    balance closes, and the dose lies shallower than without the shifter by about its 57 mm WET."""
    from pathlib import Path

    from mcproton._io.beam_model import load_beam_model
    from mcproton._io.rtplan import load_rtplan, plan_to_beams
    from mcproton.geometry import box_phantom

    plan = load_rtplan(Path(__file__).resolve().parents[1] / "data" / "dicom" / "RN_headphantom_rs.dcm")
    model = load_beam_model("dcpt_v2")
    (b1,) = plan_to_beams(plan, model, beam_numbers=[plan.beams[0].number])
    (b0,) = plan_to_beams(plan, model, beam_numbers=[plan.beams[0].number], range_shifter_model="energy_only")
    d = np.asarray(b1.meta["beam_direction"])
    iso = np.asarray(b1.meta["isocenter_mm"])
    g = box_phantom("water", (240.0, 240.0, 240.0), (8.0, 8.0, 8.0),
                    origin_mm=tuple(iso - 120.0 + 4.0))
    depth_mean = {}
    for name, beam in (("transport", b1), ("energy_only", b0)):
        r = simulate(g, beam, RunSettings(primaries=1500, seed=2, backend=backend, threads=2, batches=2))
        led = r.ledger
        assert abs(led["imbalance_rel"]) < 1e-6 and led["errors"] == 0
        if name == "transport":
            assert led["shifter"] > 0.15 * led["incident"] and led["shifter_removed"] > 0
        else:
            assert led["shifter"] == 0
        e = r.edep_mev_zyx
        zz, yy, xx = np.meshgrid(*(g.axis_mm(a) for a in "zyx"), indexing="ij")
        along = (xx - iso[0]) * d[0] + (yy - iso[1]) * d[1] + (zz - iso[2]) * d[2]
        depth_mean[name] = float((e * along).sum() / e.sum())
    # both models shift the range by the same WET (the Bragg-Kleeman energy loss vs the transported slab):
    # the mean depth of the energy deposit agrees within a few mm (1500 protons, 8 mm voxels)
    assert depth_mean["transport"] == pytest.approx(depth_mean["energy_only"], abs=4.0), depth_mean
    assert r.provenance["range_shifter_model"] == "energy_only"


# --- the secondary protons of the shifter's nuclear events reach the patient (audit 28 "rsphys" F1) ---
RS_E, RS_T, RS_GAP, RS_WATER = 150.0, 64.0, 30.0, 30.0   # MeV, mm PMMA (75 mm WET), mm air gap, mm of water scored
VACUUM = 1e-7


def _slab_in_grid_vs_beam_line(n, seed, nuclear, backend="cpu"):
    """Energy deposited in water at 5-25 mm depth within the central 10 x 10 cm behind a 64 mm PMMA slab and a
    30 mm vacuum gap, by a 150 MeV pencil (3 mm sigma): A, the slab and the gap as voxels of the grid; B, the same
    slab in the beam line (RangeShifterSlab) upstream of a grid that starts at the water, so that the protons leaving
    the slab, its secondaries among them, fly across the 30 mm gap to the grid as in a patient plan (a slab over
    vacuum voxels of the grid, as this test had it before, lets them start in the grid at the slab's face and left
    that flight untested: re-read of 2026-12-07, F1).  By reciprocity the integral over the 10 x 10 cm area is the
    central-axis dose of a uniform 10 x 10 cm field."""
    vox = (50.0, 50.0, 1.0)
    out = {}
    for key in ("A", "B"):
        if key == "A":
            layers, z0, slab, iw = [("pmma", RS_T, PMMA_RHO), ("water", RS_GAP, VACUUM)], -100.0, None, RS_T + RS_GAP
        else:   # the slab from z = -94 to -30 mm, the grid's front face at z = 0
            layers, z0, iw = [], -100.0 - RS_T - RS_GAP, 0
            slab = RangeShifterSlab("pmma", RS_T, PMMA_RHO, upstream_face_mm=100.0)
        g = slab_phantom(layers + [("water", RS_WATER)], (300.0, 300.0), vox)
        beam = Beam([Spot(RS_E, position_mm=(0.0, 0.0, z0), sigma_mm=(3.0, 3.0), range_shifter=slab)])
        r = simulate(g, beam, RunSettings(primaries=n, seed=seed, backend=backend, threads=2, batches=2,
                                          physics={"nuclear": nuclear}), _shoots_through=True)
        iw = int(round(iw))
        out[key] = (float(r.edep_mev_zyx[iw + 5:iw + 25, 2:4, 2:4].sum()), r.ledger)
    return out


def test_shifter_entrance_dose_equals_the_same_slab_in_the_grid():
    """The shifter's nonelastic protons and slower p-p protons are carried to the patient: behind 75 mm WET at a
    30 mm gap the 10 x 10 cm field's dose at 5-25 mm depth equals the in-grid slab's within 1 %.  When they were
    dropped it was -4.9 +- 0.1 % (audit 28 "rsphys" F1; -5.4 / -4.6 % with this test's seeds 1 and 2 at 20 000 when
    slab B lay over vacuum voxels of the grid); a kernel that drops only the secondaries that must fly to the grid
    gives -5.19 % here (seed 7), and passed every test of this file before the slab moved upstream of the grid.
    Statistics: one run of 10^5 primaries gives B/A - 1 to ~0.2 % (1 sigma: -0.18, +0.17, +0.15 % with seeds 7, 1,
    2; the transported secondaries' residual, one generation in the slab and the infinite slab, is within that), so
    the 1 % tolerance is ~5 sigma (false failure ~1e-6 for another seed; seed 7 is fixed).  Control: without nuclear
    physics the two agree within 0.3 % (measured -0.06 %), so the comparison itself is sound."""
    off = _slab_in_grid_vs_beam_line(20_000, 7, nuclear=False)
    assert off["B"][0] / off["A"][0] - 1 == pytest.approx(0.0, abs=0.003)
    on = _slab_in_grid_vs_beam_line(100_000, 7, nuclear=True)
    rel = on["B"][0] / on["A"][0] - 1
    assert rel == pytest.approx(0.0, abs=0.01), f"B/A - 1 = {100 * rel:+.2f} % at 5-25 mm"


def test_shifter_secondaries_close_the_ledger(backend):
    """A shifter upstream of a grid of vacuum (nothing happens in the grid), its downstream face 30 mm before the
    grid's front: the secondary protons made in the slab leave it (ledger secondaries > 0, the nonelastic events'
    neutral energy counted as neutral, not in the shifter), fly to the grid and cross it (escaped; missed stays
    below 0.1 % of the incident energy: 0 measured, 1.16 % with a kernel that books the secondaries that must fly to
    the grid as missed), and the balance incident = escaped + missed + neutral + shifter closes: the energy they carry
    out of the slab is counted once.  Dropped, as before, secondaries and neutral were 0.  Before 2026-12-07 (re-read
    F1) this test's slab ended 4 mm past the 20 mm grid, so every proton missed it and the flight to the grid was
    never tested.  The counters as README and docs/physics.md describe them: `secondaries` includes the slab's,
    `nuclear_events` and `pp_elastic` count the grid's events only (none here, in vacuum, though the slab had both:
    review c of audit 28, R5)."""
    g = slab_phantom([("water", 20.0, VACUUM)], (400.0, 400.0), (50.0, 50.0, 10.0))
    beam = Beam([Spot(RS_E, position_mm=(0.0, 0.0, -100.0), sigma_mm=(3.0, 3.0),   # the slab: z = -94 to -30 mm
                      range_shifter=RangeShifterSlab("pmma", RS_T, PMMA_RHO, upstream_face_mm=100.0 - RS_T - RS_GAP))])
    r = simulate(g, beam, RunSettings(primaries=4000, seed=3, backend=backend, threads=2, batches=2),
                 _shoots_through=True)
    led = r.ledger
    assert abs(led["imbalance_rel"]) < 1e-6 and led["errors"] == 0 and led["deposited"] == 0
    # ~7.7 % of the primaries end in 64 mm PMMA at 150 MeV; each nonelastic event emits ~1 proton above the cut
    assert led["shifter_removed"] > 0.05 * led["primaries"]
    assert led["secondaries"] > 0.05 * led["primaries"] and led["neutral"] > 0
    assert led["nuclear_events"] == 0 and led["pp_elastic"] == 0
    # what leaves the slab reaches the 400 mm wide grid 30 mm downstream (a secondary misses it only beyond ~81 deg)
    assert led["escaped"] > 0.6 * led["incident"] and led["missed"] < 1e-3 * led["incident"], led
    out = led["escaped"] + led["missed"]
    assert out + led["shifter"] + led["neutral"] == pytest.approx(led["incident"], rel=1e-6)

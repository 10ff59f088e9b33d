"""End-to-end transport checks on the CPU (and the GPU where there is one).

Statistical tolerances are stated per test: they are at least 4 standard deviations of the estimate
(false-positive rate < 1e-4 per check) and far smaller than the errors of a wrong physics model
(e.g. omitting straggling changes the fall-off by > 50 %, a 1 % stopping-power error moves R80 by 0.8 mm
at 100 MeV).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from mcproton._backend import get_backend
from mcproton.geometry import box_phantom, slab_phantom
from mcproton.materials import get_material
from mcproton.run import simulate
from mcproton.settings import PhysicsSettings, RunSettings
from mcproton.source import Beam
from mcproton.validation.metrics import distal_range, falloff, peak_to_entrance
from mcproton.validation.reference import energy_at_depth, pstar, water_equivalent_thickness


def idd_run(energy, n, backend="cpu", depth_mm=None, voxel_z=0.5, seed=3, **phys):
    depth = depth_mm or round((10 * 0.0022 * energy**1.77 + 20) / voxel_z) * voxel_z   # whole voxels, as before
    g = box_phantom("water", (300, 300, depth), (300, 300, voxel_z))
    beam = Beam.pencil(energy, position_mm=(0, 0, -1), energy_spread_mev=3e-4 * energy)
    r = simulate(g, beam, RunSettings(primaries=n, seed=seed, backend=backend, batches=4,
                                      physics=PhysicsSettings(**phys)))
    return r


def topas_idd_on_bins(energy_label: float, z_centres: np.ndarray) -> np.ndarray:
    """The TOPAS reference IDD (validation/topas_idd) averaged over the simulation's depth bins."""
    from mcproton.validation.metrics import rebin_curve
    from mcproton.validation.reference import case_file, read_table

    tab, _ = read_table(case_file("topas_idd", "idd_mc_topas_matrad_generic_water_subset.csv"))
    sel = np.isclose(tab["spectrum_mean_MeV"], energy_label)
    assert sel.any()
    dz = np.diff(z_centres)
    edges = np.concatenate([[z_centres[0] - dz[0] / 2], z_centres[:-1] + dz / 2, [z_centres[-1] + dz[-1] / 2]])
    return rebin_curve(tab["depth_mm"][sel], tab["idd_MeVcm2_per_g_per_primary"][sel], edges)


def test_range_and_falloff_100mev_water(backend):
    """R80, fall-off and peak/entrance against the TOPAS reference (matRad generic, 99.965 MeV)."""
    r = idd_run(99.965, 100_000, backend)
    z, d = r.integrated_depth_dose()
    r80 = distal_range(z, d, 0.8)
    # TOPAS (99.965 MeV, sigma 0.03 %): R80 77.396 mm, R80-R20 1.125 mm (0.1 mm reference grid near the peak).
    # R80 statistical sd with 1e5 protons ~0.01 mm -> 0.3 mm tolerance is > 10 sd.
    assert abs(r80 - 77.396) < 0.3
    assert abs(falloff(z, d) - 1.125) < 0.25
    # Peak / IDD at 1 mm, both on the same 0.5 mm bins (TOPAS bin-averaged: 5.74).  Statistical sd of the ratio
    # with 1e5 protons ~0.6 % -> the 5 % criterion of the engine issue is > 8 sd.  Without nuclear elastic
    # scattering on oxygen the ratio was +6 % too high, so this check fails for that model error.
    ref = topas_idd_on_bins(99.965, z)
    ok = np.isfinite(ref)
    pe_ref = peak_to_entrance(z[ok], ref[ok], 1.0)
    assert pe_ref == pytest.approx(5.74, abs=0.02)
    assert abs(peak_to_entrance(z, d, 1.0) / pe_ref - 1) < 0.05
    # absolute IDD in the plateau per primary: entrance = electronic stopping power of 100 MeV (7.29 MeV cm2/g,
    # ICRU 90) plus the secondary build-up: within 3 %.
    assert abs(d[:4].mean() / 7.29 - 1) < 0.03


def test_energy_ledger_closes(backend):
    r = idd_run(150.0, 5_000, backend)
    led = r.ledger
    assert abs(led["imbalance_rel"]) < 1e-3
    assert led["errors"] == 0
    assert led["nuclear_events"] > 0 and led["neutral"] > 0
    # ~ 16 % of 150 MeV protons have a nonelastic event before stopping in water (ICRU 63): a plausibility window
    # only (binomial sd 0.005 with 5000 primaries: the window is 9 sd below and 16 sd above the measured 0.163-0.168);
    # the rate itself is held to ~4 % by test_nonelastic_event_rate_follows_the_cross_section_table
    frac = led["nuclear_events"] / led["primaries"]
    assert 0.12 < frac < 0.25


def test_nonelastic_event_rate_follows_the_cross_section_table():
    """The nonelastic events per primary of a 150 MeV beam stopping in water, over the probability that a primary
    has one on its CSDA path, 1 - exp(-integral of sigma_ne(E(z)) dz) from the engine's own cross-section table
    (mcproton._physics.nuclear, itself held to ICRU 63 by tests/physics/test_nuclear_tables.py) and the ICRU 90
    CSDA energy E(z): the kernel's null-collision sampling of that table.  The ratio is a little above 1 (secondary
    protons have events too): measured 1.0217, 1.0192, 1.0236 (seeds 1-3, 50 000 primaries; binomial sd of the
    ratio 0.010).  Window 0.98-1.065: over 4 sd from 1.021 on both sides (false-positive rate < 1e-4 for a fixed
    seed's reruns on another platform).  Mutation audit 29 F2: the kernel's hard-event test scaled by 0.9
    (transport.cu, COL_HARD_SIGMA) gave 0.763 and passed every other engine and physics test; a 10 % error of the
    nonelastic cross section alone would move the ratio by ~0.10, 10 sd."""
    from mcproton._physics.nuclear import nonelastic_tables
    from fakes import trapezoid   # tests/fakes.py
    from mcproton.validation.reference import icru90_water

    water, e0 = icru90_water(), 150.0
    z = np.linspace(0.0, float(water.csda_range(e0)) * 10, 4001)   # mm
    e = np.maximum(energy_at_depth(e0, z, water), 0.0)
    p_primary = 1 - np.exp(-trapezoid(nonelastic_tables("water", e)["sigma_cm2_g"], z / 10))   # rho 1 g/cm3
    assert 0.155 < p_primary < 0.165   # ICRU 63 water: ~16 % for 150 MeV
    g = box_phantom("water", (300, 300, 200), (300, 300, 2.0))
    r = simulate(g, Beam.pencil(e0, position_mm=(0, 0, -1)),
                 RunSettings(primaries=50_000, seed=1, backend="cpu", batches=4))
    ratio = r.ledger["nuclear_events"] / r.ledger["primaries"] / p_primary
    assert 0.98 < ratio < 1.065, ratio


def test_same_seed_same_dose_any_thread_count():
    g = box_phantom("water", (40, 40, 100), 2.0)
    beam = Beam.pencil(90.0, position_mm=(0, 0, -1), sigma_mm=(3, 3))
    doses = []
    for threads in (1, 2):
        r = simulate(g, beam, RunSettings(primaries=3000, seed=11, backend="cpu", threads=threads, batches=3))
        doses.append(r.dose_gy_zyx)
    assert np.array_equal(doses[0], doses[1])  # bitwise


def test_dose_independent_of_batch_split():
    g = box_phantom("water", (40, 40, 100), 2.0)
    beam = Beam.pencil(90.0, position_mm=(0, 0, -1), sigma_mm=(3, 3))
    a = simulate(g, beam, RunSettings(primaries=3000, seed=5, backend="cpu", batches=2))
    b = simulate(g, beam, RunSettings(primaries=3000, seed=5, backend="cpu", batches=7))
    c = simulate(g, beam, RunSettings(primaries=3000, seed=6, backend="cpu", batches=2))
    assert np.array_equal(a.dose_gy_zyx, b.dose_gy_zyx)
    assert not np.array_equal(a.dose_gy_zyx, c.dose_gy_zyx)


@pytest.mark.parametrize("material,thick_mm", [("bone_compact_icru", 20.0), ("titanium", 5.0),
                                               ("aluminium", 10.0)])
def test_slab_range_shift_matches_wet(material, thick_mm):
    """R80 shift behind a slab (2 cm compact bone; 5 mm titanium, like a spinal rod; 1 cm aluminium) = WET from
    the PSTAR tables within 0.5 mm."""
    e0 = 150.0
    n = 20_000
    vox = (300, 300, 0.5)
    water = slab_phantom([("water", 200.0)], vox[:2], vox)
    bone = slab_phantom([("water", 10.0), (material, thick_mm), ("water", 190.0 - thick_mm)], vox[:2], vox)
    beam = Beam.pencil(e0, position_mm=(0, 0, -1), energy_spread_mev=0.045)
    s = RunSettings(primaries=n, seed=2, backend="cpu", batches=4)
    r_w = distal_range(*simulate(water, beam, s).integrated_depth_dose())
    r_b = distal_range(*simulate(bone, beam, s).integrated_depth_dose())
    rho = get_material(material).density_g_cm3
    # energy at the slab entrance (10 mm water) from the CSDA table, then WET of the slab
    water_tab = pstar("water")
    e_in = float(energy_at_depth(e0, 10.0, water_tab))
    # 0.1 mm steps: within 1e-7 mm of the default 0.01 mm (bone 34.439227, titanium 16.114695, aluminium 21.107798),
    # ten times fewer PCHIP look-ups
    wet, _ = water_equivalent_thickness(pstar(material), rho, thick_mm, e_in, water_tab, step_mm=0.1)
    expected_shift = wet - thick_mm
    assert abs((r_w - r_b) - expected_shift) < 0.5, (r_w - r_b, expected_shift)


@pytest.mark.parametrize("energy", [70.0, 150.0, 230.0])
def test_letd_of_primaries_in_water_is_their_stopping_power(energy):
    """Without nuclear interactions only the primaries score: their LETd in water at depth z is 0.1 rho S_el(E(z))
    (keV/um; rho = 1 g/cm3, S_el in MeV cm2/g: ICRU 90 water of validation/stopping_power, E(z) the CSDA energy
    after z of water), the check tests/engine/test_let_air.py makes in air.  2 mm voxels from the surface to 80 %
    of the CSDA range, 2000 primaries: every voxel within 1 %.  Measured (seeds 1 and 2, with and without
    straggling): 0.9998-1.0032 at 70, 150 and 230 MeV, the highest at depth, where the energy spread makes the
    dose-weighted mean of S a little larger than S at the mean energy; the seed-to-seed change is below 0.05 %, so
    the margin is over 10 sd (false positive < 1e-6), and an LET off by 2 % in scale or unit fails (tests audit 21
    F7: the window below is a factor 2 wide)."""
    from mcproton.validation.reference import icru90_water

    water = icru90_water()
    depth = round(0.8 * float(water.csda_range(energy)) * 10 / 2.0) * 2.0
    g = box_phantom("water", (50, 50, depth), (50, 50, 2.0))
    r = simulate(g, Beam.pencil(energy, position_mm=(0, 0, -1)),
                 RunSettings(primaries=2000, seed=1, backend="cpu", batches=10, physics=PhysicsSettings(nuclear=False)))
    let = r.let_d_kev_um_zyx[:, 0, 0]
    z = (np.arange(let.size) + 0.5) * 2.0
    ratio = let / (0.1 * 1.0 * water.electronic(energy_at_depth(energy, z, water)))
    assert let.size >= 15 and np.all(np.abs(ratio - 1) < 0.01), np.round(ratio, 4)


def test_let_and_dose_to_water():
    g = slab_phantom([("water", 20.0), ("bone_compact_icru", 20.0), ("water", 150.0)], (60, 60), (60, 60, 1.0))
    beam = Beam.pencil(150.0, position_mm=(0, 0, -1))
    r = simulate(g, beam, RunSettings(primaries=4000, seed=1, backend="cpu", batches=4))
    let = r.let_d_kev_um_zyx[:, 0, 0]
    # entrance LET_d of 150 MeV protons in water: primaries have S_el = 5.44 MeV cm2/g (ICRU 90) = 0.544
    # keV/um; low-energy secondary protons from nonelastic events raise the dose average by ~50 % (the DCPT
    # code comparison, 160 MeV: LETd of primaries 0.64-0.91, of all protons 0.91-1.10 keV/um at 22.5 mm in
    # PMMA).  LETd is noisy (rare slow secondaries): average over the first 15 mm.  Measured 0.780, sd 0.020 over
    # seeds 1-20 (0.746-0.825): the window is the physics' (primaries alone to twice that), over 10 sd on each side;
    # the primaries' LETd itself is held to 1 % by test_letd_of_primaries_in_water_is_their_stopping_power
    assert 0.55 < let[2:17].mean() < 1.1
    # it rises towards the end of range (several keV/um in the distal fall-off): its largest voxel 16-56 keV/um
    # over seeds 1-20
    assert let[100:].max() > 3.0
    # dose to water / dose to medium in water voxels is 1, in bone the water/bone stopping-power ratio (~1.1)
    ratio = r.dose_to_water_gy_zyx[:26, 0, 0] / r.dose_gy_zyx[:26, 0, 0]   # beyond the range: 0/0
    assert np.allclose(ratio[:20], 1.0, atol=1e-3)
    assert 1.05 < ratio[25] < 1.15


def test_uncertainty_scales_with_primaries():
    g = box_phantom("water", (40, 40, 100), 2.0)
    beam = Beam.pencil(90.0, position_mm=(0, 0, -1), sigma_mm=(3, 3))
    u = [simulate(g, beam, RunSettings(primaries=n, seed=9, backend="cpu", batches=10)).mean_rel_uncertainty_50
         for n in (2000, 8000)]
    # 4x the primaries -> half the uncertainty (batch estimate with 10 batches: +-40 % scatter allowed)
    assert 0.3 < u[1] / u[0] < 0.75


def test_physics_switches_change_the_result():
    """Straggling widens the fall-off; without nuclear interactions no secondaries or neutral energy."""
    r_no = idd_run(100.0, 4000, straggling=False, nuclear=False)
    r_full = idd_run(100.0, 4000)
    z, d_no = r_no.integrated_depth_dose()
    _, d_full = r_full.integrated_depth_dose()
    assert falloff(z, d_no) < 0.6 * falloff(z, d_full)
    assert r_no.ledger["secondaries"] == 0 and r_no.ledger["neutral"] == 0
    assert peak_to_entrance(z, d_no) > 1.2 * peak_to_entrance(z, d_full)


def test_beam_missing_grid_deposits_nothing():
    g = box_phantom("water", (20, 20, 20), 2.0)
    beam = Beam.pencil(100.0, position_mm=(100, 0, -1))
    from mcproton import McprotonRuntimeWarning

    with pytest.warns(McprotonRuntimeWarning, match="every spot of beam 'pencil 100 MeV' misses the phantom"):
        r = simulate(g, beam, RunSettings(primaries=200, backend="cpu", batches=2))
    assert r.dose_gy_zyx.max() == 0.0
    assert r.ledger["missed"] == pytest.approx(r.ledger["incident"])


@pytest.mark.gpu
def test_cpu_gpu_agree_statistically():
    """Chi-square of the batch-estimated voxel doses: alpha = 1e-4 (one documented rerun allowed)."""
    from scipy import stats

    g = box_phantom("water", (40, 40, 100), 2.0)
    beam = Beam.pencil(90.0, position_mm=(0, 0, -1), sigma_mm=(3, 3))
    s = dict(primaries=200_000, seed=1, batches=10)
    a = simulate(g, beam, RunSettings(backend="cpu", **s))
    b = simulate(g, beam, RunSettings(backend="cuda", **s | {"seed": 2}))
    m = a.dose_gy_zyx > 0.1 * a.dose_gy_zyx.max()
    sa = a.uncertainty_rel_zyx[m] * a.dose_gy_zyx[m]
    sb = b.uncertainty_rel_zyx[m] * b.dose_gy_zyx[m]
    chi2 = np.sum((a.dose_gy_zyx[m] - b.dose_gy_zyx[m]) ** 2 / (sa**2 + sb**2))
    assert stats.chi2.sf(chi2, m.sum()) > 1e-4


def test_thin_low_density_layer_shifts_range_by_its_wet():
    """470 mm of air before water shifts R80 by its water-equivalent thickness (~0.50 mm at 160 MeV: PSTAR
    air/water stopping-power ratio 0.88 x 1.205e-3 g/cm3 x 470 mm).  Clipped Gaussian straggling in thin
    steps used to inflate the loss in air three-fold (1.5 mm); statistical sd of the difference ~0.04 mm.  The
    reference WET is integrated in 1 mm steps: the proton loses 0.26 MeV of 160 in the air, so the integrand is
    flat and the 0.01 mm default (47,000 steps, each building three PCHIP interpolants: 20-50 s of this test's
    time) gives the same 0.50090 mm to 1e-15 mm."""
    vox = (300, 300, 1.0)
    beam = Beam.pencil(160.0, position_mm=(0, 0, -1))
    s = RunSettings(primaries=20_000, seed=3, backend="cpu", batches=4)
    r_w = distal_range(*simulate(slab_phantom([("water", 220.0)], vox[:2], vox), beam, s).integrated_depth_dose())
    r_a = distal_range(*simulate(slab_phantom([("air", 470.0), ("water", 220.0)], vox[:2], vox), beam,
                                 s).integrated_depth_dose()) - 470.0
    rho = get_material("air").density_g_cm3
    wet, _ = water_equivalent_thickness(pstar("air"), rho, 470.0, 160.0, pstar("water"), step_mm=1.0)
    assert abs((r_w - r_a) - wet) < 0.2, (r_w - r_a, wet)


def test_single_batch_gives_no_uncertainty_not_zero():
    """One statistical batch (batch_size >= primaries, or an early stop after the first batch) cannot estimate
    a standard error: the uncertainty must be NaN where there is dose, not a false 0 %."""
    g = box_phantom("water", (40, 40, 100), 2.0)
    beam = Beam.pencil(90.0, position_mm=(0, 0, -1), sigma_mm=(3, 3))
    r = simulate(g, beam, RunSettings(primaries=500, seed=1, backend="cpu", threads=1, batch_size=5000))
    assert r.provenance["batches"] == 1
    dosed = r.dose_gy_zyx > 0
    assert dosed.any()
    assert np.isnan(r.uncertainty_rel_zyx[dosed]).all()
    assert (r.uncertainty_rel_zyx[~dosed] == 0).all()
    assert np.isnan(r.mean_rel_uncertainty_50)


def test_beams_of_a_plan_have_independent_random_streams():
    """Two identical beams must not repeat each other's histories (their errors are added in quadrature)."""
    from mcproton.run import Simulation

    g = box_phantom("water", (40, 40, 60), 2.0)
    beam = Beam.pencil(70.0, position_mm=(0, 0, -1), sigma_mm=(3, 3))
    s = RunSettings(primaries=500, seed=3, backend="cpu", batches=2)
    a = Simulation(g, beam, s, beam_index=0).run_histories(0, 500)["edep"]
    b = Simulation(g, beam, s, beam_index=1).run_histories(0, 500)["edep"]
    a2 = Simulation(g, beam, s, beam_index=0).run_histories(0, 500)["edep"]
    assert np.array_equal(a, a2) and not np.array_equal(a, b)


def test_let_stays_physical_across_many_material_faces():
    """LETd is finite, >= 0 and below the largest electronic stopping power of the materials in every voxel,
    in a stack of thin water / PMMA / bone slabs with 0.5 mm voxels (many steps end at a face a few nm away).
    The earlier per-step LET, (E - E(R - rho s)) / s, turned float rounding on such steps into LETs of
    +-1e12 keV/um in every run of this set-up (it overflowed the fixed-point LET tally)."""
    layers = []
    for _ in range(10):
        layers += [("water", 3.0), ("pmma", 2.0), ("bone_compact_icru", 1.0)]
    g = slab_phantom(layers, (40.0, 40.0), (1.0, 1.0, 0.5))
    r = simulate(g, Beam.pencil(100.0, position_mm=(0.1, 0.2, -1), sigma_mm=(5, 5)),
                 RunSettings(primaries=50_000, seed=0, backend="cpu", batches=2), progress=False)
    let = r.let_d_kev_um_zyx
    assert np.all(np.isfinite(let)) and let.min() >= 0.0
    # compact bone (1.85 g/cm3) at the Bragg maximum of its stopping power: < 150 keV/um
    assert let.max() < 150.0
    # where protons deposit in the plateau LET is that of ~60-100 MeV protons (0.7-1.5 keV/um); check the mean
    d = r.dose_gy_zyx
    plateau = let[:40][d[:40] > 0.2 * d.max()]
    assert 0.5 < float(np.median(plateau)) < 2.0


#: a seed whose first random number of history 0, track 0 (the primary's nuclear mean-free-path sample) is u == 1
#: exactly: -log(u) = 0 (found by searching Philox4x32-10 keys; the audit of 2026-12-07, edges F1)
_SEED_U_EQUALS_1 = 16390493


@pytest.mark.parametrize("material,energy,voxel_mm,max_step_mm", [("graphite", 4.0, 10.0, None),
                                                                   ("air", 2.5, 10.0, None),
                                                                   ("air", 2.5, 1.0, 1.0)])
def test_zero_nuclear_sample_below_the_threshold_of_a_hydrogen_free_material(backend, material, energy, voxel_mm,
                                                                             max_step_mm):
    """A nuclear mean-free-path sample of exactly 0 (u == 1, once in 2^24 draws) in a material without hydrogen
    below its nuclear thresholds (no hard nuclear cross section: graphite below 4.9 MeV, air below 2.95 MeV):
    the step limit was 0/0 = NaN, and the track took 200,000 zero-length steps to the step limit, then counted a
    numerical error ("Please report this").  Now it has no nuclear limit there and stops in a few steps."""
    b = get_backend("cpu")
    probe = np.array([[0, 0, 0, 0, _SEED_U_EQUALS_1 & 0xFFFFFFFF, _SEED_U_EQUALS_1 >> 32]], np.uint32)
    out = b.zeros(4, np.uint32)
    b.launch("mcp_probe_philox", 1, b.asarray(probe.reshape(-1)), out, 1)
    assert int(b.to_host(out)[0]) >> 8 == 0xFFFFFF, "the seed no longer gives u == 1 as its first draw"
    g = box_phantom(material, (100, 100, 200), voxel_mm)
    phys = PhysicsSettings(**({"max_step_mm": max_step_mm} if max_step_mm else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one primary: one batch, no uncertainty
        r = simulate(g, Beam.pencil(energy, position_mm=(0.3, 0.3, -10)),
                     RunSettings(primaries=1, backend=backend, threads=1, seed=_SEED_U_EQUALS_1, physics=phys),
                     log=None)
    assert r.ledger["errors"] == 0
    assert r.ledger["steps"] < 100, r.ledger["steps"]
    assert r.ledger["deposited"] == pytest.approx(energy, rel=1e-6)

"""Example PBS plans: the analytical kernel, WET ray tracing, spot generation and the optimisation."""
import numpy as np
import pytest

from fakes import trapezoid   # tests/fakes.py
from mcproton import planning as P
from mcproton.geometry import box_phantom, slab_phantom
from mcproton.phantoms import make_head_phantom
from mcproton.phantoms import reference_plans as RP
from mcproton.phantoms.generator import make_head_phantom as generate


@pytest.fixture(scope="module")
def csi8():
    """The 5-year-old neuraxis phantom at 8 mm, its craniospinal target and a coarse craniospinal plan (50
    iterations, 1500 points, spots on an 8 mm grid; 10-30 s on 2 cores): one plan for the plan's and the field
    geometry's tests.  The phantom from the generator (mcproton.phantoms.make_head_phantom's, without its warnings:
    at 8 mm their comparison with the 1 mm phantom, 5-12 s for a neuraxis, is tested in test_phantom_coverage.py).
    50 iterations, not 150 (until 2026-12-07): the model's D95 0.9972 and Dmean 0.9999 instead of 0.9996 and
    1.0000, far inside the test's 0.95 and 2 %, in half the time (the optimiser's fixed set-up is ~5 s)."""
    g = generate(5, 8.0, region="neuraxis")
    parts = RP.craniospinal_target(g)
    return g, parts, RP.craniospinal_plan(g, iterations=50, max_points=1500, spot_spacing_mm=8.0)


def test_range_energy_and_bortfeld_curve():
    r100 = float(P.water_range_mm(100.0))
    assert 75 < r100 < 79                                   # ICRU 90 CSDA range of 100 MeV: ~77 mm
    assert float(P.energy_for_range_mm(r100)) == pytest.approx(100.0, rel=1e-4)
    z = np.linspace(0, 1.1 * r100 / 10, 2000)
    idd = P.bortfeld_idd(z, 100.0, 0.8)
    assert np.all(np.isfinite(idd)) and idd.min() >= 0
    zpk = z[np.argmax(idd)] * 10
    assert r100 - 4 < zpk < r100                            # peak just before the range
    assert 3.0 < idd.max() / idd[0] < 5.0                   # peak-to-entrance ratio of a pristine peak
    assert trapezoid(idd, z) == pytest.approx(100.0, rel=0.08)   # ~ all energy deposited
    assert np.max(np.abs(np.diff(idd))) < 0.02 * idd.max()   # continuous across the plateau/peak switch


def test_wet_through_slabs():
    g = slab_phantom([("water", 20.0), ("G4_BONE_COMPACT_ICRU", 10.0), ("water", 20.0)], (40, 40), 2.0)
    rsp = P.relative_stopping_power(g)
    assert rsp[0].mean() == pytest.approx(1.0, abs=0.01)
    pts = np.array([[0.0, 0.0, 45.0]])
    wet = P.water_equivalent_depth(g, rsp, pts, (0, 0, 1))
    expected = 20.0 + 10.0 * float(rsp[12].mean()) + 15.0
    assert wet[0] == pytest.approx(expected, abs=1.5)
    wet_back = P.water_equivalent_depth(g, rsp, pts, (0, 0, -1))   # from the far side
    assert wet_back[0] == pytest.approx(5.0, abs=1.5)


@pytest.mark.parametrize("voxel_mm", [2.0, 2.5, 3.0])
def test_wet_of_a_water_box_is_the_depth_of_each_voxel_centre(voxel_mm):
    """Water touches the grid's front face (z = lower corner): the WET of every voxel centre is its depth below the
    face.  Before 2026-12-06 the last midpoint sample counted a whole step: 2.5 mm voxels read +-0.25 mm, 3 mm ones
    +0.50 mm at every centre (review 3 F1)."""
    g = box_phantom("water", (60, 60, 120), voxel_mm)
    rsp = P.relative_stopping_power(g)
    m = np.zeros(g.shape_zyx, bool)
    m[:, 5, 7] = True
    pts = P.voxel_centres_mm(g, m)
    depth = pts[:, 2] - g.lower_corner_mm[2]
    assert np.abs(P.water_equivalent_depth(g, rsp, pts, (0, 0, 1)) - depth).max() < 1e-6
    back = g.lower_corner_mm[2] + g.extent_mm[2] - pts[:, 2]           # from the far face
    assert np.abs(P.water_equivalent_depth(g, rsp, pts, (0, 0, -1)) - back).max() < 1e-6
    for step in (0.7, 2.0):                                             # any step: the integral ends at the face
        assert np.abs(P.water_equivalent_depth(g, rsp, pts, (0, 0, 1), step_mm=step) - depth).max() < 1e-6


def test_wet_through_slabs_is_the_line_integral():
    """Water 20 mm / compact bone 10 mm / water 70 mm from the grid's face z = 0: the WET is the hand integral
    (the RSP is linear between voxel centres, so a point off the interfaces' voxel pairs reads the sharp slabs'
    integral, and with steps that divide the 2 mm voxel the midpoint rule's errors at the two bends of an interface
    cancel); before, z = 50.5 read +0.5 mm with 1 mm steps (the last sample counted a whole step)."""
    g = slab_phantom([("water", 20.0), ("G4_BONE_COMPACT_ICRU", 10.0), ("water", 70.0)], (100, 100), 2.0)
    rsp = P.relative_stopping_power(g)
    rb = float(rsp[14, 25, 25])
    assert 1.6 < rb < 1.8 and g.lower_corner_mm[2] == 0.0

    def exact(z):
        return min(z, 20.0) + rb * min(max(z - 20.0, 0.0), 10.0) + max(z - 30.0, 0.0)

    zs = [0.3, 10.0, 17.5, 22.2, 25.0, 28.9, 31.0, 45.0, 50.5, 77.7, 99.6]
    pts = np.array([[0.3, -0.2, z] for z in zs])
    for step in (1.0, 0.5, 0.25):
        wet = P.water_equivalent_depth(g, rsp, pts, (0, 0, 1), step_mm=step)
        assert wet == pytest.approx([exact(z) for z in zs], abs=1e-4), step


def test_wet_of_oblique_beams_is_the_line_integral():
    """45 degrees in the x-z plane.  A water box entered through its side face or its front face: the path length
    (sqrt 2 x the distance to the nearer face) exactly.  The slabs: sqrt 2 x the hand integral, within the midpoint
    rule's error where the trilinear RSP bends between samples (an interface crossed obliquely: 0.015 mm at 1 mm
    steps); before, -0.14 mm at z = 10 and +0.44 mm at z = 40."""
    d = np.array([1.0, 0.0, 1.0]) / np.sqrt(2.0)
    g = box_phantom("water", (60, 60, 120), 3.0)
    rsp = P.relative_stopping_power(g)
    lo = g.lower_corner_mm
    pts = np.array([[-25.5, 1.5, 40.5], [-10.5, -4.5, 7.5], [4.5, 0.0, 100.5], [28.5, 28.5, 118.5]])
    hand = np.sqrt(2.0) * np.minimum(pts[:, 0] - lo[0], pts[:, 2] - lo[2])
    assert {bool(a < b) for a, b in zip(pts[:, 0] - lo[0], pts[:, 2] - lo[2])} == {True, False}   # both faces
    assert np.abs(P.water_equivalent_depth(g, rsp, pts, d) - hand).max() < 1e-6

    g = slab_phantom([("water", 20.0), ("G4_BONE_COMPACT_ICRU", 10.0), ("water", 70.0)], (100, 100), 2.0)
    rsp = P.relative_stopping_power(g)
    rb = float(rsp[14, 25, 25])
    zs = np.array([10.0, 25.0, 40.0, 45.3])
    wet = P.water_equivalent_depth(g, rsp, np.stack([0 * zs, 0 * zs, zs], axis=1), d)
    hand = np.sqrt(2.0) * (np.minimum(zs, 20.0) + rb * np.clip(zs - 20.0, 0.0, 10.0) + np.clip(zs - 30.0, 0.0, None))
    assert np.abs(wet - hand).max() < 0.03


def test_gantry_directions():
    assert np.allclose(P.gantry_direction(0), [0, 1, 0])      # from anterior, travelling posterior (+y)
    assert np.allclose(P.gantry_direction(180), [0, -1, 0])
    assert np.allclose(P.gantry_direction(90), [-1, 0, 0])    # from the patient's left


def test_sobp_in_water_is_uniform():
    """Single field on a water box: the optimiser flattens the analytical dose on a cube target."""
    g = box_phantom("water", (60, 60, 120), 3.0)
    Z, Y, X = np.meshgrid(*(g.axis_mm(a) for a in "zyx"), indexing="ij")
    tgt = (np.abs(X) <= 12) & (np.abs(Y) <= 12) & (Z >= 40) & (Z <= 70)
    plan = P.optimise_plan("box", g, tgt, [{"name": "f", "direction": (0, 0, 1), "layer_spacing_mm": 4.0}],
                           prescription_gy_rbe=1.1)
    assert plan.prescription_gy == pytest.approx(1.0)
    f = plan.fields[0]
    assert f.n_layers >= 6
    assert 35 < P.water_range_mm(f.energy_mev.min()) < 45 and 67 < P.water_range_mm(f.energy_mev.max()) < 74
    assert plan.model_stats["within_5pct"] > 0.95
    # each field's mean model dose (the RT Ion Plan's BeamDose) adds up to the plan's (mutation audit 32, P8: the
    # fields' maxima passed every test)
    st = plan.model_stats
    assert sum(st["field_mean_dose_gy"]) == pytest.approx(st["dmean_rel"] * plan.prescription_gy, rel=1e-6)
    b = plan.beam()
    assert b.total_protons == pytest.approx(f.weights.sum())
    assert all(s.position_mm[2] < g.lower_corner_mm[2] for s in b.spots)   # sources outside the grid


def test_optimise_plan_takes_another_dose_model():
    """The dose-model seam of the optimiser (e.g. for Monte Carlo influence matrices): a model that gives
    twice the analytical dose gives exactly half the protons (the matrix is rescaled by its maximum, a power
    of 2 apart, so the iteration is bitwise the same) and names itself in the plan's statistics."""
    g = box_phantom("water", (30, 30, 60), 3.0)
    Z, Y, X = np.meshgrid(*(g.axis_mm(a) for a in "zyx"), indexing="ij")
    tgt = (np.abs(X) <= 6) & (np.abs(Y) <= 6) & (Z >= 10) & (Z <= 25)
    calls = []

    class Doubled:
        description = "twice the analytical kernel"

        def __call__(self, field_, points_mm, wet_mm, dose_factor=None, *, wet_offsets_mm=None):
            calls.append(field_.name)
            return 2 * P.influence_matrix(field_, points_mm, wet_mm, dose_factor,
                                          wet_offsets_mm=wet_offsets_mm)

    spec = [{"name": "f", "direction": (0, 0, 1), "layer_spacing_mm": 4.0}]
    ref = P.optimise_plan("box", g, tgt, spec, iterations=60)
    two = P.optimise_plan("box", g, tgt, spec, iterations=60, dose_model=Doubled())
    assert calls == ["f"]
    assert ref.model_stats["kernel"] == P.ANALYTICAL_KERNEL
    assert two.model_stats["kernel"] == "twice the analytical kernel"
    assert two.total_protons == pytest.approx(ref.total_protons / 2, rel=1e-6)


def test_posterior_fossa_plan_on_phantom(demo_plan_4mm):
    head4, plan = demo_plan_4mm     # RP.posterior_fossa_plan(make_head_phantom(5, 4.0, region="head")) (conftest.py)
    assert plan.prescription_gy == pytest.approx(1.8 / 1.1)
    tgt = plan.target_mask_zyx
    assert 45 < tgt.sum() * head4.voxel_volume_cm3 < 90           # tumour bed + 1.5 cm in the posterior fossa
    lab = head4.labels_zyx[tgt]
    skull = [i for i, n in head4.label_names.items() if n in ("skull", "body")]
    assert not np.isin(lab, skull).any()
    assert len(plan.fields) == 3
    for f in plan.fields:
        assert f.direction[1] < 0                                  # all from posterior
        # the clinical machine (dcpt_v5, 70-244 MeV): its energies only, with its 34.3 mm WET shifter, because
        # the target starts shallower than 70 MeV's 41 mm range (the generic plan used 51-87 MeV)
        assert f.machine is not None and f.machine.model.name == "dcpt_v5"
        assert 70.0 <= f.nominal_energy_mev.min() and f.nominal_energy_mev.max() < 130
        assert f.machine.shifter.id == "RS_3CM" and 40 < f.machine.shifter_distance_mm < 200
        assert f.n_layers >= 4 and (f.weights > 0).all()
        s0 = f.beam().spots[0]
        assert s0.range_shifter is not None and s0.range_shifter.id == "RS_3CM"
        assert s0.energy_mev == pytest.approx(f.machine.model.at(f.nominal_energy_mev[0]).mean_energy_mev)
    assert plan.model_stats["d95_rel"] > 0.95
    assert plan.model_stats["within_5pct"] > 0.9
    s = plan.summary()
    assert s["total_protons"] == pytest.approx(plan.total_protons) and len(s["fields"]) == 3


def test_posterior_fossa_plan_monte_carlo_at_4mm(demo_plan_4mm):
    """The CI's stand-in for the slow MC verifications below (tests audit 21 F2: the README's headline D95 and
    MC/model of the demo were checked by no test that CI runs): the demo plan at 4 mm, 100,000 primaries (~3 s on 2
    cores; the plan is made once per session).  Statistics (tests/plan_noise.py, 25 seeds at 100,000): MC target mean
    / prescription 0.9984, sd 0.32 %; D95 0.90 with the noise (5.6 % per voxel), 0.989 with its shift taken back
    (sd 0.43 %, lowest 0.981), the model's 0.995.  Windows: the mean within 1 % + 4 of this run's sd (~2.4 %: the MC
    against the plan's model; 7 true sd from the seeds' mean), the D95 without the noise above 0.96 (6.7 sd below the
    seeds' mean): false positives < 1e-6.  A scale error of 3 % fails on the mean; all energies 1 % low (ranges ~2 %
    short) fail on the D95 (0.956), 2 % low on both (0.892)."""
    from mcproton.demo import target_rel_uncertainty
    from mcproton.settings import RunSettings
    from plan_noise import d95_rel_without_noise, target_mean_sd   # tests/plan_noise.py

    g, plan = demo_plan_4mm
    res, st = P.verify_plan(plan, g, RunSettings(primaries=100_000, seed=12345, backend="cpu"))
    tgt = plan.target_mask_zyx
    sd = target_mean_sd(res.dose_gy_zyx, res.uncertainty_rel_zyx, tgt) / plan.prescription_gy
    assert 0 < sd < 0.01
    assert abs(st["mc_over_model_mean"] - 1) < 0.01 + 4 * sd, (st["mc_over_model_mean"], sd)
    u, no_dose = target_rel_uncertainty(res.uncertainty_rel_zyx, res.dose_gy_zyx, tgt)
    assert no_dose == 0 and 0.03 < u < 0.09
    d95 = d95_rel_without_noise(st["d95_rel"], u, st["mc_over_model_mean"])
    assert d95 > 0.96, (st["d95_rel"], u, d95)


@pytest.mark.parametrize("age", (1, 5, 10, 15))
def test_posterior_fossa_target_is_a_medulloblastoma_boost(age):
    """Audit 15 F1: the boost CTV was an ellipsoid at the cerebellum's centre, 98 % cerebellum, with 29-59 % of the
    fourth ventricle and no brainstem.  A medulloblastoma boost is the tumour bed (fourth ventricle / vermis) + 1.5 cm
    kept in the posterior fossa: the whole ventricle, the dorsal brainstem, nothing above the tentorium (z = 0) or
    outside the cranial cavity."""
    g = make_head_phantom(age, 2.0, region="head")
    inv = {n: i for i, n in g.label_names.items()}
    lab, d = g.labels_zyx, g.meta["design"]
    tgt = RP.posterior_fossa_target(g)
    assert 45 < tgt.sum() * g.voxel_volume_cm3 < 90
    Z, Y, X = np.meshgrid(*(g.axis_mm(a) for a in "zyx"), indexing="ij", sparse=True)
    c, s = d["v4_c"], d["v4_s"]
    v4 = (lab == inv["ventricles"]) & (((X - c[0]) / s[0]) ** 2 + ((Y - c[1]) / s[1]) ** 2
                                       + ((Z - c[2]) / s[2]) ** 2 <= 1)
    assert v4.sum() > 50 and (v4 & tgt).sum() == v4.sum()                # the whole fourth ventricle
    bs = (lab == inv["brainstem"]) & tgt
    assert bs.sum() * g.voxel_volume_cm3 > 3.0                            # the brainstem (the ventricle's floor) ...
    assert np.broadcast_to(Y, lab.shape)[bs].mean() > d["bs_c"][1]      # ... its dorsal part
    assert not (tgt & (np.broadcast_to(Z, lab.shape) >= 0)).any()       # below the tentorium
    assert set(np.unique(lab[tgt])) <= {inv[n] for n in RP.INTRACRANIAL if n in inv}
    centre = np.array([np.broadcast_to(A, lab.shape)[tgt].mean() for A in (X, Y, Z)])
    assert np.linalg.norm(centre - np.asarray(c)) < 12.0                 # centred on the ventricle / vermis


def test_craniospinal_plan_coarse(csi8):
    g, parts, plan = csi8
    assert parts["brain"].any() and parts["spine"].any()
    names = [f.name for f in plan.fields]
    assert sum(n.startswith("cranial") for n in names) == 2
    assert sum(n.startswith("spine") for n in names) >= 2          # 5 y neuraxis: ~40 cm, split in two
    # the model's dose on the optimiser's points, no MC (no noise): D95 0.9972, Dmean 0.9999 after 50 iterations
    # (2026-12-07; 0.9997 and 1.0000 after 150; the BLAS's rounding moves them by < 1e-3); D95 >= 95 % is the
    # clinical criterion (was > 0.85 without a reason: tests audit 21 F7)
    assert plan.model_stats["d95_rel"] > 0.95 and 0.98 < plan.model_stats["dmean_rel"] < 1.02
    z_spine = [P.gantry_direction(180) @ f.direction for f in plan.fields if f.name.startswith("spine")]
    assert np.allclose(z_spine, 1.0)
    for f in plan.fields:                                          # clinical energies; shifters where needed
        assert f.nominal_energy_mev.min() >= 70.0 and f.machine.shifter is not None


def test_field_machine_shifter_model():
    """The planner's model of a layer behind a range shifter: residual range = range - the slab's WET at that
    energy (within 0.5 mm of the model's 34.3 mm), protons lost in the slab (Bortfeld's 1.2 %/cm: ~4 %), the
    spot widened by the generalised Highland formula of validation/range_shifter_model.py (reused: the in-air
    variance is its quadratic in the drift), a halo that falls with energy; the machine's lowest energy
    reaches 7 mm instead of 41 mm."""
    from mcproton._io.beam_model import load_beam_model
    from mcproton.validation.range_shifter_model import highland_sigma_added_mm

    bm = load_beam_model("dcpt_v5")
    bare, m = P.FieldMachine(bm), P.FieldMachine(bm, bm.range_shifter("RS_3CM"), 150.0)
    assert bare.residual_range_limits_mm[0] == pytest.approx(41.2, abs=0.5)
    assert m.residual_range_limits_mm[0] == pytest.approx(41.2 - 34.3, abs=0.5)
    for e in (75.0, 110.0, 180.0):
        a, b = bare.layer(e), m.layer(e)
        assert a.range_in_mm - b.residual_range_mm == pytest.approx(34.3, abs=0.5)
        assert 0.95 < b.fluence < 0.97 and a.fluence == 1.0
        added = highland_sigma_added_mm(b.mean_mev, "polycarbonate", m._slab_table(), 1.20, m.thickness_mm,
                                        150.0)
        assert b.moments_x[0] - a.moments_x[0] == pytest.approx(added**2, rel=1e-3)
        assert P.FieldMachine(bm, bm.range_shifter("RS_3CM"), 250.0).sigma_iso_mm(e)[0] > m.sigma_iso_mm(e)[0]
    assert m.layer(75.0).halo_weight > m.layer(180.0).halo_weight > 0 == bare.layer(75.0).halo_weight
    with pytest.raises(ValueError, match="upstream of the beam model's plane"):
        P.FieldMachine(bm, bm.range_shifter("RS_5CM"), 580.0)


def test_field_machine_caches_follow_the_shifter_and_the_layers():
    """The per-machine thickness and per-layer beam-model entries (planner speed-ups) give what the uncached
    calls give: the thickness follows a swapped shifter, and the machine's spots of a two-layer field carry
    each spot's own layer (energy, spread, phase space) exactly as ``model.at`` per spot."""
    from mcproton._io.beam_model import load_beam_model

    bm = load_beam_model("dcpt_v5")
    rs3, rs5 = bm.range_shifter("RS_3CM"), bm.range_shifter("RS_5CM")
    m = P.FieldMachine(bm, rs3, 150.0)
    assert m.thickness_mm == rs3.thickness_mm() and m.thickness_mm == rs3.thickness_mm()
    m.shifter = rs5
    assert m.thickness_mm == rs5.thickness_mm() != rs3.thickness_mm()
    d = np.array([0.0, 1.0, 0.0])
    nominal = np.array([100.0, 120.0, 100.0, 120.0])
    f = P.FieldSpots("f", d, np.zeros(3), np.array([1.0, 0.0, 0.0]), np.array([-5.0, 0.0, 5.0, 10.0]),
                     np.array([0.0, 3.0, -3.0, 0.0]), np.array([m.layer(e).mean_mev for e in nominal]),
                     np.array([1.0, 2.0, 3.0, 4.0]), 4.0, 0.008, m.plane_mm, nominal, m)
    spots = f.spots()
    n_comp = [len(bm.at(e).components) for e in nominal]
    assert len(spots) == sum(n_comp)
    k = 0
    for e, w, nc in zip(nominal, f.weights, n_comp):
        ent = bm.at(float(e))
        wsum = sum(c.weight for c in ent.components)
        for c in ent.components:
            s = spots[k]
            assert (s.energy_mev, s.energy_spread_mev) == (ent.mean_energy_mev, ent.energy_spread_mev)
            assert tuple(s.sigma_mm) == c.sigma_mm and s.weight == w * c.weight / wsum
            assert s.range_shifter.thickness_mm == rs5.thickness_mm()
            k += 1


def test_shifter_pencil_beam_model_against_monte_carlo():
    """One dcpt_v5 spot at 100 MeV behind RS_3CM (downstream face 80 mm from the water surface), 4x10^4
    protons: the planner's depth dose (integrated over a 12 x 12 cm2 plane) and R80 against the Monte Carlo.
    Tolerances: integral 3 % (measured 1.7 % low at 2x10^5 protons: protons scattered past the plane's edge
    and nuclear secondaries; statistics ~0.3 %), R80 0.5 mm (measured 0.26 mm; the 2 mm depth bins are
    interpolated)."""
    from mcproton._io.beam_model import load_beam_model
    from mcproton.run import simulate
    from mcproton.settings import RunSettings

    bm = load_beam_model("dcpt_v5")
    g = box_phantom("water", (120, 120, 80), 2.0)
    m = P.FieldMachine(bm, bm.range_shifter("RS_3CM"), 80.0)
    lo = m.layer(100.0)
    f = P.FieldSpots("t", np.array([0, 0, 1.0]), np.zeros(3), np.array([1.0, 0, 0]), np.zeros(1), np.zeros(1),
                     np.array([lo.mean_mev]), np.array([1e9]), 4.0, 0.0, m.plane_mm, np.array([100.0]), m)
    res = simulate(g, f.beam(), RunSettings(primaries=40_000, seed=3, backend="cpu"), progress=False)
    depth = g.axis_mm("z") - g.lower_corner_mm[2]
    mc = res.dose_gy_zyx.sum(axis=(1, 2)) * 4.0 / 100.0                               # Gy cm2
    model = lo.fluence * P.bortfeld_idd(depth / 10, lo.mean_mev, lo.spread_mev, lo.residual_range_mm / 10,
                                        straggling_range_cm=lo.range_in_mm / 10) * P.MEV_PER_G_TO_GY * 1e9

    def r80(y):
        k = int(np.argmax(y))
        j = k + int(np.nonzero(y[k:] < 0.8 * y[k])[0][0])
        return float(np.interp(0.8 * y[k], [y[j], y[j - 1]], [depth[j], depth[j - 1]]))

    assert mc.sum() / model.sum() == pytest.approx(1.0, abs=0.03)
    assert r80(mc) == pytest.approx(r80(model), abs=0.5)


def test_voxel_depth_offsets_and_voxel_mean_kernel():
    """Voxel-mean depth dose: offsets span the voxel along the beam; zero offsets give the point kernel."""
    o = P.voxel_depth_offsets((6.0, 6.0, 6.0), (0, -1, 0), 5)
    assert o.shape == (5,) and np.all(np.diff(o) > 0)
    assert o.mean() == pytest.approx(0.0, abs=1e-9) and -3.0 < o.min() and o.max() < 3.0
    ob = P.voxel_depth_offsets((6.0, 6.0, 6.0), P.gantry_direction(150), 5)
    assert ob.mean() == pytest.approx(0.0, abs=1e-9) and np.abs(ob).max() < 3.0 * (0.5 + np.sqrt(0.75))
    g = box_phantom("water", (30, 30, 120), 6.0)                  # front face at z = 0
    pts = np.array([[0.0, 0.0, z] for z in np.arange(2.0, 118.0, 1.0)])
    f, wet = P.generate_field_spots(g, P.relative_stopping_power(g), pts, (0, 0, 1), sigma_air_mm=4.0)
    A0 = P.influence_matrix(f, pts, wet)
    assert np.allclose(P.influence_matrix(f, pts, wet, wet_offsets_mm=np.zeros(1)), A0)
    Av = P.influence_matrix(f, pts, wet, wet_offsets_mm=o)
    col = int(np.argmin(np.abs(f.u_mm) + np.abs(f.v_mm) + 1e-3 * f.energy_mev))   # central, shallowest spot
    assert Av[:, col].sum() == pytest.approx(A0[:, col].sum(), rel=0.02)   # averaging keeps the integral
    assert Av[:, col].max() < 0.9 * A0[:, col].max()                        # and smears the Bragg peak


def _spot_xyz(f):
    return f.isocentre_mm + f.u_mm[:, None] * f.axis_x + f.v_mm[:, None] * f.axis_y


def test_craniospinal_geometry_covers_neuraxis_and_junctions_overlap(csi8):
    """CSI field geometry (8 mm phantom, coarse optimisation): in beam's-eye view every CTV voxel lies within
    one spot spacing of a spot of some field, the spinal fields cover the whole thecal sac along z, and the
    junctions (cranial/upper spine, spine/spine) overlap (craniospinal_plan's default overlap_mm, 50 mm)."""
    g, parts, plan = csi8
    spacing = 8.0
    pts = P.voxel_centres_mm(g, parts["csi"])
    best = np.full(len(pts), np.inf)
    for f in plan.fields:
        assert (f.weights > 0).all()
        rel = pts - f.isocentre_mm
        pu, pv = rel @ f.axis_x, rel @ f.axis_y
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(np.stack([f.u_mm, f.v_mm], 1)).query(np.stack([pu, pv], 1))
        best = np.minimum(best, dist)
    assert best.max() <= spacing * np.sqrt(0.5) + 1e-6               # within half a grid diagonal
    cran = [f for f in plan.fields if f.name.startswith("cranial")]
    spine = sorted((f for f in plan.fields if f.name.startswith("spine")), key=lambda f: -f.isocentre_mm[2])
    zr = [(_spot_xyz(f)[:, 2].min(), _spot_xyz(f)[:, 2].max()) for f in spine]
    z = g.axis_mm("z")
    ks = np.nonzero(parts["spine"].any(axis=(1, 2)))[0]
    assert zr[-1][0] <= z[ks.min()] and zr[0][1] >= z[ks.max()]     # the spinal fields span the thecal sac
    for (lo_a, _), (_, hi_b) in zip(zr[:-1], zr[1:]):                 # spine/spine junctions overlap
        assert hi_b - lo_a >= 30.0
    z_cran_lo = min(_spot_xyz(f)[:, 2].min() for f in cran)
    assert zr[0][1] - z_cran_lo >= 30.0                               # cranial/spine junction overlaps


@pytest.mark.slow
def test_posterior_fossa_plan_monte_carlo_d95():
    """Full MC verification (about 1 minute on 2 cores): D95 >= 95 % of the prescription."""
    from mcproton.settings import RunSettings

    g = make_head_phantom(5, 2.0, region="head")
    plan = RP.posterior_fossa_plan(g)
    res, st = P.verify_plan(plan, g, RunSettings(primaries=2_500_000, backend="cpu"))
    assert st["d95_rel"] >= 0.95
    assert 0.97 < st["mc_over_model_mean"] < 1.03


@pytest.mark.slow
def test_craniospinal_plan_monte_carlo_d95():
    """MC verification of the CSI plan at reduced size (6 mm voxels, 8 M protons, one run of all four fields,
    a few minutes on one core): D95 >= 95 % of the prescription for the whole CTV (brain + spinal canal),
    spinal-canal mean within 5 %, MC / model mean within 3 %.  Statistics: mean relative standard error per
    target voxel 1.3 %; measured 2026-12-04 on the clinical beam model with its range shifters D95 95.7 %,
    spinal-canal mean 98.2 %, MC / model 0.992 (the generic-beam plan of 2026-11-26: D95 96.1 %).  At 8 mm /
    4 M protons D95 was only 95.4 % (coarser spinal canal), hence 6 mm."""
    from mcproton.settings import RunSettings

    g = make_head_phantom(5, 6.0, region="neuraxis")
    plan = RP.craniospinal_plan(g)
    res, st = P.verify_plan(plan, g, RunSettings(primaries=8_000_000, backend="cpu", seed=12345))
    assert float(res.uncertainty_rel_zyx[plan.target_mask_zyx].mean()) < 0.02
    assert st["d95_rel"] >= 0.95
    assert 0.97 < st["mc_over_model_mean"] < 1.03
    spine = RP.craniospinal_target(g)["spine"]
    d_sp = res.dose_gy_zyx[spine]
    assert abs(d_sp.mean() / plan.prescription_gy - 1) < 0.05


def test_craniospinal_summary_gives_every_dose_relative_to_the_prescription():
    """The CSI verification's *_rel tables divide every dose by the prescription: D0.03cc was left in Gy (1.72
    'relative' beside a relative Dmax of 1.05, 2026-12-06)."""
    import numpy as np

    from mcproton.dvh import dose_stats
    from mcproton.phantoms.verify_craniospinal import relative_stats

    dose = np.linspace(1.5, 1.7, 1000).reshape(10, 10, 10)
    st = dose_stats(dose, np.ones_like(dose, bool), voxel_volume_cm3=0.216, prescription_gy=1.6)
    rel = relative_stats(st, 1.6)
    doses = [k for k in st if k in ("dmean", "dmin", "dmax", "d98", "d95", "d50", "d2", "d0.03cc")]
    assert "d0.03cc" in doses and len(doses) == 8
    assert all(rel[k] == st[k] / 1.6 for k in doses)
    assert rel["d0.03cc"] <= rel["dmax"] and rel["voxels"] == 1000 and rel["v95"] == st["v95"]

"""The demo plan does not move when the planner's host steps are made cheaper (issue 15 item 3): the dose-influence
matrix (in place, the depth doses in a second thread) is compared bit for bit with its previous implementation,
kept here line for line, and the demo plan at 4 mm is pinned by a hash."""
import copy
import hashlib
import os
import platform

import numpy as np
import pytest
import scipy

from mcproton import planning as P
from mcproton.phantoms import reference_plans as RP
from mcproton.planning import dose_model as DM
from mcproton.planning.kernel import MEV_PER_G_TO_GY, bortfeld_idd, mcs_sigma_mm, water_range_mm


def _influence_reference(field_, points_mm, wet_mm, dose_factor=None, cutoff_sigma=3.5, wet_offsets_mm=None):
    """influence_matrix as it was before this change (dose_model.py at 342b20d), line for line."""
    rel = np.asarray(points_mm, float) - field_.isocentre_mm
    pu, pv = rel @ field_.axis_x, rel @ field_.axis_y
    A = np.zeros((len(pu), field_.n_spots), np.float32)
    m = field_.machine
    keys = np.round(field_.energy_mev if m is None else field_.nominal_energy_mev, 4)
    wet_cm = np.asarray(wet_mm, float) / 10.0
    fac = MEV_PER_G_TO_GY * (dose_factor if dose_factor is not None else 1.0)
    if m is not None:
        s_ax = rel @ field_.direction
        vx, vy = m.vsad_mm
    for key in np.unique(keys):
        cols = np.nonzero(keys == key)[0]
        if m is None:
            e_in, e_sig, fluence = float(key), field_.energy_spread_rel * float(key), 1.0
            r_mm = r_strag = float(water_range_mm(e_in))
        else:
            lo = m.layer(float(key))
            e_in, e_sig, fluence = lo.mean_mev, lo.spread_mev, lo.fluence
            r_mm, r_strag = lo.residual_range_mm, lo.range_in_mm

        def idd_at(z_cm):
            return fluence * bortfeld_idd(z_cm, e_in, e_sig, r_mm / 10.0, straggling_range_cm=r_strag / 10.0)

        if wet_offsets_mm is None:
            idd = idd_at(wet_cm)
        else:
            wo = np.broadcast_to(np.asarray(wet_offsets_mm, float),
                                 (len(wet_cm),) + np.shape(wet_offsets_mm)[-1:])
            zz = np.clip(wet_cm[:, None] + wo / 10.0, 0.0, None)
            idd = idd_at(zz.ravel()).reshape(zz.shape).mean(axis=1)
        mcs2 = mcs_sigma_mm(wet_mm, r_mm) ** 2
        if m is None:
            su2 = sv2 = field_.sigma_air_mm**2 + mcs2
            du = pu[:, None] - field_.u_mm[cols][None, :]
            dv = pv[:, None] - field_.v_mm[cols][None, :]
        else:
            (ax_, bx_, cx_), (ay_, by_, cy_) = lo.moments_x, lo.moments_y
            su2 = np.maximum(ax_ + 2 * bx_ * s_ax + cx_ * s_ax**2, 1e-6) + mcs2
            sv2 = np.maximum(ay_ + 2 * by_ * s_ax + cy_ * s_ax**2, 1e-6) + mcs2
            du = pu[:, None] - field_.u_mm[cols][None, :] * (1 + s_ax / vx)[:, None]
            dv = pv[:, None] - field_.v_mm[cols][None, :] * (1 + s_ax / vy)[:, None]
        base = idd * fac / (2 * np.pi * np.sqrt(su2 * sv2) / 100.0)
        du *= du
        dv *= dv
        r2 = du / np.asarray(su2)[..., None] + dv / np.asarray(sv2)[..., None]
        g = np.where(r2 < cutoff_sigma**2, np.exp(-0.5 * r2), 0.0)
        if m is not None and lo.halo_weight > 0:
            sh2 = (DM.HALO_THETA_RAD * (lo.halo_lever_mm + s_ax)) ** 2 + 0.5 * (su2 + sv2)
            g = (1 - lo.halo_weight) * g + (lo.halo_weight * np.sqrt(su2 * sv2) / sh2)[:, None] * np.exp(
                -0.5 * (du + dv) / sh2[:, None])
        A[:, cols] = (base[:, None] * g).astype(np.float32)
    return A


@pytest.fixture(scope="module")
def head4(demo_plan_4mm_shared):
    g = copy.deepcopy(demo_plan_4mm_shared[0])          # make_head_phantom(5, 4.0, region="head")
    tgt = RP.posterior_fossa_target(g)
    pts = P.voxel_centres_mm(g, tgt)
    k, j, i = np.nonzero(tgt)
    dose_factor = P.mass_stopping_ratio(g)[g.material_index_zyx[k, j, i]]
    rsp = P.relative_stopping_power(g)
    return g, pts, dose_factor, rsp, rsp[k, j, i].astype(np.float64)


@pytest.mark.parametrize("beam_model", ["dcpt_v5", None])
def test_influence_matrix_is_the_previous_one_bit_for_bit(head4, beam_model):
    """The demo's three fields (on dcpt_v5 each behind a range shifter: core + halo; and generic beams), at the
    voxel centres and voxel-mean (depth offsets, the craniospinal plan's path)."""
    g, pts, dose_factor, rsp, rsp_pts = head4
    n_halo = 0
    for gantry in (180.0, 140.0, 220.0):
        d = P.gantry_direction(gantry)
        wet = P.water_equivalent_depth(g, rsp, pts, d)
        f, _ = P.generate_field_spots(g, rsp, pts, d, target_wet_mm=wet, beam_model=beam_model)
        if f.machine is not None and f.machine.shifter is not None:
            n_halo += f.machine.layer(float(f.nominal_energy_mev[0])).halo_weight > 0
        A = DM.influence_matrix(f, pts, wet, dose_factor)
        ref = _influence_reference(f, pts, wet, dose_factor)
        assert A.shape == ref.shape == (len(pts), f.n_spots) and f.n_layers > 5
        assert A.tobytes() == ref.tobytes()
        assert (A > 0).mean() > 0.15          # not a trivially empty matrix (0.18 generic, 68 mL CTV of 2026-12-06)
        offs = rsp_pts[:, None] * P.voxel_depth_offsets(g.voxel_size_mm, d, 5)[None, :]
        assert DM.influence_matrix(f, pts, wet, dose_factor, wet_offsets_mm=offs).tobytes() == \
            _influence_reference(f, pts, wet, dose_factor, wet_offsets_mm=offs).tobytes()
    assert n_halo == (3 if beam_model else 0)       # the halo path is exercised (RS_3CM on all three fields)


@pytest.mark.parametrize("beam_model", ["dcpt_v5", None])
@pytest.mark.parametrize("rows", [1, 7, 10**9])
def test_influence_matrix_in_row_blocks_is_bit_for_bit(head4, beam_model, rows, monkeypatch):
    """The lateral factors computed LATERAL_ROWS points at a time (2026-12-06: 1.2 -> 0.95 CPU s for the demo's
    matrix) give the previous matrix bit for bit, whatever the block: one row, blocks that do not divide the points
    (the last one short), and one block of all."""
    g, pts, dose_factor, rsp, _ = head4
    monkeypatch.setattr(DM, "LATERAL_ROWS", rows)
    d = P.gantry_direction(140.0)
    wet = P.water_equivalent_depth(g, rsp, pts, d)
    f, _ = P.generate_field_spots(g, rsp, pts, d, target_wet_mm=wet, beam_model=beam_model)
    assert len(pts) % 7 and len(pts) > 7
    A = DM.influence_matrix(f, pts, wet, dose_factor)
    assert A.tobytes() == _influence_reference(f, pts, wet, dose_factor).tobytes()


def test_influence_matrix_error_in_the_depth_dose_thread_propagates(head4, monkeypatch):
    g, pts, dose_factor, rsp, _ = head4
    d = P.gantry_direction(180.0)
    wet = P.water_equivalent_depth(g, rsp, pts, d)
    f, _ = P.generate_field_spots(g, rsp, pts, d, target_wet_mm=wet, beam_model=None)

    def broken(*a, **k):
        raise FloatingPointError("depth dose")

    monkeypatch.setattr(DM, "bortfeld_idd", broken)
    with pytest.raises(FloatingPointError, match="depth dose"):
        DM.influence_matrix(f, pts, wet, dose_factor)


def test_plan_with_the_pipelined_matrices_is_the_plan_field_by_field(demo_plan_4mm):
    """optimise_plan submits each field's depth doses while it generates the next fields' spots; the same plan
    as with influence_matrix called per field (dose_model=, the path of any other dose model)."""
    g, a = demo_plan_4mm                        # RP.posterior_fossa_plan(make_head_phantom(5, 4.0, region="head"))
    b = RP.optimise_plan("posterior-fossa boost", g, RP.posterior_fossa_target(g),
                         [{"name": f.name, "direction": P.gantry_direction(gd), "sigma_air_mm": 4.0,
                           "layer_spacing_mm": 4.0,
                           **RP._machine_spec(RP.DEFAULT_BEAM_MODEL, "auto", RP.DEFAULT_RS_AIR_GAP_MM)}
                          for f, gd in zip(a.fields, (180.0, 140.0, 220.0))], prescription_gy_rbe=1.8,
                         target_name="CTV_PF",
                         dose_model=DM.influence_matrix)
    assert len(a.fields) == len(b.fields) == 3
    for fa, fb in zip(a.fields, b.fields):
        for attr in ("u_mm", "v_mm", "energy_mev", "nominal_energy_mev", "weights"):
            assert getattr(fa, attr).tobytes() == getattr(fb, attr).tobytes()
    assert {k: v for k, v in a.model_stats.items() if k != "kernel"} == \
        {k: v for k, v in b.model_stats.items() if k != "kernel"}


#: sha256 of the demo plan at 4 mm (every field's u, v, energy, nominal energy and weights, in field order), and
#: the environment it was taken in (this 2-core VM, 2026-12-05; re-pinned 2026-12-06 for the tumour-bed boost CTV of
#: audit 15 F1, again for the L-BFGS-B optimiser, and for the WET integral that ends at the grid face, review 3
#: F1: target WET moved by <= 5.3e-4 mm, same layers and candidate spots, weights re-optimised; from the hash this
#: test printed; re-pinned 2026-12-06 (twentieth session) for the optimiser's one-pass objective, host-time audit
#: H1: the same objective, its gradient's float32 terms summed block by block, so L-BFGS-B takes another path; model
#: on the points before -> after: D95 0.99498 -> 0.99532, D98 0.99385 -> 0.99385, D2 1.00600 -> 1.00634, Dmean
#: 1.000054 -> 0.999960, 5068 -> 5071 spots kept; at 2 mm D95 0.99354 -> 0.99370, D98 0.99029 -> 0.99057, D2
#: 1.00922 -> 1.00930, Dmean 0.999943 -> 0.999982, 6119 -> 6071 spots): the BLAS products
#: (and NumPy's SIMD loops) may round differently on another CPU, thread count (OPENBLAS_NUM_THREADS=1 gave another
#: hash once; on 2026-12-06, tests audit 21, the pinned one) or library version, so where both the environment and
#: the hash differ the test is skipped with the hash there and what to check before re-pinning with it
_PIN_4MM = ("05ab8fd2b465371f76e42a1f98e72b21e2661fe5ada270b4c9a6c752d6b593f9",
            {"numpy": "2.4.6", "scipy": "1.17.1", "machine": "x86_64", "avx512f": True, "cpus": 2, "threads": {}})
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _plan_fingerprint() -> dict:
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        pass
    return {"numpy": np.__version__, "scipy": scipy.__version__, "machine": platform.machine(),
            "avx512f": " avx512f" in flags, "cpus": os.cpu_count(),
            "threads": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ}}


def test_demo_plan_at_4mm_is_pinned(demo_plan_4mm):
    g, plan = demo_plan_4mm                     # RP.posterior_fossa_plan(make_head_phantom(5, 4.0, region="head"))
    h = hashlib.sha256()
    for f in plan.fields:
        for a in (f.u_mm, f.v_mm, f.energy_mev, f.nominal_energy_mev, f.weights):
            h.update(np.ascontiguousarray(a, np.float64).tobytes())
    assert plan.model_stats["spots"] == sum(f.n_spots for f in plan.fields) > 1000
    fp = _plan_fingerprint()
    if fp != _PIN_4MM[1] and h.hexdigest() != _PIN_4MM[0]:
        # a skip, not a failure: a new numpy or scipy (CI installs them unpinned), another CPU or thread count may
        # round the planner's sums differently, which moves the bits but not the plan; where they give the pinned
        # bits all the same, the pin holds and is checked (tests audit 21 F5: it skipped on any new version)
        m = plan.model_stats
        pytest.skip(f"the demo plan's hash is pinned for {_PIN_4MM[1]}; here {fp}, plan sha256 {h.hexdigest()}, "
                    f"model D95 {m['d95_rel']:.5f}, D98 {m['d98_rel']:.5f}, D2 {m['d2_rel']:.5f} (at the pin 0.99532, "
                    "0.99385, 1.00634).  To guard the plan's bits here, check that only the rounding moved (those "
                    "within 1e-3, and the other plan tests of tests/phantoms pass: "
                    "test_plan_with_the_pipelined_matrices_is_the_plan_field_by_field, "
                    "test_posterior_fossa_plan_on_phantom, test_posterior_fossa_plan_monte_carlo_at_4mm); then put "
                    "this hash and fingerprint in _PIN_4MM (tests/phantoms/test_plan_bitwise.py) with a line on why")
    assert h.hexdigest() == _PIN_4MM[0], "the demo plan changed: spot positions, energies or weights"

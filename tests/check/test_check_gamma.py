"""The 3-D gammas of ``mcproton check`` computed faster must give the same values bit for bit (issue 13 item 5):
the random subset drawn without numpy's global random state is pymedphys's own draw, the global criteria with the
same distance searched together equal separate searches, and the gammas run in worker processes equal the gammas
run here.  A synthetic dose (no transport): a smooth TPS dose and an "MC" dose shifted by 3 mm, 5 % higher and
noisy, so that the pass rates lie between 20 and 95 % and a changed value would show."""
from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pytest

pymedphys = pytest.importorskip("pymedphys")

from mcproton._check.compare import (_interp_algo, gamma_3d, gamma_3d_multi, gamma_many,  # noqa: E402
                                     normalisation_dose, start_gammas)


@pytest.fixture(scope="module")
def case():
    z, y, x = (np.arange(n) * 2.0 - n + 1.0 for n in (30, 28, 26))   # 2 mm voxels
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")

    def blob(dz=0.0):
        return 2.0 * np.exp(-(((zz - dz) / 14) ** 2 + (yy / 10) ** 2 + (xx / 9) ** 2))

    rng = np.random.default_rng(7)
    tps = blob()
    mc = 1.05 * blob(dz=3.0) * (1 + 0.04 * rng.standard_normal(tps.shape))
    body = np.zeros(tps.shape, bool)
    body[2:-2, 2:-2, 2:-2] = True
    return (z, y, x), tps, mc, body


def _pymedphys_subset_gamma(axes, tps, mc, body, dose_pct, dist_mm, points, seed):
    """The gamma as mcproton check computed it before (pymedphys draws the subset from numpy's global state), with
    today's normalisation (the TPS's near-maximum in the body, gamma audit 28 F1)."""
    norm = normalisation_dose(tps, body)
    r = np.where(body, tps, 0.0)
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        g = pymedphys.gamma(axes, r, axes, mc, dose_pct, dist_mm, lower_percent_dose_cutoff=10.0, interp_fraction=5,
                            max_gamma=1.5, global_normalisation=norm, random_subset=points, quiet=True,
                            interp_algo=_interp_algo(), ram_available=2 ** 27)
    return g[np.isfinite(g)]


def test_subset_is_pymedphys_own_draw_and_leaves_the_global_random_state(case):
    axes, tps, mc, body = case
    state = np.random.get_state()
    g = gamma_3d(axes, tps, mc, body, dose_pct=2.0, dist_mm=2.0, points=1500, seed=12345, refine=False)
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    assert g["subset"] == 1500 and g["points"] == 1500 and g["evaluable_points"] > 1500
    assert 0.2 < g["pass_rate"] < 0.95, g["pass_rate"]          # a mixed case: a change of values would show
    old = _pymedphys_subset_gamma(axes, tps, mc, body, 2.0, 2.0, 1500, 12345)
    assert np.array_equal(g["gamma"], old)                        # the same points and values, bit for bit
    # searched again (the default): the same points, a gamma above 1 lowered or kept, one at or below 1 kept
    fine = gamma_3d(axes, tps, mc, body, dose_pct=2.0, dist_mm=2.0, points=1500, seed=12345)
    assert fine["points"] == 1500 and np.all(fine["gamma"] <= old)
    assert np.array_equal(fine["gamma"][old <= 1], old[old <= 1]) and fine["refined_points"] == np.sum(old > 1)
    assert fine["refined_to_pass"] == np.sum((old > 1) & (fine["gamma"] <= 1)) > 0
    other = gamma_3d(axes, tps, mc, body, dose_pct=2.0, dist_mm=2.0, points=1500, seed=1)
    assert not np.array_equal(other["gamma"], g["gamma"])          # the seed does choose the points


@pytest.mark.parametrize("points", [1500, None])
def test_criteria_with_one_distance_in_one_search_equal_separate_searches(case, points):
    axes, tps, mc, body = case
    both = gamma_3d_multi(axes, tps, mc, body, dose_pcts=[3.0, 2.0], dist_mm=2.0, points=points, seed=3)
    for dp, g in zip((3.0, 2.0), both):
        alone = gamma_3d(axes, tps, mc, body, dose_pct=dp, dist_mm=2.0, points=points, seed=3)
        assert np.array_equal(g["gamma"], alone["gamma"]) and g["pass_rate"] == alone["pass_rate"]
    assert both[0]["pass_rate"] > both[1]["pass_rate"]            # 3 % passes more than 2 %: two criteria
    local = gamma_3d_multi(axes, tps, mc, body, dose_pcts=[2.0], dist_mm=2.0, local=True, points=points, seed=3)[0]
    assert local["pass_rate"] != both[1]["pass_rate"]


def _jobs(case):
    axes, tps, mc, body = case
    kw = {"points": 1200, "seed": 5}
    return [((axes, tps, mc, body), {"dose_pcts": [3.0, 2.0], "dist_mm": 2.0, **kw}),
            ((axes, tps, mc, body), {"dose_pcts": [1.0], "dist_mm": 1.0, **kw}),
            ((axes, tps, mc, body), {"dose_pcts": [2.0], "dist_mm": 2.0, "local": True, **kw}),
            ((axes, tps * 0.5, mc * 0.5, body), {"dose_pcts": [2.0], "dist_mm": 2.0, **kw})]


def test_gammas_in_worker_processes_equal_the_gammas_run_here(case):
    jobs = _jobs(case)
    here, cpu_workers_here, n_here = gamma_many(jobs, workers=1)
    there, cpu_workers, n = gamma_many(jobs, workers=2)
    assert n_here == 0 and cpu_workers_here == 0.0
    assert n == 2 and cpu_workers > 0                             # the work was done in two worker processes
    assert [len(r) for r in there] == [2, 1, 1, 1]
    for a, b in zip(here, there):
        for ga, gb in zip(a, b):
            assert np.array_equal(ga["gamma"], gb["gamma"]) and ga["pass_rate"] == gb["pass_rate"]


def test_failed_workers_fall_back_to_here(case, monkeypatch):
    jobs = _jobs(case)[:2]
    notes = []
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    res, cpu_workers, n = gamma_many(jobs, workers=2, log=notes.append)
    assert n == 0 and cpu_workers == 0.0 and "computing the gammas here" in notes[0]
    ref = gamma_3d_multi(*jobs[1][0], **jobs[1][1])
    assert np.array_equal(res[1][0]["gamma"], ref[0]["gamma"])


def test_gammas_started_in_workers_run_while_the_caller_works(case):
    """start_gammas returns at once (a thread per worker feeds it and reads it) and result() gives the results of
    the jobs run here, while this process did other work meanwhile (mcproton check: ranges, figures)."""
    import time

    jobs = _jobs(case)
    here = gamma_many(jobs, workers=1)[0]
    t = time.perf_counter()
    with start_gammas(jobs, workers=2) as run:
        started = time.perf_counter() - t
        procs = list(run._procs)
        busy = sum(float(np.sum(np.sort(case[1].ravel()))) for _ in range(3))   # the caller's own work
        there, cpu_workers, n = run.result()
    assert started < 0.2, started   # 0.01 s here; feeding the workers first waits for their imports (~0.17 s each)
    assert busy > 0 and n == 2 and cpu_workers > 0 and all(p.returncode == 0 for p in procs)
    for a, b in zip(here, there):
        for ga, gb in zip(a, b):
            assert np.array_equal(ga["gamma"], gb["gamma"]) and ga["pass_rate"] == gb["pass_rate"]


def test_an_error_of_the_caller_stops_the_workers(case):
    with pytest.raises(ZeroDivisionError):
        with start_gammas(_jobs(case), workers=2) as run:
            procs = list(run._procs)
            assert len(procs) == 2 and all(p.poll() is None for p in procs)   # importing: seconds to go
            1 / 0
    assert all(p.returncode is not None and p.returncode != 0 for p in procs)   # killed, not finished


def test_an_error_in_the_gamma_of_a_worker_is_raised_here(case, capfd):
    """A job that fails in a worker (here: an MC dose whose shape does not match the axes) is logged, computed
    here and its error raised to the caller (the worker's own traceback is on stderr)."""
    axes, tps, mc, body = case
    bad = ((axes, tps, mc[:, :, :-1], body), {"dose_pcts": [2.0], "dist_mm": 2.0, "points": 100})
    notes: list[str] = []
    with pytest.raises(ValueError, match="does not match the shape"):
        gamma_many([_jobs(case)[1], bad], workers=2, log=notes.append)
    assert len(notes) == 1 and "exited with status 1" in notes[0] and "computing the gammas here" in notes[0]
    assert "ValueError" in capfd.readouterr().err


def test_a_worker_whose_caller_went_away_ends_without_a_traceback():
    """The long-runs audit F7: a check killed while it sent a worker its jobs left the worker a truncated pickle,
    and the worker printed "_pickle.UnpicklingError: pickle data was truncated" with its traceback on the user's
    terminal; it ends quietly now with WORKER_CALLER_GONE (as it does when no one reads its answer)."""
    import pickle
    import subprocess

    from mcproton._check.compare import WORKER_CALLER_GONE

    whole = pickle.dumps(([((), {})], 1), protocol=pickle.HIGHEST_PROTOCOL)
    for data in (whole[: len(whole) // 2], b""):   # cut short, and nothing at all
        proc = subprocess.run([sys.executable, "-c", "from mcproton._check.compare import _gamma_worker_main; "
                               "_gamma_worker_main()"], input=data, capture_output=True, timeout=120)
        assert proc.returncode == WORKER_CALLER_GONE and proc.stderr == b"", proc.stderr.decode()


# ---------------------------------------------------------------------------------------------- normalisation
def test_the_global_normalisation_is_the_tps_maximum_in_the_body():
    """A TPS dose with a hot spot outside the External (dose computed in a couch, a bolus or an immobilisation
    device outside the body contour) must not set the global gamma normalisation: normalised to it, the dose
    criterion loosens in proportion and a wrong MC dose passes (mutation audit 2026-12-05, G3).

    TPS 1 Gy in an 8 x 8 x 8 voxel body (2 mm voxels), 10 Gy in one voxel outside it; MC 1.05 Gy in the body, 0
    outside.  3 %/2 mm normalised to the body's maximum (1 Gy): the 5 % difference fails the dose criterion, and a
    point 2 voxels (4 mm) or more inside the body has no MC dose within 3 % of its own closer than the search's
    1.5 x 2 mm, so its gamma exceeds 1 (the 4 x 4 x 4 inner voxels fail: pass rate <= 1 - 64/512; edge voxels may
    pass on the MC's fall-off outside the body).  With the body taken to be the inner cube alone, no point passes.
    Normalised to the 10 Gy outside, the 0.05 Gy difference would be 0.5 % and every point would pass."""
    ax = [np.arange(12) * 2.0] * 3
    ref = np.zeros((12, 12, 12))
    body = np.zeros(ref.shape, bool)
    body[2:10, 2:10, 2:10] = True
    ref[body] = 1.0
    ref[0, 0, 0] = 10.0
    ev = np.where(body, 1.05, 0.0)
    g = gamma_3d(ax, ref, ev, body, dose_pct=3.0, dist_mm=2.0, points=None)
    assert g["points"] == body.sum()
    assert g["pass_rate"] <= 1 - 64 / 512
    inner = np.zeros(body.shape, bool)
    inner[4:8, 4:8, 4:8] = True
    assert gamma_3d(ax, ref, ev, inner, dose_pct=3.0, dist_mm=2.0, points=None)["pass_rate"] == 0.0


# ------------------------------------------------------------------- gamma audit 28: normalisation (F1)
def _box_field(n=22, lo=8.0, hi=36.0):
    """A 2 Gy box field with 3 mm (1 sd) penumbrae on a 2 mm grid of n^3 voxels (the gamma audit's case, smaller)."""
    from scipy.special import erf

    axes = [np.arange(n) * 2.0] * 3
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")

    def box(t):
        return 0.5 * (erf((t - lo) / (np.sqrt(2) * 3.0)) - erf((t - hi) / (np.sqrt(2) * 3.0)))

    return axes, 2.0 * box(zz) * box(yy) * box(xx)


def test_one_hot_tps_voxel_sets_neither_the_gammas_normalisation_nor_the_dose_difference():
    """Gamma audit 28, F1: one TPS voxel at 5.7 x the 2 Gy plateau (the CSI audit saw one in a noisy planning MC) was
    the global normalisation of every gamma, its 10 % cut and the dose difference's %: the 2 % criterion became 11.4 %
    of the plateau, and an MC 5 % (or 10 %) low passed 2 %/2 mm at 99.98 %.  Normalised to the near-maximum
    (compare.normalisation_dose) the gamma reads as without the voxel (84 % on this smaller field, a FAIL), and so
    does the dose difference."""
    from mcproton._check.compare import dose_difference

    axes, tps = _box_field()
    body = np.ones(tps.shape, bool)
    ref = tps.copy()
    ref[11, 11, 3] = 5.7 * 2.0           # one voxel in the field's low-dose side
    ev = 0.95 * tps                      # the MC 5 % low everywhere
    clean = gamma_3d(axes, tps, ev, body, dose_pct=2.0, dist_mm=2.0, points=None)
    hot = gamma_3d(axes, ref, ev, body, dose_pct=2.0, dist_mm=2.0, points=None)
    assert clean["pass_rate"] < 0.9                                   # the error fails without the voxel
    assert hot["pass_rate"] < 0.9, hot["pass_rate"]                   # 0.9998 normalised to the voxel
    assert abs(hot["pass_rate"] - clean["pass_rate"]) < 0.005
    assert hot["normalisation_gy"] == pytest.approx(2.0, rel=0.01) == normalisation_dose(ref, body)
    assert hot["threshold_gy"] == pytest.approx(0.1 * hot["normalisation_gy"])
    assert abs(hot["points"] - clean["points"]) <= 1                  # the cut not raised to 57 % of the plateau
    dd, dd_clean = dose_difference(ref, ev, body), dose_difference(tps, ev, body)
    assert dd["normalisation_gy"] == pytest.approx(2.0, rel=0.01) and "near-maximum" in dd["pct_of"]
    assert dd["percentiles_pct"]["p50"] == pytest.approx(dd_clean["percentiles_pct"]["p50"], abs=0.05)
    assert dd["percentiles_pct"]["p50"] < -2.0                        # -2.5 % of 2 Gy; -0.44 % of 11.4 Gy before


def test_the_normalisation_is_the_percentile_of_the_body_voxels_with_dose():
    """compare.normalisation_dose (no copy of the body's voxels: histograms slab by slab, then the few values around
    the two order statistics) equals np.percentile(ref[body & (ref > 0)], 99.9), also other percentiles, on doses
    with ties (a flat plateau, rounded values), a hot voxel, a dose mostly zero, a 2-D plane, one voxel, none."""
    from mcproton._check.compare import _percentile_of_dose

    rng = np.random.default_rng(2)
    flat = np.zeros((30, 40, 50))
    flat[5:25, 5:35, 5:45] = 2.0
    flat[3, 3, 3] = 11.4
    mostly_zero = np.where(rng.random((40, 40, 40)) < 0.02, rng.gamma(2.0, 1.0, (40, 40, 40)), 0.0)
    one = np.zeros((3, 4, 5))
    one[1, 2, 3] = 3.0
    cases = [(rng.gamma(2.0, 1.0, (50, 60, 70)), rng.random((50, 60, 70)) < 0.8), (flat, flat >= 0),
             (np.round(rng.normal(1.0, 0.5, (30, 40, 50)), 2), np.ones((30, 40, 50), bool)),
             (mostly_zero, np.ones(mostly_zero.shape, bool)), (rng.random((300, 400)), rng.random((300, 400)) < 0.5),
             (one, one >= 0), (np.zeros((3, 4, 5)), np.ones((3, 4, 5), bool))]
    for dose, where in cases:
        v = dose[where & (dose > 0)]
        for q in (99.9, 99.0, 50.0, 0.0, 100.0):
            want = float(np.percentile(v, q)) if v.size else 0.0
            assert _percentile_of_dose(dose, where, q) == pytest.approx(want, rel=1e-12, abs=0), (dose.shape, q)
        for k in (1, 2, 8, 100):   # the kth largest (normalisation_dose's near-maximum): the smallest if fewer
            want = float(np.sort(v)[-min(k, v.size)]) if v.size else 0.0
            assert _percentile_of_dose(dose, where, 100.0, kth=k) == want, (dose.shape, k)
    assert normalisation_dose(flat, flat >= 0) == 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint16, np.int32])
def test_the_normalisation_of_a_float32_or_integer_dose_is_its_kth_largest(dtype):
    """Re-read of the check, F2: under numpy 2 a float32 slab compared with the float64 bounds of
    compare._percentile_of_dose cast them to float32, so the maximum itself fell outside [a, nextafter(top)):
    8 voxels at 2.0 among 100 below gave an IndexError, 5000 at 2.0 among 100 gave 1.82 for 2.0.  Exact for any
    real dtype now (each slab read as float64); a deterministic check, no tolerance."""
    from mcproton._check.compare import _percentile_of_dose

    rng = np.random.default_rng(7)
    scale = 1000 if np.issubdtype(dtype, np.integer) else 1
    for n_top, n_rand in ((1, 0), (1, 100), (8, 0), (8, 100), (5000, 100), (5000, 10000), (3, 40000)):
        dose = (np.concatenate([np.full(n_top, 2.0), rng.random(n_rand) * 2.0]) * scale).astype(dtype)
        dose = dose.reshape(-1, 1, 1) if n_top % 2 else dose   # a 3-D and a flat array
        where = np.ones(dose.shape, bool)
        v = np.sort(dose[dose > 0].astype(np.float64))
        for k in (1, 8, 100):
            assert _percentile_of_dose(dose, where, 100.0, kth=k) == v[-min(k, v.size)], (n_top, n_rand, k)
        for q in (99.9, 50.0):
            assert _percentile_of_dose(dose, where, q) == pytest.approx(float(np.percentile(v, q)), rel=1e-12)
    dose = np.full((4, 5, 6), 2.0, np.float32)
    dose[1, 2, 3] = 11.4
    assert normalisation_dose(dose, dose > 0) == 2.0


def test_a_small_target_in_a_large_dosed_region_normalises_to_the_target_dose():
    """Review d of 2026-12-07, R1: the 99.9th percentile of every dosed body voxel fell to the low dose where the
    high-dose region held under 0.1 % of them: a 2 Gy target of 216 voxels (1.2 cm), three 2 cm entrance channels at
    0.3 Gy and a 0-2 mGy halo over a 100^3 grid of 2 mm gave 0.30 Gy (the criteria 0.3 % of the target dose, the
    warning blaming a hot voxel).  The near-maximum (the dose that at least 8 body voxels receive) is the target's
    2 Gy; one hot voxel at 5.7 x is still excluded (test above), and the TPS maximum is not warned of."""
    from mcproton._check.compare import NEAR_MAX_VOXELS, normalisation_note

    n = 100
    rng = np.random.default_rng(5)
    ref = rng.uniform(0.0, 0.002, (n, n, n))             # the halo: dose everywhere
    c = n // 2
    ref[:, c - 5:c + 5, c - 5:c + 5] = 0.3                # three entrance channels, 2 cm wide, along each axis
    ref[c - 5:c + 5, :, c - 5:c + 5] = 0.3
    ref[c - 5:c + 5, c - 5:c + 5, :] = 0.3
    ref[c - 3:c + 3, c - 3:c + 3, c - 3:c + 3] = 2.0      # the target, 6^3 = 216 voxels
    ref[c, c, c] = 2.048                                  # its maximum
    body = np.ones(ref.shape, bool)
    assert normalisation_dose(ref, body) == pytest.approx(2.0, rel=0.02)   # 0.303 as the 99.9th percentile
    axes = [np.arange(n) * 2.0] * 3
    assert normalisation_note(ref, body, axes, "the TPS plan dose") is None
    few = np.zeros((4, 4, 4))
    few[0, 0, :3] = (1.0, 2.0, 3.0)                       # fewer voxels with dose than NEAR_MAX_VOXELS: the least
    assert NEAR_MAX_VOXELS > 3 and normalisation_dose(few, few >= 0) == 1.0


def test_a_tps_maximum_far_above_the_robust_maximum_is_warned_of_with_its_place():
    """Gamma audit 28, F1: the warning says by how much the maximum exceeds the near-maximum and where it is (x, y,
    z in mm: the axes are z, y, x); none for the field alone (its maximum is its plateau)."""
    from mcproton._check.compare import NORMALISATION_WARN_RATIO, normalisation_note

    axes, tps = _box_field()
    body = np.ones(tps.shape, bool)
    assert normalisation_note(tps, body, axes, "the TPS plan dose RD.dcm") is None
    ref = tps.copy()
    ref[11, 9, 3] = 5.7 * 2.0
    note = normalisation_note(ref, body, axes, "the TPS plan dose RD.dcm", "Gy(RBE)")
    assert note is not None and note.startswith("the TPS plan dose RD.dcm: its maximum in the body, 11.4 Gy(RBE) ")
    assert "at (x, y, z) = (6.0, 18.0, 22.0) mm" in note
    assert "5.70 x its near-maximum (8th-largest body voxel), 2 Gy(RBE)" in note
    assert f"(1 voxel above {NORMALISATION_WARN_RATIO:g} x it)" in note
    ref[11, 9, 3] = 1.15 * 2.0                                        # below the ratio: not warned
    assert normalisation_note(ref, body, axes, "x") is None


def test_eight_isolated_hot_voxels_no_longer_set_the_normalisation():
    """Re-read of the check, F1: eight hot TPS voxels within 1.2 x of each other (10.0-11.4 Gy in a 2 Gy field, as the
    CSI audit's one at 5.7 x, but eight) were the near-maximum themselves, so an MC 5 % low passed gamma 2 %/2 mm at
    99.6 % (84.3 % without them); that was warned of, not prevented, and a compact 2 x 2 x 2 cluster was not even
    warned of (this test asserted both: it encoded the flaw, audit 31 norm F1).  Neither is a high-dose region
    (compare._plateau_near_max: fewer than 27 voxels whose 3 x 3 x 3 median reaches the near-maximum / 1.1), so the
    normalisation is the field's 2 Gy, the MC 5 % low fails, and the warning says which dose was used instead; seven
    hot voxels keep the maximum's warning (the normalisation is the field's 2 Gy).  Deterministic."""
    from mcproton._check.compare import normalisation_note

    axes, tps = _box_field()
    body = np.ones(tps.shape, bool)
    rng = np.random.default_rng(0)
    side = np.flatnonzero(((tps > 0.3) & (tps < 1.5)).ravel())
    ref = tps.copy()
    hot = rng.choice(side, 8, replace=False)
    ref.ravel()[hot] = np.linspace(10.0, 11.4, 8)
    assert normalisation_dose(ref, body) == pytest.approx(2.0, rel=0.01)          # 10.0 before
    g = gamma_3d(axes, ref, 0.95 * tps, body, dose_pct=2.0, dist_mm=2.0, points=None)
    assert g["pass_rate"] < 0.9                                                    # 0.996 before
    note = normalisation_note(ref, body, axes, "the TPS plan dose RD.dcm")
    assert note is not None and note.startswith("the TPS plan dose RD.dcm: its near-maximum in the body "
                                                "(8th-largest body voxel), 10 Gy")
    assert "is set by a hot cluster" in note and "look at the TPS dose" in note
    assert re.search(r"the high-dose region's near-maximum, (1\.99\d*|2) Gy, instead", note), note
    seven = tps.copy()
    seven.ravel()[hot[:7]] = np.linspace(10.0, 11.4, 7)
    note7 = normalisation_note(seven, body, axes, "x")
    assert note7 is not None and "(7 voxels above 1.2 x it)" in note7 and "hot cluster" not in note7
    cluster = tps.copy()
    cluster[10:12, 10:12, 10:12] = np.linspace(10.0, 11.4, 8).reshape(2, 2, 2)   # a compact cluster of 8 voxels
    assert normalisation_dose(cluster, body) == pytest.approx(2.0, rel=0.01)      # 10.0 before, with no word
    note8 = normalisation_note(cluster, body, axes, "x")
    assert note8 is not None and "is set by a hot cluster" in note8


def _spot_pattern(voxel_mm: float, sigma_mm: float) -> np.ndarray:
    """A spot-pattern QA field in water (tests/data/dicom/RN_qa_4beams.dcm: one layer of spots 30 mm apart): 5 x 5
    spots, each MCsquare's 100 MeV depth dose (tests/data/dicom/opentps_box100, 2 mm slabs; averaged in pairs for
    4 mm voxels) x a Gaussian lateral profile of ``sigma_mm`` integrated over the voxels, centred on one; 2 Gy at the
    peaks with 0.5 % noise."""
    from math import erf, sqrt
    from pathlib import Path

    csv = Path(__file__).resolve().parents[1] / "data" / "dicom" / "opentps_box100" / "idd_mcsquare_100MeV.csv"
    rows = [ln.split(",") for ln in csv.read_text().splitlines() if ln and ln[0] not in "#Yy"]
    y, v = np.array([[float(r[0]), float(r[1])] for r in rows]).T
    depth = v[np.argsort(y)]
    if voxel_mm == 4.0:
        depth = depth[:depth.size // 2 * 2].reshape(-1, 2).mean(axis=1)
    n = int(round(30.0 / voxel_mm)) | 1   # voxels per spot, odd: the spot centred on a voxel
    edges = (np.arange(n + 1) - n / 2) * voxel_mm
    lat = np.diff([0.5 * (1.0 + erf(e / (sqrt(2.0) * sigma_mm))) for e in edges])
    dose = np.tile(depth[:, None, None] * lat[None, :, None] * lat[None, None, :], (1, 5, 5))
    noise = 1.0 + 0.005 * np.random.default_rng(1).standard_normal(dose.shape)
    return 2.0 * dose / dose.max() * noise


@pytest.mark.parametrize("voxel_mm, sigma_mm", [(2.0, 3.0), (4.0, 4.0), (4.0, 6.0)])
def test_the_peaks_of_a_spot_pattern_are_not_taken_for_isolated_hot_voxels(voxel_mm, sigma_mm):
    """Review a of audit 29, R1: the peak voxel of a pristine pencil beam lies more than 1.2 x above all its
    neighbours on a 2 mm grid (MCsquare's 100 MeV peak: 0.82 / 1.00 / 0.49 along the beam, sigma 3 mm laterally
    0.81) or a 4 mm one, so a spot-pattern QA field's TPS dose, genuine, was warned of as "set by isolated voxels:
    ... hot voxels (low-density voxels of a noisy planning MC?)", told to recompute it with less noise.  Its dose
    falls away from the peak on every side (compare._summits) where a hot voxel's neighbours are about as high as
    the voxels beyond them: the hot voxels on a plateau are still warned of (below).  Deterministic."""
    from mcproton._check.compare import normalisation_note

    ref = _spot_pattern(voxel_mm, sigma_mm)
    body = np.ones(ref.shape, bool)
    axes = [np.arange(s) * voxel_mm for s in ref.shape]
    assert normalisation_dose(ref, body) > 1.95
    assert normalisation_note(ref, body, axes, "x") is None
    hot = ref.copy()   # eight hot voxels in the entrance plateau, on the axes of eight spots: warned
    n = ref.shape[1] // 5
    for k, (j, i) in enumerate([(j, i) for j in range(5) for i in range(5)][:8]):
        hot[5, j * n + n // 2, i * n + n // 2] = 10.0 + 0.2 * k
    note = normalisation_note(hot, body, axes, "x")
    assert note is not None and "is set by a hot cluster" in note, note
    # never looser than without the hot voxels (the sharp peaks' 3 x 3 x 3 median, 1.30 Gy: stricter, and said)
    assert normalisation_dose(hot, body) <= normalisation_dose(ref, body)


# ------------------------------------------------------------------- gamma audit 28: the search (F2)
def _ramp(shift_mm, grad=0.10, floor=0.05):
    """The gamma audit's ramp: D = clip(floor + grad (x - x0), floor, 1) along x on a 3 x 2 x 1 mm (z, y, x) grid,
    the MC that dose shifted by ``shift_mm`` along x; returns the axes, both doses and x."""
    axes = [np.arange(n) * d for n, d in ((5, 3.0), (6, 2.0), (48, 1.0))]
    x = np.meshgrid(*axes, indexing="ij")[2]
    x0 = 0.3 * axes[2][-1]

    def dose(t):
        return np.clip(floor + grad * (t - x0), floor, 1.0)

    return axes, dose(x), dose(x - shift_mm), x, x0


@pytest.mark.parametrize("shift, rate_before", [(1.9, 0.727), (2.1, 0.727)])
def test_the_points_above_1_are_searched_again_finer(shift, rate_before):
    """Gamma audit 28, F2: pymedphys searches distances in steps of 1/5 of the DTA, so a 10 %/mm ramp shifted 1.9
    mm (gamma 2 %/2 mm = 1.9 / sqrt(2^2 + 0.19^2 / 0.1^2 ... ) = 0.945 by hand everywhere on the ramp) read 72.7 %,
    as one shifted 2.1 mm (1.045 by hand).  Searched again, the 1.9 mm shift passes everywhere, the 2.1 mm one
    still fails on the ramp, and the ramp's gammas equal the closed form
    gamma = g s / sqrt(delta^2 + g^2 DTA^2) (audit's ramp.py, hand and brute force)."""
    axes, ref, ev, x, x0 = _ramp(shift)
    body = np.ones(ref.shape, bool)
    before = gamma_3d(axes, ref, ev, body, dose_pct=2.0, dist_mm=2.0, points=None, refine=False)
    after = gamma_3d(axes, ref, ev, body, dose_pct=2.0, dist_mm=2.0, points=None)
    assert before["pass_rate"] == pytest.approx(rate_before, abs=0.01)
    hand = 0.10 * shift / np.sqrt(0.02 ** 2 + 0.10 ** 2 * 2.0 ** 2)
    on = (ref >= 0.1 * after["normalisation_gy"]).ravel()        # the points evaluated, in order
    inner = ((x > x0 + shift + 0.5) & (x < x0 + 0.95 / 0.10 - shift - 0.5)).ravel()[on]
    assert inner.sum() >= 60
    assert np.all(after["gamma"] <= before["gamma"])
    assert np.allclose(after["gamma"][inner], hand, atol=2e-3), (after["gamma"][inner].max(), hand)
    if shift < 2.0:
        assert after["pass_rate"] == 1.0 and after["refined_to_pass"] == after["refined_points"] > 0
    else:
        assert np.all(after["gamma"][inner] > 1.0) and after["pass_rate"] < 0.8


def test_refined_gammas_agree_with_a_brute_force_search_on_a_noisy_dose():
    """The points above 1 searched again (compare.refine_gammas) against a brute-force search of every offset of a
    0.05 mm lattice within the search sphere, on the module's noisy, shifted and scaled dose at 1 %/1 mm (2 mm
    voxels): never above pymedphys's, within 0.02 of the brute force (itself an upper bound), and no pass/fail
    different from it."""
    from scipy.interpolate import RegularGridInterpolator

    from mcproton._check.compare import refine_gammas

    z, y, x = (np.arange(n) * 2.0 - n + 1.0 for n in (30, 28, 26))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    rng = np.random.default_rng(11)
    tps = 2.0 * np.exp(-((zz / 14) ** 2 + (yy / 10) ** 2 + (xx / 9) ** 2))
    mc = 1.01 * 2.0 * np.exp(-(((zz - 1.2) / 14) ** 2 + (yy / 10) ** 2 + (xx / 9) ** 2)) \
        * (1 + 0.03 * rng.standard_normal(tps.shape))
    body = np.ones(tps.shape, bool)
    before = gamma_3d((z, y, x), tps, mc, body, dose_pct=1.0, dist_mm=1.0, points=None, refine=False)
    norm = before["normalisation_gy"]
    on = np.flatnonzero((tps >= 0.1 * norm).ravel())
    fail = np.flatnonzero(before["gamma"] > 1)
    pick = fail[np.random.default_rng(0).choice(fail.size, 25, replace=False)]
    ij = np.unravel_index(on[pick], tps.shape)
    pos = np.stack([a[i] for a, i in zip((z, y, x), ij)], 1)
    r = tps[ij]
    mine = refine_gammas((z, y, x), mc, pos, r, np.full(r.size, 0.01 * norm), 1.0, before["gamma"][pick], 1.5)
    g = np.arange(-1.5, 1.5001, 0.05)
    off = np.stack([m.ravel() for m in np.meshgrid(g, g, g, indexing="ij")], 1)
    off = off[np.sum(off ** 2, 1) <= 1.5 ** 2]
    interp = RegularGridInterpolator((z, y, x), mc, bounds_error=False, fill_value=np.inf)
    brute = np.array([min(1.5, float(np.sqrt(np.sum(off ** 2, 1) + ((interp(p + off) - d) / (0.01 * norm)) ** 2).min()))
                      for p, d in zip(pos, r)])
    assert np.all(mine <= before["gamma"][pick])
    assert np.all(mine <= brute + 0.02), np.max(mine - brute)
    assert np.array_equal(mine <= 1, brute <= 1)
    assert np.sum(mine <= 1) > 0                                     # some points did pass on the finer search


# ------------------------------------------------------------------- gamma audit 28: the subset's error (F4)
def test_a_subsets_pass_rate_has_its_binomial_standard_error(case):
    """Gamma audit 28, F4: each gamma gives its pass rate's standard error from the random subset, binomial with the
    finite-population correction (0 with every point); over 24 seeds the subsets' rates scatter by about it."""
    from mcproton._check.compare import pass_rate_se

    axes, tps, mc, body = case
    every = gamma_3d(axes, tps, mc, body, dose_pct=3.0, dist_mm=2.0, points=None)
    assert every["pass_rate_se"] == 0.0 and every["subset"] is None
    rates, ses = [], []
    for seed in range(24):
        g = gamma_3d(axes, tps, mc, body, dose_pct=3.0, dist_mm=2.0, points=400, seed=seed)
        n, big_n, p = g["points"], g["evaluable_points"], g["pass_rate"]
        assert g["pass_rate_se"] == pytest.approx(np.sqrt(p * (1 - p) / n * (1 - n / big_n)))
        rates.append(p)
        ses.append(g["pass_rate_se"])
    assert 0.5 < np.std(rates, ddof=1) / np.mean(ses) < 1.6          # 24 draws: the sd within ~ +-30 % of it
    assert abs(np.mean(rates) - every["pass_rate"]) < 3 * np.mean(ses) / np.sqrt(24)
    assert pass_rate_se(1.0, 10, 100, 10) == 0.0 and np.isnan(pass_rate_se(float("nan"), 0, 0, None))


def test_a_verdict_the_subset_decides_is_said_with_how_to_evaluate_every_point():
    """Gamma audit 28, F4: a plan at 95.14 % with every point (164 379 points) failed 95 % in 8 of 40 seeds of 10 000
    points (seed 27: 94.74 %) and the row said nothing.  Within 2 standard errors of the level the note says that the
    subset can turn the verdict and how to evaluate every point (--gamma-points 0) at what cost; clear of it, or with
    every point, no note (its words are not the MC-noise notes' "decides this verdict")."""
    from mcproton._check.api import GAMMA_SUBSET_DECIDES_SE, gamma_row_detail, gamma_subset_note

    g = {"pass_rate": 0.9474, "points": 10000, "evaluable_points": 164379, "subset": 10000,
         "pass_rate_se": 0.00208, "normalisation_gy": 2.0}
    note = gamma_subset_note("gamma 2%/2mm global pass rate (body, 10 % threshold)", g, 95.0, False)
    assert note is not None and "failed at 94.74 % +- 0.21 % (standard error)" in note
    assert "can turn this verdict" in note and "--gamma-points 0" in note and "164,379 points" in note
    assert " s of CPU" in note
    assert gamma_subset_note("x", {**g, "pass_rate": 0.9570}, 95.0, True) is None             # 3.4 SE above
    assert gamma_subset_note("x", {**g, "pass_rate": 0.95 + 0.00208 * (GAMMA_SUBSET_DECIDES_SE - 0.1)}, 95.0,
                             True) is not None
    assert gamma_subset_note("x", {**g, "subset": None, "pass_rate_se": 0.0}, 95.0, False) is None
    text = gamma_row_detail(g, "Gy(RBE)")
    assert text == (" (10,000 random points of 164,379: standard error 0.21 %; in % of 2 Gy(RBE), the TPS dose's "
                    "near-maximum in the body (its 8th-largest voxel))")
    assert gamma_row_detail({**g, "subset": None}, "Gy").startswith(" (every one of the 10,000 points; in % of 2 Gy")

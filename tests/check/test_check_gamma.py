"""The 3-D gammas of ``mcproton check`` computed faster must give the same values bit for bit (issue 13 item 5):
the random subset drawn without numpy's global random state is pymedphys's own draw, the global criteria with the
same distance searched together equal separate searches, and the gammas run in worker processes equal the gammas
run here.  A synthetic dose (no transport): a smooth TPS dose and an "MC" dose shifted by 3 mm, 5 % higher and
noisy, so that the pass rates lie between 20 and 95 % and a changed value would show."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

pymedphys = pytest.importorskip("pymedphys")

from mcproton._check.compare import _interp_algo, gamma_3d, gamma_3d_multi, gamma_many, start_gammas  # noqa: E402


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
    """The gamma as mcproton check computed it before (pymedphys draws the subset from numpy's global state)."""
    norm = float(tps[body].max())
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
    g = gamma_3d(axes, tps, mc, body, dose_pct=2.0, dist_mm=2.0, points=1500, seed=12345)
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    assert g["subset"] == 1500 and g["points"] == 1500 and g["evaluable_points"] > 1500
    assert 0.2 < g["pass_rate"] < 0.95, g["pass_rate"]          # a mixed case: a change of values would show
    old = _pymedphys_subset_gamma(axes, tps, mc, body, 2.0, 2.0, 1500, 12345)
    assert np.array_equal(g["gamma"], old)                        # the same points and values, bit for bit
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

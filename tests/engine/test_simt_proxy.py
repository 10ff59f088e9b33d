"""The SIMT-efficiency proxy (mcproton/_kernels/simt.py): exact arithmetic on synthetic step counts, the modelled
launch against the CUDA backend's real launch, and the transport kernel's per-track step counts (CPU backend only:
the GPU kernel is compiled without the counting)."""
from __future__ import annotations

import numpy as np
import pytest
from fake_cupy import install_fake_cupy   # tests/conftest.py, imported at collection (as test_cuda_emulated)

from mcproton._kernels import simt
from mcproton._kernels.layout import LEDGER
from mcproton.geometry import box_phantom
from mcproton.run import Simulation
from mcproton.settings import PhysicsSettings, RunSettings
from mcproton.source import Beam


def test_one_warp_of_unequal_lanes():
    # lanes 1..32 steps: 528 lane-steps in 32 x 32 slots
    assert simt.simt_efficiency(np.arange(1, 33), threads=32) == 528 / 1024
    assert simt.simt_efficiency(np.full(64, 7), threads=64) == 1.0


def test_partial_last_warp_counts_its_idle_lanes():
    # 40 histories of 1 step on 64 threads: warp 0 full, warp 1 has 8 of 32 lanes busy -> 40 / (32 x 2)
    assert simt.simt_efficiency(np.ones(40, np.int64), threads=64) == 40 / 64


def test_grid_stride_schedules_differ_as_modelled():
    # 64 histories on 32 threads: lane l runs histories l and l + 32.  History 0 (lane 0, iteration 0) and
    # history 33 (lane 1, iteration 1) take 10 steps, the rest 1: 82 steps in all.
    s = np.ones(64, np.int64)
    s[0] = s[33] = 10
    # lanes wait at the end of every history: iterations of 10 and 10 steps
    assert simt.simt_efficiency(s, threads=32) == 82 / (32 * 20)
    # lanes never wait: lanes 0 and 1 each do 11 steps, the warp lasts 11
    assert simt.simt_efficiency_free_lanes(s, threads=32) == 82 / (32 * 11)
    # one history per thread: both models agree
    assert simt.simt_efficiency(s, threads=64) == simt.simt_efficiency_free_lanes(s, threads=64) == 82 / (32 * 20)


def test_phases_run_one_after_the_other():
    # lane 0: a 10-step primary, no secondary; lane 1: a 1-step primary and a 9-step secondary; 30 lanes: 1 + 0
    ph = np.zeros((32, 2), np.int64)
    ph[:, 0] = 1
    ph[0, 0] = 10
    ph[1, 1] = 9
    total = 10 + 1 + 9 + 30
    assert simt.simt_efficiency(ph.sum(axis=1), threads=32) == total / (32 * 10)   # one phase: the longest lane
    assert simt.simt_efficiency(ph, threads=32) == total / (32 * (10 + 9))        # max primary + max secondary


def test_bad_step_counts_are_refused():
    with pytest.raises(ValueError, match="step counts"):
        simt.simt_efficiency(np.array([3, -1]), threads=32)
    with pytest.raises(ValueError, match="multiple of 32"):
        simt.launch_threads(100, block=48)


def test_modelled_threads_follow_the_cuda_launch():
    assert simt.launch_threads(200_000) == 200_064                  # 1563 blocks of 128 (the Nsight Compute case)
    assert simt.launch_threads(10_000_000) == 132 * 64 * 128        # the grid cap: a grid-stride loop
    assert simt.launch_threads(10_000_000, block=64) == 132 * 64 * 128
    assert simt.launch_threads(1) == 128


@pytest.mark.parametrize("n", [1000, 50_000])
def test_modelled_threads_equal_the_emulated_cuda_launch(monkeypatch, n):
    """CudaBackend.launch on the strict CuPy stand-in (2 SMs): the grid it launches is the one simt models."""
    from mcproton._backend import get_backend
    from mcproton._kernels.layout import LAYOUT_PROBE_FIELDS

    fake = install_fake_cupy(monkeypatch)
    try:
        be = get_backend("cuda")
        out = be.zeros(len(LAYOUT_PROBE_FIELDS), np.int64)   # the probe writes one value per field (67 today)
        be.launch("mcp_probe_layout", n, out)
        name, grid, block = fake.launches[-1]
        assert name == "mcp_probe_layout"
        assert grid[0] * block[0] == simt.launch_threads(n, block=block[0], sm_count=2)
    finally:
        get_backend.cache_clear()


def _sim(backend, energy, n, physics, sigma_mm=(3.0, 3.0)):
    depth = round((10 * 0.0022 * energy**1.77 + 20.0) / 2.0) * 2.0   # whole voxels (the box made before too)
    geom = box_phantom("water", (40.0, 40.0, depth), 2.0)
    beam = Beam.pencil(energy, position_mm=(0.0, 0.0, -1.0), sigma_mm=sigma_mm)
    return Simulation(geom, beam, RunSettings(primaries=n, seed=7, backend=backend, physics=physics))


def _tracks(backend, energy, n, physics, sigma_mm=(3.0, 3.0)):
    return simt.history_steps(_sim(backend, energy, n, physics, sigma_mm), 0, n)


def test_kernel_counts_every_step_of_every_track():
    n = 3000
    tracks, ledger = _tracks("cpu", 150.0, n, PhysicsSettings())
    assert tracks.shape == (n, simt.HISTORY_STEP_SLOTS - 2)
    assert int(tracks.sum()) == int(ledger[LEDGER["steps"]])       # the ledger's step count, exactly
    assert (tracks[:, 0] > 0).all()                                  # every primary enters the box and steps
    assert (tracks[:, 1:] > 0).any()                                 # some histories carry secondaries
    r = simt.proxy(tracks, simt.launch_threads(n))
    # lanes waiting longer can only lose lanes: every track <= primary|secondaries <= every history <= never
    assert 0 < r["efficiency"] <= r["efficiency_primary_then_secondaries"] <= r["efficiency_history_sync"]
    assert r["efficiency_history_sync"] <= r["efficiency_free_lanes"] <= 1
    # full physics diverges: well below 1 (15/32 measured for 150 MeV on 1 mm voxels)
    assert r["efficiency"] < 0.8
    assert r["active_lanes"] == 32 * r["efficiency"]


def test_equal_histories_keep_every_lane_busy():
    # no straggling, scattering or nuclear events, a point source: every history is the same CSDA track
    off = PhysicsSettings(straggling=False, msc=False, nuclear=False)
    tracks, ledger = _tracks("cpu", 100.0, 512, off, sigma_mm=(0.0, 0.0))   # 16 whole warps
    assert int(tracks.sum()) == int(ledger[LEDGER["steps"]])
    assert (tracks[:, 0] == tracks[0, 0]).all() and tracks[0, 0] > 1 and not tracks[:, 1:].any()
    assert simt.proxy(tracks, simt.launch_threads(512))["efficiency"] == 1.0
    # straggling alone makes the histories differ in length
    tracks, _ = _tracks("cpu", 100.0, 512, PhysicsSettings(msc=False, nuclear=False), sigma_mm=(0.0, 0.0))
    assert simt.proxy(tracks, simt.launch_threads(512))["efficiency"] < 1.0


def test_counts_are_refused_on_the_gpu_backend():
    class FakeSim:
        class backend:
            name = "cuda"

    with pytest.raises(ValueError, match="CPU backend only"):
        simt.history_steps(FakeSim(), 0, 10)


# --- the persistent, step-granular loop (simt_efficiency_persistent) -------------------------------------------

def _persistent_by_iteration(work, warps, refill_cost, refill_min_idle):
    """The persistent loop stepped iteration by iteration, warp by warp, lane by lane (the schedule of the
    simt module docstring, written out directly): the reference for the event-driven simulation."""
    work = [int(x) for x in work]
    n, lanes = len(work), 32 * warps
    left = [[0] * 32 for _ in range(warps)]          # iterations left on the lane's history (0: idle)
    stepping = [[False] * 32 for _ in range(warps)]  # the lane's history takes steps (not a zero-step one)
    nxt = steps = 0
    cost = 0.0
    while True:
        thr = 1 if n - nxt <= lanes else refill_min_idle   # decided from the counter at the iteration's start
        running = False
        for w in range(warps):
            idle = [lane for lane in range(32) if left[w][lane] == 0]
            refilled = False
            if len(idle) >= thr:
                for lane in idle:
                    if nxt < n:
                        left[w][lane], stepping[w][lane] = max(work[nxt], 1), work[nxt] > 0
                        nxt, refilled = nxt + 1, True
            active = [lane for lane in range(32) if left[w][lane]]
            if active:
                running = True
                cost += 32 + (32 * refill_cost if refilled else 0)
                for lane in active:
                    steps += stepping[w][lane]
                    left[w][lane] -= 1
        if not running and nxt >= n:
            break
    assert steps == sum(work)
    return steps / cost


def _parts(r):
    return r["efficiency"] + r["tail_fraction"] + r["refill_fraction"] + r["wait_fraction"] + r["empty_fraction"]


def test_persistent_equal_histories_keep_every_lane_busy():
    # 4 histories per lane, all of 5 steps, one warp: every lane refills at t = 0, 5, 10, 15 together
    r = simt.simt_efficiency_persistent(np.full(128, 5), warps=1)
    assert r["efficiency"] == 1.0 and r["iterations"] == 20 and r["refills"] == 4
    assert simt.simt_efficiency_persistent(np.full(128, 5), warps=1, refill_cost=0.5)["efficiency"] == 20 / 22
    # one history more: lane 0 runs it alone in iterations 20 .. 24 (the tail), 31 lanes idle
    r = simt.simt_efficiency_persistent(np.full(129, 5), warps=1)
    assert r["efficiency"] == 129 * 5 / (32 * 25)
    assert r["tail_fraction"] == 31 * 5 / (32 * 25) and r["wait_fraction"] == 0 and r["refill_fraction"] == 0
    # the tracks of a history run back to back on its lane: (n, tracks) is summed per history
    two = np.zeros((128, 3), np.int64)
    two[:, 0], two[:, 2] = 3, 2
    assert simt.simt_efficiency_persistent(two, warps=1) == simt.simt_efficiency_persistent(np.full(128, 5), warps=1)


def test_persistent_one_long_history_per_warp():
    # 2 warps; histories 0 and 32 (lane 0 of each warp) take 100 steps, the other 6200 one step each: the other
    # 31 lanes of each warp refill every iteration (62 histories per iteration), the work ends at t = 100 exactly
    w = np.ones(6202, np.int64)
    w[0] = w[32] = 100
    for c in (0.0, 0.25, 1.0):
        r = simt.simt_efficiency_persistent(w, warps=2, refill_cost=c, refill_min_idle=1)
        assert r["iterations"] == 100 and r["refills"] == 200 and r["efficiency"] == 1 / (1 + c)
        assert r["refill_fraction"] == c / (1 + c) and r["tail_fraction"] == 0
    # a warp that waits for all 32 lanes: lanes 1..31 idle in iterations 1..99 (31 x 99 x 2 lane-iterations);
    # from t = 100 64 histories per iteration; t = 195 hands out the last 58 (warp 0: 32, warp 1: 26)
    r = simt.simt_efficiency_persistent(w, warps=2, refill_cost=0.0, refill_min_idle=32)
    assert r["iterations"] == 196 and r["refills"] == 2 * 97
    assert r["efficiency"] == 6400 / (64 * 196)
    assert r["wait_fraction"] == 6138 / (64 * 196) and r["tail_fraction"] == 6 / (64 * 196)
    r = simt.simt_efficiency_persistent(w, warps=2, refill_cost=0.5, refill_min_idle=32)
    assert r["efficiency"] == 6400 / (64 * (196 + 0.5 * 97))


def test_persistent_refills_in_different_iterations_each_cost():
    # one warp, 64 histories: the first 32 take 1..32 steps, the next 32 take 32..1, so lane l refills alone at
    # t = l + 1 and every lane ends at t = 33: 33 refill iterations of cost c, no idle lane
    w = np.concatenate([np.arange(1, 33), np.arange(32, 0, -1)])
    for c in (0.0, 0.5, 1.0):
        r = simt.simt_efficiency_persistent(w, warps=1, refill_cost=c)
        assert r["refills"] == 33 and r["iterations"] == 33
        assert r["efficiency"] == 1056 / (32 * (33 + 33 * c))


def test_persistent_more_lanes_than_histories_is_tail_dominated():
    # 4 warps, 10 histories of 5 steps: warp 0 lanes 0..9 take them at t = 0, 3 warps get nothing (count for
    # nothing), 22 lanes of warp 0 idle: 50 steps in 32 x 5 (+ one refill)
    for k in (1, 8, 32):   # fewer histories than lanes: every idle lane refills whatever the threshold
        r = simt.simt_efficiency_persistent(np.full(10, 5), warps=4, refill_min_idle=k)
        assert r["efficiency"] == 50 / 160 and r["tail_fraction"] == 110 / 160 and r["refills"] == 1
    assert simt.simt_efficiency_persistent(np.full(10, 5), warps=4, refill_cost=1.0)["efficiency"] == 50 / (32 * 6)
    # a history without a step holds its lane for the iteration of its refill
    r = simt.simt_efficiency_persistent(np.array([0, 2]), warps=1)
    assert r["efficiency"] == 2 / 64 and r["empty_fraction"] == 1 / 64 and r["tail_fraction"] == 61 / 64
    assert simt.simt_efficiency_persistent(np.zeros(0, np.int64), warps=1)["efficiency"] == 1.0


def test_persistent_events_equal_the_iteration_by_iteration_loop():
    rng = np.random.default_rng(15)
    for _ in range(40):
        warps, n = int(rng.integers(1, 4)), int(rng.integers(1, 300))
        c, k = float(rng.choice([0.0, 0.3, 1.0])), int(rng.integers(1, 33))
        work = rng.integers(0, int(rng.integers(1, 40)), n)
        r = simt.simt_efficiency_persistent(work, warps=warps, refill_cost=c, refill_min_idle=k)
        assert r["efficiency"] == pytest.approx(_persistent_by_iteration(work, warps, c, k), rel=1e-12)
        assert _parts(r) == pytest.approx(1.0, rel=1e-12)
        assert min(r["tail_fraction"], r["wait_fraction"], r["refill_fraction"], r["empty_fraction"]) >= 0


def test_persistent_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="step counts"):
        simt.simt_efficiency_persistent(np.array([3, -1]))
    with pytest.raises(ValueError, match="refill_min_idle"):
        simt.simt_efficiency_persistent(np.ones(5, np.int64), refill_min_idle=33)
    with pytest.raises(ValueError, match="refill_cost"):
        simt.simt_efficiency_persistent(np.ones(5, np.int64), refill_cost=-0.1)
    with pytest.raises(ValueError, match="warps"):
        simt.simt_efficiency_persistent(np.ones(5, np.int64), warps=0)
    assert simt.PERSISTENT_WARPS_H200 == simt.persistent_warps() == 2640   # 132 SMs x 5 blocks x 4 warps


def test_persistent_loop_beats_free_lanes_on_real_counts():
    """150 MeV, 20 000 histories of full physics: the persistent loop's dynamic fetch balances the lanes better
    than a grid-stride launch whose lanes never wait (deterministic: seed 7 of _sim)."""
    n = 20_000
    tracks, _ = _tracks("cpu", 150.0, n, PhysicsSettings())
    total = tracks.sum(axis=1)
    # more lanes than histories (the default 2640 warps): one history per lane, the free-lanes warps exactly
    free = simt.simt_efficiency_free_lanes(total, simt.launch_threads(n))
    assert simt.simt_efficiency_persistent(tracks)["efficiency"] == pytest.approx(free, rel=1e-12)
    # 78 warps: 8 histories per lane; the same threads in a grid-stride launch whose lanes never wait
    warps = 78
    pers = simt.simt_efficiency_persistent(tracks, warps=warps)
    free_same = simt.simt_efficiency_free_lanes(total, 32 * warps)
    assert pers["efficiency"] >= free_same and pers["efficiency"] > free
    assert pers["efficiency"] > 0.9 and pers["tail_fraction"] < 0.1   # 0.945 (free lanes 0.923, 0.830)
    # a refill cost can only lower it (the same schedule, more time)
    costly = simt.simt_efficiency_persistent(tracks, warps=warps, refill_cost=0.5)
    assert costly["efficiency"] < pers["efficiency"] and costly["refills"] == pers["refills"]
    r = simt.proxy(tracks, simt.launch_threads(n), warps=warps)
    assert r["efficiency_persistent"] == costly["efficiency"]
    assert (r["persistent_refill_cost"], r["persistent_refill_min_idle"], r["persistent_warps"]) == (0.5, 1, warps)
    assert [(p["refill_cost"], p["refill_min_idle"]) for p in r["persistent"]] == list(simt.PERSISTENT_GRID)
    assert r["persistent"][1]["efficiency"] == pers["efficiency"]


def test_bench_simt_reports_the_persistent_loop(capsys):
    import json
    from types import SimpleNamespace

    from mcproton.bench import simt_main

    args = SimpleNamespace(backend="cpu", energy=100.0, primaries=2000, voxel_mm=2.0, json=True)
    assert simt_main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["modelled_launch"]["persistent_warps"] == res["persistent_warps"] == 2640
    assert 0 < res["efficiency_persistent"] <= 1 and len(res["persistent"]) == len(simt.PERSISTENT_GRID)
    assert simt_main(SimpleNamespace(**{**vars(args), "json": False})) == 0
    text = capsys.readouterr().out
    assert "persistent step loop (2,640 resident warps" in text and "batch wait" in text


def test_bench_simt_docstring_gives_the_modelled_resident_blocks():
    """Audit 19 (review) F4: run_simt's docstring said "sm_count x 2 resident blocks" (the old kernel's); the loop it
    models has simt.PERSISTENT_BLOCKS_PER_SM (5), as its printed table says."""
    from mcproton.bench import run_simt

    doc = " ".join((run_simt.__doc__ or "").split())
    assert f"``sm_count`` x ``simt.PERSISTENT_BLOCKS_PER_SM`` ({simt.PERSISTENT_BLOCKS_PER_SM}) resident blocks" in doc
    assert simt.persistent_warps(simt.H200_SMS) == simt.H200_SMS * simt.PERSISTENT_BLOCKS_PER_SM * 128 // simt.WARP

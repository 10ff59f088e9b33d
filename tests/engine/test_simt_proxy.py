"""The SIMT-efficiency proxy (mcproton/_kernels/simt.py): exact arithmetic on synthetic step counts, the modelled
launch against the CUDA backend's real launch, and the transport kernel's per-track step counts (CPU backend only:
the GPU kernel is compiled without the counting)."""
from __future__ import annotations

import numpy as np
import pytest
from fake_cupy import install_fake_cupy   # tests/conftest.py, imported at collection (as test_cuda_emulated)

from mcproton._kernels import simt
from mcproton._kernels.layout import LAYOUT_PROBE_FIELDS, LEDGER
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

    fake = install_fake_cupy(monkeypatch)
    try:
        be = get_backend("cuda")
        out = be.zeros(len(LAYOUT_PROBE_FIELDS), np.int64)   # 64 was too few: the probe wrote past it (heap)
        be.launch("mcp_probe_layout", n, out)
        name, grid, block = fake.launches[-1]
        assert name == "mcp_probe_layout"
        assert grid[0] * block[0] == simt.launch_threads(n, block=block[0], sm_count=2)
    finally:
        get_backend.cache_clear()


def _sim(backend, energy, n, physics, sigma_mm=(3.0, 3.0)):
    geom = box_phantom("water", (40.0, 40.0, 10 * 0.0022 * energy**1.77 + 20.0), 2.0)
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

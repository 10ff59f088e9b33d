"""A CPU-measurable proxy for the SIMT efficiency of the transport kernel: the fraction of the 32 lanes of a warp
that do useful work, under the schedule that the GPU launch gives the histories.

What the GPU does (kernels/transport.cu ``mcp_transport``, kernels/core/portability.h ``MCP_FOR_EACH_ITEM``,
mcproton/_backend/cuda.py ``CudaBackend.launch``): a launch of ``n`` histories runs ``T`` threads, ``T`` = grid x
block with ``grid = min(ceil(n / block), SMs x 64 x 128 / block)``, and a grid-stride loop: thread ``t`` runs the
histories ``t, t + T, t + 2T, ...`` one after the other, each with its secondary protons inline (the primary track,
then the tracks of its secondary stack) on the same thread.  The threads ``32w .. 32w + 31`` form warp ``w``
(a block is a whole number of warps).

The step counts are exact: the kernel itself counts, per history of a launch, the steps of the whole history and of
its primary track (``Params::history_steps``, written only when that pointer is set; ``history_steps`` below).  The
proxy then models the warp at the granularity of a transport step (every step costs the same, on every lane):

* ``efficiency`` (the headline figure): lanes wait for each other at the end of each history (the end of an
  iteration of the grid-stride loop, where the divergent step loop reconverges), so an iteration of warp ``w``
  lasts as long as its longest history.  Efficiency = sum of all steps / (32 x sum over warps and iterations of
  the longest history's steps).  With one history per thread (``n <= T``: e.g. 2e5 histories on an H200, the
  Nsight Compute case) this is the only schedule there is.
* ``efficiency_primary_then_secondaries``: lanes also wait for each other between the primary track and the
  secondaries (the step loop of the primary reconverges before the secondary loop starts): an iteration lasts
  max(primary) + max(secondaries).  Lower; closer to what the compiled code does.
* ``efficiency_free_lanes``: lanes never wait for each other (each lane's work is the sum over its histories and a
  warp lasts as long as its busiest lane).  An upper bound of the model; equal to ``efficiency`` when ``n <= T``.
* ``efficiency_primaries_only``: ``efficiency`` of the primary tracks alone, i.e. what the warps would reach if the
  secondaries ran elsewhere (a global queue, issue 15).

All are upper bounds of what Nsight Compute reports as "Avg. Active Threads Per Warp" / 32: that counter also
sees the divergence inside a step (the voxel walk, rare physics branches, the vacuum loop), which a step count
cannot.  Warps beyond the last history (in the last block) do no steps and count for nothing.
"""
from __future__ import annotations

from typing import Any

import numpy as np

WARP = 32
H200_SMS = 132   # streaming multiprocessors of an NVIDIA H200 (the GPU the CPU proxy models by default)
MAX_BLOCKS_PER_SM_IN_GRID = 64   # grid cap of CudaBackend.launch: SMs x 64 blocks of 128 threads
HISTORY_STEP_SLOTS = 8           # MCP_HISTORY_STEP_SLOTS (kernels/params.h)


def launch_threads(n_items: int, block: int = 128, sm_count: int = H200_SMS) -> int:
    """Threads of one CudaBackend.launch of ``n_items`` (grid x block; the grid-stride loop covers the rest)."""
    from .._backend.cuda import BLOCK

    if block % WARP or block <= 0:
        raise ValueError(f"block of {block} threads: give a positive multiple of {WARP}")
    grid = max(1, min((int(n_items) + block - 1) // block, int(sm_count) * MAX_BLOCKS_PER_SM_IN_GRID * BLOCK // block))
    return grid * block


def _lanes(values: np.ndarray, threads: int) -> np.ndarray:
    """(iterations, warps, 32): the value of the history that lane l of warp w runs in grid-stride iteration k
    (0 where the lane has no history)."""
    v = np.asarray(values, np.int64).reshape(-1)
    if threads <= 0:
        raise ValueError("threads must be positive")
    iters = max(1, -(-v.size // threads))
    warps = -(-threads // WARP)
    m = np.zeros((iters, warps * WARP), np.int64)
    m[:, :threads] = np.pad(v, (0, iters * threads - v.size)).reshape(iters, threads)
    return m.reshape(iters, warps, WARP)


def simt_efficiency(phases: Any, threads: int) -> float:
    """Active-lane fraction when the lanes of a warp wait for each other at the end of every phase of every
    history.  ``phases``: per-history step counts, shape (n,) (one phase: the whole history) or (n, p) (p phases
    run one after the other, e.g. primary then secondaries); history i runs on thread i % threads, in
    grid-stride iteration i // threads.  Sum of steps / (32 x sum over warps, iterations and phases of the
    longest lane).  1.0 when no history takes a step (nothing diverges)."""
    a = np.asarray(phases, np.int64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or (a.size and a.min() < 0):
        raise ValueError("phases: per-history step counts >= 0, shape (n,) or (n, phases)")
    total = int(a.sum())
    busy = sum(int(_lanes(a[:, j], threads).max(axis=2).sum()) for j in range(a.shape[1]))
    return total / (WARP * busy) if busy else 1.0


def simt_efficiency_free_lanes(steps: Any, threads: int) -> float:
    """Active-lane fraction when the lanes never wait for each other: a lane's work is the sum over the histories
    it runs, a warp lasts as long as its busiest lane."""
    m = _lanes(steps, threads)
    total = int(m.sum())
    busy = int(m.sum(axis=0).max(axis=1).sum())
    return total / (WARP * busy) if busy else 1.0


def history_steps(sim: Any, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(tracks, ledger) for histories [first, first + n) of ``sim`` (a mcproton.run.Simulation on the CPU backend),
    counted by the transport kernel itself in one launch (Params::history_steps).  ``tracks``: (n, S - 2) int64,
    S = MCP_HISTORY_STEP_SLOTS: the steps of the primary track (column 0) and of the secondary tracks in the order
    they ran on the history's thread (columns 1 ..; the last column sums any further ones).  The simulation's
    tallies are left zeroed."""
    b = sim.backend
    if b.name != "cpu":
        raise ValueError(f"the per-history step counts are compiled for the CPU backend only, not {b.name!r} (the "
                         "GPU kernel stays without the hooks); count on the CPU and model the GPU's launch")
    n = int(n)
    counts = np.zeros((n, HISTORY_STEP_SLOTS), np.int64)
    p = sim.params_host.copy()
    p["history_steps"] = b.ptr(counts)
    sim._zero_tallies()
    sim.ledger_dev.fill(0)
    b.launch("mcp_transport", n, b.asarray(p.view(np.uint8)), int(first) + sim.history_offset, n)
    b.synchronize()
    ledger = b.to_host(sim.ledger_dev).copy()
    sim._zero_tallies()
    return counts[:, 2:], ledger


def proxy(tracks: np.ndarray, threads: int) -> dict:
    """The proxy's figures for per-history track step counts ``tracks`` (history_steps) and ``threads``."""
    tracks = np.asarray(tracks, np.int64)
    total, primary = tracks.sum(axis=1), tracks[:, 0]
    eff = simt_efficiency(tracks, threads)
    return {
        "efficiency": eff,
        "active_lanes": WARP * eff,
        "efficiency_history_sync": simt_efficiency(total, threads),
        "efficiency_primary_then_secondaries": simt_efficiency(np.stack([primary, total - primary], 1), threads),
        "efficiency_free_lanes": simt_efficiency_free_lanes(total, threads),
        "efficiency_primaries_only": simt_efficiency(primary, threads),
        "steps_per_history": float(total.mean()) if total.size else 0.0,
        "secondary_step_fraction": float((total - primary).sum() / max(1, total.sum())),
        "histories_with_secondaries": float((total > primary).mean()) if total.size else 0.0,
        "histories_per_thread_max": -(-total.size // threads),
    }

"""A CPU-measurable proxy for the SIMT efficiency of the transport kernel: the fraction of the 32 lanes of a warp
that do useful work, under the schedule that the GPU launch gives the histories.

What the GPU does (kernels/transport.cu ``mcp_transport``, kernels/core/portability.h ``MCP_FOR_EACH_ITEM``,
mcproton/_backend/cuda.py ``CudaBackend.launch``): a launch of ``n`` histories runs ``T`` threads, ``T`` = grid x
block with ``grid = min(ceil(n / block), SMs x 64 x 128 / block)``, and a grid-stride loop: thread ``t`` runs the
histories ``t, t + T, t + 2T, ...`` one after the other, each with its secondary protons inline (the primary track,
then the tracks of its secondary stack) on the same thread.  The threads ``32w .. 32w + 31`` form warp ``w``
(a block is a whole number of warps).

The step counts are exact: the transport kernel itself counts the steps of every track of every history of a launch
(``history_steps`` below; ``Params::history_steps``, null in a run).  The counting is compiled into the CPU build
only: the GPU kernel stays as it is (the same sm_90 machine code), and its histories follow the same distributions
(same physics, same random-number streams).  The proxy then models the warp at the granularity of a transport
step (every step costs the same, on every lane):

* ``efficiency`` (the headline figure): the lanes of a warp wait for each other at the end of every track (the
  step loop of ``transport_track`` is where the lanes diverge; they reconverge where it returns, before the next
  track of the secondary loop and before the next history of the grid-stride loop).  Per grid-stride iteration a
  warp runs its primaries in lock-step (as long as the longest), then the 1st secondary of every lane that has
  one (as long as the longest of those), then the 2nd, ...  Efficiency = sum of all steps / (32 x sum over warps,
  iterations and track ranks of the longest lane).
* ``efficiency_primary_then_secondaries``: the lanes wait for each other after the primary and after all the
  secondaries (a lane's secondaries overlap the other lanes' ones): max(primary) + max(sum of the secondaries).
* ``efficiency_history_sync``: the lanes wait for each other only at the end of a history: max(whole history).
* ``efficiency_free_lanes``: the lanes never wait for each other: a lane's work is the sum over its histories,
  a warp lasts as long as its busiest lane.  Equal to ``efficiency_history_sync`` with one history per thread
  (``n <= T``: e.g. 2e5 histories on an H200, the Nsight Compute case).
* ``efficiency_primaries_only``: the primary tracks alone, i.e. what the warps would reach if the secondaries
  ran elsewhere (a global queue, issue 15).

Each of the first four schedules is at least as efficient as the one before it (the 6th and later secondaries
of a history share the last rank, which can only raise ``efficiency`` a little).  Which one the hardware follows
is the compiler's choice (Volta's independent thread scheduling allows all of them); the headline is the one that
structured reconvergence at the loop exits gives.

All are upper bounds of what Nsight Compute reports as "Avg. Active Threads Per Warp" / 32: that counter also
sees the divergence inside a step (the voxel walk, rare physics branches, the vacuum loop), which a step count
cannot.  Warps beyond the last history (in the last block) do no steps and count for nothing.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .layout import HISTORY_STEP_SLOTS   # MCP_HISTORY_STEP_SLOTS (kernels/params.h)

WARP = 32
H200_SMS = 132   # streaming multiprocessors of an NVIDIA H200 (the GPU the CPU proxy models by default)
MAX_BLOCKS_PER_SM_IN_GRID = 64   # grid cap of CudaBackend.launch: SMs x 64 blocks of 128 threads


def launch_threads(n_items: int, block: int = 128, sm_count: int = H200_SMS) -> int:
    """Threads of one CudaBackend.launch of ``n_items`` (grid x block; the grid-stride loop covers the rest)."""
    from .._backend.cuda import BLOCK

    if block % WARP or block <= 0:
        raise ValueError(f"block of {block} threads: give a positive multiple of {WARP}")
    cap = int(sm_count) * MAX_BLOCKS_PER_SM_IN_GRID * BLOCK // block
    grid = max(1, min((int(n_items) + block - 1) // block, cap))
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
        raise ValueError(f"the per-track step counts are compiled into the CPU backend only, not {b.name!r} (the GPU "
                         "kernel stays without them): count on the CPU and model the GPU's launch (run_simt)")
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
    return counts[:, 2:].copy(), ledger


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

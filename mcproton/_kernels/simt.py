"""A CPU-measurable proxy for the SIMT efficiency of the transport kernel: the fraction of the 32 lanes of a warp
that do useful work, under the schedule that the GPU launch gives the histories.

Two kernels are modelled.  The kernel before issue 15's redesign (133b5b6f .. ca8302b8, the one measured with
Nsight Compute on the H200 on 2026-12-04): a launch of ``n`` histories ran ``T`` threads, ``T`` = grid x block with
``grid = min(ceil(n / block), SMs x 64 x 128 / block)`` (mcproton/_backend/cuda.py ``CudaBackend.launch``), and a
grid-stride loop: thread ``t`` ran the histories ``t, t + T, t + 2T, ...`` one after the other, each with its
secondary protons inline (the primary track, then the tracks of its secondary stack, each a loop over steps) on the
same thread.  The threads ``32w .. 32w + 31`` form warp ``w`` (a block is a whole number of warps).  The figures
``efficiency`` .. ``efficiency_primaries_only`` below model it.  The kernel now in kernels/transport.cu
(``mcp_transport``) is the persistent, step-granular loop that ``efficiency_persistent`` models.

The step counts are exact: the transport kernel itself counts the steps of every track of every history of a launch
(``history_steps`` below; ``Params::history_steps``, null in a run).  The counting is compiled into the CPU build
only: the GPU kernel stays as it is (the same sm_90 machine code), and its histories follow the same distributions
(same physics, same random-number streams).  The proxy then models the warp at the granularity of a transport
step (every step costs the same, on every lane):

* ``efficiency`` (the old kernel's headline figure): the lanes of a warp wait for each other at the end of every
  track (the step loop of the old kernel's ``transport_track`` is where the lanes diverged; they reconverged where
  it returned, before the next track of the secondary loop and before the next history of the grid-stride loop).
  Per grid-stride iteration a warp runs its primaries in lock-step (as long as the longest), then the 1st
  secondary of every lane that has one (as long as the longest of those), then the 2nd, ...  Efficiency = sum of
  all steps / (32 x sum over warps, iterations and track ranks of the longest lane).
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

``efficiency_persistent`` (``simt_efficiency_persistent``) models the kernel now in kernels/transport.cu: the
PERSISTENT, step-granular loop of issue 15, in which every lane runs one loop with one transport step per
iteration, ``while (busy) { if (!track_step(...)) busy = next_track(...); }`` (next_track pops the history's
secondary stack, else takes the next history from the work counter).  What the model assumes:

* ``W`` warps (``warps``; default ``PERSISTENT_WARPS_H200`` = 132 SMs x 5 resident blocks of 128 threads = 2640)
  are resident for the whole launch, all histories of the launch go through them, and all warps advance at the
  same rate: time is counted in loop iterations, one transport step per busy lane per iteration (every step costs
  the same, on every lane; the lanes of a warp reconverge at the top of the loop, every iteration).
* A history's work on its lane is the sum of its tracks' steps, run back to back: when a track ends, the lane pops
  its own secondary stack (a cheap refill, costed at nothing), and takes the next history only when its history
  is done.  A history that takes no step still holds its lane for the one iteration of its refill.
* A primary refill (source sampling, range shifter, flight to the grid) costs ``refill_cost`` = ``c`` of a step:
  the lanes of a warp that refill in the same iteration do it together (one ``c`` for the warp); refills in
  different iterations cost the warp ``c`` each (the other lanes idle meanwhile).  The cost is charged to the warp's
  time but does not delay the warp in the order of the fetches (all warps keep the iteration clock).
* Histories are handed out in index order by a global atomic counter to whichever lane asks first; lanes that ask
  in the same iteration are served in (warp, lane) order.
* A warp refills only when at least ``refill_min_idle`` = ``k`` of its lanes are idle (all its idle lanes then
  refill; ``k`` = 1: a lane refills in the iteration in which its history ends).  Near the end of the work every
  idle lane refills: from the iteration that starts with no more histories left than the launch has lanes
  (``n - next <= 32 W``), the threshold is 1.  Once the counter is exhausted, the idle lanes wait for their warp's
  last lane (the tail).

Efficiency = all steps / (32 x sum over warps of (the warp's iterations + ``c`` x its refill iterations)); the
rest of the lane time splits exactly into the tail (lanes idle after the last history was handed out), the refill
overhead, the wait for the batch threshold (lanes idle while histories are left) and the iterations of histories
without a step.  An upper bound like the others (step granularity; the refill branch and the secondary pops
diverge inside an iteration as well); it does not depend on the grid-stride launch shape (``threads``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .layout import HISTORY_STEP_SLOTS   # MCP_HISTORY_STEP_SLOTS (kernels/params.h)

WARP = 32
H200_SMS = 132   # streaming multiprocessors of an NVIDIA H200 (the GPU the CPU proxy models by default)
MAX_BLOCKS_PER_SM_IN_GRID = 64   # grid cap of CudaBackend.launch: SMs x 64 blocks of 128 threads
# Resident blocks of 128 threads per SM for the transport kernel on sm_90: 94 registers per thread for the
# persistent kernel (nvcc 13.0 -Xptxas -v, 2026-12-04; 180-182 for the kernel before it), allocated per warp in
# units of 256 -> 3,072 per warp, 12,288 per block, and an SM has 65,536 32-bit registers (CUDA C++ Programming
# Guide, "Compute Capabilities", compute capability 9.0): 5 blocks (2 for the old kernel).  Since the range
# shifter's secondaries (merge a78a6bd, 2026-12-07) the kernel uses 128 registers (NVRTC 12.9), which allows 4
# blocks; the proxy still models the 94-register kernel's 5 (its figures in BENCHMARKS.md are of that kernel) until
# a GPU session measures the 128-register kernel or the registers come down (BENCHMARKS.md, 2026-12-07).
PERSISTENT_BLOCKS_PER_SM = 5
PERSISTENT_WARPS_H200 = H200_SMS * PERSISTENT_BLOCKS_PER_SM * 128 // WARP   # 2640 warps of the persistent launch
# (refill_cost, refill_min_idle) pairs that proxy() reports for the persistent loop; the first is the headline
PERSISTENT_GRID = ((0.5, 1), (0.0, 1), (1.0, 1), (0.0, 8), (0.5, 8), (1.0, 8))


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


def persistent_warps(sm_count: int = H200_SMS, blocks_per_sm: int = PERSISTENT_BLOCKS_PER_SM,
                     block: int = 128) -> int:
    """Warps resident at once in a persistent launch: ``sm_count`` x ``blocks_per_sm`` blocks of ``block``."""
    if block % WARP or block <= 0 or sm_count < 1 or blocks_per_sm < 1:
        raise ValueError(f"persistent launch of {sm_count} SMs x {blocks_per_sm} blocks of {block} threads: give "
                         f"positive counts and a block that is a multiple of {WARP}")
    return int(sm_count) * int(blocks_per_sm) * int(block) // WARP


def simt_efficiency_persistent(tracks: Any, warps: int = PERSISTENT_WARPS_H200, refill_cost: float = 0.0,
                               refill_min_idle: int = 1) -> dict:
    """Active-lane fraction of the persistent, step-granular loop (the module docstring says what it assumes):
    ``warps`` resident warps take the histories from a global counter in index order, a history's tracks run
    back to back on one lane, a warp's primary refill costs ``refill_cost`` of a step per iteration with one, and a
    warp refills once ``refill_min_idle`` of its lanes are idle (1 near the end).  ``tracks``: per-history step
    counts, (n,) or (n, tracks) as history_steps gives (summed over the tracks).

    Returns ``efficiency`` and the split of all lane time: ``tail_fraction`` (lanes idle after the last history
    was handed out), ``refill_fraction``, ``wait_fraction`` (lanes idle for the batch threshold while histories
    are left) and ``empty_fraction`` (histories without a step); the five sum to 1.  Plus ``iterations`` (of the
    longest warp), ``refills`` (warp refill iterations, all warps) and the parameters.  Simulated at the
    granularity of lane finish events (one numpy pass over the lanes per iteration in which a lane finishes)."""
    a = np.asarray(tracks, np.int64)
    if a.ndim not in (1, 2) or (a.size and a.min() < 0):
        raise ValueError("tracks: per-history step counts >= 0, shape (n,) or (n, tracks)")
    work = a.sum(axis=1) if a.ndim == 2 else a
    k, c, warps = int(refill_min_idle), float(refill_cost), int(warps)
    if warps < 1:
        raise ValueError(f"warps={warps}: give at least one resident warp")
    if not 1 <= k <= WARP:
        raise ValueError(f"refill_min_idle={k}: give 1 .. {WARP} idle lanes")
    if not c >= 0:
        raise ValueError(f"refill_cost={refill_cost}: give a non-negative fraction of a step")
    n, lanes = int(work.size), WARP * warps
    dur = np.maximum(work, 1)           # a history without a step holds its lane for the iteration of its refill
    fin = np.zeros(lanes, np.int64)     # iteration at which lane w * 32 + l is idle again (idle when fin <= t)
    refills = np.zeros(warps, np.int64)
    nxt = t = wait = 0
    while nxt < n:
        idle = fin <= t
        thr = 1 if n - nxt <= lanes else k
        if thr > 1:
            idle &= np.repeat(idle.reshape(warps, WARP).sum(axis=1) >= thr, WARP)
        take = np.flatnonzero(idle)[:n - nxt]     # (warp, lane) order: the order the counter serves them
        fin[take] = t + dur[nxt:nxt + take.size]
        got = np.zeros(warps, bool)
        got[take // WARP] = True
        refills += got
        nxt += take.size
        if nxt >= n:
            break
        busy = fin > t
        n_idle = lanes - int(np.count_nonzero(busy))
        if thr > 1 and n - nxt <= lanes and n_idle:
            t_next = t + 1                        # the threshold drops to 1 from the next iteration
        elif busy.any():
            t_next = int(fin[busy].min())         # nothing changes until the next lane finishes
        else:   # pragma: no cover - a warp with all lanes idle always refills while histories are left
            raise AssertionError("persistent schedule: every lane idle with histories left")
        wait += n_idle * (t_next - t)
        t = t_next
    span = fin.reshape(warps, WARP).max(axis=1)   # iterations of each warp (0: a warp that got no history)
    steps, empty = int(work.sum()), int(np.count_nonzero(work == 0))
    lane_iters = WARP * int(span.sum())
    n_refills = int(refills.sum())
    cost = lane_iters + WARP * c * n_refills
    tail = lane_iters - steps - empty - wait

    def frac(x: float) -> float:
        return x / cost if cost else 0.0

    return {"efficiency": steps / cost if cost else 1.0, "tail_fraction": frac(tail),
            "refill_fraction": frac(WARP * c * n_refills), "wait_fraction": frac(wait),
            "empty_fraction": frac(empty), "iterations": int(span.max()), "refills": n_refills,
            "warps": warps, "refill_cost": c, "refill_min_idle": k}


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


def proxy(tracks: np.ndarray, threads: int, warps: int = PERSISTENT_WARPS_H200,
          persistent_grid: Any = PERSISTENT_GRID) -> dict:
    """The proxy's figures for per-history track step counts ``tracks`` (history_steps) and ``threads`` (the
    grid-stride launch), and for the persistent loop on ``warps`` resident warps: ``persistent``, one
    simt_efficiency_persistent dict per (refill_cost, refill_min_idle) of ``persistent_grid``, the first of which
    is ``efficiency_persistent`` (its parameters: ``persistent_refill_cost``, ``persistent_refill_min_idle``)."""
    tracks = np.asarray(tracks, np.int64)
    total, primary = tracks.sum(axis=1), tracks[:, 0]
    eff = simt_efficiency(tracks, threads)
    persistent = [simt_efficiency_persistent(total, warps, c, k) for c, k in persistent_grid]
    head = persistent[0] if persistent else {}
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
        "efficiency_persistent": head.get("efficiency"),
        "persistent_refill_cost": head.get("refill_cost"),
        "persistent_refill_min_idle": head.get("refill_min_idle"),
        "persistent_warps": int(warps),
        "persistent": persistent,
    }

"""Streaming batches: a run of any size proceeds in batches of consecutive history indices with bounded
host and device memory, stops at a number of primaries, a target statistical uncertainty or a time limit
(whichever comes first), and survives GPU out-of-memory by shrinking the batch.

Memory: the device holds one set of tallies (4 int64 per voxel) whatever the batch size; the host holds the
running sums (4 int64 + 5 float64 per voxel: the dose's 2 and the LETd's 3) and one batch's tallies.  Neither grows
with the number of batches or primaries.

The batch boundaries are a pure function of the settings (``BatchPlan``), so a run interrupted at a batch
boundary and resumed there goes through the same batches as an uninterrupted one: same integer sums (the
dose), same float sums in the same order (the uncertainty), same stopping point.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from .._backend import CPU_BY_RUN_CONFIG
from .._io.console import log_line, stderr_is_terminal, time_of_day, write_stderr
from .._kernels.layout import TALLY_SCALE
from . import engine
from .engine import TallyLimitError
from .stats import InverseMass, c4, inverse_mass, mean_rel_uncertainty_50

#: the uncertainty target is tested only once this many batches are in (a 2-batch estimate is too noisy)
MIN_BATCHES_FOR_TARGET = 10
#: default largest batch (histories) when run.batch_size is unset: bounds the work lost to a kill and the
#: overrun of a time limit to about half a minute on one CPU core / a few seconds on a GPU
DEFAULT_MAX_BATCH = {"cpu": 1_000_000, "cuda": 10_000_000}
#: default number of batches when the run may stop early (target uncertainty or time limit)
EARLY_STOP_BATCHES = 100


def _log(msg: str) -> None:
    log_line(msg)   # a broken pipe or a closed terminal drops the line, never stops the run


def batch_plan(primaries: int, batches: int) -> list[tuple[int, int]]:
    """(first history, count) of each batch: consecutive, disjoint, covering 0..primaries-1."""
    base, rem = divmod(primaries, batches)
    out, first = [], 0
    for b in range(batches):
        n = base + (1 if b < rem else 0)
        if n:
            out.append((first, n))
        first += n
    return out


class BatchPlan:
    """The batches of a run as consecutive history ranges; ``next_n(pos)`` is the size of the batch that
    starts at history ``pos`` (0 at the end).  Without ``batch_size`` and without early stopping the
    boundaries are those of ``batch_plan(primaries, batches)`` (as before streaming existed)."""

    def __init__(self, primaries: int, batches: int = 10, batch_size: int | None = None,
                 early_stop: bool = False, backend: str = "cpu") -> None:
        self.total = int(primaries)
        cap = DEFAULT_MAX_BATCH.get(backend, DEFAULT_MAX_BATCH["cpu"])
        # batch_plan's split as (base, rem): its first rem batches hold base + 1 histories, the others base; next_n
        # finds a batch's end from them (before, two lists of one tuple per batch were made: run.batches = 3e6 took
        # 7.7 s and 0.64 GB before the first batch, 1e9 a MemoryError; overflow audit 29, F3)
        self._split: tuple[int, int] | None = None
        if batch_size:
            self.size = int(batch_size)
        elif early_stop:
            self.size = max(1, min(cap, math.ceil(self.total / EARLY_STOP_BATCHES)))
        elif math.ceil(self.total / batches) > cap:
            self.size = cap
        else:
            base, rem = divmod(self.total, int(batches))
            self._split = (base, rem)
            self.size = base + 1 if rem else base   # batch_plan's largest batch

    @classmethod
    def from_settings(cls, settings: Any, backend: str = "cpu") -> "BatchPlan":
        early = settings.target_uncertainty is not None or settings.time_limit_s is not None
        return cls(settings.primaries, settings.batches, settings.batch_size, early, backend)

    @property
    def by_batches(self) -> bool:
        """Whether the batches are ``batches`` of them (``batch_plan``), not of a size that replaced that number."""
        return self._split is not None

    def next_n(self, pos: int) -> int:
        if pos >= self.total:
            return 0
        if self._split is not None:   # batch_plan's boundaries: rem batches of base + 1, then batches of base
            base, rem = self._split
            big = rem * (base + 1)
            end = (pos // (base + 1) + 1) * (base + 1) if pos < big else big + ((pos - big) // base + 1) * base
        else:
            end = (pos // self.size + 1) * self.size
        return min(end, self.total) - pos

    def iter_from(self, pos: int) -> Iterator[tuple[int, int]]:
        while (n := self.next_n(pos)) > 0:
            yield pos, n
            pos += n


def batches_not_used(settings: Any, backend: str) -> str | None:
    """One line for the log where ``settings.batches`` (``run.batches``, given) is not the number of batches the run
    makes (:class:`BatchPlan`): what was asked, what is used, and why; None where it is used, or where the batches
    are as many anyway.  Audit 27 "dead options", F4: a time limit that never stopped the run turned 20 batches
    into 100 (the uncertainty dataset another), without a word."""
    plan = BatchPlan.from_settings(settings, backend)
    total, asked = int(settings.primaries), int(settings.batches)
    made = math.ceil(total / plan.size)
    if plan.by_batches or made == asked:
        return None
    cap = DEFAULT_MAX_BATCH.get(backend, DEFAULT_MAX_BATCH["cpu"])
    used = f"batches of {plan.size:,} histories ({made:,} of run.primaries = {total:,} per beam"
    if settings.batch_size:
        why = f"run.batch_size = {int(settings.batch_size):,} sets the batches"
        return f"mcproton: note: run.batches = {asked} is not used: {why}; the run makes {used})"
    if settings.target_uncertainty is not None or settings.time_limit_s is not None:
        keys = " and ".join(k for k, v in (("run.target_uncertainty", settings.target_uncertainty),
                                           ("run.time_limit_s", settings.time_limit_s)) if v is not None)
        why = (f"with {keys} set the run may stop between batches, so they are a hundredth of run.primaries (at most "
               f"{cap:,} histories on the {backend.upper()})")
        return (f"mcproton: note: run.batches = {asked} is not used: {why}; the run makes {used} at most); set "
                "run.batch_size to choose their size")
    why = (f"{asked} batches would hold {math.ceil(total / asked):,} histories each, more than the largest default "
           f"batch on the {backend.upper()} ({cap:,}: it bounds the work lost to a kill and a time limit's overrun)")
    return f"mcproton: note: run.batches = {asked} is not used: {why}; the run makes {used}); set run.batch_size to " \
        "choose their size"


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a GPU out-of-memory error (cupy.cuda.memory.OutOfMemoryError, or a CUDA driver/runtime
    error saying so).  Matched by name so that it can be tested without CuPy."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    msg = str(exc)
    return any(s in msg for s in ("CUDA_ERROR_OUT_OF_MEMORY", "cudaErrorMemoryAllocation", "out of memory"))


def _free_device_pools(sim: Any) -> None:
    if getattr(sim.backend, "name", "") != "cuda":
        return
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception:  # noqa: BLE001 - best effort
        pass


#: what ``mcproton run`` is told to do where the GPU cannot hold even the smallest batch (:func:`shrunk_cap`; a check
#: is told its own: mcproton/_check/compute.py check_wording)
RUN_GPU_MEMORY_REMEDY = ("use a coarser grid (phantom.voxel_mm; phantom.dose_voxel_mm for a CT) or run on the CPU: "
                         f"{CPU_BY_RUN_CONFIG}")


def shrunk_cap(sim: Any, n: int, min_batch: int, log: Callable[[str], None], exc: BaseException,
               remedy: str = RUN_GPU_MEMORY_REMEDY) -> int:
    """The batch cap after a GPU out-of-memory error ``exc`` for a batch of ``n`` histories: half of it (the
    device memory pools are emptied before the retry); a RuntimeError that says what to do (``remedy``, in the
    words of the command that runs it) if ``n`` is already the smallest batch.  The caller re-raises any error that
    is not an out-of-memory one."""
    if n <= min_batch:
        raise RuntimeError(f"the GPU ran out of memory even for a batch of {n} histories: the grid or the "
                           f"tables do not fit; {remedy}") from exc
    cap = max(min_batch, n // 2)
    log(f"mcproton: GPU out of memory for a batch of {n:,} histories; retrying with batches of {cap:,}")
    _free_device_pools(sim)
    return cap


def run_batch(sim: Any, first: int, n: int, on_device: bool = False) -> dict[str, Any]:
    """The tallies of histories [first, first + n) of ``sim``: on the CPU the sparse batch
    (Simulation.run_histories_sparse: host work of the dose footprint only); with ``on_device`` (GPU) the
    device tallies, to be summed by a DeviceAccumulator before the next batch; else host copies."""
    if on_device:
        return sim.run_histories(first, n, on_device=True)
    if getattr(sim, "sparse_batches", False):
        return sim.run_histories_sparse(first, n)
    return sim.run_histories(first, n)


class LocalExecutor:
    """Runs the batches of a plan one after the other on one Simulation, in the calling process.
    After a GPU out-of-memory the batches are cut to the shrunk size for the rest of the run (each piece
    is a statistical batch of its own; the integer tallies, hence the dose, are unchanged)."""

    def __init__(self, sim: Any, plan: Any, cap: int | None = None, min_batch: int = 1,
                 log: Callable[[str], None] = _log, on_device: bool = False,
                 oom_remedy: str = RUN_GPU_MEMORY_REMEDY) -> None:
        self.sim, self.plan, self.cap, self.min_batch, self.log = sim, plan, cap, min_batch, log
        self.on_device = on_device   # GPU: leave the batch tallies on the device (for a DeviceAccumulator)
        self.oom_remedy = oom_remedy   # what to do where even the smallest batch does not fit (shrunk_cap)

    def results(self, pos: int) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        while (n := self.plan.next_n(pos)) > 0:
            if self.cap:
                n = min(n, self.cap)
            try:
                t = run_batch(self.sim, pos, n, self.on_device)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self.cap = shrunk_cap(self.sim, n, self.min_batch, self.log, exc, self.oom_remedy)
                continue
            yield pos, n, t
            pos += n

    def close(self) -> None:
        pass


class _Range:
    """The plan of one range of histories [first, end) (run_shrinking)."""

    def __init__(self, end: int) -> None:
        self.end = end

    def next_n(self, pos: int) -> int:
        return max(self.end - pos, 0)


def run_shrinking(sim: Any, first: int, n: int, cap: int | None, min_batch: int = 1,
                  log: Callable[[str], None] = _log) -> tuple[dict[str, np.ndarray], int | None]:
    """Run histories [first, first + n) as one batch (a Dask chunk), split by LocalExecutor into pieces of at
    most ``cap`` (halved on each GPU out-of-memory) whose integer tallies are summed: the same as one launch.
    Returns (tallies, cap).  On the CPU (no out-of-memory splitting) the tallies are the sparse batch of
    Simulation.run_histories_sparse."""
    if getattr(sim, "sparse_batches", False):
        return sim.run_histories_sparse(first, n), cap
    ex = LocalExecutor(sim, _Range(first + n), cap=cap, min_batch=min_batch, log=log)
    out: dict[str, np.ndarray] | None = None
    for _, _, t in ex.results(first):
        out = t if out is None else {k: out[k] + t[k] for k in out}
    assert out is not None
    return out, ex.cap


@dataclass
class StreamResult:
    next_history: int          # the RNG position: every history below it is in the sums
    elapsed_s: float           # transport wall time, including earlier (resumed) segments
    # "primaries", "target_uncertainty", "time_limit", "interrupted" or "tally_limit" (the next batch would have taken
    # a voxel's tally past engine.TALLY_SUM_LIMIT: not added)
    stop_reason: str
    mean_rel_uncertainty_50: float


#: in a log file (not a terminal) a progress line is also written at least this often (s): a long run limited by
#: its time, or with a large cap, otherwise logs its first batch and then nothing for hours (long-runs audit, F8)
LOG_EVERY_S = 300.0
#: a run expected to take longer than this (s) without run.time_limit_s is warned about after its first batch
LONG_RUN_S = 86_400.0


def duration(seconds: float) -> str:
    """A duration for a human: seconds below 2 min (``"  42.0 s"``, as the bar always showed), then min, h, d."""
    if not math.isfinite(seconds) or seconds < 120:
        return f"{seconds:6.1f} s"
    for unit, size, upto in (("min", 60, 7_200), ("h", 3_600, 172_800), ("d", 86_400, math.inf)):
        if seconds < upto:
            return f"{seconds / size:6.1f} {unit}"
    return f"{seconds:6.1f} s"   # not reached


#: whether a progress bar drawn in place (on a terminal) has its line open: a message written now starts on a new line
_BAR = {"open": False}


def bar_open() -> bool:
    """Whether a :func:`progress_printer` bar drawn in place is on the terminal's current line (not ended by
    :func:`end_progress`): a message written now must start with a line break, and only then (the progress-log audit
    26, F8: the SIGTERM note began with a blank line in a log file and under --quiet, where no bar was drawn)."""
    return _BAR["open"]


def progress_printer(total: int, start_done: int = 0, *, tty: bool | None = None,
                     target: float | None = None, time_limit_s: float | None = None,
                     elapsed_before_s: float = 0.0, beam: str = "", later_primaries: int = 0) -> Callable[..., None]:
    """A progress bar on stderr, ``show(done_primaries, protons_per_second[, mean_rel_uncertainty][, batches=])``.
    The rate is timed from the end of the first batch (the primaries done since then): the first batch carries the
    beam's one-off setup (threads started, the tallies' memory first touched), which made the first ETAs several
    times too long (the progress-log audit 26, F7: "ETA 93.9 s" for a beam that ended 8 s later); the first line
    itself has only that batch's rate (counted from ``start_done``: the primaries of a resumed run before).  On a
    terminal (``tty``; default: whether stderr is one) the bar is redrawn in place and the caller ends its line
    (:func:`end_progress`); in a log file or a pipe it is a line of its own at the first batch, every 10 %, at
    least every :data:`LOG_EVERY_S` seconds and at the end, so that a batch job's log does not become one line of
    thousands of carriage returns, nor stay silent for hours, each line starting with the time of day
    (:func:`~mcproton._io.console.time_of_day`, ``[05:21:09]``).

    With a ``target`` uncertainty the run stops at it, mostly long before ``total`` (the cap): once an uncertainty
    is known, the bar and the ETA go to the primaries the 1/sqrt(N) law says the target needs
    (``done`` x (uncertainty / target)^2, at most the cap) and the line says so; before, the ETA says "to the cap".
    The run tests its target from :data:`MIN_BATCHES_FOR_TARGET` batches on, so before that batch the goal is at
    least its end (the batches so far, on average, times that number) and the line says "to batch 10, the first at
    which the run may stop at 1 %" where the estimate is below the target already (before, a full bar and "ETA 0.0
    s", and in a log file a line per batch: review b of audit 26, R4).  The ETA uses the uncertainty from 2
    ``batches`` on (the stream passes it), divided by c4(batches) (a mean of per-voxel standard deviations of few
    batches reads low by that factor) and marked "rough" below :data:`MIN_BATCHES_FOR_TARGET` batches (before, the
    ETA stayed "to the cap" for the first tenth of the cap, and a run that met its target in that time never logged
    an estimate of its end: the audit 26, F7).  The target is printed to 3 significant digits.
    With ``time_limit_s`` (the transport time allowed, of which ``elapsed_before_s`` was used by earlier segments
    of a resumed run) the ETA is to whichever comes first and says "to the time limit" when that is the limit.
    ETAs of hours or days are given in h or d.

    A run of several beams: ``beam`` ("beam 1/3") heads the line; ``time_limit_s`` is the run's and
    ``elapsed_before_s`` the transport time of all its beams so far; without a target the ETA is the run's, to the
    end of its last beam (``later_primaries``: what the beams after this one have left, at this beam's speed),
    and says "to the end of the run" (with a target it is this beam's, and says "in this beam")."""
    t0 = time.perf_counter()
    in_place = stderr_is_terminal() if tty is None else tty
    next_tenth = [0]
    last_line = [t0]
    first: list[tuple[float, int]] = []   # (time, primaries done) at the end of the first batch

    def show(done: int, _pps: float, uncertainty: float = float("nan"), batches: int | None = None) -> None:
        now = time.perf_counter()
        el = now - t0
        rate = progress_rate(first, t0, now, done, start_done)
        goal, to = total, ""
        if target is not None:
            rough = batches is not None and batches < MIN_BATCHES_FOR_TARGET
            est = uncertainty / c4(batches) if rough and batches is not None and batches >= 2 else uncertainty
            if math.isfinite(est) and est > 0:
                need = int(math.ceil(done * (est / target) ** 2))
                # the run tests its target from the MIN_BATCHES_FOR_TARGET th batch on: not before (review b of
                # audit 26, R4: an estimate below the target gave a full bar and "ETA 0.0 s" from batch 2 to 9)
                least = int(math.ceil(done * MIN_BATCHES_FOR_TARGET / batches)) if rough and batches else 0
                goal = min(total, max(done, need, least))
                now_u = f"now {100 * uncertainty:.2f} %" + (f"; rough, from {batches} batches" if rough else "")
                to = (" to the cap" if goal >= total else
                      f" to batch {MIN_BATCHES_FOR_TARGET}, the first at which the run may stop at "
                      f"{100 * target:.3g} % ({now_u})" if least > need else f" to {100 * target:.3g} % ({now_u})")
            else:
                to = " to the cap"
        later = later_primaries if target is None else 0
        eta = (goal - done + later) / rate if rate > 0 else float("nan")
        if later:
            to += " to the end of the run"
        elif later_primaries and to:
            to += " in this beam"
        if time_limit_s is not None:
            left = max(0.0, time_limit_s - elapsed_before_s - el)
            if not (eta <= left):   # the limit comes first (or the speed is not known yet)
                eta, to = left, " to the time limit"
        bar = "#" * int(30 * min(done, goal) / max(goal, 1))
        line = (f"  {beam + ' ' if beam else ''}[{bar:<30}] {done:>12,d}/{total:,d} protons  {rate:,.0f} p/s  "
                f"ETA {duration(eta)}{to}")
        if in_place:
            _BAR["open"] = True
            write_stderr("\r" + line)
        else:
            tenth = int(10 * min(done, goal) / max(goal, 1))
            if tenth < next_tenth[0] and done < goal and now - last_line[0] < LOG_EVERY_S:
                return
            next_tenth[0] = max(next_tenth[0], tenth + 1)
            last_line[0] = now
            write_stderr(time_of_day(tty=False) + line + "\n")

    show.wants_uncertainty = target is not None   # type: ignore[attr-defined]  (stream passes it then)
    return show


def progress_rate(first: list[tuple[float, int]], t0: float, now: float, done: int, start_done: int) -> float:
    """The protons/s of a :func:`progress_printer` at ``now`` with ``done`` primaries: from the end of the first batch
    (``first``, filled at the first call with (now, done)), so that its one-off setup is left out; at the first call,
    the first batch's own rate (from ``t0``, the printer's start, and ``start_done``)."""
    if not first:
        first.append((now, done))
        return (done - start_done) / (now - t0) if now > t0 else 0.0
    t1, d1 = first[0]
    if now > t1 and done > d1:
        return (done - d1) / (now - t1)
    return (done - start_done) / (now - t0) if now > t0 else 0.0


def end_progress() -> None:
    """End the line of a :func:`progress_printer` bar drawn in place (nothing to do in a log file)."""
    _BAR["open"] = False
    if stderr_is_terminal():
        write_stderr("\n")


#: what to do about a long run, in ``mcproton run``'s words (its config keys; it keeps a checkpoint)
RUN_LONG_RUN_REMEDY = ("set run.time_limit_s (the run then writes its output and keeps a checkpoint to continue with "
                       "--resume) or fewer run.primaries")


def _warn_long_run(done: int, seconds: float, left: int, target: float | None, later: int = 0, *,
                   remedy: str = RUN_LONG_RUN_REMEDY, target_name: str = "run.target_uncertainty") -> bool:
    """After the first batch: warn when the rest of the run, this beam's ``left`` primaries and the ``later`` beams'
    (those after it), would take more than :data:`LONG_RUN_S` at this speed without a time limit (the long-runs
    audit, F8: 10^12 primaries, 94 days at one thread, started without a word; the progress-log audit 26, F3: each
    beam was judged alone, so a plan of beams of hours each was never warned about, however long the run).  The
    advice is ``remedy`` and the target uncertainty is named ``target_name``: the words of the command or call that
    runs it (audit 26, F2: a check was told of run.time_limit_s and --resume, which it has not).  Returns True once
    the speed was known (the check is made once)."""
    if done <= 0 or seconds <= 0:
        return False
    need = (left + later) * seconds / done
    if need > LONG_RUN_S:
        from .._io.errors import McprotonRuntimeWarning, warn

        what = (f"the remaining {left + later:,} primaries of the run ({left:,} of this beam and {later:,} of the "
                "beams after it)" if later else f"the remaining {left:,} primaries")
        warn(f"{what} would take about {duration(need).strip()} at this speed ({done / seconds:,.0f} protons/s in "
             "the first batch)" + (f", unless {target_name} stops the run earlier" if target is not None else "")
             + f"; {remedy}", McprotonRuntimeWarning)
    return True


def long_run_judge(remedy: str = RUN_LONG_RUN_REMEDY,
                   target_name: str = "run.target_uncertainty") -> Callable[[int, float, int, int, float | None], bool]:
    """:func:`stream`'s ``long_run`` for one run of one or more beams: :func:`_warn_long_run` with the run's words,
    judged once, at the first batch of the first beam transported (the remaining primaries of every beam then; a
    later beam's stream finds it judged: the run is warned about once, not once per beam)."""
    judged = [False]

    def judge(done: int, seconds: float, left: int, later: int, target: float | None) -> bool:
        if not judged[0]:
            judged[0] = _warn_long_run(done, seconds, left, target, later, remedy=remedy, target_name=target_name)
        return judged[0]

    return judge


#: a batch longer than this (and than run.checkpoint_interval_s) is warned about, s: a checkpoint and the stop on
#: SIGTERM come only between batches, and a batch scheduler kills a job this long after its SIGTERM (Slurm's default
#: KillWait, 30 s; Kubernetes' terminationGracePeriodSeconds, 30 s), less the time to write the checkpoint
LONG_BATCH_S = 20.0


def _warn_long_batch(n: int, seconds: float, interval: float) -> bool:
    """After a batch of ``n`` histories that took ``seconds``: warn (once: returns True) where it took longer than
    both run.checkpoint_interval_s and :data:`LONG_BATCH_S`, naming run.batch_size and a size that keeps batches
    within them.  The batch size is not changed here: the batches are what the uncertainty estimate and a resumed
    run's ledger are made of (the cluster audit, F2: with the default tenth of the run per batch, a SIGTERM
    stopped a run 15 s later, and a multi-hour run's batches outlast a scheduler's grace time, so its work since the
    last batch boundary was lost)."""
    if n <= 0 or seconds <= max(interval, LONG_BATCH_S):
        return False
    aim = LONG_BATCH_S
    size = max(1, int(n * aim / seconds))
    from .._io.errors import McprotonRuntimeWarning, warn

    warn(f"a batch of {n:,} primaries took {seconds:.0f} s, longer than run.checkpoint_interval_s = {interval:g} s: "
         "a checkpoint, and the stop on SIGINT/SIGTERM, come only between batches, and a batch system kills a job "
         f"about 30 s after its SIGTERM (Slurm, Kubernetes); set run.batch_size = {size} (batches of about "
         f"{aim:g} s at this speed; the dose does not depend on the batch size)",
         McprotonRuntimeWarning)
    return True


def _warn_target_out_of_reach(unc: float, target: float, done: int, cap: int) -> bool:
    """Warn (once: returns True) when the 1/sqrt(N) estimate says run.target_uncertainty needs clearly more
    primaries than run.primaries allows (the long-runs audit, F7: such a run ended at the cap as if nothing was
    amiss)."""
    if not (math.isfinite(unc) and unc > 0 and done > 0):
        return False
    need = done * (unc / target) ** 2
    if need <= 1.2 * cap:   # within the noise of the estimate: the run may still make it
        return False
    from .._io.errors import McprotonRuntimeWarning, warn

    warn(f"run.target_uncertainty {100 * target:.3g} % needs about {need:.3g} primaries (1/sqrt(N) estimate: "
         f"{100 * unc:.3g} % after {done:,}), far above run.primaries {cap:,}: the run will stop at the cap with about "
         f"{100 * unc * math.sqrt(done / cap):.3g} %; raise run.primaries (and set run.time_limit_s) or accept a "
         "larger target", McprotonRuntimeWarning)
    return True


def _warn_tally_limit(acc: Any, n: int, done: int, total: int) -> None:
    """After the first batch of a run (``n`` histories; ``done`` with those before it), warn where the hottest voxel's
    tally would reach engine.TALLY_SUM_LIMIT before the run's ``total`` primaries at that batch's rate: the run then
    stops there (stop reason "tally_limit"), and it is better known at the start than after hours (the scale audit
    19, F4: a 70 MeV integrated-depth-dose slab reaches it at 5e10 primaries)."""
    at = engine.primaries_to_tally_limit(int(getattr(acc, "batch_top", 0) or 0), n)
    if at is None or at >= total or total <= done:
        return
    from .._io.errors import McprotonRuntimeWarning, warn

    warn(f"at the rate of the first batch the energy summed in one voxel reaches {engine.tally_limit_text()} after "
         f"about {at:.3g} primaries, before the {total:,} asked: a run that gets so far stops there, with the dose of "
         f"the primaries done. To avoid it, {engine.TALLY_LIMIT_REMEDY}", McprotonRuntimeWarning)


def _eta_uncertainty(acc: Any, unc: float, inv_mass: Any, geometry: Any) -> tuple[float, int]:
    """The uncertainty and its number of batches for a progress bar's ETA (``progress(done, pps, u, batches=b)``):
    the one the stop rule computed after the batch before (``unc``), else, before it is computed (fewer than
    :data:`MIN_BATCHES_FOR_TARGET` batches), this batch's own from 2 batches on (the ETA's, never the stop's)."""
    batches = int(getattr(acc, "batches", 0) or 0)
    if math.isnan(unc) and batches >= 2 and inv_mass is not None:
        return mean_rel_uncertainty_50(acc, inv_mass, geometry.density_g_cm3_zyx), batches
    return unc, max(batches - 1, 0)


def stream(acc: Any, plan: BatchPlan, executor: Any, settings: Any, geometry: Any, *, start: int = 0,
           elapsed_s: float = 0.0, checkpoint: Callable[[int, float], object] | None = None,
           checkpoint_interval_s: float | None = None, should_stop: Callable[[], bool] | None = None,
           progress: Callable[[int, float], None] | None = None,
           time_limit: Callable[[int, float], float] | None = None,
           out_of_reach: Callable[[float, float, int, int], bool] | None = None,
           long_run: Callable[[int, float, int, int, float | None], bool] | None = None,
           later_primaries: int = 0) -> StreamResult:
    """Add the batches of ``plan`` from history ``start`` into ``acc`` until a stopping criterion holds.

    checkpoint : called as ``checkpoint(next_history, elapsed_s)`` every ``checkpoint_interval_s`` seconds
        (after the batch that crosses the interval; 0 = after every batch); not at the end (the caller
        decides what to write then).
    should_stop : polled after every batch (e.g. a SIGINT/SIGTERM flag): stop with reason "interrupted".
    time_limit : with settings.time_limit_s, the transport time (s, counted as ``elapsed_s``) at which to stop,
        called after each batch with (next history, protons/s of this segment): a beam's part of the run's limit
        (mcproton._run.job); default: settings.time_limit_s itself.
    out_of_reach : called as ``out_of_reach(uncertainty, target, done, primaries)`` while the target uncertainty is
        not reached, until it returns True (it has said what it had to): the warning that the target is beyond the
        primaries; default :func:`_warn_target_out_of_reach`, worded for ``mcproton run``'s config keys (a check,
        whose options differ and whose plan dose's target is not the beam's, says it once for the plan: audit 18b,
        F7).
    long_run : without a time limit, called after each batch as ``long_run(done, seconds, left, later, target)`` until
        it returns True (it has judged): the warning of a run that would take more than :data:`LONG_RUN_S`; ``left``
        is this beam's primaries to its cap, ``later`` (``later_primaries``) those of the beams after it in the run
        (the run is judged whole); default :func:`long_run_judge` in ``mcproton run``'s words (``run_job`` gives one
        judge per run, in the words of its command).
    progress : called as ``progress(done, protons_per_second)`` after each batch; one that ``wants_uncertainty``
        (:func:`progress_printer` with a target) as ``progress(done, protons_per_second, uncertainty,
        batches=...)``, with the uncertainty from 2 batches on, for its ETA only (the target is tested from
        :data:`MIN_BATCHES_FOR_TARGET` batches on).
    """
    target = settings.target_uncertainty
    limit = settings.time_limit_s
    interval = settings.checkpoint_interval_s if checkpoint_interval_s is None else checkpoint_interval_s
    inv_mass = InverseMass(geometry) if target is not None else None   # read at the voxels with dose only
    pos = start
    t0 = time.perf_counter()
    last_ckpt = t0
    unc = float("nan")
    warn_out_of_reach = out_of_reach or _warn_target_out_of_reach
    said_out_of_reach = [False]
    judge_long_run = long_run or long_run_judge()

    def reason_now(elapsed: float) -> str | None:
        nonlocal unc
        if pos >= plan.total:
            return "primaries"
        if target is not None and acc.batches >= MIN_BATCHES_FOR_TARGET:
            unc = mean_rel_uncertainty_50(acc, inv_mass, geometry.density_g_cm3_zyx)
            if unc <= target:
                return "target_uncertainty"
            if not said_out_of_reach[0]:
                said_out_of_reach[0] = warn_out_of_reach(unc, target, pos, plan.total)
        if limit is not None:
            rate = (pos - start) / (elapsed - elapsed_s) if elapsed > elapsed_s else 0.0
            if elapsed >= (limit if time_limit is None else time_limit(pos, rate)):
                return "time_limit"
        if should_stop is not None and should_stop():
            return "interrupted"
        return None

    def clock() -> float:
        """The time, less a Dask executor's worker start-up (its Simulation and kernel built on the worker before
        the first chunk, ``startup_s``): not transport, as a local run's kernel build is not, so the time limit
        and the rates leave it out (audit 26 interact, F5: a 3 s limit was spent on two workers' start, and the
        plan's beams 2 and 3 were not run)."""
        return time.perf_counter() - float(getattr(executor, "startup_s", 0.0) or 0.0)

    reason = reason_now(elapsed_s)
    elapsed = elapsed_s
    warned_long = warned_batch = False
    t_batch = t0
    if reason is None:
        it = executor.results(pos)
        try:
            for first, n, tallies in it:
                if first != pos:
                    from .._io.errors import McprotonInternalError

                    raise McprotonInternalError(f"internal error: batch at history {first}, expected {pos}")
                try:
                    acc.add(tallies, n)
                except TallyLimitError:   # nothing of it added: the run stops with the batches before it
                    reason = "tally_limit"
                    break
                del tallies
                if pos == start:
                    _warn_tally_limit(acc, n, pos + n, plan.total)
                pos += n
                now = clock()
                elapsed = elapsed_s + max(0.0, now - t0)
                if not warned_long and limit is None:
                    warned_long = judge_long_run(pos - start, now - t0, plan.total - pos, later_primaries, target)
                if checkpoint is not None and not warned_batch:
                    warned_batch = _warn_long_batch(n, now - t_batch, interval)
                t_batch = now
                if progress is not None:   # with the uncertainty of the batch before (the ETA's estimate)
                    pps = (pos - start) / (now - t0) if now > t0 else 0.0
                    if getattr(progress, "wants_uncertainty", False):
                        u, b = _eta_uncertainty(acc, unc, inv_mass, geometry)
                        progress(pos, pps, u, batches=b)
                    else:
                        progress(pos, pps)
                reason = reason_now(elapsed)
                if reason is not None:
                    break
                if checkpoint is not None and now - last_ckpt >= interval:
                    checkpoint(pos, elapsed)
                    last_ckpt = clock()
        finally:
            close = getattr(it, "close", None)
            if close:
                close()
            executor.close()
        if reason is None:  # the executor ran out of batches
            reason = "primaries"
    if target is not None and math.isnan(unc) and acc.batches >= 2:
        unc = mean_rel_uncertainty_50(acc, inv_mass, geometry.density_g_cm3_zyx)
    return StreamResult(pos, elapsed, reason, unc)


__all__ = ["BatchPlan", "LocalExecutor", "StreamResult", "batch_plan", "is_out_of_memory",
           "mean_rel_uncertainty_50", "run_batch", "run_shrinking", "shrunk_cap", "stream",
           "progress_printer", "end_progress", "inverse_mass", "TALLY_SCALE", "duration", "long_run_judge", "bar_open"]

"""The job driver of ``mcproton run``: every beam of a config streamed in batches (locally or on Dask),
checkpointed atomically beside the output at intervals and on SIGINT/SIGTERM, resumable with ``--resume``.

A SIGKILL at any moment loses at most the batches since the last checkpoint (with
``run.checkpoint_interval_s = 0``: the batch in flight); the resumed run goes through the same batches as an
uninterrupted one, so its dose is bitwise the same on the CPU backend (and so is the uncertainty).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .._backend import CPU_BY_RUN_CONFIG, get_backend
from .._io.atomic import temporary_files
from .._io.console import log_line, printable, write_stderr
from .._signals import RunInterrupted, stop_signals, transport_handler_entered
from .._timing import phase
from .checkpoint import WORKER_BUILDS_DIFFER, WORKER_BUILDS_NOTE, BeamState, CheckpointError, checkpoint_difference, \
    checkpoint_path, describe, describe_build, fingerprint, geometry_hash, is_complete, is_refused, kernel_build, \
    load_checkpoint, physics_changed, read_builds, read_segments, save_checkpoint, with_unrecorded_builds
from .engine import Accumulator, DeviceAccumulator, ScoredSums, Simulation
from .result import finish, scored_voxels
from .streaming import RUN_GPU_MEMORY_REMEDY, RUN_LONG_RUN_REMEDY, BatchPlan, LocalExecutor, bar_open, \
    batches_not_used, end_progress, is_out_of_memory, long_run_judge, progress_printer, stream
from .stats import FEW_BATCHES, c4

if TYPE_CHECKING:
    from .distributed import DaskExecutor


#: whether a second SIGINT/SIGTERM ends the process at once (``os._exit``): the command line sets it
#: (:func:`mcproton.cli.main`); from Python (a notebook's kernel, a script's own handlers) a second signal raises
#: KeyboardInterrupt after the batch in flight instead, so that an interpreter's state is never lost
HARD_STOP_ON_SECOND_SIGNAL = False


class _StopFlag:
    """SIGINT/SIGTERM/SIGHUP (:func:`stop_signals`) set a flag (the batch in flight finishes, then a checkpoint is
    written where ``checkpoint``); a second signal ends the process at once (the last checkpoint on disk, written
    atomically, stays valid).

    Python runs a signal handler only between bytecodes, so while a batch runs in the C kernel two signals
    collapse into one call of the handler, after the batch (the long-runs audit, F4: the second Ctrl-C was lost and
    the run went on to the end of its batch, minutes on a patient plan).  So the signals are also seen by a watcher
    thread through ``signal.set_wakeup_fd`` (the C-level handler writes each signal's number to a pipe at once; the
    kernel releases the GIL): it says at once that the signal was received, and on the second one removes the
    output locks (mcproton._io.lock) and ends the process with exit status 128 + signal, where the command line
    asked for it (:data:`HARD_STOP_ON_SECOND_SIGNAL`; from Python the second signal raises KeyboardInterrupt after
    the batch, as before)."""

    def __init__(self, enabled: bool = True, checkpoint: bool | Path = True) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        self.enabled = enabled
        self.checkpoint = bool(checkpoint)
        #: the checkpoint file, where known: the second signal's message promises it only if it exists
        self.checkpoint_path = checkpoint if isinstance(checkpoint, Path) else None
        self._said = threading.Lock()
        self._announced = False
        self._pipe: tuple[int, int] | None = None
        self._old_fd: int | None = None
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> "_StopFlag":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in stop_signals():
                self._old[s] = signal.signal(s, self._handle)
            transport_handler_entered()
            self._start_watcher()
            from .._signals import take_deferred

            deferred = take_deferred()   # one that came as the command line started (_signals.defer_stop_signals)
            if deferred is not None:
                self._handle(deferred, None)
        return self

    def _start_watcher(self) -> None:
        import os

        try:
            r, w = os.pipe()
        except OSError:   # no pipe: the handler alone (stops after the batch)
            return
        try:
            os.set_blocking(w, False)
            self._old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (OSError, ValueError, AttributeError):
            # not allowed here, or no os.set_blocking (Windows before Python 3.12, gh-101881: the run stopped at its
            # start with "internal error: AttributeError", the portability audit 27, F2): the handler alone, which
            # stops the run after the batch in flight (a second signal then raises KeyboardInterrupt after it)
            os.close(r)
            os.close(w)
            return
        self._pipe = (r, w)
        self._watcher = threading.Thread(target=self._watch, args=(r,), name="mcproton-signal-watcher", daemon=True)
        self._watcher.start()

    def _watch(self, r: int) -> None:
        import os

        seen = 0
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data or 0 in data:   # closed, or the sentinel of __exit__
                return
            for b in data:
                if b not in self._old:   # not one of the stop signals handled here
                    continue
                seen += 1
                if seen == 1:
                    self._announce(b)   # a broken stderr drops the line: the thread lives on (long-runs audit 2, F1)
                    continue
                if not HARD_STOP_ON_SECOND_SIGNAL:   # Python: the handler raises KeyboardInterrupt after the batch
                    continue
                from .._io.lock import drop_held_locks

                drop_held_locks()
                kept = self._kept()
                write_stderr(f"{_new_line()}mcproton: {signal.Signals(b).name} received again: stopped at once, the "
                             f"batch in flight is lost{kept}\n")
                os._exit(128 + b)

    def _kept(self) -> str:
        """What the second signal leaves: the checkpoint written before it, only if there is one (a review found it
        promised when the signals came before the first checkpoint)."""
        if not self.checkpoint:
            return ""
        if self.checkpoint_path is not None and not self.checkpoint_path.exists():
            return f" (no checkpoint was written yet, {self.checkpoint_path}: run it again from the start)"
        return " (the last checkpoint written stays valid: --resume continues from it)"

    def _announce(self, signum: int) -> None:
        with self._said:
            if self._announced:
                return
            self._announced = True
        then = "writing a checkpoint" if self.checkpoint else "stopping (no checkpoint: nothing is kept)"
        # at once only where the watcher runs (:meth:`_start_watcher`): without it the handler runs after the batch
        again = ("send it again to stop at once" if HARD_STOP_ON_SECOND_SIGNAL and self._watcher is not None else
                 "send it again to stop after the batch without a checkpoint")
        write_stderr(f"{_new_line()}mcproton: {signal.Signals(signum).name} received: finishing the batch in flight "
                     f"and {then} ({again})\n")

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and (self._watcher is None or not HARD_STOP_ON_SECOND_SIGNAL):
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
        self._announce(signum)

    def __call__(self) -> bool:
        return self.signum is not None

    def __exit__(self, *exc: Any) -> None:
        import os

        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_fd if self._old_fd is not None else -1)
            r, w = self._pipe
            try:
                os.set_blocking(w, True)
                os.write(w, b"\0")   # wake the watcher: it ends
            except OSError:
                pass
            if self._watcher is not None:
                self._watcher.join(timeout=5)
            os.close(w)
            os.close(r)
            self._pipe = None
            self._watcher = None
        for s, h in self._old.items():
            signal.signal(s, h)


def _new_line() -> str:
    """A line break before a message of the stop signal where a progress bar drawn in place has its line open (the
    message then starts on a line of its own), else nothing: not a blank line in a log file or under --quiet (the
    progress-log audit 26, F8)."""
    return "\n" if bar_open() else ""


def _log_to_stderr(message: str) -> None:
    log_line(message)   # stderr, the time of day in front in a log file (audit 26, F6)


def resolve_backend(settings: Any) -> str:
    if settings.backend != "auto":
        return settings.backend
    from .._backend import cuda_available

    return "cuda" if cuda_available()[0] else "cpu"


def _beam_position(i: int, beam: Any) -> Any:
    """``mcproton run``'s number of a beam in its messages: its position in the run, from 1."""
    return i + 1


def _beam_of(wd: RunWording, i: int, beam: Any, n: int, sep: str = "/") -> str:
    """A beam and its place among the ``n`` of the run, as the step lines and the progress bar name it: "beam 2/3"
    where its number (``wd.beam``) is its position (``mcproton run``), else "beam 12 (1/3)" (a check: by BeamNumber,
    as its other lines and its report name it; audit 26, F5).  ``sep`` " of ": "beam 2 of 3", "beam 12 (1 of 3)"."""
    num, where = wd.beam(i, beam), f"{i + 1}{sep}{n}"
    return f"beam {where}" if num == i + 1 else f"beam {num} ({where})"


@dataclass(frozen=True)
class RunWording:
    """How run_job's messages of an early stop and of few batches name a beam and the options that change them:
    ``mcproton run``'s config keys by default.  A check passes its own (its beams by BeamNumber, its options
    --time-limit and --primaries, its batches being --primaries / 100), as it passes ``out_of_reach``: the run.*
    keys are no options of ``mcproton check`` (the docs audit of 2026-12-06, F2)."""

    #: (position in the run from 0, beam) -> the beam's number in the messages
    beam: Callable[[int, Any], Any] = _beam_position
    #: the time limit, formatted with ``limit`` (seconds)
    time_limit: str = "run.time_limit_s = {limit:g} s"
    #: how to get more batches (after "use at least 10 batches") where run.batches set them (BatchPlan.by_batches)
    more_batches: str = "run.batches, or a smaller run.batch_size"
    #: ... where their size was set instead, and run.batches does nothing (streaming.batches_not_used: run.batch_size,
    #: or a hundredth of run.primaries with a target uncertainty or a time limit); after a time limit's stop
    more_batches_sized: str = "a smaller run.batch_size"
    more_batches_time_limit: str = "a longer run.time_limit_s, or a smaller run.batch_size"
    #: what to do when one batch only was completed (a time limit's stop: the batches are then of a size, never
    #: run.batches' number; audit 27 followb: "more run.batches" was advised, which did nothing there)
    one_batch: str = "give a longer run.time_limit_s or a smaller run.batch_size"
    #: what to do about a run that would take more than streaming.LONG_RUN_S (the progress-log audit 26, F2)
    long_run: str = RUN_LONG_RUN_REMEDY
    #: the target uncertainty's name in that warning ("unless ... stops the run earlier")
    target: str = "run.target_uncertainty"
    #: how the CPU backend is chosen, where run.backend = "cuda" cannot run here (the error-message audit 27, F1:
    #: every caller said "--backend cpu", which mcproton run does not take)
    cpu_backend: str = CPU_BY_RUN_CONFIG
    #: what to do where the GPU cannot hold even the smallest batch (audit 27, F11d: a check was told of a coarser
    #: grid and --set, which it does not have)
    gpu_memory: str = RUN_GPU_MEMORY_REMEDY


@dataclass
class JobOptions:
    """How a job runs (not what it computes: that is the config, the settings, the geometry and the beams).

    resume : continue from the checkpoint beside ``out`` (``mcproton run --resume``).
    checkpoint : write checkpoints beside ``out`` (at ``run.checkpoint_interval_s`` and on SIGINT/SIGTERM).
    workers / scheduler / client / processes : run on Dask (a LocalCluster of ``workers`` processes, or
        threads with ``processes=False``; the scheduler at ``scheduler``; or the given
        ``distributed.Client``); needs the job's config (each worker rebuilds the job from it).  Otherwise the
        batches run here.
    progress : True for a progress bar on stderr, or a callable ``f(done_primaries, protons_per_second)``.
    log : where the run's messages go (default: stderr).
    first_beam_index : the random stream of ``beams[0]``; beam ``i`` of the job gets stream
        ``first_beam_index + i`` (its own range of history indices), so that the beams of a plan run as
        separate jobs (``simulate(..., beam_index=i)``) get the random numbers they get in one job.
    beam_streams : the random stream of each beam (one distinct stream a beam, in place of ``first_beam_index +
        i``): ``mcproton run`` gives each beam of an RT Ion Plan the stream of its place in the plan
        (:func:`plan_beam_streams`), so that a run of some of its beams (``plan.beams``) gets the random numbers
        those beams get in the run of the whole plan.  Recorded in each result's ``provenance["beam_index"]`` and in
        the checkpoint's fingerprint.
    handle_signals : SIGINT/SIGTERM/SIGHUP (:func:`stop_signals`) finish the batch in flight, write a checkpoint
        and raise RunInterrupted (``mcproton run``); False leaves the signals alone (``simulate``: Ctrl-C raises
        KeyboardInterrupt).
    warn_stacklevel : the line the run's warnings (few batches) are attributed to, counted as ``warnings.warn``'s
        stacklevel from run_job's own (1); ``simulate`` gives its caller's (3), so that the warning points at the
        user's line and a filter on the user's module matches it.
    out_of_reach : the warning that the target uncertainty needs more primaries than allowed, as streaming.stream's
        ``out_of_reach`` (None: ``mcproton run``'s, naming run.primaries; a check says it once for the plan).
    wording : how the messages of a time limit and of few batches name the beam and the options (:class:`RunWording`;
        default ``mcproton run``'s config keys).
    """

    resume: bool = False
    checkpoint: bool = True
    workers: int | None = None
    scheduler: str | None = None
    client: Any = None
    processes: bool = True
    progress: bool | Callable[[int, float], None] = True
    log: Callable[[str], None] | None = None
    first_beam_index: int = 0
    beam_streams: Sequence[int] | None = None
    handle_signals: bool = True
    warn_stacklevel: int = 1
    out_of_reach: Callable[[float, float, int, int], bool] | None = None
    wording: RunWording = dataclasses.field(default_factory=RunWording)


def plan_beam_streams(beams: Sequence[Any]) -> list[int] | None:
    """The random stream of each of ``beams`` (:class:`~mcproton.source.Beam`) from the RT Ion Plan they come from
    (``plan_to_beams``: ``meta`` with ``beam_number`` and ``plan_beam_numbers``): the beam's place in the plan, the
    stream it has in the run of the whole plan.  ``plan.beams = [2]`` then runs beam 2 on stream 1, not 0: bitwise
    the plan run's beam 2 on the CPU, and separate runs of a plan's beams are independent (before 2026-12-06 each
    run's beams took streams 0, 1, ... in their order, so the runs of ``plan.beams = [1]`` and ``[2]`` shared their
    random numbers: roundtrip audit F3).  None (streams 0, 1, ... in the order given) for beams that are not all
    of one plan, or whose places are not distinct."""
    metas = [getattr(b, "meta", None) or {} for b in beams]
    if not metas or not all("beam_number" in m and m.get("plan_beam_numbers") for m in metas):
        return None
    plans = {tuple(int(n) for n in m["plan_beam_numbers"]) for m in metas}
    if len(plans) != 1:
        return None
    numbers = list(plans.pop())
    if len(set(numbers)) != len(numbers) or any(int(m["beam_number"]) not in numbers for m in metas):
        return None
    streams = [numbers.index(int(m["beam_number"])) for m in metas]
    return streams if len(set(streams)) == len(streams) else None


def job_streams(opts: JobOptions, n_beams: int) -> list[int]:
    """The random stream of each of the job's ``n_beams`` beams: ``opts.beam_streams``, else
    ``opts.first_beam_index + i``; ValueError for a list of another length, repeated streams, or one given beside a
    first_beam_index."""
    if opts.beam_streams is None:
        return [int(opts.first_beam_index) + i for i in range(n_beams)]
    streams = list(opts.beam_streams)
    if opts.first_beam_index:
        raise ValueError("JobOptions: give beam_streams or first_beam_index, not both")
    if len(streams) != n_beams or len(set(streams)) != len(streams) or \
            any(isinstance(k, bool) or int(k) != k or k < 0 for k in streams):
        raise ValueError(f"JobOptions.beam_streams = {streams}: give one distinct stream (a whole number >= 0) for "
                         f"each of the {n_beams} beams (two beams on one stream share their random numbers)")
    return [int(k) for k in streams]


def run_job(cfg: dict[str, Any] | None, settings: Any, geometry: Any, beams: list[Any],
            out: str | Path | None, options: JobOptions | None = None, **overrides: Any) -> list[Any]:
    """Run every beam: settings -> Simulation -> batches (streamed, checkpointed, local or on Dask) -> one
    DoseResult per beam (the caller sums and writes them, then calls :func:`remove_checkpoint`).  The one
    driver of ``mcproton run``, ``mcproton check``, ``simulate`` and the Dask workers' jobs.

    ``options`` (:class:`JobOptions`) says how; keyword ``overrides`` replace its fields (``resume=True``,
    ``progress=False``, ...).  Each result's ``provenance["phase_s"]`` holds the wall time (s) of the phases
    of its beam: ``setup`` (tables, geometry and source on the backend, kernel compile), ``transport`` (the
    batches, including those of earlier segments of a resumed run) and ``finish`` (the result arrays).
    """
    opts = dataclasses.replace(options or JobOptions(), **overrides)
    wd = opts.wording
    resume, workers, scheduler, client = opts.resume, opts.workers, opts.scheduler, opts.client
    progress = opts.progress
    log: Callable[[str], None] = opts.log or _log_to_stderr
    backend = resolve_backend(settings)
    if backend == "cuda":   # a GPU asked for that cannot run here: refused in the caller's words (RunWording)
        get_backend("cuda", settings.threads, settings.gpu, cpu_choice=wd.cpu_backend)
    ckpt = checkpoint_path(out) if (out is not None and opts.checkpoint) else None
    # the job's identity, checked on resume (hashes of the geometry and the beams: only with a checkpoint)
    streams = job_streams(opts, len(beams))
    fp = {} if ckpt is None else fingerprint(cfg, settings, backend, geometry, beams, streams=streams)
    n_vox = int(np.prod(geometry.shape_zyx))
    resumed = ckpt is not None and ckpt.exists()
    states = _initial_states(ckpt, fp, n_vox, len(beams), resume, log)
    # the kernel builds that ran the histories (checkpoint.BUILDS_ATTR): this run's joins at its first transport
    builds = _checkpoint_builds(ckpt, len(states)) if resumed and ckpt is not None else []
    # the parts of the run: the checkpoint's earlier ones and this one (what set its batches, where it started and
    # stopped), kept in the checkpoint and in every result's provenance ("segments", "resumed"; audit 25
    # provenance, F6: a resumed run looked uninterrupted, and its uncertainty, of batches of two sizes, could not be
    # re-done)
    earlier = (_checkpoint_segments(ckpt, states) if resume and ckpt is not None and ckpt.exists() else [])
    builds = with_unrecorded_builds(builds, earlier)
    segment = _segment(settings, backend, states)
    if cfg is not None and "batches" in (cfg.get("run") or {}):   # run.batches given, and replaced: said once
        replaced = batches_not_used(settings, backend)
        if replaced:
            log(replaced)

    dask_ctx = None
    if cfg is not None and (workers or scheduler or client is not None):
        from .distributed import DaskSession

        dask_ctx = DaskSession(workers=workers, scheduler=scheduler, client=client, processes=opts.processes,
                               log=log, gpu=backend == "cuda")
    elif workers or scheduler or client is not None:
        raise ValueError("a distributed run needs the job's config (workers rebuild the simulation from it)")

    # the running beam's executor (its OOM batch cap) and, on the GPU, its DeviceAccumulator
    current: dict[str, Any] = {"executor": None, "device_acc": None, "ckpt_error": None, "ckpt_failures": 0,
                               "ckpt_warned": 0.0, "ckpt_written": None}

    def save(i: int | None = None, pos: int = 0, elapsed: float = 0.0, *,
             voxels: dict[int, np.ndarray] | None = None) -> bool:
        """Write the checkpoint (with beam ``i`` at history ``pos`` after ``elapsed`` s); True if written.
        A failed write (disk full, quota, permissions) does not stop the run: the previous checkpoint stays
        valid and the next one is tried at the next interval.  ``voxels``: the scored voxels of beams where
        already known (a finished beam's, found once for the checkpoint and its result); a beam not started has
        none and is not scanned either (host-time audit 2026-12-06, H3: a whole-grid scan each)."""
        if ckpt is None:
            return False
        if i is not None and current["device_acc"] is not None:
            states[i].acc = current["device_acc"].host()   # the checkpoint gets host copies of the sums
        if i is not None:
            states[i].next_history = pos
            states[i].elapsed_s = elapsed
            cap = getattr(current["executor"], "cap", None)
            if cap:   # a GPU out-of-memory shrink is kept by every checkpoint, not only the last one
                states[i].batch_cap = int(cap)
        known = {j: _NO_VOXELS for j, s in enumerate(states) if _fresh(s.acc)}
        known.update(voxels or {})
        try:
            save_checkpoint(ckpt, fp, states, builds, known,
                            segments=[*earlier, _segment_end(segment, states, _part_build(current))])
        except OSError as exc:
            current["ckpt_error"] = f"{type(exc).__name__}: {exc}"
            current["ckpt_failures"] += 1
            now = time.monotonic()
            if current["ckpt_failures"] == 1:
                kept = "the previous checkpoint stays valid" if ckpt.exists() else "with no checkpoint yet"
                log(f"mcproton: warning: could not write the checkpoint {ckpt} ({current['ckpt_error']}); the "
                    f"run goes on, {kept} and the next one is tried at the next interval (free disk space, or "
                    "check the output folder); said again at most every "
                    f"{CHECKPOINT_WARN_EVERY_S / 60:g} min while it keeps failing")
                current["ckpt_warned"] = now
            elif now - current["ckpt_warned"] >= CHECKPOINT_WARN_EVERY_S:   # not a line per interval (F11)
                log(f"mcproton: warning: {_ckpt_state(ckpt, current)}")
                current["ckpt_warned"] = now
            return False
        if current.get("ckpt_error"):
            log(f"mcproton: checkpoint written again to {ckpt} (after {current['ckpt_failures']} failed "
                "attempt(s))")
            current["ckpt_error"] = None
            current["ckpt_failures"] = 0
        current["ckpt_written"] = time.strftime("%H:%M:%S")
        return True

    def _worker_build(i: int, build: dict[str, Any], first: int) -> None:
        """A Dask worker's kernel build, seen for the first time in this run at history ``first`` of beam ``i``:
        the first takes over as a local run's build does (:func:`_kernel_takes_over`: the checkpoint's other build
        warned about); another is recorded beside it, with a warning (audit 26 interact, F3: a --workers run
        recorded no build)."""
        seen = current.setdefault("worker_builds", [])
        if build in seen:
            return
        seen.append(build)
        if len(seen) == 1:
            current["build"] = _kernel_takes_over(builds, build, states, ckpt, opts.warn_stacklevel, log)
            return
        at = [int(s.next_history) for s in states]
        at[i] = int(first)
        builds.append({"kernel": dict(build), "from_histories": at, "interleaved": WORKER_BUILDS_NOTE})
        from .._io.errors import McprotonRuntimeWarning, warn

        warn(f"the Dask workers run different builds of the transport kernel ({describe_build(seen[0])}; "
             f"{describe_build(build)}): the dose is statistically valid, but not bitwise reproducible (which worker "
             "runs which batch varies); the builds are recorded in the output's provenance (kernel_builds). For a "
             "bitwise-reproducible result, give every worker the same compiler and CPU (GPU: the same NVRTC and "
             "GPU architecture)", McprotonRuntimeWarning, stacklevel=opts.warn_stacklevel)

    results = []
    long_run = long_run_judge(wd.long_run, wd.target)   # judged once for the run, all its beams (audit 26, F3)
    # CPU: the previous beam's Simulation and running sums (its arrays, once its result is made) serve the next
    # beam, so that a large grid's tallies and sums are not faulted in again per beam (Simulation recycle=,
    # Accumulator.cleared)
    prev_sim: Simulation | None = None
    prev_backend: Any = None
    spare: tuple[Accumulator, np.ndarray] | None = None
    try:
        with _StopFlag(opts.handle_signals, checkpoint=ckpt if ckpt is not None else False) as stop:
            for i, beam in enumerate(beams):
                bname = printable(beam.name)   # a control character in a BeamName is shown escaped, never sent
                st = states[i]
                t_setup = time.perf_counter()
                sim = Simulation(geometry, beam, settings, beam_index=streams[i], recycle=prev_sim)
                prev_backend = sim.backend
                prev_sim = sim if sim.sparse_batches and dask_ctx is None else None
                if spare is not None and _fresh(st.acc) and sim.sparse_batches:
                    st.acc = Accumulator.cleared(*spare)
                spare = None
                if st.done and not _reopen_time_limited(st, settings, wd.beam(i, beam), log,
                                                        sum(s.elapsed_s for s in states)):
                    results.append(_finish(sim, st, time.perf_counter() - t_setup))
                    continue
                if i and stop():   # a signal during this beam's setup: not announced, not started (audit 26, F8)
                    raise _stopped_after_beam(stop.signum, i - 1, beams, states, settings, results, ckpt, save(),
                                              current, wd)
                budget = _time_budget(states, i, settings)
                if budget is not None and budget[0] <= 0:   # the run's time limit is used up: not started
                    used = sum(s.elapsed_s for s in states)
                    what = ("not started: the run's time limit is used up" if st.next_history == 0 else
                            "not continued: the run's time limit is used up")
                    lacks = ("the outputs lack its dose" if st.next_history == 0 else
                             "the outputs hold its dose of the primaries done before")
                    log(f"mcproton: beam {wd.beam(i, beam)} ({bname}) {what} "
                        f"({wd.time_limit.format(limit=settings.time_limit_s)}; {used:.3g} s of transport by the beams "
                        f"before it), so {lacks} (stopped by the time limit after "
                        f"{st.next_history:,} of {settings.primaries:,} primaries)")
                    st.done, st.stop_reason = True, "time_limit"
                    voxels = _scored_voxels(st.acc)   # found once for the checkpoint and the result
                    save(voxels={i: voxels})
                    results.append(_finish(sim, st, time.perf_counter() - t_setup, voxels))
                    continue
                if len(beams) > 1:
                    n_plan = (getattr(beam, "meta", None) or {}).get("plan_spots")
                    which = _beam_of(wd, i, beam, len(beams))
                    log(f"{which}: {bname} ({len(beam.spots)} spots)" if not n_plan or n_plan == len(beam.spots)
                        else f"{which}: {bname} ({n_plan} spots of the plan, {len(beam.spots)} Gaussian spots of the "
                        "beam model)")
                with phase("kernel_build"):   # its own phase (mcproton run's phase_s, the check's timings_s): on a
                    sim.backend.compile()       # cold kernel cache the C++/NVRTC build, seconds, is not transport
                if dask_ctx is None and current.get("build") is None:
                    current["build"] = _kernel_takes_over(builds, sim.backend, states, ckpt, opts.warn_stacklevel,
                                                          log)
                setup_s = time.perf_counter() - t_setup
                plan = BatchPlan.from_settings(settings, sim.backend.name)
                acc = st.acc
                current["device_acc"] = None
                executor: DaskExecutor | LocalExecutor
                if dask_ctx is not None:
                    assert cfg is not None   # a DaskSession is only made for a job with a config (above)
                    from .distributed import job_identity

                    # each worker's Simulation must be of this geometry, beam and backend (WorkerMismatchError)
                    geo = fp.get("geometry_hash") or current.get("geometry_hash") or geometry_hash(geometry)
                    current["geometry_hash"] = geo
                    executor = dask_ctx.executor(cfg, i, plan, settings, streams[i],
                                                 expect=job_identity(geo, beam, backend),
                                                 on_build=functools.partial(_worker_build, i))
                else:
                    if sim.keeps_tallies_on_device:
                        # GPU: the batches are summed on the device; host copies for checkpoints and the end
                        # (only the voxels with dose: DeviceAccumulator.host); a new beam's zero sums are made
                        # there, not uploaded from whole host arrays
                        start = ScoredSums.empty(n_vox) if _fresh(st.acc) else st.acc
                        try:
                            acc = current["device_acc"] = DeviceAccumulator(
                                start, sim.backend.xp, sim.backend.device_context,
                                target_check=settings.target_uncertainty is not None)
                        except Exception as exc:
                            if not is_out_of_memory(exc):
                                raise
                            log("mcproton: not enough GPU memory for the running sums of this grid; summing "
                                "the batches on the host instead (slower per batch, same dose)")
                    executor = LocalExecutor(sim, plan, cap=st.batch_cap or None, log=log,
                                             on_device=current["device_acc"] is not None, oom_remedy=wd.gpu_memory)
                current["executor"] = executor
                show = None
                later = _primaries_left(states[i + 1:], settings)
                if progress is True:   # the ETA and the time limit are the run's (beam k/n says which beam runs)
                    show = progress_printer(settings.primaries, st.next_history, target=settings.target_uncertainty,
                                            time_limit_s=settings.time_limit_s,
                                            elapsed_before_s=sum(s.elapsed_s for s in states),
                                            beam=_beam_of(wd, i, beam, len(beams)) if len(beams) > 1 else "",
                                            later_primaries=later)
                elif callable(progress):
                    show = progress
                try:
                    res = stream(acc, plan, executor, settings, geometry, start=st.next_history,
                                 elapsed_s=st.elapsed_s,
                                 checkpoint=functools.partial(save, i) if ckpt is not None else None,
                                 should_stop=stop, progress=show,
                                 time_limit=None if budget is None else _beam_time_limit(st.elapsed_s, *budget),
                                 out_of_reach=opts.out_of_reach, long_run=long_run, later_primaries=later)
                finally:
                    if current["device_acc"] is not None:
                        st.acc = current["device_acc"].host()
                        current["device_acc"] = None
                if progress is True:
                    end_progress()
                st.next_history, st.elapsed_s = res.next_history, res.elapsed_s
                st.batch_cap = int(getattr(executor, "cap", 0) or 0)
                if res.stop_reason == "interrupted":
                    written = save()
                    code = 128 + int(stop.signum or signal.SIGINT)
                    where, again = _stopped_where(ckpt, written, current)
                    raise RunInterrupted(
                        f"interrupted by {signal.Signals(stop.signum or signal.SIGINT).name} after "
                        f"{st.next_history:,} of {settings.primaries:,} primaries of beam {wd.beam(i, beam)} "
                        f"({bname}); {where}; {again}", code)
                st.done, st.stop_reason = True, res.stop_reason
                if res.stop_reason == "target_uncertainty":
                    # in percent, as the progress bar says them (units audit F2: "0.03061 <= 0.5" beside "3.06 %")
                    log(f"mcproton: beam {wd.beam(i, beam)} ({bname}) reached the target uncertainty after "
                        f"{st.next_history:,} primaries (mean relative uncertainty above 50 % Dmax "
                        f"{100 * res.mean_rel_uncertainty_50:.2f} % <= {100 * settings.target_uncertainty:.3g} %)")
                elif res.stop_reason == "time_limit":
                    log(f"mcproton: beam {wd.beam(i, beam)} ({bname}) stopped by the time limit ("
                        + wd.time_limit.format(limit=settings.time_limit_s) + " for the run"
                        + (f", shared by its {len(beams)} beams" if len(beams) > 1 else "")
                        + f"; {st.elapsed_s:.3g} s of transport in this beam, resumed segments included) after "
                        f"{st.next_history:,} of {settings.primaries:,} primaries")
                elif res.stop_reason == "tally_limit":   # the scale audit 19, F4: was an OverflowError, work lost
                    from .._io.errors import McprotonRuntimeWarning, warn
                    from .engine import TALLY_LIMIT_REMEDY, tally_limit_text

                    warn(f"beam {wd.beam(i, beam)} ({bname}) stopped after {st.next_history:,} of "
                         f"{settings.primaries:,} primaries: its next batch would have taken the energy summed in "
                         f"one voxel past {tally_limit_text()}; the outputs hold the dose of the primaries done, "
                         f"normalised to them. For more, {TALLY_LIMIT_REMEDY}", McprotonRuntimeWarning,
                         stacklevel=opts.warn_stacklevel)
                if getattr(st.acc, "batches", 2) < 2:   # F9 of the long-runs audit: said, not a silent NaN
                    from .._io.errors import McprotonRuntimeWarning, warn

                    why = ("the time limit stopped it" if res.stop_reason == "time_limit" else
                           f"run.batches = {settings.batches}" if settings.batches == 1 else "it stopped")
                    warn(f"beam {wd.beam(i, beam)} ({bname}): only one batch was completed ({why}, after "
                         f"{st.next_history:,} primaries): its statistical uncertainty cannot be estimated (NaN in the "
                         f"outputs); {wd.one_batch}", McprotonRuntimeWarning, stacklevel=opts.warn_stacklevel)
                elif getattr(st.acc, "batches", FEW_BATCHES) < FEW_BATCHES:
                    from .._io.errors import McprotonRuntimeWarning, warn

                    b = int(st.acc.batches)
                    # what sets the number of batches here: run.batches, or the size that replaced it
                    more = (wd.more_batches if plan.by_batches else wd.more_batches_time_limit
                            if res.stop_reason == "time_limit" else wd.more_batches_sized)
                    warn(f"beam {wd.beam(i, beam)} ({bname}): its statistical uncertainty comes from {b} batches only, "
                         f"and reads low by about {100 * (1 - c4(b)):.0f} % (the quoted figure is a mean of per-voxel "
                         f"standard deviations, each from {b} batch means: c4({b}) = {c4(b):.3f}); use at least "
                         f"{FEW_BATCHES} batches ({more}) for an uncertainty to rely on",
                         McprotonRuntimeWarning, stacklevel=opts.warn_stacklevel)
                # the checkpoint first (the beam's transport kept should its result fail), then the result: the
                # scored voxels found once for both
                voxels = _scored_voxels(st.acc)
                written = save(voxels={i: voxels})
                acc_done = st.acc
                results.append(_finish(sim, st, setup_s, voxels))   # its sums live on compactly (BeamState.compact)
                if isinstance(acc_done, Accumulator) and st.stored is not None and "voxels" in st.stored:
                    spare = (acc_done, st.stored["voxels"])   # not when the stored form is the whole arrays
                if dask_ctx is not None:
                    results[-1].provenance["distributed"] = dask_ctx.describe()
                if stop():   # the signal came in the batch that finished the beam: honoured now, not forgotten
                    raise _stopped_after_beam(stop.signum, i, beams, states, settings, results, ckpt, written,
                                              current, wd)
            if stop():   # ... or while the last beams were finished without transport (done before, not started)
                raise _stopped_after_beam(stop.signum, len(beams) - 1, beams, states, settings, results, ckpt,
                                          save(), current, wd)
    finally:
        if dask_ctx is not None:
            dask_ctx.close()
        if current["ckpt_failures"]:   # still failing at the end: said once more (F11)
            log(f"mcproton: warning: {_ckpt_state(ckpt, current)}")
    # the build of the kernel that ran (the last) histories: the CPU's compiler, flags and kernel cache key decide the
    # bits under -march=native -ffast-math (audit 25 provenance, F8: in the checkpoint only); a Dask run's, its
    # workers' (each chunk names it: audit 26 interact, F3), "differ" where they ran several
    own = _part_build(current) or (
        kernel_build(prev_backend) if prev_backend is not None and dask_ctx is None else None)
    ran = own or (builds[-1]["kernel"] if builds else None)
    if builds and (len(builds) > 1 or (own is not None and builds[-1]["kernel"] != own)):
        for r in results:   # a resume by another build (or of an unknown one): which ran which histories
            r.provenance["kernel_builds"] = [dict(b) for b in builds]
    parts = [*earlier, _segment_end(segment, states, _part_build(current))]
    for r in results:
        mark_completeness(r, settings, settings.primaries)
        r.provenance["resumed"] = len(parts) > 1
        r.provenance["segments"] = [dict(p) for p in parts]
        if ran is not None:
            r.provenance["kernel_build"] = ran if isinstance(ran, str) else dict(ran)
    return results


def _part_build(current: dict[str, Any]) -> dict[str, Any] | str | None:
    """The kernel build that ran this part of the run: its own (a local run's, or its Dask workers' one),
    :data:`WORKER_BUILDS_DIFFER` where its Dask workers ran several, None where it transported nothing."""
    if len(current.get("worker_builds") or []) > 1:
        return WORKER_BUILDS_DIFFER
    return current.get("build")


def _segment(settings: Any, backend: str, states: list[BeamState]) -> dict[str, Any]:
    """This part of the run as it starts (:func:`_segment_end` adds where it stopped): ``started`` (local time),
    each beam's first history and batches done before (``from_histories``, ``from_batches``: 0 for a run that is not
    resumed), and what sets its batches and its stop: ``primaries``, ``batches`` and ``batch_size`` as set
    (run.batches, run.batch_size: None where not set), ``batch_histories`` (the histories of this part's batches, the
    streaming plan's: the last batch of a beam, or one of run.batches' equal split, may be shorter by what does not
    divide), ``time_limit_s`` and ``target_uncertainty`` (with either, the batches are a hundredth of the
    primaries)."""
    import datetime as _dt

    # local time with its UTC offset, as the summary's run_started
    return {"started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "from_histories": [int(s.next_history) for s in states],
            "from_batches": [int(getattr(s.acc, "batches", 0)) for s in states],
            "primaries": int(settings.primaries), "batches": int(settings.batches),
            "batch_size": None if settings.batch_size is None else int(settings.batch_size),
            "batch_histories": int(BatchPlan.from_settings(settings, backend).size),
            "time_limit_s": settings.time_limit_s, "target_uncertainty": settings.target_uncertainty}


def _segment_end(segment: dict[str, Any], states: list[BeamState],
                 build: dict[str, Any] | str | None) -> dict[str, Any]:
    """``segment`` (:func:`_segment`) with where each beam is now (``to_histories``, ``to_batches``), the batch size a
    GPU out-of-memory shrink left (``batch_caps``, where any) and the kernel build that ran it (``kernel_build``:
    None where it transported nothing; :data:`WORKER_BUILDS_DIFFER` where its Dask workers ran several)."""
    caps = [int(s.batch_cap or 0) for s in states]
    return {**segment, "to_histories": [int(s.next_history) for s in states],
            "to_batches": [int(getattr(s.acc, "batches", 0)) for s in states],
            **({"batch_caps": caps} if any(caps) else {}),
            "kernel_build": build if build is None or isinstance(build, str) else dict(build)}


def _checkpoint_segments(ckpt: Path, states: list[BeamState]) -> list[dict[str, Any]]:
    """The parts of the run that the checkpoint being resumed records (:func:`~mcproton._run.checkpoint.read_segments`);
    for one written before they were recorded, one part of unknown settings that ran up to the checkpoint's
    histories."""
    known = read_segments(ckpt)
    if known is not None:
        return known
    return [{"unknown": "the checkpoint was written by an mcproton that did not record the parts of its run",
             "from_histories": [0] * len(states), "from_batches": [0] * len(states),
             "to_histories": [int(s.next_history) for s in states],
             "to_batches": [int(getattr(s.acc, "batches", 0)) for s in states]}]


def _checkpoint_builds(ckpt: Path, n_beams: int) -> list[dict[str, Any]]:
    """The kernel builds recorded in the checkpoint being resumed (one unknown build, ``kernel`` None, for a
    checkpoint written before they were recorded); CheckpointError where its physics data differ from this
    mcproton's (the dose would mix two physics)."""
    from .._build import build_identity

    builds = read_builds(ckpt)
    if physics_changed(builds, {"mcproton": build_identity()}):
        raise CheckpointError(
            f"checkpoint {ckpt} was written with other physics data (the SHA-256 of mcproton's data files and physics "
            "modules differs from this installation's): resume with the mcproton that wrote it; or delete "
            f"{ckpt} to start the run afresh")
    return builds if builds is not None else [{"kernel": None, "from_histories": [0] * n_beams}]


def _kernel_takes_over(builds: list[dict[str, Any]], backend: Any, states: list[BeamState], ckpt: Path | None,
                       stacklevel: int, log: Callable[[str], None]) -> dict[str, Any]:
    """This run's kernel build (checkpoint.kernel_build of ``backend``, or ``backend`` itself where it is a build:
    a Dask worker's), added to ``builds`` where it is not the last one there, with the history each beam is at: a
    checkpoint written by another build (a requeue onto a node with another compiler or CPU) is continued, with a
    warning that the dose is statistically valid but not bitwise equal to an uninterrupted run (the README's promise
    holds for one build); one that does not record the build of all its histories, with a note that this cannot be
    verified (the environment audit, F2)."""
    build = dict(backend) if isinstance(backend, dict) else kernel_build(backend)
    last = builds[-1]["kernel"] if builds else None
    if any(b.get("kernel") is None for b in builds):
        log(f"mcproton: note: the checkpoint {ckpt} does not record the transport kernel build that ran "
            + ("its histories" if last is None and len(builds) == 1 else "some of its histories")
            + " (an older mcproton, or an mcproton run --workers before 2026-12-07): whether this build ("
            + describe_build(build) + ") is the same, and so whether the resumed dose is bitwise identical to an "
            "uninterrupted run, cannot be verified")
    if builds and last is not None and last != build:
        from .._io.errors import McprotonRuntimeWarning, warn

        # the cause and the cure in the backend's terms (a CUDA build's are not the CPU's compiler and CPU)
        why, same = (("another NVRTC version, other options or another GPU architecture compiles --use_fast_math "
                      "arithmetic differently", "the same NVRTC (CuPy) version and GPU architecture")
                     if build.get("backend") == "cuda" else
                     ("-ffast-math rounds a few histories differently", "the same compiler and CPU"))
        warn(f"the checkpoint {ckpt} was written by another build of the transport kernel ({describe_build(last)}) "
             f"than this run's ({describe_build(build)}): the run goes on, and its dose is statistically valid, but "
             f"not bitwise identical to an uninterrupted run with either build ({why}); both builds and the "
             "histories each ran are recorded in the output's provenance (kernel_builds). For a bitwise-reproducible "
             f"result, resume on a node with {same}", McprotonRuntimeWarning, stacklevel=stacklevel)
    if not builds or last != build:
        builds.append({"kernel": build, "from_histories": [int(s.next_history) for s in states]})
    return build


def mark_completeness(result: Any, settings: Any, requested: int) -> None:
    """Put into ``result``'s provenance what was asked and whether it was done: ``primaries_requested`` and, with
    run.target_uncertainty, ``target_uncertainty`` and ``target_reached`` (its mean relative uncertainty above
    50 % of its maximum at or below the target).  With ``stop_reason`` they are what early_stop_note reads: an RT
    Dose (write_result_rtdose), the HDF5 and the plot of a run stopped early say so.  Every beam of every job gets
    them here (``mcproton run``, ``mcproton check``, ``simulate``: the Python-API audit, F5, where a simulate result
    stopped by its time limit looked complete); ``mcproton run`` marks its plan sum again after the body outline."""
    result.provenance["primaries_requested"] = int(requested)
    target = settings.target_uncertainty
    if target is not None:
        u = float(result.mean_rel_uncertainty_50)
        result.provenance["target_uncertainty"] = float(target)
        result.provenance["target_reached"] = bool(math.isfinite(u) and u <= target)


#: a checkpoint that keeps failing is reported at most this often (s) after its first failure
CHECKPOINT_WARN_EVERY_S = 1800.0


def _ckpt_state(ckpt: Path | None, current: dict[str, Any]) -> str:
    last = (f"last written at {current['ckpt_written']} ({describe(ckpt)})" if current["ckpt_written"]
            and ckpt is not None and ckpt.exists() else "none written by this run"
            + (f"; an older one is kept ({describe(ckpt)})" if ckpt is not None and ckpt.exists() else ""))
    return (f"the checkpoint {ckpt} is still failing ({current['ckpt_failures']} failed attempt(s), the last: "
            f"{current['ckpt_error']}); {last}")


def _initial_states(ckpt: Path | None, fp: dict[str, str], n_vox: int, n_beams: int, resume: bool,
                    log: Callable[[str], None]) -> list[BeamState]:
    """The beams' states: those of the checkpoint ``ckpt`` (with ``resume``; refused without), else new.  A
    checkpoint of another run (another config, beam, seed...) is not offered to --resume: said so; one whose finished
    run's result was refused (:func:`~mcproton._run.checkpoint.mark_refused`) is replaced by a run of another config,
    with a note (review 5 of 2026-12-06, F3: the corrected run was refused and told to add --resume, which was then
    refused as another run's, until the file was deleted by hand).  One of this run is never replaced."""
    other = checkpoint_difference(ckpt, fp) if ckpt is not None and ckpt.exists() else None
    if other is not None and ckpt is not None and is_refused(ckpt):
        info = describe(ckpt)
        remove_checkpoint_file(ckpt)
        log(f"mcproton: note: {ckpt} held a finished run{' (' + info + ')' if info else ''} whose result was refused, "
            f"of a run with {other.split(':')[0]}: replaced by this run")
    if ckpt is not None and ckpt.exists():
        if not resume:
            info = describe(ckpt)
            if other is not None:
                kind = "a finished" if is_complete(ckpt) else "an interrupted"
                raise CheckpointError(f"{ckpt} holds {kind} run{' (' + info + ')' if info else ''} of another run: "
                                      f"it belongs to a run with {other}; --resume cannot continue it with this "
                                      f"command: delete {ckpt} (or give another --out) to run this one")
            if info.endswith("stopped by the time limit"):
                raise CheckpointError(f"{ckpt} holds a run stopped by run.time_limit_s ({info}); add --resume with a "
                                      "larger run.time_limit_s (or none) to add the remaining primaries (with the "
                                      "same limit --resume writes the output of those done), or delete it to start "
                                      "afresh")
            if is_complete(ckpt) and is_refused(ckpt):
                raise CheckpointError(f"{ckpt} holds a finished run of this config{' (' + info + ')' if info else ''}"
                                      " whose result was refused (nothing written); add --resume --allow-empty to "
                                      "write its dose as it is, without transporting again, or delete it to start "
                                      "afresh")
            if is_complete(ckpt):   # a finished run whose outputs were not written (a signal as they were written)
                raise CheckpointError(f"{ckpt} holds a finished run{' (' + info + ')' if info else ''} whose outputs "
                                      "were not written; add --resume to write them without transporting again (with "
                                      "--allow-empty where its result was refused), or delete it to start afresh")
            raise CheckpointError(f"{ckpt} holds an interrupted run{' (' + info + ')' if info else ''}; add "
                                  f"--resume to continue it, or delete it to start afresh")
        states = load_checkpoint(ckpt, fp, n_vox)
        log(f"mcproton: resuming from {ckpt} ({describe(ckpt)})")
        return states
    if resume and ckpt is not None:
        log(f"mcproton: --resume: no checkpoint at {ckpt}; starting from the beginning")
    return [BeamState(Accumulator(n_vox)) for _ in range(n_beams)]


def _reopen_time_limited(st: BeamState, settings: Any, number: Any, log: Callable[[str], None],
                         used_s: float) -> bool:
    """A beam of a checkpoint that the time limit stopped before its primaries: continue it (True) when this run's
    run.time_limit_s is larger than the transport time the run has used (``used_s``: every beam's, resumed segments
    included), or unset; else say why nothing is added."""
    if st.stop_reason != "time_limit" or st.next_history >= settings.primaries:
        return False
    limit = settings.time_limit_s
    done = f"{st.next_history:,} of {settings.primaries:,} primaries"
    if limit is not None and used_s >= limit:
        log(f"mcproton: beam {number} was stopped by the time limit after {done}; the run has used {used_s:.3g} s of "
            f"transport (every beam, resumed segments included), at or above this run's run.time_limit_s = "
            f"{limit:g} s: no primaries added; give a larger run.time_limit_s (or none) with --resume to continue it")
        return False
    log(f"mcproton: beam {number} was stopped by the time limit after {done} ({st.elapsed_s:.3g} s of transport); "
        f"continuing from history {st.next_history:,} with "
        + ("no time limit" if limit is None else f"run.time_limit_s = {limit:g} s (the run's transport time in total, "
           f"{used_s:.3g} s used)"))
    st.done, st.stop_reason = False, ""
    return True


def _may_run(st: BeamState, settings: Any) -> bool:
    """Whether beam state ``st`` still has primaries to run: not done, or stopped by a time limit before
    run.primaries (continued by --resume with a larger limit)."""
    return st.next_history < settings.primaries and (not st.done or st.stop_reason == "time_limit")


def _primaries_left(states: list[BeamState], settings: Any) -> int:
    """The primaries the beams of ``states`` have left to run (the run's ETA counts them)."""
    return sum(settings.primaries - st.next_history for st in states if _may_run(st, settings))


def _time_budget(states: list[BeamState], i: int, settings: Any) -> tuple[float, float, int] | None:
    """run.time_limit_s is the run's transport time, not each beam's (the long-runs audit 2, F5: a 2-beam plan given
    6 s ran 12.5 s; a 3-field plan given the hour of a batch queue's slot took three).  At the start of beam ``i``:
    the time left to the run (s: the limit less every beam's transport so far, resumed segments included), beam
    ``i``'s share of it (equal among it and the later beams that have primaries left, so that each beam of a plan
    that does not fit gets some) and the primaries those later beams have left.  None without a limit."""
    if settings.time_limit_s is None:
        return None
    left = float(settings.time_limit_s) - sum(st.elapsed_s for st in states)
    later = [st for st in states[i + 1:] if _may_run(st, settings)]
    return left, left / (1 + len(later)), _primaries_left(later, settings)


def _beam_time_limit(elapsed_before_s: float, left_s: float, share_s: float,
                     later_primaries: int) -> Callable[[int, float], float]:
    """The transport time (s, the beam's own, its earlier segments included: ``elapsed_before_s``) at which a beam
    stops, given its next history and its speed (protons/s) so far (:func:`stream`'s ``time_limit``): what is left
    of the run's limit (``left_s``) less what the later beams need at this beam's speed (``later_primaries``), so
    that a plan that fits runs to the end; but never less than its share (``share_s``), so that a plan that does
    not fit has every beam, at fewer primaries.  Never more than ``left_s``: the run stops at its limit (plus the
    batch in flight)."""

    def limit(_pos: int, rate: float) -> float:
        reserve = later_primaries / rate if rate > 0 else left_s - share_s
        return elapsed_before_s + max(share_s, left_s - reserve)

    return limit


def _stopped_where(ckpt: Path | None, written: bool, current: dict[str, Any]) -> tuple[str, str]:
    """What an interrupted run kept and how to go on: (where, again) of the RunInterrupted message."""
    if ckpt is None:
        return "no checkpoint (checkpointing is off)", "nothing was kept: run it again"
    again = "continue with the same command and --resume"
    if written:
        return f"checkpoint written to {ckpt}", again
    return (f"the checkpoint could NOT be written ({current['ckpt_error']}); "
            + (f"the previous one at {ckpt} ({describe(ckpt)}) is kept" if ckpt.exists()
               else "there is no earlier one"), again)


def _stopped_after_beam(signum: int | None, i: int, beams: list[Any], states: list[BeamState], settings: Any,
                        results: list[Any], ckpt: Path | None, written: bool,
                        current: dict[str, Any], wd: RunWording | None = None) -> RunInterrupted:
    """The RunInterrupted of a stop signal that came in the batch that finished beam ``i`` (the long-runs audit 2,
    F3: the beam ended normally and the signal, acknowledged with "writing a checkpoint", was forgotten: ``mcproton
    run`` wrote its outputs and exited 0, ``mcproton check`` went on with its top-up, gamma and report).  After the
    last beam every result is attached (``results``): the transport is done, and a run without a checkpoint
    (``--no-checkpoint``) can still write its outputs (mcproton.cli)."""
    sig = signal.Signals(signum or signal.SIGINT)
    where, again = _stopped_where(ckpt, written, current)
    wd = wd or RunWording()   # how the beam is named (the check: by BeamNumber); mcproton run's by default
    last = i == len(beams) - 1
    if not last:
        return RunInterrupted(f"interrupted by {sig.name} after {_beam_of(wd, i, beams[i], len(beams), ' of ')} "
                              f"({beams[i].name}) "
                              f"finished ({states[i].next_history:,} primaries); {where}; {again}", 128 + sig)
    for r in results:
        mark_completeness(r, settings, settings.primaries)
    if ckpt is not None and written:
        where, again = (f"the finished run is kept in the checkpoint {ckpt}", "run the same command with --resume to "
                        "write the outputs without transporting again")
    return RunInterrupted(f"interrupted by {sig.name} as the transport finished (every beam done, "
                          f"{sum(st.next_history for st in states):,} primaries), before the outputs were written; "
                          f"{where}; {again}", 128 + sig, results=results, kept=ckpt is not None and written)


def _fresh(acc: Any) -> bool:
    """True for an Accumulator that holds no batch yet (a beam that has not started)."""
    return type(acc) is Accumulator and acc.batches == 0 and acc.primaries == 0 and not acc.ledger.any()


#: the scored voxels of a beam not started (scored_voxels' dtype): it has none
_NO_VOXELS = np.zeros(0, np.intp)


def _scored_voxels(acc: Any) -> Any:
    """scored_voxels(acc), without scanning the sums of a beam not started (all zero: :func:`_fresh`)."""
    return _NO_VOXELS if _fresh(acc) else scored_voxels(acc)


def _finish(sim: Any, st: BeamState, setup_s: float, voxels: np.ndarray | None = None) -> Any:
    """The beam's result; then its running sums are kept only compactly (BeamState.compact), in the result and
    for the checkpoints.  The scored voxels (``voxels``, where the caller found them) are found once for both."""
    t = time.perf_counter()
    if voxels is None:
        voxels = _scored_voxels(st.acc)
    res = finish(sim, st.acc, st.elapsed_s, voxels=voxels)
    st.compact(voxels)
    res.provenance["stop_reason"] = st.stop_reason
    res.provenance["next_history"] = st.next_history
    res.provenance["phase_s"] = {"setup": setup_s, "transport": st.elapsed_s,
                                 "finish": time.perf_counter() - t}
    return res


def remove_checkpoint(out: str | Path) -> None:
    """Delete the checkpoint of a finished job (after its output is written)."""
    remove_checkpoint_file(checkpoint_path(out))


def remove_checkpoint_file(p: Path) -> None:
    """Delete checkpoint ``p`` and its temporary files."""
    for q in (p, p.with_name(p.name + ".tmp"), *temporary_files(p)):
        try:
            q.unlink()
        except FileNotFoundError:
            pass

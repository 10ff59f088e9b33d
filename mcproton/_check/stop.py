"""A check stopped by SIGINT or SIGTERM: exit status 128 + signal, a message saying what ``--out`` holds, no lock left.

The MC of a check stops as a run does (``mcproton._run.job``: the batch in flight finishes, then
:class:`~mcproton._run.job.RunInterrupted`).  Before the MC (reading the DICOM, building the geometry) and after
it (the MC RT Doses, the gamma analysis, the report), a check used to have Python's defaults: SIGTERM (a batch
scheduler, ``kill``) ended it silently with status -15, leaving its lock and a lone ``RD_mc.dcm``; Ctrl-C printed
"interrupted" between the gamma workers' tracebacks and did not say what was written (the long-runs audit of
2026-12-05, F7).  :func:`stops_cleanly` handles both signals for the whole check: outside the MC the first one
raises :class:`CheckStopped` at once (the file being written is removed by the atomic writer, the gamma worker
processes are stopped by their ``with``), further ones are ignored while that unwinds, and the check ends with
``RunInterrupted`` (exit status 128 + signal on the command line, ``--batch`` records it) whose message says what
this check wrote into ``--out`` and what not (the folder then holds no complete report), and where an earlier
check's report went (F8: "nothing was kept" read as if the folder held nothing).  A check stopped so leaves the
record of its interruption as ``--out/check.json`` (``"status": "interrupted"``, out_dir.record_failure), the earlier
check's outputs in ``earlier_check_<date>/`` (moved there as the check started, or now where it was stopped while
reading its inputs): before the integrators' audit of 2026-12-06 (F1) a re-check stopped during its MC left last
night's check.json in place, unmarked.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._signals import RaiseOnStopSignals, StopSignal
from .out_dir import MC_DOSE_NAME, PHANTOM_DIR, REPORT_FILES


class CheckStopped(StopSignal):
    """SIGINT/SIGTERM/SIGHUP outside the MC of a check."""


class CheckRun:
    """What a running check has done, for the message of a stop: its ``--out``, whether it writes the report, the
    earlier check's outputs found there (out_dir.EarlierOutputs, which says whether they were removed), the phase,
    and whether it is complete (its last file written: a signal then is ignored)."""

    def __init__(self, out: Path | None, report: bool) -> None:
        self.out = out
        self.report = report
        self.earlier: Any = None
        self.phase = "before the MC (reading the inputs, building the geometry)"
        self.complete = False
        self.signum: int | None = None
        self.identification: dict[str, Any] = {}   # the patient and plan, once the plan is read (record.py)
        self.scratch: list[Path] = []   # the check's temporary folders (:func:`scratch_folder`): removed as it ends

    def _written(self) -> list[str]:
        """This check's files in --out (once the earlier check's were removed: every file of those names)."""
        out = self.out
        if out is None or not out.is_dir():
            return []
        names = sorted(p.name for p in out.iterdir() if MC_DOSE_NAME.match(p.name))
        names += [n for n in REPORT_FILES if (out / n).is_file()]
        return names + ([PHANTOM_DIR + "/"] if (out / PHANTOM_DIR).is_dir() else [])

    def folder_note(self) -> str:
        """What --out holds now, for the message of a stop."""
        if self.out is None:
            return ""
        earlier = self.earlier
        aside = (f"; the earlier check's outputs found there ({earlier.describe()}) were moved into "
                 f"{earlier.moved_to}: they are not the result of this check") \
            if earlier is not None and earlier.moved_to is not None else ""
        if earlier is None or not earlier.removed:   # nothing of this check's written yet
            if earlier is None and self.out.is_dir():   # stopped before --out was looked at: what is there
                from .out_dir import EarlierOutputs

                earlier = EarlierOutputs(self.out, [p for p in sorted(self.out.iterdir()) if p.name in REPORT_FILES
                                                    or MC_DOSE_NAME.match(p.name) or p.name == PHANTOM_DIR],
                                         lambda m: None)
                if earlier.found:
                    return (f"; nothing was written to --out {self.out}, which held an earlier check's outputs "
                            f"({earlier.describe()}): they are not the result of this check")
            return f"; nothing of this check's was written to --out {self.out}{aside}"
        written = self._written()
        expected = ["RD_mc.dcm"] + (["check.html"] if self.report else []) + ["check.json"]
        missing = [n for n in expected if n not in written]
        if not missing:
            return f"; written in --out {self.out}: {', '.join(written)} (the report was complete)"
        # the report and the result named as such: check.json is then written as the record of this interrupted
        # check, which the message says after this (concurrency audit 25, F7: "not written: ..., check.json" and
        # "check.json records this interrupted check" in one message)
        files = [n for n in missing if n not in _REPORT_WORDS]
        reports = [_REPORT_WORDS[n] for n in _REPORT_WORDS if n in missing]
        lacking = "; ".join(([f"not written: {', '.join(files)}"] if files else [])
                            + ([f"{' and '.join(reports)} {'were' if len(reports) > 1 else 'was'} written"]
                               if reports else []))
        return (f"; written in --out {self.out}: {', '.join(written) or 'nothing'}; {lacking}: the folder holds no "
                f"complete report{aside}")


#: the report files of a check as a stop's message names them where they were not written
_REPORT_WORDS = {"check.html": "no report (check.html)", "check.json": "no result (check.json)"}


_RUN: contextvars.ContextVar[CheckRun | None] = contextvars.ContextVar("mcproton_check_run", default=None)


def progress(phase: str | None = None, *, earlier: Any = None, complete: bool = False,
             identification: dict[str, Any] | None = None) -> None:
    """Tell the running check's stop message where the check is (``phase``: "after the MC, ..."), the earlier
    outputs found in --out (``earlier``), that its last file is written (``complete``), or the patient and plan
    (``identification``, for the record of a check that does not complete)."""
    run = _RUN.get()
    if run is None:
        return
    if identification is not None:
        run.identification = dict(identification)
    if phase is not None:
        run.phase = phase
    if earlier is not None:
        run.earlier = earlier
    if complete:
        run.complete = True


def scratch_folder(prefix: str) -> Path:
    """A new temporary folder (``tempfile.mkdtemp``) of the running check's own: removed by :func:`remove_scratch`,
    else when the check ends, however it ends (a result, an error, a refusal, SIGINT/SIGTERM/SIGHUP where the check
    runs in the main thread: elsewhere it installs no handlers, and a SIGTERM or SIGHUP the process does not handle
    ends it with the folder left, as does SIGKILL; review b of audit 31, R6).  For the
    phantom's CT of a check without ``out``: before the resources audit 31 (F1) it stayed in the temporary folder,
    ~29 MB for each check of plan06's phantom.  Outside a running check: removed as the process exits."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    run = _RUN.get()
    if run is not None:
        run.scratch.append(folder)
    else:
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def remove_scratch(folder: Path | None = None) -> None:
    """Remove the running check's temporary folder ``folder`` (all of them with None) now."""
    import shutil

    run = _RUN.get()
    for d in list(run.scratch if run is not None else []):
        if folder is None or d == folder:
            shutil.rmtree(d, ignore_errors=True)
            run.scratch.remove(d)   # type: ignore[union-attr]
    if run is None and folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class _Handlers(RaiseOnStopSignals):
    """``with _Handlers(run):`` SIGINT/SIGTERM/SIGHUP raise :class:`CheckStopped` (main thread only: elsewhere signals
    cannot be handled); the first one only, and none once the check is complete.  The MC's own handlers
    (mcproton._run.job._StopFlag) replace these while it runs and put them back after it."""

    exc = CheckStopped

    def __init__(self, run: CheckRun) -> None:
        super().__init__()
        self.run = run

    def quiet(self) -> bool:
        return self.run.signum is not None or self.run.complete

    def stopped(self, signum: int) -> None:
        self.run.signum = signum


def _record_failure(run: CheckRun, exc: BaseException, bound: dict[str, Any], started: str,
                    sig: inspect.Signature) -> dict[str, Any]:
    """The record of a check that failed (out_dir.record_failure), written into its --out where it has one."""
    from .out_dir import record_failure
    from .record import invocation

    given = {k: (str(v) if isinstance(v, (str, Path)) else [str(x) for x in v] if isinstance(v, (list, tuple))
                 else None) for k, v in bound.items() if k in ("plan", "dose", "ct", "struct", "folder", "beam_model")}
    defaults = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    try:
        how = invocation({**defaults, **bound}, defaults)
    except Exception:  # noqa: BLE001 - the record's invocation is a courtesy; the failure is what matters
        how = {}
    ours = run.earlier is not None and run.earlier.removed
    return record_failure(run.out, exc, ours_written=ours, started=started, inputs=given, invocation=how,
                          log=_log_of(bound), moved_to=getattr(run.earlier, "moved_to", None),
                          identification=run.identification)


def _log_of(bound: dict[str, Any]) -> Callable[[str], None]:
    """The check's ``log`` (default: stderr)."""
    import sys

    log = bound.get("log")
    return log if callable(log) else (lambda m: (sys.stderr.write(m + "\n"), sys.stderr.flush()))


def _recorded(stopped: BaseException, run: CheckRun, bound: dict[str, Any], started: str,
              sig: inspect.Signature) -> BaseException:
    """``stopped`` (the check's RunInterrupted) with its record (``check_record``) written into --out as check.json
    (``"status": "interrupted"``), and its message saying so where written."""
    record = _record_failure(run, stopped, bound, started, sig)
    stopped.check_record = record   # type: ignore[attr-defined]
    if record.get("record") and stopped.args:
        stopped.args = (f"{stopped.args[0]}; {record['record']} records this interrupted check (not a result)",
                        *stopped.args[1:])
    return stopped


def stops_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator of ``check``: a SIGINT/SIGTERM/SIGHUP ends it with :class:`~mcproton._run.job.RunInterrupted` (exit
    status 128 + signal) whose message says what was written into its ``out`` and what not (module docstring)."""
    from .._run.job import RunInterrupted

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .record import now_text

        started = now_text()
        bound = sig.bind_partial(*args, **kwargs).arguments
        out = bound.get("out")
        run = CheckRun(Path(out) if out is not None else None, bool(bound.get("report", True)))
        token = _RUN.set(run)
        try:
            with _Handlers(run) as handlers:
                try:
                    handlers.deliver_deferred()   # a signal that came as the command line started (audit 26 F2)
                    return fn(*args, **kwargs)
                except CheckStopped as exc:
                    run.signum = exc.signum   # a further signal is ignored while this unwinds
                    name = signal.Signals(exc.signum).name
                    stopped = RunInterrupted(f"interrupted by {name} {run.phase}{run.folder_note()}; the check has "
                                             "no --resume: run it again", 128 + exc.signum)
                    raise _recorded(stopped, run, bound, started, sig) from None
                except RunInterrupted as exc:   # the MC's (its message says how far it got)
                    run.signum = run.signum or signal.SIGINT
                    stopped = RunInterrupted(f"{exc}{run.folder_note()}", exc.code, exc.results, exc.kept)
                    raise _recorded(stopped, run, bound, started, sig) from None
                except Exception as exc:   # refused, or failed: recorded in --out, the earlier report moved aside
                    exc.check_record = _record_failure(run, exc, bound, started, sig)   # type: ignore[attr-defined]
                    raise
        finally:
            remove_scratch()   # this check's temporary folders, however it ended (resources audit 31, F1)
            _RUN.reset(token)

    return wrapper

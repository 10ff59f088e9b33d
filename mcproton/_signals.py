"""The stop signals of a run or a check, and the handlers of the phases that stop at once where a signal arrives
(``mcproton run``'s outputs, ``mcproton check`` outside its MC).  A light module (no numpy): the command line uses
it before the run is imported.  The transport's own handler, which finishes the batch in flight, is
mcproton._run.job._StopFlag."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any


def stop_signals() -> tuple[int, ...]:
    """The signals that stop a run with a checkpoint: SIGINT (Ctrl-C), SIGTERM (kill, a batch scheduler) and,
    where it exists, SIGHUP (the terminal closed, an ssh session dropped: the long-runs audit 2, F10, where it
    killed the run without the checkpoint of the batches done) - unless SIGHUP is ignored (``nohup``: the run
    must then survive the terminal)."""
    out = [signal.SIGINT, signal.SIGTERM]
    hup = getattr(signal, "SIGHUP", None)
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        out.append(hup)
    return tuple(out)


#: How long a stop signal deferred at start-up (:func:`defer_stop_signals`) waits for a command's handler to take it
#: (s); then the process ends as the signal's default action would have ended it, its locks given back.  A command
#: reaches its handler within seconds (its imports, the parsing of its line); the limit only bounds a path that never
#: does.  Kept by the process's interval timer (SIGALRM), not a thread (review 26a, R4); not where there is none
#: (Windows) or where the program that called mcproton.cli.main has one running.
DEFERRED_STOP_LIMIT_S = 30.0

#: the stop signal received while deferred (at most one: a second one ends the process at once)
_deferred: list[int] = []
#: the handlers in place before :func:`defer_stop_signals` (put back by :func:`end_deferral`)
_before_deferral: dict[int, Any] = {}
#: the SIGALRM handler in place before the watchdog of a deferred signal was armed (empty: not armed)
_watchdog: dict[str, Any] = {}


def defer_stop_signals() -> None:
    """The command line's first step (mcproton.cli.main, before its heavy imports): a stop signal
    (:func:`stop_signals`) from now until a command's own handler is in place is recorded, not acted on, and
    handed to that handler as it is entered (:meth:`RaiseOnStopSignals.deliver_deferred`, the transport's
    _StopFlag), so that the command stops as it documents: ``mcproton check`` writes the record of its interruption
    and sets an earlier report aside, ``check --json`` prints it (before, a SIGTERM or SIGHUP in a command's first
    1-2.5 s, its imports, took the default action: the process ended without a word, and an earlier PASS stayed in
    --out, unmarked: audit 26 exitcodes, F2).  A second signal while one is deferred ends the process at once, as
    the command line's second signal does elsewhere; a deferred signal no handler takes within
    :data:`DEFERRED_STOP_LIMIT_S` ends it too.  Main thread only; :func:`end_deferral` undoes it, and passes on a
    signal that no handler took."""
    if threading.current_thread() is not threading.main_thread() or _before_deferral:
        return
    for s in stop_signals():
        _before_deferral[s] = signal.signal(s, _defer)


def _defer(signum: int, _frame: Any) -> None:
    """The stop signals' handler while deferred.  Python runs it in the main thread between two bytecodes, anywhere
    (inside ``Thread.start``, which holds threading's own lock, not re-entrant): it takes no lock and starts no
    thread (it started a timer thread: the process could hang for good, review 26a, R4)."""
    if _deferred:
        _end_now(signum, "received again: stopped at once")
    _deferred.append(signum)
    _arm_watchdog()


def _arm_watchdog() -> None:
    """The interval timer that ends the process where the deferred signal is not taken in time (:func:`_not_taken`);
    none without one (Windows) or where one is running already (the program's that called mcproton.cli.main)."""
    if not hasattr(signal, "setitimer") or _watchdog or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        return
    _watchdog["sigalrm"] = signal.signal(signal.SIGALRM, _not_taken)
    signal.setitimer(signal.ITIMER_REAL, DEFERRED_STOP_LIMIT_S)


def _disarm_watchdog() -> None:
    if _watchdog:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, _watchdog.pop("sigalrm"))


def _not_taken(_alarm: int, _frame: Any) -> None:
    if _deferred:
        _end_now(_deferred[0], f"received and not handled within {DEFERRED_STOP_LIMIT_S:g} s: stopped at once")


def _end_now(signum: int, how: str) -> None:
    """End the process with exit status 128 + ``signum`` (the output locks it holds removed), saying ``how``."""
    import os

    from ._io.console import write_stderr
    from ._io.lock import drop_held_locks

    drop_held_locks()
    write_stderr(f"\nmcproton: {signal.Signals(signum).name} {how}\n")
    os._exit(128 + signum)


def take_deferred(ignoring: tuple[int, ...] = ()) -> int | None:
    """The stop signal deferred at start-up (None: none), handed to the caller's handler (no longer deferred);
    one in ``ignoring`` stays deferred.  Called where the caller's handlers are in place (main thread)."""
    if not _deferred or _deferred[0] in ignoring:
        return None
    _disarm_watchdog()
    return _deferred.pop()


def end_deferral() -> int | None:
    """Put back the handlers of before :func:`defer_stop_signals`, then raise again the signal still deferred, which
    no handler took (the command ended first: ``--help``, ``check --print-levels``, a usage error), so that it does
    what it would have done without the deferral: its default action ends the process (killed by it: exit status
    128 + the signal in a shell; SIGINT raises KeyboardInterrupt), the handler of a program that called
    mcproton.cli.main receives it (before, it was dropped and the command's exit status stood: review 26a, R3).
    Returns that signal (None: none)."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        for s, h in _before_deferral.items():
            signal.signal(s, h)
    before = dict(_before_deferral)
    _before_deferral.clear()
    signum = take_deferred()   # after the handlers are back: none is recorded once it is taken
    if signum is not None and main:
        if before.get(signum) is signal.SIG_DFL:   # the process ends: say why, as nothing else will
            from ._io.console import write_stderr

            for stream in (sys.stdout, sys.stderr):   # what the command printed is not lost with the process
                try:
                    stream.flush()
                except (OSError, ValueError, AttributeError):
                    pass
            write_stderr(f"mcproton: {signal.Signals(signum).name} received as the command ended, before a handler "
                         f"of it: the process ends by the signal's default action (exit status {128 + signum})\n")
        signal.raise_signal(signum)
    return signum


class StopSignal(BaseException):
    """A stop signal (:func:`stop_signals`) raised where it arrived (a BaseException: no ``except Exception`` on
    the way keeps it; the atomic writer removes its temporary file as it passes)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class RunInterrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP: the run or the check stopped; its message says whether and where a checkpoint was
    written, and what the output folder holds; exit status ``code`` (128 + the signal).

    A BaseException, as KeyboardInterrupt is, not an Exception: a script's ``except Exception: continue`` around
    ``mcproton.check`` or ``simulate`` (so that one broken export does not stop the others) must not swallow the
    scheduler's SIGTERM and go on to the next plan (automation audit 2026-12-06, F2: it did).  Catch it by name
    (``mcproton.errors.RunInterrupted``) to record it, then re-raise or stop.

    ``results``: the beams' results where the signal came as the transport finished (every beam done), else None;
    ``kept``: whether the checkpoint of that finished run was written (``--resume`` then writes its outputs)."""

    def __init__(self, message: str, code: int, results: list[Any] | None = None, kept: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.results = results
        self.kept = kept


class RaiseOnStopSignals:
    """``with RaiseOnStopSignals():`` a stop signal (:func:`stop_signals`) raises :attr:`exc` at once (main thread
    only: elsewhere signals cannot be handled); the first one only (a further one while it unwinds is ignored), and
    none while :meth:`quiet` says so; the signals in :attr:`ignored` are ignored for the block; the handlers are put
    back after it.  ``signum``: the signal that stopped it.  For the phases that stop at once, outside the
    transport (whose _StopFlag finishes the batch in flight): ``mcproton run``'s outputs, ``mcproton check``
    outside its MC."""

    exc: type[StopSignal] = StopSignal
    ignored: tuple[int, ...] = ()

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}
        self.signum: int | None = None

    def quiet(self) -> bool:
        """Whether a signal now is ignored (e.g. the work is complete)."""
        return False

    def stopped(self, signum: int) -> None:
        """Called with the signal before :attr:`exc` is raised."""

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in stop_signals():
                self._old[s] = signal.signal(s, signal.SIG_IGN if s in self.ignored else self._handle)
        return self

    def deliver_deferred(self) -> None:
        """The first statement inside the block: a stop signal received while the command line started, before
        these handlers were in place (:func:`defer_stop_signals`), raises :attr:`exc` now, as if it came now (not
        in ``__enter__``: the block's own ``try`` must see it)."""
        if not self._old:   # not the main thread: no handlers here
            return
        signum = take_deferred(ignoring=self.ignored)
        if signum is not None:
            self._handle(signum, None)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None or self.quiet():
            return
        self.signum = signum
        self.stopped(signum)
        raise self.exc(signum)

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class RaiseUntilComplete(RaiseOnStopSignals):
    """:class:`RaiseOnStopSignals` whose signals are ignored once :attr:`complete` is set (the work is done, or its
    record of a stop is being written): ``mcproton validate``'s and ``mcproton commission``'s."""

    def __init__(self) -> None:
        super().__init__()
        self.complete = False

    def quiet(self) -> bool:
        return self.complete


#: How many times a transport's own stop handler (mcproton._run.job._StopFlag) has been entered in this process:
#: :class:`UntilTheTransport` stops raising once it moves.
_transport_handlers_entered = [0]


def transport_handler_entered() -> None:
    """Called by the transport's stop handler as it takes the signals over."""
    _transport_handlers_entered[0] += 1


class UntilTheTransport(RaiseOnStopSignals):
    """``with UntilTheTransport():`` around a run's start-up and its transport: a stop signal before the transport's
    own handler is in place raises :class:`StopSignal` (so that the locks taken are given back: before, SIGTERM's
    default action ended the process and left them, CI 2026-12-05); once the transport has taken the signals over
    it handles them, and after it this block ignores them (the outputs' own phase handles them)."""

    def __enter__(self):
        self._seen = _transport_handlers_entered[0]
        return super().__enter__()

    def quiet(self) -> bool:
        return _transport_handlers_entered[0] != self._seen


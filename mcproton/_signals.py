"""The stop signals of a run or a check, and the handlers of the phases that stop at once where a signal arrives
(``mcproton run``'s outputs, ``mcproton check`` outside its MC).  A light module (no numpy): the command line uses
it before the run is imported.  The transport's own handler, which finishes the batch in flight, is
mcproton._run.job._StopFlag."""
from __future__ import annotations

import signal
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

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None or self.quiet():
            return
        self.signum = signum
        self.stopped(signum)
        raise self.exc(signum)

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


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


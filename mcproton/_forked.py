"""Work in forked child processes (Linux): a callable run beside the parent (:class:`BackgroundProcess`), or one that
waits for a message the parent sends later (:class:`MessageProcess`).  The demo's CT writer and plane figures and
``mcproton check``'s report figures use them: each child sends back its result or its error (with the traceback),
which the parent's ``join`` returns or raises; the parent ends them on its own error or interrupt (``stop``), each
step bounded; a child holds none of the other children's pipe ends (:data:`_PARENT_ENDS`).

A fork shares the parent's arrays copy-on-write: a child needs no copy of the data it reads, only memory for what it
makes.  Fork with other Python threads running is not done (:meth:`BackgroundProcess.available`): a lock held by
such a thread at the fork would stay locked in the child."""
from __future__ import annotations

import os
import sys
import time

#: the parent's ends of the pipes of its forked helpers (a :class:`BackgroundProcess`'s answer, a
#: :class:`MessageProcess`'s message) while they are open.  A helper forked later inherits them all: a write end held
#: open in a sibling keeps a reader from ever seeing EOF, and the demo hung for good on an error (the deployment
#: audit, F1: the LET-plane child held the dose-plane child's message pipe open).  Each child closes its copies.
_PARENT_ENDS: list = []
#: how long an ended helper is waited for after SIGTERM, and again after SIGKILL (s): a process ends within
#: milliseconds of either, unless the machine is overloaded
STOP_WAIT_S = 2.0



def _child_signals(parent: int) -> None:
    """In a forked helper that its parent stops (``own_signals``): SIGINT ignored (a terminal's Ctrl-C reaches
    the whole process group; the parent ends its helpers on its own), SIGTERM and SIGHUP (unless ignored:
    ``nohup``) back to their default action, ending it: it must not run the parent's stop handlers (those of
    ``mcproton check`` record the stop for the parent's output folder) on the parent's data.  And it ends with its
    parent (pid ``parent``), even one killed with SIGKILL (:func:`_end_with_parent`)."""
    import signal

    from ._signals import stop_signals

    for s in stop_signals():
        signal.signal(s, signal.SIG_IGN if s == signal.SIGINT else signal.SIG_DFL)
    _end_with_parent(parent)


def _end_with_parent(parent: int) -> None:
    """Linux: this helper gets SIGTERM (its default action: it ends) when its parent ends, however it ends
    (``prctl(PR_SET_PDEATHSIG)``); where the parent ended before that was set, it ends now.  Before, the demo's CT and
    RT Struct writer, its parent killed, went on alone and wrote into the output folder after the parent had gone
    (the concurrency audit of 2026-12-07, F5).  Elsewhere (no prctl) nothing is done."""
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    pr_set_pdeathsig = 1   # linux/prctl.h
    if prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) == 0 and os.getppid() != parent:
        os._exit(128 + int(signal.SIGTERM))   # the parent is already gone


def _close_inherited() -> None:
    """In a freshly forked helper: close its copies of the parent's ends of the other helpers' pipes
    (:data:`_PARENT_ENDS`; the copies only, the parent's stay open)."""
    for conn in _PARENT_ENDS:
        conn.close()
    _PARENT_ENDS.clear()


def _forget_end(conn) -> None:
    """The parent closes ``conn``, one of :data:`_PARENT_ENDS`."""
    conn.close()
    if any(c is conn for c in _PARENT_ENDS):
        _PARENT_ENDS[:] = [c for c in _PARENT_ENDS if c is not conn]


class BackgroundProcess:
    """``func()`` in a forked child process (Linux; the parent must have no other Python thread): as
    :class:`mcproton.demo.Background` (a thread), but the child has its own interpreter lock, so that its Python
    work (pydicom, matplotlib) runs beside the parent's instead of taking turns with it.  The child sends back its
    result (pickled) or its error with the traceback; :meth:`join` returns or raises it (``RuntimeError`` also if
    the child died without an answer).  ``wall_s`` and ``cpu_s`` are the child's.  Whatever ``func`` makes that
    the parent needs (the UIDs of the files it wrote) comes back in its result: the parent writes nothing the child
    wrote.  ``doing`` and ``role`` name it in the messages ("writing ... failed", "the writer process");
    ``own_signals``: the child ignores SIGINT and ends on SIGTERM (:func:`_child_signals`)."""

    def __init__(self, func, what: str, *, doing: str = "writing", role: str = "writer",
                 own_signals: bool = False) -> None:
        import multiprocessing
        import warnings

        if not BackgroundProcess.available():
            raise RuntimeError(f"a forked {role} needs Linux and no other Python thread; use Background")
        self.what, self.doing, self.role, self.wall_s, self.cpu_s = what, doing, role, 0.0, 0.0
        self._answer: tuple | None = None
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        parent = os.getpid()

        def child() -> None:
            import traceback

            recv.close()
            _close_inherited()
            if own_signals:
                _child_signals(parent)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)   # a stop signal held since the fork: now its own
            t, c = time.perf_counter(), time.process_time()
            try:
                answer: tuple = ("ok", func(), "")
            except BaseException as exc:   # sent to the parent, which raises it in join
                answer = ("error", exc, traceback.format_exc())
            times = (time.perf_counter() - t, time.process_time() - c)
            try:
                try:
                    send.send((*answer, *times))
                except (BrokenPipeError, ConnectionResetError):
                    raise
                except Exception as exc:       # an answer that does not pickle: its text
                    err = answer[1] if answer[0] == "error" else exc
                    send.send(("error", RuntimeError(f"{type(err).__name__}: {err}"), answer[2], *times))
                send.close()
            except (BrokenPipeError, ConnectionResetError):
                # the parent is gone (or has stopped listening): nobody to tell; ended quietly, not with two
                # BrokenPipeError tracebacks on the terminal (the concurrency audit of 2026-12-07, F5)
                pass

        for stream in (sys.stdout, sys.stderr):   # or the child would flush the parent's buffered output again
            stream.flush()
        self._proc = ctx.Process(target=child, name=f"mcproton: {what}", daemon=True)
        # a stop signal (the parent ending its helpers as a step fails) that reached the child between the fork and
        # _child_signals ran the parent's own handler there, and the helper printed a traceback: held (blocked)
        # across the fork, in the parent until the child exists, in the child until its own handlers are set
        import signal

        from ._signals import stop_signals

        mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals()) if own_signals else set()
        try:
            with warnings.catch_warnings():  # Python >= 3.12: fork() with native (BLAS) threads: none in the child
                warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
                self._proc.start()
        except BaseException:                # no child (fork failed: EAGAIN, ENOMEM): neither end is kept open
            recv.close()
            send.close()
            raise
        finally:
            if own_signals:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        send.close()                         # the parent's copy: recv sees EOF if the child dies
        self._recv = recv
        _PARENT_ENDS.append(recv)            # not inherited by the helpers forked after this one

    @staticmethod
    def available() -> bool:
        import multiprocessing
        import threading

        return (sys.platform.startswith("linux") and threading.active_count() == 1
                and "fork" in multiprocessing.get_all_start_methods())

    def join(self, raise_error: bool = True):
        if self._answer is None:
            try:
                self._answer = self._recv.recv()
            except (EOFError, OSError):
                self._proc.join()
                self._answer = ("error", RuntimeError(f"the {self.role} process ended (exit code "
                                                      f"{self._proc.exitcode}) without an answer"), "", 0.0, 0.0)
            _forget_end(self._recv)
            self._proc.join()
        kind, value, tb, self.wall_s, self.cpu_s = self._answer
        if kind == "error":
            if raise_error:
                if tb and hasattr(value, "add_note"):
                    value.add_note(f"in the {self.role} process:\n{tb}")
                    self._answer = (kind, value, "", self.wall_s, self.cpu_s)   # the note once
                raise RuntimeError(f"{self.doing} {self.what} failed ({type(value).__name__}: {value})") from value
            return None
        return value

    def stop(self, grace_s: float = 0.0) -> None:
        """After an error or an interrupt in the parent: the child is given ``grace_s`` to finish, then ended
        (SIGTERM, then SIGKILL, each waited for :data:`STOP_WAIT_S`); never an unbounded wait.  Its answer, if any,
        is not read: the parent's error is the one reported."""
        proc = self._proc
        if grace_s > 0:
            proc.join(grace_s)
        for end in (proc.terminate, proc.kill):
            if proc.exitcode is not None:
                break
            end()
            proc.join(STOP_WAIT_S)
        _forget_end(self._recv)


class MessageProcess:
    """``draw(message)`` in a forked process (:class:`BackgroundProcess`) on what :meth:`send` sends it later,
    ``prepare()`` (matplotlib's import) run in the child meanwhile: forked early, while the parent has no other
    thread, it has the parent's arrays of that moment from the fork and is sent only what is made after it.  The
    demo's two plane figures (dose and LETd over the anatomy, ~0.3 s of matplotlib each at 2 mm; forked with the
    writer, before the plan, drawn while the parent writes the HDF5, the RT Dose and the DVH; the message: the
    planes' values) and ``mcproton check``'s report figures (forked before the gammas' worker threads start; the
    message: the structure statistics and ranges computed after the fork) are drawn so.  :meth:`join` returns or
    raises as :class:`BackgroundProcess`; a parent that joins it before sending closes the pipe, and the child
    ends without drawing; a parent that stops on an error ends it (:meth:`stop`)."""

    def __init__(self, draw, prepare, what: str, **kwargs) -> None:
        """``kwargs``: :class:`BackgroundProcess`'s (``doing``, ``role``, ``own_signals``)."""
        import multiprocessing
        import threading

        recv, self._send = multiprocessing.get_context("fork").Pipe(duplex=False)
        send = self._send
        _PARENT_ENDS.append(send)   # closed in this helper's child and in those forked after it

        def child():
            send.close()
            box: dict = {}

            def read() -> None:              # at once, so that the parent's send never waits for the import
                try:
                    box["message"] = recv.recv()
                except EOFError:
                    box["message"] = None

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            prepare()
            reader.join()
            return None if box["message"] is None else draw(box["message"])

        try:
            self.process = BackgroundProcess(child, what, **kwargs)
        except BaseException:   # no child (no fork here, or it failed): the pipe closed, not left among the ends
            _forget_end(send)
            raise
        finally:
            recv.close()
        self._sent = False

    def send(self, message) -> None:
        if not self._sent:
            self._sent = True
            try:
                self._send.send(message)
            finally:
                _forget_end(self._send)

    def join(self, raise_error: bool = True):
        if not self._sent:
            self._sent = True
            _forget_end(self._send)
        return self.process.join(raise_error)

    def stop(self) -> None:
        """After an error or an interrupt in the parent: the child ended at once (it writes nothing before its
        message) and its pipe closed (:meth:`BackgroundProcess.stop`)."""
        self._sent = True
        _forget_end(self._send)
        self.process.stop()

"""Messages and progress on stderr (and the summary on stdout) that can never stop a run.

``mcproton run ... 2>&1 | tee run.log`` is the usual way to keep a log of a long run; Ctrl-C in the terminal
reaches ``tee`` too, which dies, and so does the reader of ``| head`` once it has its lines, or an ssh session's
pipe when the connection drops.  A write to such a stream fails (BrokenPipeError: Python ignores SIGPIPE), and a
log file on a full disk fails as well (ENOSPC, EFBIG).  Before, that failure ended the run as an ordinary error:
the signal watcher's thread died, the next progress line raised in the main thread, no checkpoint was written and
the exit status was 1 (the long-runs audit 2, F1).  Here a write that fails is dropped and the stream is silenced
for the rest of the process (its file descriptor pointed at /dev/null, so that buffered text, C-level writes and
Python's flush at exit do not fail again): the run goes on, writes its checkpoint and outputs, and its exit status
says what happened.

A stream that is closed when the process starts (``mcproton run ... 2>&-``, a daemon or process manager that
closes it) is treated the same way, as a stream that drops everything: Python sets ``sys.stderr`` (or
``sys.stdout``) to None there, and before, the first message raised AttributeError (exit 1, no message, nothing
written), or, with stdout closed, the JSON summary of a finished run did (exit 4, "internal error"; the
environment audit 19, F1).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO

#: what a failed write to a closed or broken stream raises: OSError (EPIPE, EIO of a closed terminal, ENOSPC,
#: EFBIG) or ValueError ("I/O operation on closed file")
_WRITE_ERRORS = (OSError, ValueError)


def reopen_closed_std_fds() -> None:
    """Point each of the file descriptors 0, 1 and 2 that is not open at /dev/null.  Otherwise the next file
    the process opens takes that number: a C library's message (libgomp's "Invalid value for environment variable
    OMP_NUM_THREADS") or a compiler run as a subprocess, writing to fd 2, would write into that file."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:   # EBADF: closed
            try:
                null = os.open(os.devnull, os.O_RDWR)   # the lowest free number: ``fd`` (the lower ones are open)
            except OSError:
                continue
            if null != fd:
                _onto(null, fd)


def silence(stream: Any) -> None:
    """Point ``stream``'s file descriptor at /dev/null (where it has one): later writes, the text still in its
    buffer and the interpreter's flush at exit then succeed without output."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (*_WRITE_ERRORS, AttributeError):
        return
    _onto(null, fd)


def _onto(null: int, fd: int) -> None:
    """Make ``fd`` a copy of the open /dev/null descriptor ``null`` (where the system allows), then close ``null``."""
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def _escape(c: int) -> str:
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(c) or (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")


#: Control characters (C0, DEL, C1) and the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069, which
#: reorder what a terminal shows), each as its escape (\x1b, \n, \u202e): a name or file name from a DICOM file or a
#: folder is printed as these (audit 17 hostile F10: a BeamName holding "ESC ]0;pwned BEL" set the terminal's title,
#: a plan file named "RP<newline>mcproton: check PASSED x.dcm" printed a line saying PASSED in a check that failed)
_CONTROLS = {c: _escape(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
#: the same, but line breaks and tabs kept: what stderr passes on under the command line (the messages' own lines)
_CONTROLS_IN_TEXT = {c: e for c, e in _CONTROLS.items() if c not in (9, 10, 13)}


def printable(text: object) -> str:
    """``str(text)`` with every control character escaped (:data:`_CONTROLS`; newlines too): for a name or path
    from an input (a beam, an ROI, a file) inside a one-line message."""
    return str(text).translate(_CONTROLS)


def printable_lines(text: object) -> str:
    """``str(text)`` with the control characters escaped but line breaks and tabs (:data:`_CONTROLS_IN_TEXT`): for
    a name from an input in a text of several lines, and in an HTML page, which may not hold C0 or C1 controls
    (the check's check.html kept a PatientName's or ROI name's ESC: the 29th audit's untrusted inputs, F6)."""
    return str(text).translate(_CONTROLS_IN_TEXT)


class DroppingStream:
    """A text stream that passes everything to ``stream`` but drops a ``write``/``flush`` that fails with
    OSError or ValueError, silencing the stream (:func:`silence`) and dropping every later write.  ``broken``
    holds the first error (None while the stream works)."""

    def __init__(self, stream: TextIO, *, escape_controls: bool = False) -> None:
        self._stream = stream
        self.broken: BaseException | None = None
        #: escape the control characters other than line breaks and tabs (:data:`_CONTROLS_IN_TEXT`): an escape
        #: sequence from an input's name, wherever it is printed, does not act on the terminal
        self._table = _CONTROLS_IN_TEXT if escape_controls else None
        #: put the time of day (:func:`time_of_day`) in front of every line written (:func:`stamped_stderr`)
        self.stamps_lines = False
        self._line_start = True

    def _stamped(self, text: str) -> str:
        """``text`` with ``[HH:MM:SS] `` in front of each line that begins in it with something written (an empty
        line stays empty): where :attr:`stamps_lines`."""
        stamp = _clock()
        out = []
        for part in text.splitlines(keepends=True):
            if self._line_start and part not in ("\n", "\r\n"):
                out.append(stamp)
            out.append(part)
            self._line_start = part.endswith("\n")
        return "".join(out)

    def _fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
            silence(self._stream)

    def write(self, text: str) -> int:
        if self.broken is None:
            try:
                shown = text.translate(self._table) if self._table is not None else text
                self._stream.write(self._stamped(shown) if self.stamps_lines and shown else shown)
                return len(text)
            except _WRITE_ERRORS as exc:
                self._fail(exc)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.broken is None:
            try:
                self._stream.flush()
            except _WRITE_ERRORS as exc:
                self._fail(exc)

    def __getattr__(self, name: str) -> Any:   # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


def lost_output_error(stream: Any) -> BaseException | None:
    """The error that made the :class:`DroppingStream` ``stream`` drop what was written to it (after a last flush),
    unless it is a broken pipe (``| head``: the reader has what it wants) or the stream is none: the error that a
    command's status must report (a summary on stdout redirected to a full disk is lost or cut short)."""
    import errno

    if not isinstance(stream, DroppingStream):
        return None
    stream.flush()
    exc = stream.broken
    if exc is None or isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) == errno.EPIPE:
        return None
    return exc


def write_stderr(text: str) -> None:
    """Write ``text`` to stderr and flush; a failure (a broken pipe, a closed terminal, a full disk) drops the text
    and never raises: a progress line or a message must not stop the run.  Under the command line stderr is a
    :class:`DroppingStream`, which silences itself on a failure; in a script (``simulate``'s progress) only the
    text is dropped: the script's stderr is the script's, not pointed at /dev/null for the rest of its session (a
    review of 2026-12-05)."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (*_WRITE_ERRORS, AttributeError):   # AttributeError: sys.stderr is None (closed at start)
        pass


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (False where it is closed)."""
    try:
        return bool(sys.stderr.isatty())
    except (*_WRITE_ERRORS, AttributeError):
        return False


def time_of_day(tty: bool | None = None) -> str:
    """``"[05:21:09] "``, the local time of day, where stderr is not a terminal (``tty``; default: whether stderr is
    one): the start of a step line or a progress line in a log file or a pipe, so that the log of a night's run or
    batch says when each patient, phase and beam began and which was slow (the progress-log audit 26, F6: no line had
    a time, and a stalled check's log could not say since when).  "" on a terminal, whose reader watches it, and
    where stderr puts the time in front of every line itself (:func:`stamped_stderr`: ``mcproton run`` and
    ``mcproton check``)."""
    if getattr(sys.stderr, "stamps_lines", False) is True or (stderr_is_terminal() if tty is None else tty):
        return ""
    return _clock()


def _clock() -> str:
    """``"[05:21:09] "``: the local time of day as every dated log line starts (:func:`time_of_day`,
    :meth:`DroppingStream._stamped`)."""
    import time

    return time.strftime("[%H:%M:%S] ")


def log_line(message: str) -> None:
    """One line of a command's log on stderr (:func:`write_stderr`: flushed, never raising), the time of day in
    front in a log file (:func:`time_of_day`): the default ``log`` of ``mcproton run``'s and ``mcproton check``'s
    messages.  A ``log`` callable given from Python gets the messages as they are.  A line is one line: its control
    characters, line breaks among them, are escaped (:func:`printable`): a newline in a patient's folder name made a
    line of its own in ``check --batch``'s log that read as another patient's verdict (untrusted-input audit 29,
    F5)."""
    write_stderr(time_of_day() + printable(message) + "\n")


@contextmanager
def stamped_stderr(on: bool = True) -> Iterator[None]:
    """For the block, every line written to stderr starts with the time of day (``[05:21:09] ``) where stderr is the
    command line's :class:`DroppingStream` and not a terminal (``on``: the command is ``mcproton run`` or ``mcproton
    check``): its warnings, notes, the backend line, the signal messages and errors as well as its step and progress
    lines (review b of audit 26, R5: only the lines of :func:`log_line` and the progress bar had it, so one log mixed
    dated and undated lines, and the warning a night's log most needs dated, a checkpoint failure or the one-day
    long-run warning, had none).  Nothing changes on a terminal, or in a script (its stderr is its own)."""
    err = sys.stderr
    if not (on and isinstance(err, DroppingStream) and not stderr_is_terminal()):
        yield
        return
    err.stamps_lines = True
    try:
        yield
    finally:
        err.stamps_lines = False


@contextmanager
def dropping_std_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as :class:`DroppingStream` for the block (the command line: every
    ``print`` of a message, a note, a warning or the JSON summary), restored after it; stderr escapes control
    characters other than line breaks and tabs (stdout carries JSON, which escapes them itself).  A stream that
    Python found closed at start (None) becomes one on /dev/null for the block: everything written to it is
    dropped, and the run goes on with its own exit status."""
    old = sys.stdout, sys.stderr
    with ExitStack() as closing:
        def usable(stream: TextIO | None) -> TextIO:
            if stream is not None:
                closing.callback(_replacing_unencodable(stream))
                return stream
            return closing.enter_context(open(os.devnull, "w", encoding="utf-8", errors="backslashreplace"))

        sys.stdout, sys.stderr = (DroppingStream(usable(old[0])),   # type: ignore[assignment]
                                  DroppingStream(usable(old[1]), escape_controls=True))
        try:
            yield
        finally:
            sys.stdout, sys.stderr = old


#: the encodings that hold every character: a stream in one of them is left as it is (Linux's UTF-8 output unchanged)
_ENCODE_ALL = frozenset({"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
                         "utf-32-be"})


def _replacing_unencodable(stream: TextIO) -> Callable[[], None]:
    """Where ``stream`` encodes in a code page that lacks characters (Windows' ANSI code page, cp1252, for a stdout
    redirected to a file or a pipe; a Latin-1 locale) and raises on them (errors "strict"), make it write them as
    backslash escapes (``\\u0159``) instead, as Python's stderr does; returns what puts its errors back.  Before, the
    first name outside the code page (a patient folder "Dvořák", a user folder "C:\\Users\\Łukasz") raised
    UnicodeEncodeError, which silenced stdout for the rest of the process: ``check --batch`` lost its verdict lines and
    a FAIL exited 3, not 1 (the portability audit 27, F5).  A UTF-8 stream is left as it is."""
    import codecs

    try:
        encoding = codecs.lookup(stream.encoding).name
        errors = stream.errors
    except (AttributeError, LookupError, TypeError, ValueError):
        return lambda: None
    if encoding in _ENCODE_ALL or errors != "strict":
        return lambda: None
    try:
        stream.reconfigure(errors="backslashreplace")   # type: ignore[attr-defined]
    except (*_WRITE_ERRORS, AttributeError):
        return lambda: None

    def restore() -> None:
        try:
            stream.reconfigure(errors=errors)   # type: ignore[attr-defined]
        except (*_WRITE_ERRORS, AttributeError):
            pass

    return restore

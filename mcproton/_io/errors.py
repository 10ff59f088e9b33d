"""Exceptions raised for bad input files (DICOM, calibrations, beam models).

All derive from ``ValueError`` so that callers that catch ``ValueError`` keep working; catch the specific
class to tell input problems apart from programming errors.
"""
from __future__ import annotations

import contextlib
import difflib
import threading
from collections.abc import Iterator


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to a misspelt ``word``, or "" when none is close: the
    suggestion of every refusal of an unknown key (the config, the beam model's TOML)."""
    m = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else ""


class InputDataError(ValueError):
    """An input file or value is malformed or unsupported; the message says what and what to do."""


class DicomInputError(InputDataError):
    """A DICOM file or series cannot be used (unreadable, inconsistent, unsupported)."""


class CalibrationError(InputDataError):
    """A CT (HU) calibration file is malformed or inconsistent."""


class BeamModelError(InputDataError):
    """A beam-model file is malformed, or a requested energy / accessory is not in the model."""


class CheckInputError(InputDataError):
    """The inputs of a check cannot be matched (the message says what and what to do).

    ``single_options``: the options of a single check (--plan, --dose, --ct, --ct-series, --struct) that are this
    refusal's way out, which ``check --batch`` does not take: the batch follows the patient's refusal with the
    command that checks the patient alone with them (mcproton/_check/api.py ``alone_advice``).  They are carried by
    the refusal itself, so that a patient's row names only its own refusal's options (the review c of audit 27, R1:
    options recorded on the patient before anything was refused were named after every later refusal)."""

    def __init__(self, message: str = "", *, single_options: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.single_options = tuple(single_options)


class ResultRefused(InputDataError, RuntimeError):
    """A finished run's result is refused (no dose scored, most of the beam missed or left the grid): the beam or the
    phantom given, an input (exit status 2); also a RuntimeError, as it was before 2026-12-06."""


class McprotonEnvironmentError(RuntimeError):
    """The machine or the output, not the input, stopped the run or the check: the output folder busy (another run
    writes it), full or read-only, no GPU or CuPy for ``backend cuda``, no C++ compiler, a scheduler unreachable.
    Exit status 3 on the command line (mcproton.errors.EXIT_ENVIRONMENT): retry later or fix the machine; the
    plan's export is not at fault (automation audit 2026-12-06, F3: these exited 2, as a refused input)."""


class OutputWriteError(McprotonEnvironmentError):
    """An output could not be written (a full disk, a quota, a read-only file system, no permission); the message
    names the file, why, and where what was computed is kept (a rescue copy, the checkpoint), if anywhere."""

    def __init__(self, message: str, *, no_space: bool = False) -> None:
        super().__init__(message)
        #: whether the cause is a full disk or quota (or a read-only file system): the next output there fails too
        self.no_space = no_space


class BackendUnavailableError(McprotonEnvironmentError):
    """The requested compute backend is not available here (``cuda``: no CuPy, no GPU, or not that device)."""


class PhaseMemoryError(MemoryError):
    """Out of memory in a phase that is known (reading the CT's pixels): the message says which, how large the input
    is and what to do, where the command line's general advice (coarser voxels) would not help (the hostile-input
    audit, F4: a CT read that ran out of memory was called "truncated/corrupted")."""


class McprotonInternalError(RuntimeError):
    """mcproton contradicted itself (a bug): exit status 4 (mcproton.errors.EXIT_INTERNAL); please report it."""


class McprotonWarning(UserWarning):
    """A warning of mcproton's own (an input it reads with a caveat, a setting it assumed): the command line prints
    these as one ``mcproton: warning:`` line; filter them with ``warnings.filterwarnings(..., McprotonWarning)``."""


class McprotonRuntimeWarning(McprotonWarning, RuntimeWarning):
    """A McprotonWarning about the data or the result rather than the call (also a RuntimeWarning)."""


#: Per thread, the lists of the :func:`recording_warnings` blocks open in it, outermost first: a block records the
#: warnings its own thread issues (two checks run from two threads keep their own; mcproton's worker threads, such
#: as the CT reader's, issue none)
_LOCAL = threading.local()


def _open_blocks() -> list[list[str]]:
    blocks = getattr(_LOCAL, "blocks", None)
    if blocks is None:
        blocks = _LOCAL.blocks = []
    return blocks


def warn(message: str, category: type[McprotonWarning] = McprotonWarning, stacklevel: int = 1) -> None:
    """Issue one of mcproton's warnings (``warnings.warn``; ``stacklevel`` as there, counted from the caller) and
    add its message to every :func:`recording_warnings` block open in this thread, whatever the warning filters
    show: a signed report (``mcproton check``) and a run's outputs keep what was said during them.  Inside
    :func:`muted_warnings` (in this thread) it says and records nothing (it is kept where that block asks)."""
    import warnings

    if getattr(_LOCAL, "muted", 0):
        kept = getattr(_LOCAL, "kept", None)
        if kept is not None:
            kept.append((str(message), category))
        return
    for rec in _open_blocks():
        rec.append(str(message))
    warnings.warn(message, category, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def muted_warnings(kept: list[tuple[str, type[McprotonWarning]]] | None = None) -> Iterator[None]:
    """``with muted_warnings():`` mcproton's warnings (:func:`warn`) issued in this thread inside the block are
    neither shown nor recorded: for a pass over inputs whose warnings are said later (the CT's headers read to size
    a run's dose grid before the CT itself is read: mcproton/_io/ct.py ct_series_grid), so that each is said once.
    ``kept``: a list that receives each muted warning's (message, category), for the caller to say them later."""
    before = getattr(_LOCAL, "kept", None)
    _LOCAL.muted = getattr(_LOCAL, "muted", 0) + 1
    _LOCAL.kept = kept
    try:
        yield
    finally:
        _LOCAL.muted -= 1
        _LOCAL.kept = before


class recording_warnings:
    """``with recording_warnings() as said:``: ``said`` is the list of the messages of the mcproton warnings issued
    (by :func:`warn`) in this thread inside the block, in order, each once per issue: Python's own filters show a
    warning once per place and may hide it, and the record must not depend on them.  Blocks nest: each keeps its
    own list (an inner block's warnings are in the outer one's too)."""

    def __enter__(self) -> list[str]:
        self.said: list[str] = []
        _open_blocks().append(self.said)
        return self.said

    def __exit__(self, *exc: object) -> None:
        blocks = _open_blocks()
        for i in range(len(blocks) - 1, -1, -1):   # this block's own list (by identity: two lists may be equal)
            if blocks[i] is self.said:
                del blocks[i]
                break


def recorded() -> list[str]:
    """What the innermost :func:`recording_warnings` block open in this thread has recorded so far (a copy; []
    outside one)."""
    blocks = _open_blocks()
    return list(blocks[-1]) if blocks else []


def said_already(text: str, *, at_start: bool = False) -> bool:
    """Whether a warning holding ``text`` (``at_start``: beginning with it) was recorded by a
    :func:`recording_warnings` block open in this thread (the outermost holds what the inner ones hold): a writer
    that would repeat what a reader said earlier in the same call keeps silent (one fact, one warning), and nothing
    is kept once the call's block closes."""
    blocks = _open_blocks()
    return bool(blocks) and any((m.startswith(text) if at_start else text in m) for m in blocks[0])


def said_in_this_call(text: str, said: set, key: object = None, *, at_start: bool = False) -> bool:
    """Whether a warning holding ``text`` (``at_start``: beginning with it) is not to be said again now: in a
    :func:`recording_warnings` block open in this thread (a run's, a check's, a ``plan_to_beams`` call's), when the
    outermost block open has recorded it (:func:`said_already`), so that every run's and check's record holds it,
    whatever an earlier one in this process said; outside one, when ``key`` (default ``text``) is in ``said``, the
    caller's set of what it said (per process, or per beam model).  ``key`` is added to ``said`` either way.  The
    rule of the missing glyphs (mcproton/plots.py ``_glyph_said``); before 2026-12-07 the OpenMP warnings and the beam
    model's "above 250 MeV" were said once per process or model, so a second run's or check's record lacked them
    (in-process audit 25, F2 and F4)."""
    k = text if key is None else key
    before = k in said
    said.add(k)
    return said_already(text, at_start=at_start) if _open_blocks() else before


@contextlib.contextmanager
def kept_apart(kept: list[tuple[str, type[McprotonWarning]]]) -> Iterator[None]:
    """``with kept_apart(kept):`` mcproton's warnings issued in this thread inside the block are neither shown nor
    recorded, each appended to ``kept`` as (message, category), as if no run or check were open (:func:`said_already`
    finds nothing inside it): for a reading whose result is cached, so that everything it would say is kept with it
    and said by each run or check that uses it (:func:`say_unsaid`), whatever the call that read it first had said
    before it (in-process audit 25, F1: a structure set read from the cache said nothing, so a second check's report
    lacked its warnings)."""
    blocks = _open_blocks()
    _LOCAL.blocks = []
    try:
        with muted_warnings(kept):
            yield
    finally:
        _LOCAL.blocks = blocks


def in_a_call() -> bool:
    """Whether a :func:`recording_warnings` block (a run's, a check's) is open in this thread."""
    return bool(_open_blocks())


def say_unsaid(kept: list[tuple[str, type[McprotonWarning]]], stacklevel: int = 1, *,
               heads: tuple[str, ...] = ()) -> None:
    """Say each warning of ``kept`` (:func:`kept_apart`: (message, category)) that the :func:`recording_warnings`
    block open in this thread has not recorded (all of them outside one); ``stacklevel`` as :func:`warn`'s.  A
    message beginning with one of ``heads`` counts as said where any recorded one begins with that head (a fact said
    once per run or check, whichever reader said it: the character set assumed for a file)."""
    for message, category in kept:
        head = next((h for h in heads if message.startswith(h)), message)
        if not said_already(head, at_start=True):
            warn(message, category, stacklevel=stacklevel + 1)


def records_warnings(fn):
    """Decorator: ``fn`` runs inside its own :func:`recording_warnings` block, and reads it with :func:`recorded`
    (``mcproton.check`` puts what was said during it into its report)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with recording_warnings():
            return fn(*args, **kwargs)

    return wrapper

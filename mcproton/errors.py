"""mcproton's exceptions and exit statuses, for scripts: what to catch, and what each exit status of ``mcproton run``
and ``mcproton check`` means (docs/check.md "Exit statuses").

=====  ======================  =============================================================================
 exit  ``status`` (JSON)       meaning, and what a script does
=====  ======================  =============================================================================
 0     ``pass``                the check passes every action level (``run``: the run finished)
 1     ``fail``                the check fails an action level: the report says which (a physicist looks)
 2     ``refused``             bad input or options: the export, the config, an option (fix the input)
 3     ``environment_error``   the machine or the output: the output folder busy, full, read-only or not
                               writable (no permission), no GPU/CuPy, no compiler, a scheduler unreachable
                               (retry, or fix the machine)
 4     ``internal_error``      mcproton contradicted itself: a bug, also numpy's, scipy's or matplotlib's
                               ValueError or RuntimeError in its computation (:func:`is_programming_error`;
                               rerun with --debug and report it)
 128+n ``interrupted``         stopped by signal n (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)
=====  ======================  =============================================================================

``mcproton check --batch`` exits with the worst status of its patients (the largest of 0-4: an internal error
before an environment error before a refusal before a FAIL); a signal stops the batch with 128 + n.  Before
2026-12-06 an internal error exited 1 (a FAIL's status), a full or busy output folder and a missing GPU 2 (a refused
input's), and a batch 1 for everything (automation audit, F3).

The exceptions (every refusal is a ``ValueError``, every environment error a ``RuntimeError``, as before):

* :class:`InputDataError` (and its :class:`DicomInputError`, :class:`CalibrationError`, :class:`BeamModelError`,
  :class:`CheckInputError`), :class:`ConfigError`: a refused input (exit 2);
* :class:`McprotonEnvironmentError` (and its :class:`OutputLockedError`, :class:`OutputLockError`,
  :class:`OutputWriteError`, :class:`BackendUnavailableError`): the machine or the output (exit 3);
* :class:`McprotonInternalError`: a bug (exit 4);
* :class:`RunInterrupted`: a stop signal during ``check`` or ``mcproton run`` (exit ``code``).  A ``BaseException``,
  as ``KeyboardInterrupt`` is: ``except Exception`` does not swallow a scheduler's SIGTERM.  ``simulate`` installs
  no signal handlers (library code in the caller's process): Ctrl-C raises ``KeyboardInterrupt`` after the batch in
  flight, and SIGTERM keeps its default action (docs/check.md).

:func:`exit_status` and :func:`status_of` map any exception to the table above.
"""
from __future__ import annotations

import errno

from ._io.errors import BackendUnavailableError, BeamModelError, CalibrationError, CheckInputError, \
    DicomInputError, InputDataError, McprotonEnvironmentError, McprotonInternalError, McprotonRuntimeWarning, \
    McprotonWarning, OutputWriteError
from ._io.lock import OutputLockedError, OutputLockError
from ._signals import RunInterrupted
from .config import ConfigError

__all__ = ["EXIT_PASS", "EXIT_FAIL", "EXIT_REFUSED", "EXIT_ENVIRONMENT", "EXIT_INTERNAL", "exit_status", "status_of",
           "InputDataError", "DicomInputError", "CalibrationError", "BeamModelError", "CheckInputError",
           "ConfigError", "McprotonEnvironmentError", "OutputLockedError", "OutputLockError", "OutputWriteError",
           "BackendUnavailableError", "McprotonInternalError", "RunInterrupted", "McprotonWarning",
           "McprotonRuntimeWarning"]

#: the exit statuses (module docstring)
EXIT_PASS, EXIT_FAIL, EXIT_REFUSED, EXIT_ENVIRONMENT, EXIT_INTERNAL = 0, 1, 2, 3, 4

#: the errnos of an OSError that are the machine's, not the input's: a full disk, a quota, the file-size limit, a
#: read-only file system, a busy device, an I/O error
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EBUSY, errno.EIO})


def status_of(exc: BaseException) -> str:
    """What ``exc`` stopping a run or a check means: "refused", "environment_error", "internal_error" or
    "interrupted" (the module's table; the ``status`` of a check.json or batch.json row that records it)."""
    from ._io.atomic import unwrap_os_error

    if isinstance(exc, (RunInterrupted, KeyboardInterrupt)):
        return "interrupted"
    if isinstance(exc, McprotonInternalError):
        return "internal_error"
    err = unwrap_os_error(exc)
    if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:   # the output's name given: an input
        return "refused"
    if isinstance(exc, (McprotonEnvironmentError, MemoryError)):
        return "environment_error"
    if isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS:
        return "environment_error"
    if is_programming_error(exc):   # numpy's "zero-size array to reduction operation", a dict changed size, ...
        return "internal_error"
    if isinstance(exc, (ValueError, OSError)):   # the input, an option, a missing or unreadable input file
        return "refused"
    if isinstance(exc, RuntimeError):   # a compiler, a kernel cache, a scheduler, an optional package missing
        return "environment_error"
    return "internal_error"


#: the packages whose ValueError, RuntimeError or errno-less OSError, raised inside them with no reader of input
#: files on the way (:data:`_READER_MODULES`, :func:`_reads_inputs`), is a programming error: a shape mismatch, a
#: reduction over an empty array, an index past an axis (Python's ``collections`` as well)
_LIBRARY_BUG_PACKAGES = frozenset({"numpy", "scipy", "matplotlib", "collections", "_collections_abc"})
#: the modules that read input files: an error raised with one of them on the way is the input's (a truncated
#: DICOM, HDF5 or TOML file), whatever package raised it
_READER_PACKAGES = frozenset({"pydicom", "h5py", "tomllib", "tomli", "PIL", "csv", "json"})
#: mcproton's own modules that read input files (every one of mcproton._io, the config, the DICOM and the phantoms'
#: readers), and the prefixes of the functions that do so elsewhere (``load_beam_model``, ``read_idd_csv``)
_READER_MODULES = ("mcproton._io.", "mcproton.config", "mcproton.dicom", "mcproton.settings")
_READER_FUNCTIONS = ("load", "_load", "read", "_read", "parse", "_parse")
#: the RuntimeErrors of Python's builtins that only a programming error raises
_BUILTIN_BUG_MESSAGES = ("changed size during iteration", "generator raised StopIteration")


def _module_of(frame: object) -> str:
    return str(getattr(frame, "f_globals", {}).get("__name__", ""))


def _reads_inputs(tb: object) -> bool:
    """Whether the traceback ``tb`` passes through a reader of input files (:data:`_READER_PACKAGES`,
    :data:`_READER_MODULES`, a function named ``load...``/``read...``/``parse...``)."""
    while tb is not None:
        frame = getattr(tb, "tb_frame")
        name = _module_of(frame)
        if (name.split(".")[0] in _READER_PACKAGES or name.startswith(_READER_MODULES)
                or frame.f_code.co_name.startswith(_READER_FUNCTIONS)):
            return True
        tb = getattr(tb, "tb_next")
    return False


def raised_outside_mcproton(exc: BaseException) -> bool:
    """Whether ``exc`` is none of mcproton's own exceptions and was raised outside mcproton's code (a library's
    or Python's own error, whose message was not written for the user): the command line adds "rerun with --debug
    for the traceback" to its line."""
    if type(exc).__module__.split(".")[0] == "mcproton":
        return False
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return not _in_mcproton(tb.tb_frame)


def _in_mcproton(frame: object) -> bool:
    """Whether ``frame`` runs mcproton's code: a module of the package (its phantoms and validation among them), or
    a file of it run as ``__main__`` (``python -m mcproton.cli``)."""
    import os

    if _module_of(frame).split(".")[0] == "mcproton":
        return True
    name = os.path.abspath(getattr(frame, "f_code").co_filename)
    return name.startswith(os.path.dirname(os.path.abspath(__file__)) + os.sep)


def is_programming_error(exc: BaseException) -> bool:
    """Whether ``exc``, a ValueError, RuntimeError or OSError that is none of mcproton's own classes (those say what
    they are), is a programming error (exit status 4, "internal_error"), not a refused input or the machine: raised
    inside numpy, scipy, matplotlib or Python's ``collections`` (:data:`_LIBRARY_BUG_PACKAGES`; an OSError only
    without an errno, so never a failed system call) with no reader of input files on the way (:func:`_reads_inputs`:
    a truncated DICOM or HDF5 file that numpy cannot reshape stays a refused input), or a RuntimeError that only a
    programming error raises ("dictionary changed size during iteration"), or a ValueError raised by an operator on
    arrays (numpy's "operands could not be broadcast together": :func:`_raised_by_an_operator`).  Before, every
    ValueError and OSError was a refused input (2) and every RuntimeError the machine's (3): numpy's "zero-size array
    to reduction operation" after the MC recorded the patient as "refused", with no hint to report it (audit 26
    exitcodes, F4)."""
    if type(exc).__module__.split(".")[0] == "mcproton" or not isinstance(exc, (ValueError, RuntimeError, OSError)):
        return False
    if isinstance(exc, OSError) and exc.errno is not None:
        return False
    tb = exc.__traceback__
    if tb is None or _reads_inputs(tb):
        return False
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _BUILTIN_BUG_MESSAGES):
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return _module_of(tb.tb_frame).split(".")[0] in _LIBRARY_BUG_PACKAGES or (
        isinstance(exc, ValueError) and _raised_by_an_operator(tb))


#: the instructions of an operator, a subscript or a truth test (CPython's names): a ValueError raised by one is
#: numpy's "operands could not be broadcast together", "the truth value of an array ... is ambiguous", ...
_OPERATOR_OPS = ("BINARY_", "INPLACE_", "UNARY_", "STORE_SUBSCR", "DELETE_SUBSCR", "COMPARE_OP", "CONTAINS_OP",
                 "POP_JUMP_", "JUMP_IF_", "TO_BOOL")


def _raised_by_an_operator(tb: object) -> bool:
    """Whether the innermost frame of the traceback ``tb`` raised at an operator, a subscript or a truth test (an
    array's, as ``a + b``; not a ``raise`` statement nor a call: ``float(text)`` of an input keeps its status)."""
    import dis

    try:
        code = getattr(tb, "tb_frame").f_code
        name = dis.opname[code.co_code[getattr(tb, "tb_lasti")]]
    except (AttributeError, IndexError, TypeError):
        return False
    return name.startswith(_OPERATOR_OPS)


def exit_status(exc: BaseException) -> int:
    """The exit status of the command line for ``exc`` (the module's table)."""
    status = status_of(exc)
    if status == "interrupted":
        return int(getattr(exc, "code", 130))
    return {"refused": EXIT_REFUSED, "environment_error": EXIT_ENVIRONMENT}.get(status, EXIT_INTERNAL)

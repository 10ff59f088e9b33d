"""mcproton's exceptions and exit statuses, for scripts: what to catch, and what each exit status of ``mcproton run``
and ``mcproton check`` means (docs/check.md "Exit statuses").

=====  ======================  =============================================================================
 exit  ``status`` (JSON)       meaning, and what a script does
=====  ======================  =============================================================================
 0     ``pass``                the check passes every action level (``run``: the run finished)
 1     ``fail``                the check fails an action level: the report says which (a physicist looks)
 2     ``refused``             bad input or options: the export, the config, an option (fix the input)
 3     ``environment_error``   the machine or the output: the output folder busy, full or read-only, no
                               GPU/CuPy, no compiler, a scheduler unreachable (retry, or fix the machine)
 4     ``internal_error``      mcproton contradicted itself: a bug (rerun with --debug and report it)
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
    if isinstance(exc, (ValueError, OSError)):   # the input, an option, a missing or unreadable input file
        return "refused"
    if isinstance(exc, RuntimeError):   # a compiler, a kernel cache, a scheduler, an optional package missing
        return "environment_error"
    return "internal_error"


def exit_status(exc: BaseException) -> int:
    """The exit status of the command line for ``exc`` (the module's table)."""
    status = status_of(exc)
    if status == "interrupted":
        return int(getattr(exc, "code", 130))
    return {"refused": EXIT_REFUSED, "environment_error": EXIT_ENVIRONMENT}.get(status, EXIT_INTERNAL)

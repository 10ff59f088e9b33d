"""The gamma's guard of the caller's logging leaves other threads' logging alone (review of 2026-12-07, R3).

In-process audit 25, F3 (tests/check/test_check_in_one_process.py): pymedphys's gamma logs through the root
logger's module functions (``logging.info``), which call ``logging.basicConfig()``.  Its first fix put a NullHandler
and a filter on the root logger while any gamma ran: a WARNING of another thread (a notebook's main thread, while a
check runs in the background) went to that NullHandler instead of ``logging.lastResort`` (0 of 20 shown), a
``logging.basicConfig(filename=...)`` made meanwhile did nothing, and a child forked meanwhile kept both for good.
Now pymedphys's calls go, in the gamma's thread only, to a logger of their own; the root logger is not touched."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("pymedphys")

from mcproton._check import compare  # noqa: E402
from mcproton._check.compare import _pymedphys_logging_kept_in, gamma_3d_multi  # noqa: E402


@pytest.fixture
def bare_root():
    """The root logger, put back after the test; :func:`_bare` takes its handlers (pytest's own, added for each
    phase of a test) and filters off in the test itself.  ``logging.lastResort`` writes to the ``sys.stderr`` of the
    moment (capsys)."""
    root = logging.getLogger()
    kept = root.handlers[:], root.level, root.filters[:]
    try:
        yield root
    finally:
        for h in root.handlers:
            if h not in kept[0]:
                h.close()
        root.handlers[:], root.filters[:] = kept[0], kept[2]
        root.setLevel(kept[1])


def _bare(root: logging.Logger) -> None:
    """No handler and no filter, at WARNING: a script that configured no logging."""
    root.handlers[:], root.filters[:] = [], []
    root.setLevel(logging.WARNING)


@contextlib.contextmanager
def _gamma_in_another_thread():
    """A thread inside the guard (as during a gamma) for the block: started in the test itself, after
    :func:`_bare` (the guard's first form looked at the root logger's handlers when a gamma began)."""
    inside, done = threading.Event(), threading.Event()

    def hold():
        with _pymedphys_logging_kept_in():
            inside.set()
            done.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(30)
    try:
        yield
    finally:
        done.set()
        t.join(30)


def test_another_threads_warning_reaches_last_resort_during_a_gamma(bare_root, capsys):
    """Before: the root logger held a NullHandler, so the record went nowhere (not to stderr)."""
    _bare(bare_root)
    with _gamma_in_another_thread():
        logging.getLogger("user").warning("user warning during a gamma")
        assert bare_root.handlers == [] and bare_root.filters == []
    assert "user warning during a gamma" in capsys.readouterr().err


def test_another_threads_basic_config_during_a_gamma_takes_effect(bare_root, tmp_path):
    """Before: ``basicConfig`` saw the NullHandler and did nothing; the file was never made."""
    _bare(bare_root)
    with _gamma_in_another_thread():
        logging.basicConfig(filename=tmp_path / "user.log", format="%(name)s %(message)s")
        logging.getLogger("user").warning("to the file")
    assert (tmp_path / "user.log").read_text() == "user to the file\n"
    assert [type(h) for h in bare_root.handlers] == [logging.FileHandler]   # kept after the gamma


def _case():
    ax = [np.arange(16) * 2.0] * 3
    z, y, x = np.meshgrid(*ax, indexing="ij")
    ref = np.exp(-((x - 15) ** 2 + (y - 15) ** 2 + (z - 15) ** 2) / 100.0)
    ev = ref * (1 + 0.03 * np.random.default_rng(1).standard_normal(ref.shape))
    return ax, ref, ev, np.ones(ref.shape, bool)


def test_a_gamma_in_a_thread_logs_nothing_to_the_root_and_other_threads_log_as_before(bare_root, capsys):
    """A real gamma (two dose criteria in one search: gamma_3d_multi) in a worker thread, the caller at INFO: the
    caller's handler gets its own lines and none of pymedphys's; the root logger is left as it was; pymedphys's
    ``logging`` outside mcproton's gamma is the logging module's (a caller's own pymedphys.gamma logs as before)."""
    import importlib

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    mine = Keep()
    bare_root.handlers[:] = [mine]
    bare_root.setLevel(logging.INFO)
    out: list = []
    t = threading.Thread(target=lambda: out.append(gamma_3d_multi(*_case(), dose_pcts=[2.0, 3.0], dist_mm=2.0,
                                                                   points=500)))
    t.start()
    t.join(300)
    logging.getLogger("user").info("mine")
    assert len(out) == 1 and len(out[0]) == 2 and 0 < out[0][0]["pass_rate"] <= 1
    assert records == ["mine"], records
    assert bare_root.handlers == [mine] and bare_root.filters == []
    assert "Logging error" not in capsys.readouterr().err
    shell = importlib.import_module(compare._PYMEDPHYS_LOGGING_MODULES[0])
    assert shell.logging.info is logging.info   # outside a gamma of mcproton: the module's own
    with _pymedphys_logging_kept_in():
        assert shell.logging.info == compare._PYMEDPHYS_LOGGER.info


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_forked_during_a_gamma_keeps_no_state(bare_root, tmp_path):
    """Before: the child kept the root logger's NullHandler and filter for good (the gamma's thread is not in the
    child to take them off).  Now its root logger is bare and its basicConfig works."""
    _bare(bare_root)
    log = tmp_path / "child.log"
    with _gamma_in_another_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # Python 3.12: fork() with threads (the child only logs)
        pid = os.fork()
        if pid == 0:   # the child: exit status 0 only if its logging is its own
            code = 1
            try:
                root = logging.getLogger()
                if root.handlers == [] and root.filters == [] and not getattr(compare._IN_GAMMA, "depth", 0):
                    logging.basicConfig(filename=log, format="%(message)s")
                    logging.getLogger("child").warning("child's own")
                    for h in root.handlers:
                        h.flush()
                    code = 0
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert log.read_text() == "child's own\n"


if __name__ == "__main__":   # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

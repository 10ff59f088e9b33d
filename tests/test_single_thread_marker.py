"""The ``single_thread`` marker (tests/conftest.py): a test that forks mcproton's worker processes needs a process
with no other Python thread (mcproton._forked.BackgroundProcess.available), and an earlier test of the same process
can leave one running (dask's offload thread; under pytest-xdist, README's ``-n auto``, the tests a worker runs before
it depend on the schedule).  Then a marked test is run in a fresh pytest process (tests/conftest.py), where this test
sees one thread; the second test here starts such a thread first, so that the handling is tested whatever ran
before."""
from __future__ import annotations

import os
import threading

import pytest

from mcproton._forked import BackgroundProcess


@pytest.mark.single_thread
def test_a_marked_test_runs_where_no_other_thread_is():
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    assert BackgroundProcess.available()
    assert BackgroundProcess(lambda: 7, "a number").join() == 7


@pytest.fixture
def a_thread_left_running():
    """A thread running while the next test runs, as dask's offload thread is after a dask test."""
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="left-running", daemon=True)
    t.start()
    yield t
    stop.set()
    t.join()


@pytest.mark.single_thread
def test_a_marked_test_runs_in_a_fresh_process_when_a_thread_is_left_running(a_thread_left_running):
    """With the fixture's thread running in pytest's process, the body runs in a fresh pytest process that
    tests/conftest.py starts (there the fixture starts its thread again, and the body runs as it is): without the
    marker's handling the body runs here and fails."""
    from conftest import FRESH_PROCESS_VAR

    assert int(os.environ.get(FRESH_PROCESS_VAR, "0")) not in (0, os.getpid())

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


_MAPPED = '''
import os
import threading

import pytest

threading.Thread(target=threading.Event().wait, daemon=True, name="left-running").start()   # in every process


class TestA:
    @pytest.mark.single_thread
    def test_same(self):
        assert os.environ.get("MCPROTON_TEST_FRESH_PROCESS")
        assert False, "A fails on purpose"


class TestB:
    @pytest.mark.single_thread
    def test_same(self):
        assert os.environ.get("MCPROTON_TEST_FRESH_PROCESS")


@pytest.mark.single_thread
@pytest.mark.parametrize("v", ["a b", "x::y", "\\u00e9", "a/b", 'q"r'])
def test_ids(v):
    assert os.environ.get("MCPROTON_TEST_FRESH_PROCESS")
    assert v in ("a b", "a/b"), "fails on purpose"


@pytest.mark.single_thread
def test_skipped_there():
    pytest.skip("skipped in the fresh process")
'''

_CRASHED = '''
import os
import threading

import pytest

threading.Thread(target=threading.Event().wait, daemon=True).start()


@pytest.mark.single_thread
def test_before_the_crash():
    pass


@pytest.mark.single_thread
def test_crash():
    os._exit(3)
'''

_ENVED = '''
import os
import threading

import pytest

threading.Thread(target=threading.Event().wait, daemon=True).start()


@pytest.fixture
def setting(monkeypatch):
    monkeypatch.setenv("MCPROTON_TEST_SETTING", "1")


@pytest.mark.single_thread
def test_with_the_setting(setting):
    assert os.environ.get("MCPROTON_TEST_SETTING") == "1"


@pytest.mark.single_thread
def test_without_it():
    assert "MCPROTON_TEST_SETTING" not in os.environ
'''


def test_each_marked_test_gets_its_own_result_from_the_fresh_process(tmp_path):
    """Review R-b R2: the fresh process's results were looked up by the test's name alone, so that a failing
    ``TestA::test_same`` took the result of ``TestB::test_same`` and passed.  Each marked test, with a thread left
    running in every process, gets its own outcome: classes of one name, parametrised ids with ``::``, ``/``,
    non-ASCII and quotes, a skip there, and a fresh process that dies (every test of it fails, none passes).  R4:
    the fresh process's environment is the one before the tests, not one holding what the first marked test's
    fixtures set (monkeypatch.setenv), which the file's other marked tests saw."""
    import shutil
    import subprocess
    import sys
    import xml.etree.ElementTree as ET
    from pathlib import Path

    here = Path(__file__).resolve().parent
    for f in here.glob("*.py"):   # the conftest and the helpers it imports
        if not f.name.startswith("test_"):
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "test_mapped.py").write_text(_MAPPED)
    (tmp_path / "test_crashed.py").write_text(_CRASHED)
    (tmp_path / "test_enved.py").write_text(_ENVED)
    xml = tmp_path / "outer.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MCPROTON_TEST_FRESH"))}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                    f"--junitxml={xml}", "--rootdir", str(tmp_path), "test_mapped.py", "test_crashed.py",
                    "test_enved.py"],
                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    got = {}
    for case in ET.parse(xml).iter("testcase"):
        kind = next((k for k in ("failure", "error", "skipped") if case.find(k) is not None), "passed")
        got[f"{case.get('classname')}::{case.get('name')}"] = kind
    assert got == {
        "test_mapped.TestA::test_same": "failure", "test_mapped.TestB::test_same": "passed",
        "test_mapped::test_ids[a b]": "passed", "test_mapped::test_ids[x::y]": "failure",
        "test_mapped::test_ids[\\xe9]": "failure", "test_mapped::test_ids[a/b]": "passed",
        'test_mapped::test_ids[q"r]': "failure", "test_mapped::test_skipped_there": "skipped",
        "test_crashed::test_before_the_crash": "failure", "test_crashed::test_crash": "failure",
        "test_enved::test_with_the_setting": "passed", "test_enved::test_without_it": "passed"}, got


def test_the_readme_command_without_pytest_xdist_says_what_to_install():
    """Review R-b R3: README's ``python -m pytest -q -n auto`` where pytest-xdist is absent (here: turned off) ended
    with pytest's "unrecognized arguments: -n"; it says what to install or how to run without it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-n",
                           "auto", "--co", str(Path(__file__).resolve())], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 4, said
    assert "needs pytest-xdist" in said and 'pip install -e ".[test]"' in said and "without -n" in said, said

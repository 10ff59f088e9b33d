"""The forked helpers (mcproton/_forked.py) release their pipes when no child is made: not available here (another
Python thread, no fork), or the fork itself failing (EAGAIN, ENOMEM).  Before, a MessageProcess that could not fork
left its message pipe's write end among the parent's ends (each later helper inherited and closed a copy of it) and
both ends of the pipe open for the life of the process."""
from __future__ import annotations

import os
import sys

import pytest

from mcproton import _forked

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked helpers: Linux only")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_message_process_that_cannot_fork_leaves_no_pipe_open(monkeypatch):
    monkeypatch.setattr(_forked.BackgroundProcess, "available", staticmethod(lambda: False))
    ends, fds = list(_forked._PARENT_ENDS), _open_fds()
    with pytest.raises(RuntimeError, match="needs Linux and no other Python thread"):
        _forked.MessageProcess(print, lambda: None, "a figure", doing="drawing", role="figure")
    assert _forked._PARENT_ENDS == ends
    assert _open_fds() == fds


def test_a_failed_fork_leaves_no_pipe_open(monkeypatch):
    import multiprocessing.process

    def no_fork(self):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(_forked.BackgroundProcess, "available", staticmethod(lambda: True))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", no_fork)
    ends, fds = list(_forked._PARENT_ENDS), _open_fds()
    with pytest.raises(BlockingIOError):
        _forked.BackgroundProcess(lambda: 1, "a file")
    with pytest.raises(BlockingIOError):
        _forked.MessageProcess(print, lambda: None, "a figure", doing="drawing", role="figure")
    assert _forked._PARENT_ENDS == ends
    assert _open_fds() == fds


_ORPHAN_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from mcproton._forked import BackgroundProcess

def work():
    time.sleep(2.0)
    Path(sys.argv[1]).write_text("written after the parent was gone")

h = BackgroundProcess(work, "a file", own_signals=True)
print(h._proc.pid, flush=True)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_helper_that_its_parent_stops_ends_with_its_parent(tmp_path):
    """A helper with ``own_signals`` (the demo's CT writer and plane figures, the check's figure workers) ends when
    its parent ends, a SIGKILL included (PR_SET_PDEATHSIG): before, the demo's writer, its parent killed, went on
    alone and wrote into the output folder after the parent had gone (the concurrency audit of 2026-12-07, F5)."""
    import subprocess
    import time

    mark = tmp_path / "late.txt"
    p = subprocess.run([sys.executable, "-c", _ORPHAN_SCRIPT, str(mark)], capture_output=True, text=True,
                       timeout=60, start_new_session=True)
    assert p.returncode == -9, p.stderr
    child = int(p.stdout.split()[0])
    for _ in range(50):   # it is sent SIGTERM as the parent dies: gone within moments
        if not os.path.exists(f"/proc/{child}") or " Z " in open(f"/proc/{child}/stat").read():
            break
        time.sleep(0.1)
    time.sleep(2.5)   # past the time it would have written
    assert not mark.exists(), "the helper went on after its parent was killed"
    if os.path.exists(f"/proc/{child}"):   # a zombie waiting for its reaper at most, not running
        assert " Z " in open(f"/proc/{child}/stat").read()


_GONE_PARENT_SCRIPT = """
import os, time
from mcproton._forked import BackgroundProcess

h = BackgroundProcess(lambda: time.sleep(0.5) or "done", "a file")
os._exit(0)   # the parent gone before the helper answers
"""


def test_a_helper_whose_parent_is_gone_ends_quietly(tmp_path):
    """A helper that finds its parent gone when it answers (a broken pipe) ends without a word: before, each printed
    two BrokenPipeError tracebacks after the demo was killed (the concurrency audit of 2026-12-07, F5)."""
    import subprocess

    p = subprocess.run([sys.executable, "-c", _GONE_PARENT_SCRIPT], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "Traceback" not in p.stderr and "BrokenPipeError" not in p.stderr, p.stderr

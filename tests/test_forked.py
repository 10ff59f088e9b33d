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

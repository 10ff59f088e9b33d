"""A command started in a session of its own, sent a signal once it has written a marker file (how far it got), for
the tests of what a command stopped part-way leaves (tests/phantoms/test_phantom_interrupted.py,
tests/validation/test_validate_interrupted.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _hangup_as_default() -> None:
    """In the child, before exec: SIGHUP's default action.  A test suite started under nohup (or by a shell that
    ignores SIGHUP) hands an ignored SIGHUP down to every command it starts, and mcproton honours an ignored SIGHUP
    (nohup's meaning: mcproton/_signals.py), so the HUP cases would test nohup instead of a dropped terminal (the
    clean-clone CI of 2026-12-07, run under nohup: both HUP cases failed, and passed under GNU timeout, which resets
    it)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def signal_at_mark(cmd: list[str], mark: Path, sig: int, wait_s: float = 60.0) -> tuple[int, str]:
    """Run ``cmd``; once ``mark`` exists send it ``sig``; return its exit status and stderr.  It is killed with its
    whole session where it does not end (or make the mark) in time."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=_hangup_as_default)
    try:
        for _ in range(int(wait_s / 0.05)):
            if mark.exists() or p.poll() is not None:
                break
            time.sleep(0.05)
        assert mark.exists(), p.communicate(timeout=wait_s)
        p.send_signal(sig)
        _, err = p.communicate(timeout=wait_s)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, err

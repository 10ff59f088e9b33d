"""A broken stdout/stderr never loses a run (the long-runs audit 2, F1).

``mcproton run ... 2>&1 | tee run.log`` and Ctrl-C: ``tee`` dies too, and every later write of the run fails with
BrokenPipeError.  Before, the signal watcher's thread died on its "SIGINT received" line and the next progress line
(or the interrupt message) raised in the main thread: exit status 1, said nowhere, and (when the progress line came
first) no checkpoint of the batches done.  A reader that goes away without a signal (``| head -3``) ended the run at
its next progress line.  Each test runs the command line in a subprocess whose pipe reader is closed (no timing:
the checkpoint's existence says when the run is under way)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from run_helpers import read_h5

from mcproton._run.checkpoint import checkpoint_path, describe


def _popen(*args, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mcproton.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=stderr)


def test_a_reader_that_goes_away_does_not_stop_the_run(small_cfg, tmp_path):
    """``| head`` that has its lines (here: the pipes closed before the first line): the run goes on, writes its
    output and removes its checkpoint; exit status 0 (before: 1 at its first line, nothing written)."""
    cfg = small_cfg(20_000, batch_size=2000)
    out = tmp_path / "o.h5"
    proc = _popen("run", cfg, "--out", out)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0
    assert read_h5(out)["provenance"]["primaries"] == 20_000
    assert not checkpoint_path(out).exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_log_pipe_is_gone_writes_the_checkpoint(small_cfg, tmp_path, sig):
    """``2>&1 | tee run.log`` and Ctrl-C: the pipe's reader is gone when the signal comes; the run writes its
    checkpoint and exits 128 + signal, as without the pipe."""
    cfg = small_cfg(4_000_000, batch_size=2000, checkpoint_interval_s=0)
    out = tmp_path / "o.h5"
    ckpt = checkpoint_path(out)
    proc = _popen("run", cfg, "--out", out, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and describe(ckpt).split(" ")[0] not in ("", "0"):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the signal; make it longer"
        proc.stdout.close()   # tee dies with the Ctrl-C
        proc.send_signal(sig)
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 128 + sig
    done = int(describe(ckpt).split(" ")[0].replace(",", ""))
    assert 0 < done < 4_000_000 and not out.exists()


def test_dropping_stream_drops_failed_writes_and_stays_silent():
    """The stream wrapper of the command line: a write that fails is dropped (never raised), later ones too."""
    from mcproton._io.console import DroppingStream

    class Broken:
        calls = 0

        def write(self, text):
            Broken.calls += 1
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def isatty(self):
            return False

    s = DroppingStream(Broken())   # type: ignore[arg-type]
    assert s.write("progress\n") == len("progress\n")
    s.flush()
    s.write("more\n")
    assert isinstance(s.broken, BrokenPipeError) and Broken.calls == 1 and s.isatty() is False


def test_a_failed_write_in_a_script_drops_the_line_only(monkeypatch, tmp_path):
    """In a script (simulate's progress), a write to stderr that fails once drops that line; stderr is not pointed
    at /dev/null for the rest of the session, as the command line's own streams are (a review of 2026-12-05)."""
    import io
    import sys

    from mcproton._io import console

    class Flaky(io.StringIO):
        fail = True

        def write(self, text):
            if Flaky.fail:
                Flaky.fail = False
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    stream = Flaky()
    silenced = []
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(console, "silence", lambda s: silenced.append(s))
    console.write_stderr("lost\n")
    console.write_stderr("kept\n")
    assert stream.getvalue() == "kept\n" and not silenced


@pytest.mark.parametrize("closed", ["1", "2"])
def test_a_stream_closed_at_start_does_not_stop_the_run(small_cfg, tmp_path, closed):
    """``mcproton run ... 2>&-`` or ``>&-`` (a daemon or process manager that closes the stream): Python sets
    sys.stderr/sys.stdout to None.  The run completes with exit status 0 and writes its output, its messages (or
    summary) dropped; before, a closed stderr ended it at its first message (exit 1, nothing written, no message)
    and a closed stdout reported an internal error (exit 4) after the output was written (the environment audit
    19, F1).  The other stream is read: nothing from Python's error handler reaches it."""
    cfg = small_cfg(2000)
    out = tmp_path / "o.h5"
    proc = subprocess.run(["sh", "-c", f'exec "$@" {closed}>&-', "sh", sys.executable, "-m", "mcproton.cli", "run",
                           str(cfg), "--out", str(out)], capture_output=True, text=True, timeout=300)
    other = proc.stderr if closed == "1" else proc.stdout
    assert proc.returncode == 0, other
    assert read_h5(out)["provenance"]["primaries"] == 2000
    assert "error" not in other and "Traceback" not in other


def test_reopen_closed_std_fds_points_a_closed_descriptor_at_devnull():
    """A descriptor 0-2 that is closed is pointed at /dev/null, so that a file opened later does not take its number
    (and receive what a C library or a subprocess writes to fd 2)."""
    code = ("import os; from mcproton._io.console import reopen_closed_std_fds; reopen_closed_std_fds(); "
            "f = os.open(os.devnull, os.O_RDONLY); print(f > 2, os.path.realpath(f'/proc/self/fd/0'), flush=True)")
    proc = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", os.devnull]

"""The command line and stop requests (the long-runs audit 2): Ctrl-C before a command handles it (F6), SIGHUP
(F10) and ``--resume --no-checkpoint`` (F9)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from fakes import log_text  # tests/fakes.py
from run_helpers import cli

from mcproton._run.checkpoint import checkpoint_path

#: Ctrl-C while the command line parses its arguments (the first fraction of a second: the imports of every
#: command's parser), made certain by a build_parser that raises it
_CTRL_C_IN_THE_PARSER = """
import sys
import mcproton.cli as c

def build_parser():
    raise KeyboardInterrupt

c.build_parser = build_parser
sys.exit(c.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", [["run", "x.toml", "--out", "x.h5"], ["check", "p"], ["info"]])
def test_ctrl_c_before_the_command_starts_is_one_line_not_a_traceback(command, tmp_path):
    """F6: "mcproton run never ends in a Python traceback" (README), but Ctrl-C in the first second of any command
    (before its handler: the imports, the parser) gave a 30-60 line traceback ending in KeyboardInterrupt."""
    p = subprocess.run([sys.executable, "-c", _CTRL_C_IN_THE_PARSER, *command], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert log_text(p.stderr) == "mcproton: interrupted\n", p.stderr


def test_resume_with_no_checkpoint_is_refused_before_anything_runs(small_cfg, tmp_path):
    """F9: --resume was silently ignored with --no-checkpoint: the run started from history 0 and left the old
    checkpoint beside its output, so that the next plain run was refused."""
    cfg = small_cfg(2000)
    out = tmp_path / "o.h5"
    ckpt = checkpoint_path(out)
    ckpt.write_bytes(b"an interrupted run's checkpoint")
    r = cli("run", cfg, "--out", out, "--resume", "--no-checkpoint", check=False)
    assert r.returncode == 2, r.stderr
    assert "--resume" in r.stderr and "--no-checkpoint" in r.stderr and "give one of them" in r.stderr, r.stderr
    assert "backend" not in r.stderr and not out.exists()   # refused before the transport
    assert ckpt.read_bytes() == b"an interrupted run's checkpoint"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_stops_like_sigterm_unless_it_is_ignored():
    """F10: SIGHUP (the terminal closed, an ssh session dropped) is a stop signal of the run, as SIGTERM is; under
    ``nohup`` (SIGHUP ignored) it stays ignored, so that the run outlives the terminal.  The signal sent to a run
    is tested in test_run_checkpoint.py (test_killed_run_resumes_bitwise).  SIGHUP's handling is set here both ways:
    a test runner started with nohup ignores it already (the mutation audit of 2026-12-05, F1)."""
    from mcproton._run.job import _StopFlag, stop_signals

    old = signal.signal(signal.SIGHUP, signal.SIG_DFL)   # as in a terminal
    try:
        assert signal.SIGHUP in stop_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)     # as under nohup
        assert signal.SIGHUP not in stop_signals()
        with _StopFlag(True, checkpoint=False):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_does_not_stop_the_writing_of_the_outputs():
    """While the outputs are written (seconds, the transport done), SIGHUP is ignored: a dropped ssh session lets
    them finish instead of removing the file being written (with --no-checkpoint the run was lost; a review of
    2026-12-05); SIGINT and SIGTERM still stop it; the handlers are put back after."""
    from mcproton.cli import _OutputPhase

    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    with _OutputPhase() as op:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == op._handle == signal.getsignal(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGHUP)          # ignored: the block goes on
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_while_the_inputs_are_read_says_so(small_cfg, tmp_path, sig):
    """The concurrency audit 25, F7: SIGTERM or SIGHUP to ``mcproton run`` before its locks are taken (the config, the
    CT, the geometry, the plan: seconds on a 109-slice CT, minutes on a patient's) ended it by the default action,
    with no message and exit status -15 / -1, while SIGINT there said "mcproton: interrupted".  Each now ends it with
    one line saying so and 128 + the signal.  The signal is sent from the geometry's build, in a child process
    (SIGTERM's default action would end the test process)."""
    if not hasattr(signal, sig):
        pytest.skip(f"no {sig} on this platform")
    cfg = small_cfg(2000)
    script = ("import os, signal, sys\n"
              "signal.signal(signal.SIGHUP, signal.SIG_DFL)   # as in a terminal (a test runner under nohup)\n"
              "import mcproton.config as config\n"
              "real = config.build_geometry\n"
              "def build(*a, **k):\n"
              f"    os.kill(os.getpid(), signal.{sig})\n"
              "    return real(*a, **k)\n"
              "config.build_geometry = build\n"
              "from mcproton.cli import main\n"
              f"sys.exit(main(['run', {str(cfg)!r}, '--out', {str(tmp_path / 'o' / 'x.h5')!r}, '--quiet']))\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    num = getattr(signal, sig)
    assert p.returncode == 128 + num, (p.returncode, p.stderr[-2000:])
    assert log_text(p.stderr) == f"mcproton: {sig} received before the transport began: nothing was computed\n", \
        p.stderr
    assert not (tmp_path / "o").exists()

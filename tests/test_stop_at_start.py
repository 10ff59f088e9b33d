"""A stop signal as a command starts (audit 26 exitcodes, F2): before, the handlers of SIGTERM and SIGHUP were put in
place by each command after its imports (run 1.2 s, check 2.3 s, validate 1 s on a 2-core machine), and a signal
before that took its default action: the process ended without a word (exit -15), ``check --json`` printed nothing,
and an earlier PASS check.json or ``all_passed`` summary.json stayed in --out, unmarked.  Now mcproton.cli.main
defers the stop signals first (mcproton._signals.defer_stop_signals) and the command's handler takes the signal
as it is entered: the command stops as it documents.

The signal is sent from inside the process before the command line is parsed (after main's first step, before any
command's imports and handler), so it arrives at a known point however loaded the machine."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mcproton import _signals
from mcproton._signals import RaiseOnStopSignals, StopSignal

#: mcproton's command line, with SIGNAL (argv[1]) sent to itself before its line is parsed
SCRIPT = textwrap.dedent("""
    import os, signal, sys
    signal.signal(signal.SIGHUP, signal.SIG_DFL)   # as from a terminal (a test runner under nohup ignores it)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # and Python's own (pytest-xdist's workers ignore it)
    import mcproton.cli as cli
    sig, guarded = getattr(signal, sys.argv[1]), cli._guarded

    def _guarded(*args):   # the command, its line not yet parsed
        os.kill(os.getpid(), sig)
        return guarded(*args)

    cli._guarded = _guarded
    if len(sys.argv) > 2 and sys.argv[2] == "--limit":
        import mcproton._signals as s
        s.DEFERRED_STOP_LIMIT_S = float(sys.argv[3])
        del sys.argv[2:4]
    sys.exit(cli.main(sys.argv[2:]))
""")


def _run(sig: str, *argv: str, cwd: Path | None = None, limit: float | None = None) -> subprocess.CompletedProcess:
    extra = ["--limit", str(limit)] if limit is not None else []
    return subprocess.run([sys.executable, "-c", SCRIPT, sig, *extra, *argv], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def _earlier_check(out: Path) -> None:
    """An earlier PASS check's report in ``out`` (as tests/check/test_check_stopped.py makes one)."""
    out.mkdir()
    (out / "check.html").write_text("<!DOCTYPE html><html><head><title>mcproton check: earlier</title></head></html>")
    (out / "check.json").write_text(json.dumps({"passed": True, "checks": [], "provenance": {}}))


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_check_json_stopped_as_it_starts_prints_its_record_and_sets_the_earlier_pass_aside(sig, tmp_path):
    """Before: SIGTERM -15 and SIGHUP -1 with nothing on stdout and the PASS check.json in place; SIGINT 130 with
    "mcproton: interrupted" and the PASS in place."""
    out = tmp_path / "chk"
    _earlier_check(out)
    (tmp_path / "patient").mkdir()
    proc = _run(sig, "check", str(tmp_path / "patient"), "--beam-model", "dcpt_v5", "--out", str(out), "--json")
    code = 128 + getattr(signal, sig)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    record = json.loads(proc.stdout)
    assert record["status"] == "interrupted" and record["exit_status"] == code, record
    on_disk = json.loads((out / "check.json").read_text())
    assert on_disk["status"] == "interrupted" and on_disk["passed"] is False
    moved = list(out.glob("earlier_check_*"))
    assert len(moved) == 1 and json.loads((moved[0] / "check.json").read_text())["passed"] is True
    assert f"interrupted by {sig}" in proc.stderr, proc.stderr


def test_a_run_stopped_as_it_starts_says_so(tmp_path):
    """Before: -15, nothing on stderr."""
    cfg = tmp_path / "job.toml"
    cfg.write_text('[run]\nprimaries = 1000\nbackend = "cpu"\nthreads = 1\n')
    proc = _run("SIGTERM", "run", str(cfg), "--out", str(tmp_path / "o.h5"))
    assert proc.returncode == 143, proc.stderr
    assert "SIGTERM received before the transport began: nothing was computed" in proc.stderr
    assert not list(tmp_path.glob("o*"))


def test_bench_stopped_as_it_starts_exits_143():
    proc = _run("SIGTERM", "bench", "--backend", "cpu", "--primaries", "1000")
    assert proc.returncode == 143 and "mcproton: interrupted by SIGTERM" in proc.stderr, proc.stderr


@pytest.mark.parametrize("argv", [["check", "--print-levels"], ["--help"], ["run"], ["--version"]],
                         ids=["print-levels", "help", "usage error", "version"])
def test_a_signal_no_handler_takes_ends_the_process_as_its_default_action(argv):
    """A command that ends before any handler takes the signal (its status 0, or 2 for a usage error; --help and
    --version by SystemExit) is ended by the signal's default action as the command line ends, as docs/check.md
    says (review 26a, R3: its exit status stood, and the SystemExit paths said nothing)."""
    proc = _run("SIGTERM", *argv)
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stderr)   # killed by it: 143 from a shell
    assert ("mcproton: SIGTERM received as the command ended, before a handler of it: the process ends by the "
            "signal's default action (exit status 143)") in proc.stderr, proc.stderr
    if argv == ["check", "--print-levels"]:   # what it printed is kept
        assert "[levels]" in proc.stdout, proc.stdout


def test_a_sigint_no_handler_takes_is_an_interruption():
    proc = _run("SIGINT", "check", "--print-levels")
    assert proc.returncode == 130 and proc.stderr.strip().endswith("mcproton: interrupted"), proc.stderr


def test_a_program_that_calls_main_receives_the_signal_no_handler_took():
    """The program's own SIGTERM handler, put back as main ends, receives the signal (it was dropped: review 26a,
    R3); main's status stands where that handler returns."""
    code = SCRIPT.replace("import mcproton.cli as cli", "got = []\nsignal.signal(signal.SIGTERM, lambda s, f: "
                          "got.append(s))\nimport mcproton.cli as cli").replace(
        "sys.exit(cli.main(sys.argv[2:]))", "rc = cli.main(sys.argv[2:])\nprint(rc, got)")
    proc = subprocess.run([sys.executable, "-c", code, "SIGTERM", "validate", "--list"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == f"0 [{int(signal.SIGTERM)}]", proc


def test_a_signal_no_handler_takes_on_a_slow_path_ends_the_process_in_time():
    """A path that never reaches a command's handler ends within the limit, as the signal's default action would
    have ended it."""
    import time

    t0 = time.monotonic()
    code = SCRIPT.replace("sys.exit(cli.main", "import mcproton._check.cli as c, time\n"
                          "c.print_levels = lambda config: time.sleep(30)\nsys.exit(cli.main")
    proc = subprocess.run([sys.executable, "-c", code, "SIGTERM", "--limit", "1", "check", "--print-levels"],
                          capture_output=True, text=True, timeout=120)   # a slow path without a handler
    assert proc.returncode == 143 and "SIGTERM received and not handled within 1 s" in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 25


def test_a_deferred_signal_is_raised_inside_the_handlers_block():
    """In-process: deferred, then raised by deliver_deferred (the block's first statement), never lost; main's
    handlers are put back.  The signal's handler starts no thread (a timer thread, started inside a signal handler
    that can interrupt threading's own lock, could hang the process: review 26a, R4): the watchdog is the interval
    timer, disarmed as the signal is taken."""
    import threading

    before = signal.getsignal(signal.SIGTERM)
    alarm = signal.getsignal(signal.SIGALRM)
    threads = threading.active_count()
    _signals.defer_stop_signals()
    try:
        os.kill(os.getpid(), signal.SIGTERM)   # recorded, not acted on
        assert threading.active_count() == threads
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= _signals.DEFERRED_STOP_LIMIT_S
        with RaiseOnStopSignals() as stop:
            with pytest.raises(StopSignal) as exc:
                stop.deliver_deferred()
            assert exc.value.signum == signal.SIGTERM
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is alarm
    finally:
        left = _signals.take_deferred()   # not passed on to the test runner by end_deferral where this failed
        _signals.end_deferral()
    assert left is None and signal.getsignal(signal.SIGTERM) is before


def test_validate_stopped_as_it_starts_marks_the_earlier_report(tmp_path):
    """Before: SIGTERM in validate's first second: -15, and summary.json kept the earlier all_passed: true.  The
    message says that it stopped before the first case (it said "during case stopping_power": review 26a, R8)."""
    from mcproton.validation import runner

    out = tmp_path / "v"
    assert runner.main(["--out", str(out), "--cases", "stopping_power"]) == 0   # no simulation: quick
    assert json.loads((out / "summary.json").read_text())["all_passed"] is True
    proc = _run("SIGTERM", "validate", "--out", str(out), "--cases", "stopping_power")
    assert proc.returncode == 143, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["all_passed"] is False and summary["exit_status"] == 143
    assert summary["earlier_outputs_moved_to"] and Path(summary["earlier_outputs_moved_to"]).is_dir()
    assert "interrupted by SIGTERM before the first case (cases done: none; not done: stopping_power)" in \
        proc.stderr, proc.stderr
    assert "during case" not in proc.stderr and "before the first case" in summary["message"]

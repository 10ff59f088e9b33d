"""A long run as its log shows it (the progress-log audit 26): the warning of a run of more than a day judges the
whole run (every beam) once, in the words of the command or call that runs it (F2, F3); the ETA with a target
uncertainty is an estimate of the target from its second batch on, timed without the first batch's setup (F7); the
lines of a log file carry the time of day (F6); after a stop signal no further beam is announced, and the signal's
note starts with a line break only where a bar is drawn in place (F8)."""
from __future__ import annotations

import os
import re
import signal
from types import SimpleNamespace

import pytest

from mcproton._io.errors import McprotonRuntimeWarning

STAMP = r"\[\d\d:\d\d:\d\d\] "


def _two_beams(primaries=4000, **settings):
    from mcproton.geometry import box_phantom
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    g = box_phantom("water", (40.0, 40.0, 80.0), (4.0, 4.0, 2.0))
    beams = [Beam.pencil(80.0, position_mm=(-6.0, 0.0, -1.0), sigma_mm=(3.0, 3.0)),
             Beam.pencil(60.0, position_mm=(8.0, 4.0, -1.0), sigma_mm=(2.0, 2.0))]
    return g, beams, RunSettings(primaries=primaries, seed=21, backend="cpu", threads=1, **settings)


def _one_second_a_batch(monkeypatch):
    """The stream's clock: one second from its start to its first batch, and one more per batch after."""
    from mcproton._run import streaming

    t = [0.0]

    def tick():
        t[0] += 1.0
        return t[0]

    monkeypatch.setattr(streaming, "time", SimpleNamespace(perf_counter=tick))


def _long_run_warnings(rec):
    return [str(w.message) for w in rec if "would take about" in str(w.message)]


def test_the_long_run_warning_judges_the_whole_run_once(monkeypatch):
    """F3: each beam was judged alone (``plan.total - pos``), so two beams of 9 s each at the first batch's speed
    were not warned about with a limit of 15 s, though the run takes 19 s (its ETA said so); and a run whose every
    beam is long was warned about once per beam."""
    import warnings

    from mcproton._run import streaming
    from mcproton._run.job import run_job

    g, beams, s = _two_beams(batch_size=400)   # 10 batches a beam; at 400 protons/s: 9 s of beam 1 left, 10 s of 2
    _one_second_a_batch(monkeypatch)
    monkeypatch.setattr(streaming, "LONG_RUN_S", 15.0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run_job(None, s, g, beams, None, progress=False, log=lambda m: None)
    said = _long_run_warnings(rec)
    assert said == ["the remaining 7,600 primaries of the run (3,600 of this beam and 4,000 of the beams after it) "
                    "would take about 19.0 s at this speed (400 protons/s in the first batch); set run.time_limit_s "
                    "(the run then writes its output and keeps a checkpoint to continue with --resume) or fewer "
                    "run.primaries"], said
    monkeypatch.setattr(streaming, "LONG_RUN_S", 5.0)   # each beam alone is longer too: still one warning
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run_job(None, s, g, beams, None, progress=False, log=lambda m: None)
    assert len(_long_run_warnings(rec)) == 1, _long_run_warnings(rec)


def test_simulate_names_its_settings_not_mcproton_runs_keys(monkeypatch):
    """F2: the warning named run.time_limit_s, a checkpoint and --resume, which a Python call has not."""
    from mcproton._run import streaming
    from mcproton.run import simulate

    g, beams, s = _two_beams(primaries=2000, batch_size=200)
    monkeypatch.setattr(streaming, "LONG_RUN_S", 0.0)
    with pytest.warns(McprotonRuntimeWarning, match="would take about") as rec:
        simulate(g, beams[0], s)
    (msg,) = _long_run_warnings(rec)
    assert "RunSettings(time_limit_s=...)" in msg and "RunSettings(primaries=...)" in msg, msg
    assert "run.time_limit_s" not in msg and "--resume" not in msg and "checkpoint" not in msg, msg


def test_the_checks_wording_names_its_options():
    """F2 (the check's own run is in tests/check/test_check_progress_log.py)."""
    from mcproton._check.compute import check_wording

    wd = check_wording()
    assert "--time-limit SECONDS" in wd.long_run and "--primaries" in wd.long_run, wd.long_run
    assert "run." not in wd.long_run and "--resume" not in wd.long_run, wd.long_run
    assert wd.target == "--target-uncertainty"


def test_the_eta_to_a_target_is_estimated_from_the_second_batch_without_the_first_batchs_setup(monkeypatch, capsys):
    """F7: the uncertainty was used for the ETA only once the stop rule tests it (10 batches), so the ETA said "to the
    cap" for the first tenth of the cap; and the rate included the first batch's one-off setup.  Now: from 2
    batches, the uncertainty divided by c4(batches) (a mean of per-voxel standard deviations of few batches reads
    low by it), marked rough; the rate from the end of the first batch."""
    from mcproton._run import streaming
    from mcproton._run.streaming import progress_printer

    clock = iter([0.0, 5.0, 6.0, 7.0])   # the first batch takes 5 s (its setup), the next ones 1 s
    monkeypatch.setattr(streaming.time, "perf_counter", lambda: next(clock))
    show = progress_printer(10_000_000, tty=True, target=0.01)
    show(100_000, 0.0, float("nan"), batches=0)
    show(200_000, 0.0, 0.04, batches=2)   # 4 % / c4(2) = 5.01 %: 5,026,549 needed at 100,000 p/s
    show(300_000, 0.0, 0.03, batches=3)   # 3 % / c4(3) = 3.39 %: 3,437,747 needed
    lines = capsys.readouterr().err.split("\r")[1:]
    assert lines[0].endswith("20,000 p/s  ETA    8.2 min to the cap"), lines[0]   # the first batch: its own rate
    assert lines[1].endswith("100,000 p/s  ETA   48.3 s to 1 % (now 4.00 %; rough, from 2 batches)"), lines[1]
    assert lines[2].endswith("100,000 p/s  ETA   31.4 s to 1 % (now 3.00 %; rough, from 3 batches)"), lines[2]
    streaming.end_progress()


def test_a_runs_log_estimates_the_target_before_its_tenth_batch(capsys):
    """F7, the run as a whole: in a log file a line with an estimate to the target comes at the second batch (it
    goes 10 % of the estimate at once), not after the 10 batches the stop rule waits for; an estimate below the
    target already goes to the 10th batch (review b of audit 26, R4)."""
    from mcproton._run.job import run_job

    g, beams, s = _two_beams(primaries=100_000, target_uncertainty=0.2)   # batches of 1,000
    run_job(None, s, g, beams[:1], None, progress=True, log=lambda m: None)
    lines = capsys.readouterr().err.splitlines()
    bars = [line for line in lines if " protons " in line]
    assert "to the cap" in bars[0], lines
    # 3-4 % after 2 batches, below the target already: to the 10th batch, where the run may stop (review b, R4)
    assert "to batch 10, the first at which the run may stop at 20 % (now " in bars[1] \
        and "; rough, from 2 batches)" in bars[1], lines
    assert re.match(STAMP + r"  \[", bars[1]), bars[1]   # F6: the time of day in a log file


def test_the_per_beam_target_is_explained_and_printed_to_three_digits(capsys):
    """F7: the check's bar showed "to 7.07107 %" for --target-uncertainty 0.05 over 2 beams, with no word of why."""
    from mcproton._check.compute import per_beam_target_text
    from mcproton._run.streaming import progress_printer

    assert per_beam_target_text(0.05, 2) == "5 % plan target = 7.07 % per beam for 2 beams"
    assert per_beam_target_text(0.01, 3) == "1 % plan target = 1.73 % per beam for 3 beams"
    show = progress_printer(1_000_000, tty=True, target=0.05 * 2 ** 0.5)
    show(1000, 0.0, 0.5, batches=20)
    assert "to 7.07 % (now 50.00 %)" in capsys.readouterr().err
    from mcproton._run.streaming import end_progress

    end_progress()


def test_log_lines_carry_the_time_of_day_in_a_log_file_only(capsys):
    """F6: no line of a run's or a check's log had a time.  In a log file (not a terminal) the progress lines and the
    default log's lines (a run's beam lines, a check's steps, a batch's patients) start with [HH:MM:SS]."""
    from mcproton._io.console import log_line, time_of_day
    from mcproton._run.job import _log_to_stderr
    from mcproton._run.streaming import end_progress, progress_printer

    assert re.fullmatch(STAMP, time_of_day(tty=False)) and time_of_day(tty=True) == ""
    log_line("mcproton check: reading the CT (ct) ...")
    _log_to_stderr("beam 2/3: lateral (9 spots)")
    progress_printer(1000, tty=False)(100, 0.0)
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(STAMP + r"mcproton check: reading the CT \(ct\) \.\.\.", lines[0]), lines
    assert re.fullmatch(STAMP + r"beam 2/3: lateral \(9 spots\)", lines[1]), lines
    assert re.match(STAMP + r"  \[###", lines[2]), lines
    progress_printer(1000, tty=True)(100, 0.0)   # on a terminal the bar is as it was
    assert capsys.readouterr().err.startswith("\r  [###")
    end_progress()


def test_no_beam_is_announced_after_a_stop_signal(monkeypatch):
    """F8: a SIGINT/SIGTERM that came while the next beam was set up (after the end of the beam before) let that beam
    be announced ("beam 2/2: ..."), and the run stopped "after 0 of 4,000 primaries of beam 2"."""
    from mcproton._run import job
    from mcproton._run.job import RunInterrupted, run_job

    g, beams, s = _two_beams(batch_size=400)
    real, made = job.Simulation, []

    def simulation(*a, **k):   # SIGINT as the second beam is set up
        made.append(1)
        if len(made) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(job, "Simulation", simulation)
    lines: list[str] = []
    with pytest.raises(RunInterrupted) as ei:
        run_job(None, s, g, beams, None, progress=False, log=lines.append)
    assert not any(line.startswith("beam 2/2") for line in lines), lines
    assert "beam 1/2" in lines[0], lines
    assert "after beam 1 of 2" in str(ei.value) and "of beam 2" not in str(ei.value), str(ei.value)
    assert ei.value.code == 130


def test_the_signal_note_starts_a_line_only_after_a_bar_drawn_in_place(capsys):
    """F8: the note began with a line break, meant to end a bar drawn in place, so a log file (or --quiet, no bar)
    got a blank line before it."""
    from mcproton._run.job import _StopFlag
    from mcproton._run.streaming import end_progress, progress_printer

    _StopFlag(enabled=False)._announce(signal.SIGTERM)
    assert capsys.readouterr().err.startswith("mcproton: SIGTERM received: finishing the batch in flight")
    progress_printer(1000, tty=True)(100, 0.0)
    _StopFlag(enabled=False)._announce(signal.SIGTERM)
    err = capsys.readouterr().err
    assert err.startswith("\r  [###") and "\nmcproton: SIGTERM received" in err, err
    end_progress()


def test_the_eta_to_a_target_already_met_goes_to_the_tenth_batch(monkeypatch, capsys):
    """Review b of audit 26, R4: where the rough estimate from 2 batches is below the target already, the bar was
    full and the ETA "0.0 s to 1 %" from batch 2 to 9, though the run tests its target from the 10th batch on (and
    in a log file every batch wrote such a line).  Now the goal is the 10th batch's end: the ETA counts the batches
    left to it and says why, and the bar is never full before it."""
    from mcproton._run import streaming
    from mcproton._run.streaming import MIN_BATCHES_FOR_TARGET, progress_printer

    assert MIN_BATCHES_FOR_TARGET == 10
    clock = iter(float(t) for t in range(100))   # one batch of 1,000 a second
    monkeypatch.setattr(streaming.time, "perf_counter", lambda: next(clock))
    show = progress_printer(100_000, tty=False, target=0.01)
    for b in range(1, 10):
        show(1000 * b, 0.0, 0.004 if b >= 2 else float("nan"), batches=b)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("to the cap"), lines
    assert 1 < len(lines) <= 9, lines   # the first batch's line and at most one per 10 % of the goal
    for line in lines[1:]:
        b = int(line.split("/100,000")[0].split()[-1].replace(",", "")) // 1000
        assert f"ETA {10 - b:6.1f} s to batch 10, the first at which the run may stop at 1 % (now 0.40 %; rough, " \
               f"from {b} batches)" in line, line
        assert "#" * 30 not in line, line
    show(10_000, 0.0, 0.004, batches=10)   # the 10th batch: the stop rule's own estimate, no floor
    assert "ETA    0.0 s to 1 % (now 0.40 %)" in capsys.readouterr().err


def test_every_line_of_run_and_check_in_a_log_file_carries_the_time_of_day(tmp_path, capsys):
    """Review b of audit 26, R5: in a log file only the step and progress lines had the time of day; the warnings,
    the notes ("replacing the existing output(s)"), the backend line, the signal messages and the errors had none.
    Now every line of ``mcproton run`` and ``mcproton check`` on a stderr that is not a terminal starts with it,
    once; and the tests' filters of "mcproton:" lines read them through fakes.log_lines (a plain
    ``startswith("mcproton:")`` sees none of them now)."""
    from fakes import log_lines
    from run_helpers import cli, write_cfg

    from mcproton.cli import main

    cfg = write_cfg(tmp_path / "job.toml", 2000, target_uncertainty=0.001)   # far out of reach: two warnings
    out = tmp_path / "o.h5"
    # in a process of its own: pytest would record the warnings instead of printing them
    err = "".join(cli("run", cfg, "--out", out, "--no-checkpoint").stderr for _ in range(2))   # 2nd: replacing o.h5
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(re.match(STAMP + r"(?:(?!\[)\S| {2}\[)", ln) for ln in lines), err   # each once
    ours = [ln for ln in log_lines(err) if ln.startswith("mcproton:")]
    assert not [ln for ln in err.splitlines() if ln.startswith("mcproton:")], err
    assert sum(ln.startswith("mcproton: backend cpu") for ln in ours) == 2, ours
    assert sum(ln.startswith("mcproton: warning: run.target_uncertainty 0.1 % needs about") for ln in ours) == 2
    assert sum(ln.startswith("mcproton: note: replacing the existing output(s)") for ln in ours) == 1, ours
    # a check's error line too
    assert main(["check", str(tmp_path / "no_such_patient"), "--beam-model", "dcpt_v5", "--out",
                 str(tmp_path / "chk"), "--quiet"]) in (2, 3)
    err = capsys.readouterr().err.strip()
    assert re.match(STAMP + r"mcproton: error: ", err) and len(err.splitlines()) == 1, err
    assert log_lines("[06:56:56] mcproton: a\nmcproton: b\n\n[06:56:57]   [##") == ["mcproton: a", "mcproton: b", "",
                                                                                  "  [##"]


def test_a_scripts_stderr_stays_undated_and_a_line_is_dated_once(capsys):
    """The time of day on every line is the command line's (mcproton run's and check's) in a log file only: a
    script's stderr is its own (mcproton._io.console.stamped_stderr changes the command line's stream only); on that
    stream a line written in parts is dated once, an empty line not at all, and time_of_day() adds nothing more."""
    import sys

    from mcproton._io.console import DroppingStream, stamped_stderr, time_of_day

    with stamped_stderr():   # a script's stream: not the command line's
        sys.stderr.write("mcproton: note: x\n")
    assert capsys.readouterr().err == "mcproton: note: x\n"
    stream = DroppingStream(sys.stderr)
    old, sys.stderr = sys.stderr, stream
    try:
        with stamped_stderr():
            assert time_of_day() == "" and time_of_day(tty=False) == ""   # the stream dates the lines itself
            sys.stderr.write("mcproton: a\n\nmcproton: b")
            sys.stderr.write(" continued\n")
        sys.stderr.write("mcproton: c\n")
    finally:
        sys.stderr = old
    assert re.fullmatch(f"{STAMP}mcproton: a\n\n{STAMP}mcproton: b continued\nmcproton: c\n",
                        capsys.readouterr().err)


def test_the_stop_at_the_target_is_said_in_percent_as_the_bar_says_it():
    """The line of a beam that reached its target names both in percent, as the progress bar above it does (the
    units audit of 2026-12-07, F2: "mean relative uncertainty above 50 % Dmax 0.03061 <= 0.5" under "now 3.06 %")."""
    from mcproton._run.job import run_job

    g, beams, s = _two_beams(primaries=20_000, target_uncertainty=0.3, batch_size=500)
    said: list[str] = []
    run_job(None, s, g, beams[:1], None, progress=False, log=said.append)
    (line,) = [m for m in said if "reached the target uncertainty" in m]
    assert re.search(r"mean relative uncertainty above 50 % Dmax \d+\.\d\d % <= 30 %\)$", line), line

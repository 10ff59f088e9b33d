"""`mcproton validate` stopped by a signal, and two validations on one --out (the concurrency audit of 2026-12-07,
F2 and F3).

F2: validate had no signal handlers: SIGTERM (a scheduler's wall time) and SIGHUP (ssh dropped) ended it without a
word (exit -15 / -1), SIGINT said only "mcproton: interrupted", and in every case --out kept the earlier run's
report.html and summary.json (``all_passed: true``), nothing saying that the new validation did not complete: a
nightly validation killed after an upgrade left yesterday's PASS for the dashboard.  Now the earlier report is moved
into ``earlier_validate_<date>/`` as the validation starts (as ``mcproton check`` does), a stop signal writes a
summary.json that records it (``"status": "interrupted"``, ``all_passed`` false, ``exit_status`` 128 + n) and says
so, and the exit status is 128 + the signal.

F3: validate took no lock: two runs on one --out both said ALL PASSED and one result was lost (the other's figure
left in the folder); its report was written in place (a kill during the write left a truncated summary.json).  It
now holds the folder's lock (exit status 3, the holder named) and writes every file atomically.

The engine is the cases' fake (fake_engine.py); the signals come from this process, once the validation has
started its first simulation (a marker file).
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import fake_engine as fe
import pytest
from stop_signal import signal_at_mark

from mcproton.validation import report, runner

CASE = "ranges_water"
PNG = "ranges_water_range_energy.png"
HERE = Path(__file__).resolve().parent

_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
import fake_engine as fe
from mcproton.validation import runner

def slow(*a, **k):
    Path({mark!r}).write_text("simulating")
    time.sleep(60)   # the signal comes meanwhile
    return fe.fake_simulate(*a, **k)

sys.exit(runner.main(["--out", sys.argv[1], "--cases", "stopping_power,{case}"], simulate_fn=slow))
"""


def _earlier_report(out: Path) -> dict:
    assert runner.main(["--out", str(out), "--cases", CASE], simulate_fn=fe.fake_simulate) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["all_passed"] is True and (out / PNG).is_file()
    return s


def _stopped(tmp_path: Path, out: Path, sig: int) -> tuple[int, str]:
    mark = tmp_path / "mark"
    script = tmp_path / "validate_slow.py"
    script.write_text(_SCRIPT.format(here=str(HERE), mark=str(mark), case=CASE))
    return signal_at_mark([sys.executable, str(script), str(out)], mark, sig)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_a_stopped_validation_leaves_no_earlier_pass_and_records_the_stop(tmp_path, sig):
    out = tmp_path / "v"
    first = _earlier_report(out)
    rc, err = _stopped(tmp_path, out, sig)
    name = signal.Signals(sig).name
    assert rc == 128 + sig, err
    assert f"mcproton validate: interrupted by {name} during case {CASE}" in err, err
    assert "cases done: stopping_power passed" in err and "no report was written" in err, err
    assert "earlier_validate_" in err and "records this interrupted validation" in err, err
    assert "Traceback" not in err, err
    s = json.loads((out / "summary.json").read_text())   # what a dashboard reads
    assert s["status"] == "interrupted" and s["all_passed"] is False and s["exit_status"] == 128 + sig, s
    assert s["cases"] == [] and s["cases_done"] == [{"name": "stopping_power", "status": "passed"}], s
    assert s["cases_not_done"] == [CASE] and s["signal"] == name
    assert not (out / "report.html").exists() and not (out / PNG).exists() and not (out / "stopping_power.png").exists()
    aside = Path(s["earlier_outputs_moved_to"])
    assert aside.parent == out and aside.name.startswith("earlier_validate_")
    kept = json.loads((aside / "summary.json").read_text())   # the earlier report, whole, set aside
    assert kept["generated"] == first["generated"] and (aside / "report.html").is_file() and (aside / PNG).is_file()
    assert not (out / ".mcproton-lock").exists()
    from mcproton.validation.markdown import write_markdown

    with pytest.raises(ValueError, match="stopped before its report was complete"):   # no REPORT.md from it
        write_markdown(out, tmp_path / "REPORT.md", tmp_path / "figs")

    # the next validation replaces the record and the earlier report set aside with its own complete report
    assert runner.main(["--out", str(out), "--cases", CASE], simulate_fn=fe.fake_simulate) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "complete" and s["all_passed"] is True
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.html", "summary.json", PNG])


def test_a_validation_stopped_while_writing_its_report_leaves_none_of_it(tmp_path, monkeypatch, capsys):
    """SIGTERM as the report is written (after the figures): the figures written are removed, and summary.json is
    the record of the stop, not a report."""
    out = tmp_path / "v"
    render = report.render_html

    def render_and_stop(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)   # handled at once, in this (the main) thread
        return render(*a, **k)

    def unhandled(*_):
        raise AssertionError("validate left SIGTERM to the handler it found (by default: the end of the process)")

    monkeypatch.setattr(report, "render_html", render_and_stop)
    old = signal.signal(signal.SIGTERM, unhandled)
    try:
        rc = runner.main(["--out", str(out), "--cases", CASE], simulate_fn=fe.fake_simulate)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert rc == 143
    err = capsys.readouterr().err
    assert "interrupted by SIGTERM while writing the report" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"], sorted(out.iterdir())
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["all_passed"] is False and s["cases_done"][0]["name"] == CASE


def test_a_second_validation_on_a_folder_being_written_is_refused(tmp_path, capsys):
    from mcproton._io.lock import OutputLock

    out = tmp_path / "v"
    first = _earlier_report(out)
    with OutputLock(out, "--out", folder=True):
        rc = runner.main(["--out", str(out), "--cases", CASE], simulate_fn=fe.fake_simulate)
    err = capsys.readouterr().err
    assert rc == 3 and "is being written by another run now" in err and f"pid {os.getpid()}" in err, err
    assert json.loads((out / "summary.json").read_text())["generated"] == first["generated"]   # left as it was


def test_the_report_files_are_written_atomically(tmp_path, monkeypatch):
    """A write that fails part-way (a full disk) leaves the earlier file whole under its name, no partial one."""
    import errno

    from mcproton._io import atomic

    out = tmp_path / "v"
    out.mkdir()
    (out / "summary.json").write_text('{"old": true}')
    real = atomic.atomic_write

    def failing(path, write):
        def half(fh):
            fh.write(b'{"half')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, half)

    monkeypatch.setattr(atomic, "atomic_write", failing)
    with pytest.raises(OSError):
        report.write_report(out, [], {"mode": "quick"})
    assert (out / "summary.json").read_text() == '{"old": true}'
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def _write_report_until_the_disk_is_full(monkeypatch):
    """validate's write_report, made to write the case's figure and then fail as a full disk fails."""
    import errno

    def write_report(out_dir, cases, meta, written=None):
        (Path(out_dir) / PNG).write_bytes(b"\x89PNG half")
        written.append(Path(out_dir) / PNG)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runner, "write_report", write_report)


def test_a_validation_ended_by_an_error_records_it_and_names_the_earlier_report(tmp_path, monkeypatch, capsys):
    """An error that is not a stop signal (a full disk while the report is written): before (review 2a of 2026-12-07,
    R3) the earlier report stayed in earlier_validate_<date>/, named by nothing and never removed, beside the new
    figure and no summary.json.  Now the new figure is removed, summary.json records the failed validation
    (``"status": "failed"``, the error, ``all_passed`` false, the folder of the earlier report), the error is raised
    on (exit status 3, a full disk), and the next validation removes the record and that folder, counting the files
    of the report it replaced (before: "(1 files)", the record)."""
    from mcproton.cli import main as cli_main

    out = tmp_path / "v"
    first = _earlier_report(out)
    (out / "notes.txt").write_text("the user's own")
    _write_report_until_the_disk_is_full(monkeypatch)
    capsys.readouterr()
    rc = cli_main(["validate", "--out", str(out), "--cases", CASE])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "mcproton validate: stopped by an error (OSError: [Errno 28] No space left on device) while writing the " \
           "report" in err and "records this failed validation" in err, err
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "failed" and s["all_passed"] is False and s["exit_status"] == 3, s
    assert "No space left on device" in s["error"] and s["cases"] == [], s
    aside = Path(s["earlier_outputs_moved_to"])
    assert aside.parent == out and aside.name.startswith("earlier_validate_")
    assert sorted(p.name for p in out.iterdir()) == sorted([aside.name, "notes.txt", "summary.json"])
    kept = json.loads((aside / "summary.json").read_text())
    assert kept["generated"] == first["generated"] and (aside / "report.html").is_file() and (aside / PNG).is_file()
    from mcproton.validation.markdown import write_markdown

    with pytest.raises(ValueError, match="stopped before its report was complete"):
        write_markdown(out, tmp_path / "REPORT.md", tmp_path / "figs")

    monkeypatch.undo()
    assert runner.main(["--out", str(out), "--cases", CASE], simulate_fn=fe.fake_simulate) == 0
    assert f"the earlier report in {out} (3 files) was replaced" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(["notes.txt", "report.html", "summary.json", PNG])
    assert json.loads((out / "summary.json").read_text())["status"] == "complete"


def test_a_validation_whose_record_cannot_be_written_puts_the_earlier_report_back(tmp_path, monkeypatch, capsys):
    """Where not even the record can be written (the disk stays full), the earlier report goes back where it was,
    rather than into a folder that nothing names."""
    import errno

    from mcproton._io import atomic

    out = tmp_path / "v"
    first = _earlier_report(out)
    _write_report_until_the_disk_is_full(monkeypatch)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "write_bytes_atomic", full)
    capsys.readouterr()
    with pytest.raises(OSError, match="No space left"):
        runner.main(["--out", str(out), "--cases", CASE], simulate_fn=fe.fake_simulate)
    err = capsys.readouterr().err
    assert "its record could not be written" in err and "was moved back into --out" in err, err
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.html", "summary.json", PNG])
    assert json.loads((out / "summary.json").read_text())["generated"] == first["generated"]

"""``mcproton check`` stopped by SIGINT/SIGTERM outside its MC, and an earlier report in ``--out`` (the long-runs
audit of 2026-12-05, F7 and F8; mcproton/_check/stop.py).

F7: during the gamma analysis a SIGTERM killed the check silently (status -15), leaving its lock and a lone
``RD_mc.dcm``, and the gamma worker processes printed tracebacks; a Ctrl-C (SIGINT to the whole process group)
printed the workers' tracebacks and "interrupted", without saying what was written.  F8: a re-check stopped
before its first write left the earlier report in ``--out`` while saying "nothing was kept".

No transport: the check reuses an MC dose made from the analytic dose of test_check.py's ``base`` (``mc=``); the
signal is sent from inside the check (a step replaced by one that signals), so it arrives at a known phase.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import _tps, base  # noqa: E402,F401  (base: test_check's module fixture)
from test_report import FAST, _fake_mc  # noqa: E402

from mcproton._check import api  # noqa: E402
from mcproton._run.job import RunInterrupted  # noqa: E402

#: the check of the subprocess: the gamma analysis in two worker processes, and the structure statistics (which
#: this process computes while the workers run) replaced by a step that waits until every worker is computing, then
#: sends the signal and waits for it.  The workers are held computing (their gamma replaced by a wait that first
#: leaves a file named by the worker's PID in a folder), so the signal arrives while they compute however loaded the
#: machine: a fixed 0.5 s sleep before (the mutation audit of 2026-12-05, F1) could come before they had started or
#: after they had finished, and the test then checked less than it says.
SCRIPT = textwrap.dedent("""
    import os, pickle, signal, subprocess, sys, time
    from pathlib import Path

    # a check started from a terminal, whose SIGHUP stops it: a test runner started with nohup (or another that
    # ignores SIGHUP) passes SIGHUP ignored on, and the check then rightly ignores it (_signals.stop_signals), so the
    # SIGHUP case failed there (the mutation audit of 2026-12-05, F1)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    import mcproton._check.api as api
    from mcproton._run.job import RunInterrupted

    d, mc_file, out, sig, group = Path(sys.argv[1]), sys.argv[2], sys.argv[3], getattr(signal, sys.argv[4]), sys.argv[5]
    marks = Path(sys.argv[6])
    mc = pickle.loads(Path(mc_file).read_bytes())
    # the held worker lets go of the check's stderr (inherited: a worker the check left running would keep the
    # test's pipe open, and the test would wait for it instead of finding it alive)
    HOLD = ("import os, pathlib, time\\n"
            "import mcproton._check.compare as _compare\\n"
            "def _computing(*args, **kwargs):\\n"
            "    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)\\n"
            f"    pathlib.Path({str(marks)!r}, str(os.getpid())).touch()\\n"
            "    time.sleep(600)\\n"
            "    os._exit(1)\\n"
            "_compare.gamma_3d_multi = _computing\\n")
    _popen, workers = subprocess.Popen, []

    def popen(args, *a, **kw):   # the gamma workers (python -c ...) held computing
        if isinstance(args, list) and len(args) == 3 and args[1] == "-c" and "_gamma_worker_main()" in args[2]:
            args = [args[0], "-c", args[2].replace("; _gamma_worker_main()", "\\n" + HOLD + "_gamma_worker_main()")]
            workers.append(args)
        return _popen(args, *a, **kw)

    subprocess.Popen = popen

    def stop(*args, **kwargs):
        deadline = time.monotonic() + 120
        while len(list(marks.iterdir())) < len(workers):   # every worker started is computing
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(list(marks.iterdir()))} of {len(workers)} gamma workers computing after "
                                     "120 s")
            time.sleep(0.02)
        os.killpg(0, sig) if group == "group" else os.kill(os.getpid(), sig)
        time.sleep(30)
        raise AssertionError("the signal did not stop the check")

    api.structure_stats = stop
    try:
        api.check(plan=d / "RP.dcm", dose=d / "stop_plan.dcm", ct=d / "ct", struct=d / "RS.dcm",
                  beam_model="dcpt_v2", mc=mc, out=out, gamma_points=200, gamma_workers=2, progress=False,
                  backend="cpu")
    except RunInterrupted as exc:
        print(f"mcproton: {exc}", file=sys.stderr)
        sys.exit(exc.code)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.needs_pymedphys   # the check in a subprocess, or its skip caught (tests/conftest.py)
@pytest.mark.parametrize("sig, to", [("SIGTERM", "self"), ("SIGINT", "group"), ("SIGHUP", "self")])
def test_a_check_stopped_during_its_gammas_says_what_was_written_and_leaves_no_lock(base, tmp_path, sig, to):  # noqa: F811
    """SIGTERM (a scheduler, kill) or SIGHUP (an ssh session dropped) to the check, or Ctrl-C in a terminal (SIGINT
    to every process of the group, the gamma workers too) while its gamma workers compute: exit status 128 +
    signal, the message says what --out holds (the MC RT Dose, no report), no traceback (the workers ignore SIGINT
    and are stopped by the check), no worker process left running, no lock left."""
    _tps(base, "stop_plan", base["blob"])
    mc_file = tmp_path / "mc.pickle"
    mc_file.write_bytes(pickle.dumps(_fake_mc(base, 1.05)))
    out = tmp_path / "chk"
    marks = tmp_path / "computing"
    marks.mkdir()
    script = tmp_path / "stop.py"
    script.write_text(SCRIPT)
    try:
        proc = subprocess.run([sys.executable, str(script), str(base["dir"]), str(mc_file), str(out), sig, to,
                               str(marks)], capture_output=True, text=True, timeout=300,
                              start_new_session=True)   # its own group
        pids = [int(p.name) for p in marks.iterdir()]
        err = proc.stderr
        assert proc.returncode == 128 + getattr(signal, sig), err
        assert "Traceback" not in err, err
        assert (f"mcproton: interrupted by {sig} after the MC (the comparison with the TPS dose, the gamma analysis, "
                f"the report); written in --out {out}: RD_mc.dcm; no report (check.html) and no result (check.json) "
                "were written: the folder holds no complete report") in err, err
        # no lock, no partial report: the MC dose and the record of this interrupted check (integrators' audit
        # 2026-12-06, F1: a check.json that says what happened, not nothing or an earlier verdict)
        assert sorted(p.name for p in out.iterdir()) == ["RD_mc.dcm", "check.json"]
        record = json.loads((out / "check.json").read_text())
        assert record["status"] == "interrupted" and record["exit_status"] == 128 + getattr(signal, sig), record
        assert record["passed"] is False and record["provenance"]["identification"]["PatientID"], record
        assert f"{out / 'check.json'} records this interrupted check" in err, err
        # both workers were computing when the signal came (with one core the check computes the gammas itself,
        # without workers), and the check stopped them
        assert len(pids) == (2 if (os.cpu_count() or 1) >= 2 else 0), pids
        assert not [p for p in pids if _alive(p)], pids
    finally:   # a worker the check left running (the test failed): not left behind
        for p in marks.iterdir():
            if _alive(int(p.name)):
                os.kill(int(p.name), signal.SIGKILL)


def _earlier_report(out: Path) -> dict[str, str]:
    """An earlier check's report in ``out`` (what out_dir recognises as one: the title, the JSON's keys)."""
    out.mkdir()
    (out / "check.html").write_text("<!DOCTYPE html><html><head><title>mcproton check: earlier</title></head></html>")
    (out / "check.json").write_text(json.dumps({"passed": True, "checks": [], "provenance": {}}))
    return {p.name: p.read_text() for p in out.iterdir()}


def _set_aside(out: Path) -> Path:
    """The one earlier_check_<date>/ folder in ``out``."""
    moved = list(out.glob("earlier_check_*"))
    assert len(moved) == 1, sorted(p.name for p in out.iterdir())
    return moved[0]


@pytest.mark.needs_pymedphys   # the check in a subprocess, or its skip caught (tests/conftest.py)
def test_a_recheck_stopped_before_its_first_write_moves_the_earlier_report_aside(base, tmp_path):  # noqa: F811
    """F8, and the integrators' audit of 2026-12-06, F1: the earlier report is moved into earlier_check_<date>/ as
    the check starts, and a check stopped before its first write (here SIGINT while the structures are compared
    with the body) leaves the record of its interruption as check.json and says where the earlier report went (before
    F1 the earlier PASS check.json stayed in --out, unmarked, read by a script as tonight's result)."""
    out = tmp_path / "chk"
    before = _earlier_report(out)
    dose = _tps(base, "stop_plan", base["blob"])
    logs: list[str] = []

    def sigint(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the signal did not stop the check")

    d = base["dir"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "tps_outside_body", sigint)
        with pytest.raises(BaseException) as exc:   # before: KeyboardInterrupt (caught: it would end pytest)
            api.check(plan=d / "RP.dcm", dose=dose, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                      mc=_fake_mc(base, 1.05), out=out, log=logs.append, **FAST)
    msg = str(exc.value)
    assert isinstance(exc.value, RunInterrupted) and exc.value.code == 130, repr(exc.value)
    assert msg.startswith("interrupted by SIGINT after the MC"), msg
    moved = _set_aside(out)
    assert (f"nothing of this check's was written to --out {out}; the earlier check's outputs found there "
            f"(check.html, check.json, written ") in msg and f"were moved into {moved}: they are not the result of " \
        "this check" in msg, msg
    assert {p.name: p.read_text() for p in moved.iterdir()} == before   # kept as they were
    assert sorted(p.name for p in out.iterdir()) == ["check.json", moved.name]   # no lock
    record = json.loads((out / "check.json").read_text())
    assert record["status"] == "interrupted" and record["exit_status"] == 130 and record["passed"] is False
    assert record["earlier_outputs_moved_to"] == str(moved) and exc.value.check_record["status"] == "interrupted"
    assert any(f"--out {out} holds an earlier check's outputs (check.html, check.json, written " in m
               and "moved aside now" in m for m in logs), logs


def test_the_mcs_interrupt_leaves_a_record_not_the_earlier_report(base, tmp_path, monkeypatch):  # noqa: F811
    """F8 and integrators' F1: the MC's own interrupt ("... nothing was kept: run it again") gains what --out holds;
    the earlier report is in earlier_check_<date>/, and check.json records the interruption (exit status 143)."""
    out = tmp_path / "chk"
    before = _earlier_report(out)
    dose = _tps(base, "stop_plan", base["blob"])

    def interrupted(*args, **kwargs):
        raise RunInterrupted("interrupted by SIGTERM after 4,000 of 10,000 primaries of beam 1; no checkpoint "
                             "(checkpointing is off); nothing was kept: run it again", 143)

    monkeypatch.setattr(api, "run_mc", interrupted)
    d = base["dir"]
    with pytest.raises(RunInterrupted) as exc:
        api.check(plan=d / "RP.dcm", dose=dose, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2", out=out,
                  log=lambda m: None, **FAST)
    assert exc.value.code == 143
    moved = _set_aside(out)
    assert str(exc.value).startswith("interrupted by SIGTERM after 4,000 of 10,000 primaries of beam 1; no "
                                     "checkpoint (checkpointing is off); nothing was kept: run it again; nothing "
                                     f"of this check's was written to --out {out}; the earlier check's outputs "
                                     "found there (check.html, check.json, written "), exc.value
    assert {p.name: p.read_text() for p in moved.iterdir()} == before
    record = json.loads((out / "check.json").read_text())
    assert record["status"] == "interrupted" and record["exit_status"] == 143, record
    assert record["provenance"]["identification"]["SOPInstanceUID"], record


def test_an_internal_error_after_the_mc_moves_the_earlier_report_aside(base, tmp_path, monkeypatch):  # noqa: F811
    """Integrators' audit of 2026-12-06, F12: an internal error after the MC (the first write done: RD_mc.dcm)
    deleted the earlier report, though docs/check.md says it is moved into earlier_check_<date>/."""
    from mcproton.errors import McprotonInternalError

    out = tmp_path / "chk"
    before = _earlier_report(out)
    dose = _tps(base, "stop_plan", base["blob"])

    def bug(*args, **kwargs):
        raise McprotonInternalError("a simulated bug")

    monkeypatch.setattr(api, "dose_difference", bug)
    d = base["dir"]
    with pytest.raises(McprotonInternalError):
        api.check(plan=d / "RP.dcm", dose=dose, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                  mc=_fake_mc(base, 1.05), out=out, log=lambda m: None, **FAST)
    moved = _set_aside(out)
    assert {p.name: p.read_text() for p in moved.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["RD_mc.dcm", "check.json", moved.name]
    record = json.loads((out / "check.json").read_text())
    assert record["status"] == "internal_error" and record["exit_status"] == 4
    assert record["earlier_outputs_moved_to"] == str(moved)


def test_a_complete_recheck_replaces_the_earlier_report(base, tmp_path):  # noqa: F811
    """The earlier outputs set aside as the check starts are removed once its report is complete (replaced, as
    before): no earlier_check_<date>/ folder accumulates in a --out re-checked every night."""
    out = tmp_path / "chk"
    _earlier_report(out)
    dose = _tps(base, "stop_plan", base["blob"])
    logs: list[str] = []
    d = base["dir"]
    res = api.check(plan=d / "RP.dcm", dose=dose, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                    mc=_fake_mc(base, 1.05), out=out, log=logs.append, report=False, **FAST)
    assert not list(out.glob("earlier_check_*")), sorted(p.name for p in out.iterdir())
    record = json.loads((out / "check.json").read_text())
    assert record["status"] == ("pass" if res.passed else "fail")
    assert record["exit_status"] == (0 if res.passed else 1)   # every check.json has one (integrators' F9)
    assert any(m.startswith(f"mcproton check: removed the earlier check's outputs in {out}: check.html, check.json")
               for m in logs), logs


def test_a_check_set_aside_by_a_stopped_batch_goes_with_its_record(tmp_path):
    """Review 5 of 2026-12-06, F4: a batch stopped before a patient set its complete check aside into
    earlier_check_<date>/ and wrote a not_checked record naming it; the next night's check of the patient afresh
    removed that record, and the folder (last night's check.json and report) stayed beside tonight's complete report,
    named by nothing.  It now goes with the earlier outputs: removed once the report is complete; where the check
    does not complete, kept inside the folder its record names."""
    import types

    from mcproton._check import out_dir

    inp = types.SimpleNamespace(plan_path=None, struct_path=None, ct_dir=None, total=None, beams={})
    for complete in (True, False):
        p = tmp_path / f"complete_{complete}" / "P1"
        p.mkdir(parents=True)
        (p / "check.json").write_text(json.dumps({"schema_version": 1, "status": "fail", "passed": False,
                                                 "checks": [], "provenance": {}, "settings": {}}))
        (p / "check.html").write_text("<html><head><title>mcproton check: last night</title>")
        api._pending_set_aside(p.parent, ["P1"], "not checked: the batch stopped", lambda m: None)
        (old,) = p.glob("earlier_check_*")
        earlier = out_dir.prepare_out(p, inp, lambda m: None)   # tonight's check of P1, afresh
        earlier()
        if complete:
            (p / "check.json").write_text(json.dumps({"status": "pass", "passed": True, "checks": [],
                                                     "provenance": {}}))
            (p / "check.html").write_text("<title>mcproton check: tonight</title>")
            earlier.discard()
            assert sorted(x.name for x in p.iterdir()) == ["check.html", "check.json"]
            continue
        assert not old.exists() and earlier.moved_to is not None
        kept = earlier.moved_to / old.name
        assert sorted(x.name for x in kept.iterdir()) == ["check.html", "check.json"]
        rec = out_dir.record_failure(p, ValueError("refused"), ours_written=False, started=None, inputs={},
                                     invocation={}, log=lambda m: None, moved_to=earlier.moved_to)
        assert rec["earlier_outputs_moved_to"] == str(earlier.moved_to)
        assert json.loads((kept / "check.json").read_text())["status"] == "fail"   # last night's, kept


def test_a_record_replaced_keeps_naming_the_check_set_aside(tmp_path):
    """Review 5, F4: a check that fails before it looks at --out (its inputs refused) replaces a not_checked record;
    the earlier check that record named stays named by the new one."""
    from mcproton._check import out_dir

    p = tmp_path / "P1"
    p.mkdir()
    (p / "check.json").write_text(json.dumps({"schema_version": 1, "status": "pass", "passed": True, "checks": [],
                                             "provenance": {}, "settings": {}}))
    api._pending_set_aside(tmp_path, ["P1"], "not checked: the batch stopped", lambda m: None)
    (old,) = p.glob("earlier_check_*")
    rec = out_dir.record_failure(p, ValueError("refused"), ours_written=False, started=None, inputs={},
                                 invocation={}, log=lambda m: None)
    assert rec["status"] == "refused" and rec["earlier_outputs_moved_to"] == str(old)
    assert json.loads((p / "check.json").read_text())["earlier_outputs_moved_to"] == str(old)


def test_the_message_of_a_check_stopped_after_its_mc_does_not_call_check_json_both_written_and_not(tmp_path):
    """The concurrency audit 25, F7: a check stopped after its MC said "... not written: check.html, check.json ...;
    chk/check.json records this interrupted check": the same message called check.json both not written and written.
    It now says that no report and no result were written, and that check.json records the interruption."""
    from mcproton._check.out_dir import EarlierOutputs
    from mcproton._check.stop import CheckStopped, progress, stops_cleanly

    out = tmp_path / "chk"

    @stops_cleanly
    def stopped_check(out=None, report=True, log=None):
        out.mkdir()
        earlier = EarlierOutputs(out, [], log)
        progress("after the MC (the comparison with the TPS dose, the gamma analysis, the report)", earlier=earlier)
        earlier()   # this check's first write
        (out / "RD_mc.dcm").write_bytes(b"the MC dose")
        raise CheckStopped(signal.SIGTERM)

    with pytest.raises(RunInterrupted) as exc:
        stopped_check(out=out, log=lambda m: None)
    msg = str(exc.value)
    assert exc.value.code == 128 + signal.SIGTERM
    assert (f"interrupted by SIGTERM after the MC (the comparison with the TPS dose, the gamma analysis, the report); "
            f"written in --out {out}: RD_mc.dcm; no report (check.html) and no result (check.json) were written: the "
            "folder holds no complete report; the check has no --resume: run it again; "
            f"{out / 'check.json'} records this interrupted check (not a result)") == msg, msg
    assert "not written: check.html, check.json" not in msg
    assert json.loads((out / "check.json").read_text())["status"] == "interrupted"

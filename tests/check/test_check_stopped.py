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
                f"the report); written in --out {out}: RD_mc.dcm; not written: check.html, check.json: the folder "
                "holds no complete report") in err, err
        assert sorted(p.name for p in out.iterdir()) == ["RD_mc.dcm"]   # no lock, no partial report
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


def test_a_recheck_stopped_before_its_first_write_says_the_earlier_report_is_still_there(base, tmp_path):  # noqa: F811
    """F8: a note at the start names the earlier report (it is replaced at the first write), and a check stopped
    before that (here SIGINT while the structures are compared with the body) says the earlier report is still in
    --out, left as it was, and is not the result of this check (before: KeyboardInterrupt, "interrupted")."""
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
    assert (f"nothing was written to --out {out}, which still holds an earlier check's outputs (check.html, "
            "check.json, written ") in msg and "left as they were: they are not the result of this check" in msg, msg
    assert {p.name: p.read_text() for p in out.iterdir()} == before   # left as it was, no lock
    assert any(f"--out {out} holds an earlier check's outputs (check.html, check.json, written " in m
               and "removed just before its first write" in m for m in logs), logs


def test_the_mcs_interrupt_message_says_the_earlier_report_is_still_there(base, tmp_path, monkeypatch):  # noqa: F811
    """F8: the MC's own interrupt ("... nothing was kept: run it again") gains what --out holds."""
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
    assert str(exc.value).startswith("interrupted by SIGTERM after 4,000 of 10,000 primaries of beam 1; no "
                                     "checkpoint (checkpointing is off); nothing was kept: run it again; nothing "
                                     f"was written to --out {out}, which still holds an earlier check's outputs "
                                     "(check.html, check.json, written "), exc.value
    assert {p.name: p.read_text() for p in out.iterdir()} == before

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
#: this process computes while the workers run) replaced by a step that sends the signal and waits for it
SCRIPT = textwrap.dedent("""
    import os, pickle, signal, sys, time
    from pathlib import Path
    import mcproton._check.api as api
    from mcproton._run.job import RunInterrupted

    d, mc_file, out, sig, group = Path(sys.argv[1]), sys.argv[2], sys.argv[3], getattr(signal, sys.argv[4]), sys.argv[5]
    mc = pickle.loads(Path(mc_file).read_bytes())

    def stop(*args, **kwargs):
        time.sleep(0.5)   # the workers are computing
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


@pytest.mark.parametrize("sig, to", [("SIGTERM", "self"), ("SIGINT", "group"), ("SIGHUP", "self")])
def test_a_check_stopped_during_its_gammas_says_what_was_written_and_leaves_no_lock(base, tmp_path, sig, to):  # noqa: F811
    """SIGTERM (a scheduler, kill) or SIGHUP (an ssh session dropped) to the check, or Ctrl-C in a terminal (SIGINT
    to every process of the group, the gamma workers too): exit status 128 + signal, the message says what --out
    holds (the MC RT Dose, no report), no traceback (the workers ignore SIGINT and are stopped by the check), no
    lock left."""
    _tps(base, "stop_plan", base["blob"])
    mc_file = tmp_path / "mc.pickle"
    mc_file.write_bytes(pickle.dumps(_fake_mc(base, 1.05)))
    out = tmp_path / "chk"
    script = tmp_path / "stop.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(base["dir"]), str(mc_file), str(out), sig, to],
                          capture_output=True, text=True, timeout=300, start_new_session=True)   # its own group
    err = proc.stderr
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert "Traceback" not in err, err
    assert (f"mcproton: interrupted by {sig} after the MC (the comparison with the TPS dose, the gamma analysis, the "
            f"report); written in --out {out}: RD_mc.dcm; not written: check.html, check.json: the folder holds no "
            "complete report") in err, err
    assert sorted(p.name for p in out.iterdir()) == ["RD_mc.dcm"]   # no lock, no partial report


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

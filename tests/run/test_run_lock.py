"""One run (or check) per output at a time: the output lock (mcproton/_io/lock.py).

The long-runs audit (2026-12-05, F1/F5/F13): two ``mcproton run`` with one ``--out`` both exited 0 and one result was
lost; a live run's checkpoint was called "an interrupted run" with the advice to resume it; an earlier output was
replaced without a word.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from run_helpers import cli_popen

from mcproton.cli import main


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _lock_of(pid: int, host: str | None = None) -> str:
    from mcproton._io.lock import _proc_start

    return json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2026-12-02 03:04:05 UTC",
                       "command": "mcproton run other.toml --out o.h5", "proc_start": _proc_start(pid)})


def test_a_second_run_on_a_live_runs_output_is_refused_naming_it(small_cfg, tmp_path, capsys):
    """F1: while run A writes o.h5 (a real run in another process), run B on the same --out exits 2 naming A's pid;
    A ends normally and its lock is gone."""
    cfg = small_cfg(200_000, batch_size=2000, checkpoint_interval_s=0)
    out = tmp_path / "o.h5"
    lock = tmp_path / "o.h5.lock"
    a = cli_popen("run", cfg, "--out", out, "--quiet")
    try:
        deadline = time.monotonic() + 120
        while not lock.exists() and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.exists(), "run A ended before it could be met"
        rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "beam.energy_mev=100"])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"pid {a.pid} on host {socket.gethostname()}" in err and "being written by another run" in err
        # F5: the same run with --resume is refused by the lock too, not told that A's checkpoint is an
        # "interrupted run"
        rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"])
        err = capsys.readouterr().err
        assert rc == 2 and "interrupted run" not in err and f"pid {a.pid}" in err
    finally:
        a.send_signal(signal.SIGTERM) if a.poll() is None else None
        a.communicate(timeout=120)
    assert not lock.exists()


def test_a_live_lock_is_refused_and_a_stale_one_taken_over(small_cfg, tmp_path, capsys):
    cfg = small_cfg(2000)
    out = tmp_path / "o.h5"
    lock = tmp_path / "o.h5.lock"
    sleeper = _sleeper()
    try:
        lock.write_text(_lock_of(sleeper.pid))
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"pid {sleeper.pid}" in err and "2026-12-02 03:04:05" in err and str(lock) in err
        assert lock.exists() and not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone (killed without cleaning up): its lock is stale and taken over, with a note
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "took over the lock" in err and f"pid {sleeper.pid} no longer exists" in err
    assert out.exists() and not lock.exists()


def test_a_lock_of_another_host_is_refused_with_the_way_out(small_cfg, tmp_path, capsys):
    cfg = small_cfg(2000)
    out = tmp_path / "o.h5"
    (tmp_path / "o.h5.lock").write_text(_lock_of(1, host="node-17"))
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "node-17" in err and "cannot be checked from here" in err and "delete" in err


def test_the_rt_dose_is_locked_too(small_cfg, tmp_path, capsys):
    """Two runs with different --out but one --rtdose would lose one RT Dose."""
    cfg = small_cfg(2000)
    cfg.write_text(cfg.read_text().replace("[beam]", "[beam]\ntotal_protons = 1e9"))
    sleeper = _sleeper()
    try:
        (tmp_path / "rd.dcm.lock").write_text(_lock_of(sleeper.pid))
        assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(tmp_path / "rd.dcm"),
                     "--quiet"]) == 2
        assert f"pid {sleeper.pid}" in capsys.readouterr().err
        assert not (tmp_path / "o.h5.lock").exists()   # the lock taken before is given back
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_earlier_output_replaced_is_named(small_cfg, tmp_path, capsys):
    """F13: re-running into an existing --out replaces it (the usual re-run), with a note naming it."""
    cfg = small_cfg(2000)
    out = tmp_path / "o.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "replacing" not in capsys.readouterr().err
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "replacing the existing output(s) of an earlier run" in err and str(out) in err


def test_check_out_folders_are_locked(tmp_path, capsys):
    """mcproton check --out and --batch: two checks never write one folder at once."""
    from mcproton import check
    from mcproton._check.api import check_batch
    from mcproton._io.lock import OutputLockedError

    sleeper = _sleeper()
    try:
        (tmp_path / "chk.lock").write_text(_lock_of(sleeper.pid))
        with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid}"):
            check(plan=tmp_path / "missing.dcm", out=tmp_path / "chk")
        (tmp_path / "patients").mkdir()
        with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid}"):
            check_batch(tmp_path / "patients", tmp_path / "chk")
        rc = main(["check", str(tmp_path / "patients"), "--batch", "--out", str(tmp_path / "chk")])
        assert rc == 2 and f"pid {sleeper.pid}" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (tmp_path / "chk").exists()
    # a refused check leaves no lock and no folder made for it
    with pytest.raises(Exception):
        check(plan=tmp_path / "missing.dcm", out=tmp_path / "new" / "chk")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chk.lock", "patients"]


def test_lock_file_names_the_holder(tmp_path):
    from mcproton._io.lock import OutputLock

    with OutputLock(tmp_path / "a" / "o.h5") as lk:
        info = json.loads((tmp_path / "a" / "o.h5.lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["started"]
        assert lk.held
    assert not (tmp_path / "a").exists()   # made for the lock, empty again: removed

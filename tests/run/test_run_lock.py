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
from fakes import log_lines  # tests/fakes.py
from run_helpers import cli_popen

from mcproton.cli import main


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _lock_of(pid: int, host: str | None = None, **extra) -> str:
    from mcproton._io.lock import _proc_start

    return json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2026-12-02 03:04:05 UTC",
                       "command": "mcproton run other.toml --out o.h5", "proc_start": _proc_start(pid), **extra})


def test_a_second_run_on_a_live_runs_output_is_refused_naming_it(small_cfg, tmp_path, capsys):
    """F1: while run A writes o.h5 (a real run in another process), run B on the same --out exits 2 naming A's pid;
    A ends normally and its lock is gone."""
    # A is never to end on its own while B is tried (200 000 primaries left a window of about 1.3 s for the two
    # calls below, a review found): the finally stops it, at the end of its 2000-primary batch
    cfg = small_cfg(10**8, batch_size=2000, checkpoint_interval_s=0)
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
        assert rc == 3
        assert f"pid {a.pid} on host {socket.gethostname()}" in err and "being written by another run" in err
        # F5: the same run with --resume is refused by the lock too, not told that A's checkpoint is an
        # "interrupted run"
        rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"])
        err = capsys.readouterr().err
        assert rc == 3 and "interrupted run" not in err and f"pid {a.pid}" in err
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
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 3
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
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 3
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
                     "--quiet"]) == 3
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
    from mcproton._io.errors import CheckInputError
    from mcproton._io.lock import OutputLockedError

    sleeper = _sleeper()
    try:
        (tmp_path / "chk").mkdir()
        (tmp_path / "chk" / ".mcproton-lock").write_text(_lock_of(sleeper.pid))
        with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid}"):
            check(plan=tmp_path / "missing.dcm", out=tmp_path / "chk")
        (tmp_path / "patients").mkdir()
        with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid}"):
            check_batch(tmp_path / "patients", tmp_path / "chk")
        rc = main(["check", str(tmp_path / "patients"), "--batch", "--beam-model", "dcpt_v5", "--out",
                   str(tmp_path / "chk")])
        assert rc == 3 and f"pid {sleeper.pid}" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in (tmp_path / "chk").iterdir()) == [".mcproton-lock"]   # the other run's, kept
    # a refused check leaves no lock and no folder made for it (the refusal itself, not any error: a TypeError in the
    # lock code passed here before, tests-health audit of 2026-12-06, F6)
    with pytest.raises(CheckInputError, match=r"missing\.dcm.* does not exist"):
        check(plan=tmp_path / "missing.dcm", out=tmp_path / "new" / "chk")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chk", "patients"]


def test_lock_file_names_the_holder(tmp_path):
    from mcproton._io.lock import OutputLock

    with OutputLock(tmp_path / "a" / "o.h5") as lk:
        info = json.loads((tmp_path / "a" / "o.h5.lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["started"]
        assert lk.held
    assert not (tmp_path / "a").exists()   # made for the lock, empty again: removed


@pytest.mark.parametrize("argv0, command", [
    ("/venv/lib/python3.12/site-packages/mcproton/__main__.py", "mcproton demo --out D6 --primaries 2000"),   # -m
    ("/work/main/mcproton/cli.py", "mcproton demo --out D6 --primaries 2000"),   # python -m mcproton.cli
    ("/venv/bin/mcproton", "mcproton demo --out D6 --primaries 2000"),           # the script
    ("my_batch.py", "my_batch.py demo --out D6 --primaries 2000"),               # a script of the user's
])
def test_the_lock_records_the_command_as_it_is_typed(tmp_path, monkeypatch, argv0, command):
    """Under ``python -m mcproton`` the lock's command, shown in refusals and stale-lock notes, was the path of
    mcproton/__main__.py, which nobody can type (review 2a of 2026-12-07, R5): it is now ``mcproton ...``."""
    from mcproton._io.lock import OutputLock

    monkeypatch.setattr(sys, "argv", [argv0, "demo", "--out", "D6", "--primaries", "2000"])
    with OutputLock(tmp_path / "D6", "--out", folder=True):
        assert json.loads((tmp_path / "D6" / ".mcproton-lock").read_text())["command"] == command


def _unshare_ok() -> bool:
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _unshare_ok(), reason="needs unshare --pid (root or user namespaces)")
def test_a_live_lock_of_another_pid_namespace_is_refused(tmp_path):
    """A review (P3): a container sharing the host's name but not its pids (docker --uts host, unshare -p) could not
    see the holder's pid and took its live lock over; both runs exited 0 and one result was lost."""
    from mcproton._io.lock import OutputLock, OutputLockedError

    out = tmp_path / "o.h5"
    code = ("import sys; from mcproton._io.lock import OutputLock\n"
            "with OutputLock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")
    a = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code, str(out)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert a.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError) as ei:
            with OutputLock(out, "the output"):
                pass
        msg = str(ei.value)
        assert "another PID namespace" in msg and "cannot be checked from here" in msg, msg
        assert f"delete {tmp_path / 'o.h5.lock'}" in msg, msg
    finally:
        a.communicate("", timeout=60)
    assert a.returncode == 0 and not (tmp_path / "o.h5.lock").exists()


def test_a_lock_of_another_pid_namespace_is_not_taken_over_even_if_its_pid_is_gone_here(small_cfg, tmp_path,
                                                                                         capsys):
    from mcproton._io.lock import _boot_id

    cfg = small_cfg(2000)
    sleeper = _sleeper()
    sleeper.kill()
    sleeper.wait()
    lock = tmp_path / "o.h5.lock"
    lock.write_text(_lock_of(sleeper.pid, boot_id=_boot_id(), pid_ns=1))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "another PID namespace" in err and f"delete {lock}" in err and lock.exists(), err


def test_a_lock_from_before_the_host_rebooted_is_taken_over(small_cfg, tmp_path, capsys):
    """A lock of this host with another boot id: its run ended with the boot, whatever process has its pid now
    (or in whatever PID namespace it ran)."""
    cfg = small_cfg(2000)
    out = tmp_path / "o.h5"
    sleeper = _sleeper()
    try:
        (tmp_path / "o.h5.lock").write_text(_lock_of(sleeper.pid, boot_id="0ld-b00t", pid_ns=1))
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    finally:
        sleeper.kill()
        sleeper.wait()
    err = capsys.readouterr().err
    assert "took over the lock" in err and "booted again since (boot id 0ld-b00t" in err, err
    assert out.exists() and not (tmp_path / "o.h5.lock").exists()


def test_the_lock_records_boot_and_pid_namespace(tmp_path):
    from mcproton._io.lock import OutputLock, _boot_id, _pid_namespace

    with OutputLock(tmp_path / "o.h5"):
        info = json.loads((tmp_path / "o.h5.lock").read_text())
    assert info["boot_id"] == _boot_id() and info["pid_ns"] == _pid_namespace()
    if os.path.exists("/proc/self/ns/pid"):
        assert info["boot_id"] and info["pid_ns"]


def test_release_leaves_a_lock_that_is_not_its_own(tmp_path):
    """A review (P3): after a wrong takeover, the first run's release deleted the second run's lock."""
    from mcproton._io.lock import OutputLock, drop_held_locks

    lock = tmp_path / "o.h5.lock"
    with OutputLock(tmp_path / "o.h5"):
        lock.write_text(_lock_of(4242, host="node-9"))   # another run took it over meanwhile
    assert lock.exists() and "node-9" in lock.read_text()
    lk = OutputLock(tmp_path / "p.h5").__enter__()
    (tmp_path / "p.h5.lock").write_text(_lock_of(4242, host="node-9"))
    drop_held_locks()   # the second signal's hard stop
    assert (tmp_path / "p.h5.lock").exists() and lk.held
    lk.release()
    assert (tmp_path / "p.h5.lock").exists()


def test_a_stale_lock_with_this_processs_own_pid_is_taken_over(small_cfg, tmp_path, capsys):
    """A review (P5): a container restarted after an OOM kill runs mcproton as pid 1 again; its --resume was refused
    by its own earlier run's lock ("being written by another run now: pid 1")."""
    cfg = small_cfg(2000)
    out = tmp_path / "o.h5"
    lock = tmp_path / "o.h5.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-12-01 00:00:00 UTC",
                                "command": "mcproton run job.toml --out o.h5", "proc_start": "12345"}))
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "took over the lock" in err and f"pid {os.getpid()} is this process's now" in err, err
    assert out.exists() and not lock.exists()


def test_a_lock_this_process_holds_is_not_taken_twice(tmp_path):
    from mcproton._io.lock import OutputLock, OutputLockedError

    with OutputLock(tmp_path / "o.h5"):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            with OutputLock(tmp_path / "o.h5"):
                pass
        assert (tmp_path / "o.h5.lock").exists()
    assert not (tmp_path / "o.h5.lock").exists()


def test_a_folder_output_is_locked_inside_it_and_the_lock_removed(tmp_path):
    """A review (P4): the lock of check --out DIR was DIR.lock in DIR's parent, which may not be writable
    (``--out ~``, a per-user folder of a QA share): the check was refused with a bare [Errno 30]."""
    from mcproton._io.lock import locks_output

    seen = {}

    @locks_output()
    def fake_check(out, log=None):
        seen["in"] = sorted(p.name for p in out.iterdir())
        seen["beside"] = sorted(p.name for p in out.parent.iterdir())

    fake_check(tmp_path / "new" / "chk")
    assert seen == {"in": [".mcproton-lock"], "beside": ["chk"]}
    assert not (tmp_path / "new").exists()   # made for the lock and empty again
    (tmp_path / "chk").mkdir()
    fake_check(tmp_path / "chk")
    assert seen["in"] == [".mcproton-lock"] and list((tmp_path / "chk").iterdir()) == []


def test_an_os_error_taking_a_lock_says_what_where_and_what_to_do(tmp_path, monkeypatch, capsys):
    import errno

    from mcproton._io import lock as lockmod

    real_open = os.open

    def ro_open(path, *a, **k):
        if str(path).endswith((".lock", "-lock")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(lockmod.os, "open", ro_open)
    (tmp_path / "patients").mkdir()
    rc = main(["check", str(tmp_path / "patients"), "--batch", "--beam-model", "dcpt_v5", "--out",
                   str(tmp_path / "chk")])
    err = capsys.readouterr().err
    assert rc == 3 and "Errno" not in err, err
    assert (f"--out {tmp_path / 'chk'}: could not create its lock file {tmp_path / 'chk' / '.mcproton-lock'} (the "
            "file system is read-only)") in err and "give an output in a folder you can write to" in err, err


def test_a_checks_own_output_folder_logic_leaves_its_lock_alone(tmp_path):
    """prepare_out (mcproton/_check/out_dir.py) refuses files the check did not write and removes an earlier
    check's: the lock inside the folder is neither."""
    from types import SimpleNamespace

    from mcproton._check.out_dir import prepare_out
    from mcproton._io.lock import OutputLock

    out = tmp_path / "chk"
    inp = SimpleNamespace(plan_path=None, struct_path=None, ct_dir=None, total=None, beams={})
    with OutputLock(out, "--out", folder=True):
        logs: list[str] = []
        assert prepare_out(out, inp, logs.append)() == [] and logs == []
        assert [p.name for p in out.iterdir()] == [".mcproton-lock"]
    assert not out.exists()   # made for the lock, empty again: removed


def test_runs_sharing_a_checkpoint_name_are_refused_naming_the_other(small_cfg, tmp_path, capsys):
    """The long-runs audit F4: the checkpoint and the plot are named after --out without .h5/.hdf5, so --out x.h5
    and --out x.hdf5 share x.ckpt.h5 and x.png; only <out>.lock was taken, so two such runs overwrote and deleted
    each other's checkpoint.  A live run A (another process) on x.h5: run B on x.hdf5 is refused naming A and
    saying what the shared file is to both; A's lock files cover its checkpoint and name its role."""
    cfg = small_cfg(10**8, batch_size=2000, checkpoint_interval_s=0)
    ckpt_lock = tmp_path / "x.ckpt.h5.lock"
    a = cli_popen("run", cfg, "--out", tmp_path / "x.h5", "--quiet")
    try:
        deadline = time.monotonic() + 120
        while not ckpt_lock.exists() and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ckpt_lock.exists(), "run A ended before it could be met (or did not lock its checkpoint)"
        # the lock is created empty (O_CREAT | O_EXCL) and then written: under load (the clean-clone CI of
        # 2026-12-07, load 11 on 2 cores) it was read in between and held no JSON yet (a reader of an empty lock is
        # refused as "unreadable", not let in: test_a_lock_created_but_not_yet_written_is_not_taken)
        while not ckpt_lock.read_text() and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert json.loads(ckpt_lock.read_text())["role"] == f"the checkpoint of --out {tmp_path / 'x.h5'}"
        rc = main(["run", str(cfg), "--out", str(tmp_path / "x.hdf5"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 3, err
        assert (f"{tmp_path / 'x.ckpt.h5'} (the checkpoint of --out {tmp_path / 'x.hdf5'}) is being written by "
                f"another run now, as the checkpoint of --out {tmp_path / 'x.h5'}: pid {a.pid}") in err, err
        assert not (tmp_path / "x.hdf5.lock").exists()   # the lock taken before is given back
        assert a.poll() is None   # A goes on
        # A takes its locks at start-up, before its stop handlers: it is signalled once in its batches (its first
        # checkpoint written), not while it may still be starting (under load, CI 2026-12-05: killed by the signal)
        while not (tmp_path / "x.ckpt.h5").exists() and a.poll() is None and time.monotonic() < deadline + 120:
            time.sleep(0.02)
    finally:
        a.send_signal(signal.SIGTERM) if a.poll() is None else None
        a.communicate(timeout=120)
    assert a.returncode == 128 + signal.SIGTERM and (tmp_path / "x.ckpt.h5").exists()   # A's checkpoint is A's
    assert not ckpt_lock.exists()


def test_the_plot_is_locked_too(small_cfg, tmp_path, capsys):
    """F4: a held lock of the plot (x.png, the plot of a live --out x.h5) refuses a run on --out x (whose plot is
    x.png too), naming the holder."""
    cfg = small_cfg(2000)
    cfg.write_text(cfg.read_text().replace("plot = false", "plot = true"))
    sleeper = _sleeper()
    try:
        (tmp_path / "x.png.lock").write_text(_lock_of(sleeper.pid, role="the plot of --out x.h5"))
        assert main(["run", str(cfg), "--out", str(tmp_path / "x"), "--quiet"]) == 3
        err = capsys.readouterr().err
        assert f"pid {sleeper.pid}" in err and "as the plot of --out x.h5" in err, err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "x.png.lock"]   # nothing else left
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_out_named_like_a_checkpoint_is_refused(small_cfg, tmp_path, capsys):
    """F4: --out a.ckpt.h5 beside a running --out a.h5 was told it replaced "an earlier output" (the live
    checkpoint), then its own result was overwritten by the other run's next checkpoint and deleted with it; it
    exited 0.  Such a name is refused before anything runs."""
    cfg = small_cfg(2000)
    assert main(["run", str(cfg), "--out", str(tmp_path / "a.ckpt.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a name ending in .ckpt.h5 is a checkpoint's" in err and "--out a.h5" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


def test_a_stop_signal_before_the_transport_gives_the_locks_back(small_cfg, tmp_path):
    """A SIGTERM once the run's locks are taken and before the transport's own handler (its start-up: stale
    temporaries removed, the backend chosen and its kernel compiled) killed the process and left its lock files
    behind (CI 2026-12-05: a test signalled a run as soon as its checkpoint's lock appeared).  The run now stops
    with one line and 128 + 15, its locks given back.  The signal is sent from the start-up itself (the removal of
    stale temporaries), in a child process: SIGTERM's default action would end the test process."""
    cfg = small_cfg(10**6)
    script = ("import os, signal, sys\n"
              "import mcproton._io.lock as lock\n"
              "real = lock.remove_stale_temporaries\n"
              "def stop(*a, **k):\n"
              "    real(*a, **k)\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "lock.remove_stale_temporaries = stop\n"
              "from mcproton.cli import main\n"
              f"sys.exit(main(['run', {str(cfg)!r}, '--out', {str(tmp_path / 'x.h5')!r}, '--quiet']))\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, p.stderr[-2000:])
    assert "SIGTERM received before the transport began: nothing was computed" in p.stderr, p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["job.toml"], list(tmp_path.iterdir())   # no lock left


def test_the_locks_of_a_run_on_another_node_are_named_in_one_refusal(small_cfg, tmp_path, capsys):
    """A job killed on node A and requeued on node B (a shared file system) was refused once per lock file, each
    refusal naming one to delete, and said the output "is being written by another run now" (the cluster audit,
    F3).  Now one refusal names all of that run's lock files in one rm command, and says it may still be writing;
    with them deleted, the next submission runs."""
    import shlex

    cfg = small_cfg(2000)
    locks = [tmp_path / n for n in ("o.h5.lock", "o.png.lock", "o.ckpt.h5.lock")]
    for lock in locks:
        lock.write_text(_lock_of(4242, host="node-a-of-the-cluster", role=f"the file {lock.stem}"))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 3     # the output busy
    err = capsys.readouterr().err
    assert "may still be writing" in err and "now" not in err.split("may still")[0], err
    assert "delete its 3 lock files: " in err, err
    rm = err.split("delete its 3 lock files: ", 1)[1].strip()
    assert sorted(shlex.split(rm)) == sorted(["rm", *map(str, locks)]), err
    assert all(lock.exists() for lock in locks)   # refused: nothing taken over
    for lock in locks:
        lock.unlink()
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 0, capsys.readouterr().err


def test_the_locks_of_a_killed_run_taken_over_are_said_in_one_note(small_cfg, tmp_path, capsys):
    """The concurrency audit 25, F7: after a run was killed (SIGKILL), the next one printed one "took over the lock"
    note per lock file (4 with a plot and an RT Dose), each repeating the killed run's whole command line.  One note
    now names the run once and lists its lock files; a stale lock of another run gets its own note."""
    cfg = small_cfg(2000)
    text = cfg.read_text().replace("plot = false", "plot = true")
    cfg.write_text(text.replace("[beam]\n", "[beam]\ntotal_protons = 1e9\n"))   # absolute dose: an RT Dose too
    out = tmp_path / "o.h5"
    sleeper = _sleeper()
    sleeper.kill()
    sleeper.wait()
    other = _sleeper()
    other.kill()
    other.wait()
    locks = [tmp_path / n for n in ("o.h5.lock", "o.ckpt.h5.lock", "o.png.lock")]
    for p in locks:
        p.write_text(_lock_of(sleeper.pid))
    (tmp_path / "rd.dcm.lock").write_text(_lock_of(other.pid, command="mcproton run third.toml"))
    assert main(["run", str(cfg), "--out", str(out), "--rtdose", str(tmp_path / "rd.dcm"), "--quiet"]) == 0
    notes = [ln for ln in log_lines(capsys.readouterr().err) if "took over" in ln]
    assert len(notes) == 2, notes
    mine = next(n for n in notes if f"pid {sleeper.pid} " in n)
    assert mine.count("mcproton run other.toml") == 1 and "took over the 3 locks of an earlier run" in mine, mine
    assert all(str(p) in mine for p in locks) and f"pid {sleeper.pid} no longer exists" in mine, mine
    theirs = next(n for n in notes if f"pid {other.pid} " in n)
    assert theirs.startswith(f"mcproton: note: took over the lock {tmp_path / 'rd.dcm.lock'} of an earlier run"), theirs
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]


def test_a_lock_created_but_not_yet_written_is_not_taken(tmp_path):
    """A lock file is created empty and then written: a run that meets it in between (empty, or a partial JSON) must
    refuse, not take it over as stale (it would write the same output as the starting run)."""
    from mcproton._io.lock import OutputLock, OutputLockedError

    for content in ("", '{"pid": 12'):
        (tmp_path / "o.h5.lock").write_text(content)
        with pytest.raises(OutputLockedError, match="the lock file is unreadable"):
            with OutputLock(tmp_path / "o.h5"):
                pass
        assert (tmp_path / "o.h5.lock").read_text() == content

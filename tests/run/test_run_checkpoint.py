"""Checkpoint and resume: a CPU run killed mid-way (SIGKILL / SIGTERM / SIGINT) and resumed gives bitwise the
dose (and uncertainty) of the uninterrupted run; damaged or mismatched checkpoints are refused."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from run_helpers import cli, cli_popen, read_h5, write_cfg

from mcproton._run.checkpoint import CheckpointError, checkpoint_path, describe, load_checkpoint

PRIMARIES = 80_000


def _job(small_cfg):
    return small_cfg(PRIMARIES, batch_size=2000, checkpoint_interval_s=0)


def _kill_midway(cfg: Path, out: Path, sig: int) -> tuple[int, str]:
    ckpt = checkpoint_path(out)
    # the run starts as from a terminal, SIGHUP not ignored: a test runner started with nohup ignores it, the run
    # would inherit that and rightly outlive the SIGHUP (the mutation audit of 2026-12-05, F1)
    hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        proc = cli_popen("run", cfg, "--out", out, "--quiet")
    finally:
        signal.signal(signal.SIGHUP, hup)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and describe(ckpt).split(" ")[0] not in ("", "0"):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        time.sleep(0.15)  # somewhere inside a batch or a checkpoint write
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(config text, result) of :func:`_job`'s run uninterrupted, made once for the three signals of
    test_killed_run_resumes_bitwise (each made the same 80,000-primary reference of the same config)."""
    cfg = write_cfg(tmp_path_factory.mktemp("uninterrupted") / "job.toml", PRIMARIES, batch_size=2000,
                    checkpoint_interval_s=0)
    return cfg.read_text(), _reference(cfg)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_killed_run_resumes_bitwise(small_cfg, tmp_path, sig, uninterrupted):
    """SIGHUP (the terminal closed, an ssh session dropped) as SIGTERM: checkpoint, exit 129 (the long-runs audit 2,
    F10: it killed the run without the checkpoint of the batches done)."""
    cfg = _job(small_cfg)
    cfg_text, ref = uninterrupted
    assert cfg.read_text() == cfg_text   # the reference is of this very config
    out = tmp_path / "run.h5"
    rc, err = _kill_midway(cfg, out, sig)
    ckpt = checkpoint_path(out)
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
    else:
        assert rc == 128 + sig, err
        assert "checkpoint written to" in err and "--resume" in err
    assert not out.exists() and ckpt.exists()
    done = int(describe(ckpt).split(" ")[0].replace(",", ""))
    assert 0 < done < PRIMARIES, describe(ckpt)
    r = cli("run", cfg, "--out", out, "--quiet", "--resume")
    assert "resuming from" in r.stderr
    assert not ckpt.exists(), "a finished run removes its checkpoint"
    b = read_h5(out)
    assert np.array_equal(ref.dose_gy_zyx, b["dose"])   # bitwise
    assert np.array_equal(ref.uncertainty_rel_zyx.astype(np.float32), b["uncertainty"])  # same batches and sums
    # the LETd's own (2026-12-08): its running sums through the checkpoint too
    assert np.array_equal(ref.let_d_uncertainty_rel_zyx.astype(np.float32), b["let_d_uncertainty"], equal_nan=True)
    assert b["provenance"]["primaries"] == PRIMARIES
    assert ref.ledger["deposited"] == b["ledger"]["deposited"]


def _reference(cfg: Path):
    """The uninterrupted run, in-process (the same code path as the CLI, without a checkpoint)."""
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    c = load_config(cfg)
    return run_job(c, run_settings(c), build_geometry(c), build_beams(c), None, progress=False,
                   log=lambda m: None)[0]


def _checkpoint_after_sigint(small_cfg, tmp_path) -> tuple[Path, Path, Path]:
    cfg = small_cfg(PRIMARIES, batch_size=2000, checkpoint_interval_s=0)
    out = tmp_path / "run.h5"
    rc, err = _kill_midway(cfg, out, signal.SIGINT)
    assert rc == 130, err
    return cfg, out, checkpoint_path(out)


def test_checkpoint_refused_when_corrupt_or_mismatched(small_cfg, tmp_path, monkeypatch):
    cfg, out, ckpt = _checkpoint_after_sigint(small_cfg, tmp_path)
    good = ckpt.read_bytes()
    # existing checkpoint without --resume: refused, not overwritten
    r = cli("run", cfg, "--out", out, "--quiet", check=False)
    assert r.returncode == 2 and "holds an interrupted run" in r.stderr and "--resume" in r.stderr
    assert ckpt.read_bytes() == good
    # another seed (through the CLI)
    r = cli("run", cfg, "--out", out, "--quiet", "--resume", "--set", "run.seed=7", check=False)
    assert r.returncode == 2 and "another seed" in r.stderr and str(ckpt) in r.stderr, r.stderr
    # truncated file (through the CLI)
    ckpt.write_bytes(good[: len(good) // 2])
    r = cli("run", cfg, "--out", out, "--quiet", "--resume", check=False)
    assert r.returncode == 2 and "corrupt" in r.stderr and "delete" in r.stderr, r.stderr
    ckpt.write_bytes(good)
    # the rest in-process (no run starts: refused while loading)
    import h5py

    from mcproton._run.checkpoint import fingerprint
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    def refused(*sets):
        c2 = load_config(cfg, list(sets))
        with pytest.raises(CheckpointError) as ei:
            run_job(c2, run_settings(c2), build_geometry(c2), build_beams(c2), out, resume=True, progress=False)
        return str(ei.value)

    assert "another beam" in refused("beam.energy_mev=95")
    assert "another config" in refused("physics.msc=false")
    assert "another number of primaries" in refused("run.primaries=90000")
    assert "another geometry" in refused("phantom.material=\"pmma\"")
    ckpt.write_bytes(b"not a checkpoint" * 100)
    assert "corrupt" in refused()
    ckpt.write_bytes(good)
    c = load_config(cfg)
    s, g, beams = run_settings(c), build_geometry(c), build_beams(c)
    fp = fingerprint(c, s, "cpu", g, beams)
    states = load_checkpoint(ckpt, fp, g.material_index_zyx.size)
    assert 0 < states[0].next_history < PRIMARIES
    with h5py.File(ckpt, "r+") as f:
        f["beam_000"].attrs["next_history"] = int(f["beam_000"].attrs["next_history"]) + 3000
        f["beam_000"].attrs["primaries"] = int(f["beam_000"].attrs["primaries"]) + 3000
    with pytest.raises(CheckpointError, match="corrupt .checksum"):
        load_checkpoint(ckpt, fp, g.material_index_zyx.size)
    ckpt.write_bytes(good)
    with pytest.raises(CheckpointError, match="another mcproton version"):
        load_checkpoint(ckpt, {**fp, "version": "9.9"}, g.material_index_zyx.size)
    with pytest.raises(CheckpointError, match="another transport kernel"):
        load_checkpoint(ckpt, {**fp, "kernel_hash": "0" * 64}, g.material_index_zyx.size)
    g2 = build_geometry(load_config(cfg, ["phantom.material=\"pmma\""]))
    with pytest.raises(CheckpointError, match="another geometry"):   # e.g. a CT folder changed under the config
        run_job(c, s, g2, beams, out, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="another first beam index"):   # other random streams
        run_job(c, s, g, beams, out, resume=True, progress=False, first_beam_index=2)
    assert ckpt.read_bytes() == good


def test_free_keys_may_change_on_resume(small_cfg, tmp_path):
    """threads, time limit and checkpoint interval do not change the result: a resume may change them."""
    from mcproton._run.checkpoint import config_hash
    from mcproton.config import load_config

    cfg = small_cfg(1000)
    a = config_hash(load_config(cfg))
    b = config_hash(load_config(cfg, ["run.threads=2", "run.time_limit_s=100", "run.checkpoint_interval_s=5",
                                      "output.plot=true"]))
    c = config_hash(load_config(cfg, ["run.batch_size=100"]))
    assert a == b != c


def test_checkpoint_write_is_atomic(small_cfg, tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact (the data goes to a .tmp first)."""
    import h5py

    from mcproton._run import checkpoint as ck
    from mcproton.run import Accumulator

    p = tmp_path / "x.ckpt.h5"
    fp = {"format": "1", "n_beams": "1", "primaries": "10"}
    st = ck.BeamState(Accumulator(8), next_history=0)
    ck.save_checkpoint(p, fp, [st])
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    st.acc.batches = 1
    with pytest.raises(OSError):
        ck.save_checkpoint(p, fp, [st])
    assert p.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp")), "a failed write leaves no temporary file behind"
    monkeypatch.undo()
    assert ck.load_checkpoint(p, fp, 8)[0].acc.batches == 0
    with h5py.File(p) as f:
        assert f.attrs["mcproton_checkpoint"] == 1


def _enospc(times: int, real):
    """A stand-in for os.fsync that fails like a full disk the first ``times`` calls."""
    import errno

    calls = {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] <= times:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    return fsync, calls


def test_failed_checkpoint_writes_do_not_stop_the_run(small_cfg, tmp_path, monkeypatch):
    """A full disk at checkpoint time costs the checkpoint, not the run: a warning, the run goes on, and the
    dose is bitwise the uninterrupted run's; the next checkpoint is written once there is space again."""
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    cfg = small_cfg(20_000, batch_size=2000, checkpoint_interval_s=0)
    ref = _reference(cfg)
    out = tmp_path / "run.h5"
    fsync, calls = _enospc(3, os.fsync)
    monkeypatch.setattr(os, "fsync", fsync)
    logs: list[str] = []
    c = load_config(cfg)
    res = run_job(c, run_settings(c), build_geometry(c), build_beams(c), out, progress=False, log=logs.append)[0]
    monkeypatch.undo()
    assert calls["n"] > 3
    warn = [m for m in logs if "could not write the checkpoint" in m]
    # once, not a line per failed attempt (the long-runs audit, F11: 600 identical lines in a 10-hour job)
    assert len(warn) == 1 and "No space left on device" in warn[0] and "the run goes on" in warn[0], logs
    assert any("checkpoint written again" in m and "after 3 failed attempt(s)" in m for m in logs), logs
    assert not any("still failing" in m for m in logs), logs
    assert np.array_equal(ref.dose_gy_zyx, res.dose_gy_zyx)
    ckpt = checkpoint_path(out)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))
    assert describe(ckpt).startswith("20,000")


def test_output_write_failure_keeps_the_finished_run(small_cfg, tmp_path, monkeypatch, capsys):
    """If the output cannot be written (disk full), the finished run stays in its checkpoint and --resume writes
    the output without transporting again; without a checkpoint the result goes to the temporary folder."""
    import errno

    import mcproton._io.atomic as h5io   # every output goes through its atomic_write_file
    from mcproton.cli import main
    from mcproton.run import Simulation

    cfg = small_cfg(6000, batch_size=2000)
    ref = _reference(cfg)
    out = tmp_path / "run.h5"
    real_write = h5io.atomic_write_file

    def full_disk(path, write):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, write)

    monkeypatch.setattr(h5io, "atomic_write_file", full_disk)
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 3
    err = capsys.readouterr().err
    ckpt = checkpoint_path(out)
    assert "no space left on device" in err and str(ckpt) in err and "--resume" in err, err
    assert not out.exists() and ckpt.exists()
    # the resume only writes the output: no history is transported again
    monkeypatch.setattr(h5io, "atomic_write_file", real_write)

    def no_transport(*a, **k):
        raise AssertionError("--resume of a finished run transported histories again")

    monkeypatch.setattr(Simulation, "run_histories", no_transport)
    monkeypatch.setattr(Simulation, "run_histories_sparse", no_transport)
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    assert np.array_equal(ref.dose_gy_zyx, read_h5(out)["dose"]) and not ckpt.exists()
    monkeypatch.undo()
    # --no-checkpoint: rescued into the temporary folder
    monkeypatch.setattr(h5io, "atomic_write_file", full_disk)
    out.unlink()
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-checkpoint"]) == 3
    err = capsys.readouterr().err
    assert "written to" in err and "instead" in err, err
    rescued = Path(err.split("written to ")[1].split(" instead")[0])
    try:
        assert np.array_equal(ref.dose_gy_zyx, read_h5(rescued)["dose"])
    finally:
        rescued.unlink()


def _sigint_at(primaries: int):
    """A progress callback that sends this process SIGINT once, when the run has done ``primaries``."""
    sent = []

    def progress(done, rate):
        if done >= primaries and not sent:
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    return progress


def test_interrupt_when_the_checkpoint_cannot_be_written_says_so(small_cfg, tmp_path, monkeypatch):
    """SIGINT with a full disk: the message must not claim a checkpoint was written."""
    from mcproton._run.job import RunInterrupted, run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    cfg = small_cfg(20_000, batch_size=2000, checkpoint_interval_s=0)
    out = tmp_path / "run.h5"
    fsync, _ = _enospc(10**9, os.fsync)
    monkeypatch.setattr(os, "fsync", fsync)
    c = load_config(cfg)
    with pytest.raises(RunInterrupted) as ei:
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), out, progress=_sigint_at(4000),
                log=lambda m: None)
    msg = str(ei.value)
    assert "could NOT be written" in msg and "No space left" in msg and "no earlier one" in msg, msg
    assert "checkpoint written to" not in msg
    assert not checkpoint_path(out).exists()


@pytest.mark.parametrize("filled", [1.0, 0.3, 0.0])
def test_checkpoint_roundtrip_sparse_and_dense(tmp_path, filled):
    """The running sums come back bitwise whether stored whole (mostly filled grid) or sparse (values at the
    voxels with dose); a sparse checkpoint is about as small as its filled share."""
    from mcproton._run import checkpoint as ck
    from mcproton.run import Accumulator

    n = 50_000
    rng = np.random.default_rng(3)
    acc = Accumulator(n)
    m = rng.random(n) < filled
    for k in acc.sums:
        acc.sums[k][m] = rng.integers(1, 2**50, int(m.sum()))
    acc.sum_x[m], acc.sum_x2[m] = rng.random(int(m.sum())), rng.random(int(m.sum()))
    acc.sum_x2[m & (rng.random(n) < 0.5)] = 0.0    # one array zero where others are not
    for v in acc.let_moments.values():             # the LETd's moments (2026-12-08)
        v[m] = rng.random(int(m.sum()))
    acc.batches, acc.primaries = 3, 30
    p = tmp_path / "c.ckpt.h5"
    ck.save_checkpoint(p, {"n_beams": "1"}, [ck.BeamState(acc, next_history=30)])
    back = ck.load_checkpoint(p, {"n_beams": "1"}, n)[0].acc
    for k in acc.sums:
        assert back.sums[k].dtype == np.int64 and np.array_equal(back.sums[k], acc.sums[k])
    assert np.array_equal(back.sum_x, acc.sum_x) and np.array_equal(back.sum_x2, acc.sum_x2)
    assert all(np.array_equal(back.let_moments[k], v) for k, v in acc.let_moments.items())
    dense_bytes = n * 8 * 9
    assert p.stat().st_size < dense_bytes * max(filled, 0.02) * 1.4 + 20_000
    import h5py

    with h5py.File(p) as f:   # a damaged index is refused, not silently scattered
        sparse = "voxels" in f["beam_000"]
    assert sparse == (filled < 0.5)
    if sparse and filled > 0:
        with h5py.File(p, "r+") as f:
            v = f["beam_000/voxels"][()]
            v[0] = n + 5
            f["beam_000/voxels"][...] = v
        with pytest.raises(CheckpointError, match="corrupt"):
            ck.load_checkpoint(p, {"n_beams": "1"}, n)


def test_two_beams_interrupted_in_the_second_resume_bitwise(tmp_path, monkeypatch):
    """A job of two beams interrupted inside the second: the first (finished, kept compactly in memory and in the
    checkpoint) and the second resume to bitwise the doses of the uninterrupted job; after the run a finished
    beam's state holds no whole arrays any more."""
    from mcproton._run.checkpoint import CompactSums
    from mcproton._run.job import RunInterrupted, run_job
    from mcproton.geometry import box_phantom
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    g = box_phantom("water", (40.0, 40.0, 80.0), (4.0, 4.0, 2.0))
    beams = [Beam.pencil(80.0, position_mm=(-6.0, 0.0, -1.0), sigma_mm=(3.0, 3.0)),
             Beam.pencil(60.0, position_mm=(8.0, 4.0, -1.0), sigma_mm=(2.0, 2.0))]
    s = RunSettings(primaries=8000, seed=21, backend="cpu", threads=1, batch_size=1000, checkpoint_interval_s=0)
    ref = run_job(None, s, g, beams, None, progress=False, log=lambda m: None)
    out = tmp_path / "job.h5"
    sent = []

    def progress(done, rate):   # the second beam's progress starts again at 0
        sent.append(done)
        if len(sent) == 8 + 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted):
        run_job(None, s, g, beams, out, progress=progress, log=lambda m: None)
    assert describe(checkpoint_path(out)).startswith("11,000 of 16,000")
    got = run_job(None, s, g, beams, out, resume=True, progress=False, log=lambda m: None)
    for a, b in zip(ref, got):
        assert np.array_equal(a.dose_gy_zyx, b.dose_gy_zyx) and np.array_equal(a.uncertainty_rel_zyx,
                                                                                b.uncertainty_rel_zyx)
    from mcproton._run.checkpoint import BeamState
    from mcproton.run import Accumulator

    st = BeamState(Accumulator(10))
    st.acc.sums["edep"][3] = 5
    st.acc.sum_x[3] = 1.0
    st.compact()
    assert isinstance(st.acc, CompactSums) and st.n_vox == 10 and st.stored["voxels"].tolist() == [3]


def test_interrupt_without_checkpointing_does_not_promise_one(small_cfg, tmp_path, capsys):
    """SIGINT in a run without a checkpoint (as mcproton check runs its MC, or --no-checkpoint): neither the
    first line nor the error promises a checkpoint or --resume (before: "writing a checkpoint" and "continue with
    the same command and --resume", which mcproton check does not have)."""
    from mcproton._run.job import JobOptions, RunInterrupted, run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    cfg = small_cfg(20_000, batch_size=2000, checkpoint_interval_s=0)
    c = load_config(cfg)
    with pytest.raises(RunInterrupted) as ei:
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), tmp_path / "run.h5",
                JobOptions(checkpoint=False, progress=_sigint_at(4000), log=lambda m: None))
    msg, first = str(ei.value), capsys.readouterr().err
    assert "no checkpoint (checkpointing is off); nothing was kept: run it again" in msg, msg
    assert "--resume" not in msg and ei.value.code == 128 + signal.SIGINT
    assert "stopping (no checkpoint: nothing is kept)" in first and "writing a checkpoint" not in first, first


def test_a_second_signal_stops_at_once_and_the_checkpoint_stays_valid(small_cfg, tmp_path):
    """The long-runs audit, F4: the second Ctrl-C arrived while the batch ran in the C kernel, so Python saw one
    signal and the run went on to the end of its batch (7-12 s here, minutes on a patient plan)."""
    cfg = small_cfg(4_000_000, batch_size=800_000, checkpoint_interval_s=0)
    out = tmp_path / "o.h5"
    ckpt = checkpoint_path(out)
    proc = cli_popen("run", cfg, "--out", out, "--quiet")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and describe(ckpt).split(" ")[0] not in ("", "0"):
                break   # the first batch is done and checkpointed: the second one runs now
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be interrupted; make it longer"
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        t = time.monotonic()
        _, err = proc.communicate(timeout=300)
        waited = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "SIGINT received: finishing the batch" in err and "SIGINT received again: stopped at once" in err
    assert "the last checkpoint written stays valid" in err, err
    assert proc.returncode == 128 + signal.SIGINT and waited < 5.0, (proc.returncode, waited)   # before: 7.6 s (idle)
    assert describe(ckpt).startswith("800,000 of")   # the checkpoint of the first batch, intact
    assert not (tmp_path / "o.h5.lock").exists()


def test_a_checkpoint_failing_all_along_is_said_once_then_rarely_and_at_the_end(small_cfg, tmp_path, monkeypatch):
    from mcproton._run import job
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    cfg = small_cfg(20_000, batch_size=2000, checkpoint_interval_s=0)
    fsync, calls = _enospc(10**9, os.fsync)
    monkeypatch.setattr(os, "fsync", fsync)
    logs: list[str] = []
    c = load_config(cfg)
    run_job(c, run_settings(c), build_geometry(c), build_beams(c), tmp_path / "run.h5", progress=False,
            log=logs.append)
    assert calls["n"] >= 9
    assert len([m for m in logs if "could not write the checkpoint" in m]) == 1, logs
    still = [m for m in logs if "still failing" in m]
    assert len(still) == 1 and "failed attempt(s)" in still[0] and "none written by this run" in still[0], logs
    # with a report interval of 0 it is said at every further attempt, with the count
    monkeypatch.setattr(job, "CHECKPOINT_WARN_EVERY_S", 0.0)
    logs.clear()
    run_job(c, run_settings(c), build_geometry(c), build_beams(c), tmp_path / "run2.h5", progress=False,
            log=logs.append)
    counts = [m.split("still failing (")[1].split(" ")[0] for m in logs if "still failing" in m]
    assert counts[:2] == ["2", "3"], logs


@pytest.mark.parametrize("hard", [False, True])
def test_a_second_signal_ends_the_process_only_from_the_command_line(hard):
    """From Python (mcproton.check in a notebook) a second Ctrl-C must not end the interpreter, whose state the user
    would lose: it raises KeyboardInterrupt, as before the watcher; the command line (``cli.main`` sets
    HARD_STOP_ON_SECOND_SIGNAL) ends the process at once with 128 + signal."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, signal, time
        from mcproton._run import job
        job.HARD_STOP_ON_SECOND_SIGNAL = {hard}
        try:
            with job._StopFlag(True, checkpoint=False) as stop:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            print("not interrupted")
        except KeyboardInterrupt:
            print("KeyboardInterrupt, interpreter alive")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if hard:
        assert p.returncode == 128 + signal.SIGINT and "stopped at once" in p.stderr, (p.returncode, p.stderr)
    else:
        assert p.returncode == 0 and p.stdout.strip() == "KeyboardInterrupt, interpreter alive", (p.stdout, p.stderr)
        assert "send it again to stop after the batch" in p.stderr


@pytest.mark.parametrize("written", [False, True])
def test_the_second_signal_promises_a_checkpoint_only_where_one_exists(tmp_path, written):
    """A review (P7): two signals before the first checkpoint was written said "the last checkpoint written stays
    valid: --resume continues from it", and the folder was empty."""
    import subprocess
    import sys
    import textwrap

    ckpt = tmp_path / "o.ckpt.h5"
    if written:
        ckpt.write_bytes(b"a checkpoint")
    code = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from mcproton._run import job
        job.HARD_STOP_ON_SECOND_SIGNAL = True
        with job._StopFlag(True, checkpoint=Path({str(ckpt)!r})) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 128 + signal.SIGINT and "stopped at once" in p.stderr, (p.returncode, p.stderr)
    if written:
        assert "the last checkpoint written stays valid: --resume continues from it" in p.stderr, p.stderr
    else:
        assert "stays valid" not in p.stderr and "--resume" not in p.stderr, p.stderr
        assert f"no checkpoint was written yet, {ckpt}: run it again from the start" in p.stderr, p.stderr


#: a HU calibration folder of one material: a water-like "tissue" (hu_materials.csv) on a linear density curve
_HU_DENSITY = "HU,density_gcm3\n-1000,0.0012\n0,1.0\n1000,2.0\n"
_HU_MATERIALS = "hu_lo,name,w_H,w_O\n-2000,tissue,{h},{o}\n"


def _ct_case(tmp_path: Path) -> tuple[Path, Path]:
    """A CT run with a user calibration folder (``cal``): a 10 x 10 x 30 CT (2 mm voxels) of water (0 HU) in air, a
    70 MeV beam along +z; (config, --out)."""
    from mcproton.dicom import write_ct_series

    hu = np.full((30, 10, 10), -1000, np.int16)
    hu[3:, 1:-1, 1:-1] = 0   # water in air
    write_ct_series(hu, (2.0, 2.0, 2.0), (-9.0, -9.0, 0.0), tmp_path / "ct")
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "hu_density.csv").write_text(_HU_DENSITY)
    (tmp_path / "cal" / "hu_materials.csv").write_text(_HU_MATERIALS.format(h=0.111894, o=0.888106))
    cfg = tmp_path / "ct.toml"
    cfg.write_text('[run]\nprimaries = 2000\nseed = 3\nbackend = "cpu"\nthreads = 1\nbatches = 10\nbatch_size = 200\n'
                   'checkpoint_interval_s = 0\n\n[phantom]\ntype = "ct"\nct_dir = "ct"\ncalibration = "cal"\n\n'
                   '[beam]\nenergy_mev = 70.0\nposition_mm = [0.0, 0.0, -5.0]\ndirection = [0.0, 0.0, 1.0]\n'
                   'sigma_mm = [2.0, 2.0]\n\n[output]\nplot = false\n')
    return cfg, tmp_path / "o.h5"


def test_resume_with_other_material_compositions_is_refused(tmp_path, capsys):
    """The concurrency audit 25, F1 (critical): the fingerprint named the materials but not their compositions or
    I-values, so a run interrupted, its hu_materials.csv corrected (one mass fraction), then resumed was continued
    without a word: one dose of two physics (two Bragg peaks 8 mm apart), its provenance naming the new calibration
    only.  The resume is refused now, naming the material table; with the same table it continues."""
    from mcproton.cli import main

    cfg, out = _ct_case(tmp_path)
    ckpt = checkpoint_path(out)
    argv = ["run", str(cfg), "--out", str(out), "--quiet"]
    # stopped after its first batch by the time limit: the checkpoint is kept (deterministically, no signal)
    assert main(argv + ["--set", "run.time_limit_s=1e-9"]) == 0
    capsys.readouterr()
    assert ckpt.exists() and describe(ckpt).startswith("200 of 2,000"), describe(ckpt)
    good = ckpt.read_bytes()
    # a mass fraction corrected meanwhile (same material name, same densities: the geometry is the same)
    (tmp_path / "cal" / "hu_materials.csv").write_text(_HU_MATERIALS.format(h=0.05, o=0.95))
    assert main(argv + ["--resume", "--set", "run.time_limit_s=1000"]) == 2
    err = capsys.readouterr().err
    assert "another material table" in err and "composition" in err and str(ckpt) in err, err
    assert ckpt.read_bytes() == good, "a refused resume leaves the checkpoint as it was"
    # an I-value given where there was none (through the API: a CSV has no I-value column): refused too
    import dataclasses

    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    (tmp_path / "cal" / "hu_materials.csv").write_text(_HU_MATERIALS.format(h=0.111894, o=0.888106))
    c = load_config(cfg)
    g = build_geometry(c)
    g2 = dataclasses.replace(g, materials=[dataclasses.replace(m, i_value_ev=75.0) for m in g.materials])
    with pytest.raises(CheckpointError, match="another material table"):
        run_job(c, run_settings(c), g2, build_beams(c), out, resume=True, progress=False)
    # the table of the interrupted run: resumed to the end
    (tmp_path / "cal" / "hu_materials.csv").write_text(_HU_MATERIALS.format(h=0.111894, o=0.888106))
    assert main(argv + ["--resume", "--set", "run.time_limit_s=1000"]) == 0
    assert "resuming from" in capsys.readouterr().err
    assert not ckpt.exists() and read_h5(out)["provenance"]["primaries"] == 2000


def test_the_fingerprint_covers_every_physics_input_and_refuses_an_older_checkpoint_without_them():
    """The concurrency audit 25, F1: besides the material table, the physics settings in effect (a default of
    [physics] changed by another mcproton, the config the same) and the range shifters' materials (the beams hash
    holds their index only) are in the fingerprint, each named when it differs; a checkpoint of an older mcproton,
    which recorded neither the materials in full nor the physics settings, is refused (whether its materials are
    this run's cannot be told), not resumed."""
    import dataclasses

    from mcproton._run.checkpoint import _difference, fingerprint
    from mcproton.geometry import box_phantom
    from mcproton.materials import Material, get_material
    from mcproton.settings import PhysicsSettings, RunSettings
    from mcproton.source import Beam, RangeShifterSlab, Spot

    g = box_phantom("water", (8.0, 8.0, 8.0), (4.0, 4.0, 4.0))
    s = RunSettings(primaries=100, seed=1, backend="cpu")
    beams = [Beam.pencil(70.0)]
    fp = fingerprint({"run": {}}, s, "cpu", g, beams)
    assert {"materials_sha256", "physics_settings"} <= set(fp) and "shifter_materials_sha256" not in fp
    # the materials' I-values, under the same names and voxels
    g2 = dataclasses.replace(g, materials=[dataclasses.replace(m, i_value_ev=80.0) for m in g.materials])
    fp2 = fingerprint({"run": {}}, s, "cpu", g2, beams)
    assert fp2["geometry_hash"] == fp["geometry_hash"]
    assert _difference(fp, fp2).startswith("another material table (materials_sha256 ")
    # a physics default changed (the config the same)
    s2 = dataclasses.replace(s, physics=PhysicsSettings(e_cut_mev=1.0))
    why = _difference(fp, fingerprint({"run": {}}, s2, "cpu", g, beams))
    assert why.startswith("other physics settings (physics.e_cut_mev 0.5 != 1.0)"), why
    # a range shifter of another composition, the same name and density
    pmma = get_material("pmma")
    other = dataclasses.replace(pmma, mass_fractions={"H": 0.1, "C": 0.6, "O": 0.3})
    assert isinstance(other, Material)

    def shifted(m):
        rs = RangeShifterSlab(m, 20.0, 1.19, 5.0)
        return [Beam([Spot(100.0, position_mm=(0, 0, -10), range_shifter=rs)])]

    a, b = (fingerprint({"run": {}}, s, "cpu", g, shifted(m)) for m in (pmma, other))
    assert a["beams_hash"] == b["beams_hash"] and "shifter_materials_sha256" in a
    assert _difference(a, b).startswith("another range shifter material"), _difference(a, b)
    # a checkpoint of an older mcproton (no materials_sha256, no physics_settings): refused, with what to do
    old = {k: v for k, v in fp.items() if k not in ("materials_sha256", "physics_settings")}
    why = _difference(old, fp)
    assert why is not None and "material table it does not record" in why and "before 2026-12-07" in why, why
    assert "resume with the mcproton that wrote it" in why, why
    assert _difference(fp, dict(fp)) is None

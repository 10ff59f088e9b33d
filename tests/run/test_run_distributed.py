"""Distributed runs on Dask: the dose does not depend on the number of workers or the chunking (bitwise on
the CPU), and a worker killed mid-run is survived with nothing counted twice."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from mcproton._run.job import run_job  # noqa: E402
from mcproton.config import build_beams, build_geometry, load_config, run_settings  # noqa: E402


def _job(path, *sets):
    cfg = load_config(path, list(sets))
    return cfg, run_settings(cfg), build_geometry(cfg), build_beams(cfg)


def _local(cfg, s, g, beams):
    return run_job(cfg, s, g, beams, None, progress=False, log=lambda m: None)[0]


def test_same_dose_on_1_and_3_workers(small_cfg):
    job = _job(small_cfg(24000), "run.batch_size=2000")
    ref = _local(*job)
    doses = []
    for n in (1, 3):
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            r = run_job(*job, None, client=client, progress=False, log=lambda m: None)[0]
        assert r.primaries == 24000
        doses.append(r)
    for r in doses:
        assert np.array_equal(r.dose_gy_zyx, ref.dose_gy_zyx)                 # bitwise
        assert np.array_equal(r.uncertainty_rel_zyx, ref.uncertainty_rel_zyx)  # chunks summed in order
    # other chunking, same dose (integer tallies); the uncertainty depends on the batches, not the dose
    r = _local(*_job(small_cfg(24000, name="b.toml"), "run.batch_size=7000"))
    assert np.array_equal(r.dose_gy_zyx, ref.dose_gy_zyx)


def test_worker_killed_midrun(small_cfg):
    """SIGKILL one of two worker processes after the first chunk arrives: its chunks re-run elsewhere (the
    nanny restarts it), and the dose equals the local run's bitwise."""
    job = _job(small_cfg(60000), "run.batch_size=2000")
    ref = _local(*job)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        pids = client.run(os.getpid)
        killed = []

        def kill_one(done, _pps):
            if not killed:
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        r = run_job(*job, None, client=client, progress=kill_one, log=lambda m: None)[0]
        client.wait_for_workers(1)
        assert killed and killed[0] not in client.run(os.getpid).values()
    assert r.primaries == 60000 and r.ledger["primaries"] == 60000   # nothing lost, nothing counted twice
    assert np.array_equal(r.dose_gy_zyx, ref.dose_gy_zyx)


@pytest.mark.slow
def test_cli_workers_interrupted_and_resumed_locally(small_cfg, tmp_path):
    """`mcproton run --workers 2`, stopped by SIGTERM mid-run (checkpoint written), resumed without Dask:
    the dose equals the uninterrupted local run's bitwise (the checkpoint does not depend on the executor)."""
    import time

    from run_helpers import cli, cli_popen, read_h5

    from mcproton._run.checkpoint import checkpoint_path, describe

    cfg = small_cfg(150_000, batch_size=3000, checkpoint_interval_s=0)
    ref = tmp_path / "ref.h5"
    cli("run", cfg, "--out", ref, "--quiet", "--no-checkpoint")
    out = tmp_path / "run.h5"
    ckpt = checkpoint_path(out)
    proc = cli_popen("run", cfg, "--out", out, "--quiet", "--workers", "2")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists() and describe(ckpt).split(" ")[0] not in ("", "0"):
            break
        time.sleep(0.05)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    done = int(describe(ckpt).split(" ")[0].replace(",", ""))
    assert 0 < done < 150_000
    cli("run", cfg, "--out", out, "--quiet", "--resume")
    a, b = read_h5(ref), read_h5(out)
    assert np.array_equal(a["dose"], b["dose"]) and np.array_equal(a["uncertainty"], b["uncertainty"])

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


def test_cli_workers_ctrl_c_in_a_terminal_writes_the_checkpoint(small_cfg, tmp_path):
    """The long-runs audit F2: Ctrl-C in a terminal sends SIGINT to every process of the group, the local Dask
    workers too.  They died of it (about 100 lines of tracebacks), and the run waited without end for the batches
    in flight: no checkpoint.  The workers ignore SIGINT now: the run finishes the batch in flight, writes its
    checkpoint and exits 130, without a traceback."""
    import subprocess
    import sys
    import time

    from mcproton._run.checkpoint import checkpoint_path, describe

    cfg = small_cfg(10**8, batch_size=3000, checkpoint_interval_s=0)
    out = tmp_path / "run.h5"
    ckpt = checkpoint_path(out)
    proc = subprocess.Popen([sys.executable, "-m", "mcproton.cli", "run", str(cfg), "--out", str(out), "--quiet",
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)   # its own process group, as a terminal's job
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and describe(ckpt).split(" ")[0] not in ("", "0"):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        os.killpg(proc.pid, signal.SIGINT)   # what Ctrl-C in the terminal does
        _, err = proc.communicate(timeout=120)   # before: no end (killed below)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"checkpoint written to {ckpt}" in err, err
    assert int(describe(ckpt).split(" ")[0].replace(",", "")) > 0


def test_worker_with_another_geometry_is_refused(small_cfg):
    """A worker rebuilds the job from the config on its own disk: where that gives another geometry (another CT
    at the same path; here: the client's phantom is PMMA, the config's water) its tallies would be divided by the
    client's voxel masses, a plausible but wrong dose.  Refused with a message naming what differs."""
    cfg, s, _, beams = _job(small_cfg(4000), "run.batch_size=2000")
    g_other = build_geometry(load_config(small_cfg(4000, name="pmma.toml"), ['phantom.material="pmma"']))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with pytest.raises(RuntimeError, match="another geometry") as ei:
            run_job(cfg, s, g_other, beams, None, client=client, progress=False, log=lambda m: None)
    assert "worker" in str(ei.value)


@pytest.mark.parametrize("key, value, what", [("version", "0.0.1", "another mcproton version"),
                                              ("kernel_hash", "0" * 64, "another transport kernel"),
                                              ("beam_hash", "1" * 64, "another beam")])
def test_worker_identity_mismatch_refused(small_cfg, key, value, what):
    """The worker's own Simulation is compared with what the client expects (version, kernel source, geometry,
    beam, backend) before its first chunk: a worker of another mcproton install is refused, not summed."""
    from mcproton._run.checkpoint import geometry_hash
    from mcproton._run.distributed import WorkerMismatchError, _build_sim, job_identity

    cfg, s, g, beams = _job(small_cfg(4000), "run.batch_size=2000")
    expect = job_identity(geometry_hash(g), beams[0], "cpu")
    spec = {"cfg": cfg, "beam": 0, "threads": 1, "stream": 0, "expect": expect}
    assert _build_sim(spec).backend.name == "cpu"   # the identity the client computed is the worker's own
    with pytest.raises(WorkerMismatchError, match=what) as ei:
        _build_sim({**spec, "expect": {**expect, key: value}})
    assert value[:12] in str(ei.value) and "refused" in str(ei.value)


def test_worker_backend_is_the_clients(small_cfg, monkeypatch):
    """run.backend = "auto" is resolved once, by the client: its result is labelled with the client's backend,
    so a worker must not resolve it to another one (a GPU worker of a CPU client).  A worker that cannot run the
    client's backend fails with the backend's own message."""
    from mcproton._run import distributed as dist
    from mcproton._run.checkpoint import geometry_hash

    cfg, s, g, beams = _job(small_cfg(4000), "run.batch_size=2000", 'run.backend="auto"')
    assert cfg["run"]["backend"] == "auto"
    expect = dist.job_identity(geometry_hash(g), beams[0], "cpu")
    spec = {"cfg": cfg, "beam": 0, "threads": 1, "stream": 0, "expect": expect}
    from mcproton._run import engine

    asked = []

    class Recording(engine.Simulation):
        def __init__(self, geometry, beam, settings, **kw):
            asked.append(settings.backend)
            super().__init__(geometry, beam, settings, **kw)

    monkeypatch.setattr(engine, "Simulation", Recording)
    assert dist._build_sim(spec).backend.name == "cpu"
    assert asked == ["cpu"]   # the client's backend, not "auto" (which a GPU worker would resolve to cuda)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="backend 'cuda' requested but unavailable"):
        dist._build_sim({**spec, "expect": {**expect, "backend": "cuda"}})


def _two_workers():
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)


def test_a_dask_run_records_its_workers_kernel_build(small_cfg, tmp_path):
    """Audit 26 interact, F3: a --workers run recorded no ``kernel_build`` (the build that decides the bits under
    -march=native -ffast-math), in its provenance, its part of the run or its checkpoint.  Each chunk names its
    worker's build now, recorded as a local run's (here the same build: in-process workers)."""
    from mcproton._run.checkpoint import checkpoint_path, read_builds

    job = _job(small_cfg(4000, checkpoint_interval_s=0), "run.batch_size=1000")
    local = run_job(*job, tmp_path / "local.h5", progress=False, log=lambda m: None)[0]
    want = local.provenance["kernel_build"]
    with _two_workers() as cluster, distributed.Client(cluster) as client:
        r = run_job(*job, tmp_path / "dask.h5", client=client, progress=False, log=lambda m: None)[0]
    assert want and r.provenance["kernel_build"] == want, r.provenance.get("kernel_build")
    assert r.provenance["segments"][0]["kernel_build"] == want and "kernel_builds" not in r.provenance
    assert [b["kernel"] for b in read_builds(checkpoint_path(tmp_path / "dask.h5")) or []] == [want]
    assert np.array_equal(r.dose_gy_zyx, local.dose_gy_zyx)


def test_dask_workers_of_two_builds_are_recorded_as_differing(small_cfg, monkeypatch):
    """Audit 26 interact, F3: workers of two builds (two nodes with other compilers or CPUs) give a dose that is
    statistically valid but not bitwise reproducible: said, ``kernel_build`` "differ", both in ``kernel_builds``."""
    from mcproton._backend import cpu
    from mcproton._run import distributed as dist
    from mcproton._run.checkpoint import WORKER_BUILDS_DIFFER
    from mcproton.errors import McprotonRuntimeWarning

    own = cpu.CpuBackend.build_identity

    def per_worker(self):   # as on two nodes
        name = dist._worker_name()
        return {**own(self), "compiler": f"compiler of worker {name}"} if name else own(self)

    monkeypatch.setattr(cpu.CpuBackend, "build_identity", per_worker)
    job = _job(small_cfg(8000), "run.batch_size=500")
    with _two_workers() as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        with pytest.warns(McprotonRuntimeWarning, match="different builds of the transport kernel"):
            r = run_job(*job, None, client=client, progress=False, log=lambda m: None)[0]
    assert r.provenance["kernel_build"] == WORKER_BUILDS_DIFFER == r.provenance["segments"][0]["kernel_build"]
    kb = r.provenance["kernel_builds"]
    assert sorted(b["kernel"]["compiler"] for b in kb) == ["compiler of worker 0", "compiler of worker 1"], kb
    assert "interleaved" in kb[1] and r.primaries == 8000


def test_the_time_limit_leaves_out_the_workers_start_up(small_cfg, monkeypatch):
    """Audit 26 interact, F5: with --workers, the workers' start-up (their Simulation: geometry, beam, kernel
    compile) was counted as the first batch's transport: a 3 s limit stopped beam 1 after 400 of 40,000 primaries,
    and beams 2 and 3 were not run.  Locally the kernel build is not counted; on the workers neither, now.  A
    worker start of 3 s (slept here) against a limit of 2 s: every primary is run."""
    import time

    from mcproton._run import distributed as dist

    build = dist._build_sim

    def start_slowly(spec):
        time.sleep(3.0)
        return build(spec)

    monkeypatch.setattr(dist, "_build_sim", start_slowly)
    job = _job(small_cfg(4000), "run.batch_size=1000", "run.time_limit_s=2.0")
    with _two_workers() as cluster, distributed.Client(cluster) as client:
        r = run_job(*job, None, client=client, progress=False, log=lambda m: None)[0]
    assert r.provenance["stop_reason"] == "primaries" and r.primaries == 4000, r.provenance["stop_reason"]

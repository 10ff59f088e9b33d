"""The CUDA backend's Python side, run without a GPU through a strict CuPy stand-in (tests/fake_cupy.py) whose
kernel launches execute on the CPU backend.  What this proves in CI: the launch arguments match the kernels'
C signatures, device arrays never leak into host NumPy code, a GPU run goes through the whole pipeline (CLI,
streaming, checkpoint, HDF5) and, because the tallies are integers, gives bitwise the CPU backend's dose.
What it cannot prove: the GPU's own arithmetic and speed (the `gpu` marker tests and scripts/gpu_check.sh)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fake_cupy import install_fake_cupy
from fake_cupy import DEVICE_NAME, kernel_signatures
from mcproton._backend import get_backend
from mcproton._kernels.layout import ENTRY_POINTS
from mcproton._kernels.source import ENTRY_FILES, assemble
from mcproton.geometry import box_phantom
from mcproton.run import simulate
from mcproton.settings import RunSettings
from mcproton.source import Beam

SPEC_TO_C = {"p": "ptr", "u64": "uint64_t", "i64": "int64_t", "i32": "int32_t", "f32": "float"}


@pytest.fixture
def fake_cupy(monkeypatch):
    fake = install_fake_cupy(monkeypatch)
    yield fake
    get_backend.cache_clear()


def test_entry_point_specs_match_the_kernel_signatures():
    """ENTRY_POINTS (how both backends cast arguments) against the C parameter lists of the real source."""
    seen = set()
    for entry in ENTRY_FILES:
        for name, params in kernel_signatures(assemble(entry)).items():
            assert name in ENTRY_POINTS, f"kernel {name} in {entry} has no ENTRY_POINTS spec"
            file, spec = ENTRY_POINTS[name]
            assert file == entry
            assert [SPEC_TO_C[k] for k in spec] == params, name
            seen.add(name)
    assert seen == set(ENTRY_POINTS)


def test_fake_cupy_refuses_what_cupy_would_get_wrong(fake_cupy):
    """The stand-in can fail: a Python int for an int64_t, a host array for a pointer, a bad grid."""
    be = get_backend("cuda")
    fn = be._module("probes.cu").get_function("mcp_probe_philox")
    dev_in, dev_out = be.zeros(6, np.uint32), be.zeros(4, np.uint32)
    fn((1,), (128,), (dev_in, dev_out, np.int64(1)))   # correct: runs
    with pytest.raises(TypeError, match="int64"):
        fn((1,), (128,), (dev_in, dev_out, 1))
    with pytest.raises(TypeError, match="device array"):
        fn((1,), (128,), (np.zeros(6, np.uint32), dev_out, np.int64(1)))
    with pytest.raises(TypeError, match="grid"):
        fn(1, (128,), (dev_in, dev_out, np.int64(1)))
    with pytest.raises(TypeError, match="NumPy"):
        np.sum(dev_out)


def test_gpu_pipeline_gives_the_cpu_dose_bitwise(fake_cupy):
    g = box_phantom("water", (40.0, 40.0, 60.0), (2.0, 2.0, 1.0))
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(3, 3))
    s = dict(primaries=3000, seed=21, batches=3)
    gpu = simulate(g, beam, RunSettings(backend="cuda", **s), progress=False)
    cpu = simulate(g, beam, RunSettings(backend="cpu", **s), progress=False)
    assert gpu.backend == "cuda" and DEVICE_NAME in gpu.device
    assert gpu.dose_gy_zyx.max() > 0
    for name in ("dose_gy_zyx", "dose_to_water_gy_zyx", "let_d_kev_um_zyx", "uncertainty_rel_zyx"):
        assert np.array_equal(getattr(gpu, name), getattr(cpu, name), equal_nan=True), name
    assert gpu.ledger == cpu.ledger
    launches = [x for x in fake_cupy.launches if x[0] == "mcp_transport"]
    assert len(launches) >= 3
    assert all(block == (128,) and 1 <= grid[0] <= 2 * 64 for _, grid, block in launches)


def test_gpu_cli_run_with_checkpoints(fake_cupy, tmp_path):
    """`mcproton run --set run.backend=cuda`: streamed batches, checkpoints and the HDF5 output on the GPU
    path; the CPU backend writes bitwise the same dose."""
    from mcproton.cli import main

    config = Path(__file__).resolve().parents[2] / "examples" / "water_pencil.toml"

    def run(backend):
        out = tmp_path / f"{backend}.h5"
        sets = [f"run.backend={backend}", "run.primaries=4000", "beam.energy_mev=70", "phantom.size_mm=[40,40,60]",
                "phantom.voxel_mm=[2,2,1]", "run.batch_size=1000", "run.checkpoint_interval_s=0"]
        assert main(["run", str(config), "--out", str(out), *[x for kv in sets for x in ("--set", kv)]]) == 0
        with h5py.File(out) as f:
            return f["dose"][()], dict(f["provenance"].attrs)

    dose, prov = run("cuda")
    assert prov["backend"] == "cuda" and DEVICE_NAME in prov["device"]
    assert dose.max() > 0
    assert len(fake_cupy.transport_sizes) == 4
    dose_cpu, _ = run("cpu")
    assert np.array_equal(dose, dose_cpu)


def test_gpu_out_of_memory_shrinks_the_batch_and_frees_the_pools(fake_cupy):
    """A CuPy OutOfMemoryError from a launch halves the batch (streaming.run_shrinking) and empties CuPy's
    memory pools before the retry; the dose is unchanged (same histories)."""
    g = box_phantom("water", (40.0, 40.0, 60.0), (2.0, 2.0, 1.0))
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(3, 3))
    s = dict(primaries=2000, seed=5, batch_size=2000)
    ref = simulate(g, beam, RunSettings(backend="cuda", **s), progress=False)
    fake_cupy.oom_above = 600
    shrunk = simulate(g, beam, RunSettings(backend="cuda", **s), progress=False)
    assert fake_cupy.get_default_memory_pool().freed >= 1
    assert max(n for n in fake_cupy.transport_sizes[-4:]) <= 600
    assert np.array_equal(shrunk.dose_gy_zyx, ref.dose_gy_zyx)


CONFIG = Path(__file__).resolve().parents[2] / "examples" / "water_pencil.toml"
SMALL = ["run.primaries=6000", "beam.energy_mev=70", "phantom.size_mm=[40,40,60]", "phantom.voxel_mm=[2,2,1]",
         "run.batch_size=1000"]


def _job(backend, out, extra=(), resume=False, progress=False):
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    c = load_config(CONFIG, [*SMALL, f"run.backend={backend}", *extra])
    return run_job(c, run_settings(c), build_geometry(c), build_beams(c), out, resume=resume, progress=progress,
                   log=lambda m: None)[0]


def test_gpu_batches_are_summed_on_the_device(fake_cupy, tmp_path):
    """A GPU run keeps the running sums in device memory: with no checkpoint due, the tallies cross to the host
    once, at the end (6 batches would otherwise copy 6 x 4 tallies); the dose is bitwise the CPU's."""
    n_vox = 20 * 20 * 60
    res = _job("cuda", tmp_path / "g.h5", ["run.checkpoint_interval_s=3600"])
    assert fake_cupy.transport_sizes == [1000] * 6
    assert fake_cupy.bytes_to_host < 8 * n_vox * 8, fake_cupy.bytes_to_host   # 6 arrays at the end + ledgers
    ref = _job("cpu", None)
    assert np.array_equal(res.dose_gy_zyx, ref.dose_gy_zyx)
    assert np.array_equal(res.uncertainty_rel_zyx, ref.uncertainty_rel_zyx, equal_nan=True)


def test_gpu_run_interrupted_and_resumed_gives_the_cpu_dose(fake_cupy, tmp_path):
    """SIGINT after the third batch of a GPU run: the checkpoint holds host copies of the device sums, and the
    resumed run ends with bitwise the dose and uncertainty of an uninterrupted CPU run."""
    import os
    import signal

    from mcproton._run.checkpoint import checkpoint_path, describe
    from mcproton._run.job import RunInterrupted

    out = tmp_path / "g.h5"

    def interrupt(pos, _pps):
        if pos == 3000:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted):
        _job("cuda", out, ["run.checkpoint_interval_s=3600"], progress=interrupt)
    assert describe(checkpoint_path(out)).startswith("3,000")
    res = _job("cuda", out, ["run.checkpoint_interval_s=3600"], resume=True)
    ref = _job("cpu", None)
    assert np.array_equal(res.dose_gy_zyx, ref.dose_gy_zyx)
    assert np.array_equal(res.uncertainty_rel_zyx, ref.uncertainty_rel_zyx, equal_nan=True)


def test_device_uncertainty_figure_equals_the_host_one(fake_cupy):
    """The stopping figure (mean relative uncertainty over tissue voxels >= 50 % of Dmax) computed on the device
    equals the host computation on the same sums, including air voxels (excluded) and voxels without dose."""
    from mcproton.run import Accumulator, DeviceAccumulator
    from mcproton._run.streaming import mean_rel_uncertainty_50

    rng = np.random.default_rng(3)
    n = 5000
    acc = Accumulator(n)
    for _ in range(7):
        e = (rng.gamma(2.0, 1.0, n) * 1e9).astype(np.int64) * (rng.random(n) < 0.7)
        acc.add({"edep": e, "edep_water": e, "edep_proton": e, "let_num": e,
                 "ledger": np.zeros_like(acc.ledger)}, 1000)
    density = np.where(rng.random(n) < 0.1, 0.0012, 1.0)   # 10 % air voxels
    inv_mass = 1.0 / (density * 0.008)
    host = mean_rel_uncertainty_50(acc, inv_mass, density)
    dev = mean_rel_uncertainty_50(DeviceAccumulator(acc, get_backend("cuda").xp), inv_mass, density)
    assert np.isfinite(host) and dev == pytest.approx(host, rel=1e-12)


def test_gpu_run_stops_at_the_target_uncertainty_like_the_cpu(fake_cupy, tmp_path):
    extra = ["run.target_uncertainty=0.045", "run.primaries=20000"]   # reached after ~10^4 (CPU: 0.034 at 2e4)
    gpu = _job("cuda", tmp_path / "g.h5", [*extra, "run.checkpoint_interval_s=3600"])
    cpu = _job("cpu", None, extra)
    assert gpu.provenance["stop_reason"] == cpu.provenance["stop_reason"] == "target_uncertainty"
    assert gpu.primaries == cpu.primaries < 20000
    assert np.array_equal(gpu.dose_gy_zyx, cpu.dose_gy_zyx)


def test_run_gpu_picks_the_device_and_refuses_a_missing_one(fake_cupy):
    fake_cupy.n_devices = 2
    g = box_phantom("water", (20.0, 20.0, 50.0), (2.0, 2.0, 1.0))
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5))
    r = simulate(g, beam, RunSettings(backend="cuda", gpu=1, primaries=500, batches=2), progress=False)
    assert r.device.startswith("GPU 1:")
    launch_device = set(fake_cupy.devices_used[-5:])
    assert launch_device == {1}, fake_cupy.devices_used
    with pytest.raises(RuntimeError, match=r"run.gpu = 2: this machine has 2 CUDA device\(s\)"):
        simulate(g, beam, RunSettings(backend="cuda", gpu=2, primaries=500, batches=2), progress=False)
    with pytest.raises(ValueError, match="run.gpu must be a CUDA device index"):
        RunSettings(gpu=-1)


def test_dask_workers_take_one_gpu_each(fake_cupy, tmp_path):
    """Two Dask workers on a machine with two GPUs: each builds its simulation on its own GPU, and the dose is
    bitwise the single-process CPU dose."""
    distributed = pytest.importorskip("distributed")
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    fake_cupy.n_devices = 2
    c = load_config(CONFIG, [*SMALL, "run.backend=cuda"])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        fake_cupy.devices_used.clear()
        r = run_job(c, run_settings(c), build_geometry(c), build_beams(c), None, client=client, progress=False,
                    log=lambda m: None)[0]
    assert set(fake_cupy.devices_used) == {0, 1}
    assert np.array_equal(r.dose_gy_zyx, _job("cpu", None).dose_gy_zyx)


def test_gpu_without_memory_for_the_sums_falls_back_to_host_sums(fake_cupy, tmp_path, monkeypatch):
    """If the running sums do not fit in GPU memory next to the tallies, the run says so and sums its batches
    on the host: same dose."""
    import mcproton.run as run_mod
    from fake_cupy import OutOfMemoryError

    def no_room(*a, **k):
        raise OutOfMemoryError("Out of memory allocating 1,536,000 bytes (fake)")

    monkeypatch.setattr(run_mod.DeviceAccumulator, "__init__", no_room)
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    c = load_config(CONFIG, [*SMALL, "run.backend=cuda"])
    logs = []
    r = run_job(c, run_settings(c), build_geometry(c), build_beams(c), None, progress=False, log=logs.append)[0]
    assert any("summing the batches on the host" in m for m in logs)
    assert np.array_equal(r.dose_gy_zyx, _job("cpu", None).dose_gy_zyx)


def test_occupancy_knobs_reach_the_compiler_and_the_launch(fake_cupy, monkeypatch):
    """MCPROTON_CUDA_MAXREG goes to NVRTC as --maxrregcount, MCPROTON_CUDA_BLOCK sets the threads per block; both
    show in the backend's provenance; bad values are refused with the accepted range."""
    monkeypatch.setenv("MCPROTON_CUDA_MAXREG", "128")
    monkeypatch.setenv("MCPROTON_CUDA_BLOCK", "64")
    g = box_phantom("water", (20.0, 20.0, 50.0), (2.0, 2.0, 1.0))
    r = simulate(g, Beam.pencil(70.0, position_mm=(0, 0, -5)), RunSettings(backend="cuda", primaries=2000, batches=2),
                 progress=False)
    assert "--maxrregcount=128" in r.provenance["compile_options"]
    assert "64 threads/block" in r.device
    assert all(block == (64,) for name, _, block in fake_cupy.launches if name == "mcp_transport")
    get_backend.cache_clear()
    for bad in ("100", "160"):   # 160, a multiple of 32, is refused too: the message lists the sizes it takes
        monkeypatch.setenv("MCPROTON_CUDA_BLOCK", bad)
        with pytest.raises(ValueError, match=f"MCPROTON_CUDA_BLOCK='{bad}': give one of 32, 64, 96, 128, 192, 256, "
                                             "384, 512, 1024 [(]threads per block; default 128[)]"):
            get_backend("cuda")

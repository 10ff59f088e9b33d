"""A GPU beam's running sums come back to the host at their scored voxels only (DeviceAccumulator.host ->
ScoredSums), found on the device by the host's rule (result.scored_voxels), with bitwise the CPU backend's
result and checkpoint.  Run without a GPU through the strict CuPy stand-in (tests/fake_cupy.py), which counts
and records every copy between host and device."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from fake_cupy import install_fake_cupy
from mcproton._backend import get_backend
from mcproton._run.checkpoint import BeamState, checkpoint_path
from mcproton._run.result import GRID_FIELDS, ScoredGrid, stored_grid
from mcproton.geometry import box_phantom
from mcproton.run import Accumulator, DeviceAccumulator, ScoredSums, Simulation, finish, scored_voxels, simulate
from mcproton.settings import RunSettings
from mcproton.source import Beam

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "water_pencil.toml"
SMALL = ["run.primaries=3000", "beam.energy_mev=70", "run.batch_size=1000"]
ARRAYS = ("sum_edep", "sum_edep_water", "sum_edep_proton", "sum_let_num", "sum_x", "sum_x2", "let_nn", "let_ne",
          "let_ee")


@pytest.fixture
def fake_cupy(monkeypatch):
    fake = install_fake_cupy(monkeypatch)
    yield fake
    get_backend.cache_clear()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equal (NaN payloads and the sign of zero included)."""
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == \
        np.ascontiguousarray(b).tobytes()


def _sparse_sums(n: int, scored: int, seed: int = 1) -> Accumulator:
    """Running sums non-zero at ``scored`` random voxels, with the corner cases of the scored-voxel rule: a voxel
    whose only non-zero sum is one tally (let_num; a negative edep_water), one whose only one is a NaN sum of
    squares (scored), one whose only one is a -0.0 sum (not scored: -0.0 == 0)."""
    rng = np.random.default_rng(seed)
    acc = Accumulator(n)
    vox = np.sort(rng.choice(np.arange(10, n), scored, replace=False))
    for k, v in acc.sums.items():
        v[vox] = rng.integers(1, 10**12, scored)
    acc.sum_x[vox] = rng.random(scored)
    acc.sum_x2[vox] = acc.sum_x[vox] ** 2
    acc.sums["let_num"][1] = 7
    acc.sums["edep_water"][2] = -3
    acc.sum_x2[3] = np.nan
    acc.sum_x[4] = -0.0
    acc.ledger[:] = np.arange(acc.ledger.size)
    for m in acc.let_moments.values():   # the LETd's moments at the scored voxels (drawn last: the others as before)
        m[vox] = rng.random(scored)
    acc.batches, acc.primaries = 5, 5000
    return acc


def test_host_copies_the_scored_voxels_found_by_the_host_rule(fake_cupy):
    """At most half the grid scored: host() gives a ScoredSums of exactly scored_voxels of the same sums on the
    host (-0.0 not scored, NaN scored), 80 bytes per scored voxel copied and no array of the grid's size; its
    checkpoint form (arrays and checksum) is bitwise the host Accumulator's, and it goes back to the device."""
    n = 20_000
    acc = _sparse_sums(n, 700)
    want = scored_voxels(acc)
    assert {1, 2, 3} <= set(want.tolist()) and 4 not in want
    dev = DeviceAccumulator(acc, fake_cupy)
    fake_cupy.bytes_to_host, fake_cupy.host_copies[:] = 0, []
    h = dev.host()
    assert isinstance(h, ScoredSums) and h.n_vox == n
    assert _same(h.voxels, want)
    assert fake_cupy.bytes_to_host == 80 * want.size
    assert max(int(np.prod(s)) for s, _ in fake_cupy.host_copies) == want.size
    for k in acc.sums:
        assert _same(h.sums[k], acc.sums[k][want]), k
    assert _same(h.sum_x, acc.sum_x[want]) and _same(h.sum_x2, acc.sum_x2[want])
    assert _same(h.ledger, acc.ledger) and (h.batches, h.primaries) == (5, 5000)
    # the checkpoint's stored form and checksum: bitwise the host Accumulator's
    st_host, st_dev = BeamState(acc, 5000), BeamState(h, 5000)
    a, b = st_host.stored_arrays(), st_dev.stored_arrays()
    assert sorted(a) == sorted(b) == sorted([*ARRAYS, "voxels"])
    assert all(_same(a[k], b[k]) for k in a)
    assert st_host.checksum(a) == st_dev.checksum(b)
    # dense(): the Accumulator (the -0.0 sum comes back as +0.0, outside the scored voxels)
    d = h.dense()
    acc.sum_x[4] = 0.0
    assert all(_same(d.sums[k], acc.sums[k]) for k in acc.sums)
    assert _same(d.sum_x, acc.sum_x) and _same(d.sum_x2, acc.sum_x2)
    # a ScoredSums uploaded again (DeviceAccumulator from it) comes back the same
    again = DeviceAccumulator(h, fake_cupy).host()
    assert isinstance(again, ScoredSums) and _same(again.voxels, h.voxels)
    assert all(_same(again.sums[k], h.sums[k]) for k in h.sums) and _same(again.sum_x2, h.sum_x2)
    # at(): the values at other voxels (0 where not scored)
    idx = np.array([0, 1, 3, 4, int(want[-1])])
    ref = acc.at(idx)
    got = h.at(idx)
    assert all(_same(got[k], ref[k]) for k in ref)


def test_host_copies_whole_arrays_when_most_of_the_grid_is_scored(fake_cupy):
    """More than half the grid scored (the checkpoint's threshold for whole arrays): the nine whole arrays, as
    before, and the same checkpoint form as the host's."""
    n = 3000
    acc = _sparse_sums(n, 2500)
    h = DeviceAccumulator(acc, fake_cupy).host()
    assert type(h) is Accumulator
    assert all(_same(h.sums[k], acc.sums[k]) for k in acc.sums) and _same(h.sum_x, acc.sum_x)
    a, b = BeamState(acc).stored_arrays(), BeamState(h).stored_arrays()
    assert sorted(a) == sorted(b) == sorted(ARRAYS) and all(_same(a[k], b[k]) for k in a)


def test_empty_scored_sums_start_a_beam_on_the_device_without_host_grids(fake_cupy):
    """A new beam's sums are made on the device (ScoredSums.empty): nothing of the grid's size is uploaded;
    with no dose, host() copies nothing of it back."""
    n = 50_000
    dev = DeviceAccumulator(ScoredSums.empty(n), fake_cupy)
    assert fake_cupy.bytes_to_device == 0
    assert dev.n_vox == n and all(v.size == n for v in dev.sums.values())
    h = dev.host()
    assert isinstance(h, ScoredSums) and h.voxels.size == 0 and fake_cupy.bytes_to_host == 0


def _pencil_case():
    # 100 x 100 x 60 voxels of 1 mm: a 70 MeV pencil scores a few % of them
    g = box_phantom("water", (100.0, 100.0, 60.0), (1.0, 1.0, 1.0))
    return g, Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(2, 2))


def test_gpu_beam_result_is_the_cpu_one_with_only_its_dose_voxels_copied(fake_cupy):
    """A sparse GPU beam end to end (simulate: sums on the device, host(), finish): bitwise the CPU backend's
    five result grids (stored at the same voxels) and ledger; the beam's sums cross to the host once, as 80
    bytes per scored voxel (not 72 bytes per grid voxel), and are never uploaded whole."""
    g, beam = _pencil_case()
    n_vox = int(np.prod(g.shape_zyx))
    s = dict(primaries=2000, seed=4, batches=2)
    gpu = simulate(g, beam, RunSettings(backend="cuda", **s), progress=False)
    copies = list(fake_cupy.host_copies)
    to_device = fake_cupy.bytes_to_device
    cpu = simulate(g, beam, RunSettings(backend="cpu", **s), progress=False)
    k = stored_grid(cpu, "dose_gy_zyx").voxels.size
    assert 0 < k < n_vox // 10
    for name in GRID_FIELDS:
        a, b = stored_grid(gpu, name), stored_grid(cpu, name)
        assert isinstance(a, ScoredGrid) and _same(a.voxels, b.voxels) and _same(a.values, b.values), name
    assert gpu.ledger == cpu.ledger and gpu.mean_rel_uncertainty_50 == cpu.mean_rel_uncertainty_50
    assert _same(gpu.dose_gy_zyx, cpu.dose_gy_zyx)
    big = [int(np.prod(shape)) * dt.itemsize for shape, dt in copies if int(np.prod(shape)) > 64]
    assert big and sum(big) == 80 * k, (big, k)   # 10 arrays of k: indices, 4 integer and 5 float sums
    # uploads: the geometry (int32 material index + float32 density per voxel); the sums are made on the device
    assert to_device < 9 * n_vox


def test_finish_of_a_gpu_beam_allocates_no_whole_grid_on_the_host(fake_cupy):
    """host() + finish of a sparse GPU beam: the host's traced allocations stay below one whole-grid int64
    array (8 bytes per voxel; whole copies were 48), although the fake's 'device' work (the scored mask, 2 bytes
    per voxel) is host memory here; the result is the one from the whole host arrays, bitwise."""
    g, beam = _pencil_case()
    sim = Simulation(g, beam, RunSettings(backend="cuda", primaries=1000, seed=9))
    sim.backend.compile()
    dev = DeviceAccumulator(ScoredSums.empty(sim.n_vox), sim.backend.xp)
    for first in (0, 500):
        dev.add(sim.run_histories(first, 500, on_device=True), 500)
    tracemalloc.start()
    try:
        h = dev.host()
        res = finish(sim, h, 1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(h, ScoredSums) and 0 < h.voxels.size < sim.n_vox // 10
    assert peak < 8 * sim.n_vox, (peak, sim.n_vox)
    ref = finish(sim, h.dense(), 1.0)
    for name in GRID_FIELDS:
        a, b = stored_grid(res, name), stored_grid(ref, name)
        assert _same(a.voxels, b.voxels) and _same(a.values, b.values), name


def test_gpu_job_checkpoint_is_the_cpu_one(fake_cupy, tmp_path):
    """The checkpoint a GPU job writes after its beam (from the ScoredSums) holds bitwise the arrays, voxel
    indices and checksum of the CPU job's."""
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    stored = {}
    for backend in ("cuda", "cpu"):
        c = load_config(CONFIG, [*SMALL, f"run.backend={backend}", "run.checkpoint_interval_s=3600",
                                 "phantom.size_mm=[80,80,60]", "phantom.voxel_mm=[1,1,1]"])
        out = tmp_path / f"{backend}.h5"
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), out, progress=False, log=lambda m: None)
        with h5py.File(checkpoint_path(out)) as f:
            grp = f["beam_000"]
            stored[backend] = ({k: grp[k][()] for k in grp}, grp.attrs["checksum"])
    (gpu, gpu_sum), (cpu, cpu_sum) = stored["cuda"], stored["cpu"]
    assert "voxels" in gpu and sorted(gpu) == sorted(cpu)
    assert all(_same(gpu[k], cpu[k]) for k in gpu)
    assert gpu_sum == cpu_sum


def test_unequal_batches_are_weighted_alike_on_the_device(fake_cupy):
    """Batches of unequal size (a short last one, a GPU batch halved after running out of memory): the device's
    running sums weight them as the host's do (stats.batch_weight), bit for bit, and host() carries the weights
    (their sum and unit) to the checkpoint and the result."""
    n = 5000
    rng = np.random.default_rng(4)
    host = Accumulator(n)
    dev = DeviceAccumulator(ScoredSums.empty(n), fake_cupy)
    for size in (1000, 1000, 500, 250, 1000, 3):
        batch = {k: rng.integers(0, 10**9, n).astype(np.int64) for k in host.sums}
        batch["ledger"] = np.zeros_like(host.ledger)
        host.add({k: v.copy() for k, v in batch.items()}, size)
        dev.add({k: fake_cupy.asarray(v) if k != "ledger" else v for k, v in batch.items()}, size)
    back = dev.host()
    assert back.batch_unit == host.batch_unit == 1000
    assert back.batch_weight_sum == host.batch_weight_sum == pytest.approx(3.753)
    full = back.dense() if isinstance(back, ScoredSums) else back
    assert _same(full.sum_x, host.sum_x) and _same(full.sum_x2, host.sum_x2)


def _budgeted(fake_cupy, monkeypatch, zeros, budget: int) -> None:
    """The stand-in device's ``zeros`` refuses allocations past ``budget`` bytes in all (freed blocks not counted
    back)."""
    from fake_cupy import OutOfMemoryError

    used = [0]

    def counted(shape, dtype):
        used[0] += int(np.prod(shape)) * np.dtype(dtype).itemsize
        if used[0] > budget:
            raise OutOfMemoryError(f"Out of memory allocating {used[0]:,} bytes (fake)")
        return zeros(shape, dtype)

    monkeypatch.setattr(fake_cupy, "zeros", counted)


def test_the_device_sums_are_refused_where_adding_a_batch_would_not_fit(fake_cupy, monkeypatch):
    """Review b, R6: the device holds 72 bytes per voxel of sums (four int64 tallies, the dose's two float64 sums,
    the LETd's three) and adding a batch makes 32 more of whole-grid float64 temporaries (engine.ADD_TEMPORARIES).
    A device with room for the sums but not for those is found when the sums are made (an out-of-memory error there,
    on which job.py sums on the host), not in the middle of a run (before: made, then an error at the first batch).
    The stand-in device refuses allocations past a budget; its freed blocks are not counted back (the probe's are
    kept by CuPy's pool for the additions)."""
    from fake_cupy import OutOfMemoryError
    from mcproton._run.streaming import is_out_of_memory

    n = 10_000
    zeros = fake_cupy.zeros

    def on_device(budget: int) -> DeviceAccumulator:
        _budgeted(fake_cupy, monkeypatch, zeros, budget)
        return DeviceAccumulator(ScoredSums.empty(n), fake_cupy)

    on_device((72 + 32) * n)   # the sums and the additions' temporaries fit
    with pytest.raises(OutOfMemoryError) as err:
        on_device((72 + 31) * n)   # the sums fit, the additions would not
    assert is_out_of_memory(err.value)


def test_the_device_sums_are_refused_where_the_target_check_would_not_fit(fake_cupy, monkeypatch):
    """Review c of audit 33, R3: a run with a target uncertainty (mcproton check's default 1 %) checks it on the
    device after each batch (DeviceAccumulator.mean_rel_uncertainty_50), keeping the grid's inverse mass and density
    there (12 bytes per voxel) and making whole-grid temporaries in stats.batch_rel_uncertainty (50 bytes per voxel
    at its peak, counted without elision: engine.TARGET_CHECK_BYTES).  The probe reserved only the additions' 32, so
    a device with (72 + 32 + 12) bytes per voxel passed it and ran out of memory at the second batch.  Now, with
    ``target_check``, the probe reserves the check's too, and such a device is refused at construction (where job.py
    sums on the host)."""
    from fake_cupy import OutOfMemoryError
    from mcproton._run.engine import TARGET_CHECK_BYTES

    n = 10_000
    zeros = fake_cupy.zeros

    def on_device(budget: int, target_check: bool) -> DeviceAccumulator:
        _budgeted(fake_cupy, monkeypatch, zeros, budget)
        return DeviceAccumulator(ScoredSums.empty(n), fake_cupy, target_check=target_check)

    assert TARGET_CHECK_BYTES >= 12 + 50
    on_device((72 + 32 + 12) * n, target_check=False)   # without a target: the additions only, as before
    with pytest.raises(OutOfMemoryError):
        on_device((72 + 32 + 12) * n, target_check=True)
    on_device((72 + 8 * -(-TARGET_CHECK_BYTES // 8)) * n, target_check=True)   # the check's reservation fits


def test_the_target_checks_device_memory_is_within_its_reservation():
    """The figure the probe reserves for the target check (engine.TARGET_CHECK_BYTES) is at least what the check
    allocates, measured with NumPy in CuPy's place (tracemalloc, 10^6 voxels, the persistent inverse mass and density
    added as the device copies them: 12 bytes per voxel).  NumPy elides some temporaries that CuPy makes, so this is a
    lower bound of the device's (review c measured 42 + 12 = 54 bytes per voxel this way); the count without elision
    is in engine.TARGET_CHECK_BYTES's comment (62)."""
    from mcproton._run.engine import TARGET_CHECK_BYTES

    n = 1_000_000
    rng = np.random.default_rng(2)
    acc = Accumulator(n)
    acc.sums["edep"][:] = rng.integers(0, 10**9, n)
    acc.sum_x[:] = rng.random(n)
    acc.sum_x2[:] = acc.sum_x ** 2 * 1.1
    acc.batches = acc.batch_weight_sum = 10
    dev = DeviceAccumulator(acc, np)
    mass, density = np.full(n, 0.5), np.full(n, 1.0, np.float32)
    tracemalloc.start()
    dev.mean_rel_uncertainty_50(mass, density)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 30 * n < peak + 12 * n <= TARGET_CHECK_BYTES * n, peak / n

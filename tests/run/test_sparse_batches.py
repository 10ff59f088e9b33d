"""Sparse batches (Simulation.run_histories_sparse): the kernel flags the blocks of voxels it scores into, and the
host reads and clears only those.  A missed flag would silently drop dose, so every test compares against the
whole-tally path bitwise."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mcproton._kernels.layout import TOUCH_SHIFT
from mcproton.geometry import box_phantom, slab_phantom
from mcproton.run import Accumulator, Simulation
from mcproton.settings import RunSettings
from mcproton.source import Beam, Spot


def test_touch_shift_matches_the_kernel():
    src = (Path(__file__).resolve().parents[2] / "kernels" / "params.h").read_text()
    assert int(re.search(r"#define MCP_TOUCH_SHIFT (\d+)", src).group(1)) == TOUCH_SHIFT


def _slabs_oblique():
    # 27 x 23 x 30 voxels: the grid is not a whole number of 32-voxel blocks (the padding is exercised);
    # bone and lung slabs, an oblique beam and nuclear interactions (local fragment deposits: score_local)
    g = slab_phantom([("water", 10.0), ("bone_compact_icru", 10.0), ("lung", 20.0), ("water", 20.0)],
                     (54.0, 46.0), 2.0)
    d = np.array([0.35, -0.2, 1.0])
    beam = Beam([Spot(110.0, position_mm=(-8.0, 5.0, -1.0), direction=tuple(d / np.linalg.norm(d)),
                      sigma_mm=(4.0, 3.0), energy_spread_mev=0.8),
                 Spot(70.0, position_mm=(10.0, -6.0, -1.0), sigma_mm=(2.0, 2.0), weight=0.5)])
    return g, beam


@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_batches_equal_whole_tallies_bitwise(threads):
    """Four batches through run_histories_sparse give bitwise the Accumulator of run_histories (sums, sums of
    squares, ledger), with one tally slot and with thread-private slots; between sparse batches every tally
    and flag is back to zero."""
    g, beam = _slabs_oblique()
    s = RunSettings(primaries=8000, seed=11, backend="cpu", threads=threads)
    dense, sparse = Simulation(g, beam, s), Simulation(g, beam, s)
    assert dense.n_vox % (1 << TOUCH_SHIFT) != 0
    if threads == 2:
        assert sparse.slots == 2
    a, b = Accumulator(dense.n_vox), Accumulator(sparse.n_vox)
    for first in range(0, 8000, 2000):
        a.add(dense.run_histories(first, 2000), 2000)
        batch = sparse.run_histories_sparse(first, 2000)
        assert np.all(np.diff(batch["voxels"]) > 0) and batch["voxels"][-1] < sparse.n_vox
        b.add(batch, 2000)
        assert not any(t.any() for t in sparse.tally.values()) and not sparse.touched.any()
    for k in a.sums:
        assert np.array_equal(a.sums[k], b.sums[k]), k
    assert np.array_equal(a.sum_x, b.sum_x) and np.array_equal(a.sum_x2, b.sum_x2)
    assert np.array_equal(a.ledger, b.ledger)
    assert a.sums["edep"].sum() > 0 and b.batches == 4


def test_sparse_after_whole_tally_batch_starts_clean():
    """A whole-tally batch leaves its tallies behind (they are returned as views/copies); the next sparse batch
    must clear them first, not add them in again."""
    g, beam = _slabs_oblique()
    s = RunSettings(primaries=2000, seed=5, backend="cpu", threads=1)
    ref = Simulation(g, beam, s)
    mixed = Simulation(g, beam, s)
    mixed.run_histories(0, 500)
    r, m = ref.run_histories_sparse(500, 1000), mixed.run_histories_sparse(500, 1000)
    assert np.array_equal(r["voxels"], m["voxels"]) and np.array_equal(r["edep"], m["edep"])


def test_a_pencil_beam_batch_touches_a_small_part_of_a_wide_grid():
    """What the sparse path is for: 3000 protons of a 150 MeV pencil beam (sigma 3 mm) in a 300 x 300 x 200 mm
    water grid of 2 mm voxels score into about 1 % of the voxels and 5 % of the blocks, so the host reads 5 %
    of the tallies instead of all of them (on a 512 x 512 x 200 grid: 2 %, 0.1 s instead of 4.3 s per batch)."""
    g = box_phantom("water", (300.0, 300.0, 200.0), 2.0)
    sim = Simulation(g, Beam.pencil(150.0, sigma_mm=(3.0, 3.0)), RunSettings(primaries=3000, seed=1, backend="cpu"))
    batch = sim.run_histories_sparse(0, 3000)
    frac = batch["voxels"].size / sim.n_vox
    assert 0.005 < frac < 0.10, frac
    dense = Simulation(g, Beam.pencil(150.0, sigma_mm=(3.0, 3.0)),
                       RunSettings(primaries=3000, seed=1, backend="cpu")).run_histories(0, 3000)["edep"]
    assert np.count_nonzero(dense) == np.count_nonzero(batch["edep"])
    assert dense.sum() == batch["edep"].sum()


def test_run_histories_sparse_refuses_other_backends(monkeypatch):
    g, beam = _slabs_oblique()
    sim = Simulation(g, beam, RunSettings(primaries=10, seed=1, backend="cpu"))
    monkeypatch.setattr(type(sim), "sparse_batches", property(lambda self: False))
    with pytest.raises(RuntimeError, match="cpu backend"):
        sim.run_histories_sparse(0, 10)


def test_finish_on_scored_voxels_equals_whole_grid_formulas():
    """finish() computes on the scored voxels only; the whole-grid formulas give bitwise the same arrays, and
    the stopping figure on the scored voxels equals the whole-grid one."""
    from mcproton._kernels.layout import LET_SCALE, TALLY_SCALE
    from mcproton._run.streaming import inverse_mass, mean_rel_uncertainty_50
    from mcproton.run import MEV_PER_G_TO_GY, batch_rel_uncertainty, finish, mean_uncertainty_above_half_max

    g, beam = _slabs_oblique()
    sim = Simulation(g, beam, RunSettings(primaries=6000, seed=2, backend="cpu", threads=1))
    acc = Accumulator(sim.n_vox)
    for first in range(0, 6000, 1500):
        acc.add(sim.run_histories_sparse(first, 1500), 1500)
    res = finish(sim, acc, 1.0)
    n = acc.primaries
    mass = g.density_g_cm3_zyx.astype(np.float64).reshape(-1) * g.voxel_volume_cm3
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(mass > 0, 1.0 / mass, 0.0)
        dose = acc.sums["edep"] / TALLY_SCALE * inv * MEV_PER_G_TO_GY / n
        dose_w = acc.sums["edep_water"] / TALLY_SCALE * inv * MEV_PER_G_TO_GY / n
        ep = acc.sums["edep_proton"] / TALLY_SCALE
        rho = g.density_g_cm3_zyx.astype(np.float64).reshape(-1)
        let_d = np.where(ep > 0, acc.sums["let_num"] / LET_SCALE / np.where(ep > 0, ep, 1) * (0.1 * rho), 0.0)
    unc = batch_rel_uncertainty(acc.sum_x, acc.sum_x2, acc.batches)
    shape = g.shape_zyx
    assert np.array_equal(res.dose_gy_zyx, dose.reshape(shape))
    assert np.array_equal(res.dose_to_water_gy_zyx, dose_w.reshape(shape))
    assert np.array_equal(res.let_d_kev_um_zyx, let_d.reshape(shape))
    assert np.array_equal(res.uncertainty_rel_zyx, unc.reshape(shape))
    assert res.mean_rel_uncertainty_50 == mean_uncertainty_above_half_max(dose, unc, g.density_g_cm3_zyx)
    whole = mean_uncertainty_above_half_max(acc.sums["edep"] * inverse_mass(g), unc, g.density_g_cm3_zyx)
    assert mean_rel_uncertainty_50(acc, inverse_mass(g), g.density_g_cm3_zyx) == whole
    assert np.count_nonzero(res.dose_gy_zyx) < res.dose_gy_zyx.size   # the test has unscored voxels


def test_threads_sharing_fewer_slots_give_the_same_dose(monkeypatch):
    """When memory allows fewer tally slots than threads, threads share slots (thread % slots) with atomic adds:
    3 threads on 2 slots give bitwise the dose of 1 thread on 1 slot, through both batch paths."""
    import mcproton._run.engine as R

    g, beam = _slabs_oblique()
    slot_bytes = -(-g.material_index_zyx.size >> TOUCH_SHIFT << TOUCH_SHIFT) * 32
    one = Simulation(g, beam, RunSettings(primaries=4000, seed=8, backend="cpu", threads=1))
    monkeypatch.setattr(R, "PRIVATE_TALLY_BYTES", 2 * slot_bytes + 100)
    shared = Simulation(g, beam, RunSettings(primaries=4000, seed=8, backend="cpu", threads=3))
    assert shared.slots == 2 and one.slots == 1
    assert int(shared.params_host["n_slots"][0]) == 2
    from mcproton._kernels.layout import FLAG_SHARED_TALLY

    assert int(shared.params_host["flags"][0]) & FLAG_SHARED_TALLY
    ref = one.run_histories(0, 4000)
    dense = shared.run_histories(0, 4000)
    for k in ("edep", "edep_water", "edep_proton", "let_num"):
        assert np.array_equal(ref[k], dense[k]), k
    sp = shared.run_histories_sparse(0, 4000)
    assert np.array_equal(ref["edep"][sp["voxels"]], sp["edep"]) and ref["edep"].sum() == sp["edep"].sum()


def test_an_error_after_the_launch_does_not_leak_into_the_next_batch(monkeypatch):
    """If reading a batch back fails after the launch, the next sparse batch starts from zero tallies."""
    g, beam = _slabs_oblique()
    s = RunSettings(primaries=2000, seed=6, backend="cpu", threads=1)
    ref = Simulation(g, beam, s).run_histories_sparse(1000, 1000)
    sim = Simulation(g, beam, s)
    real = np.flatnonzero
    calls = {"n": 0}

    def failing(a):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("simulated")
        return real(a)

    monkeypatch.setattr(np, "flatnonzero", failing)
    with pytest.raises(MemoryError):
        sim.run_histories_sparse(0, 1000)
    monkeypatch.undo()
    again = sim.run_histories_sparse(1000, 1000)
    assert np.array_equal(ref["voxels"], again["voxels"]) and np.array_equal(ref["edep"], again["edep"])


def test_sum_results_adds_beam_by_beam_bitwise():
    """sum_results adds the beams' arrays one by one into one array (no stacked copy of every beam's grid); the
    sums equal np.sum over the stacked beams bitwise."""
    from mcproton.run import simulate, sum_results

    g, _ = _slabs_oblique()
    res = [simulate(g, Beam.pencil(e, sigma_mm=(3.0, 3.0), total_protons=1e9),
                    RunSettings(primaries=1500, seed=s, backend="cpu")) for e, s in ((90.0, 1), (110.0, 2),
                                                                                     (70.0, 3))]
    tot = sum_results(res)
    assert np.array_equal(tot.dose_gy_zyx, np.sum([r.dose_gy_zyx for r in res], axis=0))
    assert np.array_equal(tot.dose_to_water_gy_zyx, np.sum([r.dose_to_water_gy_zyx for r in res], axis=0))
    var = np.sum([(r.uncertainty_rel_zyx * r.dose_gy_zyx) ** 2 for r in res], axis=0)
    d = tot.dose_gy_zyx
    with np.errstate(divide="ignore", invalid="ignore"):
        unc = np.where(d > 0, np.sqrt(var) / np.where(d > 0, d, 1.0), 0.0)
    assert np.array_equal(tot.uncertainty_rel_zyx, unc)


def test_block_rows_add_equals_voxel_add():
    """Accumulator.add takes a sparse batch's whole blocks as rows of a (blocks x 32) view and the last, cut block
    voxel by voxel: the same sums bit for bit as adding voxel by voxel (a batch without "blocks"), also on strided
    sums (where a reshape would copy: added voxel by voxel), and the overflow guard still sees every voxel."""
    size = 1 << TOUCH_SHIFT
    n_vox = 5 * size + 7                                     # the last block (5) is cut at the grid's end
    rng = np.random.default_rng(3)
    blocks = np.array([0, 2, 3, 5])
    vox = (blocks[:, None] * size + np.arange(size)).reshape(-1)
    vox = vox[vox < n_vox]
    accs = [Accumulator(n_vox) for _ in range(3)]
    strided = accs[2]
    for k in strided.sums:                                   # every other element of a twice-as-long array
        strided.sums[k] = np.zeros(2 * n_vox, np.int64)[::2]
    for _ in range(3):
        batch = {k: rng.integers(0, 1000, vox.size).astype(np.int64) for k in accs[0].sums}
        batch["ledger"] = np.zeros_like(accs[0].ledger)
        accs[0].add({**batch, "voxels": vox, "blocks": blocks}, 100)
        accs[1].add({**batch, "voxels": vox}, 100)
        accs[2].add({**batch, "voxels": vox, "blocks": blocks}, 100)
    for k in accs[0].sums:
        assert np.array_equal(accs[0].sums[k], accs[1].sums[k]) and np.array_equal(accs[2].sums[k], accs[1].sums[k])
        assert accs[0].sums[k][vox].min() > 0 and accs[0].sums[k][n_vox - 1] > 0   # the cut block was added
    assert np.array_equal(accs[0].sum_x, accs[1].sum_x) and np.array_equal(accs[0].sum_x2, accs[1].sum_x2)
    for where in (vox[3], vox[-1]):                          # in a row block, and in the cut block
        big = {k: np.zeros(vox.size, np.int64) for k in accs[0].sums}
        big["edep"][np.searchsorted(vox, where)] = 2**62 + 1
        big["ledger"] = np.zeros_like(accs[0].ledger)
        with pytest.raises(OverflowError, match="64-bit"):
            Accumulator(n_vox).add({**big, "voxels": vox, "blocks": blocks}, 1)

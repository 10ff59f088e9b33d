"""The stopping rule's figure (Accumulator.mean_rel_uncertainty_50, evaluated after every batch from the 10th on
when a run has a target uncertainty) reads the voxels of the blocks that the batches scored into, not the whole
grid (the host audit of 2026-12-05, F1: one scan of a 512 x 512 x 200 grid per batch cost ten times the transport
of the batch), and gives bitwise the figure of the whole-grid scan: the stopping decision and the reported
uncertainty do not change.  Deterministic (fixed seeds, exact comparisons)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import mcproton._run.engine as engine
from mcproton._kernels.layout import TOUCH_SHIFT
from mcproton._run.stats import InverseMass, inverse_mass
from mcproton._run.streaming import BatchPlan, LocalExecutor, mean_rel_uncertainty_50, stream
from mcproton.geometry import box_phantom
from mcproton.run import Accumulator, Simulation, batch_rel_uncertainty, mean_uncertainty_above_half_max
from mcproton.settings import RunSettings
from mcproton.source import Beam

SIZE = 1 << TOUCH_SHIFT
SHARE = engine.SCORED_BLOCKS_SCAN_SHARE   # the default (the tests below patch it)


def _wide():
    """A pencil beam in a wide water box (2 mm voxels, not a whole number of blocks): the dose lies in a small
    part of the grid's blocks."""
    g = box_phantom("water", (82.0, 158.0, 60.0), 2.0)
    assert g.material_index_zyx.size % SIZE != 0
    return g, Beam.pencil(90.0, sigma_mm=(3.0, 3.0))


def _whole_grid_figure(acc, g):
    """The figure by the whole-grid formulas (what a scan of every voxel gives)."""
    unc = batch_rel_uncertainty(acc.sum_x, acc.sum_x2, acc.batches)
    return mean_uncertainty_above_half_max(acc.sums["edep"] * inverse_mass(g), unc, g.density_g_cm3_zyx)


@pytest.mark.parametrize("share", [1.0, SHARE, 0.0])
def test_figure_after_every_batch_equals_the_whole_grid_scan(monkeypatch, share):
    """After every sparse batch the figure is bitwise the whole-grid one; share 1.0: always from the scored
    blocks' voxels, 0.0: always a scan (the fallback for a footprint of most of the grid)."""
    monkeypatch.setattr(engine, "SCORED_BLOCKS_SCAN_SHARE", share)
    g, beam = _wide()
    sim = Simulation(g, beam, RunSettings(primaries=6000, seed=4, backend="cpu", threads=1))
    acc = Accumulator(sim.n_vox)
    inv = InverseMass(g)
    for first in range(0, 6000, 500):
        acc.add(sim.run_histories_sparse(first, 500), 500)
        if acc.batches >= 2:
            got = mean_rel_uncertainty_50(acc, inv, g.density_g_cm3_zyx)
            assert np.isfinite(got) and got == _whole_grid_figure(acc, g)
    scored = np.flatnonzero(acc.sum_x)
    assert np.unique(scored >> TOUCH_SHIFT).size < SHARE * -(-sim.n_vox // SIZE)   # a footprint, not the grid


def test_figure_does_not_read_the_voxels_outside_the_scored_blocks():
    """What makes it cheap: once a first evaluation has found the scored blocks, a voxel of another block is not
    read.  A dose written there by hand (not by add) does not change the figure; a whole-grid scan would take it
    as the maximum.  A new sum_x array (a checkpoint's) is scanned again."""
    g, beam = _wide()
    sim = Simulation(g, beam, RunSettings(primaries=3000, seed=9, backend="cpu", threads=1))
    acc = Accumulator(sim.n_vox)
    for first in range(0, 3000, 1000):
        acc.add(sim.run_histories_sparse(first, 1000), 1000)
    inv = inverse_mass(g)
    before = mean_rel_uncertainty_50(acc, inv, g.density_g_cm3_zyx)
    acc.add(sim.run_histories_sparse(3000, 1000), 1000)   # a batch after the first evaluation is seen
    want = _whole_grid_figure(acc, g)
    assert want != before and mean_rel_uncertainty_50(acc, inv, g.density_g_cm3_zyx) == want
    full = acc.sum_x[:sim.n_vox // SIZE * SIZE].reshape(-1, SIZE)
    far = int(np.flatnonzero(~full.any(axis=1))[0]) * SIZE   # the first voxel of a block without dose
    acc.sums["edep"][far] = 10 * acc.sums["edep"].max()
    acc.sum_x[far] = 1.0
    assert mean_rel_uncertainty_50(acc, inv, g.density_g_cm3_zyx) == want
    assert _whole_grid_figure(acc, g) != want
    acc.sum_x = acc.sum_x.copy()   # replaced: not the array the blocks describe
    assert mean_rel_uncertainty_50(acc, inv, g.density_g_cm3_zyx) == _whole_grid_figure(acc, g)


def test_whole_tally_batches_and_a_cleared_accumulator():
    """Whole-tally batches (run_histories, as on a GPU summed on the host) keep the scored blocks too; an
    Accumulator.cleared for the next beam (on the previous beam's arrays) starts from a scan."""
    g, beam = _wide()
    sim = Simulation(g, beam, RunSettings(primaries=4000, seed=2, backend="cpu", threads=1))
    acc = Accumulator(sim.n_vox)
    for first in range(0, 2000, 500):
        acc.add(sim.run_histories(first, 500), 500)
        if acc.batches >= 2:
            assert mean_rel_uncertainty_50(acc, inverse_mass(g), g.density_g_cm3_zyx) == _whole_grid_figure(acc, g)
    other = Simulation(g, Beam.pencil(70.0, position_mm=(20.0, -15.0, -1.0), sigma_mm=(2.0, 2.0)),
                       RunSettings(primaries=2000, seed=3, backend="cpu", threads=1))
    new = Accumulator.cleared(acc, np.flatnonzero(acc.sums["edep"] | acc.sums["let_num"] | acc.sums["edep_proton"]
                                                  | acc.sums["edep_water"]))
    for first in range(0, 2000, 500):
        new.add(other.run_histories_sparse(first, 500), 500)
        if new.batches >= 2:
            assert mean_rel_uncertainty_50(new, inverse_mass(g), g.density_g_cm3_zyx) == _whole_grid_figure(new, g)


def test_stream_stops_at_the_same_batch_with_the_same_figure(monkeypatch):
    """A run to a target uncertainty stops after the same batch, with bitwise the same figure, as with a
    whole-grid scan at every evaluation (the code before the change)."""
    g, beam = _wide()
    s = RunSettings(primaries=10**6, seed=5, backend="cpu", threads=1, batch_size=400, target_uncertainty=0.06)

    def run():
        sim = Simulation(g, beam, s)
        acc = Accumulator(sim.n_vox)
        plan = BatchPlan.from_settings(s, "cpu")
        return stream(acc, plan, LocalExecutor(sim, plan), s, g), acc

    res, acc = run()
    assert res.stop_reason == "target_uncertainty" and 10 * 400 < res.next_history < 10**6
    monkeypatch.setattr(Accumulator, "_voxels_with_x", lambda self: np.flatnonzero(self.sum_x))
    ref, acc_ref = run()
    assert (res.next_history, res.stop_reason, res.mean_rel_uncertainty_50) == \
        (ref.next_history, ref.stop_reason, ref.mean_rel_uncertainty_50)
    assert np.array_equal(acc.sum_x, acc_ref.sum_x) and np.array_equal(acc.sums["edep"], acc_ref.sums["edep"])


def test_inverse_mass_where_read_is_bitwise_the_whole_grid_one():
    """InverseMass[idx] (the stopping rule's, computed at the voxels with dose) is bitwise inverse_mass's, 0 where
    the mass is 0; np.asarray gives the whole array (the GPU's copy)."""
    rng = np.random.default_rng(1)
    density = rng.uniform(0.001, 2.5, (5, 7, 9)).astype(np.float32)
    density[0, 0, :4] = 0.0
    g = SimpleNamespace(density_g_cm3_zyx=density, voxel_volume_cm3=0.2 * 0.2 * 0.25)
    whole = inverse_mass(g)
    idx = np.sort(rng.choice(density.size, 100, replace=False))
    idx[0] = 0
    lazy = InverseMass(g)
    assert np.array_equal(lazy[idx], whole[idx]) and lazy[idx][0] == 0.0
    assert np.array_equal(np.asarray(lazy), whole) and np.asarray(lazy).dtype == np.float64


# ---------------------------------------------------------------------------------------------- what the figure counts
def test_the_figure_is_over_tissue_at_or_above_half_the_tissue_maximum():
    """The figure is the mean relative uncertainty over the voxels of tissue (density >= 0.05 g/cm3) whose dose is
    at least 50 % of the maximum dose in tissue (mcproton/_run/stats.py).  Air must neither set that maximum nor
    enter the mean: a few protons stopping in the air of a CT's corner (dose per mass x 1000) would make the figure
    the air's noise, and the stopping rule would run far past the target or stop on the air's statistics.  No test
    had dose in air (mutation audit 2026-12-05, G8).

    Tissue 1.0 Gy at 1 %, lung (0.26 g/cm3) 0.9 Gy at 3 %, a voxel at exactly 0.05 g/cm3 with 0.6 Gy at 4 %, tissue
    0.3 Gy at 5 % (below half of 1.0 Gy) and air (0.0012 g/cm3) with 10 Gy at 40 %: the mean of 1, 3 and 4 % =
    8/3 %.  (With air counted the maximum would be 10 Gy and the figure 40 %.)"""
    dose = np.array([1.0, 0.9, 0.6, 0.3, 10.0])
    unc = np.array([0.01, 0.03, 0.04, 0.05, 0.40])
    rho = np.array([1.0, 0.26, 0.05, 1.0, 0.0012])
    assert mean_uncertainty_above_half_max(dose, unc, rho) == pytest.approx(0.08 / 3, rel=1e-12)
    assert np.isnan(mean_uncertainty_above_half_max(dose, unc, np.full(5, 0.0012)))   # dose in air only: no figure

"""A beam's finish computes its result in chunks of voxels (result._CHUNK_VOXELS; audit 25 memory: all at once it
held ~160 bytes per voxel with dose of float64 temporaries, and a broad field peaked at 1.9 x the memory estimate
after the whole transport).  The result must be bitwise (byte for byte, NaN and -0.0 included) the whole-array
formulation's (kept here as the reference), with chunk boundaries crossed, for an Accumulator and for a ScoredSums
(a GPU beam's host copy), per primary and for a beam's total protons, and with one batch."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mcproton._kernels.layout import LET_SCALE, TALLY_SCALE
from mcproton._run import result as res_mod
from mcproton._run.engine import Accumulator, ScoredSums, Simulation, exact_ledger, exact_sum
from mcproton._run.result import GRID_FIELDS, MEV_PER_G_TO_GY, finish, scored_voxels, stored_grid
from mcproton._run.stats import batch_rel_uncertainty, let_d_rel_uncertainty, mean_uncertainty_above_half_max, \
    weight_sum_of
from mcproton.geometry import slab_phantom
from mcproton.settings import RunSettings
from mcproton.source import Beam, Spot


def _reference(sim, acc, scale: float) -> dict:
    """The whole-array formulation of finish before the chunks (the reference)."""
    g = sim.geometry
    idx = scored_voxels(acc)
    sv = acc.at(idx)
    rho = g.density_g_cm3_zyx.reshape(-1)[idx].astype(np.float64)
    n = acc.primaries
    mass_g = rho * g.voxel_volume_cm3
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_mass = np.where(mass_g > 0, 1.0 / mass_g, 0.0)
        edep = sv["edep"] / TALLY_SCALE
        dose = edep * inv_mass * MEV_PER_G_TO_GY / n
        dose_w = sv["edep_water"] / TALLY_SCALE * inv_mass * MEV_PER_G_TO_GY / n
        ep = sv["edep_proton"] / TALLY_SCALE
        let_d = np.where(ep > 0, sv["let_num"] / LET_SCALE / np.where(ep > 0, ep, 1) * (0.1 * rho), 0.0)
        unc = batch_rel_uncertainty(sv["sum_x"], sv["sum_x2"], acc.batches, weight_sum_of(acc))
        if acc.batches < 2:
            unc = np.where(sv["sum_x"] > 0, np.nan, 0.0)
            let_unc = np.where(sv["let_num"] > 0, np.nan, 0.0)
        else:
            let_unc = let_d_rel_uncertainty(sv["let_num"], sv["edep_proton"], n, sv["let_nn"], sv["let_ne"],
                                            sv["let_ee"], acc.batches, weight_sum_of(acc))
    mean_unc = mean_uncertainty_above_half_max(dose, unc, g.density_g_cm3_zyx.reshape(-1)[idx])
    return {"voxels": idx, "dose_gy_zyx": dose * scale, "dose_to_water_gy_zyx": dose_w * scale,
            "let_d_kev_um_zyx": let_d, "uncertainty_rel_zyx": unc, "edep_mev_zyx": edep / n,
            "let_d_uncertainty_rel_zyx": let_unc,
            "mean": mean_unc, "deposited": exact_sum(sv["edep"])}


@pytest.fixture(scope="module")
def case():
    # water, bone and air slabs (inverse mass 0 nowhere, LET with and without protons), a beam off the axis
    geom = slab_phantom([("water", 12.0), ("bone_compact_icru", 6.0), ("air", 4.0), ("water", 20.0)],
                        lateral_size_mm=(24.0, 24.0), voxel_mm=2.0)
    beam = Beam(spots=[Spot(energy_mev=90.0, position_mm=(3.0, -2.0, -5.0), sigma_mm=(4.0, 3.0), weight=1.0)])
    sim = Simulation(geom, beam, RunSettings(primaries=3000, seed=5, backend="cpu", batches=3))
    accs = []
    for batches in (3, 1):
        acc = Accumulator(sim.n_vox)
        for b in range(batches):
            acc.add(sim.run_histories(b * 1000, 1000), 1000)
        accs.append(acc)
    return sim, accs


class _WithBeam:
    """``sim`` with another beam."""

    def __init__(self, sim, beam) -> None:
        self._sim, self.beam = sim, beam

    def __getattr__(self, name):
        return getattr(self._sim, name)


def _scored(acc: Accumulator) -> ScoredSums:
    idx = scored_voxels(acc)
    return ScoredSums(idx, {k: v[idx].copy() for k, v in acc.sums.items()}, acc.sum_x[idx].copy(),
                      acc.sum_x2[idx].copy(), exact_ledger(acc.ledger), acc.batches, acc.primaries, acc.n_vox,
                      weight_sum_of(acc), int(getattr(acc, "batch_unit", 0)),
                      {k: v[idx].copy() for k, v in acc.let_moments.items()})


@pytest.mark.parametrize("chunk", [1, 37, 1 << 30])
@pytest.mark.parametrize("scored", [False, True])
@pytest.mark.parametrize("total_protons", [None, 3.3e9])
@pytest.mark.parametrize("one_batch", [False, True])
def test_finish_in_chunks_is_bitwise_the_whole_array_result(case, monkeypatch, chunk, scored, total_protons,
                                                             one_batch):
    sim, accs = case
    acc = accs[1 if one_batch else 0]
    if total_protons is not None:   # the same sums, of a beam that gives its total protons (absolute dose)
        sim = _WithBeam(sim, dataclasses.replace(sim.beam, total_protons=total_protons))
    ref = _reference(sim, acc, 1.0 if total_protons is None else float(total_protons))
    assert ref["voxels"].size > 2 * 37   # the chunk boundaries are crossed
    monkeypatch.setattr(res_mod, "_CHUNK_VOXELS", chunk)
    r = finish(sim, _scored(acc) if scored else acc, 1.0)
    for k in GRID_FIELDS:
        got = stored_grid(r, k)
        assert got.voxels.tobytes() == ref["voxels"].tobytes(), k
        assert got.values.dtype == np.float64 and got.values.tobytes() == ref[k].tobytes(), k
    assert np.array_equal(r.mean_rel_uncertainty_50, ref["mean"], equal_nan=True)
    assert r.ledger["deposited"] == float(ref["deposited"]) / TALLY_SCALE

"""sum_results works on the voxels with dose only, in cache-sized chunks (issue 15 item 3: no whole-grid float64
temporaries): the summed dose, dose to water, LET_d, uncertainty, deposited energy and mean uncertainty are
bitwise (byte for byte, -0.0 and NaN included) the whole-grid formulation's (kept here as the reference), on
random grids with zero-dose voxels, several chunk sizes, float32 inputs and a shared random stream."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from mcproton._run import result as res_mod
from mcproton._run.result import DoseResult, sum_results
from mcproton._run.stats import mean_uncertainty_above_half_max
from mcproton.geometry import box_phantom


def _old_sum(results: list[DoseResult]) -> dict[str, Any]:
    """The whole-grid formulation of sum_results before the slabs (the reference)."""
    def total(term):
        out = np.array(term(results[0]), dtype=np.float64)
        for r in results[1:]:
            out += term(r)
        return out

    groups: dict[Any, list[DoseResult]] = {}
    for k, r in enumerate(results):
        p = r.provenance   # (seed, beam index) of a one-beam result; unknown: its own group
        key = None if p.get("seed") is None or p.get("beam_index") is None else (p["seed"], p["beam_index"])
        groups.setdefault(("unknown", k) if key is None else key, []).append(r)
    var = np.zeros(results[0].dose_gy_zyx.shape, np.float64)
    for grp in groups.values():
        sigma = np.array(grp[0].uncertainty_rel_zyx * grp[0].dose_gy_zyx, dtype=np.float64)
        for r in grp[1:]:
            sigma += r.uncertainty_rel_zyx * r.dose_gy_zyx
        var += sigma ** 2
    dose = total(lambda r: r.dose_gy_zyx)
    dose_w = total(lambda r: r.dose_to_water_gy_zyx)
    wlet = total(lambda r: r.let_d_kev_um_zyx * r.dose_gy_zyx)
    with np.errstate(divide="ignore", invalid="ignore"):
        unc = np.where(dose > 0, np.sqrt(var) / np.where(dose > 0, dose, 1.0), 0.0)
        let_d = np.where(dose > 0, wlet / np.where(dose > 0, dose, 1.0), 0.0)
    n = int(sum(r.primaries for r in results))
    if all(r.normalisation == "Gy per primary" for r in results):
        edep = total(lambda r: r.edep_mev_zyx)   # per primary of each beam: the beams add, as the dose does
    else:
        edep = total(lambda r: r.edep_mev_zyx * r.primaries) / n   # absolute: the mean per simulated primary
    return {"dose": dose, "dose_w": dose_w, "unc": unc, "let_d": let_d, "edep": edep,
            "mean_unc": mean_uncertainty_above_half_max(dose, unc, results[0].geometry.density_g_cm3_zyx)}


def _results(rng: np.random.Generator, shape: tuple[int, int, int], k: int, streams: list[tuple],
             dtype: Any = np.float64, normalisation: str = "Gy for 1e9 protons") -> list[DoseResult]:
    nz, ny, nx = shape
    g = box_phantom("G4_WATER", (nx * 2.0, ny * 2.0, nz * 2.0), 2.0)
    out = []
    for i in range(k):
        def grid(scale: float) -> np.ndarray:
            a = rng.random(shape) * scale
            a[rng.random(shape) < 0.4] = 0.0  # zero-dose voxels (most of a patient grid)
            return a.astype(dtype)

        dose = grid(2.0)
        unc = np.where(dose > 0, rng.random(shape) * 0.1, 0.0).astype(dtype)
        out.append(DoseResult(
            dose_gy_zyx=dose, dose_to_water_gy_zyx=grid(2.0), let_d_kev_um_zyx=grid(8.0),
            uncertainty_rel_zyx=unc, mean_rel_uncertainty_50=0.0, geometry=g, ledger={"incident": 1.0},
            provenance={"seed": streams[i][0], "beam_index": streams[i][1]}, primaries=1000 + 7 * i,
            wall_s=1.0, protons_per_second=1.0, backend="cpu", device="cpu", normalisation=normalisation,
            edep_mev_zyx=grid(1.0)))
    # a voxel where every beam has no dose, one where only the last has
    for r in out:
        r.dose_gy_zyx[0, 0, 0] = 0.0
        r.dose_gy_zyx[-1, -1, -1] = 0.0
    out[-1].dose_gy_zyx[-1, -1, -1] = 1.5
    for r in out:  # -0.0 everywhere in one voxel, NaN in another's deposited energy (bits, not values)
        for a in (r.dose_gy_zyx, r.dose_to_water_gy_zyx, r.edep_mev_zyx):
            a[1, 1, 1] = -0.0
        r.dose_gy_zyx[2, 2, 2] = r.dose_to_water_gy_zyx[2, 2, 2] = 0.0
        r.uncertainty_rel_zyx[2, 2, 2] = np.nan  # no dose: no effect on the sum's uncertainty
    out[0].edep_mev_zyx[2, 2, 2] = np.nan
    let_rng = np.random.default_rng(17)   # its own: the other grids' draws as before
    for r in out:   # the LETd's own uncertainty where it has a LETd (NaN in one voxel: not estimated)
        r.let_d_uncertainty_rel_zyx = np.where(r.let_d_kev_um_zyx > 0, let_rng.random(shape) * 0.2, 0.0).astype(dtype)
        r.let_d_uncertainty_rel_zyx[3 % nz, 0, 0] = np.nan
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("streams", [[(1, 0), (1, 1), (1, 2)], [(1, 0), (1, 0), (None, None)]])
@pytest.mark.parametrize("normalisation", ["Gy for 1e9 protons", "Gy per primary"])
def test_slab_sum_is_bitwise_the_whole_grid_sum(monkeypatch, dtype, streams, normalisation):
    rng = np.random.default_rng(15)
    shape = (11, 6, 5)
    results = _results(rng, shape, 3, streams, dtype, normalisation)
    ref = _old_sum(results)
    for slab in (1 << 18, 30, 7, 1):  # one chunk; several; one voxel per chunk
        monkeypatch.setattr(res_mod, "_CHUNK_VOXELS", slab)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the shared-stream warning (tested elsewhere)
            tot = sum_results(results)
        got = {"dose": tot.dose_gy_zyx, "dose_w": tot.dose_to_water_gy_zyx, "unc": tot.uncertainty_rel_zyx,
               "let_d": tot.let_d_kev_um_zyx, "edep": tot.edep_mev_zyx}
        for k, v in got.items():
            assert v.dtype == ref[k].dtype and v.shape == ref[k].shape, k
            assert v.tobytes() == ref[k].tobytes(), (k, slab)
        assert tot.mean_rel_uncertainty_50 == ref["mean_unc"] > 0


def test_slab_sum_with_several_planes_per_slab(monkeypatch):
    """Chunks with a short last one; nothing but zeros in one result."""
    rng = np.random.default_rng(3)
    results = _results(rng, (11, 6, 5), 3, [(2, 0), (2, 1), (2, 2)])
    for a in (results[1].dose_gy_zyx, results[1].dose_to_water_gy_zyx, results[1].edep_mev_zyx):
        a[...] = 0.0
    ref = _old_sum(results)
    monkeypatch.setattr(res_mod, "_CHUNK_VOXELS", 4 * 30 + 5)
    tot = sum_results(results)
    for k, v in (("dose", tot.dose_gy_zyx), ("let_d", tot.let_d_kev_um_zyx), ("unc", tot.uncertainty_rel_zyx),
                 ("edep", tot.edep_mev_zyx), ("dose_w", tot.dose_to_water_gy_zyx)):
        assert v.tobytes() == ref[k].tobytes(), k


def test_shared_stream_still_warns():
    rng = np.random.default_rng(4)
    results = _results(rng, (3, 4, 5), 2, [(1, 0), (1, 0)])
    with pytest.warns(RuntimeWarning, match="share their random numbers") as rec:
        sum_results(results)
    assert rec[0].filename == __file__  # points at the caller of sum_results


def test_per_primary_sum_adds_the_deposited_energy_as_it_adds_the_dose():
    """Audit W3: a sum of per-primary results added the doses but averaged the deposited energy over the primaries,
    so its IDD was half the sum of the two beams' IDDs.  Now both add; an absolute sum keeps the mean per primary."""
    rng = np.random.default_rng(8)
    pp = _results(rng, (4, 5, 6), 2, [(1, 0), (1, 1)], normalisation="Gy per primary")
    tot = sum_results(pp)
    np.testing.assert_array_equal(tot.edep_mev_zyx, pp[0].edep_mev_zyx + pp[1].edep_mev_zyx)
    z, idd = tot.integrated_depth_dose()
    with np.errstate(invalid="ignore"):   # the NaN voxel of the first result's deposited energy
        want = pp[0].integrated_depth_dose()[1] + pp[1].integrated_depth_dose()[1]
    np.testing.assert_allclose(idd, want, rtol=1e-12, equal_nan=True)
    ab = _results(rng, (4, 5, 6), 2, [(1, 0), (1, 1)])
    n0, n1 = ab[0].primaries, ab[1].primaries
    np.testing.assert_allclose(sum_results(ab).edep_mev_zyx,
                               (ab[0].edep_mev_zyx * n0 + ab[1].edep_mev_zyx * n1) / (n0 + n1), rtol=1e-12)

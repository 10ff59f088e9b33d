"""A beam's result holds its grids as values at the scored voxels (ScoredGrid) until they are read, and
sum_results adds the beams of a plan at those voxels without their whole grids (issue 15 item 3: at 46 M voxels
the five whole float64 grids per beam were 1.85 GB of fresh memory, most of the run's host time and peak).  A
read grid, and the sum, must be bitwise (byte for byte, -0.0 and NaN included) what the whole grids give."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from mcproton._run import result as res_mod
from mcproton._run.job import JobOptions, run_job
from mcproton._run.result import GRID_FIELDS, DoseResult, ScoredGrid, stored_grid, sum_results
from mcproton.geometry import slab_phantom
from mcproton.settings import RunSettings
from mcproton.source import Beam, Spot

from test_sum_results_slabs import _results


def _compact(r: DoseResult) -> DoseResult:
    """``r`` with every grid as a ScoredGrid on the voxels where any of its grids has a non-zero bit pattern
    (as finish holds it: the other voxels are +0.0 in every grid)."""
    grids = {k: np.ascontiguousarray(getattr(r, k)).reshape(-1) for k in GRID_FIELDS if getattr(r, k) is not None}
    used = np.zeros(grids["dose_gy_zyx"].size, bool)
    for a in grids.values():
        used |= a.view(np.dtype(f"u{a.dtype.itemsize}")) != 0
    vox = np.flatnonzero(used)
    shape = r.dose_gy_zyx.shape
    kw = {k: ScoredGrid(vox, a[vox].copy(), shape) for k, a in grids.items()}
    return DoseResult(**kw, mean_rel_uncertainty_50=r.mean_rel_uncertainty_50, geometry=r.geometry,
                      ledger=r.ledger, provenance=r.provenance, primaries=r.primaries, wall_s=r.wall_s,
                      protons_per_second=r.protons_per_second, backend=r.backend, device=r.device,
                      normalisation=r.normalisation)


def _bytes(r: DoseResult) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(getattr(r, k)).tobytes() for k in GRID_FIELDS if getattr(r, k) is not None}


def test_scored_grid_reads_as_the_whole_grid():
    """dense() and at() give the whole grid's values bitwise: NaN, -0.0, voxels outside the scored ones, an
    empty grid, indices before the first and after the last scored voxel."""
    rng = np.random.default_rng(7)
    shape = (5, 4, 6)
    whole = np.zeros(shape)
    vox = np.sort(rng.choice(whole.size, 40, replace=False))
    vals = rng.random(40)
    vals[[0, 5, 39]] = [np.nan, -0.0, np.inf]
    whole.reshape(-1)[vox] = vals
    g = ScoredGrid(vox, vals, shape)
    assert g.dense().tobytes() == whole.tobytes() and g.dense().shape == shape
    idx = np.arange(whole.size)
    assert g.at(idx).tobytes() == whole.reshape(-1).tobytes()
    some = np.sort(rng.choice(whole.size, 17, replace=False))
    assert g.at(some).tobytes() == whole.reshape(-1)[some].tobytes()
    empty = ScoredGrid(np.zeros(0, np.int64), np.zeros(0), shape)
    assert empty.dense().tobytes() == np.zeros(shape).tobytes() and empty.at(idx).tobytes() == bytes(8 * idx.size)


def test_result_fields_read_whole_and_stay_read():
    rng = np.random.default_rng(2)
    dense = _results(rng, (7, 5, 4), 1, [(1, 0)])[0]
    comp = _compact(dense)
    assert all(isinstance(stored_grid(comp, k), ScoredGrid) for k in GRID_FIELDS)
    assert _bytes(comp) == _bytes(dense)
    # read once, the array is kept: an in-place change stays (apply_body_outline changes the dose in place)
    comp.dose_gy_zyx[0, 0, 0] = 5.0
    assert comp.dose_gy_zyx[0, 0, 0] == 5.0 and isinstance(stored_grid(comp, "dose_gy_zyx"), np.ndarray)
    back = pickle.loads(pickle.dumps(_compact(dense)))   # Dask and multiprocessing pickle results
    assert _bytes(back) == _bytes(dense)
    assert DoseResult.edep_mev_zyx is None   # the dataclass default


@pytest.mark.parametrize("streams", [[(1, 0), (1, 1), (1, 2)], [(1, 0), (1, 0), (None, None)]])
@pytest.mark.parametrize("which", ["all", "mixed"])
def test_sum_of_scored_grids_is_bitwise_the_sum_of_whole_grids(monkeypatch, streams, which):
    """sum_results of beams held as ScoredGrids (or some so, some whole) gives bitwise the sum of the whole
    grids, in one chunk and in several, and does not make the beams' whole grids."""
    rng = np.random.default_rng(21)
    dense = _results(rng, (9, 6, 5), 3, streams)
    for slab in (1 << 18, 13):
        monkeypatch.setattr(res_mod, "_CHUNK_VOXELS", slab)
        comp = [_compact(r) if which == "all" or i != 1 else r for i, r in enumerate(dense)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # the shared-stream warning (tested elsewhere)
            ref, got = sum_results(dense), sum_results(comp)
        assert _bytes(got) == _bytes(ref), slab
        assert got.mean_rel_uncertainty_50 == ref.mean_rel_uncertainty_50 > 0
        for i, r in enumerate(comp):
            if which == "all" or i != 1:
                assert all(isinstance(stored_grid(r, k), ScoredGrid) for k in GRID_FIELDS)


def test_run_job_results_are_scored_grids_and_sum_bitwise():
    """run_job's beam results (finish) hold ScoredGrids; read whole, they and their sum are bitwise the sum
    of the whole grids (which would fail if the scored voxels missed one with dose)."""
    g = slab_phantom([("water", 20.0), ("bone_compact_icru", 6.0), ("water", 30.0)], (30.0, 26.0), 2.0)
    beams = [Beam([Spot(80.0, position_mm=(-3.0, 2.0, -1.0), sigma_mm=(3.0, 3.0))], name="a"),
             Beam([Spot(95.0, position_mm=(4.0, -2.0, -1.0), sigma_mm=(2.0, 4.0))], name="b")]
    s = RunSettings(primaries=3000, batches=3, seed=5, backend="cpu", threads=1)
    results = run_job(None, s, g, beams, None, JobOptions(checkpoint=False, progress=False, handle_signals=False))
    assert len(results) == 2
    for r in results:
        assert all(isinstance(stored_grid(r, k), ScoredGrid) for k in GRID_FIELDS)
    total = sum_results(results)
    whole = [_compact(r) for r in results]   # reads every grid of the results whole (then re-compacts them)
    assert all(isinstance(stored_grid(r, k), np.ndarray) for r in results for k in GRID_FIELDS)
    ref = sum_results(results)   # from the whole grids now
    assert _bytes(total) == _bytes(ref) and total.mean_rel_uncertainty_50 == ref.mean_rel_uncertainty_50
    assert _bytes(sum_results(whole)) == _bytes(ref)
    assert total.dose_gy_zyx.max() > 0 and total.let_d_kev_um_zyx.max() > 0

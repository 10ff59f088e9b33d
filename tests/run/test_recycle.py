"""On the CPU a job's next beam takes over the previous beam's tallies (Simulation recycle=) and running sums
(Accumulator.cleared), so that a large grid's arrays are not faulted in again per beam (issue 15 item 3).  A
recycled array that was not all zero would add one beam's dose to the next: every beam of a job must be
bitwise the same beam run alone (its own job with the same random stream), the sums included."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._run.job import JobOptions, run_job
from mcproton._run.result import GRID_FIELDS
from mcproton.geometry import slab_phantom
from mcproton.run import Accumulator, Simulation
from mcproton.settings import RunSettings
from mcproton.source import Beam, Spot

OPTS = JobOptions(checkpoint=False, progress=False, handle_signals=False)


def _case(broad: bool):
    g = slab_phantom([("water", 16.0), ("bone_compact_icru", 6.0), ("water", 24.0)], (24.0, 20.0), 2.0)
    sig = (30.0, 30.0) if broad else (2.0, 2.0)   # broad: dose in most voxels (checkpoint keeps whole arrays)
    beams = [Beam([Spot(70.0 + 12 * i, position_mm=(-4.0 + 4 * i, 3.0 - 3 * i, -1.0), sigma_mm=sig)], name=f"b{i}")
             for i in range(3)]
    return g, beams


def _grids(r) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(getattr(r, k)).tobytes() for k in GRID_FIELDS}


@pytest.mark.parametrize("broad", [False, True])
def test_each_beam_of_a_job_is_bitwise_the_beam_alone(broad):
    g, beams = _case(broad)
    s = RunSettings(primaries=2000, batches=2, seed=9, backend="cpu", threads=1)
    job = run_job(None, s, g, beams, None, OPTS)
    for i, b in enumerate(beams):
        alone = run_job(None, s, g, [b], None, OPTS, first_beam_index=i)[0]
        assert _grids(job[i]) == _grids(alone), i
        assert job[i].ledger == alone.ledger and job[i].mean_rel_uncertainty_50 == alone.mean_rel_uncertainty_50
    assert all(r.dose_gy_zyx.max() > 0 for r in job)
    if broad:   # most voxels have dose: the stored form is the whole arrays, which are not recycled
        assert np.count_nonzero(job[0].dose_gy_zyx) > job[0].dose_gy_zyx.size // 2


def test_recycled_simulation_and_accumulator():
    g, beams = _case(False)
    s = RunSettings(primaries=1000, seed=3, backend="cpu", threads=1)
    first = Simulation(g, beams[0], s)
    acc = Accumulator(first.n_vox)
    acc.add(first.run_histories_sparse(0, 1000), 1000)
    second = Simulation(g, beams[1], s, beam_index=1, recycle=first)
    assert second.tally["edep"] is not None and not first.tally
    with pytest.raises(RuntimeError, match="taken over"):
        first.run_histories_sparse(1000, 10)
    fresh = Simulation(g, beams[1], s, beam_index=1)
    a, b = second.run_histories_sparse(0, 1000), fresh.run_histories_sparse(0, 1000)
    assert all(np.array_equal(a[k], b[k]) for k in b)
    from mcproton._run.result import scored_voxels

    sums = [acc.sums["edep"], acc.sum_x]
    cleared = Accumulator.cleared(acc, scored_voxels(acc))
    assert cleared.sums["edep"] is sums[0] and cleared.sum_x is sums[1]   # the same memory, all zero again
    new = Accumulator(first.n_vox)
    for k in new.sums:
        assert cleared.sums[k].tobytes() == new.sums[k].tobytes()
    assert cleared.sum_x.tobytes() == new.sum_x.tobytes() and cleared.sum_x2.tobytes() == new.sum_x2.tobytes()
    assert cleared.batches == cleared.primaries == 0 and not cleared.ledger.any()

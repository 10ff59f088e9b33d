"""A job scans each beam's running sums for its scored voxels once at the end of the beam (result.scored_voxels:
a pass over the whole grid, 0.3 s at 46 M voxels), not again for the result after the checkpoint, and never for
the zero sums of a beam not started (host-time audit 2026-12-06, H3: 9 scans where 3 were needed for a 3-beam
plan).  Checkpoints during a beam still scan that beam (its sums change); the results and the checkpoint stay
those of a run without the shortcut (the resume tests, tests/regression)."""
from __future__ import annotations

import numpy as np
import pytest

import mcproton._run.result as result_mod
from mcproton._run import job as job_mod
from mcproton._run.job import JobOptions, run_job
from mcproton._run.result import GRID_FIELDS
from mcproton.geometry import slab_phantom
from mcproton.run import Accumulator
from mcproton.settings import RunSettings
from mcproton.source import Beam, Spot


def _case():
    g = slab_phantom([("water", 16.0), ("bone_compact_icru", 6.0), ("water", 24.0)], (24.0, 20.0), 2.0)
    beams = [Beam([Spot(70.0 + 12 * i, position_mm=(-4.0 + 4 * i, 3.0 - 3 * i, -1.0), sigma_mm=(2.0, 2.0))],
                  name=f"b{i}") for i in range(3)]
    return g, beams


@pytest.mark.filterwarnings("ignore:.*comes from 2 batches only")
@pytest.mark.parametrize("interval_s", [1e6, 0.0])   # a checkpoint at the end of each beam only; after each batch
def test_each_beam_is_scanned_once_at_its_end(interval_s, tmp_path, monkeypatch):
    g, beams = _case()
    batches = 2
    s = RunSettings(primaries=1000, batches=batches, seed=5, backend="cpu", threads=1,
                    checkpoint_interval_s=interval_s)
    scans: list[int] = []
    real = result_mod.scored_voxels

    def counted(acc):
        if isinstance(acc, Accumulator):   # a whole-grid pass (a ScoredSums just hands back its voxels)
            scans.append(int(acc.primaries))
        return real(acc)

    monkeypatch.setattr(result_mod, "scored_voxels", counted)
    monkeypatch.setattr(job_mod, "scored_voxels", counted)
    out = tmp_path / "out.h5"
    got = run_job(None, s, g, beams, out, JobOptions(progress=False, handle_signals=False))
    per_beam = 1 if interval_s else batches   # each checkpoint during the beam (not after its last batch), its end
    assert len(scans) == len(beams) * per_beam, scans
    assert 0 not in scans                          # no beam scanned before it started
    monkeypatch.undo()
    plain = run_job(None, s, g, beams, None, JobOptions(checkpoint=False, progress=False, handle_signals=False))
    for a, b in zip(got, plain):                   # the same doses as a run without a checkpoint
        assert all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True) for k in GRID_FIELDS)
    resumed = run_job(None, s, g, beams, out, JobOptions(progress=False, handle_signals=False, resume=True))
    for a, b in zip(resumed, plain):               # the checkpoint written with the voxels found once holds them
        assert all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True) for k in GRID_FIELDS)

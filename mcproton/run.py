"""Run a simulation: ``simulate(geometry, beam, settings) -> DoseResult``; ``sum_results`` adds the beams of a
plan.

``simulate`` is a thin call into the one driver of every run, ``mcproton._run.job.run_job`` (the driver of
``mcproton run`` too): settings -> Simulation -> streamed batches (on the GPU summed on the device) -> result.
The parts live in ``mcproton._run``: ``engine`` (Simulation, the accumulators), ``stats`` (the uncertainty),
``streaming`` (batches, stopping, GPU out-of-memory), ``result`` (DoseResult, finish, sum_results), ``job``
(the driver), ``checkpoint`` and ``distributed``.  The names below are kept here for the callers of
``mcproton.run``.
"""
from __future__ import annotations

from typing import Callable

from ._physics.tables import build_tables  # noqa: F401 - kept for callers of mcproton.run
from ._run.engine import PRIVATE_TALLY_BYTES, Accumulator, DeviceAccumulator, ScoredSums, Simulation
from ._run.result import MEV_PER_G_TO_GY, MEV_TO_J, DoseResult, finish, scored_voxels, sum_results
from ._run.stats import UNCERTAINTY_MIN_DENSITY, batch_rel_uncertainty, mean_uncertainty_above_half_max
from ._run.streaming import batch_plan
from .geometry import VoxelGeometry
from .settings import RunSettings
from .source import Beam


def simulate(geometry: VoxelGeometry, beam: Beam, settings: RunSettings | None = None,
             progress: bool | Callable[[int, float], None] = False, *, beam_index: int = 0) -> DoseResult:
    """Transport ``settings.primaries`` protons of ``beam`` through ``geometry`` (no checkpoint, no output
    file; stops early at ``settings.target_uncertainty`` or ``settings.time_limit_s``).

    Parameters
    ----------
    progress : True for a progress bar on stderr, or a callable ``f(done_primaries, protons_per_second)``.
    beam_index : the beam's random stream.  Give beam ``i`` of a plan ``beam_index=i``: the beams then get
        independent random numbers (the same as in ``mcproton run`` of the plan, so that ``sum_results`` of
        the per-beam results is bitwise the job's sum on the CPU, and its uncertainty adds in quadrature).
        Two calls with the same seed and beam index give the same random numbers.
    """
    from ._run.job import JobOptions, run_job

    opts = JobOptions(checkpoint=False, progress=progress, first_beam_index=beam_index, handle_signals=False)
    return run_job(None, settings or RunSettings(), geometry, [beam], None, opts)[0]


__all__ = ["simulate", "DoseResult", "sum_results", "Simulation", "Accumulator", "DeviceAccumulator", "ScoredSums",
           "finish", "batch_plan", "scored_voxels", "batch_rel_uncertainty",
           "mean_uncertainty_above_half_max", "UNCERTAINTY_MIN_DENSITY", "MEV_TO_J", "MEV_PER_G_TO_GY",
           "PRIVATE_TALLY_BYTES"]

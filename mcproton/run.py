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

import dataclasses
import operator
from typing import Callable

import numpy as np

from ._backend import CPU_BY_SETTINGS
from ._physics.tables import build_tables  # noqa: F401 - kept for callers of mcproton.run
from ._run.engine import PRIVATE_TALLY_BYTES, Accumulator, DeviceAccumulator, ScoredSums, Simulation
from ._run.result import (MEV_PER_G_TO_GY, MEV_TO_J, DoseResult, finish, is_per_primary, scored_voxels,  # noqa: F401
                           sum_results)
from ._run.stats import UNCERTAINTY_MIN_DENSITY, batch_rel_uncertainty, mean_uncertainty_above_half_max
from ._run.streaming import batch_plan
from .geometry import VoxelGeometry
from .settings import PhysicsSettings, RunSettings
from .source import Beam


def simulate(geometry: VoxelGeometry, beam: Beam, settings: RunSettings | dict | None = None,
             progress: bool | Callable[[int, float], None] = False, *, beam_index: int = 0,
             log: bool | Callable[[str], None] | None = True, allow: tuple[str, ...] = (),
             _shoots_through: bool = False) -> DoseResult:
    """Transport ``settings.primaries`` protons of ``beam`` through ``geometry`` (no checkpoint, no output
    file; stops early at ``settings.target_uncertainty`` or ``settings.time_limit_s``).

    Parameters
    ----------
    geometry : the voxel grid (:class:`~mcproton.geometry.VoxelGeometry`).
    beam : one :class:`~mcproton.source.Beam` (``Beam.pencil(...)``, or ``Beam([spot, ...])``).  The beams of a
        plan (``plan_to_beams``) are simulated one call each, beam ``i`` with ``beam_index=i``, and added with
        :func:`sum_results`.
    settings : :class:`~mcproton.settings.RunSettings`, or a dict of its fields (``RunSettings(**settings)``);
        None for the defaults.
    progress : True for a progress bar on stderr, or a callable ``f(done_primaries, protons_per_second)``.
    beam_index : the beam's random stream.  Give beam ``i`` of a plan ``beam_index=i``: the beams then get
        independent random numbers (the same as in ``mcproton run`` of the plan, so that ``sum_results`` of
        the per-beam results is bitwise the job's sum on the CPU, and its uncertainty adds in quadrature; ``i``
        is the beam's place among all the plan's beams, ``plan_to_beams(plan)``, as ``mcproton run`` gives each
        beam of ``plan.beams`` its stream since 2026-12-06).
        Two calls with the same seed and beam index give the same random numbers.
    log : where the run's messages go (a beam stopped by its target uncertainty or time limit, a GPU batch made
        smaller): True for stderr, a callable ``f(line)``, or None (or False) for none.  Warnings go through
        Python's ``warnings`` as always.
    allow : the refusals of a patient plan below to pass, as ``mcproton run``'s ``plan.allow_*`` keys do:
        ``"other_frame"`` (``plan.allow_other_frame``), ``"position_mismatch"`` (``plan.allow_position_mismatch``)
        and ``"shifter_inside"`` (no key in ``mcproton run``: for a study of that error only); () for none.  The run
        then goes on with a :class:`~mcproton.McprotonRuntimeWarning`, and the result records each refusal passed in
        ``result.provenance["overrides"]`` (kept by ``save``, ``load`` and :func:`sum_results`; ``[]`` for none), so
        that :func:`~mcproton.write_result_rtdose` tags its RT Dose OVERRIDE (DoseComment, SeriesDescription,
        ImageComments).  :func:`sum_results`' ``"mixed_builds"`` and ``"mixed_physics"`` are taken and change
        nothing here.

    The mcproton warnings issued during the call are kept in ``result.provenance["warnings"]`` (each message
    once), as ``mcproton run`` keeps them in its output, whatever the warning filters show; so are those issued when
    ``geometry`` was made from a CT (``geometry.made_with_warnings``: :meth:`HUCalibration.to_geometry`'s CT values
    that the calibration does not cover, such as metal given bone's density, judged again on what a structure set's
    overrides left, its checks of the CT, such as a phantom CT read with another calibration, an SPR map read as HU
    or a CT without air, and :func:`mcproton._io.roi_overrides.apply_overrides`'s own warnings), and those issued
    when ``beam`` was made from a plan (``beam.meta["warnings"]``: :func:`~mcproton.dicom.plan_to_beams` keeps the
    plan's and the beam model's, such as VirtualSourceAxisDistances taken from the model or MU labelled NP).

    A dose grid that cannot fit in the memory this process may use (the machine's free memory, or less under
    ``ulimit -v`` or a cgroup limit) however little of it gets dose (3 bytes per voxel; under ``ulimit -v`` what is
    allocated, 104) is refused before anything is allocated (:class:`~mcproton.config.ConfigError`, a ValueError:
    the grid, the estimate, what is available, what bounds it and what to do); one whose dose, if it covered the
    whole grid (280 bytes per voxel), would take most of that memory is warned about
    (mcproton/_run/inputs.py ``SIMULATE_BYTES_*``, measured).

    On a grid from a DICOM CT (``geometry.study`` set), what ``mcproton run`` refuses as a plausible but wrong
    patient dose is refused here too (:class:`~mcproton.config.ConfigError`, a ValueError, with ``mcproton run``'s
    message), unless ``allow`` names it: a plan's beam (``plan_to_beams``) whose plan has another
    FrameOfReferenceUID than the CT, or gives none (nothing shows it was made on this CT; not on the CT mcproton
    writes for a plan), so that its isocentre may put the dose in the wrong place (``"other_frame"``), one set
    up in another patient position than the CT's (HFP on an HFS CT: a beam can enter from the wrong side;
    ``"position_mismatch"``) and a range shifter inside the patient (the tissue between the slab and the skin is
    never crossed, so the dose lies too deep; ``"shifter_inside"``).  A plan's beams set up in different positions
    are refused when their results are added (:func:`sum_results`).  Where the CT does not say its PatientPosition,
    a plan's beam is warned about, as in ``mcproton run`` (its position cannot be checked).  The setup positions
    are not checked on the CT mcproton writes for a plan (:func:`~mcproton.slab_ct_geometry`, ``phantom.type =
    "slab_ct"``, whose slabs lie in the plan's patient coordinates), as ``mcproton run`` does not check them there.

    The water-box and research inputs that ``mcproton run`` refuses run here as given, each with a
    :class:`~mcproton.McprotonRuntimeWarning` saying what is wrong: every spot missing the grid, a source inside
    the phantom, a range shifter inside a phantom that is not a CT's, a spot sigma larger than the grid, a
    divergence beyond the limit, a source more than 10 m away, an energy at or below the cut-off
    physics.e_cut_mev (nothing is scored; an energy spread that puts more than 1e-6 of the primaries at or below it is
    warned about in both) or beyond the physics tables, a beam whose every layer stops in its range
    shifter, a phantom of zero density everywhere; and, after the run, a dose that ``mcproton run`` refuses to
    write (nothing scored, or most of the beam's incident energy missed the grid or left it: its check_result
    message; ``mcproton run --allow-empty`` writes it).  An energy above the nuclear data's 250 MeV is warned about
    as in ``mcproton run``, and so is, on a grid from a DICOM CT, a beam entering where the CT cuts the patient off.

    (``_shoots_through`` is for mcproton's own callers only, whose phantoms are built for the beam to leave them,
    such as ``mcproton commission``'s reference-field water cut 20 mm beyond the chamber: it leaves out the
    post-run warning of a beam that mostly left the grid.)
    """
    from ._io.errors import recording_warnings
    from ._run.inputs import checked_allow
    from ._run.job import JobOptions, RunWording, run_job

    settings = _run_settings(settings)
    _check_arguments(geometry, beam)
    allowed = checked_allow(allow, "simulate")
    beam = _checked_beam(beam)
    with recording_warnings() as said:
        _check_memory(geometry, settings)
        overrides = _check_implausible(geometry, beam, settings, allowed)
        # the run's warnings at the caller's line (simulate's caller: run_job -> simulate -> caller)
        # a run of more than a day is told of the settings' fields, not of mcproton run's keys and --resume (a call has
        # no checkpoint: the progress-log audit 26, F2)
        opts = JobOptions(checkpoint=False, progress=progress, first_beam_index=beam_index, handle_signals=False,
                          log=_job_log(log), warn_stacklevel=3,
                          wording=RunWording(long_run=_SIMULATE_LONG_RUN_REMEDY, target="settings.target_uncertainty",
                                             cpu_backend=CPU_BY_SETTINGS, gpu_memory=_SIMULATE_GPU_MEMORY_REMEDY))
        res = run_job(None, settings, geometry, [beam], None, opts)[0]
        if not _shoots_through:
            _warn_refused_result(res, beam)
    # what was warned about when the grid was made (HUCalibration.to_geometry: metal above the calibration), then
    # during the call
    said = list(getattr(geometry, "made_with_warnings", None) or []) + said
    # and before those, what was warned about when the beam was made (plan_to_beams: the plan's and the beam model's)
    said = list((beam.meta or {}).get("warnings") or []) + said
    if said:   # what was warned about, beside the dose (DoseResult.save keeps it), as mcproton run keeps it
        res.provenance["warnings"] = list(dict.fromkeys(said))
    if overrides:   # refusals passed with allow=: write_result_rtdose tags the RT Dose OVERRIDE
        res.provenance["overrides"] = overrides
    return res


#: what simulate's warning of a run of more than a day (streaming.LONG_RUN_S) says to do: its settings' fields
_SIMULATE_LONG_RUN_REMEDY = ("give the settings a time_limit_s (RunSettings(time_limit_s=...): the call then returns "
                             "the dose of the primaries done) or fewer primaries (RunSettings(primaries=...))")


#: what a ``simulate`` call is told where the GPU cannot hold even the smallest batch (the error-message audit 27, F11d)
_SIMULATE_GPU_MEMORY_REMEDY = f"use a geometry of coarser voxels, or the CPU: {CPU_BY_SETTINGS}"


def _job_log(log: bool | Callable[[str], None] | None) -> Callable[[str], None] | None:
    """simulate's ``log`` as run_job's (None: its default, stderr)."""
    if log is True:
        return None
    if log is None or log is False:
        return _silent
    if not callable(log):
        raise ValueError(f"simulate: log must be True (stderr), a callable f(line) or None (no messages); got a "
                         f"{type(log).__name__}")
    return log


def _silent(_line: str) -> None:
    """No messages (``simulate(..., log=None)``)."""


def _run_settings(settings: RunSettings | dict | None) -> RunSettings:
    """The settings to run: a copy made through ``RunSettings`` and ``PhysicsSettings`` again, so that their checks
    (``__post_init__``) see the values as they are now.  A field assigned after the settings were made (a loop's
    ``s.seed = i``, ``s.physics.nuclear = "false"``, ``s.primaries = -5``) bypassed every check and reached the
    kernel (the Python-API audit, F4: nuclear physics on for "false", scattering off for None).  The caller's
    objects are left as they are; the copy is what runs and what the result's provenance records."""
    if settings is None:
        return RunSettings()
    if isinstance(settings, dict):
        settings = RunSettings(**settings)
    if not isinstance(settings, RunSettings):
        raise ValueError(f"simulate: settings must be a mcproton.RunSettings, a dict of its fields or None; got a "
                         f"{type(settings).__name__}")
    phys = settings.physics   # a dict assigned to it is made a PhysicsSettings by RunSettings, anything else refused
    return dataclasses.replace(settings, physics=dataclasses.replace(phys) if isinstance(phys, PhysicsSettings)
                               else phys)


#: how far from 1 the squared length of a spot's direction and axis_x, and from 0 their dot product, may be for the
#: vectors Spot.__post_init__ made (unit and orthogonal to within a few ulp): beyond it, a vector assigned afterwards
_UNIT_TOL = 1e-9
#: the highest spot energy Spot.__post_init__ takes (MeV)
_SPOT_MAX_ENERGY_MEV = 350.0
_SPOT_CHECKED = operator.attrgetter("energy_mev", "energy_spread_mev", "weight", "position_mm", "direction", "axis_x",
                                    "sigma_mm", "divergence_rad", "correlation")


def _checked_beam(beam: Beam) -> Beam:
    """The beam to run: ``Spot``'s and ``Beam``'s checks again, on copies (a field assigned after the object was
    made, such as ``beam.spots[0].weight = -1`` or a direction of any length, bypassed them: the Python-API audit,
    F4).  A spot that passes every check as it is (its direction and axis_x the unit vectors Spot made) is used
    unchanged, so that the kernel gets bitwise the values it got before; another is made again with
    ``dataclasses.replace`` (Spot's own error, or a direction normalised).  Checked on whole arrays: a plan's beam
    has thousands of spots.  The caller's beam and spots are left as they are."""
    from .source import Spot

    spots = beam.spots
    if isinstance(spots, list) and spots and all(type(s) is Spot for s in spots):   # else Beam says what is wrong
        ok = _spots_as_made(spots)
        if not ok.all():
            spots = [s if good else dataclasses.replace(s) for s, good in zip(spots, ok)]
    return dataclasses.replace(beam, spots=list(spots))   # Beam's checks (weights, total_protons) on a copy


def _spots_as_made(spots: list) -> np.ndarray:
    """Per spot, whether its fields pass Spot.__post_init__'s checks as they are (numbers of the right shapes and
    ranges; direction and axis_x unit and orthogonal).  All False where the fields do not make arrays of numbers."""
    from .source import MAX_SPREAD_SIGMAS, _rowdot

    n = len(spots)
    try:
        cols = [np.array(c) for c in zip(*map(_SPOT_CHECKED, spots))]
    except (TypeError, ValueError):   # ragged
        return np.zeros(n, bool)
    if any(c.dtype.kind not in "iuf" for c in cols):   # text, None, objects
        return np.zeros(n, bool)
    e, es, w, pos, d, ax, sig, div, cor = (c.astype(float) for c in cols)
    if not (e.shape == es.shape == w.shape == (n,) and pos.shape == d.shape == ax.shape == (n, 3)
            and sig.shape == div.shape == cor.shape == (n, 2)):
        return np.zeros(n, bool)
    with np.errstate(all="ignore"):
        ok = (np.isfinite(e) & (e > 0) & (e <= _SPOT_MAX_ENERGY_MEV) & np.isfinite(es) & (es >= 0)
              & (es * MAX_SPREAD_SIGMAS <= e) & np.isfinite(w) & (w >= 0))
        for a in (pos, d, ax, sig, div, cor):
            ok &= np.isfinite(a).all(axis=1)
        ok &= (sig >= 0).all(axis=1) & (div >= 0).all(axis=1) & (np.abs(cor) <= 1).all(axis=1)
        ok &= ((np.abs(_rowdot(d, d) - 1) <= _UNIT_TOL) & (np.abs(_rowdot(ax, ax) - 1) <= _UNIT_TOL)
               & (np.abs(_rowdot(ax, d)) <= _UNIT_TOL))
    return ok


def _check_arguments(geometry: VoxelGeometry, beam: Beam) -> None:
    """Refuse a geometry or beam of the wrong kind, with what to give instead."""
    from .source import Spot

    if not isinstance(geometry, VoxelGeometry):
        raise ValueError(f"simulate: geometry must be a mcproton.VoxelGeometry (box_phantom, slab_phantom, "
                         f"HUCalibration.to_geometry, ...); got a {type(geometry).__name__}")
    if isinstance(beam, (list, tuple)):
        raise ValueError(f"simulate runs one beam; got a {type(beam).__name__} of {len(beam)}: simulate beam i of "
                         "a plan with simulate(geometry, beams[i], settings, beam_index=i) and add the results "
                         "with mcproton.sum_results (as mcproton run does)")
    if isinstance(beam, Spot):
        raise ValueError("simulate: beam must be a mcproton.Beam; got a Spot: give Beam([spot]) (or Beam.pencil)")
    if not isinstance(beam, Beam):
        raise ValueError(f"simulate: beam must be a mcproton.Beam (Beam.pencil, Beam([spot, ...]) or one of "
                         f"plan_to_beams); got a {type(beam).__name__}")


def _check_memory(geometry: VoxelGeometry, settings: RunSettings) -> None:
    """simulate's memory check of the dose grid (mcproton/_run/inputs.py check_simulate_memory), before anything of
    the run is allocated: a grid that cannot fit however little of it gets dose is refused (ConfigError, a
    ValueError, naming the grid, the estimate, what is available and what bounds it), and one whose dose, if it
    covered the whole grid, would take most of the memory is warned about.  Before the edges audit of 2026-12-07
    (F2), simulate had no such check: numpy's bare MemoryError at the first tally, or a run started on pages mapped
    lazily and killed after its transport.  Its first check took ``mcproton run``'s estimate (with the output
    buffers and the sum of the beams, about 4 times what a pencil beam used) and refused grids that ran (review of
    2026-12-07, R2)."""
    import os

    from ._cpus import OMP_NUM_THREADS, _parsed_omp, usable_cpus
    from ._run.engine import cpu_tally_slots
    from ._run.inputs import check_simulate_memory
    from .config import ConfigError

    fix = ("use coarser voxels (a larger voxel_mm of box_phantom / slab_phantom, HUCalibration.to_geometry's blocks=, "
           "or mcproton.resample_blocks(geometry, (2, 2, 1)) for blocks of whole voxels) or free memory (or ask the "
           "batch system for more)")
    n_vox = int(geometry.material_index_zyx.size)
    # the CPU backend's threads (_cpus.default_threads, read here by its parser without its warnings, which the run
    # gives: a second parser here took "4,abc" as 4 threads, which the run ignores; review 2b, R6)
    omp = os.environ.get(OMP_NUM_THREADS, "").strip()
    threads = settings.threads or (_parsed_omp(omp) if omp else None) or usable_cpus()
    if settings.backend not in ("cpu", "auto"):
        threads = 1
    try:
        check_simulate_memory(n_vox, geometry.shape_zyx, cpu_tally_slots(n_vox, threads), fix)
    except ConfigError as exc:
        raise ConfigError(f"simulate: {exc}") from None


#: How a script goes on past simulate's refusals of a patient plan (the ``allow`` names, mcproton._run.inputs.OVERRIDES)
_ALLOW_TEXT = {
    "other_frame": ", or pass allow=(\"other_frame\",) to simulate if the two frames are known to coincide (the "
                   "result and its RT Dose then say OVERRIDE)",
    "position_mismatch": ", or pass allow=(\"position_mismatch\",) to simulate if the plan's position is right and "
                         "the CT's PatientPosition is known to be wrong (the result and its RT Dose then say OVERRIDE)",
    "shifter_inside": "; to study this error, pass allow=(\"shifter_inside\",) to simulate (the result and its RT "
                      "Dose then say OVERRIDE)",
}


def _check_implausible(geometry: VoxelGeometry, beam: Beam, settings: RunSettings,
                       allowed: frozenset[str]) -> list[str]:
    """The checks of ``mcproton run`` (mcproton/_run/inputs.py check_inputs) on one beam.  On a grid from a DICOM CT
    (``geometry.study`` set) its refusals of a plausible but wrong patient dose are refused (ConfigError), unless
    ``allowed`` names them: a range shifter inside the patient (check_shifters_outside), a plan of another CT
    (check_frame_of_reference) or of no stated frame (check_plan_frame_of), or set up in another patient position
    (check_position_against_ct, where positions_checked: not on a slab CT written for its plan); the names of
    those passed are returned (for ``provenance["overrides"]``), each warned of.  Its other refusals are warnings
    here: the beam against the grid and its energies (beam_grid_checks, check_beam_energies: the run goes on as
    asked; an energy at or below the cut-off scores nothing; above 250 MeV the nuclear data are extrapolated) and
    an all-vacuum phantom.  Its warnings of a CT are given too: a plan's position that a CT without
    PatientPosition cannot check (check_patient_position), a patient cut off by the CT on the beam's path
    (check_ct_truncation; a water box is meant to touch its grid's faces, so not there)."""
    from ._io.errors import McprotonRuntimeWarning, warn
    from ._run.inputs import beam_grid_checks, check_beam_energies, check_ct_truncation, check_frame_of_reference, \
        check_not_vacuum, check_plan_frame_of, check_position_against_ct, check_shifters_outside, positions_checked
    from .config import ConfigError

    on_ct = geometry.study is not None
    # the setup positions on a patient's CT only, as mcproton run: not on a slab CT written for its plan
    positions = positions_checked(geometry)
    used: list[str] = []
    # the plan's frame and setup position against the CT's (either unknown: nothing checked) and the shifters, as
    # mcproton run refuses them
    refusals = (("other_frame", lambda: check_frame_of_reference(geometry, [beam], override="")),
                ("other_frame", lambda: check_plan_frame_of(geometry, [beam])),   # a plan that gives no frame
                ("position_mismatch", lambda: check_position_against_ct(geometry, [beam], override="")),
                ("shifter_inside", lambda: check_shifters_outside(geometry, [beam], "beam")))
    for name, check in refusals if on_ct else ():
        if name == "position_mismatch" and not positions:
            continue
        try:
            check()
        except ConfigError as exc:
            if name not in allowed:
                raise ConfigError(f"simulate: {exc}{_ALLOW_TEXT[name]}") from None
            used += [name] if name not in used else []
            warn(f"simulate: {exc} (mcproton run refuses this; simulated as given: allow={name!r}, recorded in the "
                 "result's provenance \"overrides\" and its RT Dose tagged OVERRIDE)", McprotonRuntimeWarning,
                 stacklevel=3)
    for check in (*beam_grid_checks(geometry, [beam], "beam", shifters=not on_ct),
                  lambda: check_beam_energies([beam], settings, "beam"),
                  lambda: check_not_vacuum(geometry, "the geometry's densities (density_g_cm3_zyx) / the HU "
                                           "calibration")):
        try:
            check()
        except ConfigError as exc:
            warn(f"simulate: {exc} (mcproton run refuses this; simulated as given)", McprotonRuntimeWarning,
                 stacklevel=3)
    if not on_ct:
        return used
    pos = (beam.meta or {}).get("patient_position")
    if pos and positions and not geometry.patient_position:   # mcproton run's warning (check_patient_position)
        warn(f"simulate: beam {beam.name!r}: the CT series has no PatientPosition, so the plan's setup position "
             f"{str(pos).strip().upper()} cannot be checked against it", McprotonRuntimeWarning, stacklevel=3)
    check_ct_truncation(geometry, [beam], "simulate: beam")
    return used


def _warn_refused_result(res: DoseResult, beam: Beam) -> None:
    """``mcproton run``'s check of the finished run (mcproton/_run/inputs.py check_result: nothing scored, most of
    the beam's incident energy missed the grid or left it), here a warning: a shoot-through beam can be meant, as
    ``mcproton run --allow-empty`` says."""
    from ._io.errors import McprotonRuntimeWarning, ResultRefused, warn
    from ._run.inputs import check_result

    try:
        check_result(res, beams=[beam], script=True)
    except ResultRefused as exc:
        warn(f"simulate: {exc} (mcproton run refuses to write this dose unless --allow-empty)",
             McprotonRuntimeWarning, stacklevel=3)


__all__ = ["simulate", "DoseResult", "sum_results", "Simulation", "Accumulator", "DeviceAccumulator", "ScoredSums",
           "finish", "batch_plan", "scored_voxels", "batch_rel_uncertainty",
           "mean_uncertainty_above_half_max", "UNCERTAINTY_MIN_DENSITY", "MEV_TO_J", "MEV_PER_G_TO_GY",
           "PRIVATE_TALLY_BYTES"]

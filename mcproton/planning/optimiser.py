"""Spot-weight optimisation: non-negative least squares to a uniform prescription (:func:`optimise_weights`,
L-BFGS-B) over the dose-influence matrices of all fields (:func:`optimise_plan`)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np

from ..geometry import VoxelGeometry
from .dose_model import ANALYTICAL_KERNEL, DoseModel, influence_matrix, voxel_depth_offsets
from .plan import RBE, Plan
from .raytrace import (check_direction, mass_stopping_ratio, relative_stopping_power, voxel_centres_mm,
                       water_equivalent_depth)
from .spots import generate_field_spots


#: default iterations of the optimiser (L-BFGS-B, keeping MAXCOR corrections): the demo plan's model dose on its 6000
#: points is more uniform after 120 (+ 60 for the refit) than after the 400 (+ 200) FISTA iterations used before
#: 2026-12-06 (objective 5.19e-5 against 5.52e-5 Gy^2 per point), the craniospinal plan's as uniform (8.36e-6 against
#: 8.26e-6; the same D95 and D2 to 1e-4), with 194 and 191 evaluations (two products with the matrix each) against
#: 662 and 512 products with A^T A (BENCHMARKS.md, "The planner's optimiser")
ITERATIONS = 120
#: A target smaller than this (cm3) is warned of by :func:`optimise_plan`: there the analytical model's mean target
#: dose is more than ~1 % above the Monte Carlo's (the lateral halo and multiple scattering in tissue do not reach
#: equilibrium across a target of about two spot sigmas), so the plan's BeamDose and MU, from the model, under-dose
#: it.  Measured (infant audit 2026-12-06, F5: a 1-year-old's orbit, 1 mm grid, one lateral field behind RS_3CM, spot
#: sigma 5.7 mm at the isocentre; MC/model mean target dose over seeds): 6 mm sphere (0.11 cm3) 0.977-0.986, 10 mm
#: (0.52 cm3) 0.992-0.994, 15 mm (1.77 cm3) 0.999.  The 1 % error lies between 6 and 10 mm; 0.5 cm3 (a 9.8 mm sphere)
#: errs towards warning.
SMALL_TARGET_CM3 = 0.5
#: L-BFGS-B's memory (pairs of corrections): 20 reaches a lower objective than SciPy's default 10 in the same
#: evaluations on the demo plan (5.2e-5 against 6.3e-5 after 120 + 60 iterations), at no measurable CPU cost
MAXCOR = 20
#: the objective's row blocks hold at most this many matrix elements (float32: 1 MiB): a block read for A_b x is
#: still in the core's cache (L2) for r_b A_b, so each evaluation reads the matrix from memory once, not twice; and
#: it stays under OpenBLAS's size for threading a matrix-vector product (m n < 115,200 x GEMM_MULTITHREAD_THRESHOLD
#: = 460,800 in 0.3.x, interface/gemv.c), so each worker's products run on its own core.  Measured on the demo plan's
#: 6000 x 6348 matrix (2-core Intel Xeon VM, loaded): 15 ms CPU per evaluation at 2^17-2^18 elements, 60-230 ms at
#: 2^19 (OpenBLAS's threads on each small product), 30 ms for the two whole products before (BENCHMARKS.md,
#: twentieth session)
OBJECTIVE_BLOCK_ELEMENTS = 1 << 18
#: the objective's rows are split into this many contiguous ranges, each a task of a worker thread with its own
#: partial gradient, summed in a fixed order: the plan is the same whatever the number of workers (the CPUs)
OBJECTIVE_CHUNKS = 16


def optimise_weights(A: np.ndarray, target_dose: np.ndarray | float, *, iterations: int = ITERATIONS,
                     point_weights: np.ndarray | None = None, x0: np.ndarray | None = None) -> np.ndarray:
    """Non-negative least squares min ||W^(1/2) (A x - b)||^2, x >= 0, by L-BFGS-B (bound-constrained
    limited-memory quasi-Newton, SciPy) for ``iterations`` iterations.  Returns x (float64)."""
    return _NNLS(A, target_dose, point_weights).solve(iterations, x0)


class _NNLS:
    """The scaled problem of :func:`optimise_weights`: the matrix in float32 (a float64 vector would make NumPy copy
    it on every product), scaled to a largest element of 1, and solved by L-BFGS-B with the bounds x >= 0.

    Each iteration costs one or a few evaluations of the objective and its gradient, two products with the matrix
    (A x, then A^T r) each, made block by block of rows in one pass over the matrix (:meth:`objective`).  Until
    2026-12-06 it was FISTA (accelerated projected gradient, step 1 / ||A||^2) with
    a fixed 400 + 200 iterations: on the demo plan (6000 points x 6348 spots) L-BFGS-B reaches a lower objective
    with 194 evaluations than FISTA with 662 products with A^T A; the problem is ill-conditioned (spots of 70 and
    125 MeV side by side), where FISTA's step, fixed by the largest eigenvalue, crawls along the smallest ones."""

    def __init__(self, A: np.ndarray, target_dose, point_weights=None) -> None:
        A = np.asarray(A, np.float32)
        n_pts, n_sp = A.shape
        b = np.broadcast_to(np.asarray(target_dose, np.float64), (n_pts,)).astype(np.float64)
        if point_weights is None:           # unweighted: no weighted copy of the matrix (x 1.0 is exact)
            Aw, bw = A, b.astype(np.float32)
        else:
            sw = np.sqrt(point_weights)
            Aw = A * sw[:, None].astype(np.float32)
            bw = (b * sw).astype(np.float32)
        self.scale = float(np.abs(Aw).max()) or 1.0
        self.Aw = Aw / np.float32(self.scale)
        self.bw = bw
        #: objective + gradient evaluations of the last solve (two matrix products each)
        self.evaluations = 0
        rows = max(1, OBJECTIVE_BLOCK_ELEMENTS // max(1, n_sp))
        if rows >= 8:           # whole 8-row steps of the products' kernels: on the demo plan the residuals are
            rows -= rows % 8    # then bit for bit those of the whole product A x (not so with 41-row blocks)
        n_blocks = -(-n_pts // rows)
        cuts = [rows * (n_blocks * c // OBJECTIVE_CHUNKS) for c in range(OBJECTIVE_CHUNKS)] + [n_pts]
        #: (first row, end row) of each chunk of :meth:`objective`, whole blocks of ``self._rows`` rows each
        self._chunks = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        self._rows = rows
        self._pool = None       # the worker threads while solve() runs (None: the chunks one after another)

    def _chunk(self, x32: np.ndarray, r: np.ndarray, first: int, end: int) -> np.ndarray:
        """The residuals A x - b of rows ``first:end`` (into ``r``) and their part of A^T r (float32), block by
        block: r_b = A_b x, then r_b A_b while A_b is in cache."""
        g = np.zeros(self.Aw.shape[1], np.float32)
        for r0 in range(first, end, self._rows):
            r1 = min(r0 + self._rows, end)
            block = self.Aw[r0:r1]
            rb = np.subtract(block @ x32, self.bw[r0:r1], out=r[r0:r1])
            g += rb @ block
        return g

    def objective(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """||A x - b||^2 (float64 sum of the float32 residuals) and its gradient 2 A^T (A x - b), in one pass over
        the matrix: A x and A^T r block by block of rows (:data:`OBJECTIVE_BLOCK_ELEMENTS`), the chunks of rows
        (:data:`OBJECTIVE_CHUNKS`) in the worker threads of :meth:`solve`.  Before 2026-12-06 (twentieth session)
        the two whole products A x, then A^T r, read the 152 MB matrix of the demo plan twice per evaluation: 7.8 s
        of the 2 mm plan's ~14 s CPU.  The same sums in another order: the gradient's float32 terms are added
        block by block (relative difference ~2e-6 on the demo plan), so the plan moves within the optimiser's
        rounding."""
        self.evaluations += 1
        x32 = np.asarray(x, np.float32)
        r = np.empty(len(self.bw), np.float32)
        if self._pool is None:
            parts = [self._chunk(x32, r, a, b) for a, b in self._chunks]
        else:
            parts = list(self._pool.map(lambda ab: self._chunk(x32, r, *ab), self._chunks))
        g = parts[0]
        for p in parts[1:]:     # in chunk order: the same sum whatever the number of workers
            g += p
        return float(r.astype(np.float64) @ r), 2.0 * g.astype(np.float64)

    def solve(self, iterations: int, x0: np.ndarray | None = None, fixed_zero: np.ndarray | None = None) -> np.ndarray:
        """x >= 0 minimising the objective after ``iterations`` L-BFGS-B iterations (fewer only when the line search
        can make no more progress, at float32 rounding), from ``x0`` (unscaled; default: the uniform weight that fits
        b best).  ``fixed_zero`` (boolean): spots held at 0 (upper bound 0), so a refit on the rest needs no copy of
        the matrix."""
        from scipy.optimize import Bounds, minimize

        n_sp = self.Aw.shape[1]
        if not np.any(self.Aw):         # no spot reaches a point: a NaN dose otherwise
            raise ValueError("the dose-influence matrix is zero: no spot gives dose to any target point (a "
                             "target beyond the reach of the fields' energies, or spots far from it)")
        if x0 is None:
            s = self.Aw @ np.ones(n_sp, np.float32)
            x0 = np.full(n_sp, float(self.bw @ s / max(float(s @ s), 1e-30)))
        else:
            x0 = np.asarray(x0, np.float64) * self.scale
        upper = np.full(n_sp, np.inf)
        if fixed_zero is not None:
            upper[np.asarray(fixed_zero, bool)] = 0.0
        x0 = np.clip(x0, 0.0, upper)
        self.evaluations = 0
        workers = min(len(self._chunks), _objective_workers())
        with ThreadPoolExecutor(workers, thread_name_prefix="mcproton-nnls") if workers > 1 \
                else nullcontext() as pool:
            self._pool = pool
            try:
                res = minimize(self.objective, x0, jac=True, method="L-BFGS-B",
                               bounds=Bounds(np.zeros(n_sp), upper),
                               # ftol = gtol = 0: the iterations asked for (the caller's cost and quality), not a
                               # tolerance
                               options={"maxiter": int(iterations), "maxcor": MAXCOR, "ftol": 0.0, "gtol": 0.0})
            finally:
                self._pool = None
        return np.clip(res.x, 0.0, upper) / self.scale


def _objective_workers() -> int:
    """Worker threads of the objective: the CPUs this process may use, no more than ``OMP_NUM_THREADS`` where set
    (as OpenBLAS's threads of the whole products before).  The matrix-vector products let go of the GIL."""
    from .._cpus import omp_num_threads, usable_cpus

    usable = usable_cpus()
    omp = omp_num_threads()
    return max(1, min(usable, omp) if omp is not None else usable)


def _target_stats(dose: np.ndarray, pres: float) -> dict:
    from ..dvh import dose_stats

    st = dose_stats(dose, np.ones(dose.shape, bool), None, pres)   # the relative figures only: no voxel volume
    return {"d95_rel": st["d95"] / pres, "d98_rel": st["d98"] / pres, "d2_rel": st["d2"] / pres,
            "dmean_rel": st["dmean"] / pres, "within_5pct": st["within_5pct"]}


#: a target whose mean relative stopping power is below this is mostly air (lung is about 0.25): warned of
_AIR_RSP = 0.1
#: default of ``optimise_plan(memory_budget_gb=...)``: the most memory (GB = 1e9 bytes) the optimiser's matrices may
#: be estimated to need (:func:`_matrix_peak_bytes`); a 16 GB laptop keeps half for the rest
MEMORY_BUDGET_GB = 8.0
#: the optimiser's peak memory / the size of its float32 dose-influence matrix (points x spots x 4 bytes): the
#: matrix, its scaled copy (``_NNLS``) and the float64 dose product (8 bytes per element); measured 5.8 on a
#: 6000 x 84,439 matrix (2.0 GB, 11.8 GB resident, audit 2026-12-06 F5; 4.9 once the field blocks are freed)
_PEAK_PER_MATRIX = 5.0


def _matrix_peak_bytes(n_points: int, n_spots: int) -> float:
    """The estimated peak memory (bytes) of optimising ``n_spots`` spots on ``n_points`` points."""
    return _PEAK_PER_MATRIX * 4.0 * n_points * n_spots


def check_mask_grid(mask, geometry: VoxelGeometry, what: str = "target_mask") -> np.ndarray:
    """``mask`` as a boolean array, or ``ValueError`` when its shape is not the grid of ``geometry`` (z, y, x):
    a mask made on another grid (a dose grid, another voxel size, a cropped CT) would be read index by index and
    put the plan somewhere else in the patient."""
    m = np.asarray(mask)
    if m.shape != tuple(geometry.shape_zyx):
        vs = tuple(round(float(v), 4) for v in geometry.voxel_size_mm)
        org = tuple(round(float(o), 3) for o in geometry.origin_mm)
        raise ValueError(f"{what} has shape (z, y, x) {m.shape}, but the geometry's grid is "
                         f"{tuple(geometry.shape_zyx)} (voxels {vs} mm, origin {org} mm): a "
                         "mask from another grid would be planned in the wrong place; make it on this geometry "
                         "(mcproton.dicom.load_rtstruct_masks(rtstruct, geometry))")
    return m.astype(bool, copy=False)


def _check_inputs(geometry: VoxelGeometry, target_mask, field_specs, prescription_gy_rbe, max_points, iterations,
                  keep_points_mask) -> None:
    """``ValueError`` for inputs ``optimise_plan`` cannot plan (they would end in a raw NumPy error or a NaN)."""
    check_mask_grid(target_mask, geometry, "target_mask")
    if keep_points_mask is not None:
        check_mask_grid(keep_points_mask, geometry, "keep_points_mask")
    p = prescription_gy_rbe
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not (np.isfinite(p)
                                                                                             and p > 0):
        raise ValueError(f"prescription_gy_rbe must be a finite number > 0 (Gy(RBE) per fraction); got {p!r}")
    for what, n in (("max_points", max_points), ("iterations", iterations)):
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"{what} must be a whole number >= 1; got {n!r}")
    if isinstance(field_specs, dict) or not isinstance(field_specs, (list, tuple)) or not field_specs:
        raise ValueError("field_specs must be a non-empty list of fields, each a dict with 'name' and 'direction' "
                         f"(e.g. {{'name': 'PA', 'direction': gantry_direction(180)}}); got {field_specs!r}")
    for n, spec in enumerate(field_specs):
        if not isinstance(spec, dict) or "name" not in spec or "direction" not in spec:
            raise ValueError(f"field_specs[{n}] must be a dict with 'name' and 'direction'; got {spec!r}")
        check_direction(spec["direction"], f"field {spec['name']!r}")
        if spec.get("target_mask") is not None:
            check_mask_grid(spec["target_mask"], geometry, f"field {spec['name']!r}'s target_mask")


def optimise_plan(name: str, geometry: VoxelGeometry, target_mask: np.ndarray, field_specs: list[dict], *,
                  prescription_gy_rbe: float = 1.8, target_name: str = "CTV", max_points: int = 6000,
                  iterations: int = ITERATIONS, seed: int = 0, rsp_zyx: np.ndarray | None = None,
                  keep_points_mask: np.ndarray | None = None, voxel_average_samples: int = 0,
                  dose_model: DoseModel | None = None,
                  memory_budget_gb: float | None = MEMORY_BUDGET_GB) -> Plan:
    """Generate the spots of each field (``field_specs``: dicts with ``name``, ``direction`` and optional
    :func:`generate_field_spots` keywords, e.g. ``target_mask`` to restrict that field to part of the target)
    and optimise all spot weights jointly to a uniform physical dose prescription / RBE.

    ``keep_points_mask``: target voxels that are always optimisation points (the rest of the target is
    sampled at random up to ``max_points`` in all).  ``voxel_average_samples`` > 0: the dose-influence matrix
    holds the voxel-mean depth dose (that many depth samples per voxel, :func:`voxel_depth_offsets`) instead
    of the dose at the voxel centre, i.e. the quantity the Monte Carlo scores.

    ``dose_model``: the dose-influence matrix of a field (:class:`~mcproton.planning.dose_model.DoseModel`);
    default the analytical :func:`~mcproton.planning.dose_model.influence_matrix`.

    ``memory_budget_gb``: refuse (``ValueError``, before the matrix is made) a problem whose estimated peak memory
    (points x spots x 4 bytes x 5) exceeds it (None: no limit); coarser ``spot_spacing_mm`` / ``layer_spacing_mm``
    or fewer ``max_points`` make it smaller.

    The masks (``target_mask``, ``keep_points_mask``, a field's ``target_mask``) must be on the grid of
    ``geometry`` (``ValueError`` otherwise).  A field spec without ``beam_model`` gets generic pencil beams (no
    machine: no RT Ion Plan); give it ``beam_model`` (e.g. ``DEFAULT_BEAM_MODEL``) to plan on a clinical machine.
    Directions are in the geometry's LPS frame: :func:`~mcproton.planning.gantry_direction` with the CT's
    ``patient_position`` gives a room gantry angle's."""
    _check_inputs(geometry, target_mask, field_specs, prescription_gy_rbe, max_points, iterations, keep_points_mask)
    pres = prescription_gy_rbe / RBE
    model = influence_matrix if dose_model is None else dose_model
    rsp = rsp_zyx if rsp_zyx is not None else relative_stopping_power(geometry)
    msr = mass_stopping_ratio(geometry)
    pts_all = voxel_centres_mm(geometry, target_mask)
    if len(pts_all) == 0:
        raise ValueError("the target mask is empty")
    rng = np.random.default_rng(seed)
    if keep_points_mask is not None and len(pts_all) > max_points:
        kk, jj, ii = np.nonzero(target_mask)
        must = np.asarray(keep_points_mask, bool)[kk, jj, ii]
        rest = np.nonzero(~must)[0]
        n_rest = max(0, min(len(rest), max_points - int(must.sum())))
        sel = np.sort(np.concatenate([np.nonzero(must)[0], rng.choice(rest, n_rest, replace=False)]))
    else:
        sel = np.sort(rng.choice(len(pts_all), max_points, replace=False)) if len(pts_all) > max_points \
            else np.arange(len(pts_all))
    pts = pts_all[sel]
    k, j, i = (np.asarray(a)[sel] for a in np.nonzero(target_mask))
    dose_factor = msr[geometry.material_index_zyx[k, j, i]]
    rsp_pts = rsp[k, j, i].astype(np.float64)
    if float(rsp_pts.mean()) < _AIR_RSP:
        from .._io.errors import warn

        warn(f"plan {name!r}: the target's mean relative stopping power is {float(rsp_pts.mean()):.3f}, air rather "
             "than tissue: is the mask the right ROI, on this CT's frame?", stacklevel=2)
    volume_cm3 = float(np.count_nonzero(target_mask)) * float(geometry.voxel_volume_cm3)
    if dose_model is None and volume_cm3 < SMALL_TARGET_CM3:
        from .._io.errors import warn

        warn(f"plan {name!r}: the target is {volume_cm3:.3g} cm3, under {SMALL_TARGET_CM3:g} cm3: for so small a "
             "target the analytical model's mean dose reads about 1-2 % above the Monte Carlo's (MC/model 0.977-0.986 "
             "for a 6 mm sphere, 0.992-0.994 for 10 mm), so the plan's BeamDose and MU under-dose it by as much; run "
             "verify_plan and rescale the plan by its MC/model mean target dose (verify_plan(plan, geometry, "
             "normalise=True) rescales the spot weights to the prescription) before write_rtplan", stacklevel=2)
    fields: list = []
    blocks: list = []
    # the analytical model: each field's depth doses go to a worker thread as soon as its spots exist (scipy's
    # pbdv, which lets go of the GIL from scipy 1.13 on and holds it before: planning/kernel.py _pbdv), while this
    # thread ray-traces and generates the next fields' spots; then the lateral factors. The same matrices as
    # influence_matrix field by field.
    from .dose_model import CUTOFF_SIGMA, _InfluenceJob

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcproton-idd") as pool:
        for spec in field_specs:
            spec = dict(spec)
            fname, direction = spec.pop("name"), spec.pop("direction")
            sub = spec.pop("target_mask", None)
            wet = water_equivalent_depth(geometry, rsp, pts, direction)
            if sub is not None:
                in_sub = np.asarray(sub)[k, j, i]
                f, _ = generate_field_spots(geometry, rsp, pts[in_sub], direction, name=fname,
                                            target_wet_mm=wet[in_sub], **spec)
            else:
                f, _ = generate_field_spots(geometry, rsp, pts, direction, name=fname, target_wet_mm=wet,
                                            **spec)
            fields.append(f)
            n_spots = sum(g.n_spots for g in fields)
            if memory_budget_gb is not None and _matrix_peak_bytes(len(pts), n_spots) > memory_budget_gb * 1e9:
                raise ValueError(
                    f"plan {name!r}: {n_spots} spots on {len(pts)} points (fields so far: "
                    f"{', '.join(f'{g.name!r} {g.n_spots}' for g in fields)}) make a "
                    f"{4e-9 * len(pts) * n_spots:.1f} GB "
                    f"dose-influence matrix and about {1e-9 * _matrix_peak_bytes(len(pts), n_spots):.0f} GB at the "
                    f"optimiser's peak, more than memory_budget_gb={memory_budget_gb:g}: give the fields a coarser "
                    "spot_spacing_mm / layer_spacing_mm, fewer max_points, or a larger memory_budget_gb (None: no "
                    "limit) if the machine has the memory")
            offs = None
            if voxel_average_samples:
                offs = rsp_pts[:, None] * voxel_depth_offsets(geometry.voxel_size_mm, direction,
                                                              int(voxel_average_samples))[None, :]
            if dose_model is None:
                blocks.append(_InfluenceJob(f, pts, wet, dose_factor, CUTOFF_SIGMA, offs, pool))
            else:
                blocks.append(model(f, pts, wet, dose_factor, wet_offsets_mm=offs))
        blocks = [b.matrix() if isinstance(b, _InfluenceJob) else b for b in blocks]
    A = np.concatenate(blocks, axis=1)
    del blocks                  # the field blocks: a second copy of the matrix through the optimisation
    nnls = _NNLS(A, pres)
    x = nnls.solve(iterations)
    # drop negligible spots (below 0.2 % of the mean weight: not deliverable) and refit the rest once, the dropped
    # ones held at 0 (no copy of the matrix)
    keep = x > 2e-3 * x[x > 0].mean() if np.any(x > 0) else np.ones_like(x, bool)
    x2 = nnls.solve(max(1, iterations // 2), x0=np.where(keep, x, 0.0), fixed_zero=~keep)
    del nnls
    # each field's model dose on the points (one product per field block, float64), the plan's their sum; a field's
    # mean is its share of the target's mean model dose (Gy per fraction, physical): the RT Ion Plan's BeamDose
    starts = np.cumsum([0] + [f.n_spots for f in fields])
    field_dose = [A[:, a:b].astype(np.float64) @ x2[a:b] for a, b in zip(starts[:-1], starts[1:])]
    dose = np.sum(field_dose, axis=0)
    field_mean = [float(np.mean(d)) for d in field_dose]
    n0 = 0
    for f in fields:
        f.weights = x2[n0:n0 + f.n_spots]
        n0 += f.n_spots
        keepf = f.weights > 0
        for attr in ("u_mm", "v_mm", "energy_mev", "weights", "nominal_energy_mev"):
            if getattr(f, attr) is not None:
                setattr(f, attr, getattr(f, attr)[keepf])
    stats = _target_stats(dose, pres)
    stats.update({"points": int(len(pts)), "spots": int(sum(f.n_spots for f in fields)),
                  "field_mean_dose_gy": field_mean,
                  "kernel": getattr(model, "description", ANALYTICAL_KERNEL if dose_model is None
                                    else type(model).__name__)
                            + (f", voxel-mean depth dose ({int(voxel_average_samples)} samples)"
                               if voxel_average_samples else "")})
    return Plan(name, target_name, np.asarray(target_mask, bool), fields, pres, prescription_gy_rbe, stats,
                plan_meta(geometry, target_mask))


def plan_meta(geometry: VoxelGeometry, target_mask: np.ndarray) -> dict:
    """A plan's ``meta`` (:class:`~mcproton.planning.plan.Plan`): the target's volume and the grid the plan was made
    on, which write_rtplan checks (a target of another grid or another CT is refused); what a plan from the demo's
    plan cache (:mod:`mcproton.planning._plan_cache`) is given again from its geometry."""
    return {"target_volume_cm3": float(target_mask.sum() * geometry.voxel_volume_cm3),
            "grid": {"shape_zyx": tuple(geometry.shape_zyx),
                     "voxel_size_mm": tuple(float(v) for v in geometry.voxel_size_mm),
                     "origin_mm": tuple(float(o) for o in geometry.origin_mm),
                     "frame_of_reference_uid": geometry.frame_of_reference_uid,
                     "patient_position": geometry.patient_position}}

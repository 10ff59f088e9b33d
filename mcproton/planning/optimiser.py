"""Spot-weight optimisation: non-negative least squares to a uniform prescription (:func:`optimise_weights`,
FISTA) over the dose-influence matrices of all fields (:func:`optimise_plan`)."""
from __future__ import annotations

import numpy as np

from ..geometry import VoxelGeometry
from .dose_model import ANALYTICAL_KERNEL, DoseModel, influence_matrix, voxel_depth_offsets
from .plan import RBE, Plan
from .raytrace import (check_direction, mass_stopping_ratio, relative_stopping_power, voxel_centres_mm,
                       water_equivalent_depth)
from .spots import generate_field_spots


def optimise_weights(A: np.ndarray, target_dose: np.ndarray | float, *, iterations: int = 400,
                     point_weights: np.ndarray | None = None, x0: np.ndarray | None = None) -> np.ndarray:
    """Non-negative least squares min ||W^(1/2) (A x - b)||^2, x >= 0, by FISTA (accelerated projected
    gradient) with step 1/L, L = ||A||_2^2 from a power iteration.  Returns x (float64)."""
    return _NNLS(A, target_dose, point_weights).solve(iterations, x0)


class _NNLS:
    """The scaled problem of :func:`optimise_weights` (float32 throughout: a float64 vector would make NumPy
    copy the matrix on every product), with the (n_sp x n_sp) Gram matrix when n_sp <= n_pts, so that a refit
    on a subset of the spots (:meth:`subset`) takes its block instead of a second Gram product."""

    def __init__(self, A: np.ndarray | None, target_dose, point_weights=None) -> None:
        if A is None:                       # filled by subset()
            return
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
        self.Aw: np.ndarray | None = Aw / np.float32(self.scale)
        self.bw = bw
        self.c = self.Aw.T @ bw
        # normal equations: iterate with the (n_sp x n_sp) Gram matrix
        self.G: np.ndarray | None = self.Aw.T @ self.Aw if n_sp <= n_pts else None

    def hess(self, v: np.ndarray) -> np.ndarray:
        if self.G is not None:
            return self.G @ v
        assert self.Aw is not None
        return self.Aw.T @ (self.Aw @ v)

    def subset(self, keep: np.ndarray) -> "_NNLS":
        """The problem on the spots ``keep`` (boolean) from the block of the Gram matrix (same scale): the
        same problem as ``_NNLS(A[:, keep], ...)`` up to float32 rounding, without a second Gram product."""
        if self.G is None:
            raise ValueError("no Gram matrix (more spots than points): build the subset's problem from A")
        sub = _NNLS(None, None)
        sub.scale, sub.bw, sub.c = self.scale, self.bw, self.c[keep]
        sub.G, sub.Aw = self.G[np.ix_(keep, keep)], None
        return sub

    def solve(self, iterations: int, x0: np.ndarray | None = None) -> np.ndarray:
        n_sp = self.c.size
        rng = np.random.default_rng(0)
        v = rng.random(n_sp).astype(np.float32)
        for _ in range(30):
            v = self.hess(v)
            nv = np.linalg.norm(v)
            if not nv > 0:      # A = 0 (no spot reaches a point): a NaN power iteration and a NaN dose otherwise
                raise ValueError("the dose-influence matrix is zero: no spot gives dose to any target point (a "
                                 "target beyond the reach of the fields' energies, or spots far from it)")
            v /= nv
        L = float(np.linalg.norm(self.hess(v))) * 1.05
        if x0 is None:
            assert self.Aw is not None
            s = self.Aw @ np.ones(n_sp, np.float32)
            x0 = np.full(n_sp, float(self.bw @ s / max(float(s @ s), 1e-30)))
        else:
            x0 = np.asarray(x0, np.float64) * self.scale
        x = np.asarray(x0, np.float32).copy()
        y, t = x.copy(), 1.0
        c = self.c
        for _ in range(iterations):
            xn = np.maximum(y - (self.hess(y) - c) / np.float32(L), np.float32(0.0))
            tn = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
            y = xn + np.float32((t - 1) / tn) * (xn - x)
            x, t = xn, tn
        return x.astype(np.float64) / self.scale


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
                  iterations: int = 400, seed: int = 0, rsp_zyx: np.ndarray | None = None,
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
    fields: list = []
    blocks: list = []
    # the analytical model: each field's depth doses go to a worker thread as soon as its spots exist (scipy's
    # pbdv, which lets go of the GIL from scipy 1.13 on and holds it before: planning/kernel.py _pbdv), while this
    # thread ray-traces and generates the next fields' spots; then the lateral factors. The same matrices as
    # influence_matrix field by field.
    from concurrent.futures import ThreadPoolExecutor

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
    # drop negligible spots and refit once, on the block of the Gram matrix of the spots kept
    keep = x > 2e-3 * x[x > 0].mean() if np.any(x > 0) else np.ones_like(x, bool)
    x2 = np.zeros_like(x)
    refit = nnls.subset(keep) if nnls.G is not None else _NNLS(A[:, keep], pres)   # without one: as before
    del nnls
    x2[keep] = refit.solve(iterations // 2, x0=x[keep])
    del refit
    dose = A.astype(np.float64) @ x2
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
                  "kernel": getattr(model, "description", ANALYTICAL_KERNEL if dose_model is None
                                    else type(model).__name__)
                            + (f", voxel-mean depth dose ({int(voxel_average_samples)} samples)"
                               if voxel_average_samples else "")})
    return Plan(name, target_name, np.asarray(target_mask, bool), fields, pres, prescription_gy_rbe, stats,
                {"target_volume_cm3": float(target_mask.sum() * geometry.voxel_volume_cm3),
                 # the grid the plan was made on: write_rtplan refuses a target of another grid or another CT
                 "grid": {"shape_zyx": tuple(geometry.shape_zyx),
                          "voxel_size_mm": tuple(float(v) for v in geometry.voxel_size_mm),
                          "origin_mm": tuple(float(o) for o in geometry.origin_mm),
                          "frame_of_reference_uid": geometry.frame_of_reference_uid,
                          "patient_position": geometry.patient_position}})

"""The distal-range (R80) agreement of ``mcproton check`` computed over all rays at once (issue 13 item 5) must give
the values of the per-ray computation, bit for bit.  The per-ray code (``mcproton._check.compare`` up to 2026-12-04;
the MC's level from the TPS top since 2026-12-05) is kept here as the oracle.  A synthetic oblique beam on an
anisotropic grid (no transport): a depth dose with a plateau, a peak and an erf fall-off whose range varies across
the field (part of the field reaches past the grid: no distal edge there), and an "MC" dose 1.5 mm longer, 3 %
noisy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from mcproton._check.compare import EDGE_FRACTION, MIN_RANGE_RAYS, _distal_r80_rows, _frame, _grid_along, \
    _ray_sampler, percentile_max, range_agreement


def _distal_r80_one(t: np.ndarray, prof: np.ndarray, like: np.ndarray | None = None) -> float:
    """The per-ray R80 (the oracle): 80 % of the profile's top, the 95th percentile of its samples above half its
    maximum; with ``like`` (the TPS profile of the ray) the TPS top times sum(prof) / sum(like) over the TPS's top
    samples moved by the rounded range difference (MC with its own top minus TPS)."""
    m = float(prof.max())
    if m <= 0:
        return float("nan")
    if like is None:
        top = float(np.percentile(prof[prof >= 0.5 * m], 95))
    else:
        ml = float(like.max())
        if ml <= 0:
            return float("nan")
        sel = like >= 0.5 * ml
        diff = _distal_r80_one(t, prof) - _distal_r80_one(t, like)
        d = int(np.rint(diff / (t[1] - t[0]))) if math.isfinite(diff) else 0
        src = np.arange(t.size) - d                 # MC sample i against TPS sample i - d
        inside = (src >= 0) & (src < t.size)
        region = inside & sel[np.clip(src, 0, t.size - 1)]
        num = np.where(region, prof, 0.0).sum()
        den = np.where(region, like[np.clip(src, 0, t.size - 1)], 0.0).sum()
        top = float(np.percentile(like[sel], 95)) * (float(num / den) if den > 0 else float("nan"))
        if not top > 0:
            return float("nan")
    above = np.flatnonzero(prof >= 0.8 * top)
    if above.size == 0:
        return float("nan")
    j = int(above[-1])
    if j + 1 >= prof.size:
        return float("nan")
    a, b = prof[j], prof[j + 1]
    f = (a - 0.8 * top) / (a - b) if a != b else 0.0
    return float(t[j] + f * (t[j + 1] - t[j]))


def _range_agreement_per_ray(axes_zyx, ref, ev, direction, isocentre, *, ray_spacing_mm=None, step_mm=0.5,
                             min_fraction=0.5):
    """range_agreement one ray at a time (the oracle); a ray with a distal R80 in one dose only counts outside 1 and
    2 mm (check review 2026-12-06, F2); the rays are those where either dose reaches min_fraction of its own maximum,
    a dose having an edge on one where it reaches EDGE_FRACTION of its maximum (review B of 2026-12-06, F3)."""
    z, y, x = (np.asarray(a, float) for a in axes_zyx)
    sp = np.array([x[1] - x[0] if x.size > 1 else 1.0, y[1] - y[0] if y.size > 1 else 1.0,
                   z[1] - z[0] if z.size > 1 else 1.0])
    org = np.array([x[0], y[0], z[0]])
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    u, v = _frame(d)
    iso = np.asarray(isocentre, float)
    top = percentile_max(ref)   # the TPS's top as the check takes it (since the CSI audit of 2026-12-05, F3)
    if top <= 0:
        return {"rays": 0}
    top_ev = percentile_max(ev)
    hot = np.argwhere((ref >= min_fraction * top) | (ev >= min_fraction * top_ev))
    p = org + hot[:, ::-1] * sp - iso
    pu, pv = p @ u, p @ v
    ds = float(ray_spacing_mm or min(sp))
    us = np.arange(pu.min(), pu.max() + ds / 2, ds)
    vs = np.arange(pv.min(), pv.max() + ds / 2, ds)
    corners = np.array([[x[i], y[j], z[k]] for i in (0, -1) for j in (0, -1) for k in (0, -1)]) - iso
    tt = corners @ d
    t = np.arange(tt.min() - ds, tt.max() + ds, step_mm)
    rays, one_sided = [], [0, 0]
    read_ref, read_ev = _ray_sampler(ref), _ray_sampler(ev)   # the check's reading of the doses (cubic since F3)
    for a in us:
        for b in vs:
            pts = iso + a * u + b * v + t[:, None] * d
            idx = (pts - org) / sp
            coords = [idx[:, 2], idx[:, 1], idx[:, 0]]
            pr = read_ref(coords)
            pe = read_ev(coords)
            if pr.max() < min_fraction * top and pe.max() < min_fraction * top_ev:
                continue
            has_r, has_e = pr.max() >= EDGE_FRACTION * top, pe.max() >= EDGE_FRACTION * top_ev
            r1 = _distal_r80_one(t, pr) if has_r else math.nan
            r2 = (_distal_r80_one(t, pe, like=pr) if has_r else _distal_r80_one(t, pe)) if has_e else math.nan
            if math.isfinite(r1) and math.isfinite(r2):
                rays.append((a, b, r1, r2))
            elif math.isfinite(r1) or math.isfinite(r2):
                one_sided[0 if math.isfinite(r1) else 1] += 1
    if not rays:
        return {"rays": 0}
    arr = np.array(rays)
    diff = arr[:, 3] - arr[:, 2]
    judged = len(arr) + sum(one_sided)
    return {"rays": len(arr), "rays_tps": len(arr) + one_sided[0], "rays_without_mc_edge": one_sided[0],
            "rays_without_tps_edge": one_sided[1], "ray_spacing_mm": ds, "median_mm": float(np.median(diff)),
            "mean_mm": float(diff.mean()), "p5_mm": float(np.percentile(diff, 5)),
            "p95_mm": float(np.percentile(diff, 95)), "within_1mm": float(np.sum(np.abs(diff) <= 1.0) / judged),
            "within_2mm": float(np.sum(np.abs(diff) <= 2.0) / judged), "values_mm": diff, "bev_uv_mm": arr[:, :2],
            "robust_max_gy": top, "evaluable": judged >= MIN_RANGE_RAYS, **_grid_along(d, sp)}


DIRECTION = np.array([0.35, 0.9, -0.25])
ISO = np.array([2.0, -3.0, 1.5])


@pytest.fixture(scope="module")
def beam_dose():
    """dose(extra_mm, noise, seed): the synthetic beam's dose on its grid, the range longer by extra_mm."""
    z = np.arange(34) * 2.5 - 40.0                 # anisotropic voxels: 2.5 (z) x 2 (y) x 1.5 mm (x)
    y = np.arange(46) * 2.0 - 45.0
    x = np.arange(52) * 1.5 - 38.0
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    d = DIRECTION / np.linalg.norm(DIRECTION)
    u, v = _frame(d)
    p = np.stack([xx, yy, zz], axis=-1) - ISO
    depth, pu, pv = p @ d + 45.0, p @ u, p @ v      # depth from a plane 45 mm before the isocentre

    def dose(extra_mm: float, noise: float, seed: int) -> np.ndarray:
        r80 = 55.0 + 0.25 * pu + 0.1 * pv + extra_mm  # the range varies across the field; + 0.25 x 30 mm
        depth_dose = (0.4 + 0.6 * np.exp(-((depth - r80 + 4) / 6) ** 2)
                      + 0.2 * depth / r80) * 0.5 * (1 - erf((depth - r80) / 2.5))
        lateral = np.exp(-((pu / 18) ** 4 + (pv / 15) ** 4))
        out = 2.0 * np.where(depth > 0, depth_dose, 0.0) * lateral
        return out * (1 + noise * np.random.default_rng(seed).standard_normal(out.shape))

    dose.axes = (z, y, x)
    return dose


@pytest.fixture(scope="module")
def beam(beam_dose):
    return beam_dose.axes, beam_dose(0.0, 0.0, 0), beam_dose(1.5, 0.03, 11)


def test_rays_at_once_equal_the_per_ray_ranges_bit_for_bit(beam):
    axes, tps, mc = beam
    new = range_agreement(axes, tps, mc, DIRECTION, ISO)
    old = _range_agreement_per_ray(axes, tps, mc, DIRECTION, ISO)
    assert old["rays"] > 300, old["rays"]                      # a field of rays, some of them without an edge
    assert new.keys() == old.keys()
    for k in new:
        if isinstance(old[k], np.ndarray):
            assert np.array_equal(new[k], old[k]), k             # the same rays in the same order, the same R80s
        else:
            assert new[k] == old[k], k
    assert 1.2 < new["median_mm"] < 1.8, new["median_mm"]     # the MC is 1.5 mm longer (1.47 with these seeds)
    # chunks of a few rays (a ray of this grid has ~300 samples): the same values as one chunk
    small = range_agreement(axes, tps, mc, DIRECTION, ISO, chunk_samples=1000)
    assert np.array_equal(small["values_mm"], new["values_mm"])
    assert np.array_equal(small["bev_uv_mm"], new["bev_uv_mm"])


def test_r80_of_rows_equals_the_one_ray_r80_with_edge_cases():
    t = np.arange(200) * 0.5 - 20.0
    rng = np.random.default_rng(5)
    base = np.where(t < 40, 1.0 + 0.01 * t, 0.0) * 0.5 * (1 - erf((t - 40) / 2.0))
    rows = [base * (1 + 0.05 * rng.standard_normal(t.size)) for _ in range(40)]
    rows += [np.zeros(t.size),                                  # no dose: NaN
             np.linspace(0.1, 1.0, t.size),                      # rising to the end of the grid: no edge, NaN
             np.r_[np.zeros(t.size - 1), 1.0],                   # the maximum at the last sample: NaN
             np.r_[1.0, np.zeros(t.size - 1)],                   # one sample
             np.r_[np.ones(150), 0.5 * np.ones(t.size - 150)]]   # a flat step: the crossing between two samples
    prof = np.array(rows)
    got = _distal_r80_rows(t, prof)
    want = np.array([_distal_r80_one(t, r) for r in prof])
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[40:43]).all() and np.isfinite(got[:40]).all() and np.isfinite(got[43:]).all()


def test_mc_noise_does_not_shorten_the_range(beam, beam_dose):
    """The MC's 80 % level comes from the TPS top (scaled by the MC/TPS dose over the TPS's top samples), not from
    the MC's own 95th percentile, which noise raises.  Rows of one flat-topped profile with 2.5 % noise (2 mm
    voxels, 0.5 mm samples): the MC's own top put the edge 0.2 mm short, the TPS-based level within 0.05 mm.  In the
    check: an MC that is the TPS dose times 1.01 with 2.5 % noise per voxel has the TPS's ranges (median within
    0.1 mm), and a 3 mm range error is still read as 3 mm."""
    t = np.arange(0.0, 120.0, 0.5)
    tps_rows = np.tile(0.5 * (1 - erf((t - 80) / 2.0)), (400, 1))
    noise = np.repeat(np.random.default_rng(4).standard_normal((400, t.size // 4)), 4, axis=1)
    mc_rows = tps_rows * (1 + 0.025 * noise)
    r0 = _distal_r80_rows(t, tps_rows[:1])[0]
    own = float(np.nanmedian(_distal_r80_rows(t, mc_rows))) - r0             # the level before 2026-12-05
    tps_level = float(np.nanmedian(_distal_r80_rows(t, mc_rows, like=tps_rows))) - r0
    assert own < -0.1 and abs(tps_level) < 0.05, (own, tps_level)
    axes, tps, _ = beam
    noisy = tps * 1.01 * (1 + 0.025 * np.random.default_rng(21).standard_normal(tps.shape))
    got = range_agreement(axes, tps, noisy, DIRECTION, ISO)
    assert got["rays"] > 300 and abs(got["median_mm"]) < 0.1, got["median_mm"]
    shorter = range_agreement(axes, tps, beam_dose(-3.0, 0.0, 0), DIRECTION, ISO)
    assert -3.3 < shorter["median_mm"] < -2.7, shorter["median_mm"]


@pytest.fixture(scope="module")
def cube_grid():
    """A 2 mm grid of 80^3 voxels, centres -79..79 mm on each axis, and its points (x, y, z) in mm."""
    ax = np.arange(-79.0, 80.0, 2.0)
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    return (ax, ax, ax), np.stack([xx, yy, zz], axis=-1)


def _analytic_beam(points: np.ndarray, d: np.ndarray, iso: np.ndarray, r80_mm: float, scale: float = 1.0):
    """A beam along ``d`` (unit): depth 0 at 60 mm before ``iso``, a depth dose rising from 0.7 to 1.0 of its
    level up to an erf distal edge whose 80 % point lies at depth ``r80_mm`` (fall-off sigma 1.2 % of the range +
    0.5 mm, about the straggling of protons of that range), a flat field 44 mm wide (super-Gaussian edges)."""
    from scipy.special import erfinv

    u, v = _frame(d)
    p = points - iso
    depth = p @ d + 60.0
    sig = 0.012 * r80_mm + 0.5
    r50 = r80_mm - math.sqrt(2) * sig * float(erfinv(-0.6))   # 0.5 erfc((r80 - r50) / (sqrt2 sig)) = 0.8
    dd = (0.7 + 0.3 * depth / r80_mm) * 0.5 * (1 - erf((depth - r50) / (math.sqrt(2) * sig)))
    lateral = np.exp(-(((p @ u) / 22) ** 6 + ((p @ v) / 22) ** 6))
    return scale * 2.0 * np.where(depth > 0, dd, 0.0) * lateral


@pytest.mark.parametrize("gantry, couch", [(0, 0), (90, 0), (180, 0), (270, 0), (45, 0), (90, 90), (30, 20)])
def test_dr80_is_the_range_shift_with_the_sign_the_report_states(cube_grid, gantry, couch):
    """An analytic TPS beam (R80 at 80 mm depth) and an MC copy 2 % higher whose edge lies 1.5 mm deeper, or 3 %
    of the range (2.4 mm) shallower, along the direction the check takes from the plan (beam_direction_lps; gantry
    0-270, an oblique gantry, couch 90 and an oblique couch, HFS): every ray's dR80 is the shift, MC deeper is
    positive (docs/check.md: "the distal R80 of MC minus TPS"; the diagnosis calls it "deeper").

    Tolerance 0.3 mm: R80 was read on the doses interpolated linearly between the 2 mm voxel centres until
    2026-12-07, which put an edge of this fall-off up to 0.28 mm short depending on where it lies between two
    centres (measured over the positions; 0.07 mm on a 1 mm grid), so a difference of two edges was within +-0.28 mm
    (measured: +1.25 to +1.62 for 1.5 mm, -2.21 to -2.44 for -2.4 mm, the medians over the directions); read with
    a cubic spline (compare.RANGE_SPLINE_ORDER) less: test_the_r80s_grid_error_along_a_grid_axis."""
    from mcproton._check.api import uniform_range_note
    from mcproton.dicom import beam_direction_lps

    axes, pts = cube_grid
    iso = np.array([0.5, -1.0, 1.5])
    d = np.asarray(beam_direction_lps(float(gantry), float(couch), "HFS"))
    tps = _analytic_beam(pts, d, iso, 80.0)
    for shift in (1.5, -0.03 * 80.0):
        mc = _analytic_beam(pts, d, iso, 80.0 + shift, scale=1.02)
        r = range_agreement(axes, tps, mc, d, iso)
        assert r["rays"] > 350, r["rays"]                                  # the 44 mm field at 2 mm: ~420 rays
        assert abs(r["median_mm"] - shift) < 0.3, (shift, r["median_mm"])
        assert np.all(np.abs(r["values_mm"] - shift) < 0.3), (shift, r["p5_mm"], r["p95_mm"])
        note = uniform_range_note(1, r)                                    # beyond 1 mm, every ray: named
        assert note is not None and ("deeper" if shift > 0 else "shallower") in note, note


def test_one_hot_voxel_in_the_tps_dose_does_not_choose_the_rays(cube_grid):
    """One voxel of the TPS dose at 6 x its plateau (a low-density voxel of a low-statistics MC planning dose: 5.7 x
    its 99.9th percentile in the CSI audit of 2026-12-05, F3) made the ray threshold 50 % of that voxel: 1 ray was
    left, and its R80 failed the level at -27.8 mm.  The threshold is now of the 99.9th percentile of the voxels with
    dose (compare.percentile_max): the field's rays are all kept and read the true +1.5 mm."""
    axes, pts = cube_grid
    iso = np.array([0.5, -1.0, 1.5])
    d = np.array([1.0, 0.0, 0.0])
    tps = _analytic_beam(pts, d, iso, 80.0)
    mc = _analytic_beam(pts, d, iso, 81.5)
    clean = range_agreement(axes, tps, mc, d, iso)
    hot = tps.copy()
    hot[40, 40, 20] = 6.0 * tps.max()          # 40 mm upstream of the isocentre, in the field's entrance
    r = range_agreement(axes, hot, mc, d, iso)
    assert r["evaluable"] and r["rays"] >= clean["rays"] - 2, (r["rays"], clean["rays"])
    assert abs(r["median_mm"] - 1.5) < 0.3 and r["within_2mm"] > 0.95, r["median_mm"]
    assert percentile_max(hot) == pytest.approx(percentile_max(tps), rel=0.01)


def test_a_range_of_fewer_rays_than_the_minimum_is_not_evaluable(cube_grid):
    """A field of a few beam's-eye-view rays (6 x 6 mm at 2 mm): its median and its share within 2 mm are not a
    field's range; range_agreement says "not evaluable (n rays)" and the check judges no range level on it."""
    axes, pts = cube_grid
    iso = np.array([0.5, -1.0, 1.5])
    d = np.array([1.0, 0.0, 0.0])
    u, v = _frame(d)
    p = pts - iso
    small = (np.abs(p @ u) < 3.5) & (np.abs(p @ v) < 3.5)
    tps = _analytic_beam(pts, d, iso, 80.0) * small
    r = range_agreement(axes, tps, _analytic_beam(pts, d, iso, 75.0) * small, d, iso)
    assert 0 < r["rays"] < MIN_RANGE_RAYS and not r["evaluable"], r["rays"]
    assert r["note"].startswith(f"not evaluable ({r['rays']} rays)") and "not judged" in r["note"]
    full = range_agreement(axes, _analytic_beam(pts, d, iso, 80.0), _analytic_beam(pts, d, iso, 75.0), d, iso)
    assert full["evaluable"] and "note" not in full


def _half_field_beam(cube_grid):
    """An analytic beam along +x on the cube grid, whole and without its half field u > 0 (a spot column missing):
    (axes, direction, isocentre, whole dose, half dose)."""
    axes, pts = cube_grid
    iso = np.array([0.5, -1.0, 1.5])
    d = np.array([1.0, 0.0, 0.0])
    u, _ = _frame(d)
    whole = _analytic_beam(pts, d, iso, 80.0)
    return axes, d, iso, whole, np.where((pts - iso) @ u > 0, 0.0, whole)


def test_rays_without_an_mc_edge_count_outside_the_tolerance(cube_grid):
    """An analytic beam whose MC copy has no dose on half its field (u > 0: a spot column missing): the rays with the
    TPS's distal R80 and none of the MC's count outside 1 and 2 mm (``within_2mm`` about a half, not 100 %) and are
    counted (``rays_tps``, ``rays_without_mc_edge``); the median is of the rays compared.  An MC without dose on the
    whole field: no ray compared, still judged (evaluable), none within 2 mm.  Before, such rays dropped out
    silently (check review 2026-12-06, F2)."""
    axes, d, iso, tps, half = _half_field_beam(cube_grid)
    r = range_agreement(axes, tps, half, d, iso)
    assert r["rays_tps"] == r["rays"] + r["rays_without_mc_edge"] and r["rays_without_tps_edge"] == 0, r
    assert 0.4 < r["rays_without_mc_edge"] / r["rays_tps"] < 0.6, r
    assert r["within_2mm"] == pytest.approx(r["rays"] / r["rays_tps"]) and r["within_1mm"] == r["within_2mm"]
    assert abs(r["median_mm"]) < 0.01 and len(r["values_mm"]) == r["rays"] and r["evaluable"]
    none = range_agreement(axes, tps, np.zeros_like(tps), d, iso)
    assert none["rays"] == 0 and none["rays_without_mc_edge"] == r["rays_tps"], none
    assert none["evaluable"] and none["within_2mm"] == 0.0 and math.isnan(none["median_mm"]), none
    whole = range_agreement(axes, tps, tps, d, iso)
    assert whole["rays_without_mc_edge"] == 0 and whole["within_2mm"] == 1.0 and whole["rays"] == r["rays_tps"]


def test_rays_with_an_mc_edge_only_count_outside_the_tolerance(cube_grid):
    """The mirror of the test above (review B of 2026-12-06, F3): the rays were picked from the TPS dose alone, so
    ``rays_without_tps_edge`` was always 0 and an MC beam with dose where the TPS has none (a spot column the MC adds
    or misplaces) read 100 % within 2 mm.  Now the rays are those where either dose reaches 50 % of its own maximum:
    the TPS without the half field u > 0 against the whole MC counts that half as rays with an MC edge only, outside
    2 mm, as the MC without it counts as rays without an MC edge (the same numbers both ways)."""
    axes, d, iso, whole, half = _half_field_beam(cube_grid)
    mc_wider = range_agreement(axes, half, whole, d, iso)
    mc_narrower = range_agreement(axes, whole, half, d, iso)
    assert mc_wider["rays_without_mc_edge"] == 0 and mc_wider["rays_without_tps_edge"] > 0, mc_wider
    assert mc_wider["rays_without_tps_edge"] == mc_narrower["rays_without_mc_edge"], (mc_wider, mc_narrower)
    assert mc_wider["rays"] == mc_narrower["rays"] and mc_wider["rays_tps"] == mc_wider["rays"]
    assert mc_wider["within_2mm"] == pytest.approx(mc_narrower["within_2mm"]) and mc_wider["within_2mm"] < 0.6
    assert abs(mc_wider["median_mm"]) < 0.01 and mc_wider["evaluable"]


def test_the_r80s_grid_error_along_a_grid_axis():
    """Gamma audit 28, F3: a beam along a grid axis in a homogeneous region has its distal edge at the same place in
    a voxel on every ray, so the median keeps the whole grid error of the R80s.  The audit's case (r80phase2.py): the
    analytic beam of R80 40 mm (80-20 1.65 mm) on 2 mm voxels, voxel-averaged as an MC scores it, the edge moved
    across a voxel in steps of 0.5 mm and shifted by 0.6-1.4 mm of both signs: read trilinearly the median was off
    by -0.35 to +0.42 mm (a true -1.40 mm passed the 1 mm level, a true +0.70 mm failed it); read with the cubic
    spline within +-0.25 mm (-0.16 to +0.20 over the audit's finer steps).  The result states the grid along the
    beam and, along a grid axis, its error (compare.RANGE_GRID_ERROR_PER_VOXEL x 2 mm); an oblique beam none."""
    from scipy.special import erfinv

    from mcproton._check.compare import RANGE_GRID_ERROR_PER_VOXEL

    def depth_dose(depth, r80):
        sig = 0.012 * r80 + 0.5
        r50 = r80 - math.sqrt(2) * sig * float(erfinv(-0.6))
        return np.where(depth > 0, (0.7 + 0.3 * depth / r80) * 0.5 * (1 - erf((depth - r50) / (math.sqrt(2) * sig))),
                        0.0)

    vox, shape = 2.0, (12, 60, 12)
    axes = [np.arange(n) * vox for n in shape]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    iso, d = np.array([11.0, 60.0, 11.0]), np.array([0.0, 1.0, 0.0])
    lat = (0.5 * (erf((xx - 3) / (math.sqrt(2) * 3)) - erf((xx - 19) / (math.sqrt(2) * 3)))
           * 0.5 * (erf((zz - 3) / (math.sqrt(2) * 3)) - erf((zz - 19) / (math.sqrt(2) * 3))))
    sub = (np.arange(8) + 0.5) / 8 * vox - vox / 2                       # voxel-averaged along the beam
    errs = []
    for phase in (0.0, 0.5, 1.0, 1.5):
        entry = 55.0 + phase
        body = yy >= entry - 1e-9

        def dose(shift):
            return np.where(body, lat * np.mean([depth_dose(yy + o - entry, 40.0 + shift) for o in sub], axis=0), 0.0)

        ref = dose(0.0)
        for shift in (-1.4, -1.1, -0.9, -0.6, 0.6, 0.9, 1.1, 1.4):
            r = range_agreement(axes, ref, dose(shift), d, iso, body=body)
            errs.append(r["median_mm"] - shift)
    assert max(abs(e) for e in errs) < 0.25, (min(errs), max(errs))
    assert r["grid_along_beam_mm"] == 2.0 and r["grid_error_mm"] == pytest.approx(RANGE_GRID_ERROR_PER_VOXEL * 2.0)
    oblique = np.array([0.0, math.cos(math.radians(30)), math.sin(math.radians(30))])
    assert _grid_along(oblique, np.array([2.0, 2.0, 3.0])) == {"grid_along_beam_mm": 2.0, "grid_error_mm": None}
    assert _grid_along(np.array([0.0, 0.0, -1.0]), np.array([2.0, 2.0, 3.0]))["grid_error_mm"] == \
        pytest.approx(RANGE_GRID_ERROR_PER_VOXEL * 3.0)


def test_the_range_rows_grid_clause_says_the_sharp_peak_case():
    """Re-read of the check, F3: the median row of a beam along a grid axis said "to about +-0.4 mm" on 2 mm voxels,
    given as a bound, where a 71 MeV pristine peak (sharper than a third of a voxel) read 0.78 mm point-sampled: the
    clause now says that such a peak reads up to about twice it; an oblique beam's row has no clause."""
    from mcproton._check.api import range_grid_clause
    from mcproton._check.compare import RANGE_GRID_ERROR_PER_VOXEL

    text = range_grid_clause({"grid_along_beam_mm": 2.0, "grid_error_mm": RANGE_GRID_ERROR_PER_VOXEL * 2.0})
    assert text == ("; R80s read on 2 mm voxels along the beam (a grid axis): to about +-0.4 mm, up to about twice "
                    "that for a Bragg peak sharper than a third of a voxel (a low-energy pristine peak)")
    assert range_grid_clause({"grid_along_beam_mm": 2.0, "grid_error_mm": None}) == ""

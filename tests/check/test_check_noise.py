"""Noise matching of the check's comparisons (audit report_numbers F1/F2): the MC's statistical noise must not be
read as a dose or range difference at the uncertainties the check accepts.

Structures: MC noise widens the MC's dose distribution in a target (Kawrakow 2004, Phys Med Biol 49:1549), so the raw
D95 of a right but noisy MC reads low (about -2 % at 2 % noise); the noise-matched difference (MC against the TPS dose
with the MC's noise) reads the true difference.  Synthetic: a 20^3-voxel target whose TPS dose varies by +-1.5 %, the
"MC" that dose (times a factor) with 2 % Gaussian noise per voxel, the check's own structure_stats.

Tolerances (the seeds are fixed, so these are deterministic; the bounds say how far another seed may move them).
Measured over 50 seeds of the "MC": raw D95 -1.94 % (SD 0.05 %), noise-matched +0.04 % (SD 0.05 %), V95
noise-matched +0.07 points (SD 0.11); the true -3.5 % error reads -3.49 % (SD 0.05 %).  The bounds (|noise-matched
D95| < 0.3 %, -3.8..-3.1 %) are 5-8 SD from those means: a false failure below 1e-6 for a Gaussian; -3.1 % still
fails the 3 % level."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._check.compare import structure_stats


@pytest.fixture(scope="module")
def target():
    z, y, x = np.meshgrid(*(np.arange(40.0),) * 3, indexing="ij")
    tps = 2.0 * (1 + 0.015 * np.sin(x / 5) * np.cos(y / 7) + 0.01 * np.cos(z / 4))
    mask = np.zeros(tps.shape, bool)
    mask[10:30, 10:30, 10:30] = True
    return tps, mask


def _stats(tps, mask, factor, noise, seed):
    mc = tps * factor * (1 + noise * np.random.default_rng(seed).standard_normal(tps.shape))
    rel = np.full(tps.shape, noise)
    return structure_stats(tps, mc, {"PTV": mask}, {"PTV": "PTV"}, 0.008, 2.0, noise_rel=rel, seed=7)["PTV"]["metrics"]


def test_pure_noise_reads_a_noise_shift_and_a_noise_matched_difference_near_zero(target):
    tps, mask = target
    m = _stats(tps, mask, 1.0, 0.02, 1)
    d95 = m["D95"]
    assert -3.0 < d95["diff_pct"] < -1.5, d95             # the raw D95 reads about -2 %
    assert abs(d95["noise_matched_diff_pct"]) < 0.3, d95   # the noise-matched one about 0
    assert d95["noise_shift_pct"] == pytest.approx(d95["diff_pct"], abs=0.3)
    assert 0 < d95["noise_shift_se_pct"] < 0.1
    assert m["D2"]["diff_pct"] > 1.5 and abs(m["D2"]["noise_matched_diff_pct"]) < 0.3, m["D2"]
    assert abs(m["Dmean"]["noise_shift_pct"]) < 0.05 and abs(m["Dmean"]["noise_matched_diff_pct"]) < 0.1
    assert m["V95"]["diff_points"] < -0.3 and abs(m["V95"]["noise_matched_diff_points"]) < 0.5, m["V95"]
    # deterministic: the same seed, the same realisations
    assert _stats(tps, mask, 1.0, 0.02, 1)["D95"]["noise_shift_pct"] == d95["noise_shift_pct"]


def test_a_true_d95_error_of_minus_3_5_percent_with_2_percent_noise_still_reads_so(target):
    tps, mask = target
    d95 = _stats(tps, mask, 0.965, 0.02, 2)["D95"]
    assert -3.8 < d95["noise_matched_diff_pct"] < -3.1, d95   # beyond the 3 % level
    assert d95["diff_pct"] < -5.0                              # the raw one counts the noise in as well


def test_without_the_mcs_uncertainty_there_is_no_noise_matching(target):
    tps, mask = target
    m = structure_stats(tps, tps, {"PTV": mask}, {"PTV": "PTV"}, 0.008, 2.0)["PTV"]["metrics"]
    assert "noise_matched_diff_pct" not in m["D95"] and m["D95"]["diff_pct"] == 0


# ---- ranges (audit F2): a per-beam dose that falls slowly to its distal edge, as APTG plan03's RayStation beams do.
# Measured over 8 seeds (1185 rays): no shift at 2.4 %: raw median +0.51 mm (SD 0.03), noise-matched +0.01 (SD 0.07),
# rays within 2 mm / noise alone's >= 0.950 (mean ~0.99; binomial SD ~0.025); -1 mm at 2.8 %: noise-matched -0.93
# (SD 0.08); -3 mm at 2.4 %: -3.05 (SD 0.06).  Bounds: |no shift| < 0.25 mm, ratio >= 0.9 (the level), -1 and -3
# within 0.3 mm: each 3.5 SD or more from the measured means, a false failure below ~2e-4 per assertion for
# Gaussian scatter.
def _ramp_beam(shift_mm: float = 0.0):
    """A beam along +y on a 2 mm grid: the depth dose rises from 0.45 to 1 over 60 mm, then falls linearly
    (1 %/mm, as plan03's per-beam dose) to 0.4 and steeply to 0; flat laterally over 72 x 72 mm.  The distal edge
    moved by ``shift_mm`` (the whole depth dose, exactly: analytic)."""
    z = np.arange(-44.0, 45.0, 2.0)
    y = np.arange(0.0, 160.0, 2.0)
    x = np.arange(-44.0, 45.0, 2.0)
    t = y - shift_mm                                               # the whole depth dose moved
    dd = np.interp(t, [0, 2, 60, 120, 126, 130], [0.0, 0.45, 1.0, 0.4, 0.05, 0.0])
    lat = np.exp(-((x / 36) ** 8))[None, :] * np.exp(-((z / 36) ** 8))[:, None]
    dose = 2.0 * lat[:, None, :] * dd[None, :, None]
    return (z, y, x), dose


def _noisy(dose, noise, seed):
    rel = noise / np.sqrt(np.clip(dose / dose.max(), 1e-6, None))   # noise at the maximum, 1/sqrt(dose)
    return np.clip(dose + np.random.default_rng(seed).standard_normal(dose.shape) * rel * dose, 0, None), rel


def test_range_noise_floor_reads_no_shift_at_2_4_percent_and_keeps_the_rays_level():
    from mcproton._check.compare import range_agreement

    axes, tps = _ramp_beam()
    mc, rel = _noisy(tps * 1.007, 0.024, 3)
    r = range_agreement(axes, tps, mc, (0.0, 1.0, 0.0), (0.0, 0.0, 0.0), noise_rel=rel, seed=1)
    assert r["rays"] > 300 and r["median_mm"] > 0.3, r["median_mm"]      # the raw median: noise reads deeper
    assert abs(r["noise_matched_median_mm"]) < 0.25, r                   # the noise-matched one: no shift
    assert r["noise_within_2mm"] < 0.95                                  # noise alone moves rays beyond 2 mm
    assert r["within_2mm"] >= 0.9 * r["noise_within_2mm"], r             # the rays level (90 % of the floor) passes


def test_range_noise_floor_keeps_a_true_shift():
    from mcproton._check.compare import range_agreement

    axes, tps = _ramp_beam()
    for shift, noise, tol in ((-1.0, 0.028, 0.3), (-3.0, 0.024, 0.3)):
        mc, rel = _noisy(_ramp_beam(shift)[1], noise, 4)
        r = range_agreement(axes, tps, mc, (0.0, 1.0, 0.0), (0.0, 0.0, 0.0), noise_rel=rel, seed=1)
        assert abs(r["noise_matched_median_mm"] - shift) < tol, (shift, r["noise_matched_median_mm"], r["median_mm"])
    assert r["noise_matched_median_mm"] < -1.0 and r["within_2mm"] < 0.9 * r["noise_within_2mm"]   # -3 mm fails both


def test_the_uncertainty_on_the_tps_grid_is_propagated_through_the_interpolation():
    """Statistics audit F3: where the MC grid is not the TPS grid, the compared dose is a trilinear average of up to
    8 MC voxels, and its noise is sqrt(sum w_i^2) of theirs (0.354 at half a voxel in every axis); the relative
    uncertainty used to be interpolated like a dose (9.6 % quoted, 4.5 % real).  White noise of 5 % on a uniform
    dose, 400 realisations: the propagated uncertainty matches the spread of the interpolated doses within 5 %
    (the spread's own error over 400 realisations and 300 voxels is about 0.2 %); on coinciding grids it is the
    MC voxels' own, unchanged."""
    import mcproton as mcp
    from mcproton._check.compute import to_tps_grid, uncertainty_to_tps_grid
    from mcproton._check.inputs import TPSDose

    g = mcp.box_phantom("water", (20, 20, 20), 2.0)   # origin (-9, -9, 1) mm, 10 x 10 x 10 voxels of 2 mm
    rng = np.random.default_rng(5)
    rel = np.full(g.shape_zyx, 0.05)
    for shift, factor in ((1.0, 0.5 ** 1.5), (0.0, 1.0)):
        org = tuple(o + shift for o in g.origin_mm)
        ref = TPSDose("RD.dcm", np.zeros((8, 8, 8)), (2.0, 2.0, 2.0), org, "", "PHYSICAL", "PLAN", None)
        prop = uncertainty_to_tps_grid(rel, np.ones(g.shape_zyx), g, ref)
        doses = np.array([to_tps_grid(1.0 + 0.05 * rng.standard_normal(g.shape_zyx), g, ref)[0]
                          for _ in range(400)])
        inner = (slice(0, 7),) * 3   # TPS voxels with all 8 neighbours inside the MC grid
        emp = doses.std(axis=0, ddof=1)[inner] / doses.mean(axis=0)[inner]
        assert float(np.mean(prop[inner])) == pytest.approx(0.05 * factor, rel=1e-9)
        assert float(np.sqrt(np.mean(emp ** 2))) == pytest.approx(0.05 * factor, rel=0.05)


def test_an_offset_tps_grid_with_different_x_and_y_origins_gets_the_mc_dose_of_its_own_positions():
    """The MC dose at the TPS voxel centres on a TPS grid that does not coincide with the MC's (the usual case:
    planning-system dose grids are not aligned with the CT's voxels) and whose x and y origins differ (an
    off-axis dose box).  Every grid of the other tests had origin x == origin y or coincided with the MC's, so an
    interpolation that took x's origin for y's passed (mutation audit 2026-12-05, G2): it would shift the MC dose
    by (y0 - x0) in x and (x0 - y0) in y.

    MC grid: 2 mm voxels, centres x = -20 + 2i, y = 50 + 2j, z = 2k; dose 0.01 x + 0.02 y + 0.03 z + 5 Gy (linear,
    so trilinear interpolation is exact inside the grid).  TPS grid: 3 mm voxels from (-15.5, 55.5, 3.5) mm.  The
    interpolated dose must be the same linear function of each TPS centre's coordinates.  The propagated
    uncertainty of independent 2 % errors: every TPS centre lies at the fractional MC index 0.25 or 0.75 on each
    axis ((-15.5 + 20) / 2 = 2.25, then steps of 1.5; y 2.75, z 1.75), so the squared trilinear weights sum to
    ((1 - f)^2 + f^2)^3 = 0.625^3, and for a dose nearly uniform over the 8 neighbours (it changes by at most 1 %
    of itself from one MC voxel to the next) the relative error is 2 % x 0.625^1.5 = 0.988 %, to within 1 % of
    itself (0.3 % measured)."""
    from types import SimpleNamespace

    from mcproton._check.compute import to_tps_grid, uncertainty_to_tps_grid
    from mcproton._check.inputs import TPSDose

    nz, ny, nx = 20, 25, 30
    z, y, x = np.meshgrid(2.0 * np.arange(nz), 50 + 2.0 * np.arange(ny), -20 + 2.0 * np.arange(nx), indexing="ij")
    mc = 0.01 * x + 0.02 * y + 0.03 * z + 5.0
    geo = SimpleNamespace(origin_mm=(-20.0, 50.0, 0.0), voxel_size_mm=(2.0, 2.0, 2.0), shape_zyx=(nz, ny, nx))
    ref = TPSDose("RD.dcm", np.zeros((8, 10, 12)), (3.0, 3.0, 3.0), (-15.5, 55.5, 3.5), "", "PHYSICAL", "PLAN", None)
    out, note = to_tps_grid(mc, geo, ref)
    assert "interpolated" in note
    Z, Y, X = np.meshgrid(*ref.axes_mm(), indexing="ij")
    assert np.allclose(Z[:, 0, 0], 3.5 + 3.0 * np.arange(8)) and np.allclose(X[0, 0], -15.5 + 3.0 * np.arange(12))
    assert out == pytest.approx(0.01 * X + 0.02 * Y + 0.03 * Z + 5.0, rel=1e-9)
    unc = uncertainty_to_tps_grid(np.full(mc.shape, 0.02), mc, geo, ref, out)
    assert unc == pytest.approx(np.full(unc.shape, 0.02 * 0.625 ** 1.5), rel=0.01)


@pytest.mark.parametrize("case,passes", [("cold corner in the MC", False), ("cold corner in the TPS", False),
                                         ("no error", True), ("uniform +2 %", True), ("uniform +4 %", False)])
def test_the_d95_verdict_on_raw_noise_matched_and_mc_corrected(case, passes):
    """The target D95 level judges the raw, the noise-matched and the MC-corrected differences (compare.d95_verdict).
    Analytic doses in a 1000-voxel target with 1 % Gaussian noise on the MC, 8 seeds each.  Each estimate fails
    somewhere alone: the noise-matched one hid a true -4.0 % (cold corner in the MC; noise-matching audit F1), the
    raw and the noise-matched both hid a true +4.2 % (cold corner in the TPS; review 2026-12-05), the raw one hides a
    uniform +4 % and reads a correct plan 1.6 % low.  Judged together every case gets its right verdict in every
    seed.  Measured over 16 seeds (1 sd): MC-corrected -3.61 +- 0.59 / +4.20 +- 0.18 / +0.03 +- 0.17 / +2.03 +- 0.17
    / +4.03 +- 0.18 %, raw -3.91 / +2.48 / -1.62 / +0.35 / +2.31 %: the deciding value lies at least 2 sd from the 3 %
    level in each case (a false verdict per seed well below 5 %; the seeds are fixed, so the test is deterministic)."""
    from mcproton._check.compare import d95_limits, d95_verdict, structure_stats

    shape = (12, 12, 12)
    tgt = np.zeros(shape, bool)
    tgt[1:11, 1:11, 1:11] = True
    z, y, x = np.indices(shape)
    flat = np.ones(shape)
    cold = np.where(tgt & (x >= 8) & (y >= 8), np.select([z < 4, z < 7], [0.98, 0.96], 0.94), 1.0)
    tps, mc_true = {"cold corner in the MC": (flat, cold), "cold corner in the TPS": (cold, flat),
                    "no error": (flat, flat), "uniform +2 %": (flat, 1.02 * flat),
                    "uniform +4 %": (flat, 1.04 * flat)}[case]
    for k in range(8):
        mc = mc_true * (1 + 0.01 * np.random.default_rng(100 + k).standard_normal(shape))
        st = structure_stats(tps, mc, {"PTV": tgt}, {"PTV": "PTV"}, 1e-3, None, noise_rel=np.full(shape, 0.01),
                             seed=k)
        ok, value, vals = d95_verdict(st["PTV"]["metrics"]["D95"], 3.0)
        assert ok == passes, (k, vals)
        lims = d95_limits(st["PTV"]["metrics"]["D95"], 3.0)   # the MC-corrected one's: 3 % + 2 standard errors
        assert set(vals) == {"raw", "noise-matched", "MC-corrected"} and lims["MC-corrected"] > 3.0
        assert value == vals[max(vals, key=lambda n: abs(vals[n]) / lims[n])]
    # without noise matching (an MC without uncertainty) the raw value alone; a NaN fails
    st = structure_stats(flat, 1.02 * flat, {"PTV": tgt}, {"PTV": "PTV"}, 1e-3, None)
    assert d95_verdict(st["PTV"]["metrics"]["D95"], 3.0) == (True, pytest.approx(2.0), {"raw": pytest.approx(2.0)})
    assert d95_verdict({"diff_pct": float("nan")}, 3.0)[0] is False


# ---- the range noise note (smoke audit 2026-12-06, F3): plan03 with the gantry rewritten (a correct plan) at 7.07 %
# read raw +3.30 mm, noise alone +5.20 mm, noise-matched -1.91 mm: a FAIL with no note, where the D95 rows said the
# noise decided.  The MC's noise is correlated between voxels and the noise floor's is not, so the floor overstates
# the shift.  Synthetic: the ramp beam, x 1.007, its noise correlated along the beam by a moving sum of 4 voxels.
# Measured over 8 seeds: at 7 % noise alone +4.08 mm (SD 0.02), noise-matched -1.53 (SD 0.16, every seed below -1.2:
# the median level fails); -3 mm at 2.4 % (3 voxels): noise alone +0.52 (SD 0.01), noise-matched -3.35 (SD 0.06).
# The seeds are fixed (deterministic); the bounds leave 3 SD or more.
def _correlated_noisy(dose, noise, seed, width):
    """``dose`` with Gaussian noise of ``noise`` at the maximum (1/sqrt(dose)), correlated along the beam (+y) by a
    moving sum of ``width`` voxels, as an MC's is (a proton deposits along its track); and its relative uncertainty
    per voxel, as the MC reports it."""
    rel = noise / np.sqrt(np.clip(dose / dose.max(), 1e-6, None))
    sh = dose.shape
    g = np.random.default_rng(seed).standard_normal((sh[0], sh[1] + width - 1, sh[2]))
    g = sum(g[:, k:k + sh[1]] for k in range(width)) / np.sqrt(width)
    return np.clip(dose + g * rel * dose, 0, None), rel


def test_a_range_failed_at_high_noise_is_said_to_be_the_noises_and_one_at_normal_noise_is_not():
    """A correct beam at 7 % fails the median level (noise-matched about -1.5 mm) while the noise alone shifts the
    median by about +4 mm, four times the 1 mm level: the note says the noise decides and asks for a lower
    uncertainty.  A true -3 mm at 2.4 % (noise alone +0.5 mm) fails with no such note: it is the range's."""
    from mcproton._check.api import range_noise_note
    from mcproton._check.compare import range_agreement

    axes, tps = _ramp_beam()
    mc, rel = _correlated_noisy(tps * 1.007, 0.07, 0, 4)
    r = range_agreement(axes, tps, mc, (0.0, 1.0, 0.0), (0.0, 0.0, 0.0), noise_rel=rel, seed=1)
    assert r["noise_median_mm"] > 3.0 and r["noise_matched_median_mm"] < -1.0, r   # the audit's case: a false FAIL
    note = range_noise_note("beam 1", r, 1.0, ["median"], 7.0, "rerun with --target-uncertainty 0.01 (1 %)")
    assert note is not None and note.startswith("beam 1: the median distal R80 level failed while the MC's "
                                                "statistical noise (7.00 %) alone shifts the median"), note
    assert "noise decides this verdict" in note and note.endswith(
        "rerun with --target-uncertainty 0.01 (1 %) before reading it as a range error"), note
    assert range_noise_note("beam 1", r, 1.0, [], 7.0, "rerun") is None            # no level failed: no note
    assert "levels failed" in range_noise_note("beam 1", r, 1.0, ["median", "rays"], 7.0, "rerun")

    mc, rel = _correlated_noisy(_ramp_beam(-3.0)[1] * 1.007, 0.024, 0, 3)
    r = range_agreement(axes, tps, mc, (0.0, 1.0, 0.0), (0.0, 0.0, 0.0), noise_rel=rel, seed=1)
    assert r["noise_matched_median_mm"] < -2.5 and r["noise_median_mm"] < 0.8, r   # a true -3 mm, normal noise
    assert range_noise_note("beam 1", r, 1.0, ["median", "rays"], 2.4, "rerun") is None


def test_the_organs_noise_draws_keep_each_structure_once_not_a_body_sized_mask_per_metric():
    """Check review 2026-12-06, finding 2: the organs' draws (one 1-D copy of the union of the structures: the whole
    body where the External is among them) held a body-sized mask per metric, 3 per organ: 888 MB at the peak for
    40 organs on a 4.7 M-voxel body (312 MB without them).  Now each structure's positions within that copy, once:
    30 more organs of 256 voxels each add their own voxels, not 30 x 3 body-sized masks.  Measured on this grid
    (112 360 body voxels): + 10.3 MB before (90 body-sized masks), + 0.2 MB after (their metrics' dicts and their
    own voxels); the bound: less than 3 body-sized masks in all."""
    import tracemalloc

    rng = np.random.default_rng(0)
    shape = (40, 64, 64)
    _, y, x = np.indices(shape)
    body = ((y - 32) ** 2 + (x - 32) ** 2) < 30 ** 2
    ref = np.where(body, 1.0 + 0.01 * rng.standard_normal(shape), 0.0)
    unc = np.full(shape, 0.01, np.float32)

    def peak(organs: int) -> int:
        masks, types = {"BODY": body}, {"BODY": "EXTERNAL"}
        for k in range(organs):
            m = np.zeros(shape, bool)
            m[k:k + 4, 28:36, 28:36] = True
            masks[f"oar{k}"], types[f"oar{k}"] = m, "ORGAN"
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            rows = structure_stats(ref, ref, masks, types, 0.008, 1.0, noise_rel=unc, seed=1, realisations=4)
            assert rows["oar0"]["metrics"]["Dmean"]["noise_realisations"] == 4
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    added = peak(33) - peak(3)
    assert added < 3 * body.sum(), f"30 more organs added {added / 1e6:.1f} MB at the peak ({body.sum()} body voxels)"

"""The LETd has no uncertainty of its own; every HDF5's ``let_d`` attribute ``uncertainty`` (and README.md,
docs/physics.md) says how much noisier than the dose it is: the LETd's seed-to-seed relative sd per voxel over the
dose's reported relative uncertainty, median and 95th percentile over the voxels at >= 10 % of the maximum dose.
Statistics audit 2026-12-07 (F1): the figure said 1.25-1.4 x (median) and "2.2 x at worst" (one case, the demo CT
plan); three beams in water measured 1.8-2.0 x and 2.9-3.1 x.  This test runs one of them, reduced, and holds the
stated figures to it."""
from __future__ import annotations

import re
import warnings

import numpy as np

import mcproton as mcp
from mcproton._io.hdf5 import LET_D_ATTRS

#: the statistic of one seed set is deterministic; over 8 independent sets of 30 seeds (first seeds 1, 2001, ...,
#: 8001) it was median 1.71 +- 0.032 and p95 2.91 +- 0.052 (mean +- sd; 2026-12-07, znver3)
SEEDS, PRIMARIES = 30, 10_000
#: the stated range may be off by this much (relative) either way: the median's lower limit (1.8 / 1.15 = 1.57) is
#: 4.4 sd below the mean of the seed sets, the p95's (2.9 / 1.15 = 2.52) 7.4 sd: a false failure (other histories,
#: from another platform or a physics change, with the noise as it is) about 1e-5 (Gaussian, 4.4 sd).  The old
#: text fails it: 1.4 x 1.15 = 1.61 and 2.2 x 1.15 = 2.53, below the measured 1.73 and 2.92.  The median of per-voxel
#: sd estimates from 30 seeds reads a little below the audit's from 40 (1.77 for this beam); 24 seeds gave 1.67
TOL = 0.15


def _stated(text: str, what: str) -> tuple[float, float]:
    """The range ``a-b x`` (or the single ``a x``) that ``text`` gives before ``what``."""
    m = re.search(r"(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))? x " + re.escape(what), text)
    assert m, f"no figure before {what!r} in: {text}"
    lo = float(m.group(1))
    return lo, float(m.group(2) or lo)


def test_the_stated_letd_noise_is_what_a_pencil_beam_in_water_shows():
    """A 100 MeV pencil beam (sigma 3 mm) in a 40 x 40 x 100 mm water box of 2 mm voxels, 10 batches, 30 seeds of
    10,000 primaries (the audit's ``pencil`` case, 40 seeds of 100,000: median 1.77, p95 2.87)."""
    geom = mcp.box_phantom("water", size_mm=(40, 40, 100), voxel_mm=(2, 2, 2))
    beam = mcp.Beam.pencil(100.0, sigma_mm=(3.0, 3.0), position_mm=(0, 0, -5), direction=(0, 0, 1))
    dose, unc, let = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(1, SEEDS + 1):
            r = mcp.simulate(geom, beam, mcp.RunSettings(primaries=PRIMARIES, batches=10, seed=seed, backend="cpu",
                                                         threads=2), log=None)
            dose.append(np.asarray(r.dose_gy_zyx, np.float64))
            unc.append(np.asarray(r.uncertainty_rel_zyx, np.float64))
            let.append(np.asarray(r.let_d_kev_um_zyx, np.float64))
    d, u, L = np.array(dose), np.array(unc), np.array(let)
    mean_d = d.mean(0)
    band = mean_d >= 0.1 * mean_d.max()
    let_mean = L[:, band].mean(0)
    assert (let_mean > 0).all()
    ratio = L[:, band].std(0, ddof=1) / let_mean / u[:, band].mean(0)
    median, p95 = float(np.median(ratio)), float(np.percentile(ratio, 95))
    text = LET_D_ATTRS["uncertainty"]
    for name, got, what in (("median", median, "the dose's uncertainty (median)"),
                            ("95th percentile", p95, "at the 95th percentile")):
        lo, hi = _stated(text, what)
        assert lo / (1 + TOL) <= got <= hi * (1 + TOL), (
            f"the LETd's relative sd over the dose's uncertainty, {name} over {band.sum()} voxels at >= 10 % of the "
            f"maximum: {got:.2f}, outside the stated {lo:g}-{hi:g} x (+-{100 * TOL:.0f} %): {text}")
    assert "at worst" not in text and "not bounds" in text


def test_the_figures_say_their_seed_counts_and_that_the_medians_read_low():
    """Review 28b, R4: the median of per-voxel sd estimates rises with the seeds it is estimated from (the pencil beam
    above, 80 seeds split into sets: 1.64-1.70 from 20 seeds, 1.72-1.73 from 40, 1.755 from 80), so the figures
    read a few % low, and the demo's 1.25-1.4 x is a 20-seed figure, by dose band, set beside 30-40-seed ones without
    a word.  physics.md, the README's let_d row and the HDF5 attribute now say both."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    physics = " ".join((root / "docs" / "physics.md").read_text().split())
    row = next(line for line in (root / "README.md").read_text().splitlines() if line.startswith("| `let_d` |"))
    assert "1.25-1.4 (each band's median, 20 seeds" in physics
    assert "the median of per-voxel sd estimates rises slightly with more seeds" in physics
    assert "1.64-1.70 from sets of 20 seeds, 1.68-1.71 from 30, 1.72-1.73 from 40" in physics
    assert "from 30-40 seeds" in row and "(each dose band's median, 20 seeds)" in row and "read a few % low" in row
    attr = LET_D_ATTRS["uncertainty"]
    assert "30-40 seeds" in attr and "(20 seeds)" in attr and "read a few % low" in attr

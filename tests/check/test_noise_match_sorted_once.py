"""structure_stats reads each structure's doses once per dose and noise draw, sorted once for all its metrics (the
scale audit of 2026-12-07: 12.5 s of a clinical check's 72 s were np.partition calls, one per metric and draw; numpy's
partition took 1 s per call on an External of 2.4 M voxels, 88 % of them at 0 Gy, where a sort takes 0.1-0.2 s).
Its results are bit for bit those of the former formulation (a partition per metric, each metric's voxels on their
own), on doses with many zeros and ties, float32 and float64, NaN and infinite uncertainties, targets with and
without a prescription, a few-voxel organ and an External holding them all."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import mcproton._check.compare as compare
from mcproton._check.compare import structure_stats


def _case(seed: int, dtype):
    gen = np.random.default_rng(seed)
    shape = (24, 26, 28)
    z, y, x = np.indices(shape)
    r2 = (z - 12) ** 2 + (y - 13) ** 2 + (x - 14) ** 2
    tps = np.where(r2 < 60, 2.0, np.where(r2 < 120, 2.0 * np.exp(-(r2 - 60) / 20), 0.0))
    tps = np.round(tps, 2).astype(dtype)   # ties: many voxels of one dose, most of the body at 0 Gy
    mc = (tps * gen.normal(1.0, 0.02, shape)).astype(dtype)
    unc = np.where(mc > 0, 0.02, np.nan).astype(dtype)
    unc.flat[gen.choice(unc.size, 30, replace=False)] = [np.inf, -np.inf, 0.5] * 10
    masks = {"External": (z > 1) & (z < 23) & (y > 1) & (y < 25),
             "PTV": r2 < 40, "CTV": r2 < 20, "GTV_boost": r2 < 6,
             "Brainstem": (r2 < 200) & (x < 8), "Lens_L": (z == 12) & (y == 13) & (x > 22) & (x < 25),
             "Cord": (y == 3) & (x == 14)}
    types = {"External": "EXTERNAL", "PTV": "PTV", "CTV": "CTV", "GTV_boost": "GTV", "Brainstem": "ORGAN",
             "Lens_L": "ORGAN", "Cord": "ORGAN"}
    return tps, mc, unc, masks, types


def _former(monkeypatch):
    """The former formulation: each metric's own positions (no two metrics sharing a sort) and each metric by its
    own np.partition (mcproton.dvh.dose_at_volume through _metric_of)."""
    positions = compare._positions

    def each_its_own(masks, idx):
        return [slice(None) if isinstance(p, slice) else np.array(p, copy=True) for p in positions(masks, idx)]

    monkeypatch.setattr(compare, "_positions", each_its_own)
    monkeypatch.setattr(compare, "_metrics_of", lambda v, keys: [compare._metric_of(v, k) for k in keys])


def _bits(rows):
    """The rows with every float as its bytes (NaN == NaN, 0.0 != -0.0)."""
    if isinstance(rows, dict):
        return {k: _bits(v) for k, v in rows.items()}
    if isinstance(rows, float):
        return struct.pack("<d", rows)
    return rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_the_same_numbers_bit_for_bit_as_a_partition_per_metric(dtype, seed, monkeypatch):
    tps, mc, unc, masks, types = _case(seed, dtype)
    rx = {"PTV": 2.0, "GTV_boost": 2.1}   # the CTV without one: no V95/V100
    kw = {"noise_rel": unc, "seed": seed, "realisations": 3, "target_realisations": 5}
    now = structure_stats(tps, mc, masks, types, 0.008, rx, **kw)
    _former(monkeypatch)
    before = structure_stats(tps, mc, masks, types, 0.008, rx, **kw)
    assert set(now) == set(masks) and "noise_matched_diff_pct" in now["PTV"]["metrics"]["D95"]
    assert _bits(now) == _bits(before)
    # and without noise matching, one prescription for every target
    monkeypatch.undo()
    now = structure_stats(tps, mc, masks, types, 0.008, 2.0)
    _former(monkeypatch)
    assert _bits(now) == _bits(structure_stats(tps, mc, masks, types, 0.008, 2.0))


def test_one_sort_per_structure_dose_and_draw_and_no_partition(monkeypatch):
    """Every structure has a dose-at-volume metric (D2 at least): two sorts each for the TPS and MC doses, and two per
    draw (the TPS side's, the MC side's); no np.partition.  Before: a partition per metric, draw and dose."""
    tps, mc, unc, masks, types = _case(0, np.float64)
    calls = {"sort": 0, "partition": 0}
    for name in calls:
        def counted(*a, _f=getattr(np, name), _name=name, **k):
            calls[_name] += 1
            return _f(*a, **k)

        monkeypatch.setattr(np, name, counted)
    structure_stats(tps, mc, masks, types, 0.008, 2.0, noise_rel=unc, realisations=3, target_realisations=5)
    n_targets, n_rest = 3, 4
    assert calls == {"sort": 2 * (n_targets + n_rest) + 2 * 5 * n_targets + 2 * 3 * n_rest, "partition": 0}, calls

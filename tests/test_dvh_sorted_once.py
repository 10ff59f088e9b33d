"""The HDF5 DVH group selects each structure's voxels once and sorts them once (issue 15 item 3): its
cumulative DVH and statistics are == the former formulation (a whole-grid selection and a partition per
number; kept here as the reference), on random doses with zeros and ties, float64 and float32, empty,
one-voxel and large structures; mcproton.dvh's statistics from a sorted array == from partitions."""
from __future__ import annotations

from math import ceil

import numpy as np
import pytest

from mcproton._io.rtstruct import dvh_group_keys, write_dvh_hdf5
from mcproton.dvh import SMALL_STRUCTURE_VOXELS, dose_stats, stats_of_doses


def _old_nth(dose, mask, n_of_size):
    d = np.asarray(dose, dtype=np.float64)[np.asarray(mask, bool)]
    n = n_of_size(d.size)
    return float(np.partition(d, d.size - n)[d.size - n])


def _old_hdf5(dose, mask, vv, n_bins):
    """The former cumulative_dvh + dvh_stats of mcproton/_io/rtstruct.py with the former dose_stats."""
    d = np.asarray(dose, float)[mask]
    top = float(d.max() if d.size else 0.0) * 1.001 or 1.0
    edges = np.linspace(0.0, top, n_bins + 1)
    if d.size == 0:
        return edges, np.zeros_like(edges), {"n_voxels": 0, "volume_cm3": 0.0}
    vf = 1.0 - np.searchsorted(np.sort(d), edges, side="left") / d.size

    def dv(v):
        return _old_nth(dose, mask, lambda size: max(1, ceil(v / 100.0 * size - 1e-9)))

    st = {"n_voxels": int(d.size), "volume_cm3": float(d.size * vv), "mean_gy": float(d.mean()),
          "min_gy": float(d.min()), "max_gy": float(d.max()), "D98_gy": dv(98), "D95_gy": dv(95),
          "D50_gy": dv(50), "D2_gy": dv(2)}
    return edges, vf, st


def _case(dtype):
    rng = np.random.default_rng(83)
    shape = (9, 14, 13)
    dose = rng.random(shape) * 60.0
    dose[rng.random(shape) < 0.3] = 0.0
    dose[rng.random(shape) < 0.2] = 42.0  # ties
    dose = dose.astype(dtype)
    masks = {"big": rng.random(shape) < 0.7, "small": rng.random(shape) < 0.02,
             "empty": np.zeros(shape, bool), "one": np.zeros(shape, bool), "all": np.ones(shape, bool),
             "a/b": np.zeros(shape, bool)}
    masks["one"][4, 5, 6] = True
    masks["a/b"][:, 3:8, 2:9] = True
    return dose, masks


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hdf5_dvh_equals_the_former_formulation(tmp_path, dtype):
    import h5py

    dose, masks = _case(dtype)
    p = tmp_path / "r.h5"
    h5py.File(p, "w").close()
    stats = write_dvh_hdf5(p, dose, masks, 0.027, n_bins=300)
    keys = dvh_group_keys(list(masks))
    with h5py.File(p) as f:
        for nm, m in masks.items():
            edges, vf, st = _old_hdf5(dose, m, 0.027, 300)
            grp = f["dvh/" + keys[nm]]
            assert np.array_equal(grp["dose_gy"][()], edges), nm
            assert np.array_equal(grp["volume_fraction"][()], vf), nm
            # the same statistics; since 2026-12-06 also whether the ROI has fewer than SMALL_STRUCTURE_VOXELS
            # voxels (the infant audit's F3), the only key added
            assert {k: v for k, v in stats[nm].items() if k != "few_voxels"} == st, nm
            assert stats[nm]["few_voxels"] == (np.count_nonzero(m) < SMALL_STRUCTURE_VOXELS), nm
            assert {k: grp.attrs[k] for k in st} == st, nm


@pytest.mark.parametrize("vv", [0.027, 1e-4, 50.0])  # D0.03cc: inside, many voxels, whole structure
def test_stats_from_sorted_doses_equal_the_partitions(vv):
    dose, masks = _case(np.float64)
    for nm, m in masks.items():
        d = dose[m]
        ref = dose_stats(dose, m, vv, prescription_gy=40.0)
        got = stats_of_doses(d, vv, 40.0, sorted_doses=np.sort(d))
        assert got.keys() == ref.keys(), nm
        for k in ref:  # NaN (empty structure) == NaN
            assert got[k] == ref[k] or (np.isnan(got[k]) and np.isnan(ref[k])), (nm, k)
        if d.size:
            assert ref["d0.03cc"] == _old_nth(dose, m, lambda s: min(s, max(1, ceil(0.03 / vv - 1e-9))))
            assert ref["d95"] == _old_nth(dose, m, lambda s: max(1, ceil(0.95 * s - 1e-9)))

"""One DVH definition: the HDF5 DVH group (mcproton/_io/rtstruct.py), ``mcproton check``'s structure table
(mcproton/_check/compare.py) and mcproton.dvh give the same D2/D95/D98/Dmean on a known dose, the ICRU 83 one
(D_v = the minimum dose to the hottest v % of the volume, no interpolation)."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._check.compare import structure_stats
from mcproton._io.rtstruct import cumulative_dvh as hdf5_cumulative_dvh, dvh_stats, write_dvh_hdf5
from mcproton.dvh import cumulative_dvh, dose_stats


@pytest.fixture
def known():
    """Doses 1, 2, ..., 100 Gy in a 100-voxel structure (shuffled), 0 Gy outside it."""
    dose = np.zeros((4, 5, 10))
    mask = np.zeros(dose.shape, bool)
    mask[:, :, :5] = True
    dose[mask] = np.random.default_rng(1).permutation(np.arange(1.0, 101.0))
    return dose, mask


def test_icru83_values_on_a_known_dose(known):
    dose, mask = known
    st = dose_stats(dose, mask)
    # hottest 2 % = the voxels of 99 and 100 Gy: their minimum is 99 Gy (np.percentile(d, 98) gives 98.02)
    assert (st["d2"], st["d95"], st["d98"], st["dmean"]) == (99.0, 6.0, 3.0, 50.5)


def test_every_path_gives_the_same_statistics(known, tmp_path):
    import h5py

    dose, mask = known
    ref = dose_stats(dose, mask, 0.008)
    want = {"D2": ref["d2"], "D95": ref["d95"], "D98": ref["d98"], "Dmean": ref["dmean"]}
    hdf5 = dvh_stats(dose, mask, 0.008)
    assert {k: hdf5[f"{k}_gy"] for k in ("D2", "D95", "D98")} | {"Dmean": hdf5["mean_gy"]} == want
    p = tmp_path / "r.h5"
    h5py.File(p, "w").close()
    write_dvh_hdf5(p, dose, {"PTV": mask}, 0.008)
    with h5py.File(p) as f:
        a = f["dvh/PTV"].attrs
        assert {k: float(a[f"{k}_gy"]) for k in ("D2", "D95", "D98")} | {"Dmean": float(a["mean_gy"])} == want
    check = structure_stats(dose, dose, {"PTV": mask}, {"PTV": "PTV"}, 0.008, None)["PTV"]["metrics"]
    assert {k: check[k]["tps_gy"] for k in want} == want
    assert {k: check[k]["mc_gy"] for k in want} == want


def test_hdf5_cumulative_dvh_is_the_dvh_module_one(known):
    dose, mask = known
    edges, frac = hdf5_cumulative_dvh(dose, mask, n_bins=50)
    lv, fr = cumulative_dvh(dose, mask, bins=edges)
    np.testing.assert_array_equal(frac, fr)
    assert frac[0] == 1.0 and frac[-1] == 0.0 and np.all(np.diff(frac) <= 0)

"""mcproton.body.dose_summary computed on the selected voxels only (one copy, one partition, no whole-grid
float64 temporaries) gives exactly the numbers of its former whole-grid form (kept below as the reference:
np.where + argmax for the maximum and its voxel, dvh.dose_at_volume(_cm3), boolean-index maxima)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mcproton.body import NEAR_MAX_VOLUME_CM3, SUMMARY_MIN_DENSITY, BodyOutline, dose_summary
from mcproton.dvh import dose_at_volume, dose_at_volume_cm3


def _reference(result, outline):
    g = result.geometry
    dose = np.asarray(result.dose_gy_zyx)
    rho = np.asarray(g.density_g_cm3_zyx).reshape(dose.shape)
    sel = rho >= SUMMARY_MIN_DENSITY
    if outline is not None:
        sel &= outline.mask
    if not sel.any():
        return {"max_dose_gy": float(dose.max())}
    idx = np.unravel_index(int(np.argmax(np.where(sel, dose, -1.0))), dose.shape)
    out = {"max_dose_gy": float(dose[idx]),
           "max_dose_at_mm": [round(float(g.origin_mm[a] + g.voxel_size_mm[a] * idx[2 - a]), 2) for a in range(3)],
           "max_dose_voxel_density_g_cm3": round(float(rho[idx]), 4),
           "d0.03cc_gy": dose_at_volume_cm3(dose, sel, NEAR_MAX_VOLUME_CM3, g.voxel_volume_cm3),
           "d2_gy": dose_at_volume(dose, sel, 2)}
    if outline is not None:
        outside = np.asarray(getattr(result, "dose_raw_gy_zyx", dose))[~outline.mask]
        out["max_dose_outside_body_gy_not_reported"] = float(outside.max()) if outside.size else 0.0
    low = (rho < SUMMARY_MIN_DENSITY) & (outline.mask if outline is not None else True)
    if np.any(low):
        out["max_dose_low_density_in_body_gy"] = float(dose[low].max())
    return out


def _case(seed, dtype, with_outline, ties=False, all_inside=False):
    rng = np.random.default_rng(seed)
    shape = (13, 21, 17)
    rho = rng.choice(np.array([0.0012, 0.03, 0.26, 1.0, 1.9], np.float32), size=shape)
    dose = (rng.gamma(0.5, 2.0, shape) * (rng.random(shape) < 0.6)).astype(dtype)
    if ties:   # the maximum in several selected voxels: the first in C order is reported
        dose[dose == dose.max()] = 0
        dose[3, 4, 5] = dose[7, 1, 2] = dose[12, 20, 16] = 50
        rho[3, 4, 5] = rho[7, 1, 2] = rho[12, 20, 16] = 1.0
    geom = SimpleNamespace(density_g_cm3_zyx=rho, origin_mm=(-10.0, 3.5, 7.25), voxel_size_mm=(1.1, 2.0, 3.0),
                           voxel_volume_cm3=1.1 * 2.0 * 3.0 / 1000)
    res = SimpleNamespace(dose_gy_zyx=dose, geometry=geom)
    outline = None
    if with_outline:
        mask = np.ones(shape, bool) if all_inside else rng.random(shape) < 0.7
        if ties:
            mask[3, 4, 5] = mask[7, 1, 2] = False
        res.dose_raw_gy_zyx = (dose * 1.5).astype(np.float32)
        outline = BodyOutline(mask, "test", "auto")
    return res, outline


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_outline", [True, False])
@pytest.mark.parametrize("ties", [True, False])
def test_same_numbers_as_the_whole_grid_form(seed, dtype, with_outline, ties):
    res, outline = _case(seed, dtype, with_outline, ties)
    got = dose_summary(res, outline)
    want = _reference(res, outline)
    assert {k: got[k] for k in want} == want
    if ties:
        first = [16, 20, 12] if with_outline else [5, 4, 3]   # (x, y, z) of the first tied voxel kept
        assert got["max_dose_at_mm"] == want["max_dose_at_mm"] == [round(o + s * i, 2) for o, s, i in zip(
            (-10.0, 3.5, 7.25), (1.1, 2.0, 3.0), first)]


def test_edge_cases():
    res, outline = _case(3, np.float64, True, all_inside=True)   # nothing outside the outline
    got = dose_summary(res, outline)
    assert got["max_dose_outside_body_gy_not_reported"] == 0.0 and got == {**got, **_reference(res, outline)}
    res.dose_gy_zyx = np.zeros_like(res.dose_gy_zyx)   # no dose at all: the first selected voxel
    assert {k: v for k, v in dose_summary(res, outline).items() if k in _reference(res, outline)} == \
        _reference(res, outline)
    res.geometry.density_g_cm3_zyx = np.zeros_like(res.geometry.density_g_cm3_zyx)   # no tissue
    assert dose_summary(res, outline)["max_dose_rule"].startswith("no voxel of tissue density")


def test_the_summary_and_the_hdf5_say_which_dose_they_hold(tmp_path):
    """The summary's maximum is of the HDF5 'dose' dataset (physical, to medium, as simulated), and says so; the
    HDF5 datasets of a beam without total_protons say "Gy per primary" (they said "Gy")."""
    import h5py

    from mcproton.body import dose_summary
    from mcproton.geometry import box_phantom
    from mcproton.run import RunSettings, simulate
    from mcproton.source import Beam

    g = box_phantom("water", (10, 10, 20), 2.0)
    st = RunSettings(primaries=200, seed=1, backend="cpu", batches=2)
    per_primary = simulate(g, Beam.pencil(70.0, position_mm=(0.0, 0.0, -1.0)), st)
    assert "of the HDF5 'dose' dataset (physical dose to medium" in dose_summary(per_primary)["max_dose_rule"]
    per_primary.save(tmp_path / "p.h5")
    absolute = simulate(g, Beam.pencil(70.0, position_mm=(0.0, 0.0, -1.0), total_protons=1e9), st)
    absolute.save(tmp_path / "a.h5")
    with h5py.File(tmp_path / "p.h5") as f, h5py.File(tmp_path / "a.h5") as h:
        assert f["dose"].attrs["unit"] == f["dose_to_water"].attrs["unit"] == "Gy per primary"
        assert h["dose"].attrs["unit"] == h["dose_to_water"].attrs["unit"] == "Gy"

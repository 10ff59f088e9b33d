"""A result describes the phantom it was computed on, whatever the caller does to the geometry afterwards (robustness
audit 2026-12-06, F3: a scenario loop that scaled ``g.density_g_cm3_zyx *= 1.035`` in place, or moved
``g.origin_mm``, rewrote every earlier result: the saved HDF5's density, the IDD, the grid, and ``sum_results``
added the scenarios without its "another phantom" warning)."""
from __future__ import annotations

import dataclasses
import warnings

import h5py
import numpy as np
import pytest

import mcproton as mcp


def _run(g, seed: int = 3):
    beam = mcp.Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(3, 3))
    return mcp.simulate(g, beam, mcp.RunSettings(primaries=2000, seed=seed, backend="cpu", threads=1), log=None)


@pytest.fixture
def nominal():
    g = mcp.box_phantom("water", size_mm=(20, 20, 50), voxel_mm=(2, 2, 2))
    return g, _run(g)


def test_an_in_place_edit_of_the_geometry_after_a_run_is_refused_loudly(nominal):
    g, res = nominal
    before = res.geometry.density_g_cm3_zyx.copy()
    with pytest.raises(ValueError, match="read-only"):
        g.density_g_cm3_zyx *= 1.035
    with pytest.raises(ValueError, match="read-only"):
        g.material_index_zyx[0, 0, 0] = 0
    np.testing.assert_array_equal(res.geometry.density_g_cm3_zyx, before)


def test_a_new_geometry_for_the_next_scenario_leaves_the_earlier_result_as_it_was(nominal, tmp_path):
    g, res = nominal
    idd_before = res.integrated_depth_dose()[1].copy()
    origin_before = res.geometry.origin_mm
    # the documented way: a new geometry (dataclasses.replace), and the caller's object moved for a set-up error
    up = dataclasses.replace(g, density_g_cm3_zyx=g.density_g_cm3_zyx * 1.035)
    g.origin_mm = (g.origin_mm[0] + 3.0, g.origin_mm[1], g.origin_mm[2])
    g.name = "moved"
    res_up = _run(up)
    assert res.geometry is not g and res.geometry.origin_mm == origin_before and res.geometry.name != "moved"
    np.testing.assert_array_equal(res.integrated_depth_dose()[1], idd_before)
    res.save(tmp_path / "nominal.h5")
    with h5py.File(tmp_path / "nominal.h5") as f:
        assert float(f["density"][...].max()) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(f.attrs["origin_mm"], origin_before)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcp.sum_results([res, res_up])
    assert any("another phantom" in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_the_geometry_given_by_the_caller_as_a_view_is_copied_not_shared():
    """A geometry built on a view of the caller's writable array: the caller can still write the array, so the
    result keeps a copy of it (read-only) instead."""
    big = np.ones((30, 10, 10), np.float32)
    g = mcp.VoxelGeometry(np.zeros((25, 10, 10), np.uint8), big[:25], [mcp.materials.get_material("water")],
                          (2.0, 2.0, 2.0), (-9.0, -9.0, 1.0))
    res = _run(g)
    big[:] = 2.0   # through the base: not through the geometry's read-only view
    assert float(res.geometry.density_g_cm3_zyx.max()) == 1.0


def test_the_fingerprint_of_arrays_that_cannot_change_is_computed_once(monkeypatch):
    """arrays_fingerprint (the calibration record's "densities changed after", asked once per beam of a plan) reads a
    geometry's arrays once they can no longer change (read-only, no writable base: a result's), and every time while
    they can (an in-place edit is then still seen)."""
    import zlib

    from mcproton import geometry as G

    calls = []
    real = zlib.crc32
    monkeypatch.setattr(zlib, "crc32", lambda *a: calls.append(len(a[0]) if hasattr(a[0], "__len__") else 0)
                        or real(*a))
    g = mcp.box_phantom("water", (20, 20, 20), 2.0)
    first = G.arrays_fingerprint(g)
    g.density_g_cm3_zyx[0, 0, 0] = 1.1          # writable: edited in place, and seen
    edited = G.arrays_fingerprint(g)
    assert edited != first
    n_writable = len(calls)
    frozen = G.result_copy(g)                    # read-only now
    assert G.arrays_fingerprint(frozen) == edited
    n_first_frozen = len(calls) - n_writable
    assert G.arrays_fingerprint(frozen) == edited == G.arrays_fingerprint(g)
    assert len(calls) - n_writable - n_first_frozen == 2   # the materials' names only, twice: no array read again

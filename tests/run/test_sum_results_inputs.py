"""sum_results refuses what is not a list of DoseResults with a message, takes a generator, warns of results of
the same grid computed on other phantoms (other densities or materials), and returns a new result for one result
(audit of the Python API 2026-12-05, F11 and F13: before, ``sum_results([None])`` ended in an AttributeError, a
generator in "has no len()", a water and a bone result were summed without a word, and ``sum_results([r])`` was
``r`` itself).  The Monte Carlo runs are 400 primaries on a 5 x 5 x 20 grid (500 voxels) on the CPU."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import mcproton
from mcproton import Beam, McprotonRuntimeWarning, RunSettings, box_phantom, simulate, sum_results

TINY = RunSettings(primaries=400, batches=10, backend="cpu", threads=1, seed=3)
BEAM = Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(2, 2))


def _box(material: str = "water", **kw):
    return box_phantom(material, (20.0, 20.0, 40.0), (4.0, 4.0, 2.0), **kw)


@pytest.fixture(scope="module")
def water():
    return simulate(_box(), BEAM, TINY, beam_index=0)


def _phantom_warnings(rec) -> list[str]:
    return [str(w.message) for w in rec
            if issubclass(w.category, McprotonRuntimeWarning) and "another phantom" in str(w.message)]


def test_results_of_other_phantoms_on_one_grid_are_summed_with_a_warning_naming_what_differs(water):
    bone = simulate(_box("bone_compact_icru"), BEAM, TINY, beam_index=1)
    with pytest.warns(McprotonRuntimeWarning) as rec:
        total = sum_results([water, bone])
    said = _phantom_warnings(rec)
    assert len(said) == 1, [str(w.message) for w in rec]
    assert "result 2 was computed on another phantom than result 1" in said[0]
    assert "the density of 500 voxel(s)" in said[0]
    assert "the material of 500 voxel(s) (bone_compact_icru against water)" in said[0]
    assert rec[0].filename == __file__          # points at the call of sum_results
    np.testing.assert_array_equal(total.dose_gy_zyx, water.dose_gy_zyx + bone.dose_gy_zyx)   # summed as asked
    denser = simulate(_box(density_g_cm3=1.05), BEAM, TINY, beam_index=1)   # the same material, denser
    with pytest.warns(McprotonRuntimeWarning) as rec:
        sum_results([water, denser])
    said = _phantom_warnings(rec)
    assert len(said) == 1 and "the density of 500 voxel(s) (by up to 0.05 g/cm3)" in said[0]
    assert "material" not in said[0]


def test_results_of_one_phantom_are_summed_without_the_warning(water, tmp_path):
    other = simulate(_box(), BEAM, TINY, beam_index=1)          # a geometry made again: equal arrays
    loaded = mcproton.DoseResult.load(water.save(tmp_path / "w.h5"))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        sum_results([water, other])
        sum_results([water, _as_beam(loaded, beam_index=2)])
    assert _phantom_warnings(rec) == []


def _as_beam(r, beam_index):
    """``r`` as the result of another beam (its own random stream: no shared-stream warning)."""
    import dataclasses

    return dataclasses.replace(r, provenance={**r.provenance, "beam_index": beam_index})


def test_the_sum_of_one_result_is_a_copy(water):
    total = sum_results([water])
    assert total is not water
    np.testing.assert_array_equal(total.dose_gy_zyx, water.dose_gy_zyx)
    before = water.dose_gy_zyx.copy()
    total.dose_gy_zyx *= 2
    total.provenance["note"] = "changed"
    total.ledger["incident"] = -1
    np.testing.assert_array_equal(water.dose_gy_zyx, before)
    assert "note" not in water.provenance and water.ledger["incident"] != -1
    assert total.geometry is water.geometry     # shared, as a sum of several shares its first result's


def test_sum_results_takes_a_generator_and_refuses_what_is_not_a_list_of_results(water):
    other = simulate(_box(), BEAM, TINY, beam_index=1)
    np.testing.assert_array_equal(sum_results(r for r in (water, other)).dose_gy_zyx,
                                  sum_results([water, other]).dose_gy_zyx)
    with pytest.raises(ValueError, match=r"sum_results: result 2 is a NoneType, not a DoseResult"):
        sum_results([water, None])
    with pytest.raises(ValueError, match=r"sum_results takes a list of DoseResults .*; got a NoneType"):
        sum_results(None)
    with pytest.raises(ValueError, match=r"got a DoseResult: give \[result\]"):
        sum_results(water)
    with pytest.raises(ValueError, match="needs at least one DoseResult"):
        sum_results(r for r in ())

"""The check's MC grid and the MC dose on the TPS grid (grids audit 2026-12-06).

F2, the MC dose at TPS voxel centres in the CT's outer half-voxel.

``to_tps_grid`` interpolates trilinearly between MC voxel centres, and gave 0 at every TPS centre beyond their hull,
even inside the CT, where the MC computed a dose: a TPS grid starting at the CT's first voxel centre got MC dose 0
in its whole first column, row and slice on blocks of the CT (each block's first centre lies (f - 1) / 2 CT voxels
inside the CT), and one offset by half a CT voxel at its outer faces.  Within the CT's extent such a centre now
takes the edge voxel's dose; beyond it, what it got before; the density that the body outline is formed from keeps
the old rule (rim=False), so the body outline and the coverage check do not change.  Uniform and linear MC doses:
exact numbers, no tolerance beyond float rounding."""
from __future__ import annotations

import numpy as np
import pytest

import mcproton as mcp
from mcproton._check.compute import (block_factors_for, build_geometry, grid_extent_mm, let_to_tps_grid, to_tps_grid,
                                     uncertainty_to_tps_grid)
from mcproton._check.inputs import TPSDose
from mcproton.geometry import resample_blocks


def _ref(shape_zyx, voxel_mm, origin_mm) -> TPSDose:
    return TPSDose("RD.dcm", np.zeros(shape_zyx), tuple(voxel_mm), tuple(origin_mm), "", "PHYSICAL", "PLAN", None)


@pytest.fixture(scope="module")
def ct():
    """A CT-like grid of 0.9 x 1.3 x 2.5 mm voxels (anisotropic, origin off the spacing), 12 x 10 x 8 voxels."""
    return mcp.box_phantom("water", (10.8, 13.0, 20.0), (0.9, 1.3, 2.5), origin_mm=(-23.37, 11.11, -40.13))


def test_a_tps_grid_from_the_cts_first_voxel_centre_gets_the_edge_blocks_dose(ct):
    """MC on 3 x 2 x 2 blocks (first block centre 0.9, 0.65, 1.25 mm inside the CT's first centre); the TPS grid of
    the blocks' spacing starts at the CT's first voxel centre.  A uniform MC dose 1 reads 1 on the whole TPS grid
    inside the CT (it read 0 in the first column, row and slice); a linear dose along x takes the edge block's value
    in the rim and its trilinear value elsewhere."""
    gb = resample_blocks(ct, (3, 2, 2))
    ext = grid_extent_mm(ct.origin_mm, ct.voxel_size_mm, ct.shape_zyx)
    assert ext[0] == pytest.approx((-23.82, -23.82 + 10.8))
    ref = _ref((3, 4, 3), gb.voxel_size_mm, ct.origin_mm)   # inside the CT: x to -17.97, y to 18.91, z to -30.13
    out, note = to_tps_grid(np.ones(gb.shape_zyx), gb, ref, extent_mm=ext)
    assert "interpolated" in note
    assert out == pytest.approx(np.ones(ref.shape_zyx), abs=1e-12)
    assert float(to_tps_grid(np.ones(gb.shape_zyx), gb, ref)[0].min()) == pytest.approx(1.0)   # None: the MC grid's
    # the old rule where asked (the density of the body outline): 0 in the first column, row and slice
    old = to_tps_grid(np.ones(gb.shape_zyx), gb, ref, extent_mm=ext, rim=False)[0]
    assert old[0].max() == 0 and old[:, 0].max() == 0 and old[:, :, 0].max() == 0 and old[1:, 1:, 1:].min() == 1
    # linear in the block index along x: the rim takes block 0's dose, the next centres their own interpolation
    nz, ny, nx = gb.shape_zyx
    lin = np.broadcast_to(np.arange(nx, dtype=float), gb.shape_zyx).copy()
    out = to_tps_grid(lin, gb, ref, extent_mm=ext)[0]
    xt = ref.axes_mm()[2]
    expect = np.clip((xt - gb.origin_mm[0]) / gb.voxel_size_mm[0], 0, None)
    assert out[1, 1] == pytest.approx(expect, abs=1e-12) and expect[0] == 0 and expect[1] == pytest.approx(2 / 3)
    # the propagated uncertainty and the LETd take the edge voxel's too (they read 0 there)
    unc = uncertainty_to_tps_grid(np.full(gb.shape_zyx, 0.02), np.ones(gb.shape_zyx), gb, ref, extent_mm=ext)
    assert unc[0, 0, 0] == pytest.approx(0.02) and unc.min() > 0
    let = let_to_tps_grid(np.full(gb.shape_zyx, 3.0), np.ones(gb.shape_zyx), gb, ref, extent_mm=ext)
    assert let == pytest.approx(np.full(ref.shape_zyx, 3.0), rel=1e-6)


def test_a_tps_grid_offset_by_half_a_ct_voxel_and_beyond_the_ct(ct):
    """No blocks, TPS grid of the CT's spacing offset by -0.5 voxel: its first centres lie on the CT's lower outer
    faces (float noise of the origin allowed for), inside CT voxel 0, and take its dose (they read 0); the TPS
    centres one more voxel out, at both ends, lie beyond the CT and keep 0."""
    vs = np.asarray(ct.voxel_size_mm)
    nz, ny, nx = ct.shape_zyx
    ext = grid_extent_mm(ct.origin_mm, vs, ct.shape_zyx)
    half = _ref((nz, ny, nx), vs, np.asarray(ct.origin_mm) - vs / 2)
    out = to_tps_grid(np.ones(ct.shape_zyx), ct, half, extent_mm=ext)[0]
    assert out == pytest.approx(np.ones(out.shape), abs=1e-12)
    # centres at the indices -1.5, -0.5, ..., n - 0.5, n + 0.5: the outer two half a voxel beyond the CT's faces
    wide = _ref((nz + 3, ny + 3, nx + 3), vs, np.asarray(ct.origin_mm) - 1.5 * vs)
    out = to_tps_grid(np.ones(ct.shape_zyx), ct, wide, extent_mm=ext)[0]
    assert out[0].max() == 0 and out[:, 0].max() == 0 and out[:, :, 0].max() == 0
    assert out[-1].max() == 0 and out[:, -1].max() == 0 and out[:, :, -1].max() == 0
    assert out[1:-1, 1:-1, 1:-1] == pytest.approx(np.ones((nz + 1, ny + 1, nx + 1)), abs=1e-12)


def test_the_mc_blocks_are_within_the_tps_voxels_unless_much_finer(tmp_path):
    """F4: the blocks were the nearest whole number of CT voxels, so a 2 mm TPS grid on a 1.3 mm CT got 2.6 mm blocks,
    whose averaging read the R80 differences -0.26 mm where the MC matched the TPS dose.  Now the most CT voxels
    within the TPS voxel (+ 5 %): 2.04 mm for 2 mm on 1.02 mm; 2.6 mm for 2.5 mm (4 % larger); 1.8 mm for 2 mm on
    0.9 mm (nearest: the same); but not finer than 3/4 of the TPS voxel (the cost: the run stops at its uncertainty per
    MC voxel), so 1.3 mm pixels for 2 mm keep the nearest, 2.6 mm, and 1.17 mm pixels for 3 mm get 2.34 mm (nearest:
    3.51 mm); the CT's own voxel where it is larger than the TPS's.  The grid note names each coarser axis."""
    from mcproton._check.compute import coarser_grid_note
    from mcproton._io.ct import write_ct_series

    assert block_factors_for((2.0, 2.0, 2.0), (0.9, 1.3, 2.5)) == [2, 2, 1]     # 1.3 mm would be 0.65 of 2 mm
    assert block_factors_for((3.0, 3.0, 2.0), (1.17, 1.17, 2.0)) == [2, 2, 1]   # nearest: [3, 3, 1]
    assert block_factors_for((2.0, 3.0, 2.5), (1.02, 0.977, 1.3)) == [2, 3, 2]
    assert block_factors_for((2.0, 2.0, 2.0), (2.0, 1.0, 0.6666666)) == [1, 2, 3]   # exact multiples stay
    hu = np.full((6, 10, 12), -1000, np.int16)
    hu[:, 2:8, 2:10] = 0
    write_ct_series(hu, (0.9, 1.3, 2.5), (-23.37, 11.11, -40.13), tmp_path / "ct")
    g, _, _ = build_geometry(tmp_path / "ct", "schneider2000", _ref((4, 4, 4), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)))
    assert g.voxel_size_mm == pytest.approx((1.8, 2.6, 2.5))
    assert coarser_grid_note((1.8, 1.9, 2.5), (2.0, 2.0, 2.5)) == ""
    note = coarser_grid_note((1.8, 2.6, 2.5), (2.0, 2.0, 2.0))   # 2 x 1.3 mm and the CT's 2.5 mm slices against 2 mm
    assert "coarser than the TPS grid along y (2.6 mm against 2 mm), z (2.5 mm against 2 mm)" in note and "R80" in note


@pytest.mark.parametrize("at_ct_resolution", [None, lambda g: None])
def test_the_transport_grids_last_partial_block_holds_the_cts_tissue(tmp_path, at_ct_resolution):
    """mcproton check's transport grid on a CT of 21 slices of 1 mm (a water box in air) in blocks of 2 x 2 x 2 CT
    voxels for a 2 mm TPS grid: the last block of slices (1 of its 2 slices in the CT) is the tissue of that slice,
    as every other block of the box, through both routes (to_geometry's blocks; the CT's own voxels, then
    resample_blocks, as with the structure set's overrides).  Before 2026-12-07 it was tissue at half density, the
    missing slice counted as vacuum, and protons crossing it went too far (discretisation audit F1;
    tests/io/test_dose_grid_resampling.py measures the range)."""
    from mcproton._io.ct import write_ct_series

    hu = np.full((21, 12, 12), -1000, np.int16)
    hu[:, 2:10, 2:10] = 0
    write_ct_series(hu, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    said: list[str] = []
    g, cal, _ = build_geometry(tmp_path / "ct", "schneider2000", _ref((4, 4, 4), (2.0, 2.0, 2.0), (0.5, 0.5, 0.5)),
                               at_ct_resolution=at_ct_resolution, log=said.append)
    assert g.shape_zyx == (11, 6, 6) and g.voxel_size_mm == pytest.approx((2.0, 2.0, 2.0))
    # the log says so (review 28b, R2: before 2026-12-07 nothing did), along z only
    assert said == ["mcproton check: note: the MC grid's blocks of 2 x 2 x 2 CT voxels reach past the CT's far face "
                    "along z by 1 mm (1 CT voxel: the CT's 21 slices are not a whole number of blocks of 2; the grid "
                    "ends at z = 21.5 mm, the CT at 20.5 mm): the last block along that axis holds fewer CT voxels "
                    "and takes their mean, so the tissue of the CT's last voxels fills it (a beam entering through "
                    "that face crosses that much more of it; a beam along the face stops where it does on the CT)"]
    rho = g.density_g_cm3_zyx
    water = float(cal.density_from_hu(np.zeros(1))[0])
    assert rho[:, 1:5, 1:5] == pytest.approx(np.full((11, 4, 4), water), rel=1e-6)

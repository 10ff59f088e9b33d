"""The one CT -> transport geometry conversion (HUCalibration.to_geometry, slab by slab) that `mcproton run`
(config.build_geometry, phantom.type = "ct") and `mcproton check` (compute.build_geometry) both use: bit for bit
the whole-volume conversion (every voxel's bin and density, then geometry.resample_blocks), with a bounded peak
memory.  Deterministic: no tolerance on chance.

Peak memory (tracemalloc, numpy reports its allocations to it), a 48 x 128 x 128 int16 CT in slabs of 2
slices, measured 2026-12-04: full resolution 7.0 bytes per CT voxel (the result itself is 5: a 1-byte material
and a 4-byte density), blocks of 2 x 2 x 2 voxels 4.6; the conversion before (a whole-CT int64 bin index, int32
table index and float32 density, then resample_blocks, whose own slabs of 4 M voxels hold this whole CT) 17.1
and 72.3 bytes per voxel, which the limits of 9 and 7 break.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from mcproton._io.ct import CTImage, write_ct_series
from mcproton._io.hu_calibration import HUCalibration
from mcproton.geometry import VoxelGeometry, resample_blocks


def _head_hu(shape_zyx: tuple[int, int, int], seed: int = 7) -> np.ndarray:
    """Air around an ellipse of soft tissue with a bone ring, a lung-like hole and noise (int16 HU): many
    calibration bins, and blocks that mix materials."""
    nz, ny, nx = shape_zyx
    z, y, x = np.meshgrid(np.arange(nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    r = np.hypot(x / 0.8, y / 0.7)
    hu = np.where(r < 1.0, 40.0, -1000.0)
    hu = np.where((r > 0.85) & (r < 1.0), 900.0 + 20 * z, hu)
    hu = np.where(np.hypot(x - 0.3, y) < 0.2, -750.0, hu)
    hu = hu + np.random.default_rng(seed).normal(0.0, 30.0, hu.shape)
    return np.clip(np.rint(hu), -1024, 3000).astype(np.int16)


def _whole_volume(cal: HUCalibration, ct: CTImage, compact: bool) -> VoxelGeometry:
    """The conversion as it was before (whole-CT arrays): the oracle."""
    idx = cal.material_index_from_hu(ct.hu_zyx)
    mats = list(cal.materials)
    if compact:
        used = np.unique(idx)
        remap = np.zeros(len(mats), np.int64)
        remap[used] = np.arange(used.size)
        idx, mats = remap[idx], [mats[i] for i in used]
    return VoxelGeometry(idx.astype(np.uint8), cal.density_from_hu(ct.hu_zyx), mats, ct.voxel_size_mm,
                         ct.origin_mm, name=f"CT {ct.series_instance_uid} ({cal.name})")


def _assert_same(g: VoxelGeometry, ref: VoxelGeometry) -> None:
    assert [m.name for m in g.materials] == [m.name for m in ref.materials]
    assert g.origin_mm == ref.origin_mm and g.voxel_size_mm == ref.voxel_size_mm and g.name == ref.name
    assert g.material_index_zyx.dtype == np.uint8 and g.density_g_cm3_zyx.dtype == np.float32
    np.testing.assert_array_equal(g.material_index_zyx, ref.material_index_zyx)
    np.testing.assert_array_equal(g.density_g_cm3_zyx, ref.density_g_cm3_zyx)


@pytest.mark.parametrize("compact", [False, True])
def test_slab_conversion_is_the_whole_volume_conversion(compact):
    """Full resolution and blocks (7 slices in blocks of 3: padding), slabs of 1 to 2 blocks of slices."""
    cal = HUCalibration.load("schneider2000")
    ct = CTImage(_head_hu((7, 40, 36)), (0.9, 0.8, 2.5), (-15.0, -20.5, 31.25), series_instance_uid="1.2.3")
    ref = _whole_volume(cal, ct, compact)
    assert len(ref.materials) >= (6 if compact else 24)
    for f in ((1, 1, 1), (2, 2, 1), (3, 2, 3), (1, 1, 2)):
        for slab in (40 * 36, 2 * 40 * 36 * f[2], None):
            _assert_same(cal.to_geometry(ct, compact=compact, blocks=f, slab_voxels=slab),
                         resample_blocks(ref, f))


def test_run_builds_the_ct_geometry_with_the_same_conversion(tmp_path):
    """`mcproton run`'s CT phantom, with and without phantom.dose_voxel_mm: the whole-volume geometry (all the
    calibration's bins), in the CT's study."""
    from mcproton.config import build_geometry
    from mcproton.dicom import load_ct_series

    write_ct_series(_head_hu((5, 24, 20)), (1.0, 1.0, 2.0), (-10.0, -12.0, 0.0), tmp_path / "ct")
    ct = load_ct_series(tmp_path / "ct")
    cal = HUCalibration.load("schneider2000")
    ref = _whole_volume(cal, ct, compact=False)
    for dv, f in ((None, (1, 1, 1)), ([2.0, 3.0, 4.0], (2, 3, 2))):
        ph = {"type": "ct", "ct_dir": str(tmp_path / "ct")}
        g = build_geometry({"phantom": ph if dv is None else {**ph, "dose_voxel_mm": dv}})
        _assert_same(g, resample_blocks(ref, f))
        assert g.study is not None and g.study.frame_of_reference_uid == ct.frame_of_reference_uid != ""


@pytest.mark.parametrize("blocks, limit", [((1, 1, 1), 9.0), ((2, 2, 2), 7.0)])
def test_conversion_peak_memory_is_bounded(blocks, limit, monkeypatch):
    import mcproton._io.hu_calibration as hc

    shape = (48, 128, 128)
    monkeypatch.setattr(hc, "CT_SLAB_VOXELS", 2 * 128 * 128)
    cal = HUCalibration.load("schneider2000")
    ct = CTImage(_head_hu(shape), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), series_instance_uid="1.2.3")
    cal.to_geometry(ct, blocks=blocks)        # warm-up: the stopping powers of the materials (cached)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        g = cal.to_geometry(ct, blocks=blocks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = int(np.prod(shape))
    print(f"peak {peak / n:.1f} bytes per CT voxel")
    assert g.shape_zyx == tuple(s // b for s, b in zip(shape, blocks[::-1]))
    assert peak < limit * n, f"{peak / n:.1f} bytes per CT voxel"


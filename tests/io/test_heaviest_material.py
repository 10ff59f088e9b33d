"""The heaviest material of each block (mcproton/geometry.py ``_heaviest_material``, the material of a CT's blocks in
``resample_blocks``): a block of one material takes it at once, only the others are summed per material (the
host-time audit of 2026-12-07, F2: the (blocks x materials) sums of every block were 4.2 s of the 6.1 s resampling of
the DCPT head CT, profiled, and 80 % of its blocks hold one material).  The answer is the former function's to the
bit, kept here line for line as the reference: on random blocks with ties, on blocks of one material, on densities
of 0, below 0 and NaN, and through resample_blocks on a synthetic volume of mixed and single-material blocks, which
no longer copies (pads) a slab of whole blocks."""
from __future__ import annotations

import numpy as np
import pytest

import mcproton.geometry as geo


def _heaviest_reference(mat6, rho6, n_mat):
    """_heaviest_material as it was before 2026-12-07 (mcproton/geometry.py at 2c56c8e), line for line."""
    NZ, fz, NY, fy, NX, fx = mat6.shape
    out = np.zeros((NZ, NY, NX), np.uint8)
    per_z = NY * NX
    step = max(1, int(2e7 // max(1, per_z * n_mat)))   # ~160 MB of (block, material) sums at a time
    for z0 in range(0, NZ, step):
        m = mat6[z0:z0 + step].transpose(0, 2, 4, 1, 3, 5).reshape(-1, fz * fy * fx).astype(np.int64)
        r = rho6[z0:z0 + step].transpose(0, 2, 4, 1, 3, 5).reshape(-1, fz * fy * fx)
        nb = m.shape[0]
        key = np.arange(nb, dtype=np.int64)[:, None] * n_mat + m
        mass = np.bincount(key.ravel(), weights=r.ravel(), minlength=nb * n_mat).reshape(nb, n_mat)
        out[z0:z0 + step] = mass.argmax(axis=1).reshape(-1, NY, NX)
    return out


def _resample_reference(g, factors):
    """resample_blocks' material and density as they were before 2026-12-07: the whole grid padded to whole blocks
    (np.pad, also where no padding is needed) and the reference heaviest material; the density of a partial block
    at a far end the mean over the voxels it holds (since 2026-12-07, discretisation audit F1; before, over the
    padding too)."""
    from mcproton._physics.stopping import electronic_mass_stopping_power

    fx, fy, fz = factors
    nz, ny, nx = g.shape_zyx
    NZ, NY, NX = -(-nz // fz), -(-ny // fy), -(-nx // fx)
    pad = ((0, NZ * fz - nz), (0, NY * fy - ny), (0, NX * fx - nx))

    def blocks(a):
        return np.pad(a, pad).reshape(NZ, fz, NY, fy, NX, fx)

    rho = g.density_g_cm3_zyx.astype(np.float64)
    s = np.array([float(electronic_mass_stopping_power(m, geo.RESAMPLE_REFERENCE_ENERGY_MEV)) for m in g.materials])
    lin = blocks(rho * s[g.material_index_zyx]).sum(axis=(1, 3, 5)) / blocks(np.ones(g.shape_zyx)).sum(axis=(1, 3, 5))
    mat = _heaviest_reference(blocks(g.material_index_zyx), blocks(rho), len(g.materials))
    return mat, np.where(lin > 0, lin / s[mat], 0.0).astype(np.float32)


def _blocks(rng, n_blocks, shape_block, n_mat, single_fraction):
    """(mat6, rho6) of ``n_blocks`` blocks along x (NZ = NY = 1): ``single_fraction`` of them of one material, the
    others mixed; densities that make ties (equal masses of two materials in a block) now and then."""
    fz, fy, fx = shape_block
    nv = fz * fy * fx
    m = rng.integers(0, n_mat, (n_blocks, nv)).astype(np.uint8)
    single = rng.random(n_blocks) < single_fraction
    m[single] = rng.integers(0, n_mat, (int(single.sum()), 1))
    rho = rng.choice([0.5, 1.0, 1.5, 2.0], (n_blocks, nv))   # a few values: ties in the sums
    # (NX, fz, fy, fx) -> (1, fz, 1, fy, NX, fx)
    return (m.reshape(n_blocks, fz, fy, fx).transpose(1, 2, 0, 3)[None, :, None].copy(),
            rho.reshape(n_blocks, fz, fy, fx).transpose(1, 2, 0, 3)[None, :, None].copy())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape_block", [(2, 4, 4), (1, 2, 3), (3, 1, 1)])
def test_the_heaviest_material_is_the_former_one_to_the_bit(seed, shape_block):
    rng = np.random.default_rng(seed)
    n_mat = int(rng.integers(1, 41))
    mat6, rho6 = _blocks(rng, 2000, shape_block, n_mat, 0.8)
    # densities of 0 (vacuum, padding), below 0 and NaN in some blocks, uniform ones among them
    flat = rho6.reshape(-1)
    for value in (0.0, -1.0, np.nan):
        flat[rng.choice(flat.size, 30, replace=False)] = value
    zero_block = mat6[0, :, 0, :, 5, :]
    zero_block[...] = zero_block.flat[0]
    rho6[0, :, 0, :, 5, :] = 0.0               # a whole block of one material without mass: the former argmax, 0
    rho6[0, :, 0, :, 6, :] = -0.5
    mat6[0, :, 0, :, 6, :] = min(3, n_mat - 1)
    want = _heaviest_reference(mat6, rho6, n_mat)
    got = geo._heaviest_material(mat6, rho6, n_mat)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert want[0, 0, 5] == 0


def test_a_block_of_one_material_is_not_summed(monkeypatch):
    """Only the mixed blocks go through the per-(block, material) sums (np.bincount): before, every block did."""
    rng = np.random.default_rng(3)
    mat6, rho6 = _blocks(rng, 1000, (2, 4, 4), 40, 0.8)
    mixed = int(np.count_nonzero(mat6.min(axis=(1, 3, 5)) != mat6.max(axis=(1, 3, 5))))
    summed: list[int] = []
    bincount = np.bincount

    def counting(x, weights=None, minlength=0):
        summed.append(x.size // 32)
        return bincount(x, weights=weights, minlength=minlength)

    monkeypatch.setattr(np, "bincount", counting)
    got = geo._heaviest_material(mat6, rho6, 40)
    monkeypatch.undo()
    assert 150 < mixed < 250 and sum(summed) == mixed, (summed, mixed)
    assert got.tobytes() == _heaviest_reference(mat6, rho6, 40).tobytes()


def _volume(rng, shape, n_mat):
    """A synthetic CT-like volume: large regions of one material (air around, tissue, a bone shell, an air cavity)
    with noisy densities, so that most blocks hold one material and those at the boundaries several."""
    nz, ny, nx = shape
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    mat = np.zeros(shape, np.uint8)
    mat[r < 0.9] = 1
    mat[(r > 0.75) & (r < 0.9)] = 2
    mat[(np.abs(x - 0.2) < 0.15) & (np.abs(y) < 0.2) & (np.abs(z) < 0.3)] = 0
    speckle = (r < 0.5) & (rng.random(shape) < 0.02)      # single voxels of other materials in the tissue
    mat[speckle] = rng.integers(3, n_mat, int(speckle.sum()))
    base = np.array([0.0012, 1.03, 1.85] + [1.0] * (n_mat - 3))
    rho = (base[mat] * rng.normal(1.0, 0.02, shape)).astype(np.float32)
    return mat, rho


@pytest.mark.parametrize("shape, factors", [((24, 40, 36), (4, 4, 2)),    # whole blocks: no padding
                                            ((25, 41, 37), (4, 4, 2)),    # padded on every axis
                                            ((18, 30, 30), (3, 2, 3)), ((12, 16, 16), (1, 1, 1))])
@pytest.mark.parametrize("slab_block_rows", [1, 3, None])
def test_resample_blocks_is_the_former_one_to_the_bit(shape, factors, slab_block_rows, monkeypatch):
    rng = np.random.default_rng(sum(shape))
    mats = ["air", "soft_tissue", "cortical_bone", "water", "adipose_tissue", "lung"]
    mat, rho = _volume(rng, shape, len(mats))
    g = geo.VoxelGeometry(mat, rho, mats, (0.98, 0.98, 1.5), (-10.0, -20.0, 3.0))
    if factors == (1, 1, 1):
        assert geo.resample_blocks(g, factors) is g
        return
    fx, fy, fz = factors
    NY, NX = -(-shape[1] // fy), -(-shape[2] // fx)
    if slab_block_rows is not None:   # the slabs of resample_blocks: rows of blocks along z, the last one short
        monkeypatch.setattr(geo, "_RESAMPLE_SLAB_VOXELS", slab_block_rows * fz * NY * fy * NX * fx)
    want_mat, want_rho = _resample_reference(g, factors)
    got = geo.resample_blocks(g, factors)
    assert got.material_index_zyx.tobytes() == want_mat.tobytes()
    assert got.density_g_cm3_zyx.dtype == np.float32 and got.density_g_cm3_zyx.tobytes() == want_rho.tobytes()
    # mixed and single-material blocks both there
    blocks = geo._block_view(mat, factors)
    single = blocks.min(axis=(1, 3, 5)) == blocks.max(axis=(1, 3, 5))
    assert 0.3 < single.mean() < 0.98 and len(np.unique(want_mat)) >= 3


def test_a_slab_of_whole_blocks_is_not_padded(monkeypatch):
    """resample_blocks pads (copies) a slab only where the grid is not a whole number of blocks: np.pad took 0.54 s
    of the head CT's resampling (profiled), copying every slab of it three times for nothing."""
    rng = np.random.default_rng(5)
    mat, rho = _volume(rng, (24, 40, 36), 4)
    g = geo.VoxelGeometry(mat, rho, ["air", "soft_tissue", "cortical_bone", "water"], (1.0, 1.0, 2.0))
    pads: list = []
    pad = np.pad
    monkeypatch.setattr(np, "pad", lambda a, *args, **kw: pads.append(a.shape) or pad(a, *args, **kw))
    geo.resample_blocks(g, (4, 4, 2))
    assert pads == []
    geo.resample_blocks(g, (5, 4, 2))      # 36 x: padded to 40
    assert pads

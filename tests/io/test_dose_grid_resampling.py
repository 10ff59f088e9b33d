"""A coarser dose grid for a CT (phantom.dose_voxel_mm -> geometry.resample_blocks): blocks of whole CT voxels
that keep each block's stopping power, so that ranges do not move."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._physics.stopping import electronic_mass_stopping_power
from mcproton.geometry import VoxelGeometry, resample_blocks, slab_phantom
from mcproton.materials import get_material


def _centres(g: VoxelGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return g.axis_mm("x"), g.axis_mm("y"), g.axis_mm("z")


def test_uniform_grid_keeps_material_density_and_frame():
    g = slab_phantom([("water", 12.0)], (16.0, 10.0), 1.0)
    c = resample_blocks(g, (2, 2, 3))
    assert c.shape_zyx == (4, 5, 8) and c.voxel_size_mm == (2.0, 2.0, 3.0)
    assert np.all(c.material_index_zyx == 0) and np.allclose(c.density_g_cm3_zyx, 1.0)
    # each block centre is the mean of its voxels' centres; the outer faces stay where they were
    fx, fy, fz = _centres(g)
    cx, cy, cz = _centres(c)
    assert np.allclose(cx, fx.reshape(-1, 2).mean(1)) and np.allclose(cz, fz.reshape(-1, 3).mean(1))
    assert np.allclose(c.lower_corner_mm, g.lower_corner_mm)
    assert resample_blocks(g, (1, 1, 1)) is g


def test_mixed_block_keeps_stopping_power_and_takes_the_heavier_material():
    """One block of 1 water + 1 bone voxel: bone (more mass), density rho_b' = (S_w + 1.85 S_b) / 2 / S_b."""
    g = slab_phantom([("water", 1.0), ("bone_compact_icru", 1.0)], (2.0, 2.0), 1.0)
    c = resample_blocks(g, (1, 1, 2))
    assert c.shape_zyx == (1, 2, 2)
    assert [m.name for m in c.materials][int(c.material_index_zyx[0, 0, 0])] == "bone_compact_icru"
    s_w, s_b = (float(electronic_mass_stopping_power(get_material(m), 100.0)) for m in ("water",
                                                                                         "bone_compact_icru"))
    want = (1.0 * s_w + 1.85 * s_b) / 2 / s_b
    assert np.allclose(c.density_g_cm3_zyx, want, rtol=1e-6)
    assert 1.4 < want < 1.5    # the mass changes by the stopping-power ratio, not the range


def test_a_partial_block_takes_the_mean_of_its_own_voxels_and_labels_the_majority():
    """A grid that is not a whole number of blocks (5 x 2 x 3 voxels in blocks of 2): the last block along x holds
    one of two columns, the last along z one of two slices.  Each takes the mean of the voxels it holds, not of the
    padding beyond the grid's face too: it read 0.5 x and 0.25 x the tissue's density before 2026-12-07, and a beam
    along that face went too far (discretisation audit F1;
    test_range_across_the_last_partial_block_of_a_ct_is_the_ct_grids)."""
    rho = np.ones((3, 2, 5), np.float32)
    rho[:, :, 4] = 1.5         # the last column, alone in its x block
    rho[2] = 0.8               # the last slice, alone in its z block
    rho[2, :, 4] = 0.6         # the corner block (z 2, x 4): 2 of its 8 voxels
    lab = np.zeros((3, 2, 5), np.int16)
    lab[:, :, :3] = 7
    lab[:, 1, 3] = 7       # the block of x = 2, 3: three of four voxels per slice are 7
    g = VoxelGeometry(np.zeros((3, 2, 5), np.uint8), rho, [get_material("water")], (1.0, 1.0, 1.0),
                      labels_zyx=lab, label_names={7: "brain"})
    c = resample_blocks(g, (2, 2, 2))
    assert c.shape_zyx == (2, 1, 3)
    assert np.allclose(c.density_g_cm3_zyx[:, 0], [[1.0, 1.0, 1.5], [0.8, 0.8, 0.6]], rtol=1e-6)
    assert np.all(c.material_index_zyx == 0)
    # the last blocks keep their full size: the grid reaches a voxel beyond the last column and slice
    assert np.allclose(c.lower_corner_mm, g.lower_corner_mm) and np.allclose(c.extent_mm, (6.0, 2.0, 4.0))
    assert c.labels_zyx[0, 0].tolist() == [7, 7, 0] and c.label_names == {7: "brain"}


def test_range_across_the_last_partial_block_of_a_ct_is_the_ct_grids(tmp_path):
    """A water CT of 21 slices of 1 mm (not a whole number of 2 mm blocks) and a 70 MeV pencil beam along +x in its
    last slice (z = 20 mm, sigma 1 mm): R80 along x of the depth-dose in the last block of slices on 2 x 2 x 2 mm
    blocks equals R80 of the CT grid's last slice (in the same 2 mm bins) within 0.5 mm.  Measured (blocks against
    the CT grid): 39.448 / 39.449, 39.448 / 39.444 and 39.450 / 39.447 mm (seeds 1, 2, 3; the two grids share the
    tracks wherever the tissue is the same, and the sd of each R80 is ~0.03 mm at 4000 primaries, so 0.5 mm is
    > 10 sd).  Before 2026-12-07 that block was tissue at half density (the missing slice counted as vacuum) and R80
    read about twice the range (discretisation audit F1: +6 mm for a 100 MeV field across the edge slab of a
    21-slice CT)."""
    from mcproton._io.ct import write_ct_series
    from mcproton.dicom import HUCalibration, load_ct_series
    from mcproton.run import simulate
    from mcproton.settings import RunSettings
    from mcproton.source import Beam, Spot
    from mcproton.validation import metrics as M

    write_ct_series(np.zeros((21, 20, 100), np.int16), (1.0, 1.0, 1.0), (0.5, -9.5, 0.0), tmp_path / "ct")
    ct = load_ct_series(tmp_path / "ct")
    cal = HUCalibration.load("schneider2000")
    fine = cal.to_geometry(ct, check_ct=False, check_coverage=False)
    blocks = cal.to_geometry(ct, blocks=(2, 2, 2), check_ct=False, check_coverage=False)
    assert blocks.shape_zyx == (11, 10, 50)
    rho = blocks.density_g_cm3_zyx
    assert np.allclose(rho[-1], rho[0], rtol=1e-6) and np.allclose(rho, fine.density_g_cm3_zyx[0, 0, 0], rtol=1e-6)
    beam = Beam([Spot(70.0, position_mm=(-2.0, 0.0, 20.0), direction=(1.0, 0.0, 0.0), sigma_mm=(1.0, 1.0))])
    x = blocks.axis_mm("x")
    r80 = []
    for geom in (fine, blocks):
        res = simulate(geom, beam, RunSettings(primaries=4000, seed=1, backend="cpu", threads=1), log=None)
        e = np.asarray(res.edep_mev_zyx, float)
        # the CT grid's last slice, in the blocks' 2 mm bins along x; the blocks' last block of slices
        idd = e[20].sum(axis=0).reshape(-1, 2).sum(axis=1) if geom is fine else e[-1].sum(axis=0)
        r80.append(M.range_metrics(x, idd)["R80"])
    assert 38.0 < r80[0] < 41.0 and abs(r80[1] - r80[0]) < 0.5, r80


@pytest.mark.parametrize("bad", [(0, 1, 1), (1, 2), (-1, 1, 1)])
def test_bad_factors_are_refused(bad):
    g = slab_phantom([("water", 4.0)], (4.0, 4.0), 1.0)
    with pytest.raises(ValueError, match="three integers >= 1"):
        resample_blocks(g, bad)


def test_range_through_unaligned_heterogeneities_is_kept():
    """A 150 MeV pencil beam through 12 pairs of 2 mm bone / 2 mm water, then lung and water: with 3 mm blocks
    along z most blocks mix bone and water.  R80 on 2 x 2 x 3 mm blocks equals R80 of the 1 mm grid's
    depth-dose averaged into the same 3 mm bins within 0.1 mm (measured -0.005 mm with two seeds; a
    mass-preserving average of the blocks moved R80 by -0.26 mm, which this test would catch).  The statistical
    sd of each R80 is ~0.03 mm: a false alarm needs a > 2.3 sd fluctuation of their difference (~1 %)."""
    from mcproton.run import simulate
    from mcproton.settings import RunSettings
    from mcproton.source import Beam
    from mcproton.validation import metrics as M

    layers = [("water", 10.0)] + [("bone_compact_icru", 2.0), ("water", 2.0)] * 12 + [("lung", 1.0), ("water", 121.0)]
    g = slab_phantom(layers, (40.0, 40.0), 1.0)
    c = resample_blocks(g, (2, 2, 3))
    beam = Beam.pencil(150.0, sigma_mm=(3.0, 3.0))
    r80 = []
    for geom in (g, c):
        res = simulate(geom, beam, RunSettings(primaries=20_000, seed=4, backend="cpu"))
        z, idd = (np.asarray(a, float) for a in res.integrated_depth_dose())
        if geom is g:   # the fine curve in the coarse bins (180 mm = 60 bins of 3 mm)
            z, idd = z.reshape(-1, 3).mean(1), idd.reshape(-1, 3).mean(1)
        r80.append(M.range_metrics(z, idd)["R80"])
    assert abs(r80[0] - r80[1]) < 0.1, r80


def test_config_dose_voxel_mm(tmp_path):
    """phantom.dose_voxel_mm on a CT: blocks of whole CT voxels; bad values and other phantom types refused."""
    from mcproton._io.ct import write_ct_series
    from mcproton.config import ConfigError, build_geometry

    hu = np.zeros((12, 20, 20), np.int16)
    hu[:, :, :10] = 1000
    write_ct_series(hu, (0.9766, 0.9766, 2.5), (-9.0, -9.0, 0.0), tmp_path / "ct")
    base = {"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}}
    fine = build_geometry(base)
    cfg = {"phantom": {**base["phantom"], "dose_voxel_mm": [2.0, 2.0, 2.5]}}
    g = build_geometry(cfg)
    assert g.shape_zyx == (12, 10, 10) and np.allclose(g.voxel_size_mm, (1.9532, 1.9532, 2.5))
    assert g.frame_of_reference_uid == fine.frame_of_reference_uid
    assert np.allclose(g.lower_corner_mm, fine.lower_corner_mm, atol=1e-4)
    for bad, msg in (([2.0, -1.0, 2.5], "positive"), ([1.5, 2.0, 2.5], "whole CT voxels")):
        with pytest.raises(ConfigError, match=msg):
            build_geometry({"phantom": {**base["phantom"], "dose_voxel_mm": bad}})
    with pytest.raises(ConfigError, match='type = "ct" only'):
        build_geometry({"phantom": {"type": "water", "dose_voxel_mm": 2.0}})


def test_a_partial_last_block_is_said_in_the_log(tmp_path, capsys):
    """mcproton run with phantom.dose_voxel_mm on a CT that is not a whole number of blocks (21 slices and 13
    columns of 1 mm in blocks of 2): one note says, per axis, how far the dose grid reaches past the CT's far face and
    that the last block takes the mean of its CT voxels; none where the blocks are whole (the 12 rows; a 20-slice,
    12-column CT).  Before 2026-12-07 (review 28b, R2) only the docs said so: the dose grid and its RT Dose reached a
    slice past the CT on one side without a word."""
    from mcproton._io.ct import write_ct_series
    from mcproton.config import build_geometry
    from mcproton.geometry import partial_block_note

    write_ct_series(np.zeros((21, 12, 13), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    write_ct_series(np.zeros((20, 12, 12), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "ct_whole")
    capsys.readouterr()
    g = build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct"), "dose_voxel_mm": [2.0, 2.0, 2.0]}})
    assert g.shape_zyx == (11, 6, 7)
    err = capsys.readouterr().err
    assert err.count("mcproton: note: phantom.dose_voxel_mm: the dose grid's blocks of 2 x 2 x 2 CT voxels reach "
                     "past the CT's far face along x by 1 mm (1 CT voxel: the CT's 13 columns are not a whole number "
                     "of blocks of 2; the grid ends at x = 13.5 mm, the CT at 12.5 mm); and along z by 1 mm (1 CT "
                     "voxel: the CT's 21 slices are not a whole number of blocks of 2; the grid ends at z = 21.5 mm, "
                     "the CT at 20.5 mm): the last block along each holds fewer CT voxels and takes their mean") \
        == 1, err
    assert "along y" not in err
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct_whole"), "dose_voxel_mm": [2.0, 2.0, 2.0]}})
    assert "blocks of" not in capsys.readouterr().err
    assert partial_block_note((21, 12, 12), (1, 1, 1), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)) == ""
    assert "along z by 4.5 mm (3 CT voxels: the CT's 5 slices" in partial_block_note((5, 4, 4), (2, 2, 4),
                                                                                       (1, 1, 1.5), (0, 0, 0))


def test_rtdose_on_the_coarse_grid(tmp_path, capsys):
    """`mcproton run --rtdose` with phantom.dose_voxel_mm writes the RT Dose on the blocks, in the CT's frame."""
    from mcproton._io.ct import write_ct_series
    from mcproton.cli import main
    from mcproton.dicom import load_ct_series, read_rtdose

    write_ct_series(np.zeros((20, 24, 24), np.int16), (1.0, 1.0, 2.0), (-11.5, -11.5, 0.0), tmp_path / "ct")
    cfg = tmp_path / "ct.toml"
    cfg.write_text('[run]\nprimaries = 2000\nbackend = "cpu"\n\n[phantom]\ntype = "ct"\nct_dir = "ct"\n'
                   'dose_voxel_mm = [2.0, 2.0, 4.0]\n\n[beam]\nenergy_mev = 60.0\nposition_mm = [0.0, 0.0, -5.0]\n'
                   'direction = [0.0, 0.0, 1.0]\nsigma_mm = [2.0, 2.0]\ntotal_protons = 1e9\n\n'
                   '[output]\nplot = false\n')
    rd = tmp_path / "RD.dcm"
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(rd), "--quiet"]) == 0
    capsys.readouterr()
    d = read_rtdose(rd)
    assert d.dose_gy_zyx.shape == (10, 12, 12) and np.allclose(d.voxel_size_mm, (2.0, 2.0, 4.0))
    assert np.allclose(d.origin_mm, (-11.0, -11.0, 1.0))     # centre of the first 2 x 2 x 2 block of CT voxels
    assert d.frame_of_reference_uid == load_ct_series(tmp_path / "ct").frame_of_reference_uid
    assert d.dose_gy_zyx.max() > 0


@pytest.mark.parametrize("factors", [(3, 2, 4), (4, 4, 2), (1, 1, 3)])
def test_resample_in_slabs_is_bitwise_the_whole_grid_at_once(factors, monkeypatch):
    """resample_blocks works in slabs of blocks along z (no float64 copy of the whole grid); its material and
    density are bitwise those of the whole grid at once (the formula of resample_blocks, written out here),
    with padding on every axis and many slabs."""
    import mcproton.geometry as geo
    from mcproton._physics.stopping import electronic_mass_stopping_power

    rng = np.random.default_rng(11)
    mats = ["air", "water", "soft_tissue", "cortical_bone"]
    shape = (13, 11, 10)
    g = geo.VoxelGeometry(rng.integers(0, 4, shape).astype(np.uint8),
                          rng.uniform(0.001, 2.0, shape).astype(np.float32), mats, (1.0, 1.2, 1.5),
                          (0.0, 0.0, 0.0))
    fx, fy, fz = factors
    nz, ny, nx = shape
    NZ, NY, NX = -(-nz // fz), -(-ny // fy), -(-nx // fx)
    pad = ((0, NZ * fz - nz), (0, NY * fy - ny), (0, NX * fx - nx))

    def blocks(a):
        return np.pad(a, pad).reshape(NZ, fz, NY, fy, NX, fx)

    rho = g.density_g_cm3_zyx.astype(np.float64)
    s = np.array([float(electronic_mass_stopping_power(m, geo.RESAMPLE_REFERENCE_ENERGY_MEV)) for m in mats])
    # the mean over each block's voxels of the grid (fewer than fx * fy * fz in the last block of a padded axis)
    lin = blocks(rho * s[g.material_index_zyx]).sum(axis=(1, 3, 5)) / blocks(np.ones(shape)).sum(axis=(1, 3, 5))
    want_mat = geo._heaviest_material(blocks(g.material_index_zyx), blocks(rho), len(mats))
    want_rho = np.where(lin > 0, lin / s[want_mat], 0.0).astype(np.float32)
    monkeypatch.setattr(geo, "_RESAMPLE_SLAB_VOXELS", 2 * fz * NY * fy * NX * fx)   # two block rows per slab
    got = geo.resample_blocks(g, factors)
    assert np.array_equal(got.material_index_zyx, want_mat)
    assert np.array_equal(got.density_g_cm3_zyx, want_rho)
    assert len(np.unique(want_mat)) > 1

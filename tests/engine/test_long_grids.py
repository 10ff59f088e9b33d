"""Navigation far from the grid's corner (the scale audit of 2026-12-06).

Positions are float32 cm from the grid's corner, and a track crossing a voxel face is pushed 1e-5 cm across it
(kernels/geometry/voxel_grid.h).  Beyond ~1 m that push is about one float32 ulp, and the rounding of the voxel index
(c * inv_v) undid it: a track crossing a face between two materials more than ~1.03 m up a grid stayed in the voxel
it left, took steps of length 0 until the step limit (200,000) and put all its energy there; and a beam entering
through the far face of a grid longer than ~2.56 m (1 mm slices; ~0.8 m at 3 mm) was counted as escaped, with no dose
and no error.  Long CTs (craniospinal, whole body) reach these lengths along z.  The dose must not depend on where
the patient lies in the grid: the same case at the corner and far from it deposits the same energy."""
from __future__ import annotations

import numpy as np
import pytest

import mcproton as mcp
from mcproton.geometry import VoxelGeometry
from mcproton.materials import get_material


def _slabs(length_mm: float, vz: float) -> VoxelGeometry:
    """A 4 x 4 mm column of length_mm along z whose last 150 mm alternate water / muscle slice by slice: every step
    of a track there ends on a face between two materials."""
    nz = int(round(length_mm / vz))
    mat = np.zeros((nz, 10, 10), np.uint8)
    mat[nz - int(150 / vz):][1::2] = 1
    dens = np.where(mat == 0, 1.0, 1.05).astype(np.float32)
    return VoxelGeometry(mat, dens, [get_material("water"), get_material("muscle_skeletal")], (4.0, 4.0, vz),
                         origin_mm=(-18.0, -18.0, vz / 2))


def _down(geom, length_mm: float, n: int = 200):
    beam = mcp.Beam.pencil(100.0, position_mm=(0.0, 0.0, length_mm + 20.0), direction=(0.0, 0.0, -1.0),
                           sigma_mm=(3.0, 3.0))
    return mcp.simulate(geom, beam, mcp.RunSettings(primaries=n, seed=1, threads=2, batches=10), log=None)


@pytest.mark.parametrize("vz, short_mm, long_mm", [(1.0, 400.0, 1060.0), (3.0, 399.0, 1500.0)])
def test_tracks_cross_material_faces_far_up_a_long_grid(vz, short_mm, long_mm):
    """Before: at 1.06 m (1 mm slices) and 1.5 m (3 mm) every track was stuck at its first face (errors = primaries,
    200,000 steps each, all the energy in the entry slice).  The same histories, at the corner of a short grid and
    far up a long one, now take the same steps and deposit the same energy (to float32 rounding of positions)."""
    near, far = _down(_slabs(short_mm, vz), short_mm), _down(_slabs(long_mm, vz), long_mm)
    assert far.ledger["errors"] == 0 and near.ledger["errors"] == 0
    assert far.ledger["steps"] == pytest.approx(near.ledger["steps"], rel=0.02)
    e_near, e_far = (float(np.asarray(r.edep_mev_zyx).sum()) for r in (near, far))
    assert e_far == pytest.approx(e_near, rel=0.005) and e_near > 90.0    # MeV per primary of 100 MeV
    # the depth-dose below the entry face: the same curve (the peak ~75 mm deep)
    idd_near = np.asarray(near.edep_mev_zyx).sum(axis=(1, 2))[::-1][: int(150 / vz)]
    idd_far = np.asarray(far.edep_mev_zyx).sum(axis=(1, 2))[::-1][: int(150 / vz)]
    assert int(np.argmax(idd_far)) == int(np.argmax(idd_near))


@pytest.mark.parametrize("vz, length_mm", [(1.0, 2600.0), (3.0, 801.0)])
def test_a_beam_entering_through_the_far_face_of_a_long_grid_enters(vz, length_mm):
    """Before: 2.6 m of 1 mm slices, or 0.8 m of 3 mm slices: every primary was counted as escaped at the entry face
    (0 MeV deposited, no error, no warning)."""
    geom = mcp.box_phantom("water", size_mm=(40.0, 40.0, length_mm), voxel_mm=(4.0, 4.0, vz))
    r = _down(geom, length_mm)
    deposited = float(np.asarray(r.edep_mev_zyx).sum())        # MeV per primary
    assert deposited > 90.0 and r.ledger["errors"] == 0, (deposited, r.ledger)

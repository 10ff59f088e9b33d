"""Slab phantoms as DICOM CT with an exact HU calibration (mcproton/_io/slab_ct.py, phantom.type = "slab_ct")."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._io.slab_ct import AIR_HU, slab_calibration, slab_ct, slab_ct_geometry
from mcproton.materials import get_material

LAYERS = [("solid_water", 20.0, 1.032), ("pmma", 5.0), ("solid_water", 180.0, 1.032)]


def test_calibration_is_exact():
    sw, pm = get_material("solid_water"), get_material("pmma")
    cal, codes = slab_calibration([(sw, 1.032), (pm, 1.19), (sw, 1.032), (get_material("water"), 1.0)])
    assert codes == [32, 190, 32, 0]
    rho = cal.density_from_hu([AIR_HU, 32, 190, 0])
    assert np.array_equal(rho, np.float32([get_material("air").density_g_cm3, 1.032, 1.19, 1.0]))  # exact (float32)
    mats = [cal.materials[i] for i in cal.material_index_from_hu([AIR_HU, 32, 190, 0])]
    assert [m.name for m in mats] == ["air", sw.name, "pmma", "water"]
    assert mats[1].mass_fractions == sw.mass_fractions and mats[2].i_value_ev == pm.i_value_ev
    # two densities of one material, and a collision of HU codes, stay distinct
    cal2, codes2 = slab_calibration([(sw, 1.032), (sw, 1.0325), (get_material("water"), 1.032)])
    assert len(set(codes2)) == 3
    assert cal2.density_from_hu(codes2).tolist() == pytest.approx([1.032, 1.0325, 1.032], abs=1e-7)


@pytest.mark.parametrize("axis", ["+y", "-x", "+z"])
def test_layers_in_place(axis):
    surf = (3.0, -102.5, 7.0)
    s = slab_ct(LAYERS, surface_mm=surf, depth_axis=axis, lateral_size_mm=(40, 40), voxel_mm=(1.0, 1.0, 1.0),
                air_mm=10)
    k, sign = "xyz".index(axis[1]), (1 if axis[0] == "+" else -1)
    pos = s.origin_mm[k] + np.arange(s.hu_zyx.shape[2 - k])
    idx = [0, 0, 0]
    idx[2 - k] = slice(None)
    col = s.hu_zyx[tuple(idx)]
    depth = sign * (pos - surf[k])
    assert np.all(col[depth < 0] == AIR_HU) and np.sum(depth < 0) == 10
    assert np.all(col[(depth > 20) & (depth < 25)] == 190)
    assert np.all(col[(depth > 0) & (depth < 20)] == 32) and np.all(col[depth > 25] == 32)
    assert depth.max() == pytest.approx(204.5)
    for a in range(3):   # lateral extent centred on the surface point
        if a != k:
            p = s.origin_mm[a] + np.arange(s.hu_zyx.shape[2 - a])
            assert p.mean() == pytest.approx(surf[a])


def test_geometry_through_dicom(tmp_path):
    g = slab_ct_geometry(LAYERS, surface_mm=(0, -102.5, 0), depth_axis="+y", lateral_size_mm=(40, 40),
                         voxel_mm=(4, 1, 4), air_mm=5, ct_dir=tmp_path / "ct")
    assert len(list((tmp_path / "ct").glob("CT_*.dcm"))) == 10
    assert g.frame_of_reference_uid and g.shape_zyx == (10, 210, 10)
    y = g.axis_mm("y")
    col = g.density_g_cm3_zyx[5, :, 5]
    assert np.array_equal(col[(y > -82.5) & (y < -77.5)], np.full(5, 1.19, np.float32))
    assert np.all(col[(y > -102.5) & (y < -82.5)] == np.float32(1.032))
    names = [g.materials[i].name for i in g.material_index_zyx[5, :, 5]]
    assert names[0] == "air" and names[-1].startswith("solid_water") and "pmma" in names


def test_errors():
    with pytest.raises(ValueError, match="whole number"):
        slab_ct([("water", 2.5)], voxel_mm=1.0)
    with pytest.raises(ValueError, match="depth_axis"):
        slab_ct([("water", 2.0)], depth_axis="y")


def test_config_slab_ct():
    from mcproton.config import build_geometry, load_config

    cfg = load_config(None, ['phantom.type="slab_ct"', 'phantom.depth_axis="-z"', "phantom.surface_mm=[0,0,50]",
                             "phantom.lateral_size_mm=[20,20]", "phantom.voxel_mm=[2,2,1]",
                             'phantom.layers=[{material="water", thickness_mm=10}]'])
    g = build_geometry(cfg)
    z = g.axis_mm("z")
    assert z.min() == pytest.approx(40.5) and z.max() == pytest.approx(49.5)


def test_a_slab_phantom_built_for_a_plan_lies_in_the_plans_frame(recwarn):
    """The slabs are placed in the plan's patient coordinates (phantom.surface_mm): the phantom's CT (and so its RT
    Dose) is written in the plan's FrameOfReferenceUID, so that a planning system overlays them, and simulate() of
    the plan's beams on it says nothing of another frame (the validation's dcpt_plan02 did, 2026-12-05, when the
    slab CT had a frame of its own)."""
    from pathlib import Path

    import mcproton as mcp
    from mcproton.config import build_beams, build_geometry, load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "validation" / "dcpt_plan02" / "plan02.toml")
    g, beam = build_geometry(cfg), build_beams(cfg)[0]
    assert g.frame_of_reference_uid == beam.meta["frame_of_reference_uid"] != ""
    mcp.simulate(g, beam, mcp.RunSettings(primaries=200, batches=2, backend="cpu", threads=1))
    assert not [w for w in recwarn if "FrameOfReferenceUID" in str(w.message)]

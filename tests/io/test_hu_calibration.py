"""HU calibrations: Schneider 2000 (default), MCsquare scanners, user files, inverse and CT round trip."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._io.ct import load_ct_series, write_ct_series
from mcproton._io.errors import CalibrationError
from mcproton._io.hu_calibration import HUCalibration
from mcproton.geometry import VoxelGeometry


def test_schneider_bins_and_fits():
    c = HUCalibration.load()
    assert c.name == "schneider2000" and len(c.materials) == 24
    # Schneider 2000 fits: 1.018 + 0.893e-3 H (-98..14), 1.03 (15..22), 1.003 + 1.169e-3 H (23..100),
    # 1.017 + 0.592e-3 H (>= 101)
    h = np.array([-50.0, 0.0, 18.0, 50.0, 100.0, 101.0, 1000.0])
    expect = [1.018 - 0.893e-3 * 50, 1.018, 1.03, 1.003 + 1.169e-3 * 50, 1.003 + 0.1169, 1.017 + 0.0592 * 1.01,
              1.017 + 0.592]
    np.testing.assert_allclose(c.density_from_hu(h), expect, rtol=1e-5)
    assert c.density_from_hu(-3000) == pytest.approx(0.00121)
    names = [m.name for m in c.materials]
    assert names[0].endswith("Air") and names[7].endswith("SoftTissus") and names[-1].endswith("Marrow_Bone15")
    for m in c.materials:
        assert sum(m.mass_fractions.values()) == pytest.approx(1.0)
    # bin boundaries (lower bound inclusive): -121 lung, -120 adipose 1, 1500 bone 15
    idx = c.material_index_from_hu([-2000, -951, -950, -121, -120, 19, 1499, 1500, 4000])
    assert idx.tolist() == [0, 0, 1, 1, 2, 7, 22, 23, 23]
    bone = c.materials[23].mass_fractions
    assert bone["Ca"] == pytest.approx(0.225) and bone["P"] == pytest.approx(0.103)


@pytest.mark.parametrize("name", ["schneider2000", "mcsquare_default", "mcsquare_matrad_water"])
def test_inverse_round_trip(name):
    c = HUCalibration.load(name)
    hu = np.linspace(-1000, 3000, 40001)
    rho = c.density_from_hu(hu).astype(float)
    back = c.density_from_hu(c.hu_from_density(rho))
    assert np.abs(back - rho).max() <= c.density_resolution + 1e-6


def test_inverse_prefers_lowest_hu_on_non_monotonic_curve():
    c = HUCalibration.load()
    h = c.hu_from_density(1.10)  # reachable on the soft-tissue (23..100) and on the bone (>= 101) line
    assert 23 <= h <= 100


def test_ct_round_trip_to_geometry(tmp_path):
    c = HUCalibration.load()
    rho = np.array([0.0012, 0.26, 0.95, 1.0, 1.04, 1.09, 1.3, 1.6, 1.92], dtype=float)
    dens = np.broadcast_to(rho[None, None, :], (3, 2, rho.size)).copy()
    hu = c.hu_from_density(dens)
    write_ct_series(hu, (2.0, 2.0, 3.0), (-8.0, -1.0, 0.0), tmp_path)
    geo = c.to_geometry(load_ct_series(tmp_path))
    assert isinstance(geo, VoxelGeometry)
    assert geo.voxel_size_mm == (2.0, 2.0, 3.0) and geo.origin_mm == (-8.0, -1.0, 0.0)
    assert np.abs(geo.density_g_cm3_zyx - dens).max() <= c.density_resolution
    names = [geo.materials[i].name for i in geo.material_index_zyx[0, 0]]
    assert names[0].endswith("Air") and names[1].endswith("Lung") and names[-1].startswith("schneider2000_Marrow")
    compact = c.to_geometry(load_ct_series(tmp_path), compact=True)
    assert len(compact.materials) < len(c.materials)
    assert [compact.materials[i].name for i in compact.material_index_zyx[0, 0]] == names


def test_mcsquare_default_scanner():
    c = HUCalibration.load("mcsquare_default")
    np.testing.assert_allclose(c.density_from_hu([-1000, 0, 1565, 3000]), [0.001, 1.0, 1.825, 1.825], rtol=1e-6)
    assert c.materials[c.material_index_from_hu(0)].name == "mcsquare_Schneider_AT_AG_SI4"


def test_mcsquare_scanner_folder(tmp_path):
    (tmp_path / "HU_Density_Conversion.txt").write_text(
        "# ===================\n# HU\tdensity g/cm3\n# ===================\n-1000\t0.001\n0\t1.0\n1000\t1.6\n")
    (tmp_path / "HU_Material_Conversion.txt").write_text(
        "# ===================\n# HU\tMaterial label\n# ===================\n\n-1050\t13\t# Air\n-200\t17\t# Water\n"
        "300\t38 # Bone_Cortical\n")
    c = HUCalibration.load(tmp_path)
    assert c.density_from_hu(500) == pytest.approx(1.3)
    assert [m.name for m in c.materials] == ["mcsquare_Air", "mcsquare_Water", "mcsquare_Bone_Cortical"]
    assert c.materials[1].mass_fractions["H"] == pytest.approx(0.111894)


def test_user_composition_csv(tmp_path):
    (tmp_path / "hu_density.csv").write_text("# my scanner\nHU,density_gcm3\n-1000,0.0012\n0,1.0\n2000,2.0\n")
    (tmp_path / "hu_materials.csv").write_text(
        "hu_lo,name,w_H,w_O,w_C,w_Ca\n-1000,air_like,0,0.3,0.7,0\n-100,water,11.19,88.81,0,0\n300,bone,3.4,43.5,30,23.1\n")
    c = HUCalibration.load(tmp_path)
    assert [m.name for m in c.materials] == ["air_like", "water", "bone"]
    assert c.materials[1].mass_fractions["H"] == pytest.approx(0.1119)


@pytest.mark.parametrize("dens,mat,match", [
    ("HU,density_gcm3\n0,1.0\n-100,0.9\n", None, "increase"),
    ("HU,density_gcm3\n0,1.0\n", None, "two"),
    ("HU,density_gcm3\n0,1.0\n100,abc\n", None, "not 'HU density'"),
    ("HU,density_gcm3\n0,1.0\n100,1000\n", None, "0..25"),
    (None, "hu_lo,name,w_H,w_Xx\n0,a,0.5,0.5\n", "element"),
    (None, "hu_lo,name,w_H,w_O\n0,a,0.5,0.2\n", "sum"),
    (None, "-1000 999\n", "not in the MCsquare"),
    # a material's density that is not a number: named with the file and row (it was a bare ValueError)
    (None, "hu_lo,name,density_gcm3,w_H,w_O\n-1000,water,1.0o,0.111,0.889\n", r"row 1 density_gcm3 '1.0o' is not a"),
])
def test_bad_calibration_files(tmp_path, dens, mat, match):
    d = tmp_path / "hu_density.csv"
    m = tmp_path / "hu_materials.csv"
    d.write_text(dens or "HU,density_gcm3\n-1000,0.001\n0,1\n")
    m.write_text(mat or "hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
    with pytest.raises(CalibrationError, match=match):
        HUCalibration.from_files(d, m)


def test_unknown_name():
    with pytest.raises(CalibrationError, match="unknown calibration"):
        HUCalibration.load("no_such_scanner")


def test_ct_numbers_beyond_the_calibration_are_reported(tmp_path, capsys):
    """HU above the end of the calibration curve (metal) get its last density: the run says so."""
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    hu = np.zeros((6, 8, 8))
    hu[2, 3:5, 3:5] = 8000          # a titanium clip in an extended-HU CT
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}})
    err = capsys.readouterr().err
    assert "4 CT voxels" in err and "8000 HU" in err and "3072 HU" in err and "metal" in err, err
    hu[2] = 0
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct2")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct2")}})
    assert "warning" not in capsys.readouterr().err


def test_ct_numbers_beyond_the_calibration_are_reported_by_the_check_too(tmp_path, capsys):
    """`mcproton check` builds its geometry from the CT by itself (on the TPS grid's blocks): metal above the end
    of the calibration is reported there too.  Before: silently given the last density (2.84 g/cm3 bone for
    schneider2000, titanium is 4.5) in the check, with the warning in `mcproton run` only."""
    from mcproton._check.compute import build_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.dicom import write_ct_series

    hu = np.zeros((6, 8, 8))
    hu[2, 3:5, 3:5] = 8000          # a titanium clip in an extended-HU CT
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (2.0, 2.0, 4.0), (0.5, 0.5, 1.0), "", "PHYSICAL", "PLAN", None)
    build_geometry(tmp_path / "ct", "schneider2000", grid)
    err = capsys.readouterr().err
    assert "4 CT voxels" in err and "8000 HU" in err and "3072 HU" in err and "metal" in err, err
    hu[2] = 3000                     # dense bone, within the curve: nothing to say
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct2")
    build_geometry(tmp_path / "ct2", "schneider2000", grid)
    assert "warning" not in capsys.readouterr().err


# A density table whose header names another quantity or unit than the mass density in g/cm3 was read as g/cm3
# density, column by column (the header was skipped unread): a stopping-power-ratio or relative-electron-density
# table (values near the mass density, 1.0 at 0 HU) gave a dose off by a few per cent without a word.
@pytest.mark.parametrize("header,values,match", [
    ("HU,relative_stopping_power", "-1000,0.001\n0,1.0\n1500,1.8\n", "stopping-power ratio"),
    ("HU,SPR", "-1000,0.001\n0,1.0\n1500,1.8\n", "stopping-power ratio"),
    ("HU;RED", "-1000;0.001\n0;1.0\n1500;1.7\n", "relative electron density"),
    ("CT number,relative electron density", "-1000,0.001\n0,1.0\n1500,1.7\n", "relative electron density"),
    ("HU,density_mg_cm3", "-1000,1.2\n0,10\n1500,18\n", "mg/cm3"),
    ("HU,density_kg_m3", "-1000,1.2\n0,10\n1500,18\n", "kg/m3"),
    ("density_gcm3,HU", "0.001,-1000\n1.0,0\n1.8,1500\n", "swapped"),
    ("HU,value", "-1000,0.001\n0,1.0\n1500,1.8\n", "does not say"),
])
def test_density_header_of_another_quantity_or_unit_is_refused(tmp_path, header, values, match):
    d, m = tmp_path / "hu_density.csv", tmp_path / "hu_materials.csv"
    d.write_text(f"# a scanner\n{header}\n{values}")
    m.write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
    with pytest.raises(CalibrationError, match=match) as e:
        HUCalibration.from_files(d, m)
    assert str(d) in str(e.value) and "density_gcm3" in str(e.value)   # the file and the header it wants


@pytest.mark.parametrize("header", ["HU,density_gcm3", "HU,density_g_cm3", "HU;Density", "HU density [g/cm3]",
                                    "CT number,mass density (g/cm3)", "hu,rho_gcm3"])
def test_density_headers_of_mass_density_are_read(tmp_path, header):
    sep = ";" if ";" in header else ","
    d, m = tmp_path / "hu_density.csv", tmp_path / "hu_materials.csv"
    d.write_text(f"{header}\n-1000{sep}0.001\n0{sep}1.0\n1000{sep}1.6\n")
    m.write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
    assert HUCalibration.from_files(d, m).density_from_hu(500) == pytest.approx(1.3)


# A table written with decimal commas (a European spreadsheet's CSV export, ';' between the columns) was split at
# every comma and read as 'HU density' from the first two numbers: 0;1,0 -> (0, 1.0) by luck, 3000;2,8 ->
# (3000, 2.0) and -1000;0,00121 -> (-1000, 0.0): a plausible curve with the bone densities wrong.
@pytest.mark.parametrize("table", ["HU;density_gcm3\n-1000;0,00121\n0;1,0\n3000;2,8\n",
                                   "-1000\t0,00121\n0\t1,0\n3000\t2,8\n",
                                   "HU,density_gcm3,note\n-1000,0.00121,1\n0,1.0,2\n3000,2.8,3\n"])
def test_density_rows_of_more_than_two_numbers_are_refused(tmp_path, table):
    d, m = tmp_path / "hu_density.csv", tmp_path / "hu_materials.csv"
    d.write_text(table)
    m.write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
    with pytest.raises(CalibrationError, match=r"line \d+: .* holds 3 numbers.*decimal comma"):
        HUCalibration.from_files(d, m)


def test_density_rows_with_comments_and_semicolons_are_read(tmp_path):
    d, m = tmp_path / "HU_Density_Conversion.txt", tmp_path / "hu_materials.csv"
    d.write_text("# HU density g/cm3\n-1000;0.001  # air\n0;1.0\n3000;2.8 # bone, 3 g\n")
    m.write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
    np.testing.assert_allclose(HUCalibration.from_files(d, m).density_from_hu([-1000, 0, 3000]), [0.001, 1.0, 2.8],
                               rtol=1e-6)

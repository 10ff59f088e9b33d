"""HU calibrations: Schneider 2000 (default), MCsquare scanners, user files, inverse and CT round trip."""
from __future__ import annotations

from pathlib import Path

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
    # a material's density that is not a number: named with the file and line (it was a bare ValueError)
    (None, "hu_lo,name,density_gcm3,w_H,w_O\n-1000,water,1.0o,0.111,0.889\n", r"line 2: density_gcm3 '1.0o' is not a"),
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


def test_ct_numbers_beyond_the_calibration_are_reported(tmp_path, capsys, warnings_to_stderr):
    """HU above the end of the calibration curve (metal) get its last density: the run says so."""
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    hu = np.full((6, 8, 8), 40.0)   # soft tissue (a water box at 0 HU: a water phantom, warned about, ctcal F2)
    hu[:, 0, :] = -1000             # air in front, as every scan has (a CT without air is warned about)
    hu[2, 3:5, 3:5] = 8000          # a titanium clip in an extended-HU CT
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}})
    err = capsys.readouterr().err
    assert "4 CT voxels" in err and "8000 HU" in err and "3072 HU" in err and "metal" in err, err
    assert "(0.008 cm3, up to 8000 HU; x 3..4, y 3..4, z 4 mm) lie above the end" in err, err   # where (F7)
    # what to do: an override, or a calibration whose curve and material bins both cover them (metal audit
    # 2026-12-06, F1: "a calibration that covers them" led to a curve extended to metal beside tissue bins)
    assert "struct_overrides" in err and "density curve and material bins both cover them" in err, err
    assert "a metal bin in hu_materials.csv" in err, err
    hu[2] = 40
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct2")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct2")}})
    assert "warning" not in capsys.readouterr().err


def test_metal_clipped_at_the_top_of_a_12_bit_ct_is_reported(tmp_path, capsys, warnings_to_stderr):
    """Paediatric audit 2026-12-05, F2: a 12-bit CT clips metal to 3071 HU (stored 4095, intercept -1024), inside
    schneider2000's curve (to 3072 HU), so a titanium rod was given bone of 2.84 g/cm3 (SPR 2.51,
    titanium 3.23) without a word: voxels at such a value, when it is the CT's highest, are now named as clipped,
    with the density and SPR they were given and the override to use.  Dense bone below it (3000 HU), the curve's
    end (3072), and 3071 in an extended-scale CT (values up to 8000: not clipped there) say no such thing."""
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    def said(v, extra=None):
        hu = np.zeros((6, 8, 8))
        hu[:, 0, :] = -1000
        hu[2, 3:5, 3:5] = v
        if extra is not None:
            hu[4, 3, 3] = extra
        d = tmp_path / f"ct{v}_{extra}"
        write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), d)
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(d)}})
        return capsys.readouterr().err

    err = said(3071)
    # where they lie (highZ audit 2026-12-06, F7: a patient with a rod, dental work and a clip could not tell which)
    assert ("4 CT voxels (0.008 cm3; x 3..4, y 3..4, z 4 mm) are at 3071 HU, the CT's highest value and the top of a "
            "12-bit CT scale" in err
            and "struct_overrides" in err and "lie above the end" not in err), err
    assert "2.84 g/cm3" in err and "stopping-power ratio 2.51" in err and "intercept -1024" in err, err
    for quiet, extra in ((3000, None), (3072, None), (3071, 8000)):
        err = said(quiet, extra)
        assert "12-bit" not in err, err
        assert ("lie above the end" in err) == (extra is not None), err


def test_ct_numbers_beyond_the_calibration_are_reported_by_the_check_too(tmp_path, capsys, warnings_to_stderr):
    """`mcproton check` builds its geometry from the CT by itself (on the TPS grid's blocks): metal above the end
    of the calibration is reported there too.  Before: silently given the last density (2.84 g/cm3 bone for
    schneider2000, titanium is 4.5) in the check, with the warning in `mcproton run` only."""
    from mcproton._check.compute import build_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.dicom import write_ct_series

    hu = np.full((6, 8, 8), 40.0)   # soft tissue (a water box at 0 HU: a water phantom, warned about, ctcal F2)
    hu[:, 0, :] = -1000             # air in front, as every scan has (a CT without air is warned about)
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


def test_values_beyond_an_spr_map_calibration_are_named_as_spr_map_values(tmp_path, capsys, warnings_to_stderr):
    """With the SPR-map calibration dcpt_spr_brain the CT values are 1000 x (SPR - 1): the warning gives them as
    values and SPR, not as HU of an "HU calibration" (audit 2026-12-05: "up to 2165 HU ... above the end of the HU
    calibration 'dcpt_spr_brain'")."""
    from mcproton._check.compute import build_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.dicom import write_ct_series

    hu = np.zeros((6, 8, 8))
    hu[0] = -1000                   # air (a CT without any is warned about)
    hu[2, 3:5, 3:5] = 2165          # SPR 3.165: titanium
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (2.0, 2.0, 4.0), (0.5, 0.5, 1.0), "", "PHYSICAL", "PLAN", None)
    build_geometry(tmp_path / "ct", "dcpt_spr_brain", grid, given=True)
    err = capsys.readouterr().err
    assert ("4 CT voxels (0.008 cm3, values up to 2165, SPR 3.17; x 3..4, y 3..4, z 4 mm) lie above the end of the "
            "SPR-map calibration "
            "'dcpt_spr_brain (HU-SPR at 100 MeV)' (value 2000, SPR 3.00) and were given its last density") in err, err
    line = next(x for x in err.splitlines() if "CT voxels" in x)
    assert "HU" not in line.split("lie above")[0] and "metal" in line


def _titanium_override(path, roi: str) -> None:
    """ROI ``roi`` of the RT Struct at ``path`` overridden to titanium (4.5 g/cm3), as RayStation writes it."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(path)
    num = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == roi)
    obs = next(o for o in ds.RTROIObservationsSequence if int(o.ReferencedROINumber) == num)
    pp, el = Dataset(), Dataset()
    pp.ROIPhysicalProperty, pp.ROIPhysicalPropertyValue = "REL_MASS_DENSITY", 4.5
    el.ROIElementalCompositionAtomicNumber, el.ROIElementalCompositionAtomicMassFraction = 22, 1.0
    pp.ROIElementalCompositionSequence = Sequence([el])
    obs.ROIPhysicalPropertiesSequence = Sequence([pp])
    ds.save_as(path)


def test_clipped_metal_that_the_structure_set_overrides_is_not_reported(tmp_path, capsys, warnings_to_stderr):
    """CT audit 2026-12-05, F6: metal clipped at 3071 HU (or above the curve's end), contoured and overridden to
    titanium in the RT Struct, was still reported as given bone of 2.84 g/cm3 ("contour the metal and override its
    density"), in the run's summary and HDF5 and in the check: the record of a correctly handled patient said its
    dose was wrong.  The voxels are now counted after the overrides: none left, no warning; some left, those (of
    how many).  `mcproton run` (on the CT's voxels and on blocks of them) and `mcproton check` alike."""
    from dicom_factories import make_rtstruct, rect_contour

    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton._io.roi_overrides import apply_overrides
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (2.0, 2.0, 4.0), (0.5, 0.5, 1.0), "", "PHYSICAL", "PLAN", None)
    for v, said in ((3071, "are at 3071 HU"), (8000, "lie above the end of the HU calibration")):
        hu = np.zeros((6, 8, 8))
        hu[:, 0, :] = -1000
        hu[2, 3:5, 3:5] = v                      # a plate: 4 voxels, centres x, y = 3, 4 mm, z = 4 mm
        ct = tmp_path / f"ct{v}"
        write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), ct)
        for name, x1, left in (("whole", 4.5, 0), ("half", 3.5, 2), ("none", None, 4)):
            rs = tmp_path / f"RS_{v}_{name}.dcm"
            rois = {"plate": [rect_contour(2.5, x1 if x1 else 4.5, 2.5, 4.5, 4.0)]}
            make_rtstruct(rois).save_as(rs, enforce_file_format=True)
            if x1:
                _titanium_override(rs, "plate")
            for dose_voxel in (None, [2.0, 2.0, 2.0]):   # on the CT's voxels, and on blocks of them
                ph = {"type": "ct", "ct_dir": str(ct)}
                if dose_voxel:
                    ph["dose_voxel_mm"] = dose_voxel
                build_geometry({"phantom": ph, "plan": {"rtstruct": str(rs)}})
                err = capsys.readouterr().err
                assert (said in err) == bool(left), (v, name, err)
                if left:
                    assert f"{left} CT voxels" in err, err
                assert ("(of 4: the structure set's overrides replaced the others)" in err) == (left == 2), err

            def hook(g, rs=rs):
                apply_overrides(g, rs)

            check_geometry(ct, "schneider2000", grid, at_ct_resolution=hook)
            err = capsys.readouterr().err
            assert (said in err) == bool(left), (v, name, err)
            assert ("(of 4: the structure set's overrides replaced the others)" in err) == (left == 2), err


def _calibration(folder, table: str, materials: str = "hu_lo,name,w_H,w_O\n-1000,water,0.111894,0.888106\n"):
    """A calibration folder: ``table`` as hu_density.csv (header HU,density_gcm3) or hu_spr.csv (HU,SPR)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ("hu_spr.csv" if table.startswith("HU,SPR") else "hu_density.csv")).write_text(table)
    (folder / "hu_materials.csv").write_text(materials)
    return folder


def _head_ct(path, padding: float | None = None, low: float = -1000.0):
    """A small CT: soft tissue (40 HU; water at 0 HU would be a water phantom read with a tissue calibration, warned
    about: ctcal audit F2) with ``low`` (air) around it, and ``padding`` outside the field of view (corners)."""
    from mcproton.dicom import write_ct_series

    hu = np.full((4, 10, 10), low)
    hu[:, 3:7, 3:7] = 40.0
    if padding is not None:
        hu[:, :2, :2] = padding
    write_ct_series(hu, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), path)
    return path


@pytest.mark.parametrize("table", ["HU,density_gcm3\n-98,0.93\n14,1.03\n1500,1.905\n",
                                   "HU,SPR\n-98,0.95\n14,1.03\n1500,1.85\n"])
def test_a_calibration_that_does_not_reach_air_is_refused(tmp_path, table, capsys, warnings_to_stderr):
    """CT audit 2026-12-05, F5: a calibration whose first point is -98 HU (a tissue-only table, or an export that
    lost the air and lung rows) gave every lower CT value its first density: the air around a head became 0.93
    g/cm3, the CTV dose -39 %, the range 16 mm shallower, and the only warning blamed the CT's extent ("enters the
    patient at the edge of the CT grid").  Air given a tissue's density is never wanted: `mcproton run` and
    `mcproton check` refuse it, with the voxels, the curve's first point and what to give."""
    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import CheckInputError, TPSDose
    from mcproton.config import ConfigError, build_geometry

    ct = _head_ct(tmp_path / "ct", padding=-3024.0)
    cal = _calibration(tmp_path / "cal", table)
    with pytest.raises(ConfigError) as e:
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(cal)}})
    msg = str(e.value)
    # 4 x (100 - 16) voxels of 8 mm3 below -98 HU, all air or padding
    assert "336 CT voxels (2.7 cm3, values down to -3024 HU) lie below the first point of the HU calibration" in msg
    assert "(-98 HU: 0.9" in msg and "the calibration does not reach air; 336 of them lie below -500 HU" in msg
    assert "the scanner's padding" in msg and "give phantom.calibration a calibration whose first point is air" in msg
    grid = TPSDose("RD.dcm", np.zeros((2, 5, 5)), (4.0, 4.0, 4.0), (1.0, 1.0, 1.0), "", "PHYSICAL", "PLAN", None)
    with pytest.raises(CheckInputError, match="give --calibration a calibration whose first point is air"):
        check_geometry(ct, cal, grid)
    # the same CT with a curve that reaches air, whatever lies below it (the scanner's padding): nothing to say
    for air in ("HU,density_gcm3\n-1000,0.0012\n-98,0.93\n14,1.03\n1500,1.905\n",
                "HU,SPR\n-1000,0.001\n-98,0.95\n14,1.03\n1500,1.85\n"):
        ok = _calibration(tmp_path / f"ok{len(air)}", air)
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(ok)}})
        check_geometry(ct, ok, grid)
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct)}})   # schneider2000, from -1000 HU
    assert "warning" not in capsys.readouterr().err


def test_ct_values_below_a_calibration_without_air_but_not_air_are_warned_about(tmp_path, capsys, warnings_to_stderr):
    """A CT without air (a synthetic one, warned about as such) whose lowest values lie below a curve that starts at
    a tissue's density: those voxels (fat here) take the first density, which is said, but nothing is refused."""
    from mcproton.config import build_geometry

    ct = _head_ct(tmp_path / "ct", low=-200.0)
    cal = _calibration(tmp_path / "cal", "HU,density_gcm3\n-98,0.93\n14,1.03\n1500,1.905\n")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(cal)}})
    err = capsys.readouterr().err
    assert ("336 CT voxels (2.7 cm3, values down to -200 HU) lie below the first point of the HU calibration 'cal' "
            "(-98 HU: 0.93 g/cm3") in err and "their stopping power is too high" in err, err


def test_ct_values_below_the_first_material_bin_are_warned_about(tmp_path, capsys, warnings_to_stderr):
    """CT audit 2026-12-05, F5 (minor): material bins whose first lower bound (-120 HU, fat) lies above the CT's lung
    gave lung the first bin's composition at its own density ("HU below the first bound -> bin 0"), silently.  Said
    now for the voxels denser than air-like (the lung); air itself, at 0.0012 g/cm3, is not counted."""
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    ct = tmp_path / "ct"
    hu = np.full((4, 10, 10), -1000.0)
    hu[:, 3:7, 3:7] = 40.0                   # soft tissue (0 HU: a water phantom, warned about, ctcal F2)
    hu[:, 4:6, 4:6] = -700.0                 # lung: 16 voxels
    write_ct_series(hu, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), ct)
    dens = "HU,density_gcm3\n-1000,0.0012\n0,1.0\n1500,1.9\n"
    head, air, fat = ("hu_lo,name,w_H,w_C,w_N,w_O,w_Ar\n", "-1000,air,0,0.000124,0.755268,0.231781,0.012827\n",
                      "-120,fat,0.114,0.598,0.007,0.281,0\n")
    cal = _calibration(tmp_path / "cal", dens, head + fat)
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(cal)}})
    err = capsys.readouterr().err
    assert ("16 CT voxels (0.13 cm3, denser than 0.1 g/cm3) lie below the first material bin of the HU calibration "
            "'cal' (-120 HU, 'fat') and were given its composition") in err, err
    ok = _calibration(tmp_path / "ok", dens, head + air + fat)
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(ok)}})
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


# A planning system's HU -> SPR table exported as bare numbers (or pasted without its header row) and saved as
# hu_density.csv was read as mass densities without a word: bone at 1200 HU got SPR 1.40 instead of 1.55 (its SPR
# read as a density, and bone stops 0.88-0.91 as much as water per gram), soft tissue within 0.2 %: a plausible dose
# (audit 2026-12-07, ctcal F3).  mcproton's CSV tables must start with their header; MCsquare's text has none.
@pytest.mark.parametrize("fname,header,other", [("hu_density.csv", "HU,density_gcm3", "hu_spr.csv"),
                                                ("hu_spr.csv", "HU,SPR", "hu_density.csv")])
@pytest.mark.parametrize("comment", ["", "# exported from the planning system\n"])
def test_a_csv_table_without_its_header_is_refused(tmp_path, fname, header, other, comment):
    d = tmp_path / "cal"
    d.mkdir()
    (d / fname).write_text(comment + "-1000,0.0011\n-100,0.9613\n0,1.0288\n40,1.0545\n1200,1.5521\n3000,2.5\n")
    (d / "hu_materials.csv").write_text(WATER_ROW)
    with pytest.raises(CalibrationError) as exc:
        HUCalibration.load(d)
    msg = str(exc.value)
    assert f"{fname} line {1 + comment.count(chr(10))}: the first row '-1000,0.0011' has no header" in msg, msg
    assert f"add the line {header} above it" in msg and other in msg, msg


def test_an_mcsquare_density_text_needs_no_header(tmp_path):
    """MCsquare's HU_Density_Conversion.txt (a scanner folder as MCsquare and OpenTPS keep it) has '#' comments and no
    header: read as densities, as MCsquare reads it."""
    (tmp_path / "HU_Density_Conversion.txt").write_text("-1000 0.001\n0 1.0\n3000 2.8\n")
    (tmp_path / "HU_Material_Conversion.txt").write_text("-1050 13\n-200 17\n")
    assert HUCalibration.load(tmp_path).density_from_hu(1500) == pytest.approx(1.9)


# A table whose HU column holds CT numbers (HU + 1000 or HU + 1024: air 0, water 1000 or 1024, as some planning
# systems and scanner exports list them) loaded: brain at 35 HU got 0.037 g/cm3 (lung), bone at 1200 HU about water,
# and the only refusal, of the energy that left the grid, blamed the beam (audit 2026-12-07, ctcal F4).
_SCHNEIDER_POINTS = ((-1000, 0.0012), (-98, 0.93), (14, 1.03), (100, 1.12), (101, 1.077), (1600, 1.964),
                     (3071, 2.835))


@pytest.mark.parametrize("offset", [1000, 1024])
@pytest.mark.parametrize("fname", ["hu_density.csv", "hu_spr.csv", "HU_Density_Conversion.txt"])
def test_a_table_in_ct_numbers_is_refused(tmp_path, offset, fname):
    d = tmp_path / "cal"
    d.mkdir()
    head = {"hu_density.csv": "HU,density_gcm3\n", "hu_spr.csv": "HU,SPR\n"}.get(fname, "")
    (d / fname).write_text(head + "".join(f"{h + offset},{v}\n" for h, v in _SCHNEIDER_POINTS))
    if fname.endswith(".txt"):
        (d / "HU_Material_Conversion.txt").write_text("-1050 13\n-200 17\n")
    else:
        (d / "hu_materials.csv").write_text(WATER_ROW)
    with pytest.raises(CalibrationError) as exc:
        HUCalibration.load(d)
    msg = str(exc.value)
    assert f"{fname}: at 0 HU, water by the definition of the Hounsfield scale, the table gives a" in msg, msg
    assert "looks like CT numbers (HU + 1000 or HU + 1024" in msg and "subtract the offset" in msg, msg
    # the same table in HU loads
    (d / fname).write_text(head + "".join(f"{h},{v}\n" for h, v in _SCHNEIDER_POINTS))
    assert HUCalibration.load(d).density_from_hu(0) > 0.9


def test_a_table_that_gives_water_no_water_like_value_is_refused(tmp_path):
    """Another slip than CT numbers (a density in the wrong unit that still lies in 0..25 g/cm3, here x 2.5 at 0 HU):
    refused, saying what the columns must hold; a straight line from air to dense bone (0.70 at 0 HU) is taken."""
    d = tmp_path / "cal"
    d.mkdir()
    (d / "hu_materials.csv").write_text(WATER_ROW)
    (d / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.003\n0,2.5\n3000,7.0\n")
    with pytest.raises(CalibrationError, match=r"gives a density of 2\.5 g/cm3, where water's is 1\.0 .*check that its "
                                               r"first column is in Hounsfield units"):
        HUCalibration.load(d)
    (d / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.001\n3000,2.8\n")
    assert HUCalibration.load(d).density_from_hu(0) == pytest.approx(0.70, abs=0.01)


def test_every_builtin_gives_water_a_water_like_value_at_0_hu():
    """The built-ins are read through the same loaders and pass (schneider2000 is built in Python: 1.018 g/cm3)."""
    from mcproton._io.hu_calibration import WATER_AT_0_HU, _BUILTIN_LOADABLE

    for name in _BUILTIN_LOADABLE:
        cal = HUCalibration.load(name)
        assert WATER_AT_0_HU[0] <= float(cal.spr_from_hu(np.array([0.0]))[0]) <= WATER_AT_0_HU[1], name


# ---------------------------------------------------------------------- a planning system's HU -> SPR table
WATER_ROW = "hu_lo,name,w_H,w_O\n-1000,water,0.111894,0.888106\n"   # NIST H2O mass fractions: mcproton's water


def _write_materials_csv(path, cal):
    """hu_materials.csv holding the bins and compositions of ``cal``."""
    els = sorted({e for m in cal.materials for e in m.mass_fractions})
    rows = ["hu_lo,name," + ",".join(f"w_{e}" for e in els)]
    for b, m in zip(cal.bin_hu_lo, cal.materials):
        rows.append(f"{b:g},{m.name}," + ",".join(f"{m.mass_fractions.get(e, 0.0):.10g}" for e in els))
    path.write_text("\n".join(rows) + "\n")


def _spr_folder(tmp_path, spr_text, materials=WATER_ROW):
    d = tmp_path / "clinic_hlut"
    d.mkdir(exist_ok=True)
    (d / "hu_spr.csv").write_text(spr_text)
    (d / "hu_materials.csv").write_text(materials)
    return d


def test_spr_table_round_trip_from_a_density_table(tmp_path):
    """SPR at every integer HU made from schneider2000's densities and materials with mcproton's stopping powers
    at 100 MeV, read back as hu_spr.csv: the densities of schneider2000 within 1e-6 (float32 densities)."""
    from mcproton._io.hu_calibration import spr_per_density

    ref = HUCalibration.load("schneider2000")
    hu = np.arange(-1000, 3001)
    k = np.array([spr_per_density(m, 100.0) for m in ref.materials])
    spr = ref.density_from_hu(hu).astype(float) * k[ref.material_index_from_hu(hu)]
    d = tmp_path / "from_schneider"
    d.mkdir()
    (d / "hu_spr.csv").write_text("HU,SPR\n" + "".join(f"{h},{s:.12g}\n" for h, s in zip(hu, spr)))
    _write_materials_csv(d / "hu_materials.csv", ref)
    cal = HUCalibration.load(d)
    got, want = cal.density_from_hu(hu).astype(float), ref.density_from_hu(hu).astype(float)
    assert np.abs(got / want - 1).max() < 1e-6
    assert (cal.material_index_from_hu(hu) == ref.material_index_from_hu(hu)).all()
    # the transport sees the table's SPR at the reference energy, and at 70-230 MeV within 0.5 % (the materials'
    # energy dependence: 0.43 % for the densest Schneider bone at 230 MeV)
    np.testing.assert_allclose(cal.spr_from_hu(hu, 100.0), spr, rtol=1e-6)
    for e in (70.0, 150.0, 230.0):
        dev = np.abs(cal.spr_from_hu(hu, e) / spr - 1)
        assert dev.max() < 5e-3 and dev.max() > 1e-4, (e, dev.max())
    # the provenance says where the densities came from
    assert "HU-SPR at 100 MeV" in cal.name and "HU -> SPR" in cal.source and "icru90" in cal.source


def test_spr_water_voxel_gets_water_density(tmp_path):
    """HU 0 with SPR 1.0 and mcproton's water composition: density 1.0; the pstar water model gives the same (the
    water is the table itself); a water-like composition with 1 % more hydrogen, taken as a compound with the ICRU 37
    I-values (I = 75 eV, not water's 78), 0.6 % less than 1 (its SPR per g/cm3 is 1.006 with ICRU 90 water)."""
    d = _spr_folder(tmp_path, "HU,SPR\n-1000,0.00107\n0,1.0\n1000,1.5\n")
    for model in ("icru90", "pstar"):
        assert float(HUCalibration.load(d, water_model=model).density_from_hu(0)) == pytest.approx(1.0, abs=1e-6)
    (d / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-1000,waterlike,0.113,0.887\n")
    rho = float(HUCalibration.load(d).density_from_hu(0))
    assert rho == pytest.approx(1 / 1.00586, rel=2e-4)


def test_spr_table_steps_at_material_bounds(tmp_path):
    """The density curve is exact at the material bounds: on each side the SPR of the table over that side's
    material's SPR per unit density (a step where the materials differ)."""
    from mcproton._io.hu_calibration import spr_per_density

    mats = WATER_ROW + "200,bone,0.064,0.278,0.027,0.41,0.002,0.007,0.002,0.22\n"
    mats = mats.replace("hu_lo,name,w_H,w_O", "hu_lo,name,w_H,w_C,w_N,w_O,w_Mg,w_P,w_S,w_Ca").replace(
        "water,0.111894,0.888106", "water,0.111894,0,0,0.888106,0,0,0,0")
    cal = HUCalibration.load(_spr_folder(tmp_path, "HU,SPR\n-1000,0.001\n0,1.0\n1000,1.6\n", mats))
    kw, kb = (spr_per_density(m, 100.0) for m in cal.materials)
    assert kb < 0.97 * kw       # bone stops less per gram than water
    spr_200 = 1.0 + 0.6 * 0.2
    assert float(cal.density_from_hu(199.9999)) == pytest.approx(spr_200 / kw, rel=1e-5)
    assert float(cal.density_from_hu(200)) == pytest.approx(spr_200 / kb, rel=1e-6)
    np.testing.assert_allclose(cal.spr_from_hu([-1000, -500, 0, 150, 200, 600, 1000, 4000]),
                               [0.001, 0.5005, 1.0, 1.09, 1.12, 1.36, 1.6, 1.6], rtol=1e-6)


def test_spr_calibration_in_the_run_geometry_step(tmp_path):
    """A CT slab of known HU through `mcproton run`'s geometry step (config phantom.calibration = the folder)
    and `mcproton check`'s: the densities SPR / SPR-per-density of the material, with the run's water model."""
    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton._io.hu_calibration import spr_per_density
    from mcproton.config import build_geometry
    from mcproton.materials import get_material

    d = _spr_folder(tmp_path, "# clinic HLUT, exported\nHU;SPR\n-1000;0.001\n0;1.0\n1000;1.5\n")
    hu = np.zeros((4, 6, 6))
    hu[:, :, :2], hu[:, :, 4:] = -1000, 400          # air | water | "dense water" at 400 HU (SPR 1.2)
    write_ct_series(hu, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    for model in ("icru90", "pstar"):
        g = build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct"), "calibration": str(d)},
                            "physics": {"water_model": model}})
        k = spr_per_density(get_material("water"), 100.0, model)
        assert k == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(g.density_g_cm3_zyx[0, 0], np.array([0.001, 0.001, 1, 1, 1.2, 1.2]) / k,
                                   rtol=1e-6)
        assert "HU-SPR at 100 MeV" in g.name
    grid = TPSDose("RD.dcm", np.zeros((2, 3, 3)), (4.0, 4.0, 4.0), (1.0, 1.0, 1.0), "", "PHYSICAL", "PLAN", None)
    g2, cal, _ = check_geometry(tmp_path / "ct", str(d), grid)
    np.testing.assert_allclose(g2.density_g_cm3_zyx[0, 0], [0.001, 1.0, 1.2], rtol=1e-6)
    assert "HU-SPR at 100 MeV" in cal.name


@pytest.mark.parametrize("spr,extra,match", [
    ("HU,SPR\n0,1.0\n-100,0.9\n", None, "increase strictly"),
    ("HU,SPR\n0,1.0\n0,1.1\n", None, "increase strictly"),
    ("HU,SPR\n0,1.0\n", None, "at least two"),
    ("HU,SPR\n-1000,0\n0,1.0\n", None, r"SPR 0 at -1000 HU .*0\.\.3"),
    ("HU,SPR\n-1000,-0.1\n0,1.0\n", None, "SPR -0.1 at"),
    ("HU,SPR\n0,1.0\n1000,1600\n", None, "SPR 1600 at 1000 HU is not a stopping-power ratio"),
    # an extended-HU planning system's metal rows (metal audit 2026-12-06, F5: they were "not a stopping-power
    # ratio"): named as metal, with what to do instead
    ("HU,SPR\n-1000,0.001\n0,1.0\n3000,2.47\n8000,3.23\n", None,
     r"SPR 3\.23 at 8000 HU: a metal's stopping-power ratio .*taken up to SPR 3 \(tissues\) only.*end the table at "
     r"its last row at or below 3 .*override it in the RT Struct.*hu_density\.csv.*metal bin"),
    ("HU,SPR\n-1000,0.001\n0,1.0\n3000,2.47\n8000,3.23\n20000,5.52\n", None,
     r"SPR 3\.23 at 8000 HU and 1 more row\(s\) above 3: a metal's"),
    ("HU;SPR\n-1000;0,001\n0;1,0\n", None, "holds 3 numbers.*decimal comma"),
    ("HU,SPR\n0,1.0\n500,abc\n", None, "not 'HU SPR'"),
    ("HU,density_gcm3\n-1000,0.001\n0,1.0\n", None, "does not say .* stopping-power ratio.*hu_density.csv"),
    ("SPR,HU\n0.001,-1000\n1.0,0\n", None, "swapped"),
    ("HU,SPR\n-1000,0.001\n0,1.0\n500,1.3\n600,0.3\n", None, "falls from 1.3 at 500 HU to 0.3 at 600 HU"),
    ("HU,SPR\n-1000,0.001\n0,1.0\n", "hu_density.csv", "both hu_spr.csv and hu_density.csv"),
    ("HU,SPR\n-1000,0.001\n0,1.0\n", "no materials", r"clinic_hlut: hu_spr.csv needs hu_materials.csv beside it \(the "
     r"elemental composition by HU range, columns hu_lo,name,w_H,w_C,\.\.\.\)$"),   # the folder refusal's words
])
def test_bad_spr_tables_are_refused(tmp_path, spr, extra, match):
    d = _spr_folder(tmp_path, spr)
    if extra == "hu_density.csv":
        (d / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.001\n0,1.0\n")
    elif extra == "no materials":
        (d / "hu_materials.csv").unlink()
    with pytest.raises(CalibrationError, match=match):
        HUCalibration.load(d)


def test_spr_table_in_hu_density_csv_points_to_hu_spr_csv(tmp_path):
    """An SPR table under the name hu_density.csv is still refused (it would be read as densities); the message
    names hu_spr.csv."""
    d = tmp_path / "cal"
    d.mkdir()
    (d / "hu_density.csv").write_text("HU,SPR\n-1000,0.001\n0,1.0\n")
    (d / "hu_materials.csv").write_text(WATER_ROW)
    with pytest.raises(CalibrationError, match="stopping-power ratio.*hu_spr.csv"):
        HUCalibration.load(d)


def test_spr_calibration_end_to_end_range_is_the_water_range_over_the_spr(tmp_path):
    """Transport through a CT calibrated with a HU -> SPR table: a uniform CT (0 HU) whose bin is a bone
    composition (SPR per g/cm3 0.936 of water's at 100 MeV) and whose table says SPR 1.05 must put the R80 of a
    100 MeV pencil beam at the water R80 / 1.05.  The test can fail: reading the SPR as the density (the error
    the conversion exists to avoid) would put it at the water R80 / (1.05 x 0.936), 5 mm deeper.

    Measured 2026-12-05: water R80 77.43 mm, bone 73.90 mm against 77.43 / 1.05 = 73.75 mm (+0.15 mm: below
    100 MeV, where the proton spends most of its range, this bone stops a little less relative to water than at
    100 MeV).  Tolerance 0.3 mm: that energy dependence plus the R80 noise of 20 000 protons on 1 mm voxels
    (~0.03 mm; false positive rate negligible)."""
    from mcproton.config import build_geometry
    from mcproton.run import simulate
    from mcproton.settings import RunSettings
    from mcproton.source import Beam
    from mcproton.validation.metrics import distal_range

    bone = ("hu_lo,name,w_H,w_C,w_N,w_O,w_Mg,w_P,w_S,w_Ca\n"
            "-1000,bone,0.064,0.278,0.027,0.41,0.002,0.007,0.002,0.21\n")
    hu = np.zeros((100, 20, 20))
    write_ct_series(hu, (2.0, 2.0, 1.0), (-19.0, -19.0, 0.5), tmp_path / "ct")
    ranges = {}
    for name, spr, mats in (("water", 1.0, WATER_ROW), ("bone", 1.05, bone)):
        d = tmp_path / name
        d.mkdir()
        (d / "hu_spr.csv").write_text(f"HU,SPR\n-1000,0.001\n0,{spr}\n1000,{spr + 0.5}\n")
        (d / "hu_materials.csv").write_text(mats)
        g = build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct"), "calibration": str(d)}})
        r = simulate(g, Beam.pencil(100.0, position_mm=(0.0, 0.0, -1.0), sigma_mm=(3.0, 3.0)),
                     RunSettings(primaries=20_000, seed=5, backend="cpu", batches=2))
        z, idd = r.integrated_depth_dose()
        ranges[name] = (distal_range(z, idd, 0.8), float(g.density_g_cm3_zyx[50, 10, 10]))
    (r_water, rho_water), (r_bone, rho_bone) = ranges["water"], ranges["bone"]
    assert rho_water == pytest.approx(1.0, abs=1e-6) and rho_bone > 1.09   # 1.05 / 0.95: denser than the SPR
    print(f"R80 water {r_water:.3f} mm, bone {r_bone:.3f} mm, water / 1.05 {r_water / 1.05:.3f} mm, "
          f"bone density {rho_bone:.4f}")
    assert r_bone == pytest.approx(r_water / 1.05, abs=0.3), (r_water, r_bone, r_water / 1.05)


def test_each_load_of_a_built_in_calibration_is_its_own(tmp_path):
    """HUCalibration.load() handed out one shared object: a study that scaled its density curve by 3 % (or changed a
    material) changed every later load and check's default calibration, still named schneider2000 (the
    long-lived-process audit, F1).  Each load is now independent; the data hash tells an edited one apart."""
    from mcproton._check.record import calibration_record

    for name in ("schneider2000", "mcsquare_default"):
        first = HUCalibration.load(name)
        nominal = (first.data_sha256(), first.density_from_hu([0.0]).tolist())
        first.seg_rho_lo *= 1.03
        first.seg_rho_hi *= 1.03
        first.materials[-1].mass_fractions["H"] = 0.5
        first.materials.append(first.materials[0])
        again = HUCalibration.load(name)
        assert again is not first and len(again.materials) == len(first.materials) - 1
        assert (again.data_sha256(), again.density_from_hu([0.0]).tolist()) == nominal
        assert first.data_sha256() != nominal[0]
        # the record of a calibration given as an object holds its data hash: an edited one is not the built-in's
        assert calibration_record(first, first)["data_sha256"] != calibration_record(again, None)["data_sha256"]


def test_an_mcsquare_material_library_is_read_again_when_its_file_or_folder_changes(tmp_path, monkeypatch):
    """The MCsquare material library was cached by its path text: an edited file, or the same relative name in
    another folder, gave the first file's materials while cal.files recorded the new file's SHA-256 (the
    long-lived-process audit, F2)."""
    from mcproton._io.hu_calibration import DATA_DIR

    lib_text = (DATA_DIR / "mcsquare_materials.csv").read_text()
    (tmp_path / "HU_Density_Conversion.txt").write_text("-1000 0.001\n0 1.0\n1000 1.6\n")
    (tmp_path / "HU_Material_Conversion.txt").write_text("-1050 13\n-200 17\n300 38\n")
    water = next(ln for ln in lib_text.splitlines() if ln.startswith("17,"))
    # the water row with the H and O fractions swapped: another composition in a file of the same name
    f = water.split(",")
    edited = ",".join(f[:4] + [f[7], *f[5:7], f[4], *f[8:]])
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "lib.csv").write_text(lib_text if sub == "a" else lib_text.replace(water, edited))

    def water_h(folder):
        monkeypatch.chdir(tmp_path / folder)
        cal = HUCalibration.from_files(tmp_path / "HU_Density_Conversion.txt", tmp_path / "HU_Material_Conversion.txt",
                                       mcsquare_materials="lib.csv")
        return cal.materials[1].mass_fractions["H"], cal.files[-1]["path"]

    h_a, path_a = water_h("a")
    h_b, path_b = water_h("b")   # the same relative name in another folder: its own materials
    assert h_a == pytest.approx(0.111894) and h_b == pytest.approx(0.888106) and path_a != path_b
    (tmp_path / "a" / "lib.csv").write_text(lib_text.replace(water, edited))   # the file edited in place
    assert water_h("a")[0] == pytest.approx(0.888106)
    # a material changed in one calibration is not the library's: the next one reads the file's
    cal = HUCalibration.load(tmp_path)
    cal.materials[1].mass_fractions["H"] = 0.3
    assert HUCalibration.load(tmp_path).materials[1].mass_fractions["H"] == pytest.approx(0.111894)


def test_metal_of_an_extended_scale_ct_given_bone_by_a_flat_curve_is_reported(tmp_path, capsys, warnings_to_stderr):
    """highZ audit 2026-12-06, F1: mcsquare_default's curve ends at 5000 HU but is flat at 1.825 g/cm3 (bone) from
    1565 HU, so a titanium plate at 4000 HU on an extended-scale CT was given bone (SPR 1.62 against 3.23: R80 6.6
    mm too deep behind 4 mm) without a word, in `mcproton run` and `mcproton check` alike.  Values above a 12-bit
    scale (3095 HU) that a curve never reaching metal density gives less than 4 g/cm3 are now named, with where
    they lie (F7).  Values a 12-bit CT holds (3000, 3094 HU: bone, enamel) and a curve that reaches metal
    above the 12-bit scale say nothing."""
    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.config import build_geometry

    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (2.0, 2.0, 4.0), (0.5, 0.5, 1.0), "", "PHYSICAL", "PLAN", None)
    hu = np.zeros((6, 8, 8))
    hu[:, 0, :] = -1000
    hu[2, 3:5, 3:5] = 4000          # a plate: 4 voxels, centres x, y = 3..4 mm, z = 4 mm
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct"), "calibration": "mcsquare_default"}})
    err = capsys.readouterr().err
    said = ("4 CT voxels (0.008 cm3, up to 4000 HU; x 3..4, y 3..4, z 4 mm) lie above the top of a 12-bit CT scale "
            "(3095 HU), where in a patient only metal lies")
    assert said in err and "'mcsquare_default' reaches no metal density" in err, err
    assert "gave them 1.83 g/cm3 (stopping-power ratio 1.62) at 4000 HU" in err and "struct_overrides" in err, err
    check_geometry(tmp_path / "ct", "mcsquare_default", grid, given=True)
    assert said in capsys.readouterr().err
    # a 12-bit CT's densest bone and enamel, and a curve that reaches titanium above 3095 HU: nothing
    for v, cal in ((3000, "mcsquare_default"), (3094, "mcsquare_default"), (4000, "metal")):
        hu[2, 3:5, 3:5] = v
        d = tmp_path / f"ct_{v}_{cal}"
        write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), d)
        if cal == "metal":
            cal = tmp_path / "metal"
            cal.mkdir()
            (cal / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.0012\n0,1.0\n1500,1.8\n3095,2.9\n"
                                                "7000,4.5\n")
            (cal / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(d), "calibration": str(cal)}})
        err = capsys.readouterr().err
        assert "12-bit" not in err and "CT voxels" not in err, (v, err)


#: Schneider 2000's densest bone bin (Marrow_Bone15, from 1500 HU), as a planning system's material table ends
_BONE15 = "1500,bone15,0.034,0.155,0.042,0.435,0.001,0.002,0.103,0.003,0.225,0\n"
_MATS_HEAD = "hu_lo,name,w_H,w_C,w_N,w_O,w_Na,w_Mg,w_P,w_S,w_Ca,w_Ti\n"
_WATER_MAT = "-1000,water,0.111894,0,0,0.888106,0,0,0,0,0,0\n"


def test_metal_density_given_a_tissue_bin_is_reported(tmp_path, capsys, warnings_to_stderr):
    """Metal audit 2026-12-06, F1: a density curve extended to an extended-scale scanner's metal (titanium 4.54 g/cm3
    at 8000 HU, steel 7.9 at 20000 HU) beside a planning system's tissue bins (the last: bone from 1500 HU) gave a
    titanium plate bone's stopping power per gram, SPR 4.02 against titanium's 3.23 (+24 %, the range 7.6 mm short
    behind 10 mm), without a word in `mcproton run`, `mcproton check` or the Python route: the curve reaching metal
    was taken as made for metal.  Now the voxels given a metal's density with a tissue's composition are named, with
    the material, the SPR they get and titanium's; a titanium bin from 5000 HU, or the plate overridden to titanium
    in the RT Struct, says nothing; a titanium bin that starts above the plate's HU does not cover it."""
    from dicom_factories import make_rtstruct, rect_contour

    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.config import build_geometry

    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (2.0, 2.0, 4.0), (0.5, 0.5, 1.0), "", "PHYSICAL", "PLAN", None)
    hu = np.zeros((6, 8, 8))
    hu[:, 0, :] = -1000
    hu[2, 3:5, 3:5] = 8000          # a titanium plate: 4 voxels, centres x, y = 3..4 mm, z = 4 mm
    ct = tmp_path / "ct"
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), ct)
    dens = "HU,density_gcm3\n-1000,0.0012\n0,1.0\n1600,1.964\n3000,2.793\n8000,4.54\n20000,7.9\n"

    def cal(name, ti_from=None):
        d = tmp_path / name
        d.mkdir()
        (d / "hu_density.csv").write_text(dens)
        ti = f"{ti_from},titanium,0,0,0,0,0,0,0,0,0,1\n" if ti_from is not None else ""
        (d / "hu_materials.csv").write_text(_MATS_HEAD + _WATER_MAT + _BONE15 + ti)
        return d

    said = ("4 CT voxels (0.008 cm3, 8000 HU; x 3..4, y 3..4, z 4 mm) were given a metal's density by the HU "
            "calibration 'ext' (4.54 g/cm3; a metal's is at least 4: titanium 4.5, steel 7.9) but the composition of "
            "its material bin 'bone15', which stops protons 24 % more per gram than titanium")
    ext = cal("ext")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(ext)}})
    err = capsys.readouterr().err
    assert said in err, err
    assert ("stopping-power ratio 4.02, where titanium of that density has 3.23" in err
            and "a metal bin" in err and "struct_overrides" in err), err
    check_geometry(ct, str(ext), grid, given=True)
    assert said in capsys.readouterr().err
    g = HUCalibration.load(ext).to_geometry(load_ct_series(ct))   # the Python route keeps it with the geometry
    assert any(said in w for w in g.made_with_warnings), g.made_with_warnings
    capsys.readouterr()
    # a titanium bin that covers the plate: titanium at 4.54 g/cm3, nothing to say; one above it: still bone
    for ti_from, warned in ((5000, False), (8500, True)):
        c = cal(f"ext_ti{ti_from}", ti_from)
        g = build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(c)}})
        err = capsys.readouterr().err
        assert ("were given a metal's density" in err) == warned, (ti_from, err)
        assert (g.materials[g.material_index_zyx[2, 3, 3]].name == "titanium") != warned
        assert float(g.density_g_cm3_zyx[2, 3, 3]) == pytest.approx(4.54, rel=1e-6)
    # the plate contoured and overridden to titanium in the RT Struct: the voxels are no longer the calibration's
    rs = tmp_path / "RS.dcm"
    make_rtstruct({"plate": [rect_contour(2.5, 4.5, 2.5, 4.5, 4.0)]}).save_as(rs, enforce_file_format=True)
    _titanium_override(rs, "plate")
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(ext)},
                    "plan": {"rtstruct": str(rs)}})
    assert "were given a metal's density" not in capsys.readouterr().err


def test_metal_above_a_metal_reaching_curve_with_tissue_bins_is_warned_of_once(tmp_path, capsys, warnings_to_stderr):
    """Review R5 (2026-12-06): voxels above the end of a curve that ends at a metal's density (steel 7.9 g/cm3 at
    20000 HU) beside tissue bins were named twice, "lie above the end of the HU calibration" and "were given a
    metal's density ... but the composition of its material bin 'bone15'", with the same advice.  One warning now
    (the second, which says what is wrong with them); with a titanium bin that covers them, the first as before."""
    from mcproton.config import build_geometry

    hu = np.zeros((6, 8, 8))
    hu[:, 0, :] = -1000
    hu[2, 3:5, 3:5] = 30000
    ct = tmp_path / "ct"
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), ct)
    for name, ti, metal_msg in (("ext", "", True), ("ext_ti", "5000,titanium,0,0,0,0,0,0,0,0,0,1\n", False)):
        d = tmp_path / name
        d.mkdir()
        (d / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.0012\n0,1.0\n1600,1.964\n8000,4.54\n"
                                          "20000,7.9\n")
        (d / "hu_materials.csv").write_text(_MATS_HEAD + _WATER_MAT + _BONE15 + ti)
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct), "calibration": str(d)}})
        err = capsys.readouterr().err
        assert err.count("4 CT voxels") == 1, (name, err)
        assert ("were given a metal's density" in err) == metal_msg, (name, err)
        assert ("lie above the end of the HU calibration" in err) != metal_msg, (name, err)
        g = HUCalibration.load(d).to_geometry(load_ct_series(ct))   # the Python route: the same
        assert len([w for w in g.made_with_warnings if "4 CT voxels" in w]) == 1, g.made_with_warnings
        capsys.readouterr()


def test_the_python_route_warns_of_metal_above_the_calibration_and_keeps_it_in_the_result(tmp_path, capsys,
                                                                                          warnings_to_stderr):
    """highZ audit 2026-12-06, F2: HUCalibration.to_geometry + simulate, the README's Python route for a patient
    CT, turned an 8000 HU titanium plate into 2.84 g/cm3 bone without a McprotonWarning, and the result's provenance
    held none: the coverage checks ran in `mcproton run` and `mcproton check` only.  to_geometry now warns, the
    geometry keeps the messages and simulate's result keeps them in provenance["warnings"].  `mcproton run`, which
    checks after the RT Struct's overrides itself, says it once (an overridden rod: not at all, tested above)."""
    from mcproton import Beam, RunSettings, simulate
    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton.config import build_geometry

    hu = np.zeros((6, 8, 8))
    hu[:, 0, :] = -1000
    hu[2, 3:5, 3:5] = 8000          # a titanium clip in an extended-HU CT
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    ct = load_ct_series(tmp_path / "ct")
    said = "4 CT voxels (0.008 cm3, up to 8000 HU; x 3..4, y 3..4, z 4 mm) lie above the end of the HU calibration"
    with pytest.warns(McprotonRuntimeWarning, match=r"lie above the end of the HU calibration 'schneider2000'"):
        g = HUCalibration.load().to_geometry(ct)
    assert any(said in w for w in g.made_with_warnings), g.made_with_warnings
    res = simulate(g, Beam.pencil(70.0, position_mm=(3.5, 3.5, -5.0)),
                   RunSettings(primaries=200, batches=4, backend="cpu", threads=1, seed=3), log=None)
    assert any(said in w for w in res.provenance.get("warnings") or []), res.provenance.get("warnings")
    capsys.readouterr()
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}})
    assert capsys.readouterr().err.count("lie above the end of the HU calibration") == 1


def test_a_geometry_and_a_result_with_coverage_warnings_pickle(tmp_path, warnings_to_stderr):
    """Review C 2026-12-06, F1: to_geometry keeps a weak reference to the CT for judging its coverage warnings again
    after the overrides, and weak references do not pickle: a geometry, and a result (whose geometry is a copy), of a
    CT with metal above the calibration failed in multiprocessing / joblib / a pickle cache, after the transport.
    Now both pickle; the unpickled geometry's warnings, judged again, say they were judged before the overrides (its
    CT is not held), as when the CT is gone."""
    import pickle

    from mcproton import Beam, RunSettings, simulate
    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton._io.hu_calibration import BEFORE_OVERRIDES_NOTE, rejudge_coverage

    hu = np.zeros((6, 8, 8))
    hu[:, 0, :] = -1000
    hu[2, 3:5, 3:5] = 8000
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    ct = load_ct_series(tmp_path / "ct")
    with pytest.warns(McprotonRuntimeWarning):
        g = HUCalibration.load().to_geometry(ct)
    assert getattr(g, "_coverage_check", None)
    res = simulate(g, Beam.pencil(70.0, position_mm=(3.5, 3.5, -5.0)),
                   RunSettings(primaries=200, batches=4, backend="cpu", threads=1, seed=3), log=None)
    back = pickle.loads(pickle.dumps(res))
    assert np.array_equal(back.dose_gy_zyx, res.dose_gy_zyx)
    g2 = pickle.loads(pickle.dumps(g))
    assert g2.made_with_warnings == g.made_with_warnings
    rejudge_coverage(g2)
    assert g2.made_with_warnings and all(w.endswith(BEFORE_OVERRIDES_NOTE) for w in g2.made_with_warnings
                                         if "HU calibration" in w), g2.made_with_warnings
    assert ct is not None   # the CT held here: only the pickled copy lost it


# A material table in CT numbers beside a density table in HU loaded without a word: MCsquare's default scanner
# with its HU_Material_Conversion.txt shifted by +1024 gave 0 HU air's composition at 1.0 g/cm3 (SPR 0.888, not
# 1.012) and brain at 35 HU air at 1.07 g/cm3, every soft-tissue range ~11 % too long; the refusal of a density table
# in CT numbers said to subtract the offset from that table alone (the re-read audit of 2026-12-07, F1).
_MCSQUARE_DEFAULT = (Path(__file__).resolve().parents[1] / "data" / "mcsquare_scanners_211eefe" / "default")


def _shifted(text: str, offset: float) -> str:
    """An MCsquare HU_*_Conversion.txt with ``offset`` added to each row's HU (comments kept)."""
    out = []
    for ln in text.splitlines():
        body, _, comment = ln.partition("#")
        toks = body.split()
        out.append(" ".join([f"{float(toks[0]) + offset:g}", *toks[1:]]) + (f"  #{comment}" if comment else "")
                   if toks else ln)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("offset", [1000, 1024])
def test_a_material_table_in_ct_numbers_is_refused(tmp_path, offset):
    d = tmp_path / "scanner"
    d.mkdir()
    dens = (_MCSQUARE_DEFAULT / "HU_Density_Conversion.txt").read_text()
    mats = (_MCSQUARE_DEFAULT / "HU_Material_Conversion.txt").read_text()
    (d / "HU_Density_Conversion.txt").write_text(dens)
    (d / "HU_Material_Conversion.txt").write_text(_shifted(mats, offset))
    with pytest.raises(CalibrationError) as exc:
        HUCalibration.load(d)
    msg = str(exc.value)
    assert "HU_Material_Conversion.txt: the material table gives 0 HU" in msg and "'mcsquare_Schneider_Air'" in msg
    assert f"its first bin (air) starts at {-1050 + offset}" in msg and "looks like CT numbers" in msg, msg
    # both tables in CT numbers: the density table's refusal says to shift the material table too
    (d / "HU_Density_Conversion.txt").write_text(_shifted(dens, offset))
    with pytest.raises(CalibrationError, match="and from the HU column of the material table beside it"):
        HUCalibration.load(d)
    # both in HU: MCsquare's scanner, SPR 1.012 at 0 HU
    (d / "HU_Density_Conversion.txt").write_text(dens)
    (d / "HU_Material_Conversion.txt").write_text(mats)
    assert float(HUCalibration.load(d).spr_from_hu(np.array([0.0]))[0]) == pytest.approx(1.012, abs=0.002)


@pytest.mark.parametrize("table", ["HU,density_gcm3\n-1000,0.0012\n0,1.0\n3000,2.8\n",
                                   "HU,SPR\n-1000,0.001\n0,1.0\n3000,2.6\n"])
def test_a_composition_csv_that_gives_0_hu_a_gas_is_refused(tmp_path, table):
    """hu_materials.csv whose bin at 0 HU holds no hydrogen (here its hu_lo in CT numbers, HU + 1024), beside a
    hu_density.csv or hu_spr.csv in HU: refused; the same bins in HU load."""
    rows = "hu_lo,name,w_H,w_C,w_N,w_O,w_Ar\n{air},air,0,0.000124,0.755268,0.231781,0.012827\n" \
           "{tissue},soft_tissue,0.102,0.143,0.034,0.708,0.013\n"
    d = _calibration(tmp_path / "cal", table, rows.format(air=-1050 + 1024, tissue=-120 + 1024))
    with pytest.raises(CalibrationError, match=r"hu_materials\.csv: the material table gives 0 HU.*'air', which holds "
                                               r"0 % hydrogen by mass.*starts at -26.*looks like CT numbers"):
        HUCalibration.load(d)
    (d / "hu_materials.csv").write_text(rows.format(air=-1050, tissue=-120))
    assert HUCalibration.load(d).materials[1].name == "soft_tissue"

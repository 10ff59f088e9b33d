"""CTs that are stopping-power-ratio maps, not Hounsfield units (docs/patient_workflow.md "SPR-map CTs").

DCPT's head-phantom CT (nbassler/dicomexport, series "SPR_map") holds 1000 x (SPR - 1), which DCPT converts with
its own TOPAS table; read as HU with schneider2000 its bone had ~20 % too little stopping power.  The built-in
``dcpt_spr_brain`` is that table (scripts/make_dcpt_spr_brain.py); an SPR map read with the default HU curve is
refused, with an HU curve given on purpose warned about."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from mcproton._io.hu_calibration import DATA_DIR, HUCalibration, check_spr_map, not_hu_map


def _rows():
    lines = [ln for ln in (DATA_DIR / "dcpt_spr_brain_materials.csv").read_text().splitlines()
             if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def test_dcpt_spr_brain_gives_spr_one_plus_value_over_1000():
    c = HUCalibration.load("dcpt_spr_brain")
    v = np.array([-990.0, -500.0, -100.0, 0.0, 15.0, 40.0, 110.0, 300.0, 500.0, 680.0, 1500.0, 1999.0])
    np.testing.assert_allclose(c.spr_from_hu(v), 1.0 + v / 1000.0, rtol=1e-6)   # at its reference energy, 100 MeV
    np.testing.assert_allclose(c.spr_from_hu(np.array([2500.0, -1024.0])), [3.0, 0.001], rtol=1e-6)   # held
    hu_curve = HUCalibration.load("schneider2000").spr_from_hu(np.array([500.0]))[0]
    assert 1.5 / hu_curve > 1.18            # what reading the map as HU cost in bone: ~20 % of the SPR


def test_dcpt_spr_brain_materials_and_densities_agree_with_dcpts_geant4_table():
    """The 40 materials (sections of the SPR map, elemental mass fractions summing to 1) and, as an independent
    check of mcproton's stopping powers, each material's density per unit SPR: mcproton's (SPR / its own SPR per
    g/cm3 at 100 MeV) against DCPT's table (Geant4 with the table's I-values).  Measured 2026-12-05: -0.06 to
    -0.07 % for all 40; a change of the stopping powers or I-values by 0.2 % fails here."""
    rows = _rows()
    assert len(rows) == 40 and rows[0]["hu_lo"] == "-1024" and rows[-1]["hu_lo"] == "680"
    c = HUCalibration.load("dcpt_spr_brain")
    bounds = [float(r["hu_lo"]) for r in rows] + [2000.0]
    for r, lo, hi in zip(rows, bounds[:-1], bounds[1:]):
        w = sum(float(v) for k, v in r.items() if k.startswith("w_"))
        assert w == pytest.approx(1.0, abs=2e-3), r["name"]
        mid = np.array([max((lo + hi) / 2, -990.0)])
        ours = float(c.density_from_hu(mid)[0] / c.spr_from_hu(mid)[0])
        assert ours == pytest.approx(float(r["topas_density_per_spr"]), rel=2e-3), r["name"]


@pytest.mark.parametrize("description,comments,image_type,found", [
    ("SPR_map", "AI Dual Energy Monoenergetic Plus E = 90 keV",
     "DERIVED\\SECONDARY\\AXIAL\\VMI\\CT_SOM8 DEMEP\\ME90KEV\\DE_TB", True),   # the DCPT head phantom's CT
    ("DirectSPR 1.0 Qr40", "", "", True),
    ("Head", "SPR image from DECT", "", True),
    ("Head 1.0 Qr40", "", "DERIVED\\SECONDARY\\AXIAL\\SPR", True),
    ("Head 1.0 H31s", "", "ORIGINAL\\PRIMARY\\AXIAL", False),
    ("Spiral 3.0 Br40", "", "", False),
    ("mcproton phantom", "mcproton: HU from densities with the inverse of HU calibration 'schneider2000'",
     "DERIVED\\SECONDARY\\AXIAL", False),
    ("Head Rho 1.0", "", "", False),                  # an electron-density map: another kind, below
])
def test_spr_map_evidence(description, comments, image_type, found):
    from types import SimpleNamespace

    ct = SimpleNamespace(series_description=description, image_comments=comments, image_type=image_type)
    assert (not_hu_map(ct)[0] == "SPR") is found


def test_an_spr_map_read_with_an_hu_calibration_is_refused_or_warned_about(capsys, warnings_to_stderr):
    class CT:
        series_description, image_comments = "SPR_map", ""
    with pytest.raises(ValueError, match="stopping-power-ratio map.*dcpt_spr_brain"):
        check_spr_map(CT(), "schneider2000", given=False, where="the CT", key="--calibration", error=ValueError,
                      anyway="on")
    check_spr_map(CT(), "mcsquare_default", given=True, where="the CT", key="--calibration", error=ValueError,
                  anyway="checked anyway")
    assert "warning" in capsys.readouterr().err
    check_spr_map(CT(), "dcpt_spr_brain (HU-SPR at 100 MeV)", given=False, where="the CT", key="--calibration",
                  error=ValueError, anyway="on")
    assert capsys.readouterr().err == ""


def _spr_map_ct(folder):
    from mcproton.dicom import write_ct_series

    v = np.zeros((6, 8, 8))
    v[:, :, 4:] = 500.0          # bone in the map: SPR 1.5
    write_ct_series(v, (2.0, 2.0, 2.0), (-7.0, -7.0, 0.0), folder, series_description="SPR_map")


def test_run_and_check_refuse_an_spr_map_with_the_default_calibration(tmp_path, capsys):
    """End to end through the geometry of `mcproton run` (--check-config) and of `mcproton check`: refused with
    the default curve; with dcpt_spr_brain the bone gets SPR 1.5 (density 1.5 / its SPR per g/cm3)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run"))
    from make_bad_input_table import CT

    from mcproton._check.compute import build_geometry
    from mcproton._check.inputs import CheckInputError, TPSDose
    from mcproton.cli import main

    _spr_map_ct(tmp_path / "ct")
    cfg = tmp_path / "job.toml"
    cfg.write_text(CT.replace("@EXTRA", ""))
    assert main(["run", str(cfg), "--check-config"]) == 2
    assert "stopping-power-ratio map" in capsys.readouterr().err
    cfg.write_text(CT.replace("@EXTRA", 'calibration = "dcpt_spr_brain"'))
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (4.0, 4.0, 4.0), (-5.0, -5.0, 1.0), "", "PHYSICAL", "PLAN", None)
    with pytest.raises(CheckInputError, match="--calibration dcpt_spr_brain"):
        build_geometry(tmp_path / "ct", "schneider2000", grid, given=False)
    g = build_geometry(tmp_path / "ct", "dcpt_spr_brain", grid, given=True)[0]
    cal = HUCalibration.load("dcpt_spr_brain")
    np.testing.assert_allclose(g.density_g_cm3_zyx[:, :, -1], float(cal.density_from_hu(np.array([500.0]))[0]),
                               rtol=1e-3)


@pytest.mark.parametrize("description,kind", [
    ("SPR_map", "SPR"), ("DE Rho 1.0 Qr40", "RED"), ("Electron density", "RED"), ("Head RED", "RED"),
    ("DE Z 1.0", ""), ("Zeff 1.0 Qr40", "ZEFF"), ("Effective Z", "ZEFF"), ("Head 1.0 H31s", ""),
    ("Reduced dose head", ""), ("Monoenergetic Plus 70 keV", ""),
    ("Dosis red. Kopf", ""), ("Herz Eff 1.0", ""), ("DirectDensity 1.0 Qr40", "RED"), ("Z_eff map", "ZEFF"),
])
def test_dual_energy_maps_that_are_not_hu_are_named(description, kind):
    """Electron-density and Z_eff maps read as HU are wrong too (a Z_eff map would be water everywhere): named by
    their descriptions, refused with the default calibration."""
    from types import SimpleNamespace

    ct = SimpleNamespace(series_description=description, image_comments="", image_type="")
    assert not_hu_map(ct)[0] == kind
    if kind in ("RED", "ZEFF"):
        with pytest.raises(ValueError, match="map" if kind == "RED" else "Z_eff"):
            check_spr_map(ct, "schneider2000", given=False, where="the CT", key="--calibration", error=ValueError,
                          anyway="on")


@pytest.mark.parametrize("description", ["CIRS 062M Electron Density Phantom", "SPR phantom Gammex 1467",
                                         "Zeff insert phantom"])
def test_a_phantom_ct_in_hu_named_like_a_map_is_told_how_to_go_on(description, capsys, warnings_to_stderr):
    """A QA CT in HU of an electron-density or stopping-power phantom is named like a dual-energy map (the words
    are a guess from free text): refused with the default curve, the message must say how to read it as HU (an HU
    calibration given by name: a warning only).  Before review7 the RED and Z_eff messages only said to export the
    series in HU, which it already was."""
    from types import SimpleNamespace

    ct = SimpleNamespace(series_description=description, image_comments="", image_type="")
    with pytest.raises(ValueError, match="does hold HU.*--calibration with its HU calibration by name") as exc:
        check_spr_map(ct, "schneider2000", given=False, where="the CT", key="--calibration", error=ValueError,
                      anyway="checked anyway")
    assert "phantom" in str(exc.value)
    check_spr_map(ct, "schneider2000", given=True, where="the CT", key="--calibration", error=ValueError,
                  anyway="checked anyway")   # given by name: goes on, with a warning
    assert "warning" in capsys.readouterr().err

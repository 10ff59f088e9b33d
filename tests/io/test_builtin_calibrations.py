"""The built-in HU calibrations against their sources, and water where a calibration is meant for water.

The transcription of MCsquare's Water_Phantom and SolidWater_Phantom scanners (2026-11-26) had lost the row of each
file's only non-integer HU bound (``-200.5 17 # Water``, ``-200.5 65 # Solid_water``): ``mcsquare_water`` gave every
voxel from -201 HU up air's composition at 1 g/cm3, SPR 0.888 at 0 HU, and a water tank's range came out 12.7 % too
long without a word (audit 2026-12-07, ctcal F1).  Here every row of the four shipped scanner transcriptions is
compared with the byte copies of the source in tests/data/mcsquare_scanners_211eefe (e0404/MCsquare 211eefe)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcproton._io.hu_calibration import DATA_DIR, HUCalibration

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "mcsquare_scanners_211eefe"
#: built-in name -> MCsquare's Scanners/<folder>
SCANNERS = {"mcsquare_default": "default", "mcsquare_water": "Water_Phantom",
            "mcsquare_solidwater": "SolidWater_Phantom", "mcsquare_matrad_water": "matRad_water"}


def _upstream_rows(path: Path) -> list[tuple[float, float]]:
    """(HU, value) of each line of an MCsquare HU_*_Conversion.txt ('#' starts a comment; a name after it)."""
    rows = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        toks = ln.partition("#")[0].split()
        if toks:
            rows.append((float(toks[0]), float(toks[1])))
    return rows


def _shipped_rows(path: Path) -> list[tuple[float, float]]:
    """(HU, value) of each data row of a shipped transcription (comment lines, then a header, then CSV rows)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    return [(float(ln.split(",")[0]), float(ln.split(",")[1])) for ln in lines[1:]]


@pytest.mark.parametrize("name", sorted(SCANNERS))
@pytest.mark.parametrize("kind", ["density", "material"])
def test_every_row_of_a_shipped_mcsquare_scanner_is_the_sources(name, kind):
    """Row for row, the same HU bounds and densities / material IDs as MCsquare's file, none missing, none added."""
    folder = SCANNERS[name]
    up = _upstream_rows(UPSTREAM / folder / f"HU_{kind.capitalize()}_Conversion.txt")
    ours = _shipped_rows(DATA_DIR / f"mcsquare_scanner_{folder}_hu_{kind}.csv")
    missing = [r for r in up if r not in ours]
    added = [r for r in ours if r not in up]
    assert not missing and not added and ours == up, (
        f"{name} ({folder}) HU -> {kind}: rows of the source missing from the transcription {missing}, rows it "
        f"adds {added}")


@pytest.mark.parametrize("name", sorted(SCANNERS))
def test_a_builtin_scanner_is_the_source_folder_loaded_as_a_users(name):
    """The built-in maps every HU as MCsquare's own folder does when a user gives it (the same curve, bins and
    materials: data_sha256, which leaves out the name and files)."""
    builtin = HUCalibration.load(name)
    folder = HUCalibration.load(UPSTREAM / SCANNERS[name])
    assert builtin.data_sha256() == folder.data_sha256()
    hu = np.arange(-1100.0, 3100.0, 0.5)
    assert np.array_equal(builtin.material_index_from_hu(hu), folder.material_index_from_hu(hu))
    assert np.array_equal(builtin.density_from_hu(hu), folder.density_from_hu(hu))


@pytest.mark.parametrize("name", ["mcsquare_water", "mcsquare_matrad_water"])
@pytest.mark.parametrize("water_model", ["icru90", "pstar"])
def test_a_calibration_for_water_gives_water_at_0_hu(name, water_model):
    """A calibration meant for a water phantom: SPR 1.00 +- 0.01 at 0 HU (and over -150..+150 HU for the
    Water_Phantom scanner, flat at 1 g/cm3 there), in water's composition, not air's."""
    cal = HUCalibration.load(name, water_model=water_model)
    spr0 = float(cal.spr_from_hu(np.array([0.0]), water_model=water_model)[0])
    assert spr0 == pytest.approx(1.0, abs=0.01)
    assert cal.materials[int(cal.material_index_from_hu(np.array([0.0]))[0])].name == "mcsquare_Water"
    if name == "mcsquare_water":
        spr = cal.spr_from_hu(np.arange(-150.0, 151.0), water_model=water_model)
        assert np.allclose(spr, 1.0, atol=0.01), (spr.min(), spr.max())


def test_solid_water_calibration_gives_solid_water_at_0_hu():
    """mcsquare_solidwater: MCsquare's Solid_water (1.0445 g/cm3, as its density curve) from -200 HU, SPR 1.029 at
    0 HU (MCsquare's composition with mcproton's stopping powers), not air's composition (0.927)."""
    cal = HUCalibration.load("mcsquare_solidwater")
    assert cal.materials[int(cal.material_index_from_hu(np.array([0.0]))[0])].name == "mcsquare_Solid_water"
    assert float(cal.spr_from_hu(np.array([0.0]))[0]) == pytest.approx(1.029, abs=0.003)


def test_a_water_tank_ct_has_the_same_water_equivalent_path_with_either_water_calibration():
    """The table-level form of a water tank's range: a line of CT voxels through 10 mm of air and 240 mm of water
    (0 HU with 10 HU of noise, 1 mm voxels) has the same water-equivalent path with mcsquare_water as with
    mcsquare_matrad_water (water everywhere), within 0.2 % (the noise's effect on matRad_water's sloped curve,
    1 + HU/1000, averages out to 0.07 % here), and 240 mm within 0.5 %.  Before the fix mcsquare_water gave 213 mm
    (air's composition at 1 g/cm3: 12.7 % less stopping, the range 12.7 % too long)."""
    rng = np.random.default_rng(7)
    hu = np.concatenate([np.full(10, -1000.0), rng.normal(0.0, 10.0, 240).round()])
    wet = {n: float(HUCalibration.load(n).spr_from_hu(hu).sum()) for n in ("mcsquare_water", "mcsquare_matrad_water")}
    assert wet["mcsquare_water"] == pytest.approx(wet["mcsquare_matrad_water"], rel=0.002), wet
    assert wet["mcsquare_water"] == pytest.approx(240.0, rel=0.005), wet

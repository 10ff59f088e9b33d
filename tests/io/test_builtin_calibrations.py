"""The built-in HU calibrations against their sources, and water where a calibration is meant for water.

The transcription of MCsquare's Water_Phantom and SolidWater_Phantom scanners (2026-11-26) had lost the row of each
file's only non-integer HU bound (``-200.5 17 # Water``, ``-200.5 65 # Solid_water``): ``mcsquare_water`` gave every
voxel from -201 HU up air's composition at 1 g/cm3, SPR 0.888 at 0 HU, and a water tank's range came out 12.7 % too
long without a word (audit 2026-12-07, ctcal F1).  Here every row of the four shipped scanner transcriptions is
compared with the byte copies of the source in tests/data/mcsquare_scanners_211eefe (e0404/MCsquare 211eefe)."""
from __future__ import annotations

import warnings
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


# ---------------------------------------------------------------------- a water phantom read with a tissue calibration
# schneider2000 (the default) gives 0 HU SPR 1.029 (its soft-tissue fit: 1.018 g/cm3 of an adipose-soft-tissue
# mixture): right for tissue, but a CT of a water tank was transported 2.8 % short (-4.5 mm at 150 MeV) without a
# word (audit 2026-12-07, ctcal F2).  Now a CT that looks like a water phantom, read with a calibration whose SPR at
# 0 HU is more than 1 % from 1, is warned about, saying what to use.
WATER_PHANTOM_WORDS = "looks like a water phantom"


def _water_tank_ct(path: Path, noise_hu: float = 5.0, water_hu: float = 0.0) -> Path:
    """A CT of a water tank: air around a box of water at ``water_hu`` with ``noise_hu`` of noise."""
    from mcproton.dicom import write_ct_series

    rng = np.random.default_rng(3)
    hu = np.full((6, 24, 24), -1000.0)
    hu[:, 3:-3, 3:-3] = np.round(water_hu + rng.normal(0.0, noise_hu, (6, 18, 18)))
    write_ct_series(hu, (2.0, 2.0, 2.0), (-24.0, -24.0, -6.0), path)
    return path


def _said(g) -> list[str]:
    return [w for w in g.made_with_warnings if WATER_PHANTOM_WORDS in w]


@pytest.mark.parametrize("name,warned,figure", [("schneider2000", True, "1.029"), ("mcsquare_default", True, "1.012"),
                                                ("mcsquare_water", False, None),
                                                ("mcsquare_solidwater", False, None),   # made for such a phantom
                                                ("mcsquare_matrad_water", False, None),
                                                ("dcpt_spr_brain", False, None)])
def test_a_water_phantom_ct_read_with_a_tissue_calibration_is_warned_about(tmp_path, name, warned, figure):
    from mcproton.dicom import load_ct_series

    ct = load_ct_series(_water_tank_ct(tmp_path / "ct"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = HUCalibration.load(name).to_geometry(ct)   # (the geometry keeps what was warned about)
    said = _said(g)
    assert bool(said) == warned, said
    if warned:
        assert f"gives 0 HU a stopping-power ratio of {figure}" in said[0], said[0]
        assert "too short" in said[0] and "use mcsquare_water" in said[0] and "hu_spr.csv" in said[0], said[0]
        assert "REL_STOP_RATIO 1 on its External" in said[0], said[0]


def test_a_patient_like_ct_is_not_taken_for_a_water_phantom(tmp_path):
    """A head: brain at 35 HU, skin 40, bone 1200 (and a CSF-like strip at 5 HU): no warning with schneider2000."""
    from mcproton.dicom import load_ct_series, write_ct_series

    hu = np.full((6, 24, 24), -1000.0)
    hu[:, 3:-3, 3:-3] = 1200.0
    hu[:, 5:-5, 5:-5] = 35.0
    hu[:, 10:12, 5:-5] = 5.0
    write_ct_series(hu, (2.0, 2.0, 2.0), (-24.0, -24.0, -6.0), tmp_path / "ct")
    g = HUCalibration.load("schneider2000").to_geometry(load_ct_series(tmp_path / "ct"))
    assert not _said(g)


@pytest.mark.parametrize("noise_hu", [25.0, 35.0])
def test_a_noisy_water_phantom_ct_is_warned_about_too(tmp_path, noise_hu):
    """A water tank scanned with 25-35 HU of noise per voxel (thin slices, low dose, a sharp kernel): judged voxel by
    voxel, 45 % and 33 % of its voxels lay within 15 HU of 0 and it was not warned about (the re-read audit of
    2026-12-07, F2); on the 3 x 3 in-plane mean (noise / 3) about 70 % of them do.  A head-like CT with the same
    noise (brain 35 HU, bone) is not taken for one."""
    from mcproton.dicom import load_ct_series, write_ct_series

    ct = load_ct_series(_water_tank_ct(tmp_path / "ct", noise_hu=noise_hu))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        said = _said(HUCalibration.load("schneider2000").to_geometry(ct))
    assert len(said) == 1 and "averaged over 3 x 3 voxels of their slice" in said[0], said
    rng = np.random.default_rng(5)
    hu = np.full((6, 24, 24), -1000.0)
    hu[:, 3:-3, 3:-3] = 1200.0
    hu[:, 5:-5, 5:-5] = np.round(35.0 + rng.normal(0.0, noise_hu, (6, 14, 14)))
    write_ct_series(hu, (2.0, 2.0, 2.0), (-24.0, -24.0, -6.0), tmp_path / "head")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not _said(HUCalibration.load("schneider2000").to_geometry(load_ct_series(tmp_path / "head")))


def test_a_water_phantom_read_with_an_hlut_is_not_told_to_give_an_hlut(tmp_path):
    """A HU -> SPR table (a stoichiometric HLUT, SPR 1.02 at 0 HU) on a water-tank CT: warned, saying that the
    calibration is a HU -> SPR table and that a planning system computing with it is as short, not told to give
    "the planning system's own HU -> SPR table" it already gives (the re-read audit of 2026-12-07, F5)."""
    from mcproton.dicom import load_ct_series

    d = tmp_path / "hlut"
    d.mkdir()
    (d / "hu_spr.csv").write_text("HU,SPR\n-1000,0.001\n-100,0.95\n0,1.02\n100,1.08\n1500,1.85\n3000,2.6\n")
    (d / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111894,0.888106\n")
    ct = load_ct_series(_water_tank_ct(tmp_path / "ct"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        said = _said(HUCalibration.load(d).to_geometry(ct))
    assert len(said) == 1 and "stopping-power ratio of 1.020" in said[0], said
    assert "this calibration is a HU -> SPR table" in said[0] and "use mcsquare_water" in said[0], said[0]
    assert "planning system's own HU -> SPR table (hu_spr.csv)" not in said[0], said[0]


def test_mcproton_run_warns_of_a_water_phantom_in_the_water_of_its_physics(tmp_path):
    """`mcproton run`'s CT geometry (config.build_geometry) with the default calibration: warned, with the SPR in the
    run's water (pstar: 1.024)."""
    from mcproton.config import build_geometry

    _water_tank_ct(tmp_path / "ct")
    for physics, figure in ((None, "1.029"), ({"water_model": "pstar"}, "1.024")):
        cfg = {"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}}
        if physics is not None:
            cfg["physics"] = physics
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            build_geometry(cfg)
        said = [str(w.message) for w in rec if WATER_PHANTOM_WORDS in str(w.message)]
        assert len(said) == 1 and f"stopping-power ratio of {figure}" in said[0], said
        assert "HU calibration 'schneider2000' (phantom.calibration)" in said[0], said[0]
        assert "as phantom.calibration" in said[0], said[0]



def test_mcproton_check_warns_of_a_water_phantom(tmp_path, monkeypatch):
    """`mcproton check` on a water-box CT with its default calibration: the same warning, naming --calibration (the
    check stops before its Monte Carlo here)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
    from test_check_pairing import STUDY, _hu, _plan, _rd

    from mcproton._check import api
    from mcproton.dicom import write_ct_series

    write_ct_series(_hu(), (4.0, 4.0, 4.0), (-54.0, -54.0, -26.0), tmp_path / "ct", study=STUDY)
    uid = _plan(tmp_path / "RP.dcm")
    _rd(tmp_path / "RD.dcm", uid)

    class Stop(Exception):
        pass

    def fake_run_mc(*a, **k):
        raise Stop

    monkeypatch.setattr(api, "run_mc", fake_run_mc)
    with warnings.catch_warnings(record=True) as rec, pytest.raises(Stop):
        warnings.simplefilter("always")
        api.check(plan=tmp_path / "RP.dcm", dose=tmp_path / "RD.dcm", ct=tmp_path / "ct", beam_model="dcpt_v2",
                  out=None, progress=False, log=lambda m: None, physics={"water_model": "pstar"})
    said = [str(w.message) for w in rec if WATER_PHANTOM_WORDS in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in rec]
    assert "'schneider2000' (--calibration) gives 0 HU a stopping-power ratio of 1.024" in said[0], said[0]


def test_the_documented_stopping_power_ratios_at_0_hu_are_the_built_ins():
    """docs/patient_workflow.md "The built-in HU calibrations" lists each built-in's SPR at 0 HU in ICRU 90 and PSTAR
    water: the figures are what the code gives (to the 3 decimals shown), every built-in listed."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "patient_workflow.md").read_text(encoding="utf-8")
    section = doc.split("## The built-in HU calibrations: water at 0 HU", 1)[1].split("\n## ", 1)[0]
    rows = dict((m.group(1), (float(m.group(2)), float(m.group(3))))
                for m in re.finditer(r"^\| `(\w+)`[^|]*\|[^|]*\|[^|]*\| ([\d.]+) \| ([\d.]+) \|$", section, re.M))
    from mcproton._io.hu_calibration import _BUILTIN_LOADABLE

    assert sorted(rows) == sorted(_BUILTIN_LOADABLE), rows
    for name, (icru90, pstar) in rows.items():
        for model, want in (("icru90", icru90), ("pstar", pstar)):
            cal = HUCalibration.load(name, water_model=model)
            got = float(cal.spr_from_hu(np.array([0.0]), water_model=model)[0])
            assert round(got, 3) == want, (name, model, got)


# ---------------------------------------------------------------------- the CT's acquisition, recorded
def quiet_simulate(g):
    """A 200-primary 70 MeV pencil beam along +y through the small CT's geometry ``g``, its warnings unshown (they are
    in its provenance): what a result records of the CT, not its dose."""
    import mcproton

    beam = mcproton.Beam.pencil(70.0, position_mm=(0, -30, 4), direction=(0, 1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mcproton.simulate(g, beam, mcproton.RunSettings(primaries=200, batches=2, backend="cpu", threads=1),
                                 log=None)


def test_the_cts_kvp_scanner_and_kernel_are_recorded_with_the_calibration(tmp_path):
    """ctcal audit F6: nothing recorded the CT's acquisition, so a reviewer could not see that an 80 kVp paediatric
    scan was read with a 120 kVp curve.  Now the CT's KVP, Manufacturer, ManufacturerModelName and ConvolutionKernel
    (first slice) go with the calibration record into the result's provenance (``ct_acquisition``, in the HDF5 too)
    and into `mcproton check`'s record of the CT input (compared with the tube voltage a calibration states since the
    kvp audit: tests/io/test_calibration_kvp.py)."""
    import json

    import h5py
    import pydicom

    from mcproton._check.record import ct_input
    from mcproton._io.hdf5 import write_result_hdf5
    from mcproton.dicom import load_ct_series, write_ct_series

    hu = np.full((4, 12, 12), -1000.0)
    hu[:, 2:-2, 2:-2] = 40.0
    files = write_ct_series(hu, (2.0, 2.0, 2.0), (-12.0, -12.0, 0.0), tmp_path / "ct")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.KVP, ds.Manufacturer, ds.ManufacturerModelName = "80", "SIEMENS", "SOMATOM Definition AS"
        ds.ConvolutionKernel = ["Br40d", "3"]
        ds.save_as(f)
    want = {"KVP": 80.0, "Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Definition AS",
            "ConvolutionKernel": "Br40d\\3"}
    ct = load_ct_series(tmp_path / "ct")
    assert ct.acquisition == want
    g = HUCalibration.load("schneider2000").to_geometry(ct)
    assert g.calibration["ct_acquisition"] == want
    r = quiet_simulate(g)
    assert r.provenance["ct_acquisition"] == want
    assert r.provenance["calibration_record"]["ct_acquisition"] == want
    write_result_hdf5(r, tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert json.loads(f["provenance"].attrs["ct_acquisition"]) == want
    rec = ct_input(tmp_path / "ct", ct.slice_files, ct.series_instance_uid)
    assert rec["acquisition"] == want
    # a CT that says nothing of it (mcproton's own writer leaves KVP empty): recorded as not given
    write_ct_series(hu, (2.0, 2.0, 2.0), (-12.0, -12.0, 0.0), tmp_path / "ct0")
    assert load_ct_series(tmp_path / "ct0").acquisition["KVP"] is None


def test_a_water_phantom_is_warned_about_in_the_calibrations_own_water(tmp_path):
    """A calibration loaded in PSTAR water (HUCalibration.load(..., water_model="pstar")) quotes 0 HU's SPR in that
    water where to_geometry warns of a water phantom: schneider2000 1.024 (ICRU 90: 1.029), and a HU -> SPR table
    its own 1.020.  Before (audit 30, lefts F1) the warning said 1.029 and 1.025 ("water_model icru90") for them: the
    HLUT's figure was one its table does not hold."""
    from mcproton.dicom import load_ct_series

    ct = load_ct_series(_water_tank_ct(tmp_path / "ct"))
    d = tmp_path / "hlut"
    d.mkdir()
    (d / "hu_spr.csv").write_text("HU,SPR\n-1000,0.001\n-100,0.95\n0,1.02\n100,1.08\n1500,1.85\n3000,2.6\n")
    (d / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O,w_C,w_N\n-1000,tissue,0.10,0.70,0.15,0.05\n")
    for name, model, figure in (("schneider2000", "pstar", "1.024"), ("schneider2000", "icru90", "1.029"),
                                (d, "pstar", "1.020"), (d, "icru90", "1.020")):
        cal = HUCalibration.load(name, water_model=model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            said = _said(cal.to_geometry(ct))
        assert len(said) == 1 and f"stopping-power ratio of {figure} " in said[0], (name, model, said)
        assert f"water_model {model})" in said[0], said[0]
        assert cal.water_model == model and f"{float(cal.spr_from_hu([0.0])[0]):.3f}" == figure, (name, model)

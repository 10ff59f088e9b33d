"""A dose says which HU calibration made its geometry, by its data (robustness audit 2026-12-06, F2): a range-error
scenario with the built-in calibration scaled in Python (``cal.seg_rho_lo *= 1.035``) was recorded as the built-in,
with a geometry name and a provenance identical to the nominal run's."""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

import mcproton as mcp
from mcproton.dicom import HUCalibration, load_ct_series, write_ct_series


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    d = tmp_path_factory.mktemp("ct") / "ct"
    write_ct_series(np.zeros((6, 8, 8)), (4.0, 4.0, 4.0), (-14.0, -14.0, 0.0), d)
    return load_ct_series(d)


def _run(g):
    beam = mcp.Beam.pencil(70.0, position_mm=(0, -40, 10), direction=(0, 1, 0), total_protons=1e9)
    return mcp.simulate(g, beam, mcp.RunSettings(primaries=300, batches=2, backend="cpu", threads=1), log=None)


def test_a_scaled_builtin_calibration_is_recorded_as_modified_by_its_data(ct, tmp_path):
    nominal = HUCalibration.load("schneider2000")
    up = HUCalibration.load("schneider2000")
    up.seg_rho_lo *= 1.035
    up.seg_rho_hi *= 1.035
    r_nom, r_up = _run(nominal.to_geometry(ct)), _run(up.to_geometry(ct))
    assert r_nom.geometry.name.endswith("(schneider2000)")
    assert r_up.geometry.name.endswith("(schneider2000, modified)")
    p_nom, p_up = r_nom.provenance, r_up.provenance
    assert (p_nom["calibration"], p_up["calibration"]) == ("schneider2000", "schneider2000 (modified)")
    assert p_nom["calibration_data_sha256"] == nominal.data_sha256()
    assert p_up["calibration_data_sha256"] == up.data_sha256() != nominal.data_sha256()
    assert (p_nom["calibration_record"]["builtin"], p_nom["calibration_record"]["modified"]) == (True, False)
    assert (p_up["calibration_record"]["builtin"], p_up["calibration_record"]["modified"]) == (True, True)
    r_up.save(tmp_path / "up.h5")
    with h5py.File(tmp_path / "up.h5") as f:
        assert f["provenance"].attrs["calibration_data_sha256"] == up.data_sha256()
        assert "modified" in f.attrs["geometry_name"]
    back = mcp.DoseResult.load(tmp_path / "up.h5")
    assert back.provenance["calibration_record"]["modified"] is True


def test_a_copy_or_a_blocks_grid_keeps_the_record_and_another_calibration_is_not_builtin(ct):
    up = dataclasses.replace(HUCalibration.load("mcsquare_default"))
    up.seg_rho_hi = up.seg_rho_hi * 1.02
    g = up.to_geometry(ct, blocks=(2, 2, 2))
    assert g.calibration["modified"] is True and "(mcsquare_default, modified)" in g.name
    assert mcp.resample_blocks(HUCalibration.load("mcsquare_default").to_geometry(ct), (2, 2, 2)).calibration[
        "modified"] is False
    own = HUCalibration.from_points([-1000, 0, 3000], [0.001, 1.0, 2.5], [-1000],
                                    [mcp.materials.get_material("water")], name="my_scanner")
    rec = own.to_geometry(ct).calibration
    assert (rec["name"], rec["builtin"], rec["modified"]) == ("my_scanner", False, None)
    # made in Python under a built-in's name: compared with that built-in
    same = HUCalibration.load("schneider2000")
    clone = HUCalibration(same.seg_hu_lo, same.seg_hu_hi, same.seg_rho_lo, same.seg_rho_hi, same.bin_hu_lo,
                          same.materials, name="schneider2000")
    assert clone.record()["modified"] is False


def test_a_calibration_folder_named_like_a_builtin_is_recorded_by_its_path(ct, tmp_path):
    """Review A 2026-12-06, F4: MCsquare and OpenTPS keep their scanner as Scanners/default, and "default" is an
    alias of schneider2000: the unmodified MCsquare default scanner read from such a folder was recorded as a
    modified built-in ("default (modified)", builtin True), although nothing of mcproton's built-in was used.  A
    folder is never the built-in: recorded by its path, with the built-in whose data it holds named."""
    import shutil

    from mcproton._io.hu_calibration import DATA_DIR

    d = tmp_path / "MCsquare" / "Scanners" / "default"
    d.mkdir(parents=True)
    shutil.copy(DATA_DIR / "mcsquare_scanner_default_hu_density.csv", d / "hu_density.csv")
    shutil.copy(DATA_DIR / "mcsquare_scanner_default_hu_material.csv", d / "hu_materials.csv")
    rec = HUCalibration.load(d).record()
    assert (rec["name"], rec["builtin"], rec["modified"]) == (str(d.resolve()), False, None), rec
    assert rec["same_data_as"] == "mcsquare_default"
    g = HUCalibration.load(d).to_geometry(ct)
    assert g.name.endswith(f"({d.resolve()})") and "modified" not in g.name, g.name
    (d / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.0012\n0,1.0\n3000,2.5\n")   # another scanner
    rec = HUCalibration.load(d).record()
    assert (rec["builtin"], rec["modified"], rec["same_data_as"]) == (False, None, None), rec


def test_densities_changed_after_the_conversion_are_not_recorded_as_the_calibrations(ct, tmp_path):
    """Review A 2026-12-06, F3: the README's scenario route, dataclasses.replace(g, density_g_cm3_zyx=... * 1.035),
    kept the geometry's calibration record, and the result said the unmodified schneider2000 made densities 3.5 %
    higher (the nominal's calibration_data_sha256).  to_geometry stores a fingerprint of the arrays it made; a
    result on other arrays says "(densities changed after)".  The structure set's overrides and resampling to
    blocks keep the record their own."""
    from mcproton._io.rtdose import scenario_note

    g = HUCalibration.load("schneider2000").to_geometry(ct)
    assert "arrays_crc32" in g.calibration
    nominal = _run(g)
    assert nominal.provenance["calibration"] == "schneider2000"
    assert nominal.provenance["calibration_record"]["densities_changed_after"] is False
    up = dataclasses.replace(g, density_g_cm3_zyx=g.density_g_cm3_zyx * 1.035)
    p = _run(up).provenance
    assert p["calibration"] == "schneider2000 (densities changed after)"
    assert p["calibration_record"]["densities_changed_after"] is True
    assert scenario_note(p) == "robustness scenario: HU calibration schneider2000 (densities changed after)"
    # an in-place edit before a run, and the same after a copy resampled to blocks
    g2 = HUCalibration.load("schneider2000").to_geometry(ct)
    g2.density_g_cm3_zyx[0, 0, 0] += 0.01
    assert _run(g2).provenance["calibration"] == "schneider2000 (densities changed after)"
    assert mcp.resample_blocks(g2, (2, 2, 2)).calibration["densities_changed_after"] is True
    g3 = HUCalibration.load("schneider2000").to_geometry(ct)
    assert _run(mcp.resample_blocks(g3, (2, 2, 2))).provenance["calibration"] == "schneider2000"

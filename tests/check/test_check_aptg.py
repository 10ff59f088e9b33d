"""``mcproton check`` input handling on real RayStation files (APTG/2022_DCPT_LET plan03, CC BY 4.0; see
tests/data/dicom/aptg_check/README.md): pairing by UID, what the TPS dose holds, and the phantom built from the
structure set's ROI material overrides.  No transport (fast)."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom" / "aptg_check"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("aptg")
    with gzip.open(DATA / "RD_plan03_total.dcm.gz", "rb") as fi, open(d / "RD_plan03_total.dcm", "wb") as fo:
        shutil.copyfileobj(fi, fo)
    for name in ("RP_plan03.dcm", "RS_plan03.dcm"):
        shutil.copy(DATA / name, d / name)
    return d


def test_folder_is_paired_by_uid(folder):
    from mcproton._check.inputs import gather

    inp = gather(folder=folder)
    assert Path(inp.plan_path).name == "RP_plan03.dcm"
    assert Path(inp.total.path).name == "RD_plan03_total.dcm" and inp.beams == {}
    assert Path(inp.struct_path).name == "RS_plan03.dcm"
    assert inp.dose_type == "EFFECTIVE" and inp.all_fractions and inp.fractions == 1
    assert inp.total.shape_zyx == (110, 107, 107) and inp.total.voxel_size_mm == (2.0, 2.0, 2.0)
    assert any("ReferencedStructureSetSequence" in line for line in inp.pairing)
    assert 2.0 < inp.total.dose_gy_zyx.max() < 2.5           # a 2 Gy(RBE) plan


def test_roi_overrides_give_solid_water_and_pmma(folder):
    from mcproton._io.roi_overrides import nearest_material as _nearest_material
    from mcproton._io.roi_overrides import roi_overrides

    rois = {r["name"]: r for r in roi_overrides(folder / "RS_plan03.dcm")}
    assert set(rois) == {"External", "PMMA"}
    assert rois["External"]["density_g_cm3"] == pytest.approx(1.02)
    assert rois["PMMA"]["density_g_cm3"] == pytest.approx(1.19)
    assert _nearest_material(rois["External"])[0].name == "solid_water_gammex457"
    assert _nearest_material(rois["PMMA"])[0].name == "pmma"


def test_body_outline_and_grid_coverage_of_the_real_dose(folder):
    from mcproton._check.api import body_outline, check_grid_covers
    from mcproton._check.inputs import gather
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    inp = gather(folder=folder)
    s = read_rtstruct(inp.struct_path)
    masks = rasterise(s, type("G", (), {"origin_mm": inp.total.origin_mm, "voxel_size_mm": inp.total.voxel_size_mm,
                                        "shape_zyx": inp.total.shape_zyx}))
    body, how = body_outline(masks, s.roi_types, None)
    assert "External" in how and 0.7 < body.mean() < 0.9     # the 205 x 205 x 200 mm box in a 214 x 214 x 220 grid
    check_grid_covers(inp.total.dose_gy_zyx, body, "plan03")  # the RayStation grid covers the phantom
    from mcproton._check.inputs import CheckInputError

    with pytest.raises(CheckInputError, match="does not cover"):
        check_grid_covers(inp.total.dose_gy_zyx[:, 20:-20], body[:, 20:-20], "cropped")


def test_body_outline_from_the_ct_without_an_external():
    """No External ROI: the CT above 0.1 g/cm3, its largest connected part, holes filled (a couch-like slab and
    the air inside the body are handled)."""
    from mcproton._check.api import body_outline

    rho = np.full((20, 30, 30), 0.0012)
    rho[2:18, 5:25, 5:25] = 1.0          # the body
    rho[8:12, 12:18, 12:18] = 0.0012      # air inside it (a cavity): filled
    rho[:, 28:, :] = 0.5                  # a couch, not connected
    body, how = body_outline({"PTV": np.zeros(rho.shape, bool)}, {"PTV": "PTV"}, rho)
    assert "CT density" in how
    assert body[2:18, 5:25, 5:25].all() and body.sum() == 16 * 20 * 20

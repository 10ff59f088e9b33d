"""A CT with no air anywhere (finding 9 of the bad-input audit): RescaleIntercept 0 where the stored values are
HU + 1024 made every voxel 1024 HU too dense (the DCPT head's CTV D50 fell from 0.32 to 0.0005 Gy) with no word but
"voxels above the calibration".  Both `mcproton run` and `mcproton check` now warn where they build the geometry."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from mcproton._io.ct import CTImage
from mcproton._io.errors import McprotonRuntimeWarning, McprotonWarning
from mcproton._io.hu_calibration import calibration_note, warn_ct_without_air

NO_AIR = r"holds no air: its lowest value is 24 HU over the whole volume.*RescaleIntercept \(0028,1052\)"


def _head(shift: float = 0.0) -> np.ndarray:
    """A 'head' of soft tissue (40 HU: a water box at 0 HU would be a water phantom read with a tissue calibration,
    warned about, ctcal audit F2) with a bone (700 HU) in air (-1000 HU); ``shift``: added to every voxel."""
    hu = np.full((6, 10, 10), -1000.0)
    hu[:, 2:8, 2:8] = 40.0
    hu[:, 4:6, 4:6] = 700.0
    return hu + shift


def _ct(hu, **kw) -> CTImage:
    return CTImage(hu_zyx=np.asarray(hu, np.int16), voxel_size_mm=(2.0, 2.0, 2.0), origin_mm=(0.0, 0.0, 0.0), **kw)


def test_a_ct_without_air_is_warned_about():
    with pytest.warns(McprotonRuntimeWarning, match=r"^the CT holds no air: its lowest value is 24 HU .* about 1024 "
                                                    r"HU too high.*RescaleIntercept \(0028,1052\) and RescaleSlope "
                                                    r"\(0028,1053\)"):
        warn_ct_without_air(_ct(_head(1024.0)), "the CT")


@pytest.mark.parametrize("ct", [
    _ct(_head()),                                                  # a patient in air
    _ct(_head(), series_description="SPR_map"),                    # an SPR map (dcpt_spr_brain): air is -1000 too
    _ct(np.full((4, 6, 6), -500.0)),                               # lung everywhere, at the limit: not warned
    _ct(np.zeros((4, 6, 6)), image_comments=calibration_note("slab_ct")),   # mcproton's own slab CT of water
], ids=["patient", "spr_map", "at_the_limit", "mcproton_slab_ct"])
def test_a_ct_with_air_or_written_by_mcproton_is_not(ct):
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)
        warn_ct_without_air(ct, "the CT")


def test_the_dcpt_head_phantom_has_air(dcpt_head_ct):
    """The real SPR-map CT the audit used (read as an SPR map with dcpt_spr_brain) reaches -1000: no warning.  The
    CT is not in the repository: MCPROTON_TEST_HEADPHANTOM_CT names its folder (tests/conftest.py)."""
    from mcproton._io.ct import load_ct_series

    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        warn_ct_without_air(load_ct_series(dcpt_head_ct), "the CT")


def test_run_and_check_warn_of_a_ct_without_air(tmp_path, capsys, warnings_to_stderr):
    """End to end: `mcproton run --check-config` and the geometry of `mcproton check` read a CT whose slices say
    RescaleIntercept 0 for stored values of HU + 1024."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run"))
    from make_bad_input_table import CT

    from mcproton._check.compute import build_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.cli import main
    from mcproton.dicom import write_ct_series

    write_ct_series(_head(1024.0), (2.0, 2.0, 2.0), (-9.0, -9.0, 0.0), tmp_path / "ct")   # intercept 0
    cfg = tmp_path / "job.toml"
    cfg.write_text(CT.replace("@EXTRA", ""))
    assert main(["run", str(cfg), "--check-config"]) == 0
    err = capsys.readouterr().err
    assert "mcproton: warning: the CT in phantom.ct_dir" in err and "holds no air" in err, err
    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (4.0, 4.0, 4.0), (-5.0, -5.0, 1.0), "", "PHYSICAL", "PLAN", None)
    with pytest.warns(McprotonRuntimeWarning, match=NO_AIR):
        build_geometry(tmp_path / "ct", "schneider2000", grid, given=False)
    write_ct_series(_head(), (2.0, 2.0, 2.0), (-9.0, -9.0, 0.0), tmp_path / "ct2")
    cfg.write_text(CT.replace("@EXTRA", "").replace('ct_dir = "ct"', 'ct_dir = "ct2"'))
    assert main(["run", str(cfg), "--check-config"]) == 0
    assert "no air" not in capsys.readouterr().err

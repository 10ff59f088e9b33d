"""The Python route to a patient geometry (``HUCalibration.to_geometry``) makes the CT checks of ``mcproton run`` and
``mcproton check`` (Python-API audit 2026-12-06, F3): a phantom CT that mcproton wrote for another calibration (bone
~18 % low), a CT that says it is a stopping-power-ratio map read with an HU calibration (bone ~20 % too little
stopping power) and a CT without air (a wrong RescaleIntercept: every value ~1024 HU too high) gave a geometry
without a word.  A script names its calibration, so each is the warning that ``mcproton run`` gives for a given
calibration, kept in ``geometry.made_with_warnings`` and so in ``simulate``'s result; the command line keeps its own
refusals and says each warning once."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import mcproton
from mcproton._io.ct import CTImage
from mcproton._io.errors import McprotonWarning, recording_warnings
from mcproton.dicom import HUCalibration, load_ct_series
from mcproton.geometry import slab_phantom
from mcproton.phantoms.dicom_export import write_phantom_ct

WRITTEN_FOR = (r"^the CT \(.*ct\) was written by mcproton from densities with the inverse of HU calibration "
               r"'mcsquare_default' .* but the calibration converting it is 'schneider2000': its densities would be "
               r"another curve's; converted as given .*HUCalibration\.load\(\"mcsquare_default\"\)")
SPR_MAP = (r"^the CT looks like a stopping-power-ratio map.*'SPR_map'.*the HU calibration 'schneider2000' .* would "
           r"give bone ~20 % too little stopping power")
NO_AIR = r"^the CT holds no air: its lowest value is 24 HU .*RescaleIntercept \(0028,1052\)"


def _head(shift: float = 0.0) -> np.ndarray:
    """A 'head' of water (0 HU) with a bone (700 HU) in air (-1000 HU); ``shift``: added to every voxel."""
    hu = np.full((6, 10, 10), -1000.0)
    hu[:, 2:8, 2:8] = 0.0
    hu[:, 4:6, 4:6] = 700.0
    return hu + shift


def _ct(hu, **kw) -> CTImage:
    return CTImage(hu_zyx=np.asarray(hu, np.int16), voxel_size_mm=(2.0, 2.0, 2.0), origin_mm=(0.0, 0.0, 0.0), **kw)


@pytest.fixture(scope="module")
def phantom_ct(tmp_path_factory):
    """A phantom CT written with the inverse of mcsquare_default (its ImageComments say so)."""
    g = slab_phantom([("water", 8.0), ("bone_cortical_icrp", 8.0, 1.6), ("lung", 8.0)], (16.0, 16.0), 4.0)
    out = tmp_path_factory.mktemp("ph") / "ct"
    write_phantom_ct(g, out, calibration="mcsquare_default")
    return out


def _converted(cal: str, ct):
    """The geometry, and the mcproton warnings said while making it (whatever the filters show)."""
    with recording_warnings() as said, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = HUCalibration.load(cal).to_geometry(ct)
    return g, said


def test_a_phantom_ct_read_with_another_calibration_is_warned_about_and_kept(phantom_ct):
    ct = load_ct_series(phantom_ct)
    with pytest.warns(McprotonWarning, match=WRITTEN_FOR):
        g = HUCalibration.load("schneider2000").to_geometry(ct)
    assert any("'mcsquare_default'" in w and "converted as given" in w for w in g.made_with_warnings), \
        g.made_with_warnings
    # what it warns of: the densities of another curve
    right, _ = _converted("mcsquare_default", ct)
    assert np.max(np.abs(g.density_g_cm3_zyx / right.density_g_cm3_zyx - 1)) > 0.03
    # simulate keeps it in the result (and so res.save)
    beam = mcproton.Beam.pencil(70.0, position_mm=(0.0, 0.0, -20.0), direction=(0.0, 0.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mcproton.simulate(g, beam, mcproton.RunSettings(primaries=200, batches=2, backend="cpu", threads=1),
                                log=None)
    assert any("'mcsquare_default'" in w for w in res.provenance.get("warnings") or []), res.provenance.get("warnings")


def test_read_with_its_own_calibration_nothing_is_said(phantom_ct):
    g, said = _converted("mcsquare_default", load_ct_series(phantom_ct))
    assert said == [] and g.made_with_warnings == []


def test_an_spr_map_read_with_an_hu_calibration_is_warned_about():
    ct = _ct(_head(), series_description="SPR_map")
    with pytest.warns(McprotonWarning, match=SPR_MAP):
        g = HUCalibration.load("schneider2000").to_geometry(ct)
    assert any("stopping-power-ratio map" in w for w in g.made_with_warnings), g.made_with_warnings
    g, said = _converted("dcpt_spr_brain", ct)   # the calibration for such a map: nothing
    assert said == [] and g.made_with_warnings == []


def test_a_ct_without_air_is_warned_about():
    with pytest.warns(McprotonWarning, match=NO_AIR):
        g = HUCalibration.load("schneider2000").to_geometry(_ct(_head(1024.0)))
    assert any("holds no air" in w for w in g.made_with_warnings), g.made_with_warnings


def test_a_patient_ct_in_hu_with_air_is_not():
    g, said = _converted("schneider2000", _ct(_head()))
    assert said == [] and g.made_with_warnings == []


def test_the_command_line_says_each_once_and_keeps_its_refusal(phantom_ct, tmp_path):
    """mcproton run and mcproton check make these checks in their own terms (to_geometry's are off there): with the
    calibration given, one warning each; with the default calibration, their refusal."""
    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import CheckInputError, TPSDose
    from mcproton.config import ConfigError, build_geometry
    from mcproton.dicom import write_ct_series

    def said_by(fn):
        with recording_warnings() as said, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
        return said

    said = said_by(lambda: build_geometry({"phantom": {"type": "ct", "ct_dir": str(phantom_ct),
                                                       "calibration": "schneider2000"}}))
    written = [w for w in said if "was written by mcproton" in w]
    assert len(written) == 1 and "phantom.calibration" in written[0], said
    with pytest.raises(ConfigError, match='phantom.calibration = "mcsquare_default"'):
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(phantom_ct)}})
    write_ct_series(_head(1024.0), (2.0, 2.0, 2.0), (-9.0, -9.0, 0.0), tmp_path / "ct")   # no air
    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (4.0, 4.0, 4.0), (-5.0, -5.0, 1.0), "", "PHYSICAL", "PLAN", None)
    said = said_by(lambda: check_geometry(tmp_path / "ct", "schneider2000", grid, given=True))
    assert len([w for w in said if "holds no air" in w]) == 1, said
    said = said_by(lambda: build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct"),
                                                       "calibration": "schneider2000"}}))
    assert len([w for w in said if "holds no air" in w]) == 1, said
    with pytest.raises(CheckInputError, match="mcsquare_default"):
        check_geometry(phantom_ct, "schneider2000", grid, given=False)

"""A phantom written as a CT names the HU calibration whose inverse gave its CT numbers (ImageComments); a run
that reads it back with another calibration is refused (default calibration) or warned about (phantom.calibration
given).  Before, `mcproton phantom --calibration mcsquare_default` followed by a CT run with the default
schneider2000 gave the bone of a 5-year-old head phantom densities 5 % too high and soft tissue -2.5..+6.5 %, without
a word."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton.config import ConfigError, build_geometry
from mcproton.dicom import HUCalibration, load_ct_series
from mcproton.geometry import slab_phantom
from mcproton.phantoms.dicom_export import write_phantom_ct


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory):
    # bone at 1.6 g/cm3: within mcsquare_default's densities (up to 1.825 g/cm3)
    g = slab_phantom([("water", 8.0), ("bone_cortical_icrp", 8.0, 1.6), ("lung", 8.0)], (16.0, 16.0), 4.0)
    out = tmp_path_factory.mktemp("ph") / "ct"
    write_phantom_ct(g, out, calibration="mcsquare_default")
    return out


def test_the_ct_names_its_calibration(ct_dir):
    from mcproton._io.hu_calibration import calibration_written_for

    assert calibration_written_for(load_ct_series(ct_dir)) == "mcsquare_default"


def test_read_with_the_default_calibration_is_refused(ct_dir):
    # what the refusal prevents: the densities of the other calibration (bone 1.6 -> ~1.67 g/cm3 here)
    ct = load_ct_series(ct_dir)
    right = HUCalibration.load("mcsquare_default").to_geometry(ct).density_g_cm3_zyx
    wrong = HUCalibration.load("schneider2000").to_geometry(ct).density_g_cm3_zyx
    assert np.max(np.abs(wrong / right - 1)) > 0.03
    with pytest.raises(ConfigError, match=r"mcsquare_default.*phantom\.calibration = \"mcsquare_default\""):
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct_dir)}})


def test_read_with_its_own_calibration(ct_dir, capsys):
    g = build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct_dir), "calibration": "mcsquare_default"}})
    ct = load_ct_series(ct_dir)
    assert np.array_equal(g.density_g_cm3_zyx, HUCalibration.load("mcsquare_default").to_geometry(ct).density_g_cm3_zyx)
    assert "calibration" not in capsys.readouterr().err


def test_another_calibration_given_on_purpose_is_warned_about(ct_dir, capsys, warnings_to_stderr):
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct_dir), "calibration": "schneider2000"}})
    err = capsys.readouterr().err
    assert "warning" in err and "mcsquare_default" in err and "schneider2000" in err


def test_a_script_reading_it_with_another_calibration_is_warned_and_the_result_keeps_it(ct_dir):
    """Python-API audit 2026-12-06, F3: HUCalibration.to_geometry (a script's route, which always names its
    calibration) said nothing where mcproton run refuses or warns.  Now it warns as mcproton run does for a given
    calibration, and the geometry and simulate's result keep it."""
    import warnings

    import mcproton
    from mcproton._io.errors import McprotonWarning

    ct = load_ct_series(ct_dir)
    with pytest.warns(McprotonWarning, match=r"^the CT \(.*ct\) was written by mcproton from densities with the "
                                             r"inverse of HU calibration 'mcsquare_default' .* but the calibration "
                                             r"converting it is 'schneider2000': its densities would be another "
                                             r"curve's; converted as given .*"
                                             r"HUCalibration\.load\(\"mcsquare_default\"\)"):
        g = HUCalibration.load("schneider2000").to_geometry(ct)
    assert any("'mcsquare_default'" in w and "converted as given" in w for w in g.made_with_warnings), \
        g.made_with_warnings
    beam = mcproton.Beam.pencil(70.0, position_mm=(0.0, 0.0, -20.0), direction=(0.0, 0.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mcproton.simulate(g, beam, mcproton.RunSettings(primaries=200, batches=2, backend="cpu", threads=1),
                                log=None)
    assert any("'mcsquare_default'" in w for w in res.provenance.get("warnings") or []), res.provenance.get("warnings")
    with warnings.catch_warnings():   # with its own calibration: nothing
        warnings.simplefilter("error", McprotonWarning)
        assert HUCalibration.load("mcsquare_default").to_geometry(ct).made_with_warnings == []


def test_the_command_line_says_it_once(ct_dir):
    """mcproton run and mcproton check make the check in their own terms (to_geometry's is off there): one warning
    with the calibration given, not two."""
    import warnings

    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton._io.errors import recording_warnings

    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (4.0, 4.0, 4.0), (-5.0, -5.0, 1.0), "", "PHYSICAL", "PLAN", None)
    for make in (lambda: check_geometry(ct_dir, "schneider2000", grid, given=True),
                 lambda: build_geometry({"phantom": {"type": "ct", "ct_dir": str(ct_dir),
                                                     "calibration": "schneider2000"}})):
        with recording_warnings() as said, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make()
        assert len([w for w in said if "was written by mcproton" in w]) == 1, said


def test_a_slab_ct_read_as_a_patient_ct_is_refused(tmp_path):
    # a slab CT's CT numbers are codes of its exact calibration (water, PMMA, ... at their densities): read with a
    # generic calibration its slabs would get generic tissue densities
    from mcproton._io.slab_ct import slab_ct_geometry

    slab_ct_geometry([("water", 8.0), ("pmma", 8.0)], lateral_size_mm=(16.0, 16.0), voxel_mm=(4.0, 4.0, 4.0),
                     ct_dir=tmp_path / "ct")
    with pytest.raises(ConfigError, match='slab_ct.*phantom.type = "slab_ct"'):
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}})


def test_a_phantom_denser_than_the_calibration_reaches_is_refused(tmp_path):
    # mcsquare_default ends at 1.825 g/cm3: ICRP cortical bone (1.85) was written as the CT number of 1.825 g/cm3 (the
    # inverse clamps), a CT of another phantom than phantom.h5 holds
    g = slab_phantom([("water", 8.0), ("bone_cortical_icrp", 8.0)], (16.0, 16.0), 4.0)
    with pytest.raises(ValueError, match=r"1\.85.*mcsquare_default.*1\.825"):
        write_phantom_ct(g, tmp_path / "ct", calibration="mcsquare_default")
    assert not (tmp_path / "ct").exists()
    write_phantom_ct(g, tmp_path / "ct", calibration="schneider2000")   # reaches 2.83 g/cm3


def test_the_refusal_suggests_a_calibration_that_loads(tmp_path):
    """Phantom audit F5: a CT written with dcpt_spr_brain names its display name "dcpt_spr_brain (HU-SPR at 100
    MeV)"; the refusal suggested phantom.calibration = that name, which is itself refused as unknown.  Now it
    suggests "dcpt_spr_brain", which is accepted."""
    g = slab_phantom([("water", 8.0), ("bone_cortical_icrp", 8.0, 1.6)], (16.0, 16.0), 4.0)
    write_phantom_ct(g, tmp_path / "ct", calibration="dcpt_spr_brain")
    with pytest.raises(ConfigError, match=r'phantom\.calibration = "dcpt_spr_brain"$'):
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}})
    build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct"), "calibration": "dcpt_spr_brain"}})


def test_calibration_key():
    from mcproton._io.hu_calibration import calibration_key

    assert calibration_key("dcpt_spr_brain (HU-SPR at 100 MeV)") == "dcpt_spr_brain"
    assert calibration_key("my_tps (HU-SPR at 62.5 MeV)") == "my_tps"
    assert calibration_key("mcsquare_default") == "mcsquare_default"

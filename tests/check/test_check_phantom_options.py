"""``mcproton check --phantom-from-struct`` and the options of a patient's CT (audit 27 "dead options", F2).

The phantom is built from the structure set's ROI material overrides, air elsewhere, and read with its own exact
calibration, so ``--calibration``, ``--struct-overrides ignore`` and ``--outside-external air`` cannot act on it.
Before 2026-12-07 they were ignored without a word (the MC RT Dose bitwise the default one) while check.json's
settings and the report's Settings table named them as used ("structure set's material overrides: ignore").  Now
they are refused before anything is read, and the record says that the phantom set them."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import FAST, _levels, _tps, base  # noqa: E402,F401  (base: test_check's module fixture)

from mcproton._check.api import check, check_batch  # noqa: E402
from mcproton.errors import CheckInputError  # noqa: E402

CT_OPTIONS = [({"calibration": "dcpt_spr_brain"}, "calibration='dcpt_spr_brain' (--calibration dcpt_spr_brain): its "
                                                  "CT is read with its own exact calibration"),
              ({"struct_overrides": "ignore"}, "struct_overrides='ignore' (--struct-overrides ignore): it is built "
                                               "from the structure set's overrides"),
              ({"outside_external": "air"}, "outside_external='air' (--outside-external air): it is air outside its "
                                            "override ROIs already")]


@pytest.mark.parametrize("kw,words", CT_OPTIONS)
def test_an_option_of_a_ct_is_refused_with_the_phantom_before_anything_is_read(tmp_path, kw, words):
    """Each is refused naming the option, why, and what to do; given a patient folder that does not exist, so the
    refusal came before it was looked at.  check_batch refuses it once, before any patient."""
    with pytest.raises(CheckInputError) as err:
        check(folder=tmp_path / "no_such_patient", beam_model="dcpt_v5", phantom_from_struct=True,
              log=lambda line: None, **kw)
    msg = str(err.value)
    assert msg.startswith("phantom_from_struct (--phantom-from-struct) computes on a phantom built from the "
                          "structure set's ROI material overrides"), msg
    assert words in msg and msg.endswith("leave it out, or give the plan's CT (--ct, without --phantom-from-struct) "
                                         "to compute on the CT with them"), msg
    with pytest.raises(CheckInputError, match=re.escape(words)):
        check_batch(tmp_path / "no_such_folder", tmp_path / "out", log=lambda line: None, phantom_from_struct=True,
                    **kw)
    assert not (tmp_path / "out").exists()


def test_all_three_are_named_at_once_and_the_command_line_exits_2(tmp_path, capsys):
    from mcproton.cli import main

    with pytest.raises(CheckInputError) as err:
        check(folder=tmp_path / "none", beam_model="dcpt_v5", phantom_from_struct=True, log=lambda line: None,
              **{k: v for kw, _ in CT_OPTIONS for k, v in kw.items()})
    assert all(words in str(err.value) for _, words in CT_OPTIONS) and "leave them out" in str(err.value)
    assert main(["check", str(tmp_path / "none"), "--phantom-from-struct", "--struct-overrides", "ignore",
                 "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o")]) == 2
    assert "--struct-overrides ignore" in capsys.readouterr().err


@pytest.mark.parametrize("kw", [{}, {"calibration": None, "struct_overrides": "apply", "outside_external": "ct"}])
def test_the_defaults_are_not_refused(tmp_path, kw):
    """The defaults (also given as such) are what the phantom is: the check goes on (to the missing folder)."""
    with pytest.raises(CheckInputError) as err:
        check(folder=tmp_path / "no_such_patient", beam_model="dcpt_v5", phantom_from_struct=True,
              log=lambda line: None, **kw)
    assert "phantom_from_struct" not in str(err.value)


def water_external(src: Path, dest: Path) -> Path:
    """A copy of the structure set ``src`` at ``dest`` with its External overridden to water (REL_MASS_DENSITY 1.0):
    a phantom can be built from it."""
    rs = shutil.copy(src, dest)
    ds = pydicom.dcmread(rs)
    num = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == "External")
    pp = Dataset()
    pp.ROIPhysicalProperty, pp.ROIPhysicalPropertyValue = "REL_MASS_DENSITY", 1.0
    next(o for o in ds.RTROIObservationsSequence
         if int(o.ReferencedROINumber) == num).ROIPhysicalPropertiesSequence = Sequence([pp])
    ds.save_as(rs)
    return Path(rs)


def test_the_record_says_the_phantom_set_them(base, tmp_path):  # noqa: F811
    """A check on the phantom built from the structure set (its External overridden to water; a short MC):
    check.json's settings and the report's Settings table say that the phantom set the overrides, what lies outside
    the External and the calibration (before: the option's name, as if it had been used), and the MC RT Dose says
    its heterogeneity came from the image and the ROI overrides."""
    from html import escape

    from mcproton._check.api import PHANTOM_SETTING_SOURCES
    from mcproton._check.report import _settings_table

    rs = water_external(base["dir"] / "RS.dcm", tmp_path / "RS.dcm")
    res = check(plan=base["dir"] / "RP.dcm", dose=_tps(base, "rd_phantom", base["blob"]), struct=rs,
                phantom_from_struct=True, beam_model="dcpt_v2", primaries=1500, target_uncertainty=None,
                out=tmp_path / "out", report=False, levels=_levels(), log=lambda m: None, **FAST)
    st = json.loads(Path(res.report_json).read_text())["settings"]
    assert st["phantom_from_struct"] is True and st["calibration_given"] is None
    for key, said in PHANTOM_SETTING_SOURCES.items():
        assert st[f"{key}_source"] == said and said.startswith("--phantom-from-struct: the phantom")
    html = _settings_table(res)
    assert all(escape(said) in html for said in PHANTOM_SETTING_SOURCES.values())
    assert "<td>--struct-overrides</td>" not in html and "<td>the default</td>" not in html
    rd = pydicom.dcmread(tmp_path / "out" / "RD_mc.dcm", stop_before_pixels=True)
    assert list(rd.TissueHeterogeneityCorrection) == ["IMAGE", "ROI_OVERRIDE"]

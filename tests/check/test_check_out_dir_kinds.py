"""``mcproton check --out``: a file of the check's names is an earlier check's only where it is what the check
writes under that name (the identity audit of 2026-12-07, F7, checked for the check's outputs too).

Before, any DICOM file with Manufacturer mcproton and the SeriesDescription of the check's MC dose *or* of its
phantom CT counted: a slice of the check's phantom CT named ``RD_mc.dcm``, or an MC RT Dose inside ``phantom_ct/``,
was moved aside as an earlier check's output and deleted once the new report was complete.  Now ``RD_mc*.dcm``
must be the check's MC RT Dose and ``phantom_ct/`` hold only its phantom's CT slices; anything else is refused,
naming what it is.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mcproton._check.mc_rtdose import MC_SERIES_DESCRIPTION, PHANTOM_SERIES_DESCRIPTION
from mcproton._check.out_dir import OutDirRefused, prepare_out
from mcproton._io.ct import write_ct_series
from mcproton._io.dicom_common import StudyReference
from mcproton._io.rtdose import write_rtdose

NO_INPUTS = SimpleNamespace(plan_path=None, struct_path=None, ct_dir=None, total=None, beams={})


def _phantom_ct(folder: Path) -> list[Path]:
    return write_ct_series(np.zeros((2, 3, 3), np.int16), (5.0, 5.0, 5.0), (0.0, 0.0, 0.0), folder,
                           series_description=PHANTOM_SERIES_DESCRIPTION)


def _mc_dose(path: Path) -> Path:
    return write_rtdose(np.ones((2, 3, 3)), (5.0, 5.0, 5.0), (0.0, 0.0, 0.0), path,
                        study=StudyReference().resolved(), series_description=MC_SERIES_DESCRIPTION)


def test_a_phantom_ct_slice_named_as_the_mc_dose_is_refused(tmp_path):
    out = tmp_path / "chk"
    out.mkdir()
    shutil.copy(_phantom_ct(tmp_path / "made")[0], out / "RD_mc.dcm")
    before = (out / "RD_mc.dcm").read_bytes()
    with pytest.raises(OutDirRefused, match=r"RD_mc.dcm is there and was not written by mcproton check as its MC RT "
                                            r"Dose \(it is a CT slice that mcproton wrote"):
        prepare_out(out, NO_INPUTS, lambda m: None)
    assert (out / "RD_mc.dcm").read_bytes() == before and not list(out.glob("earlier_check_*"))


def test_an_mc_dose_inside_phantom_ct_is_refused(tmp_path):
    out = tmp_path / "chk"
    _phantom_ct(out / "phantom_ct")
    _mc_dose(out / "phantom_ct" / "RD_mc.dcm")
    with pytest.raises(OutDirRefused, match=r"phantom_ct is there and was not written by mcproton check"):
        prepare_out(out, NO_INPUTS, lambda m: None)
    assert (out / "phantom_ct" / "RD_mc.dcm").exists()


def test_an_earlier_checks_mc_dose_and_phantom_are_still_set_aside(tmp_path):
    out = tmp_path / "chk"
    _phantom_ct(out / "phantom_ct")
    _mc_dose(out / "RD_mc.dcm")
    _mc_dose(out / "RD_mc_beam1.dcm")
    said: list[str] = []
    earlier = prepare_out(out, NO_INPUTS, said.append)
    assert earlier.names() == ["RD_mc.dcm", "RD_mc_beam1.dcm", "phantom_ct/"], said
    assert not (out / "RD_mc.dcm").exists() and (earlier.moved_to / "RD_mc.dcm").exists()

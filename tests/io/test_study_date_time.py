"""One study, one StudyDate/StudyTime (the environment audit of 2026-12-06, F7).

Every object took "now" for its StudyDate and StudyTime: in the demo the CT and RT Struct said 094155, the RT Plan
094220 and the RT Dose 094223, all with the same StudyInstanceUID (study-level attributes a PACS or planning system
expects to agree; across midnight the StudyDate differed too), and no TimezoneOffsetFromUTC related the local
times to the UTC date of the HDF5 provenance.  The study's date and time are now set once, when its UIDs are
(StudyReference.resolved), kept by a CT that is read back (StudyReference.from_ct), and written by every object of
the study, with the offset.  The clock is made to move between the writes here.
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pydicom

from mcproton._io import dicom_common
from mcproton.dicom import StudyReference, load_ct_series, write_ct_series, write_rtdose


def test_the_objects_of_one_study_share_its_date_and_time_and_say_their_offset(tmp_path, monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(dicom_common, "now_date_time", lambda: (f"2026120{next(ticks) % 10}", "0941" + "55"))
    study = StudyReference(patient_name="t^t", patient_id="T1").resolved()   # the time of the study: tick 0
    hu = np.zeros((3, 4, 5))
    write_ct_series(hu, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct", study=study)   # written at tick 1
    ct = load_ct_series(tmp_path / "ct")
    write_rtdose(np.ones((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "rd.dcm",
                 study=StudyReference.from_ct(ct))                                       # written at tick 2
    ct0 = pydicom.dcmread(tmp_path / "ct" / "CT_0000.dcm")
    rd = pydicom.dcmread(tmp_path / "rd.dcm")
    assert (ct0.StudyDate, ct0.StudyTime) == (rd.StudyDate, rd.StudyTime) == ("20261200", "094155")
    assert ct0.ContentDate != "20261200"   # the object's own date stays the time it was written
    assert ct0.StudyInstanceUID == rd.StudyInstanceUID
    for ds in (ct0, rd):
        assert re.fullmatch(r"[+-]\d{4}", str(ds.TimezoneOffsetFromUTC)), ds.TimezoneOffsetFromUTC


def test_a_study_without_a_date_gets_the_time_it_is_resolved_and_keeps_a_given_one():
    given = StudyReference(study_date="20200102", study_time="030405").resolved()
    assert (given.study_date, given.study_time) == ("20200102", "030405")
    fresh = StudyReference().resolved()
    assert re.fullmatch(r"\d{8}", fresh.study_date) and re.fullmatch(r"\d{6}", fresh.study_time)
    assert fresh.resolved().study_time == fresh.study_time   # resolved again (another writer): the same


def test_utc_offset_format(monkeypatch):
    monkeypatch.setenv("TZ", "XYZ+13:45")
    import time

    time.tzset()
    try:
        assert dicom_common.utc_offset() == "-1345"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()

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
    monkeypatch.setattr(dicom_common, "now_date_time", lambda offset="": (f"2026120{next(ticks) % 10}", "0941" + "55"))
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


def _ct_in_zone(tmp_path, monkeypatch, zone: str | None):
    """A CT written by a machine at ``zone`` (None: the CT then has no TimezoneOffsetFromUTC), read back."""
    monkeypatch.setattr(dicom_common, "utc_offset", lambda: zone or "+0900")
    write_ct_series(np.zeros((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    if zone is None:
        for f in (tmp_path / "ct").glob("*.dcm"):
            ds = pydicom.dcmread(f)
            del ds.TimezoneOffsetFromUTC
            ds.save_as(f)
    return load_ct_series(tmp_path / "ct")


def test_an_rt_dose_copying_a_ct_study_time_keeps_the_ct_offset_not_this_machines(tmp_path, monkeypatch):
    """A CT written at +0900 and its RT Dose written at -0500: the RT Dose copies the CT's study date and time, so
    it must declare the CT's offset (PS3.3 C.12.1.1.8: one offset for every date and time of the object), and its
    own times are taken in that zone.  It declared this machine's (-0500), which put the study 14 hours later
    (review 2 of 2026-12-06, F1)."""
    import datetime as dt

    ct = _ct_in_zone(tmp_path, monkeypatch, "+0900")
    assert ct.study_timezone == "+0900"
    monkeypatch.setattr(dicom_common, "utc_offset", lambda: "-0500")   # the machine writing the RT Dose
    write_rtdose(np.ones((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "rd.dcm",
                 study=StudyReference.from_ct(ct))
    ct0, rd = pydicom.dcmread(tmp_path / "ct" / "CT_0000.dcm"), pydicom.dcmread(tmp_path / "rd.dcm")
    assert (rd.StudyDate, rd.StudyTime) == (ct0.StudyDate, ct0.StudyTime)
    assert rd.TimezoneOffsetFromUTC == "+0900"
    # the RT Dose's own time is in the CT's zone: the same instant as its time at UTC (no clock needed: both are
    # "now", so they differ by the offset, within the seconds between the two calls)
    content = dt.datetime.strptime(rd.ContentDate + rd.ContentTime, "%Y%m%d%H%M%S")
    utc_now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert abs((content - utc_now) - dt.timedelta(hours=9)) < dt.timedelta(minutes=10)


def test_an_rt_dose_copying_a_ct_study_time_without_an_offset_writes_none(tmp_path, monkeypatch):
    ct = _ct_in_zone(tmp_path, monkeypatch, None)
    assert ct.study_timezone == ""
    monkeypatch.setattr(dicom_common, "utc_offset", lambda: "-0500")
    write_rtdose(np.ones((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "rd.dcm",
                 study=StudyReference.from_ct(ct))
    rd = pydicom.dcmread(tmp_path / "rd.dcm")
    assert "TimezoneOffsetFromUTC" not in rd, rd.TimezoneOffsetFromUTC
    # a study mcproton dates itself gets this machine's offset
    write_rtdose(np.ones((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "rd2.dcm",
                 study=StudyReference(frame_of_reference_uid="1.2.3"))
    assert pydicom.dcmread(tmp_path / "rd2.dcm").TimezoneOffsetFromUTC == "-0500"


def test_now_date_time_at_an_offset():
    import datetime as dt

    date, time = dicom_common.now_date_time("+1345")
    at = dt.datetime.strptime(date + time, "%Y%m%d%H%M%S")
    utc_now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert abs((at - utc_now) - dt.timedelta(hours=13, minutes=45)) < dt.timedelta(minutes=10)


def test_a_study_with_a_date_and_an_empty_time_keeps_the_time_empty(tmp_path, monkeypatch):
    """A CT gives StudyDate but leaves StudyTime (Type 2) empty: its RT Dose wrote the time it was written as the
    study's time (audit 25, F6), so each RT Dose gave the study another time.  Now the StudyTime stays empty."""
    monkeypatch.setattr(dicom_common, "now_date_time", lambda offset="": ("20991231", "235959"))
    write_rtdose(np.ones((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "rd.dcm",
                 study=StudyReference(study_date="20200102", study_time="", study_timezone="+0900",
                                      frame_of_reference_uid="1.2.3"))
    rd = pydicom.dcmread(tmp_path / "rd.dcm")
    assert (rd.StudyDate, rd.StudyTime) == ("20200102", "")
    assert rd.TimezoneOffsetFromUTC == "+0900"
    assert (rd.ContentDate, rd.ContentTime) == ("20991231", "235959")   # the object's own date and time


def test_the_checks_mc_dose_joins_the_tps_dose_study_with_its_date_time_and_offset(tmp_path, monkeypatch):
    """RD_mc.dcm goes into the TPS dose's study (its StudyInstanceUID): it must give that study the date, time and
    offset the TPS dose gives it.  It gave it the date and time of the check and this machine's offset (audit 25, F5:
    StudyDate 20261207 +1400 beside the plan's and TPS dose's 20261205, for one StudyInstanceUID)."""
    from types import SimpleNamespace

    from mcproton._check.mc_rtdose import mc_dose_study

    for zone in ("", "+0100"):
        tps = StudyReference(patient_name="Doe^Jane", patient_id="P1", study_instance_uid="1.2.826.0.1.3680043.9.7",
                             frame_of_reference_uid="1.2.826.0.1.3680043.9.8", study_date="20261205",
                             study_time="093514.395075", study_timezone=zone)
        rd_path = write_rtdose(np.ones((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / f"RD{zone}.dcm",
                               study=tps)
        rp = pydicom.dcmread(rd_path)   # a plan of the same patient and study (its identity is what is read)
        rp.SOPInstanceUID = "1.2.826.0.1.3680043.9.9"
        rp.save_as(tmp_path / "RP.dcm", enforce_file_format=True)
        inp = SimpleNamespace(reference=SimpleNamespace(path=str(rd_path)), plan_path=str(tmp_path / "RP.dcm"),
                              plan=SimpleNamespace(sop_instance_uid=str(rp.SOPInstanceUID)))
        # the check runs on another day, on a machine at +1400
        monkeypatch.setattr(dicom_common, "now_date_time", lambda offset="": ("20261207", "161027"))
        monkeypatch.setattr(dicom_common, "utc_offset", lambda: "+1400")
        study, _ = mc_dose_study(inp)
        write_rtdose(np.ones((3, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "RD_mc.dcm", study=study)
        mc = pydicom.dcmread(tmp_path / "RD_mc.dcm")
        assert mc.StudyInstanceUID == "1.2.826.0.1.3680043.9.7"
        assert (mc.StudyDate, mc.StudyTime) == ("20261205", "093514.395075")
        assert mc.get("TimezoneOffsetFromUTC", "") == zone
        monkeypatch.undo()

"""One value of a multi-valued numeric attribute that is NaN, infinite or not a number ("nan\\0\\0" in
ImagePositionPatient, "inf\\1" in PixelSpacing, a NaN in an RT Dose's GridFrameOffsetVector or a plan's
ScanSpotPositionMap; "1,5" with a decimal comma, "abc"), in a CT slice, an RT Dose and an RT Ion Plan.

The random mutation files (test_dicom_mutations.py, test_rtdose_rtstruct_mutations.py) check that such files are
refused with a one-line DicomInputError; here each case is written on purpose and the message must also name the
attribute, the file, which value is wrong (for a multi-valued attribute) and what to do ("... again").  Before:
"missing or malformed geometry attributes (could not convert string to float: 'abc')" for an RT Dose (no attribute),
"ScanSpotPositionMap holds NaN/inf" for a plan (no value, nothing to do), "must hold 3 finite numbers" for a CT
(nothing to do), "malformed RT Ion Plan (ValueError: invalid literal for int() ...)" for an IS "nan".
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config as pydicom_config

from mcproton._io.ct import load_ct_series, write_ct_series
from mcproton._io.dicom_common import PHANTOM_STUDY
from mcproton._io.rtdose import read_rtdose, write_rtdose
from mcproton._io.rtplan import load_rtplan

from dicom_fuzz_harness import refusal, set_text, to_bytes

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"
PLAN = DATA / "RN_plan02_mono.dcm"   # Eclipse, one beam, one layer: ScanSpotPositionMap is FL, IsocenterPosition DS

CT_CASES = [("ImagePositionPatient", 0, "nan"), ("ImagePositionPatient", 2, "inf"), ("ImagePositionPatient", 1, "abc"),
            ("PixelSpacing", 0, "inf"), ("PixelSpacing", 1, "1,5"), ("ImageOrientationPatient", 4, "nan")]
DOSE_CASES = [("GridFrameOffsetVector", 2, "nan"), ("GridFrameOffsetVector", 1, "abc"),
              ("ImagePositionPatient", 0, "nan"), ("ImagePositionPatient", 1, "abc"), ("PixelSpacing", 0, "inf"),
              ("ImageOrientationPatient", 4, "-inf"), ("DoseGridScaling", 0, "nan"), ("DoseGridScaling", 0, "1,5")]
# (where in the plan, keyword, value index, text or a float for an FL attribute)
PLAN_CASES = [("cp0", "ScanSpotPositionMap", 1, math.nan), ("cp0", "ScanSpotPositionMap", 0, math.inf),
              ("cp0", "ScanSpotMetersetWeights", 2, math.nan), ("cp0", "IsocenterPosition", 1, "nan"),
              ("cp0", "IsocenterPosition", 0, "abc"), ("beam", "VirtualSourceAxisDistances", 1, math.nan),
              ("refbeam", "ReferencedBeamNumber", 0, "nan"), ("cp0", "NumberOfPaintings", 0, "nan")]


def _check_message(msg: str, keyword: str, path: Path, index: int, n_values: int) -> None:
    assert keyword in msg and path.name in msg, msg
    if n_values > 1:
        assert f"value {index + 1} of {n_values}" in msg, msg
    assert "again" in msg, msg   # what to do: export it again
    assert "could not convert" not in msg and "invalid literal" not in msg, msg


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory):
    d = tmp_path_factory.mktemp("ct_ref")
    hu = np.random.default_rng(3).integers(-1000, 1500, (4, 6, 5)).astype(np.int16)
    paths = write_ct_series(hu, (1.2, 1.0, 2.5), (-3.0, 4.0, 10.0), d,
                            study=PHANTOM_STUDY.replace(frame_of_reference_uid="1.2.3.4"))
    return {p.name: p.read_bytes() for p in paths}


@pytest.mark.parametrize("keyword,index,text", CT_CASES)
def test_a_ct_slice(ct_series, tmp_path, keyword, index, text):
    victim = sorted(ct_series)[1]
    for name, blob in ct_series.items():
        if name == victim:
            ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(blob))
            n = ds[keyword].VM
            with pydicom_config.disable_value_validation():
                blob = set_text(ds, ds, keyword, index, text)
        (tmp_path / name).write_bytes(blob)
    _check_message(refusal(load_ct_series, tmp_path), keyword, tmp_path / victim, index, n)


@pytest.fixture(scope="module")
def dose_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("rd_ref")
    return write_rtdose(np.linspace(0.0, 2.0, 5 * 4 * 3).reshape(5, 4, 3), (2.0, 2.5, 3.0), (-3.0, 4.0, 10.0),
                        d / "RD.dcm", study=PHANTOM_STUDY.replace(frame_of_reference_uid="1.2.3.4"))


@pytest.mark.parametrize("keyword,index,text", DOSE_CASES)
def test_an_rt_dose(dose_file, tmp_path, keyword, index, text):
    ds = pydicom.dcmread(dose_file)
    n = ds[keyword].VM
    with pydicom_config.disable_value_validation():
        data = set_text(ds, ds, keyword, index, text)
    p = tmp_path / "RD_damaged.dcm"
    p.write_bytes(data)
    _check_message(refusal(read_rtdose, p), keyword, p, index, n)


@pytest.mark.parametrize("where,keyword,index,value", PLAN_CASES)
def test_an_rt_ion_plan(tmp_path, where, keyword, index, value):
    ds = pydicom.dcmread(PLAN)
    beam = ds.IonBeamSequence[0]
    item = {"cp0": beam.IonControlPointSequence[0], "beam": beam,
            "refbeam": ds.FractionGroupSequence[0].ReferencedBeamSequence[0]}[where]
    n = item[keyword].VM
    with pydicom_config.disable_value_validation():
        if isinstance(value, float):     # FL: the number itself
            vals = list(item[keyword].value)
            vals[index] = value
            item[keyword].value = vals
            data = to_bytes(ds)
        else:
            data = set_text(ds, item, keyword, index, value)
    p = tmp_path / "RP_damaged.dcm"
    p.write_bytes(data)
    _check_message(refusal(load_rtplan, p), keyword, p, index, n)

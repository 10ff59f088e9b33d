"""Each phantom is a patient of its own in DICOM (phantom audit F6.1): before, every phantom CT was PatientID
MCPROTON with no sex or age, so a planning system or PACS filed a 1-year-old girl and a 15-year-old boy as one
patient."""
from __future__ import annotations

import pydicom
import pytest

from mcproton.geometry import slab_phantom
from mcproton.phantoms import make_head_phantom
from mcproton.phantoms.dicom_export import dicom_age, export_phantom, write_phantom_ct


def test_two_phantoms_are_two_patients(tmp_path):
    seen = {}
    for age, sex in ((1, "female"), (15, "male")):
        g = make_head_phantom(age, 8.0, sex=sex, region="head")
        out = tmp_path / f"{age}{sex}"
        export_phantom(g, out, hdf5=False)
        ct = pydicom.dcmread(next((out / "ct").iterdir()), stop_before_pixels=True)
        rs = pydicom.dcmread(out / "rtstruct.dcm", stop_before_pixels=True)
        for ds in (ct, rs):   # the structure set the CT's patient
            seen.setdefault((age, sex), set()).add((ds.PatientID, ds.PatientSex, ds.PatientAge, str(ds.PatientName)))
    assert seen == {(1, "female"): {("MCPROTON-1Y-F", "F", "001Y", "mcproton^phantom")},
                    (15, "male"): {("MCPROTON-15Y-M", "M", "015Y", "mcproton^phantom")}}


@pytest.mark.parametrize("age, want", [(0.5, "006M"), (1, "001Y"), (5, "005Y"), (5.5, "005Y"), (18, "018Y")])
def test_dicom_age(age, want):
    assert dicom_age(age) == want


def test_a_geometry_without_age_keeps_the_plain_phantom_patient(tmp_path):
    g = slab_phantom([("water", 8.0)], (16.0, 16.0), 4.0)
    write_phantom_ct(g, tmp_path / "ct")
    ds = pydicom.dcmread(next((tmp_path / "ct").iterdir()), stop_before_pixels=True)
    assert ds.PatientID == "MCPROTON" and "PatientAge" not in ds

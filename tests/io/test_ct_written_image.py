"""write_ct_series_image: the CTImage of a CT series as written is the one load_ct_series reads back from its files,
field for field and the HU bit for bit, so that ``mcproton check --phantom-from-struct`` can convert the phantom it
writes without reading it back (audit 27 hosttime F3; audit 28): any field the reader derives otherwise (a DS
string's rounding, the slice spacing from the positions, the patient's name) would make the two geometries, and so
the MC doses, differ."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mcproton._io.ct import CTImage, load_ct_series, write_ct_series_image
from mcproton._io.dicom_common import PHANTOM_STUDY, StudyReference


def assert_same_image(a: CTImage, b: CTImage) -> None:
    """Every field of the two CT images equal, the HU array's dtype and bits too."""
    for f in dataclasses.fields(CTImage):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "hu_zyx":
            assert va.dtype == vb.dtype and va.shape == vb.shape and np.array_equal(va, vb), f.name
        else:
            assert va == vb and type(va) is type(vb), (f.name, va, vb)


@pytest.mark.parametrize("shape,vs,org,study", [
    # the phantom of --phantom-from-struct: half of a 2 mm TPS grid, an origin of many digits (its DS string rounds it)
    ((7, 5, 6), (1.0, 1.0, 1.0), (-102.83333333333334, -96.1234567891234, -55.49999999999999),
     PHANTOM_STUDY.replace(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.99")),
    # spacings whose DS strings round, and whose slice steps the reader takes as the median of the positions' steps
    ((9, 4, 3), (0.9765625, 1.171875 / 3, 2.5 / 3), (-249.51171875, -180.1, 1e-7), None),
    # one slice: its spacing from SliceThickness; a patient of another name, birth date, sex and position
    ((1, 3, 2), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0),
     StudyReference(patient_name="Müller^Jörg", patient_id="Ä-12", patient_birth_date="20190304", patient_sex="M",
                    patient_position="FFS")),
])
def test_the_written_image_is_the_one_read_back(tmp_path, shape, vs, org, study):
    rng = np.random.default_rng(7)
    hu = rng.integers(-1000, 3000, size=shape).astype(np.int16)
    hu[0, 0, 0] = -1000   # air somewhere, as in every phantom
    mem = write_ct_series_image(hu, vs, org, tmp_path / "ct", study=study, series_description="phantom",
                                image_comments="written with calibration x")
    assert_same_image(mem, load_ct_series(tmp_path / "ct"))
    assert np.array_equal(mem.hu_zyx, hu)


def test_float_hu_are_the_integers_written(tmp_path):
    """HU given as floats are written rounded to integers (write_ct_series): the image holds those integers."""
    hu = np.array([[[-1000.4, 12.5], [13.5, 3000.49]]] * 2)
    mem = write_ct_series_image(hu, (1.5, 1.5, 2.0), (-1.0, 2.0, 3.0), tmp_path / "ct")
    assert_same_image(mem, load_ct_series(tmp_path / "ct"))


def test_its_conversion_memory_is_checked_as_the_readers(tmp_path, monkeypatch):
    """The check's conversion of the CT in memory (compute.build_geometry, --phantom-from-struct) is refused where its
    memory is not there, naming the series' folder, as the reader refuses it (before 2026-12-07 the phantom was read
    back, and the reader checked it)."""
    from mcproton._check.compute import build_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton._io.errors import McprotonEnvironmentError
    from mcproton._io.slab_ct import slab_calibration
    from mcproton._run import inputs
    from mcproton.materials import get_material

    cal, codes = slab_calibration([(get_material("water"), 1.0)], name="test")
    hu = np.full((4, 6, 6), -1000, np.int16)
    hu[1:3, 2:4, 2:4] = codes[0]
    mem = write_ct_series_image(hu, (1.0, 1.0, 1.0), (-2.5, -2.5, 0.0), tmp_path / "ph")
    ref = TPSDose("RD.dcm", np.zeros((2, 3, 3)), (2.0, 2.0, 2.0), (-2.0, -2.0, 0.5), "", "PHYSICAL", "PLAN", None)
    g = build_geometry(mem, cal, ref)[0]
    assert g.shape_zyx == (2, 3, 3)
    monkeypatch.setattr(inputs, "available_memory", lambda: inputs.Memory(10.0, 0.0, "the test's limit"))
    with pytest.raises(McprotonEnvironmentError, match=rf"the CT series in {tmp_path / 'ph'} \(4 slices of 6 x 6 = "
                       r"144 voxels.*converted to the transport geometry"):
        build_geometry(mem, cal, ref)

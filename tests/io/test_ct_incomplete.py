"""A CT missing slices the structure set was drawn on (the pacs audit, F6): a partial transfer (an interrupted C-MOVE,
a copy cut short) leaves a complete-looking, shorter CT whose spacing is even, and the DVH of an ROI reaching beyond
it held only the part inside, without a word.  Now the structure set's ContourImageSequence is compared with the
slices read: a warning names how many are missing and the ROIs whose contours lie beyond the CT."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mcproton import McprotonRuntimeWarning
from mcproton._io.ct import load_ct_series, write_ct_series_uids
from mcproton._io.dicom_common import CT_IMAGE_STORAGE, StudyReference
from mcproton._io.rtstruct import warn_missing_ct_slices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_factories import make_rtstruct, rect_contour, save  # noqa: E402

FOR = "1.2.826.0.1.3680043.8.498.77017"


def _case(tmp_path: Path, *, per_contour: bool = False) -> tuple[Path, Path, list[Path]]:
    """A 12-slice CT (z 0..22 mm) and a structure set drawn on every slice: a CTV on z 0..10, a body on all."""
    hu = np.full((12, 20, 20), -1000, np.int16)
    hu[:, 4:16, 4:16] = 0
    paths, sops, zs = write_ct_series_uids(hu, (2.0, 2.0, 2.0), (-19.0, -19.0, 0.0), tmp_path / "ct",
                                           study=StudyReference(frame_of_reference_uid=FOR))
    series = str(load_ct_series(tmp_path / "ct").series_instance_uid)
    ds = make_rtstruct({"CTV": [rect_contour(-5, 5, -5, 5, z) for z in zs[:6]],
                        "body": [rect_contour(-11, 11, -11, 11, z) for z in zs]}, for_uid=FOR)

    def refs(uids):
        out = []
        for u in uids:
            i = Dataset()
            i.ReferencedSOPClassUID = CT_IMAGE_STORAGE
            i.ReferencedSOPInstanceUID = u
            out.append(i)
        return Sequence(out)

    se = Dataset()
    se.SeriesInstanceUID = series
    if per_contour:   # the series-level list left out (optional since DICOM 2019): each contour's own
        for rc, n in zip(ds.ROIContourSequence, (6, 12)):
            for c, u in zip(rc.ContourSequence, sops[:n]):
                c.ContourImageSequence = refs([u])
    else:
        se.ContourImageSequence = refs(sops)
    st = Dataset()
    st.ReferencedSOPInstanceUID = "1.2.3"
    st.RTReferencedSeriesSequence = Sequence([se])
    ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence = Sequence([st])
    save(ds, tmp_path / "RS.dcm")
    return tmp_path / "ct", tmp_path / "RS.dcm", paths


@pytest.mark.parametrize("per_contour", [False, True])
def test_slices_the_structure_set_was_drawn_on_missing_from_the_ct_are_warned_about(tmp_path, per_contour):
    ct_dir, rs, paths = _case(tmp_path, per_contour=per_contour)
    with warnings.catch_warnings():   # the whole CT: silent
        warnings.simplefilter("error")
        warn_missing_ct_slices(rs, load_ct_series(ct_dir), "ct")
    for p in paths[:3]:               # the caudal 3 slices lost in the transfer
        p.unlink()
    with pytest.warns(McprotonRuntimeWarning, match=r"3 of the 12 CT slices the structure set was drawn on .* are not "
                                                    r"in the CT read \(ct: 9 slices, z 6.0 to 22.0 mm\): the CT is "
                                                    r"incomplete .*'CTV' \(3 of its 6 contours, z 0.0 to 4.0 mm\), "
                                                    r"'body' \(3 of its 12 contours.*their DVHs hold only the part"):
        warn_missing_ct_slices(rs, load_ct_series(ct_dir), "ct")


def test_mcproton_run_says_so(tmp_path):
    """`mcproton run --check-config` with plan.rtstruct: the same warning, recorded with the run's warnings."""
    from dicom_factories import make_plan, spot_grid

    from mcproton._io.errors import recording_warnings
    from mcproton.cli import main

    ct_dir, rs, paths = _case(tmp_path)
    for p in paths[-2:]:
        p.unlink()
    save(make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 6.0), "meterset": 10.0,
                     "layers": [(100.0, spot_grid(3, 4.0), [1.0] * 9)]}], frame_of_reference_uid=FOR),
         tmp_path / "RP.dcm")
    cfg = tmp_path / "job.toml"
    cfg.write_text('[run]\nprimaries = 1000\nthreads = 1\n[phantom]\ntype = "ct"\nct_dir = "ct"\n[plan]\n'
                   'rtplan = "RP.dcm"\nrtstruct = "RS.dcm"\nbeam_model = "dcpt_v5"\n[output]\nplot = false\n')
    with pytest.warns(McprotonRuntimeWarning), recording_warnings() as said:
        main(["run", str(cfg), "--check-config"])
    assert any("2 of the 12 CT slices the structure set was drawn on" in w and "'body' (2 of its 12" in w
               for w in said), said


def test_a_complete_ct_written_again_with_new_uids_is_not_called_incomplete(tmp_path):
    """Audit 18b F4: the DCPT head phantom's SPR map holds all 177 slices of the series, written with new SOP Instance
    UIDs; "177 of the 177 CT slices ... are not in the CT read: the CT is incomplete" blamed a partial transfer.  Now
    a series whose slices all carry other UIDs, with every contour inside the CT, is named a re-written series."""
    import pydicom
    from pydicom.uid import generate_uid

    ct_dir, rs, paths = _case(tmp_path)
    for p in paths:   # the same slices, the same series, new instance UIDs
        ds = pydicom.dcmread(p)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(p)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        warn_missing_ct_slices(rs, load_ct_series(ct_dir), "ct")
    text = [str(w.message) for w in got if issubclass(w.category, McprotonRuntimeWarning)]
    assert len(text) == 1, text
    assert "carry other SOP Instance UIDs than the 12 slices" in text[0] and "re-written or derived" in text[0], text
    assert "incomplete" not in text[0], text
    for p in paths[:3]:   # ... and cut short as well: the contours beyond it are the missing-slices warning
        p.unlink()
    with pytest.warns(McprotonRuntimeWarning, match=r"12 of the 12 CT slices .* the CT is incomplete .*'CTV' \(3 of"):
        warn_missing_ct_slices(rs, load_ct_series(ct_dir), "ct")

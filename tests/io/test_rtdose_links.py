"""`mcproton run` on a CT + RT Ion Plan: the RT Dose belongs to the CT's patient and study and references the
plan (a planning system files it with them); a plan made on another CT (another FrameOfReferenceUID) is refused
before any transport instead of putting the dose in the wrong place."""
from __future__ import annotations

import numpy as np
import pydicom

from dicom_factories import make_plan, save


def _case(tmp_path, plan_frame: str | None):
    from mcproton.dicom import StudyReference, write_ct_series

    ct_frame = "1.2.826.0.1.3680043.8.498.77"
    write_ct_series(np.zeros((16, 16, 16)), (5.0, 5.0, 5.0), (-37.5, -37.5, -37.5), tmp_path / "ct",
                    study=StudyReference(frame_of_reference_uid=ct_frame, patient_name="Child^Test",
                                         patient_id="PAED-042", patient_position="HFS",
                                         study_instance_uid="1.2.826.0.1.3680043.8.498.78"))
    plan = make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0),
                       "layers": [(70.0, [(0.0, 0.0)], [1.0])], "meterset": 5.0}],
                     frame_of_reference_uid=plan_frame or ct_frame, patient_id="PAED-042", patient_name="Child^Test")
    save(plan, tmp_path / "RP.dcm")
    (tmp_path / "run.toml").write_text('[run]\nprimaries = 1000\nbackend = "cpu"\n\n[phantom]\ntype = "ct"\n'
                                       'ct_dir = "ct"\n\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n\n'
                                       '[output]\nplot = false\n')
    return tmp_path / "run.toml", plan


def test_rtdose_names_the_patient_study_and_plan(tmp_path, capsys):
    from mcproton.cli import main

    cfg, plan = _case(tmp_path, None)
    rd = tmp_path / "RD.dcm"
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(rd), "--quiet"]) == 0
    capsys.readouterr()
    ds = pydicom.dcmread(rd)
    assert str(ds.PatientName) == "Child^Test" and ds.PatientID == "PAED-042"
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.78"
    assert ds.FrameOfReferenceUID == "1.2.826.0.1.3680043.8.498.77"
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert "placeholder" not in str(ds.DoseComment)


def test_plan_on_another_frame_of_reference_is_refused(tmp_path, capsys):
    from mcproton.cli import main

    cfg, _ = _case(tmp_path, "1.2.826.0.1.3680043.8.498.99")
    out = tmp_path / "o.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "FrameOfReferenceUID" in err and "plan.allow_other_frame" in err and "498.99" in err, err
    assert not out.exists()
    rd = tmp_path / "RD.dcm"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "plan.allow_other_frame=true",
                 "--rtdose", str(rd)]) == 0
    assert out.exists()
    # the override is recorded, and the RT Dose is not an ordinary one (API audit 22, F1: as simulate's allow=)
    from mcproton import DoseResult

    assert DoseResult.load(out).provenance["overrides"] == ["other_frame"]
    ds = pydicom.dcmread(rd)
    assert ds.DoseComment.startswith("OVERRIDE frame; ") and ds.SeriesDescription.endswith("; OVERRIDE frame")


def test_rtdose_rbe_weighted_and_bad_output_keys(tmp_path, capsys):
    """output.rbe = 1.1 writes RBE x dose as DoseType EFFECTIVE; a misspelt output.dose_to or an implausible RBE
    is refused instead of silently writing another dose."""
    from mcproton.cli import main
    from mcproton.dicom import read_rtdose

    cfg, _ = _case(tmp_path, None)
    phys, eff = tmp_path / "RDp.dcm", tmp_path / "RDe.dcm"
    assert main(["run", str(cfg), "--out", str(tmp_path / "p.h5"), "--rtdose", str(phys), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "e.h5"), "--rtdose", str(eff), "--quiet",
                 "--set", "output.rbe=1.1"]) == 0
    capsys.readouterr()
    p, e = read_rtdose(phys), read_rtdose(eff)
    assert p.dose_type == "PHYSICAL" and e.dose_type == "EFFECTIVE"
    assert np.allclose(e.dose_gy_zyx, 1.1 * p.dose_gy_zyx, rtol=0, atol=2e-5 * e.dose_gy_zyx.max())
    for sets, msg in ((['output.dose_to="Water"'], "output.dose_to"), (["output.rbe=11"], "output.rbe")):
        args = ["run", str(cfg), "--out", str(tmp_path / "x.h5"), "--quiet"]
        for s in sets:
            args += ["--set", s]
        assert main(args) == 2
        assert msg in capsys.readouterr().err


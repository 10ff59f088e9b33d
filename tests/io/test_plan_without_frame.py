"""A plan that gives no FrameOfReferenceUID (0020,0052): the Frame of Reference module is optional (U) in the RT Ion
Plan IOD, and an anonymiser may strip it.  Before (audit 24 swallow, F1) ``mcproton run`` and ``simulate`` computed
it on any CT without a word, while the same plan with its UID was refused on a CT of another frame.  Now it is
linked to the CT through what the inputs say (the structure set it names, given as plan.rtstruct, in the CT's
frame: a note says so), else refused unless plan.allow_other_frame = true (simulate: allow=("other_frame",)),
whose outputs say OVERRIDE.  ``mcproton check`` links it by the TPS dose: tests/check/test_check_pairing.py."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_factories import make_plan, save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
from test_check import FOR, _write_rs   # noqa: E402  (an RT Struct in frame FOR: a box PTV and the External)

RS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def _case(tmp_path: Path, *, names: str | None = None, rtstruct: bool = False) -> Path:
    """A water CT in frame FOR, a one-beam plan without FrameOfReferenceUID (naming the structure set ``names``
    in its ReferencedStructureSetSequence: "RS" for the RS.dcm written here, another UID, or None for none), and
    the config (``rtstruct``: with plan.rtstruct = "RS.dcm")."""
    from mcproton.dicom import StudyReference, write_ct_series

    hu = np.full((12, 24, 24), -1000.0)
    hu[:, 2:-2, 2:-2] = 0.0
    write_ct_series(hu, (4.0, 4.0, 4.0), (-46.0, -46.0, -22.0), tmp_path / "ct",
                    study=StudyReference(frame_of_reference_uid=FOR, patient_position="HFS"))
    _write_rs(tmp_path / "RS.dcm", None)
    ds = make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}])
    del ds.FrameOfReferenceUID
    if names is not None:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = RS_SOP_CLASS
        ref.ReferencedSOPInstanceUID = pydicom.dcmread(tmp_path / "RS.dcm").SOPInstanceUID if names == "RS" else names
        ds.ReferencedStructureSetSequence = pydicom.Sequence([ref])
    save(ds, tmp_path / "RP.dcm")
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nprimaries = 300\nbatches = 2\nbackend = "cpu"\nthreads = 1\n\n[phantom]\ntype = "ct"\n'
                   'ct_dir = "ct"\n\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n'
                   + ('rtstruct = "RS.dcm"\n' if rtstruct else "") + '\n[output]\nplot = false\n')
    return cfg


def _run(cfg: Path, *extra: str) -> int:
    from mcproton.cli import main

    return main(["run", str(cfg), "--out", str(cfg.parent / "o.h5"), "--quiet", "--no-checkpoint", *extra])


@pytest.mark.parametrize("names, rtstruct, why", [
    (None, False, "and no plan.rtstruct links it to this CT: "),
    ("RS", False, "and no plan.rtstruct links it to this CT (the plan names the structure set "),
    ("1.2.826.0.1.3680043.8.498.31", True, "is not the structure set it names (1.2.826.0.1.3680043.8.498.31)"),
    (None, True, "is not the structure set it names (it names none: no ReferencedStructureSetSequence)")])
def test_a_plan_without_a_frame_that_nothing_links_to_the_ct_is_refused(tmp_path, capsys, names, rtstruct, why):
    cfg = _case(tmp_path, names=names, rtstruct=rtstruct)
    assert _run(cfg, "--check-config") == 2
    err = capsys.readouterr().err
    assert f"plan.rtplan {tmp_path / 'RP.dcm'} (beam(s) '1:F1') gives no FrameOfReferenceUID (0020,0052)" in err, err
    assert why in err and f"nothing shows that it was made on this CT (FrameOfReferenceUID {FOR})" in err, err
    assert "the dose in the wrong place" in err, err
    for fix in ("export the plan again with its FrameOfReferenceUID",
                "give as plan.rtstruct the structure set the plan names",
                "set plan.allow_other_frame = true if the plan is known to be of this CT"):
        assert fix in err, err
    assert not (tmp_path / "o.h5").exists()


def test_a_plan_without_a_frame_linked_by_the_structure_set_it_names_runs_and_says_so(tmp_path, capsys):
    from mcproton import DoseResult

    cfg = _case(tmp_path, names="RS", rtstruct=True)
    sop = pydicom.dcmread(tmp_path / "RS.dcm").SOPInstanceUID
    assert _run(cfg) == 0
    err = capsys.readouterr().err
    assert (f"mcproton: note: the plan gives no FrameOfReferenceUID (0020,0052); it is linked to the CT because the "
            f"plan names (ReferencedStructureSetSequence) plan.rtstruct {tmp_path / 'RS.dcm'} (SOPInstanceUID {sop}), "
            f"whose contours lie in the CT's frame of reference {FOR}") in err, err
    assert DoseResult.load(tmp_path / "o.h5").provenance["overrides"] == []   # an ordinary dose


def test_plan_allow_other_frame_runs_it_with_a_warning_and_override(tmp_path):
    from mcproton import DoseResult

    cfg = _case(tmp_path)
    rd = tmp_path / "RD.dcm"
    assert _run(cfg, "--set", "plan.allow_other_frame=true", "--rtdose", str(rd)) == 0
    res = DoseResult.load(tmp_path / "o.h5")
    assert res.provenance["overrides"] == ["other_frame"]
    said = [w for w in res.provenance["warnings"] if "gives no FrameOfReferenceUID (0020,0052)" in w]
    assert len(said) == 1 and said[0].endswith("; run anyway (plan.allow_other_frame = true: the outputs say "
                                               "OVERRIDE)"), res.provenance["warnings"]
    ds = pydicom.dcmread(rd)
    assert ds.DoseComment.startswith("OVERRIDE frame; ") and "or the plan gives none" in ds.ImageComments


def test_simulate_refuses_a_plan_beam_without_a_frame_on_a_ct_unless_allowed(tmp_path):
    """simulate: the same refusal (a script has no plan.rtstruct to link it); allow=("other_frame",) passes it,
    recorded as OVERRIDE.  Not on the CT mcproton writes for the plan (slab_ct: its own frame) nor on a phantom."""
    from mcproton import RunSettings, box_phantom, simulate
    from mcproton.config import ConfigError
    from mcproton.dicom import HUCalibration, StudyReference, load_beam_model, load_ct_series, load_rtplan, \
        plan_to_beams

    _case(tmp_path)
    plan = load_rtplan(tmp_path / "RP.dcm")
    assert plan.frame_of_reference_uid == ""
    (beam,) = plan_to_beams(plan, load_beam_model("dcpt_v2"))
    g = HUCalibration.load("schneider2000").to_geometry(load_ct_series(tmp_path / "ct"))
    tiny = RunSettings(primaries=200, batches=2, backend="cpu", threads=1, seed=1)
    with pytest.raises(ConfigError) as exc:
        simulate(g, beam, tiny)
    m = str(exc.value)
    assert m.startswith("simulate: the RT Ion Plan (beam(s) '1:F1') gives no FrameOfReferenceUID (0020,0052): "
                        f"nothing shows that it was made on this CT (FrameOfReferenceUID {FOR})"), m
    assert 'pass allow=("other_frame",) to simulate' in m and "plan.allow_other_frame" not in m, m
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        r = simulate(g, beam, tiny, allow=("other_frame",))
    assert r.provenance["overrides"] == ["other_frame"]
    assert any("gives no FrameOfReferenceUID" in str(w.message) for w in said)
    slab = box_phantom("water", (40.0, 40.0, 40.0), (4.0, 4.0, 4.0))
    for other in (slab, None):
        if other is None:   # the slab CT mcproton wrote for the plan: a frame of its own, not the plan's
            other = box_phantom("water", (40.0, 40.0, 40.0), (4.0, 4.0, 4.0))
            other.study = StudyReference(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.5", written_for_plan=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert simulate(other, beam, tiny).provenance["overrides"] == []

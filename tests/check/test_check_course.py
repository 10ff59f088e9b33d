"""``mcproton check`` of a folder holding a treatment course (audit 18, "course": F1, F2, F9): which plan is checked
and what the check says of it.  A REJECTED, UNAPPROVED or verification plan is warned of; a newer version of the
checked plan in the folder (another plan naming it as its PREDECESSOR) is warned of, and refused in ``--batch``; the
"N RT Plans" refusal lists what a physicist chooses by; a CT series that the structure set was not drawn on is a
warning and the first diagnostic of a failed range or dose level; a second structure set of the plan's frame that
the plan does not name is skipped and named.  The patients are the small synthetic folders of test_check_pairing.py;
only the pairing (``gather``) runs: no transport.
"""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_batch import Calls
from test_check_pairing import _gather, _plan, _rd, _refused, _rs, _struct_drawn_on, make_patient

from mcproton._check import api
from mcproton._check.inputs import CheckInputError, refusing_superseded_plans
from mcproton.errors import McprotonWarning


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> tuple[Path, str]:
    """The small patient folder of test_check_pairing.py, built once, and its plan's SOPInstanceUID."""
    d = tmp_path_factory.mktemp("course") / "patient"
    return d, make_patient(d)


@pytest.fixture
def folder(patient, tmp_path) -> Path:
    return Path(shutil.copytree(patient[0], tmp_path / "patient"))


def _edit(path: Path, **attrs) -> None:
    ds = pydicom.dcmread(path)
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path)


def _replan(folder: Path, old_uid: str, relation: str = "PREDECESSOR", name: str = "RP_v2.dcm") -> str:
    """A re-plan ``name`` (APPROVED, label 'test') whose ReferencedRTPlanSequence names ``old_uid``."""
    uid = _plan(folder / name)
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.8"
    ref.ReferencedSOPInstanceUID, ref.RTPlanRelationship = old_uid, relation
    _edit(folder / name, ApprovalStatus="APPROVED", PlanIntent="CURATIVE", RTPlanDate="20261206",
          ReferencedRTPlanSequence=pydicom.Sequence([ref]))
    return uid


def _said(f: Path, **kw) -> tuple[list[str], object]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        inp = _gather(f, **kw)
    return [str(x.message) for x in w if issubclass(x.category, McprotonWarning)], inp


# ---- F1: the checked plan's approval status and intent
@pytest.mark.parametrize("attrs, says", [
    ({"ApprovalStatus": "REJECTED"}, "is REJECTED (ApprovalStatus): it will not be delivered"),
    ({"ApprovalStatus": "UNAPPROVED"}, "is UNAPPROVED (ApprovalStatus): not approved for treatment yet"),
    ({"ApprovalStatus": "APPROVED", "PlanIntent": "VERIFICATION"}, "has PlanIntent VERIFICATION: not a plan to "
                                                                   "treat the patient with"),
])
def test_a_plan_not_approved_or_not_for_treatment_is_warned_of(folder, attrs, says):
    """Before: a REJECTED plan was checked and passed without a word (audit 18 course F1)."""
    _edit(folder / "RP.dcm", **attrs)
    said, _ = _said(folder)
    assert [w for w in said if says in w and "plan RP.dcm ('test')" in w], said


def test_an_approved_plan_or_one_without_approval_status_is_not_warned_of(folder):
    said, _ = _said(folder)   # the factory writes no ApprovalStatus (as OpenTPS)
    assert not [w for w in said if "ApprovalStatus" in w or "PlanIntent" in w], said
    _edit(folder / "RP.dcm", ApprovalStatus="APPROVED", PlanIntent="CURATIVE")
    said, _ = _said(folder)
    assert not [w for w in said if "ApprovalStatus" in w or "PlanIntent" in w], said


# ---- F1: a newer version of the checked plan in the folder
def test_a_newer_version_without_its_dose_is_warned_of_and_named_in_the_pairing(folder, patient):
    """RP.dcm (REJECTED) has its doses, its re-plan RP_v2.dcm (APPROVED, PREDECESSOR -> RP.dcm) none yet: the old
    plan is checked (the doses say so), and the check says that the newer version was not checked."""
    _edit(folder / "RP.dcm", ApprovalStatus="REJECTED")
    _replan(folder, patient[1])
    said, inp = _said(folder)
    assert Path(inp.plan_path).name == "RP.dcm"
    newer = [w for w in said if "newer version" in w]
    assert len(newer) == 1 and "RP_v2.dcm ('test', ApprovalStatus APPROVED" in newer[0] and "PREDECESSOR" in newer[0] \
        and "was not checked" in newer[0], said
    assert any("newer version" in s and "RP_v2.dcm" in s for s in inp.pairing), inp.pairing
    # --plan given: the same warning (the user chose the old plan, and is told)
    said, _ = _said(folder, plan=folder / "RP.dcm")
    assert any("newer version" in w for w in said), said


@pytest.mark.parametrize("relation, newer", [("PREDECESSOR", True), ("REVISION", True), ("VERIFIED_PLAN", False),
                                             ("ALTERNATIVE", False)])
def test_only_a_predecessor_or_revision_relation_makes_a_newer_version(folder, patient, relation, newer):
    """A verification plan names the clinical plan as VERIFIED_PLAN, an alternative as ALTERNATIVE: not newer
    versions of it."""
    _replan(folder, patient[1], relation)
    said, _ = _said(folder)
    assert any("newer version" in w for w in said) == newer, said


def test_the_batch_refuses_a_plan_whose_newer_version_is_in_the_folder(folder, patient):
    _replan(folder, patient[1])
    with refusing_superseded_plans(), pytest.raises(CheckInputError, match="newer version") as exc:
        _gather(folder)
    msg = str(exc.value)
    assert "RP_v2.dcm" in msg and "APPROVED" in msg and "Export the dose of RP_v2.dcm" in msg and "--plan RP.dcm" in msg
    said, _ = _said(folder)   # outside the block (a single check): a warning again
    assert any("newer version" in w for w in said), said


def test_check_batch_records_the_superseded_plan_as_refused_not_passed(patient, tmp_path, monkeypatch):
    """Audit 18 course F1: batch3/pat_replan read "CSI_brain PASS" (exit status 0) for the REJECTED plan."""
    root = tmp_path / "PTS"
    shutil.copytree(patient[0], root / "pat_replan")
    _replan(root / "pat_replan", patient[1])
    shutil.copytree(patient[0], root / "pat_plain")
    calls = Calls(tmp_path / "out")
    monkeypatch.setattr(api, "check", calls)
    api.check_batch(root, tmp_path / "out", log=lambda m: None)
    table = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert table["pat_replan"]["status"] == "refused" and "newer version" in table["pat_replan"]["error"]
    assert table["pat_plain"]["status"] == "pass"


def test_the_two_plans_refusal_lists_label_approval_intent_date_and_the_relation(folder, patient):
    _edit(folder / "RP.dcm", ApprovalStatus="REJECTED", RTPlanLabel="CSI_brain", RTPlanDate="20261201")
    new_uid = _replan(folder, patient[1])
    _rd(folder / "RD_v2.dcm", new_uid)
    msg = _refused(folder, "2 RT Plans")
    assert "RP.dcm ('CSI_brain', ApprovalStatus REJECTED, RTPlanDate 20261201" in msg, msg
    assert "RP_v2.dcm ('test', ApprovalStatus APPROVED, PlanIntent CURATIVE, RTPlanDate 20261206" in msg, msg
    assert "names RP.dcm as its PREDECESSOR" in msg, msg


# ---- F2: a CT series that the structure set was not drawn on
def test_a_ct_the_structure_set_was_not_drawn_on_is_a_warning_and_a_diagnostic_of_a_failure(folder):
    """Before: a pairing note only, and a 2 mm range FAIL on a re-scan read as a physics problem."""
    _struct_drawn_on(folder / "RS.dcm", "1.2.826.0.1.3680043.8.498.4242")   # the planning CT, not in the folder
    said, inp = _said(folder)
    assert any("was drawn on CT series 1.2.826.0.1.3680043.8.498.4242, not on the CT read" in w for w in said), said
    note = inp.ct_not_drawn_on
    assert "is not the series the structure set RS.dcm was drawn on (1.2.826.0.1.3680043.8.498.4242)" in note \
        and "check with the planning CT (--ct" in note, note
    range_fail = [{"passed": False, "level": "range_median_mm"}, {"passed": True, "level": "mc_uncertainty_max_pct"}]
    noise_only = [{"passed": True, "level": "range_median_mm"}, {"passed": False, "level": "mc_uncertainty_max_pct"}]
    assert api.not_planning_ct_diagnostics(inp, range_fail) == [note]
    assert api.not_planning_ct_diagnostics(inp, noise_only) == []   # the MC's own noise: not the CT's doing
    assert api.not_planning_ct_diagnostics(inp, [{"passed": True, "level": "range_median_mm"}]) == []


def test_the_ct_the_structure_set_was_drawn_on_gives_no_such_note(folder):
    from test_check_pairing import _series_uid

    _struct_drawn_on(folder / "RS.dcm", _series_uid(folder / "ct"))
    said, inp = _said(folder)
    assert inp.ct_not_drawn_on == "" and not any("was drawn on CT series" in w for w in said), said
    assert api.not_planning_ct_diagnostics(inp, [{"passed": False, "level": "range_median_mm"}]) == []


# ---- F9: a second structure set of the plan's frame that the plan does not name
def test_a_structure_set_the_plan_does_not_name_is_skipped_and_named(folder):
    _rs(folder / "RS_b.dcm")
    _edit(folder / "RS_b.dcm", StructureSetLabel="RS_physician_v2")
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ref.ReferencedSOPInstanceUID = pydicom.dcmread(folder / "RS_b.dcm").SOPInstanceUID
    _edit(folder / "RP.dcm", ReferencedStructureSetSequence=pydicom.Sequence([ref]))
    _edit(folder / "RS.dcm", StructureSetLabel="RS_first")
    inp = _gather(folder)
    assert Path(inp.struct_path).name == "RS_b.dcm"
    sop = str(pydicom.dcmread(folder / "RS.dcm").SOPInstanceUID)
    assert any(s.startswith(f"skipped RT Struct RS.dcm (SOPInstanceUID {sop}, label 'RS_first'): the plan names "
                            "RS_b.dcm") for s in inp.pairing), inp.pairing


def test_a_rejected_re_plan_does_not_supersede_the_plan_checked(folder, patient):
    """A re-plan that names the plan as its PREDECESSOR but was REJECTED (drafted, then dropped) replaces nothing:
    the batch refused the patient's approved plan as "superseded" by it, and a single check told the user to check
    the rejected draft too.  Now it is a note of the pairing only."""
    _edit(folder / "RP.dcm", ApprovalStatus="APPROVED")
    _replan(folder, patient[1])
    _edit(folder / "RP_v2.dcm", ApprovalStatus="REJECTED")
    with refusing_superseded_plans():
        inp = _gather(folder)   # not refused
    assert Path(inp.plan_path).name == "RP.dcm"
    assert any("RP_v2.dcm" in s and "REJECTED" in s and "not a newer version" in s for s in inp.pairing), inp.pairing
    said, _ = _said(folder)
    assert not any("newer version of" in w for w in said), said

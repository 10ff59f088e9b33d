"""The check's header reads of the plan and the structure set read only the attributes they need (the review of
2026-12-07, R4): since every header read went through one reader (read_dicom_header, audit 27 encodings F1), a whole
header parsed every sequence of the file (each control point of a plan, each contour of a structure set), and a
check read its plan whole 7 times (0.7 s each for a plan of 1.25 MB) and its structure set 3 times.  Each reader
now passes specific_tags, and gives what the whole header gave."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_pairing import CLEAN, _paired, make_patient

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"
#: the modules that call read_dicom_header (imported by name into each)
READERS = ("mcproton._check.inputs", "mcproton._check.prescription", "mcproton._run.inputs", "mcproton.config",
           "mcproton._check.record", "mcproton._io.patients", "mcproton._io.roi_overrides")


def _recording(monkeypatch, whole: bool = False) -> list[tuple[str, object]]:
    """Every read_dicom_header call from now on, as (file name, specific_tags); ``whole``: read with the
    specific_tags left out (a whole header, as before)."""
    import mcproton._io.dicom_common as dc

    calls: list[tuple[str, object]] = []
    real = dc.read_dicom_header

    def read(path, *, specific_tags=None):
        calls.append((Path(path).name, specific_tags))
        return real(path, specific_tags=None if whole else specific_tags)

    monkeypatch.setattr(dc, "read_dicom_header", read)
    for name in READERS:
        module = importlib.import_module(name)
        if hasattr(module, "read_dicom_header"):
            monkeypatch.setattr(module, "read_dicom_header", read)
    return calls


def test_gather_reads_no_whole_header_of_the_plan_or_the_structure_set(tmp_path, monkeypatch):
    """The pairing of a patient folder reads the plan's fraction groups, the structure set it names, its label and
    SOP Instance UID by header reads of those attributes alone (before: 4 whole reads of the plan, 1 of the set)."""
    from mcproton._check.inputs import gather

    make_patient(tmp_path / "p")
    calls = _recording(monkeypatch)
    inp = gather(folder=tmp_path / "p")
    assert _paired(inp) == CLEAN
    plan_struct = [(n, t) for n, t in calls if n in ("RP.dcm", "RS.dcm")]
    assert plan_struct and all(t for _, t in plan_struct), plan_struct


def test_gather_reads_the_structure_sets_uid_from_the_folders_read(tmp_path, monkeypatch):
    """The structure set paired from the folder is not read again for its SOP Instance UID (whether the plan names
    it, for the patients' check): the folder's read has it (the re-read of 2026-12-07, c 6); the pairing as before."""
    from mcproton._check.inputs import gather

    make_patient(tmp_path / "p")
    calls = _recording(monkeypatch)
    assert _paired(gather(folder=tmp_path / "p")) == CLEAN
    assert ("RS.dcm", ["SOPInstanceUID"]) not in calls, [c for c in calls if c[0] == "RS.dcm"]


PLANS = ["RN_headphantom_rs.dcm", "RN_plan02_mono.dcm", "RN_sobp_10x10.dcm", "RP_plan05.dcm", "RP_plan06_rs.dcm",
         "RN_qa_4beams.dcm", "aptg_check/RP_plan03.dcm", "opentps_box100/RP.dcm"]


def _plan_facts(plan: Path, struct_uid: str) -> tuple:
    from mcproton._check import inputs as ci
    from mcproton._check.prescription import plan_dose_references
    from mcproton._run.inputs import plan_prescription
    from mcproton.config import _plan_frame_study

    picked: list[str] = []
    header = {plan: ci._Header(plan, "RTSTRUCT", struct_uid, "", "", "", "")}
    return (plan_dose_references(str(plan)), ci._plan_fraction_groups(plan), ci._plan_names_struct(plan, struct_uid),
            ci._facts(plan, {}), plan_prescription(plan), _plan_frame_study({"plan": {"rtplan": str(plan)}}),
            ci._pick_struct([plan], header, plan, "", picked), picked)


@pytest.mark.parametrize("name", PLANS)
def test_each_plan_reader_reads_its_tags_alone_and_gives_what_the_whole_header_gives(name, monkeypatch):
    """Each reader of a real plan (its prescription, fraction groups, structure set, plan facts, frame) passes
    specific_tags, and gives exactly what it gives from the whole header."""
    import pydicom

    plan = DATA / name
    refs = pydicom.dcmread(plan, stop_before_pixels=True).get("ReferencedStructureSetSequence") or []
    struct_uid = str(refs[0].ReferencedSOPInstanceUID) if refs else "1.2.3"
    with monkeypatch.context() as m:
        whole = _recording(m, whole=True)
        before = _plan_facts(plan, struct_uid)
    calls = _recording(monkeypatch)
    assert _plan_facts(plan, struct_uid) == before
    assert len(calls) == len(whole) and calls and all(t for _, t in calls), calls


@pytest.mark.parametrize("name", ["RP_plan05.dcm", "RN_plan02_mono.dcm", "RN_headphantom_rs.dcm"])
def test_the_runs_prescription_reads_the_plan_header_once(name, monkeypatch):
    """plan_prescription (the run's prescription warning and its planes' reference) reads the plan's dose references
    and fraction groups in one header read (before: two reads of the same plan, one per sequence), and gives what
    it gave."""
    from mcproton._run.inputs import plan_prescription

    plan = DATA / name
    with monkeypatch.context() as m:
        _recording(m, whole=True)
        before = plan_prescription(plan)
    calls = _recording(monkeypatch)
    assert plan_prescription(plan) == before
    assert calls == [(name, ["DoseReferenceSequence", "FractionGroupSequence"])], calls

"""One patient's files (mcproton/_io/patients.py), the rule `mcproton run` and `mcproton check` share (audit 24,
identity F1, F2, F8).  Before: `mcproton run` compared no patient (a CT of A, a plan of B and an RT Struct of C ran,
its RT Dose filing B's plan dose under A); `mcproton check` compared the PatientID only (one ID with two names,
birth dates and sexes ran without a word, and its report named the plan's patient while RD_mc.dcm named the TPS
dose's); a CT series with a slice of another patient was computed on by both.

The cases are mutations of the demo's files (the 5-year-old head phantom at 4 mm, on the demo's plan made once per
session: tests/conftest.py; CT, RT Struct, RT Ion Plan of 3 beams, RT Dose), run with a few hundred primaries per
beam."""
from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from mcproton.cli import main

RUN_TOML = """[run]
primaries = 300
seed = 1
threads = 1
backend = "cpu"
[phantom]
type = "ct"
ct_dir = "ct"
[plan]
rtplan = "RP.dcm"
rtstruct = "RS.dcm"
beam_model = "dcpt_v5"
machine_check = false
[output]
plot = false
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_plan_4mm_shared):
    """The demo's CT, RT Struct, plan and RT Dose at 4 mm (written once for the module), on the demo's plan made
    once per session (tests/conftest.py) instead of optimising it again: the identity of the files is what these
    tests are about, not the plan or the voxel size (3 mm and its own plan: 18 s of set-up, and larger CTs for every
    run and check below)."""
    import copy

    import numpy as np

    import mcproton.phantoms.reference_plans as reference_plans
    from mcproton.demo import run_demo

    def the_plan_made_once(g, **kw):   # the demo's call (mcproton/demo.py) on its 4 mm phantom, or refused
        plan = copy.deepcopy(demo_plan_4mm_shared[1])
        assert set(kw) == {"prescription_gy_rbe", "target"} and tuple(g.voxel_size_mm) == (4.0, 4.0, 4.0), kw
        assert np.array_equal(kw["target"], plan.target_mask_zyx), "another target than the demo plan's"
        return plan

    out = tmp_path_factory.mktemp("demo") / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference_plans, "posterior_fossa_plan", the_plan_made_once)
        run_demo(out, primaries=2000, voxel_mm=4.0, backend="cpu", quiet=True, threads=1)
    return out


def _case(demo: Path, where: Path, changes: dict) -> Path:
    """A patient folder of the demo's files (ct/, RP.dcm, RS.dcm, RD.dcm, run.toml) with the attributes ``changes``
    gives per object ("ct", "rp", "rs", "rd", "all" for every file; a slice by its file name, "CT_0040.dcm")."""
    (where / "ct").mkdir(parents=True)
    files = [("ct", p) for p in sorted((demo / "ct").glob("*.dcm"))]
    files += [("rp", demo / "rtplan.dcm"), ("rs", demo / "rtstruct.dcm"), ("rd", demo / "rtdose.dcm")]
    for kind, src in files:
        ds = pydicom.dcmread(src)
        for key, value in {**changes.get("all", {}), **changes.get(kind, {}), **changes.get(src.name, {})}.items():
            setattr(ds, key, value)
        ds.save_as(where / ("ct" if kind == "ct" else "") / (src.name if kind == "ct" else f"{kind.upper()}.dcm"),
                   enforce_file_format=True)
    (where / "run.toml").write_text(RUN_TOML)
    return where


def _run(case: Path, tmp: Path, capsys, *sets: str, check_config: bool = False) -> tuple[int, str, dict]:
    args = ["run", str(case / "run.toml"), "--out", str(tmp / "o.h5"), "--rtdose", str(tmp / "RD_run.dcm"),
            "--quiet"] + [a for s in sets for a in ("--set", s)]
    rc = main(args + (["--check-config"] if check_config else []))
    out, err = capsys.readouterr()
    return rc, err, json.loads(out) if rc == 0 and out.strip() else {}


MIX_ABC = {"ct": {"PatientID": "A-1", "PatientName": "Alpha^Anna"},
           "rp": {"PatientID": "B-2", "PatientName": "Beta^Bob"},
           "rs": {"PatientID": "C-3", "PatientName": "Gamma^Cy"},
           "rd": {"PatientID": "B-2", "PatientName": "Beta^Bob"}}
#: one PatientID, the plan of another patient (name, birth date, sex): the classic two patients under one ID
SAME_ID = {"all": {"PatientID": "X-1", "PatientName": "Doe^Jane", "PatientBirthDate": "20180101", "PatientSex": "F"},
           "rp": {"PatientName": "Roe^John", "PatientBirthDate": "20100505", "PatientSex": "M"}}
#: one patient, the name spelled otherwise by the planning system
NAME_ONLY = {"all": {"PatientID": "X-1", "PatientName": "Doe^Jane", "PatientBirthDate": "20180101", "PatientSex": "F"},
             "rp": {"PatientName": "Doe-Smith^Jane"}}


# ---- mcproton run

def test_run_refuses_the_ct_plan_and_structures_of_three_patients(demo, tmp_path, capsys):
    """F1: a CT of A, a plan of B and an RT Struct of C on one frame of reference: exit 2 before the transport,
    naming every file's ID and the override; nothing written.  Before: exit 0, the RT Dose filed under A."""
    case = _case(demo, tmp_path / "mix", MIX_ABC)
    rc, err, _ = _run(case, tmp_path, capsys)
    assert rc == 2, err
    assert "different patients" in err and all(f"'{p}'" in err for p in ("A-1", "B-2", "C-3")), err
    assert "plan.allow_other_patient" in err and "phantom.ct_dir" in err
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "RD_run.dcm").exists()


def test_allow_other_frame_does_not_pass_another_patients_plan(demo, tmp_path, capsys):
    """plan.allow_other_frame (frames known to coincide) is not a licence for another patient's plan: with the plan
    and the RT Struct on another frame too, the run is still refused for the patients."""
    other = "1.2.826.0.1.3680043.8.498.424242"
    changes = {**MIX_ABC, "rp": {**MIX_ABC["rp"], "FrameOfReferenceUID": other}}
    case = _case(demo, tmp_path / "mix", changes)
    rc, err, _ = _run(case, tmp_path, capsys, "plan.allow_other_frame=true")
    assert rc == 2 and "different patients" in err and "'A-1'" in err and "'B-2'" in err, err


def test_allow_other_patient_runs_and_says_override(demo, tmp_path, capsys, warnings_to_stderr, monkeypatch):
    """plan.allow_other_patient = true (a phantom's or another patient's plan on this CT, on purpose): the run goes on,
    the RT Dose is filed under the CT's patient and tagged OVERRIDE, and the HDF5 records the override and whose plan
    and structures it holds."""
    import mcproton._io.patients as patients
    from mcproton import DoseResult

    case = _case(demo, tmp_path / "mix", MIX_ABC)
    read = []
    real_read = patients.read_header
    monkeypatch.setattr(patients, "read_header", lambda path: read.append(Path(path).name) or real_read(path))
    rc, err, summary = _run(case, tmp_path, capsys, "plan.allow_other_patient=true")
    assert rc == 0, err
    # each file's identity read once in the run (review R2: again for the override record and after the transport)
    assert sorted(read) == ["RP.dcm", "RS.dcm"], read
    assert "plan.allow_other_patient = true" in err and "'B-2'" in err
    rd = pydicom.dcmread(tmp_path / "RD_run.dcm", stop_before_pixels=True)
    assert rd.PatientID == "A-1" and str(rd.PatientName) == "Alpha^Anna"
    assert rd.DoseComment.startswith("OVERRIDE patient") and "OVERRIDE patient" in rd.SeriesDescription
    prov = DoseResult.load(tmp_path / "o.h5").provenance
    assert prov["overrides"] == ["other_patient"]
    ids = {(p["key"], p["file"]): p["PatientID"] for p in prov["input_patients"]}
    assert ids == {("plan.rtplan", "RP.dcm"): "B-2", ("plan.rtstruct", "RS.dcm"): "C-3",
                   ("phantom.ct_dir", "ct"): "A-1"}, prov["input_patients"]
    assert any("allow_other_patient" in w for w in summary["warnings"])


def test_a_check_config_reads_the_structure_set_whole_twice(demo, tmp_path, capsys, monkeypatch):
    """Review R2: the run's patient check reads the attributes of identity only (not the contours): the RT Struct
    is read whole twice in ``--check-config`` (its CT series check and its reader), as before the patient rule;
    the rule made it three (a 20 MB structure set: about 5 s each)."""
    import mcproton._io.dicom_common as dicom_common

    case = _case(demo, tmp_path / "base", {})
    whole = []
    real_read = dicom_common.read_dicom_file
    monkeypatch.setattr(dicom_common, "read_dicom_file",
                        lambda path, **kw: whole.append(Path(path).name) or real_read(path, **kw))
    rc, err, _ = _run(case, tmp_path, capsys, check_config=True)
    assert rc == 0, err
    assert whole.count("RS.dcm") == 2 and whole.count("RP.dcm") == 1, whole


def test_run_refuses_one_id_with_another_birth_date_and_sex(demo, tmp_path, capsys):
    """F2 in the run: the plan names X-1 born 2010-05-05, M; the CT and RT Struct X-1 born 2018-01-01, F."""
    case = _case(demo, tmp_path / "same", SAME_ID)
    rc, err, _ = _run(case, tmp_path, capsys, check_config=True)
    assert rc == 2, err
    assert "'20100505'" in err and "'20180101'" in err and "one PatientID ('X-1')" in err, err


#: review of 2026-12-07, R1: the plan relabelled with another patient's ID, name, birth date and sex; the structure
#: set it names (ReferencedStructureSetSequence) and the CT are A-1, sex M (the demo's).  The IDs alone are only
#: warned of between files linked by UID (APTG plan03's differ), but another sex and birth date are another person
PLAN_B = {"all": {"PatientID": "A-1", "PatientName": "Alpha^Anna"},
          "rp": {"PatientID": "B-2", "PatientName": "Beta^Bob", "PatientBirthDate": "20100505", "PatientSex": "F"}}


def test_run_refuses_a_linked_plan_of_another_id_birth_date_and_sex(demo, tmp_path, capsys):
    """R1: before, exit 0 with one warning that named the IDs only (the sex F against M was never compared)."""
    case = _case(demo, tmp_path / "planB", PLAN_B)
    rc, err, _ = _run(case, tmp_path, capsys, check_config=True)
    assert rc == 2, err
    assert "name different patients: PatientSex" in err and "'F'" in err and "'M'" in err, err
    assert "'B-2'" in err and "'A-1'" in err and "plan.allow_other_patient" in err, err


def test_check_refuses_a_linked_plan_of_another_id_birth_date_and_sex(demo, tmp_path, capsys):
    """R1 in ``mcproton check``: the plan B-2 (F), its structure set, TPS dose and CT A-1 (M): refused before the
    MC (before: checked, the difference nowhere but in a warning about the IDs)."""
    rc, err = _check(_case(demo, tmp_path / "planB", PLAN_B), tmp_path / "chk", capsys)
    assert rc == 2, err
    assert "name different patients: PatientSex" in err and "'F'" in err and "'B-2'" in err, err
    assert not (tmp_path / "chk" / "RD_mc.dcm").exists()


def test_run_warns_of_a_name_spelled_otherwise(demo, tmp_path, capsys):
    """A name-only difference (same ID, birth date and sex) runs, with a warning in the run's warnings (summary and
    HDF5); the RT Dose names the CT's patient."""
    from mcproton import DoseResult

    case = _case(demo, tmp_path / "name", NAME_ONLY)
    rc, err, summary = _run(case, tmp_path, capsys)
    assert rc == 0, err
    said = [w for w in summary["warnings"] if "name the patient differently" in w]
    assert said and "'Doe-Smith^Jane'" in said[0] and "'Doe^Jane'" in said[0], summary["warnings"]
    assert said[0] in DoseResult.load(tmp_path / "o.h5").provenance["warnings"]
    assert "overrides" not in summary or not summary["overrides"]
    assert str(pydicom.dcmread(tmp_path / "RD_run.dcm", stop_before_pixels=True).PatientName) == "Doe^Jane"


def test_run_refuses_a_ct_series_with_a_slice_of_another_patient(demo, tmp_path, capsys):
    """F8: slice CT_0040.dcm of the series names another PatientID: refused, naming it.  Before: computed on."""
    case = _case(demo, tmp_path / "slice", {"CT_0040.dcm": {"PatientID": "OTHER-9", "PatientName": "Other^Pat"}})
    rc, err, _ = _run(case, tmp_path, capsys, check_config=True)
    assert rc == 2, err
    assert "CT_0040.dcm" in err and "'OTHER-9'" in err and "different patients" in err, err


# ---- mcproton check

def _check(case: Path, out: Path, capsys) -> tuple[int, str]:
    rc = main(["check", str(case), "--beam-model", "dcpt_v5", "--no-machine-check", "--out", str(out),
               "--primaries", "500", "--gamma-points", "200", "--quiet"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("changes, said", [(SAME_ID, ("'20100505'", "'20180101'", "'Roe^John'")),
                                           ({"CT_0040.dcm": {"PatientID": "OTHER-9"}}, ("CT_0040.dcm", "'OTHER-9'"))],
                         ids=["one-id-two-patients", "a-slice-of-another"])
def test_check_refuses_two_patients_under_one_id_and_a_mixed_series(demo, tmp_path, capsys, changes, said):
    """F2: one PatientID with another birth date and sex; F8: a slice of another patient in the CT series (before:
    a FAIL verdict from the noise, 'OTHER-9' nowhere).  Refused (exit 2) before the MC, naming the values."""
    rc, err = _check(_case(demo, tmp_path / "p", changes), tmp_path / "chk", capsys)
    assert rc == 2, err
    assert all(s in err for s in said), err
    assert not (tmp_path / "chk" / "RD_mc.dcm").exists()


OTHER_STUDY = "1.2.826.0.1.3680043.8.498.4242"


@pytest.mark.parametrize("changes, what", [
    (NAME_ONLY, "name the patient differently"),
    # the plan and its TPS dose linked by UID with different PatientIDs (warned, as before): RD_mc.dcm named the TPS
    # dose's patient Y-2 while the report named the plan's X-1
    # (the TPS dose in a study of its own: RD_mc.dcm goes into the plan's, as a study holds one patient)
    ({"all": {"PatientID": "X-1", "PatientName": "Xavier^Ann"},
      "rd": {"PatientID": "Y-2", "PatientName": "Young^Bea", "StudyInstanceUID": OTHER_STUDY}},
     "different PatientIDs")], ids=["name-only", "dose-of-another-id"])
def test_check_rd_mc_names_the_patient_the_report_names(demo, tmp_path, capsys, changes, what, report_figures_blank):
    """F2: RD_mc.dcm carries the identity of the report's header (the plan's), check.json says whose it is, and the
    identity warning is in check.json's warnings, its provenance and the report's header (the report's text: its
    figures blank, half of the check's time, tests/conftest.py)."""
    out = tmp_path / "chk"
    case = _case(demo, tmp_path / "p", changes)
    rc, err = _check(case, out, capsys)
    assert rc in (0, 1), err
    js = json.loads((out / "check.json").read_text())
    ident = js["provenance"]["identification"]
    rd = pydicom.dcmread(out / "RD_mc.dcm", stop_before_pixels=True)
    assert (str(rd.PatientName), rd.PatientID) == (ident["PatientName"], ident["PatientID"])
    assert rd.get("PatientBirthDate", "") == ident["PatientBirthDate"]
    assert js["mc_rtdose"]["plan"]["patient"]["PatientName"] == ident["PatientName"]
    assert js["mc_rtdose"]["plan"]["patient"]["from"].startswith("the plan's patient")
    assert [w for w in js["warnings"] if what in w], js["warnings"]
    assert [w for w in js["provenance"]["patient_identity_warnings"] if what in w]
    assert "Patient identity: " in (out / "check.html").read_text(encoding="utf-8")
    plan_study = pydicom.dcmread(case / "RP.dcm", stop_before_pixels=True).StudyInstanceUID
    assert rd.StudyInstanceUID == plan_study   # the plan's (the report's patient); the TPS dose's when one patient
    assert (pydicom.dcmread(case / "RD.dcm", stop_before_pixels=True).StudyInstanceUID == OTHER_STUDY) == \
        (what == "different PatientIDs")


def test_rd_mc_of_another_patients_tps_dose_is_never_filed_in_its_study(demo, tmp_path):
    """Review R8: the plan (X-1) gives no StudyInstanceUID and its TPS dose names Y-2: RD_mc.dcm, named for X-1, goes
    into a new study (before: silently into the TPS dose's, one study of two patients), and ``from`` says so."""
    from types import SimpleNamespace

    from mcproton._check.mc_rtdose import mc_dose_study

    case = _case(demo, tmp_path / "p", {"all": {"PatientID": "X-1", "PatientName": "Xavier^Ann"},
                                        "rd": {"PatientID": "Y-2", "PatientName": "Young^Bea",
                                               "StudyInstanceUID": OTHER_STUDY}})
    rp = pydicom.dcmread(case / "RP.dcm")
    del rp.StudyInstanceUID
    rp.save_as(case / "RP.dcm", enforce_file_format=True)
    inp = SimpleNamespace(reference=SimpleNamespace(path=str(case / "RD.dcm")), plan_path=str(case / "RP.dcm"),
                          plan=SimpleNamespace(sop_instance_uid=str(rp.SOPInstanceUID)))
    study, patient = mc_dose_study(inp)
    assert study.patient_id == "X-1" and study.study_instance_uid == "" and study.study_date == ""
    assert study.resolved().study_instance_uid not in ("", OTHER_STUDY)
    assert "in a new study (the plan gives no StudyInstanceUID)" in patient["from"], patient


# ---- the rule itself

def test_names_compare_without_case_spaces_and_trailing_empty_components():
    from mcproton._io.patients import same_name

    assert same_name("Doe^Jane", " DOE ^ jane^^ ")
    assert same_name("Yamada^Tarou=山田^太郎", "YAMADA^TAROU")   # a group one side does not give
    assert same_name("", "Doe^Jane")                              # no name given: no difference
    assert not same_name("Doe^Jane", "Doe^Janet") and not same_name("Doe^Jane", "Jane^Doe")


def test_the_rule_refuses_ids_birth_dates_and_sexes_and_warns_of_names():
    from mcproton._io.patients import PatientFile, PatientIdentity, compare_patients

    plan = PatientFile("plan", PatientIdentity("P1", "Doe^Jane", "20180101", "F"))
    # birth date or sex of one ID: refused; given on one side only: no difference
    for other in (PatientIdentity("P1", "Doe^Jane", "20170101", "F"), PatientIdentity("P1", "Doe^Jane", "", "M")):
        assert "under one PatientID" in compare_patients([plan, PatientFile("CT", other, linked=False)]).refusal
    same = compare_patients([plan, PatientFile("CT", PatientIdentity("P1", "DOE^JANE", "", ""), linked=False)])
    assert not same.refusal and not same.warnings
    # another ID paired by the frame: refused; linked by UID: a warning (real exports: APTG plan03)
    ct = PatientFile("CT", PatientIdentity("P2"), linked=False)
    assert "different patients" in compare_patients([plan, ct]).refusal
    linked = compare_patients([plan, PatientFile("dose", PatientIdentity("P2", "Other^Name"))])
    assert not linked.refusal and len(linked.warnings) == 1 and "different PatientIDs" in linked.warnings[0]
    named = compare_patients([plan, PatientFile("CT", PatientIdentity("P1", "Doe-Smith^Jane", "20180101", "F"),
                                                linked=False)])
    assert not named.refusal and "name the patient differently" in named.warnings[0]


def test_linked_files_of_two_ids_are_compared_for_birth_date_and_sex():
    """R1: files of different PatientIDs linked by UID are compared for birth date and sex too: another value is two
    people, refused; the same values (APTG plan03: two IDs, one birth date 20221122 and sex O) only warned of."""
    from mcproton._io.patients import PatientFile, PatientIdentity, compare_patients

    plan = PatientFile("plan", PatientIdentity("B-2", "Beta^Bob", "20100505", "F"))
    rs = PatientFile("RS", PatientIdentity("A-1", "Alpha^Anna", "", "M"))
    ct = PatientFile("CT", PatientIdentity("A-1", "Alpha^Anna", "20180101", "M"), linked=False)
    found = compare_patients([plan, rs, ct])
    said = found.refusal
    assert said.startswith("name different patients: ") and "PatientBirthDate plan: '20100505'; CT: '20180101'" in said
    assert "PatientSex plan: 'F'; RS: 'M'; CT: 'M'" in said and "PatientID plan: 'B-2'; RS: 'A-1'; CT: 'A-1'" in said
    assert not found.warnings   # the refusal names the IDs: no second message about them
    same = compare_patients([PatientFile("plan", PatientIdentity("test_LET_ramp", "", "20221122", "O")),
                             PatientFile("dose", PatientIdentity("WTR303030", "", "20221122", "O")),
                             PatientFile("RS", PatientIdentity("WTR303030", "", "20221122", "O"))])
    assert not same.refusal and len(same.warnings) == 1 and "different PatientIDs" in same.warnings[0]


def test_files_paired_by_the_frame_that_differ_when_the_plan_names_nobody():
    """R5: a plan without PatientID (OpenTPS's box plan) and two files paired by the frame that name different
    patients: the refusal says that they differ and that the plan names none (before: "are of another patient than
    the plan", which names nobody)."""
    from mcproton._io.patients import PatientFile, PatientIdentity, compare_patients

    found = compare_patients([PatientFile("plan.rtplan RP.dcm", PatientIdentity("")),
                              PatientFile("plan.rtstruct RS.dcm", PatientIdentity("OTHER"), linked=False),
                              PatientFile("the CT (phantom.ct_dir ct)", PatientIdentity("MCPROTON"), linked=False)])
    assert "plan.rtstruct RS.dcm, the CT (phantom.ct_dir ct) name different patients, and the plan names none " \
        "(no PatientID)" in found.refusal, found.refusal
    assert "another patient than the plan" not in found.refusal


def test_the_real_exports_pass_the_rule():
    """The real exports in tests/data/dicom (the RayStation plan03 plan, structure set and dose, whose PatientIDs
    differ: a warning, as before; OpenTPS's head case; the Eclipse head-phantom plan and the RayStation plans alone)
    are neither refused nor warned of anew."""
    import gzip
    import io
    import tarfile

    from mcproton._io.patients import PatientFile, PatientIdentity, compare_patients

    data = Path(__file__).resolve().parents[1] / "data" / "dicom"
    aptg = data / "aptg_check"
    rd = pydicom.dcmread(io.BytesIO(gzip.open(aptg / "RD_plan03_total.dcm.gz").read()), stop_before_pixels=True)
    files = [PatientFile("plan", PatientIdentity.of(pydicom.dcmread(aptg / "RP_plan03.dcm", stop_before_pixels=True))),
             PatientFile("dose", PatientIdentity.of(rd)),
             PatientFile("RS", PatientIdentity.of(pydicom.dcmread(aptg / "RS_plan03.dcm", stop_before_pixels=True)),
                         linked=False)]
    found = compare_patients(files)
    assert not found.refusal and len(found.warnings) == 1 and "different PatientIDs" in found.warnings[0]
    with tarfile.open(data / "opentps_head" / "opentps_head.tar.gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
        head = [PatientFile(n, PatientIdentity.of(pydicom.dcmread(tf.extractfile(members[n]), force=True)),
                            linked=not n.startswith("ct/"))
                for n in ("RP.dcm", "RS.dcm", "RD.dcm", *sorted(k for k in members if k.startswith("ct/")
                                                                and k.endswith(".dcm"))[:3])]
    found = compare_patients(head)
    assert not found.refusal and not found.warnings, found


def test_one_series_is_one_patient():
    """F8: the slices of one series must name one patient; a blank value (an anonymiser's) and a name spelled in
    other case are no difference, another ID, name, birth date or sex is, naming the fewest slices first."""
    from mcproton._io.patients import PatientIdentity, series_patients

    one = PatientIdentity("P1", "Doe^Jane", "20180101", "F")
    slices = [(f"CT_{k:04d}.dcm", one) for k in range(10)]
    assert series_patients(slices + [("CT_0010.dcm", PatientIdentity("", "DOE^JANE^", "", ""))]) == ""
    others = ((PatientIdentity("P2", "Doe^Jane"), "PatientID"), (PatientIdentity("P1", "Roe^John"), "PatientName"),
              (PatientIdentity("P1", "Doe^Jane", "20170101"), "PatientBirthDate"),
              (PatientIdentity("P1", "Doe^Jane", "", "M"), "PatientSex"))
    for other, key in others:
        said = series_patients(slices + [("CT_0010.dcm", other)])
        assert said.startswith(f"the slices of one CT series name different patients ({key} ") and \
            said.index("CT_0010.dcm") < said.index("CT_0000.dcm"), said

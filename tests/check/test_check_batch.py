"""``mcproton check PTS --batch`` in the folders clinics really have: the output folder inside PTS, hidden and
``__MACOSX`` folders, loose files at the top level, sub-folders without a plan or with an earlier check's output,
one plan in two sub-folders, the exit status and the index's rows, and one patient's folder given to --batch.

No transport: ``check`` is replaced by the pairing alone (``gather``, the real refusals) and a result that passes,
so only the batch loop around it runs.  The patients are the small synthetic folders of test_check_pairing.py.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pydicom
import pytest
from fakes import log_text  # tests/fakes.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_pairing import _plan, make_patient

from mcproton._check import api
from mcproton._check.inputs import CheckInputError
from mcproton._check.levels import DEFAULTS_SOURCE


@pytest.fixture(scope="module")
def one_patient(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch") / "patient"
    return d, make_patient(d)


@pytest.fixture
def pts(one_patient, tmp_path):
    """PTS with two patients, p1 and p2 (different plans)."""
    root = tmp_path / "PTS"
    shutil.copytree(one_patient[0], root / "p1")
    make_patient(root / "p2")
    return root


class Calls:
    """The stand-in for ``check``: the real pairing (its refusals are the check's), then a passing result; records
    the folders it was given and the index and batch.json as they were when each patient started."""

    def __init__(self, out: Path):
        self.out, self.folders, self.seen = out, [], {}

    def __call__(self, *, folder, out, log, **kw):
        from mcproton._check.inputs import gather

        name = Path(folder).name
        self.folders.append(name)
        idx, js = self.out / "index.html", self.out / "batch.json"
        self.seen[name] = (idx.read_text() if idx.exists() else "",
                           json.loads(js.read_text()) if js.exists() else None)
        inp = gather(folder=folder)
        return api.CheckResult(True, [], {"2%/2mm": {"pass_rate": 1.0}}, {}, {}, {}, {}, [], inp.pairing,
                               {"statistical_uncertainty_pct": 1.0}, {}, {}, {}, out_dir=str(out), inputs=inp)


@pytest.fixture
def calls(monkeypatch, tmp_path):
    c = Calls(tmp_path / "out")
    monkeypatch.setattr(api, "check", c)
    return c


def _batch(root, out, calls=None):
    logs: list[str] = []
    if calls is not None:
        calls.out = Path(out)
    res = api.check_batch(root, out, log=logs.append)
    return res, logs, json.loads((Path(out) / "batch.json").read_text())


# ---- 1. the output folder inside PTS
@pytest.mark.parametrize("where", ["results", "checks/2026-12"])
def test_the_output_folder_inside_the_batch_folder_is_never_a_patient(pts, calls, where):
    """``--out PTS/results``: before, the second run checked ``results`` (the first run's reports and MC doses) as
    a patient and refused it.  The output folder, or the folder that holds it, is skipped and named once."""
    out = pts / where
    for run in (1, 2):
        calls.folders.clear()
        res, logs, table = _batch(pts, out, calls)
        assert calls.folders == ["p1", "p2"] and set(res) == set(table) == {"p1", "p2"}, (run, calls.folders)
        top = where.split("/")[0]
        named = [m for m in logs if f"'{top}'" in m]
        assert len(named) == 1 and "output folder" in named[0], logs


def test_a_patient_folder_that_holds_the_output_folder_is_still_a_patient(pts, calls):
    """``--out PTS/p1/check``: p1 holds its own plan and doses beside the output, so it stays a patient (the earlier
    MC doses in it are skipped by the pairing)."""
    for _ in (1, 2):
        res, logs, table = _batch(pts, pts / "p1" / "check", calls)
        assert set(table) == {"p1", "p2"} and all(v["passed"] for v in table.values()), table


# ---- 2. folders and files that are not patients
def test_hidden_and_system_folders_are_skipped_and_named(pts, calls):
    """``.git``, ``.Trash``, ``__MACOSX`` (unzipping on a Mac: "._" resource forks of every file), a USB stick's
    ``System Volume Information``: before, each was checked and refused as a patient."""
    (pts / ".git" / "objects").mkdir(parents=True)
    (pts / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (pts / ".Trash").mkdir()
    (pts / "__MACOSX" / "p1").mkdir(parents=True)
    (pts / "__MACOSX" / "p1" / "._RP.dcm").write_bytes(b"\0\5\26\7" + b"\0" * 100)
    (pts / "System Volume Information").mkdir()
    res, logs, table = _batch(pts, pts.parent / "out", calls)
    assert calls.folders == ["p1", "p2"] and set(table) == {"p1", "p2"}
    for name in (".git", ".Trash", "__MACOSX", "System Volume Information"):
        assert sum(f"'{name}'" in m for m in logs) == 1, (name, logs)
    assert any("'__MACOSX'" in m and "Mac" in m for m in logs) and any("'.git'" in m and "hidden" in m for m in logs)
    page = (pts.parent / "out" / "index.html").read_text()
    assert "__MACOSX" in page and "not checked yet" not in page   # named on the page as not a patient


def test_an_earlier_batchs_output_under_another_name_is_skipped(pts, calls):
    """A first run with ``--out PTS/results``, a second with ``--out PTS/results2``: the first run's folder (batch.json,
    index.html, a report folder per patient with its MC doses) is not a patient of the second."""
    _batch(pts, pts / "results", calls)
    res, logs, table = _batch(pts, pts / "results2", calls)
    assert set(table) == {"p1", "p2"}
    assert sum("'results'" in m and "earlier mcproton check --batch" in m for m in logs) == 1, logs


def test_plain_files_at_the_top_level_are_named_as_not_looked_at(pts, calls):
    (pts / "README.txt").write_text("export 2026-12-05\n")
    (pts / "export.zip").write_bytes(b"PK\3\4" + b"\0" * 60)
    (pts / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 100)
    res, logs, table = _batch(pts, pts.parent / "out", calls)
    assert set(table) == {"p1", "p2"}
    line = [m for m in logs if "README.txt" in m]
    assert len(line) == 1 and "export.zip" in line[0] and "not looked at" in line[0] and "unpack" in line[0], logs


def test_the_lock_of_an_output_folder_is_not_a_file_of_the_batch(pts, calls):
    """The lock of ``--out DIR`` is ``DIR/.mcproton-lock`` (mcproton/_io/lock.py); with ``--out PTS`` it lies at the
    batch folder's top level while the survey reads it: not an input, not named, and gone at the end."""
    res, logs, table = _batch(pts, pts, calls)
    assert set(table) == {"p1", "p2"}
    assert not any(".mcproton-lock" in m or "not looked at" in m for m in logs), logs
    assert not (pts / ".mcproton-lock").exists()


def test_dicom_files_loose_at_the_top_level_are_listed_as_not_checked(pts, calls, one_patient, capsys):
    """A patient's DICOM files dropped at PTS's top level (beside the patients' sub-folders): before, ignored in
    silence.  They are one REFUSED row (each patient must be in a sub-folder of its own) and the exit status is 1."""
    from mcproton.cli import main

    src = one_patient[0]
    shutil.copy(src / "RD_plan.dcm", pts / "RD_loose.dcm")
    shutil.copy(sorted((src / "ct").iterdir())[0], pts / "CT_slice.dcm")
    rc = main(["check", str(pts), "--batch", "--beam-model", "dcpt_v2", "--out", str(pts.parent / "out"), "--quiet"])
    out = capsys.readouterr().out
    table = json.loads((pts.parent / "out" / "batch.json").read_text())
    assert rc == 2 and calls.folders == ["p1", "p2"]
    top = [k for k in table if k not in ("p1", "p2")]
    assert len(top) == 1 and "top level" in top[0], table
    err = table[top[0]]["error"]
    assert "RD_loose.dcm" in err and "CT_slice.dcm" in err and "sub-folder of its own" in err and "not checked" in err
    assert f"{top[0]}: REFUSED" in out and "p1: PASS" in out and "p2: PASS" in out


# ---- 3. sub-folders without a plan
def test_sub_folders_without_a_plan_are_refused_with_a_clear_reason(pts, calls, one_patient):
    """An empty sub-folder, one with documents only, one with an earlier check's output only, one with a CT only:
    each a REFUSED row whose reason says what the folder holds (before: "no RT Plan in ...; give --plan RP.dcm",
    an option --batch does not take)."""
    from mcproton._check.mc_rtdose import MC_SERIES_DESCRIPTION

    (pts / "empty").mkdir()
    (pts / "docs").mkdir()
    (pts / "docs" / "protocol.pdf").write_bytes(b"%PDF-1.4\n")
    old = pts / "old_check"
    old.mkdir()
    for f in ("check.json", "check.html"):
        (old / f).write_text("{}")
    ds = pydicom.dcmread(one_patient[0] / "RD_plan.dcm")
    ds.Manufacturer, ds.SeriesDescription = "mcproton", MC_SERIES_DESCRIPTION
    ds.save_as(old / "RD_mc.dcm")
    shutil.copytree(one_patient[0] / "ct", pts / "ct_only" / "ct")
    res, logs, table = _batch(pts, pts.parent / "out", calls)
    assert set(table) == {"p1", "p2", "empty", "docs", "old_check", "ct_only"}
    for name, says in (("empty", "is empty"), ("docs", "no DICOM file"), ("old_check", "earlier mcproton check"),
                       ("ct_only", "CT")):
        err = table[name]["error"]
        assert "no RT Ion Plan in" in err and str(pts / name) in err and says in err, err
    assert "14 CT" in table["ct_only"]["error"]


# ---- 4. one plan in two sub-folders
def test_two_sub_folders_with_the_same_plan_are_both_checked_and_marked(pts, calls):
    """A patient folder copied twice: before, the index showed the plan twice without a word.  Both are checked (the
    copy may hold another TPS dose of the plan) and the second row says whose duplicate it is."""
    shutil.copytree(pts / "p1", pts / "p1 - Copy")
    res, logs, table = _batch(pts, pts.parent / "out", calls)
    assert calls.folders == ["p1", "p1 - Copy", "p2"]
    assert table["p1 - Copy"]["duplicate_of"] == "p1" and "duplicate_of" not in table["p1"]
    assert "duplicate_of" not in table["p2"] and table["p1"]["plan_uid"] == table["p1 - Copy"]["plan_uid"]
    assert any("'p1 - Copy'" in m and "same RT Plan" in m and "'p1'" in m for m in logs), logs
    page = (pts.parent / "out" / "index.html").read_text()
    assert "the same RT Plan as p1" in page


# ---- 5. the exit status and the pending rows
def test_exit_status_and_the_pending_rows_with_skipped_folders(pts, calls, capsys):
    """Skipped folders (hidden, the output folder) are never pending rows and do not make the batch fail; one
    refused patient makes the exit status 2 (a refusal's; before 2026-12-06: 1, a FAIL's)."""
    from mcproton.cli import main

    (pts / ".hidden").mkdir()
    (pts / "__MACOSX").mkdir()
    out = pts / "results"
    out.mkdir()
    args = ["check", str(pts), "--batch", "--beam-model", "dcpt_v2", "--out", str(out), "--quiet"]
    calls.out = out
    assert main(args) == 0
    page_at_p2 = calls.seen["p2"][0]
    assert page_at_p2.count("<td>not checked yet</td>") == 1
    assert "p2</td><td></td><td></td><td>not checked yet" in page_at_p2
    for name in (".hidden", "__MACOSX", "results"):
        assert f"<td>{name}</td>" not in page_at_p2
    (pts / "p2" / "RD_plan.dcm").unlink()
    for p in (pts / "p2").glob("RD_beam*.dcm"):
        p.unlink()
    assert main(args) == 2
    printed = capsys.readouterr().out
    assert "p2: REFUSED" in printed and "p1: PASS" in printed


# ---- 6. one patient's folder given to --batch
@pytest.mark.parametrize("layout", ["flat", "series folders", "plan on top, doses and an old plan below"])
def test_one_patients_folder_given_to_batch_is_refused_at_once(one_patient, tmp_path, calls, layout):
    """PTS is one patient's export: its RT Plan at the top level beside a ct/ folder, or its series in folders of
    their own (RTPLAN/, RTDOSE/, RTSTRUCT/, CT/).  Before, each folder was checked as a patient and refused; now the
    batch is refused at once, before any check."""
    root = tmp_path / "PTS"
    shutil.copytree(one_patient[0], root)
    if layout == "series folders":
        for sub, pattern in (("RTPLAN", "RP*"), ("RTDOSE", "RD*"), ("RTSTRUCT", "RS*")):
            (root / sub).mkdir()
            for p in list(root.glob(pattern)):
                p.rename(root / sub / p.name)
        (root / "ct").rename(root / "CT")
    elif layout != "flat":   # an old plan version in a folder of its own does not make the folder a batch
        (root / "RTDOSE").mkdir()
        for p in list(root.glob("RD*")):
            p.rename(root / "RTDOSE" / p.name)
        (root / "RTPLAN_old").mkdir()
        _plan(root / "RTPLAN_old" / "RP_old.dcm")
    with pytest.raises(CheckInputError, match="looks like one patient's folder: run without --batch") as exc:
        api.check_batch(root, tmp_path / "out", log=lambda m: None)
    assert calls.folders == [] and str(root) in str(exc.value)
    if layout != "series folders":
        assert "RP.dcm" in str(exc.value)


def test_a_batch_of_patients_without_doses_is_not_taken_for_one_patient(pts, calls):
    """The one-patient test needs a plan and its dose in PTS: patients whose doses are all missing are refused one by
    one (each with its reason), not taken for one patient's folder."""
    for p in pts.rglob("RD_*.dcm"):
        p.unlink()
    res, logs, table = _batch(pts, pts.parent / "out", calls)
    assert set(table) == {"p1", "p2"} and all("no RT Dose" in t["error"] for t in table.values())


def test_a_folder_of_nothing_but_skipped_folders_is_refused(tmp_path, calls):
    root = tmp_path / "PTS"
    (root / ".git").mkdir(parents=True)
    (root / "__MACOSX").mkdir()
    with pytest.raises(CheckInputError, match="no patient sub-folders") as exc:
        api.check_batch(root, tmp_path / "out", log=lambda m: None)
    assert ".git" in str(exc.value) and "__MACOSX" in str(exc.value)


def test_an_interrupt_stops_the_batch_and_is_recorded(pts, calls, monkeypatch, tmp_path):
    """Ctrl-C during a patient stops the batch (before: recorded as an internal error, and the batch went on to
    the next patient), and batch.json and the index say which patient was interrupted and which were not
    checked."""
    from mcproton._run.job import RunInterrupted

    make_patient(pts / "p3")
    real = calls.__call__

    def interrupted_at_p2(**kw):
        if Path(kw["folder"]).name == "p2":
            raise RunInterrupted("interrupted by SIGINT after 4,000 of 10,000 primaries of beam 1; no checkpoint "
                                 "(checkpointing is off); nothing was kept: run it again", 130)
        return real(**kw)

    monkeypatch.setattr(api, "check", interrupted_at_p2)
    out, logs = tmp_path / "out", []
    calls.out = out
    last_night = {"schema_version": 1, "status": "pass", "passed": True, "checks": [],
                  "provenance": {"check_finished": "2026-12-05T23:00:00+00:00"}}
    (out / "p3").mkdir(parents=True)   # p3's check of last night
    (out / "p3" / "check.json").write_text(json.dumps(last_night))
    with pytest.raises(RunInterrupted) as exc:
        api.check_batch(pts, out, log=logs.append)
    assert exc.value.batch_json == str(out / "batch.json")   # what --json prints
    table = json.loads((out / "batch.json").read_text())
    assert table["p1"]["passed"] is True and table["p2"]["interrupted"] is True
    assert "interrupted by SIGINT" in table["p2"]["error"]
    # the long-runs audit F11: the patients not checked are in batch.json too (before: left out, so a script
    # counting its rows missed them), and the index does not count the interrupted one as checked
    assert list(table) == ["p1", "p2", "p3"]
    assert {k: table["p3"][k] for k in ("schema_version", "status", "passed", "not_checked", "error")} == {
        "schema_version": 1, "status": "not_checked", "passed": False, "not_checked": True, "error": "not checked yet"}
    assert table["p1"]["status"] == "pass" and table["p2"]["status"] == "interrupted"
    # every row has the same core keys (integrators' audit 2026-12-06, F8/F9)
    for name, row in table.items():
        assert set(api.BATCH_ROW_KEYS) <= set(row), (name, sorted(row))
    assert table["p2"]["exit_status"] == 130 and table["p2"]["error_type"] == "RunInterrupted"
    assert table["p2"]["checked"] and table["p2"]["mcproton_version"] and table["p1"]["exit_status"] == 0
    # p3 not reached: last night's PASS is no longer its check.json (integrators' F1), but set aside
    record = json.loads((out / "p3" / "check.json").read_text())
    assert record["status"] == "not_checked" and record["exit_status"] is None, record
    assert "interrupted" in record["error"] and "before this patient" in record["error"]
    (aside,) = (out / "p3").glob("earlier_check_*")
    assert json.loads((aside / "check.json").read_text()) == last_night
    assert record["earlier_outputs_moved_to"] == str(aside)
    page = (out / "index.html").read_text()
    assert "INTERRUPTED" in page and "not checked yet" in page and "internal" not in page
    assert "1 patient(s) checked, 1 passed every action level; 1 interrupted; 1 not checked yet." in page
    assert any("interrupted during p2; not checked: p2, p3" in m for m in logs), logs


def test_the_command_line_ends_an_interrupted_check_as_interrupted(monkeypatch, tmp_path, capsys):
    """mcproton check stopped by SIGINT: exit status 128 + 2 (not 1, which is a FAIL) and the message as it is,
    not "internal error ... please report it"."""
    from mcproton._run.job import RunInterrupted
    from mcproton.cli import main

    def stop(**kw):
        raise RunInterrupted("interrupted by SIGINT after 4,000 of 10,000 primaries of beam 1; no checkpoint "
                             "(checkpointing is off); nothing was kept: run it again", 130)

    monkeypatch.setattr(api, "check", stop)
    rc = main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 130, err
    assert log_text(err.strip()) == ("mcproton: interrupted by SIGINT after 4,000 of 10,000 primaries of beam 1; no "
                           "checkpoint (checkpointing is off); nothing was kept: run it again"), err


def test_batch_json_is_strict_json_when_a_pass_rate_is_not_a_number(pts, monkeypatch, tmp_path):
    """A patient whose 2%/2mm pass rate is NaN (no point above the gamma threshold): batch.json was written with
    ``NaN``, which strict parsers (jq, JavaScript) refuse, losing the whole batch's table; it is null now."""
    c = Calls(tmp_path / "out")

    def nan_rate(**kw):
        r = c(**kw)
        r.gamma = {"2%/2mm": {"pass_rate": float("nan")}}
        return r

    monkeypatch.setattr(api, "check", nan_rate)
    api.check_batch(pts, tmp_path / "out", log=lambda m: None)

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    table = json.loads((tmp_path / "out" / "batch.json").read_text(), parse_constant=refuse)
    assert [table[p]["gamma_2_2_pct"] for p in ("p1", "p2")] == [None, None]


def test_batch_json_identifies_each_row_and_its_report_resolves_from_its_folder(pts, monkeypatch, tmp_path):
    """batch.json's ``report`` was relative to the working directory (``results/p1/check.html``), so that it did not
    resolve from batch.json's folder, nor after the folder was moved; its rows had no PatientID, an empty plan
    label, no date and nothing of what the checks were made with.  Now the report is relative to batch.json's
    folder, and each row (and the index) names the patient, the plan (label, else name), the TPS doses compared, the
    date, mcproton's version, the beam model, the calibration, the target and the levels."""
    c = Calls(tmp_path / "results")

    def with_report(**kw):
        r = c(**kw)
        Path(kw["out"]).mkdir(parents=True, exist_ok=True)
        r.report_html = str(Path(kw["out"]) / "check.html")
        Path(r.report_html).write_text("<html></html>")
        r.provenance.update(identification={"PatientID": "T1", "PatientName": "Doe^Jane", "RTPlanLabel": "",
                                            "RTPlanName": "head plan"},
                            inputs=[{"role": "TPS RT Dose (plan)", "path": "/x/RD.dcm", "sop_instance_uid": "1.2.3",
                                     "sha256": "ab" * 32}],
                            check_finished="2026-12-05T10:00:00+01:00", mcproton_version="9.9",
                            beam_model="dcpt_v5", beam_model_file={"sha256": "cd" * 32}, calibration="clinic_hlut",
                            calibration_files=[{"path": "/x/hu_spr.csv", "sha256": "ef" * 32}])
        r.settings.update(target_uncertainty=0.015, levels_config={"source": DEFAULTS_SOURCE})
        return r

    monkeypatch.setattr(api, "check", with_report)
    monkeypatch.chdir(tmp_path)
    api.check_batch("PTS", "results", log=lambda m: None)   # relative to the working directory, as typed
    moved = tmp_path / "archive" / "results"
    moved.parent.mkdir()
    shutil.move(tmp_path / "results", moved)
    table = json.loads((moved / "batch.json").read_text())
    for name in ("p1", "p2"):
        row = table[name]
        assert row["report"] == f"{name}/check.html" and (moved / row["report"]).is_file()
        assert row["patient_id"] == "T1" and row["patient_name"] == "Doe^Jane" and row["plan"] == "head plan"
        assert row["tps_doses"] == [{"path": "/x/RD.dcm", "sop_instance_uid": "1.2.3", "sha256": "ab" * 32}]
        assert row["checked"] == "2026-12-05T10:00:00+01:00" and row["mcproton_version"] == "9.9"
        assert row["beam_model_sha256"] == "cd" * 32 and row["calibration_sha256"] == ["ef" * 32]
        assert row["target_uncertainty"] == 0.015 and row["levels"].startswith("the defaults")
    page = (moved / "index.html").read_text()
    assert '<a href="p1/check.html">p1/check.html</a>' in page and "T1 (Doe^Jane)" in page
    assert "<td>head plan</td>" in page and "1.2.3" in page and "2026-12-05T10:00:00+01:00" in page
    assert f"beam model: dcpt_v5 (SHA-256 {'cd' * 32})" in page and "target statistical uncertainty: 1.5 %" in page


@pytest.mark.parametrize("with_ct", [True, False])
def test_one_patients_treatment_course_given_to_batch_is_refused_at_once(one_patient, tmp_path, calls, with_ct):
    """Audit 18 course (F6): one patient's course, CT/ and RTSTRUCT/ beside cranial/ and spinal/ (each a plan with its
    dose, no CT), all of one PatientID, given to --batch: each sub-folder was a refused "patient".  Now refused at
    once, naming the course and how to check each plan.  Without the CT/ folder (an incomplete export) it is not
    taken for a course: the sub-folders are checked (refused) one by one."""
    from pydicom.uid import generate_uid

    root = tmp_path / "course"
    shutil.copytree(one_patient[0], root)
    (root / "ct").rename(root / "CT")
    (root / "RTSTRUCT").mkdir()
    for p in list(root.glob("RS*")):
        p.rename(root / "RTSTRUCT" / p.name)
    for sub in ("cranial", "spinal"):
        (root / sub).mkdir()
        uid = generate_uid()
        for p in sorted(root.glob("R[PD]*.dcm")):
            ds = pydicom.dcmread(p)
            if ds.Modality == "RTPLAN":
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
            else:
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                for ref in ds.get("ReferencedRTPlanSequence", []):
                    ref.ReferencedSOPInstanceUID = uid
            ds.save_as(root / sub / p.name)
    for p in list(root.glob("R[PD]*.dcm")):
        p.unlink()
    if not with_ct:
        shutil.rmtree(root / "CT")
        res, logs, table = _batch(root, tmp_path / "out", calls)
        assert set(table) == {"RTSTRUCT", "cranial", "spinal"}, table
        return
    with pytest.raises(CheckInputError, match=r"looks like one patient's treatment course \(PatientID .*: plans with "
                       r"their doses in cranial/, spinal/, the series in CT/, RTSTRUCT/\), not a folder of patients: "
                       r"check each plan with mcproton check .*course --plan .*course/cranial/RP") as exc:
        api.check_batch(root, tmp_path / "out", log=lambda m: None)
    assert calls.folders == [] and "spinal/RP" in str(exc.value)


# ---- 7. a patient checked against mcproton's own dose (realcheck audit F2)
def test_a_patient_checked_against_mcprotons_own_dose_says_so_on_its_batch_line_row_and_index(pts, monkeypatch,
                                                                                                tmp_path, capsys):
    """A patient whose every RT Dose mcproton wrote (the fixture's: mcproton's RT Dose writer) is a check of mcproton
    against itself.  The single check says so beside its verdict; a batch read plain "p1: PASS" on the console,
    "PASS" in index.html and ``"status": "pass"`` in batch.json, with no key saying so (realcheck audit F2).  Now
    batch.json's row has ``self_compared`` (the sentence, as check.json's; "" for a planning system's dose), and the
    console line and the index row say it beside PASS.  p2's doses are made a planning system's (Manufacturer)."""
    import warnings

    from mcproton.cli import main

    for f in (pts / "p2").glob("RD_*.dcm"):
        ds = pydicom.dcmread(f)
        ds.Manufacturer = "RaySearch Laboratories"
        ds.save_as(f)
    out = tmp_path / "out"
    c = Calls(out)

    def with_warnings(**kw):   # the pairing's warnings kept in the result, as check() keeps them
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            r = c(**kw)
        r.warnings = [str(w.message) for w in said]
        return r

    said = ("against a dose mcproton wrote, not the planning system's: mcproton compared with itself, not an "
            "independent check")   # the single check's verdict line says it so (tests/check/test_report.py)
    monkeypatch.setattr(api, "check", with_warnings)
    assert main(["check", str(pts), "--batch", "--beam-model", "dcpt_v2", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"p1: PASS ({said})" in printed and "p2: PASS" in printed, printed
    table = json.loads((out / "batch.json").read_text())
    assert table["p1"]["self_compared"] == said and table["p2"]["self_compared"] == "", table
    import html

    page = (out / "index.html").read_text()
    rows = {name: page[page.index(f"<td>{name}</td>"):][:page[page.index(f"<td>{name}</td>"):].index("</tr>")]
            for name in ("p1", "p2")}
    assert f"<td>{html.escape('PASS (' + said + ')')}</td>" in rows["p1"], rows["p1"]
    assert "<td>PASS</td>" in rows["p2"] and "compared with itself" not in rows["p2"], rows["p2"]


def test_a_reused_rows_self_compared_is_its_earlier_checks(tmp_path):
    """``--skip-checked``: the row of a check not made again carries its check.json's ``self_compared``; one written
    before that key (2026-12-06) from its warnings, which held the sentence's warning (realcheck audit F2)."""
    from mcproton._check.inputs import MCPROTON_ONLY_DOSE

    own = {"status": "pass", "passed": True, "warnings": [f"{MCPROTON_ONLY_DOSE} (RD.dcm, Manufacturer 'mcproton')"]}
    assert api._reused_row(own, tmp_path / "check.html", tmp_path)["self_compared"] == api.SELF_COMPARED
    assert api._reused_row({**own, "self_compared": ""}, tmp_path / "check.html", tmp_path)["self_compared"] == ""
    assert api._reused_row({**own, "warnings": []}, tmp_path / "check.html", tmp_path)["self_compared"] == ""
    assert api.ReusedCheck(True, [], own, "check.json").self_compared == api.SELF_COMPARED

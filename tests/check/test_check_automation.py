"""``mcproton check`` in a clinic's nightly script (automation audit 2026-12-06): a refused re-check leaves a record
of itself, not last night's PASS report (F1); a SIGTERM is not swallowed by ``except Exception`` (F2); distinct exit
statuses (F3); a full output disk stops a batch (F4); negative gamma options refused (F8); ``--batch --json`` (F9);
versioned JSON and public exceptions (F10).  No transport: the refusals come while the inputs are read, and the
batch's ``check`` is a stand-in where a result is needed."""
from __future__ import annotations

import errno
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_check_pairing import make_patient

import mcproton
from mcproton._build import check_build_identity
from mcproton._check import api
from mcproton.cli import main


@pytest.fixture(scope="module")
def refused_patient(tmp_path_factory):
    """A patient folder whose TPS doses are missing (a transfer that lost them): refused while read."""
    d = tmp_path_factory.mktemp("auto") / "patient"
    make_patient(d)
    for p in d.glob("RD*.dcm"):
        p.unlink()
    return d


def _last_nights_report(out: Path) -> None:
    """A complete PASS report, as an earlier check wrote it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps({"passed": True, "checks": [], "provenance": {"check_finished": "x"}}))
    (out / "check.html").write_text("<html><head><title>mcproton check: PASS</title></head></html>")


def test_a_refused_recheck_records_itself_and_moves_the_earlier_report_aside(refused_patient, tmp_path, capsys):
    """F1: before, --out kept last night's PASS check.json/check.html, nothing said so, and --json printed
    nothing."""
    out = tmp_path / "checks" / "p1"
    _last_nights_report(out)
    rc = main(["check", str(refused_patient), "--beam-model", "dcpt_v5", "--out", str(out), "--quiet", "--json"])
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    printed = json.loads(cap.out)
    record = json.loads((out / "check.json").read_text())
    assert record["status"] == printed["status"] == "refused" and record["passed"] is False
    assert record["schema_version"] == 2 and record["exit_status"] == 2 and record["error"]
    assert record["provenance"]["given_inputs"]["folder"] == str(refused_patient)
    assert record["provenance"]["out"] == printed["provenance"]["out"] == str(out)   # audit 24 "docs" F4
    # the build that refused it, as a report's (compat audit 2026-12-06, F6)
    assert record["provenance"]["build"] == check_build_identity()
    assert not (out / "check.html").exists()
    moved = list(out.glob("earlier_check_*"))
    assert len(moved) == 1 and {p.name for p in moved[0].iterdir()} == {"check.json", "check.html"}
    assert json.loads((moved[0] / "check.json").read_text())["passed"] is True
    assert "not a check of these inputs" in cap.err
    # refused again: the record replaced, nothing more moved
    assert main(["check", str(refused_patient), "--beam-model", "dcpt_v5", "--out", str(out), "--quiet"]) == 2
    assert len(list(out.glob("earlier_check_*"))) == 1
    assert json.loads((out / "check.json").read_text())["status"] == "refused"


def test_a_new_out_folder_gets_no_record_and_is_not_left_behind(refused_patient, tmp_path):
    with pytest.raises(ValueError):
        mcproton.check(folder=refused_patient, beam_model="dcpt_v5", out=tmp_path / "new", log=lambda m: None)
    assert not (tmp_path / "new").exists()


def test_a_batch_marks_refused_and_vanished_patients_folders(refused_patient, tmp_path):
    """F1 in --batch: a refused patient's folder and a folder of a patient no longer exported kept their PASS
    check.json, so collecting checks/*/check.json counted last night's PASSes."""
    pts = tmp_path / "PTS"
    shutil.copytree(refused_patient, pts / "b")
    out = tmp_path / "checks"
    _last_nights_report(out / "b")
    _last_nights_report(out / "c")   # c left the export
    res = api.check_batch(pts, out, beam_model="dcpt_v5", log=lambda m: None)
    assert res["b"].status == "refused"
    table = json.loads((out / "batch.json").read_text())
    assert table["b"]["status"] == "refused" and table["c"]["status"] == "not_in_batch"
    for name, status in (("b", "refused"), ("c", "not_in_batch")):   # c's file as its row (integrators' F9)
        assert json.loads((out / name / "check.json").read_text())["status"] == status
        assert not (out / name / "check.html").exists() and list((out / name).glob("earlier_check_*"))


def test_run_interrupted_is_not_an_exception():
    """F2: ``except Exception: continue`` around a check swallowed the scheduler's SIGTERM."""
    from mcproton._run.job import RunInterrupted

    assert RunInterrupted is mcproton.errors.RunInterrupted
    assert issubclass(RunInterrupted, BaseException) and not issubclass(RunInterrupted, Exception)
    with pytest.raises(RunInterrupted):
        try:
            raise RunInterrupted("interrupted by SIGTERM", 143)
        except Exception:  # noqa: BLE001 - what a nightly loop does
            pass


@pytest.mark.parametrize("error,status", [
    (KeyError("a bug"), 4),
    (mcproton.errors.OutputLockedError("--out is being written by another run"), 3),
    (OSError(errno.ENOSPC, "No space left on device", "RD_mc.dcm"), 3),
    (mcproton.errors.OutputWriteError("could not write RD_mc.dcm: no space left on device", no_space=True), 3),
    (mcproton.errors.BackendUnavailableError("backend 'cuda' requested but unavailable"), 3),
    (mcproton.errors.CheckInputError("no RT Dose"), 2),
])
def test_exit_statuses_tell_a_fail_a_refusal_the_machine_and_a_bug_apart(error, status, monkeypatch, tmp_path,
                                                                        capsys):
    """F3: an internal error exited 1 (a FAIL's status), a busy or full output and a missing GPU 2 (a refusal's)."""
    def fails(**kw):
        raise error

    monkeypatch.setattr(api, "check", fails)
    rc = main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), "--json"])
    cap = capsys.readouterr()
    assert rc == status == mcproton.errors.exit_status(error), cap.err
    assert json.loads(cap.out)["exit_status"] == status
    assert ("please report it" in cap.err) == (status == 4)


def test_run_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0" in text and "3 the machine or the output" in text and "4 an internal error" in text


class _Checks:
    """check's stand-in in a batch: ``errors`` {patient: exception}, else a passing result."""

    def __init__(self, errors):
        self.errors, self.folders = errors, []

    def __call__(self, *, folder, out, log, **kw):
        from mcproton._check.inputs import gather

        name = Path(folder).name
        self.folders.append(name)
        if name in self.errors:
            raise self.errors[name]
        inp = gather(folder=folder)
        return api.CheckResult(True, [], {"2%/2mm": {"pass_rate": 1.0}}, {}, {}, {}, {}, [], inp.pairing,
                               {"statistical_uncertainty_pct": 1.0}, {}, {}, {}, out_dir=str(out), inputs=inp)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    root = tmp_path_factory.mktemp("three") / "PTS"
    for n in ("p1", "p2", "p3"):
        make_patient(root / n)
    return root


def test_a_full_disk_stops_the_batch_as_an_environment_error(three, monkeypatch, tmp_path, capsys):
    """F4: a full disk was an "internal error ... please report it", and every remaining patient's MC ran into it."""
    full = mcproton.errors.OutputWriteError("could not write RD_mc.dcm: no space left on device", no_space=True)
    checks = _Checks({"p1": full})
    monkeypatch.setattr(api, "check", checks)
    out = tmp_path / "out"
    rc = main(["check", str(three), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--json"])
    cap = capsys.readouterr()
    assert rc == 3 and checks.folders == ["p1"], cap.err
    table = json.loads(cap.out)   # F9: --batch --json prints batch.json
    assert table == json.loads((out / "batch.json").read_text())
    assert table["p1"]["status"] == "environment_error" and "internal_error" not in table["p1"]
    assert table["p2"]["status"] == table["p3"]["status"] == "not_checked"
    assert "full or read-only" in table["p3"]["error"] and "please report" not in cap.err


def test_the_batch_exits_with_its_worst_status(three, monkeypatch, tmp_path, capsys):
    checks = _Checks({"p1": mcproton.errors.CheckInputError("no RT Dose"), "p2": KeyError("a bug")})
    monkeypatch.setattr(api, "check", checks)
    rc = main(["check", str(three), "--batch", "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 4 and checks.folders == ["p1", "p2", "p3"]
    assert "p1: REFUSED" in out and "p2: ERROR (internal error KeyError" in out and "p3: PASS" in out
    table = json.loads((tmp_path / "o" / "batch.json").read_text())
    assert [table[p]["status"] for p in ("p1", "p2", "p3")] == ["refused", "internal_error", "pass"]
    assert all(row["schema_version"] == 1 for row in table.values())


def test_a_failed_rescue_leaves_no_empty_folder(monkeypatch, tmp_path):
    """F4: each patient of a batch on a full disk left an empty /tmp/mcproton-rescued-* folder."""
    from mcproton._check import mc_rtdose

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def full(inp, mc, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "RD_mc.dcm"))

    monkeypatch.setattr(mc_rtdose, "write_mc_rtdoses", full)
    with pytest.raises(mcproton.errors.OutputWriteError, match="the MC dose is lost") as err:
        api._write_mc_rtdoses_or_rescue(None, None, tmp_path / "out")
    assert err.value.no_space and not list((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("option", ["--gamma-points", "--gamma-workers"])
def test_negative_gamma_options_are_refused(option, tmp_path, capsys):
    """F8: --gamma-points -5 evaluated all points but 5 (a slice [:-5]); --gamma-workers -3 was accepted.  Refused
    by check() itself since 2026-12-06, so that check(gamma_points=-5) is too (the Python-API audit, F8)."""
    rc = main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), option, "-5"])
    err = capsys.readouterr().err
    assert rc == 2 and f"({option}) = -5: give a positive number (or 0: " in err, err


def test_check_json_has_a_schema_version_and_a_status():
    r = api.CheckResult(False, [], {}, {}, {}, {}, {}, [], [], {}, {}, {}, {})
    d = r.to_dict()
    assert d["schema_version"] == 2 and d["status"] == "fail" and list(d)[:2] == ["schema_version", "status"]
    assert d["exit_status"] == 1   # in every check.json, a report's too (integrators' audit 2026-12-06, F9)


@pytest.mark.parametrize("args, error_type", [(["--gamma-points", "-1"], "CheckInputError"),
                                              (["--skip-checked"], "ValueError"),
                                              (["--batch", "--plan", "RP.dcm"], "ValueError")])
def test_json_prints_a_record_for_an_option_refused(args, error_type, tmp_path, capsys):
    """Integrators' audit of 2026-12-06, F4: an option refused while the command line was checked exited 2 with
    nothing on stdout, so ``mcproton check ... --json | jq .status`` read no input."""
    rc = main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), "--json", *args])
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    record = json.loads(cap.out)
    assert record["status"] == "refused" and record["exit_status"] == 2 and record["passed"] is False
    assert record["error"] and record["error_type"] == error_type and record["schema_version"] == 2
    assert record["provenance"]["given_inputs"]["folder"] == str(tmp_path)
    # docs/check.md promises `out` too (audit 24 "docs" F4: a --gamma-points refusal, recorded by check() itself,
    # had none)
    assert record["provenance"]["out"] == str(tmp_path / "o")
    assert record["provenance"]["build"] == check_build_identity()


def test_json_prints_batch_json_for_an_interrupted_batch(refused_patient, monkeypatch, tmp_path, capsys):
    """F4: ``--batch --json`` stopped by a signal printed nothing (batch.json on disk was fine)."""
    from mcproton._run.job import RunInterrupted

    pts = tmp_path / "PTS"
    shutil.copytree(refused_patient, pts / "a")

    def stop(**kw):
        raise RunInterrupted("interrupted by SIGTERM after 4,000 of 10,000 primaries of beam 1", 143)

    monkeypatch.setattr(api, "check", stop)
    out = tmp_path / "checks"
    rc = main(["check", str(pts), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--json", "--quiet"])
    cap = capsys.readouterr()
    assert rc == 143, cap.err
    printed = json.loads(cap.out)
    assert printed == json.loads((out / "batch.json").read_text())
    assert printed["a"]["status"] == "interrupted" and printed["a"]["exit_status"] == 143


def test_a_batch_fail_of_a_patient_named_outside_stdouts_code_page_exits_1_with_its_verdict(tmp_path, monkeypatch,
                                                                                              capsys):
    """The portability audit 27, F5: with stdout in Windows' ANSI code page (cp1252, redirected to a file or a pipe),
    the verdict line of a patient folder named "Dvořák_Jiří" raised UnicodeEncodeError, which silenced stdout: the
    batch printed no verdict and its FAIL exited 3 ("free disk space")."""
    import io

    root = tmp_path / "PTS"
    make_patient(root / "Dvořák_Jiří")

    class Fails(_Checks):
        def __call__(self, **kw):
            r = super().__call__(**kw)
            r.passed = False
            return r

    monkeypatch.setattr(api, "check", Fails({}))
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="cp1252", errors="strict"))
    rc = main(["check", str(root), "--batch", "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o")])
    sys.stdout.flush()
    err = capsys.readouterr().err
    assert rc == 1, err
    assert b"Dvo\\u0159\xe1k_Ji\\u0159\xed: FAIL" in raw.getvalue(), raw.getvalue()

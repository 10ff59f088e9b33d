"""``mcproton check --batch --skip-checked`` (automation audit 2026-12-06, F6b): a patient whose earlier check.json
records the same files, version, beam model, calibration, levels and options is not checked again (its verdict is
reused and marked so); a changed file, another option, a missing or refused record: checked again.  Real checks of a
small synthetic head (CPU, 3,000 primaries, one beam: seconds each); the second night's checks are counted."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_head import write_case  # noqa: E402

import mcproton._check.api as api

KW = dict(beam_model="dcpt_v5", primaries=3000, target_uncertainty=None, backend="cpu", threads=1, gamma_points=200,
          report=False, progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_case(root / "a", shape_zyx=(24, 64, 64), pixel_mm=2.0, slice_mm=2.5)
    shutil.copytree(root / "a", root / "b")
    return root


def test_a_second_night_reuses_the_unchanged_patients_and_checks_the_changed_ones(export, tmp_path, monkeypatch):
    pytest.importorskip("pymedphys")
    out = tmp_path / "checks"
    first = api.check_batch(export, out, skip_checked=True, **KW)   # nothing earlier: both checked
    assert {k: type(v).__name__ for k, v in first.items()} == {"a": "CheckResult", "b": "CheckResult"}
    rec = json.loads((out / "a" / "check.json").read_text(encoding="utf-8"))
    key = rec["provenance"]["batch_reuse_key"]
    fresh = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert key["mcproton_version"] and key["beam_model"]["sha256"] and "RP.dcm" in key["input_files_sha256"]

    real, calls = api.check, []

    def counted(**kw):
        calls.append(Path(kw["folder"]).name)
        return real(**kw)

    monkeypatch.setattr(api, "check", counted)
    second = api.check_batch(export, out, skip_checked=True, **KW)
    assert calls == [], "unchanged: nothing checked again"
    assert all(isinstance(r, api.ReusedCheck) for r in second.values())
    assert [second[k].passed for k in "ab"] == [first[k].passed for k in "ab"]
    rows = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert rows["a"]["reused"] is True and rows["a"]["status"] == ("pass" if first["a"].passed else "fail")
    # the reused rows keep what the fresh rows said (the docs audit of 2026-12-06, F1: they had lost the patient,
    # the plan, the TPS doses, the gamma and the warnings), marked reused
    for k in "ab":
        assert set(rows[k]) == set(fresh[k]) | {"reused"}, k
        assert {f: rows[k][f] for f in fresh[k]} == fresh[k], k
    assert rows["a"]["patient_id"] and rows["a"]["tps_doses"][0]["sha256"] and rows["a"]["gamma_2_2_pct"] is not None

    # b's plan file changed (a re-export): b checked again, a reused; another option: both checked again
    work = tmp_path / "export2"
    shutil.copytree(export, work)
    shutil.copytree(out, tmp_path / "checks2")
    (work / "b" / "RP.dcm").write_bytes((work / "b" / "RP.dcm").read_bytes() + b"\0\0")
    third = api.check_batch(work, tmp_path / "checks2", skip_checked=True, **KW)
    assert calls == ["b"] and isinstance(third["a"], api.ReusedCheck)
    # the reused row names tonight's files (the export in another folder: before, last night's paths), says when its
    # check was made, and has an exit status as every row (integrators' audit 2026-12-06, F8)
    row = json.loads((tmp_path / "checks2" / "batch.json").read_text(encoding="utf-8"))["a"]
    assert row["tps_doses"] and all(f["path"].startswith(str(work.resolve())) for f in row["tps_doses"]), row
    assert row["checked"] == rec["provenance"]["check_finished"] and row["exit_status"] in (0, 1)
    calls.clear()
    api.check_batch(work, tmp_path / "checks2", skip_checked=True, **{**KW, "seed": 7})
    assert calls == ["a", "b"]
    # without --skip-checked: every patient checked, as before
    calls.clear()
    api.check_batch(export, out, **KW)
    assert calls == ["a", "b"]


def test_a_refused_or_stopped_record_is_not_reused(tmp_path):
    key = {"k": 1}
    p = tmp_path / "check.json"
    for record in ({"status": "refused", "passed": False, "provenance": {"batch_reuse_key": key}},
                   {"status": "pass", "passed": True, "settings": {"mc_stopped_by_time_limit": [1]},
                    "provenance": {"batch_reuse_key": key}},
                   {"status": "pass", "passed": True, "provenance": {}}):
        p.write_text(json.dumps(record))
        assert api._reusable(p, key) is None
    p.write_text(json.dumps({"status": "pass", "passed": True, "provenance": {"batch_reuse_key": key}}))
    assert api._reusable(p, key) is not None
    assert api._reusable(tmp_path / "missing.json", key) is None


def test_skip_checked_without_batch_is_refused(tmp_path, capsys):
    from mcproton.cli import main

    assert main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), "--quiet",
                 "--skip-checked"]) == 2
    assert "--skip-checked" in capsys.readouterr().err


def _key_patient(root: Path) -> Path:
    """A patient folder of small files (the key reads files, not DICOM) whose CT folder is linked in from a
    'shared store' beside it."""
    store = root / "store" / "ct"
    store.mkdir(parents=True)
    for i in range(3):
        (store / f"CT{i}.dcm").write_bytes(b"slice %d" % i)
    patient = root / "export" / "p"
    patient.mkdir(parents=True)
    (patient / "RP.dcm").write_bytes(b"plan")
    (patient / "ct").symlink_to(store, target_is_directory=True)
    return patient


def test_the_reuse_key_covers_a_linked_ct_folder(tmp_path):
    """New-features audit 2026-12-06, F1: the key listed the patient's files with Path.rglob, which does not enter a
    linked folder (Python < 3.13), while the check reads through it: a changed CT slice kept the old verdict."""
    patient = _key_patient(tmp_path)
    kw = {"beam_model": "dcpt_v5"}
    key = api._reuse_key(patient, kw)
    assert sorted(key["input_files_sha256"]) == ["RP.dcm", "ct/CT0.dcm", "ct/CT1.dcm", "ct/CT2.dcm"]
    (tmp_path / "store" / "ct" / "CT1.dcm").write_bytes(b"slice 1, +300 HU")
    assert api._reuse_key(patient, kw) != key, "a changed slice in the linked CT folder is another key"


def test_the_reuse_key_holds_the_build_and_the_calibration_data(tmp_path, monkeypatch):
    """F3: the key's "version" is 0.1.0 whatever the physics: it holds the kernel's source hash, the package's
    physics files and the built-in calibration's data as read (a table 5 % denser under the same name is another
    key), each a change that gives another dose."""
    import mcproton._io.hu_calibration as hu
    from mcproton._kernels.source import source_hash

    patient = _key_patient(tmp_path)
    kw = {"beam_model": "dcpt_v5", "calibration": "mcsquare_default"}
    key = api._reuse_key(patient, kw)
    assert key["build"]["kernel_hash"] == source_hash("transport.cu") and key["build"]["physics_files_sha256"]
    from mcproton._build import code_sha256

    assert key["build"]["code_sha256"] == code_sha256()   # the compat audit of 2026-12-06, F2
    assert api._reuse_key(patient, kw) == key, "the same build and inputs: the same key"

    data = tmp_path / "ct_calibration"
    shutil.copytree(hu.DATA_DIR, data)
    table = data / "mcsquare_scanner_default_hu_density.csv"
    lines = table.read_text(encoding="utf-8").splitlines()
    denser = [ln if not ln[:1].lstrip("-").isdigit() else   # "HU,density_gcm3" rows 5 % denser
              f"{ln.split(',')[0]},{float(ln.split(',')[1]) * 1.05:.6g}" for ln in lines]
    assert denser != lines, "the test must change the table"
    table.write_text("\n".join(denser) + "\n", encoding="utf-8")
    monkeypatch.setattr(hu, "DATA_DIR", data)
    assert api._reuse_key(patient, kw)["calibration_data_sha256"] != key["calibration_data_sha256"]


def test_the_build_identity_changes_with_the_physics_files(tmp_path, monkeypatch):
    """F3: a physics table of the package changed (a stopping power 1.8 % higher) is another build."""
    import mcproton._build as build

    pkg = tmp_path / "mcproton"
    shutil.copytree(Path(build.__file__).parent / "data", pkg / "data")
    shutil.copytree(Path(build.__file__).parent / "_physics", pkg / "_physics")
    monkeypatch.setattr(build, "_PACKAGE", pkg)
    build.physics_files_sha256.cache_clear()
    try:
        before = build.physics_files_sha256()
        table = pkg / "data" / "stopping_power" / "pstar_water_liquid.csv"
        table.write_text(table.read_text(encoding="utf-8") + "\n", encoding="utf-8")
        build.physics_files_sha256.cache_clear()
        assert build.physics_files_sha256() != before
    finally:
        build.physics_files_sha256.cache_clear()


def test_the_code_hash_changes_with_one_byte_of_the_check_code_or_a_kernel(tmp_path, monkeypatch):
    """Compat audit 2026-12-06, F2: the build identity covered the kernel and the physics data only, not the check's
    comparison or DICOM readers; one byte of ``_check/compare.py`` or of a kernel header is another code hash."""
    import mcproton._build as build

    pkg, kernels = tmp_path / "mcproton", tmp_path / "kernels"
    shutil.copytree(Path(build.__file__).parent, pkg, ignore=shutil.ignore_patterns("data", "__pycache__"))
    shutil.copytree(build._installed_part("kernels"), kernels, ignore=shutil.ignore_patterns("__pycache__"))
    part = build._installed_part
    monkeypatch.setattr(build, "_PACKAGE", pkg)
    monkeypatch.setattr(build, "_installed_part", lambda name: kernels if name == "kernels" else part(name))
    build.code_sha256.cache_clear()
    try:
        before = build.code_sha256()
        build.code_sha256.cache_clear()
        assert build.code_sha256() == before, "the same files: the same hash"
        compare = pkg / "_check" / "compare.py"
        text = compare.read_bytes()
        compare.write_bytes(text + b"#")
        build.code_sha256.cache_clear()
        assert build.code_sha256() != before
        compare.write_bytes(text)
        (header,) = [h for h in sorted(kernels.rglob("*.h"))][:1]
        header.write_bytes(header.read_bytes() + b"\n")
        build.code_sha256.cache_clear()
        assert build.code_sha256() != before
    finally:
        build.code_sha256.cache_clear()
    # not part of the run's build identity: a resume of `mcproton run` across pure Python changes of one kernel and
    # one physics stays allowed (it is bitwise right)
    assert "code_sha256" not in build.build_identity()


def test_a_check_by_other_code_is_checked_again_with_the_reason(export, tmp_path, monkeypatch):
    """Compat audit 2026-12-06, F2: ``--skip-checked`` reused a verdict of older check code (the same kernel and
    physics data) and called it "the same build"; now another code hash, or a record of before the code hash was
    recorded, is checked again, and the log says why."""
    pytest.importorskip("pymedphys")
    import mcproton._build as build

    root, out = tmp_path / "export", tmp_path / "checks"
    shutil.copytree(export / "a", root / "a")
    said: list[str] = []
    kw = {**KW, "log": said.append}
    api.check_batch(root, out, skip_checked=True, **kw)
    rec = json.loads((out / "a" / "check.json").read_text(encoding="utf-8"))
    assert rec["provenance"]["batch_reuse_key"]["build"]["code_sha256"] == build.code_sha256()
    assert rec["provenance"]["build"] == build.check_build_identity()

    real, calls = api.check, []

    def counted(**k):
        calls.append(Path(k["folder"]).name)
        return real(**k)

    monkeypatch.setattr(api, "check", counted)
    said.clear()
    api.check_batch(root, out, skip_checked=True, **kw)   # the same code: reused, and the log says what was compared
    assert calls == []
    (line,) = [m for m in said if "not checked again" in m]
    assert "kernel, physics data and code" in line and "(version, kernel and physics data)" not in line

    new_code = "f" * 64
    monkeypatch.setattr(build, "code_sha256", lambda: new_code)   # an upgrade that changed only Python code
    said.clear()
    api.check_batch(root, out, skip_checked=True, **kw)
    assert calls == ["a"], "another code hash: checked again"
    (line,) = [m for m in said if "checked again (--skip-checked)" in m]
    assert line.startswith("mcproton check --batch: a: ") and "mcproton's build" in line
    was = rec["provenance"]["batch_reuse_key"]["build"]["code_sha256"]
    assert f"code SHA-256 {new_code[:12]}, was {was[:12]}" in line, line
    assert "kernel" not in line.split("build", 1)[1], "only what differs is named"

    # a record of before the code hash was recorded (the same version, kernel and physics data): checked again
    rec = json.loads((out / "a" / "check.json").read_text(encoding="utf-8"))
    assert rec["provenance"]["batch_reuse_key"]["build"]["code_sha256"] == new_code
    del rec["provenance"]["batch_reuse_key"]["build"]["code_sha256"]
    (out / "a" / "check.json").write_text(json.dumps(rec), encoding="utf-8")
    calls.clear()
    said.clear()
    api.check_batch(root, out, skip_checked=True, **kw)
    assert calls == ["a"]
    (line,) = [m for m in said if "checked again (--skip-checked)" in m]
    assert "does not record the SHA-256 of the code that made it" in line, line


def test_the_reason_names_what_differs():
    build = {"version": "0.1.0", "kernel_hash": "k" * 64, "physics_files_sha256": "p" * 64, "code_sha256": "c" * 64}
    key = {"build": build, "input_files_sha256": {"RP.dcm": "1", "RD.dcm": "2"}, "options": {"seed": "1"}}
    other = {"build": {**build, "physics_files_sha256": "q" * 64}, "input_files_sha256": {"RP.dcm": "9"},
             "options": {"seed": "2"}}
    why = api._reuse_key_difference(other, key)
    assert why == ("its earlier check differs in mcproton's build (physics data SHA-256 pppppppppppp, was "
                   "qqqqqqqqqqqq), the patient's files (RD.dcm, RP.dcm), the options (seed)"), why
    assert "no reuse key" in api._reuse_key_difference(None, key)


def test_the_help_says_what_the_reuse_key_compares():
    """``mcproton check --help`` for --skip-checked names what the reuse key compares of the build, the code's
    SHA-256 too, as the batch's log line does (check review 2026-12-06, R5: the help still said "build (version,
    kernel and physics data)", the wording the compat audit's F2 found wrong)."""
    from mcproton.cli import command_parsers

    flat = " ".join(command_parsers()["check"].format_help().split())
    said = flat[flat.index("--skip-checked with --batch"):]
    said = said[:said.index(" --ct ")]
    assert "(version, kernel and physics data)" not in said, said
    assert "build (version, kernel, physics data and code: the SHA-256 of every Python and kernel source" in said, said


def test_a_check_set_aside_by_a_stopped_batch_is_reused_the_next_night(tmp_path):
    """A batch stopped before a patient sets its earlier check aside (integrators' audit 2026-12-06, F1: its
    check.json says "not_checked", not last night's verdict); the next night's --skip-checked still reuses that
    check (its key matches) and puts it back in place."""
    key = {"k": 1}
    d = tmp_path / "out" / "p"
    d.mkdir(parents=True)
    earlier = {"schema_version": 1, "status": "pass", "passed": True, "checks": [], "settings": {},
               "provenance": {"batch_reuse_key": key, "check_finished": "2026-12-05T23:00:00+00:00"}}
    (d / "check.json").write_text(json.dumps(earlier))
    (d / "check.html").write_text("<html><head><title>mcproton check: PASS</title></head></html>")
    api._pending_set_aside(tmp_path / "out", ["p"], "not checked: the batch was interrupted", lambda m: None)
    assert json.loads((d / "check.json").read_text())["status"] == "not_checked"
    assert api._reusable(d / "check.json", key) is None
    assert api._reusable_in(d, {"k": 2}, lambda m: None) is None   # another key: checked again, nothing moved
    assert list(d.glob("earlier_check_*"))
    assert api._reusable_in(d, key, lambda m: None) == earlier
    assert sorted(p.name for p in d.iterdir()) == ["check.html", "check.json"]   # put back


@pytest.mark.parametrize("legacy", [False, True])
def test_a_check_set_aside_is_reused_from_another_working_directory(tmp_path, monkeypatch, legacy):
    """Review 5 of 2026-12-06, F1: a batch run with a relative --out recorded where it set a patient's check aside
    relative to its working directory (``out/p/earlier_check_<date>``), so that the next night's batch, started from
    another directory (cron) or with --out absolute, did not find it and checked the patient again.  The path is
    absolute now, and the folder is found by its name in the patient's folder (a record of before: ``legacy``)."""
    key = {"k": 1}
    night1 = tmp_path / "night1"
    (night1 / "out" / "p").mkdir(parents=True)
    monkeypatch.chdir(night1)
    d = Path("out") / "p"
    earlier = {"schema_version": 1, "status": "pass", "passed": True, "checks": [], "settings": {},
               "provenance": {"batch_reuse_key": key, "check_finished": "2026-12-05T23:00:00+00:00"}}
    (d / "check.json").write_text(json.dumps(earlier))
    api._pending_set_aside(Path("out"), ["p"], "not checked: the batch was interrupted", lambda m: None)
    record = json.loads((d / "check.json").read_text())
    (aside,) = (night1 / "out" / "p").glob("earlier_check_*")
    if legacy:   # as written before the fix: relative to night 1's working directory
        record["earlier_outputs_moved_to"] = str(Path("out") / "p" / aside.name)
        (d / "check.json").write_text(json.dumps(record))
    else:
        assert record["earlier_outputs_moved_to"] == str(aside) and aside.is_absolute()
    monkeypatch.chdir(tmp_path)   # the next night: another working directory, --out absolute
    assert api._reusable_in(night1 / "out" / "p", key, lambda m: None) == earlier
    assert sorted(p.name for p in (night1 / "out" / "p").iterdir()) == ["check.json"]   # put back

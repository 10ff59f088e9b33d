"""A new user's first day with real data (the journey audit 28): what a user who follows the README must be told
where the other tests of a finding do not sit.  F7: every built-in beam model is named where a new user looks (the
README's check section, ``mcproton check --help``) and a plan for another machine is told what to give.  (F1-F6:
tests/check/test_check.py, test_check_opentps.py, test_check_aptg.py, test_check_batch_way_out.py, test_report.py,
tests/io/test_rtdose_labels.py and tests/io/test_dicom_kind.py.)"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import make_plan, spot_grid  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import base  # noqa: E402,F401  (test_check's module fixture: CT, plan, RS; no transport)

ROOT = Path(__file__).resolve().parents[2]


def _check_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("### Independent plan check (`mcproton check`)", 1)[1].split("\n### ", 1)[0]


def test_every_built_in_beam_model_is_named_in_the_check_s_help_and_readme(capsys):
    """Journey audit 28, F7: the README said "the DCPT clinical model ships" and ``check --help`` named dcpt_v5 and
    dcpt_v2, so a centre with an IBA machine did not learn that mcsquare_upenn_iba_dn exists."""
    from mcproton._io.beam_model import BUILTIN
    from mcproton._io.cli_args import BUILTIN_BEAM_MODELS
    from mcproton.cli import main

    assert set(BUILTIN_BEAM_MODELS) == set(BUILTIN)   # the help's list is the registry's
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    section = _check_section()
    for name in BUILTIN:
        assert name in shown, name
        assert f"`{name}`" in section, name
    assert "mcproton commission" in shown


def test_a_plan_for_another_machine_is_told_the_built_in_models_and_how_to_make_its_own():
    """Journey audit 28, F7: the refusal of a plan for another machine said "Give the beam model of that machine",
    not which exist nor how to make one: now the built-in models and the README's commissioning section."""
    from mcproton._io.beam_model import BUILTIN, load_beam_model
    from mcproton._io.errors import DicomInputError
    from mcproton._io.rtplan import load_rtplan, plan_to_beams

    plan = load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": (0.0, 0.0, 0.0), "machine": "GTR1",
                                   "layers": [(150.0, spot_grid(2, 5.0), [1.0] * 4)]}]))
    with pytest.raises(DicomInputError) as exc:
        plan_to_beams(plan, load_beam_model("dcpt_v5"))
    msg = str(exc.value)
    assert "planned for treatment machine 'GTR1', but beam model 'dcpt_v5' is of TR1, TR2, TR3" in msg, msg
    assert all(re.search(rf"\b{name} \(", msg) for name in BUILTIN), msg
    assert "mcproton commission" in msg and 'the README, "Commissioning a beam model (`mcproton commission`)"' in msg


def test_a_check_without_beam_model_is_refused_before_any_file_is_read(tmp_path, monkeypatch, capsys):
    """Journey audit 33, F1: ``mcproton check p03/ --phantom-from-struct --out chk`` (no ``--beam-model``, which has
    no default) read the plan, the doses and the structure set and built the phantom first, and was refused 9.8 s
    later (APTG plan03 on the 2-core VM; a clinical CT's read is longer); now the command line refuses it at once, as
    an option it misses, before any file is read, with the same message and exit status 2."""
    from mcproton._check import api
    from mcproton.cli import main

    def read(*a, **kw):
        raise AssertionError("the inputs were read before the missing --beam-model was refused")

    monkeypatch.setattr(api, "gather", read)
    for args in ([str(tmp_path)], [str(tmp_path), "--phantom-from-struct"], [str(tmp_path), "--batch"]):
        rc = main(["check", *args, "--out", str(tmp_path / "chk")])
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        assert "no beam model: the MC needs the machine's beam model" in err and "give --beam-model" in err, err
        assert not (tmp_path / "chk").exists(), args


def test_the_readme_says_with_which_beam_model_the_opentps_plan_is_checked():
    """Journey audit 33, F2: the README's check section said that the OpenTPS head plan passes, and listed the
    built-in ``mcsquare_upenn_iba_dn`` as MCsquare's IBA model, but not with which beam model the plan was checked; a
    new user's ``--beam-model mcsquare_upenn_iba_dn`` is refused ("nominal energy 86.48 MeV is outside beam model
    'mcsquare_upenn_iba_dn' (100-225 MeV)"): the plan needs OpenTPS's own BDL (its 20 MeV row and its range shifter).
    The section now gives the command of docs/check.md, with every option that case needs."""
    from mcproton._io.beam_model import load_beam_model

    section = " ".join(_check_section().split())
    bdl = "tests/data/dicom/opentps_head/BDL_default_DN_RangeShifter.txt"
    m = re.search(r"`(mcproton check \S+ --beam-model " + re.escape(bdl) + r"[^`]*)`", section)
    assert m, "the README's check section gives no command for the OpenTPS case with OpenTPS's BDL"
    command = m.group(1)
    for option in ("--calibration mcsquare_default", "--dose-type physical", "--patient-position HFS", "--out"):
        assert option in command, (option, command)
    assert (ROOT / bdl).is_file()
    # why the built-in model is not it: the plan's lowest layers lie below its 100 MeV
    assert load_beam_model("mcsquare_upenn_iba_dn").energy_range_mev[0] >= 100.0
    assert "mcsquare_upenn_iba_dn" in section[section.index("OpenTPS 2.0 designed"):][:900]


def test_a_folder_of_a_plan_and_its_dose_alone_is_told_both_what_it_lacks_at_once(tmp_path, capsys):
    """Journey audit 33, F3: APTG plan06's folder as published (the RT Ion Plan and RayStation's beam dose; no CT, no
    RT Struct) took three refusals to learn what it needs: "the plan names structure set ... give --struct RS.dcm ...
    or --allow-no-struct"; with --allow-no-struct "no CT: give --ct ..., or ... --phantom-from-struct"; with that,
    "--phantom-from-struct needs the structure set".  The missing CT is now said first, with the structure set that
    a phantom would need, in one refusal."""
    import gzip
    import shutil

    from mcproton.cli import main

    data = ROOT / "tests" / "data" / "dicom"
    folder = tmp_path / "plan06"
    folder.mkdir()
    shutil.copy(data / "RP_plan06_rs.dcm", folder / "RP.dcm")
    with gzip.open(data / "aptg_plan06" / "RD_plan06_beam1.dcm.gz", "rb") as src:
        (folder / "RD.dcm").write_bytes(src.read())
    for extra in ([], ["--allow-no-struct"]):
        rc = main(["check", str(folder), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "chk"), *extra])
        err = " ".join(capsys.readouterr().err.split())
        assert rc == 2, err
        assert "no CT: give --ct (the plan's CT series)" in err, err
        assert "--phantom-from-struct" in err and "--struct RS.dcm" in err and "no RT Struct" in err, err
        assert "--allow-no-struct" not in err, err


def _gz_ct_patient(base, folder: Path) -> Path:  # noqa: F811
    """A patient folder as downloaded or archived: the plan, the TPS dose and the structure set, with its CT slices
    gzip-compressed (ct/*.dcm.gz), which the check does not read."""
    import gzip
    import shutil

    from test_check import _tps

    folder.mkdir(parents=True)
    for f in ("RP.dcm", "RS.dcm"):
        shutil.copy2(base["dir"] / f, folder / f)
    shutil.move(_tps(base, f"rd_{folder.name}", base["blob"]), folder / "RD.dcm")
    (folder / "ct").mkdir()
    for f in (base["dir"] / "ct").iterdir():
        (folder / "ct" / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    return folder


def test_a_no_ct_refusal_still_says_why_the_folder_s_ct_was_not_read_and_whose_it_is(base, tmp_path,  # noqa: F811
                                                                                         capsys):
    """Review a of audit 33, R1: the early "no CT" refusal (F3 above) came before the folder's pairing lines were
    said and before the patient was identified: a folder whose CT slices are gzip-compressed was told only "no CT:
    give --ct", not that its 14 slices were skipped as gzip-compressed; a --batch row and index lost the patient's
    ID, name and plan ("p1 |  |  | REFUSED").  Now the pairing lines come first and the record names the patient."""
    import html
    import json

    from mcproton.cli import main

    folder = _gz_ct_patient(base, tmp_path / "gz")
    rc = main(["check", str(folder), "--beam-model", "dcpt_v2", "--out", str(tmp_path / "chk"), "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2, err
    assert "no CT: give --ct" in err, err
    assert "skipped 14 file(s) that are not DICOM: ct/" in err and "gzip-compressed: decompress it" in err, err
    assert err.index("gzip-compressed") < err.index("no CT: give --ct"), err
    assert not (tmp_path / "chk").exists()
    # --batch: the refused patient's row and index row name the patient and the plan
    _gz_ct_patient(base, tmp_path / "patients" / "p1")
    out = tmp_path / "out"
    main(["check", str(tmp_path / "patients"), "--batch", "--beam-model", "dcpt_v2", "--out", str(out), "--quiet"])
    capsys.readouterr()
    row = json.loads((out / "batch.json").read_text(encoding="utf-8"))["p1"]
    assert "no CT" in (row.get("error") or ""), row
    ident = row.get("patient_id"), row.get("plan")
    assert all(ident), row
    index = html.unescape((out / "index.html").read_text(encoding="utf-8"))
    assert all(v in index for v in ident), index


@pytest.mark.parametrize("args, said", [
    ([], "give a patient folder or --plan with --dose"),
    (["{d}", "--skip-checked"], "--skip-checked skips the patients of a --batch"),
    (["{d}", "--batch", "--prescription", "2"], "--prescription is one plan's; --batch checks many"),
    (["{d}", "--batch", "--plan", "{d}/RP.dcm"], "--batch takes one folder holding one sub-folder per patient")])
def test_a_usage_error_that_reads_no_file_is_said_before_the_missing_beam_model(tmp_path, capsys, args, said):
    """Review a of audit 33, R5: the early --beam-model refusal (F1 above) came before the command line's other
    checks that read no file either, so a user missing --beam-model and making one of these slips was refused twice,
    the slip second.  The slip is said first now (exit status 2 either way); --beam-model is still refused before
    any file is read."""
    from mcproton.cli import main

    rc = main(["check", *[a.format(d=tmp_path) for a in args], "--out", str(tmp_path / "chk")])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and said in err, err
    assert "no beam model" not in err, err

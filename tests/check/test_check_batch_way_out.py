"""A patient of ``mcproton check --batch`` that is refused is told what to change in its folder, or how to check it
alone with the options, never to give --ct, --dose, --plan, --ct-series or --struct, which --batch refuses (the
error-message audit 27, F2: "no CT: give --ct (the plan's CT series) ..." and "give --dose RD.dcm" were the rows of
batch.json, index.html and the log).  The patients are the small synthetic head's files, a file left out of each."""
from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_head import write_case  # noqa: E402

from mcproton.cli import main  # noqa: E402

#: a single check's option named as a way out (not --dose-type, --struct-overrides, --phantom-from-struct)
OPTION = re.compile(r"(?<![\w-])(--plan|--dose|--ct|--ct-series|--struct)(?![\w-])")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("head"), shape_zyx=(24, 64, 64), pixel_mm=2.0, slice_mm=2.5)


@pytest.fixture(scope="module")
def batch(head, tmp_path_factory):
    """PTS/no_ct (plan and dose, no CT), PTS/no_dose (plan and CT, no dose)."""
    src = head
    root = tmp_path_factory.mktemp("batch") / "PTS"
    for name, parts in (("no_ct", ("plan", "dose")), ("no_dose", ("plan", "ct"))):
        (root / name).mkdir(parents=True)
        for part in parts:
            p = Path(src[part])
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, root / name / p.name)
    return root


def test_a_refused_patient_is_told_its_folder_and_how_to_check_it_alone(batch, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["check", str(batch), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--primaries", "1000",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    rows = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    index = html.unescape((out / "index.html").read_text(encoding="utf-8"))
    for name, missing, option, in_folder in (
            ("no_ct", "no CT", "--ct CT_FOLDER", "put the plan's CT series into"),
            ("no_dose", "no RT Dose of the planning system", "--dose RD.dcm",
             "put the planning system's RT Dose of the plan into")):
        msg = rows[name]["error"]
        assert rows[name]["status"] == "refused" and missing in msg, msg
        folder = str(batch / name)
        assert f"{in_folder} {folder}" in msg, msg
        alone = msg.split("; or check this patient alone with ", 1)
        assert len(alone) == 2, msg
        assert not OPTION.search(alone[0]), f"a --batch refusal names an option --batch refuses: {msg}"
        assert f"mcproton check {folder} {option} --beam-model dcpt_v5 --out {out / name}" in alone[1], msg
        assert alone[1].split(":", 1)[0] == option.split()[0], msg
        shown = [ln for ln in err.splitlines() if f"{name}: REFUSED" in ln]
        assert shown and all(f"{in_folder} {folder}" in ln for ln in shown), shown
        assert in_folder in index


@pytest.fixture(scope="module")
def complete(head, tmp_path_factory):
    """PTS/full: the plan, its dose and its CT (no structure set)."""
    root = tmp_path_factory.mktemp("complete") / "PTS"
    (root / "full").mkdir(parents=True)
    for part in ("plan", "dose", "ct"):
        p = Path(head[part])
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, root / "full" / p.name)
    return root


@pytest.mark.parametrize("option, refused, alone", [
    (["--calibration", "no_such_calibration"], "unknown calibration 'no_such_calibration'", None),
    (["--outside-external", "air"], "--outside-external air needs the structure set", "--struct RS.dcm")])
def test_the_alone_command_names_only_the_refusal_s_own_options(complete, tmp_path, capsys, option, refused, alone):
    """A complete patient's refusal is followed by the alone-command with the options of that refusal only, or by
    none (the review c of audit 27, R1: the CT's pick recorded --ct-series on the patient, so an unknown --calibration
    and --outside-external air without a structure set were both told "check this patient alone with --ct-series
    ... --ct-series UID")."""
    out = tmp_path / "out"
    rc = main(["check", str(complete), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--primaries",
               "1000", "--quiet", *option])
    err = capsys.readouterr().err
    assert rc == 2, err
    msg = json.loads((out / "batch.json").read_text(encoding="utf-8"))["full"]["error"]
    assert refused in msg and "--ct-series" not in msg, msg
    shown = [ln for ln in err.splitlines() if "full: REFUSED" in ln]
    assert shown and all("--ct-series" not in ln for ln in shown), shown
    if alone is None:
        assert "alone" not in msg and not OPTION.search(msg), msg
    else:
        said, command = msg.split("; or check this patient alone with ", 1)
        assert f"put it into {complete / 'full'}" in said and not OPTION.search(said), msg
        assert command.startswith(f"{alone.split()[0]}: mcproton check {complete / 'full'} {alone} --beam-model "
                                  f"dcpt_v5 --out {out / 'full'} "), msg
        assert set(OPTION.findall(command)) == {alone.split()[0]}, msg


def test_a_single_check_is_still_told_its_options(batch, tmp_path, capsys):
    """The same folder checked alone: the single check's options, as before."""
    rc = main(["check", str(batch / "no_ct"), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "c"),
               "--primaries", "1000", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "no CT: give --ct (the plan's CT series)" in err and "check this patient alone" not in err, err


def test_an_option_still_named_in_a_message_gets_the_batch_s_words(tmp_path):
    """A refusal not worded for the batch (a reader's) that names a single check's option: the batch says it does
    not take it, and how to check the patient alone; --dose-type, --struct-overrides and --phantom-from-struct are
    the batch's own options, not named as refused."""
    from mcproton._check.api import alone_advice
    from mcproton._check.inputs import BatchPatient

    p = BatchPatient(tmp_path / "p1")
    said = alone_advice("two plan doses: give the right one with --dose, or --dose-type physical", p, "dcpt_v5",
                        tmp_path / "out" / "p1")
    assert said.startswith(f"; --batch takes no --dose: change the files in {p.folder}"), said
    assert f"mcproton check {p.folder} --dose RD.dcm --beam-model dcpt_v5 --out {tmp_path / 'out' / 'p1'}" in said
    for message in ("--struct-overrides ignore leaves it out", "--phantom-from-struct needs a CT",
                    "compared as dose to water (--dose-to)", "no option here"):
        assert alone_advice(message, BatchPatient(tmp_path / "p1"), "dcpt_v5", tmp_path) == "", message
    # the options the refusal carries (its way out worded for the folder), and only those
    said = alone_advice("put it into p1", p, "dcpt_v5", tmp_path, ("--struct",))
    assert said.startswith("; or check this patient alone with --struct: mcproton check "), said
    assert set(OPTION.findall(said)) == {"--struct"}, said


def test_a_patient_without_a_ct_is_not_told_to_give_the_batch_phantom_from_struct(batch, tmp_path, capsys):
    """Journey audit 28, F3c: the no-CT refusal of a batch patient told the user to "give the batch
    --phantom-from-struct", which refuses every other patient of the batch (each has a CT); now: this patient alone
    with it, or the phantoms in a batch folder of their own."""
    out = tmp_path / "out"
    main(["check", str(batch), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--primaries", "1000",
          "--quiet"])
    capsys.readouterr()
    msg = json.loads((out / "batch.json").read_text(encoding="utf-8"))["no_ct"]["error"]
    assert "give the batch --phantom-from-struct" not in msg, msg
    assert "check this patient alone with --phantom-from-struct" in msg and "a batch folder of their own" in msg, msg


def test_phantom_from_struct_given_to_a_batch_says_so_to_a_patient_with_a_ct(complete, tmp_path, capsys):
    """The other side (journey audit 28, F3c): a patient with a CT in a batch given --phantom-from-struct is told that
    the option applies to every patient of the batch, not only to leave it out."""
    out = tmp_path / "out"
    rc = main(["check", str(complete), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--primaries",
               "1000", "--quiet", "--phantom-from-struct"])
    capsys.readouterr()
    msg = json.loads((out / "batch.json").read_text(encoding="utf-8"))["full"]["error"]
    assert rc == 2 and "but a CT was found" in msg, msg
    assert "--phantom-from-struct applies to every patient of a batch" in msg and "of their own" in msg, msg


@pytest.fixture(scope="module")
def named_struct(head, tmp_path_factory):
    """PTS/named: the plan, its dose and its CT, the plan naming a structure set (ReferencedStructureSetSequence)
    that is not in the folder."""
    import pydicom

    root = tmp_path_factory.mktemp("named") / "PTS"
    (root / "named").mkdir(parents=True)
    for part in ("dose", "ct"):
        p = Path(head[part])
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, root / "named" / p.name)
    ds = pydicom.dcmread(head["plan"])
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.28281"
    ds.ReferencedStructureSetSequence = pydicom.Sequence([ref])
    ds.save_as(root / "named" / Path(head["plan"]).name)
    return root


def test_a_batch_patient_without_the_structure_set_its_plan_names(named_struct, tmp_path, capsys):
    """Journey audit 28, F1, in --batch: the patient is refused (its folder named, --allow-no-struct the way to check
    it without); with --allow-no-struct it is checked, and its row, console line and index say that the target rows
    were not evaluated (before: a plain PASS)."""
    from mcproton._check.api import NO_STRUCT_WARNING, NO_STRUCTURES

    out = tmp_path / "out"
    rc = main(["check", str(named_struct), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--primaries",
               "1000", "--quiet"])
    capsys.readouterr()
    msg = json.loads((out / "batch.json").read_text(encoding="utf-8"))["named"]["error"]
    assert rc == 2 and "the plan names structure set 1.2.826.0.1.3680043.8.498.28281" in msg, msg
    assert f"put the plan's structure set into {named_struct / 'named'}, or check without structures: " \
           "--allow-no-struct" in msg, msg
    out = tmp_path / "out2"
    rc = main(["check", str(named_struct), "--batch", "--beam-model", "dcpt_v5", "--out", str(out), "--primaries",
               "1000", "--target-uncertainty", "0", "--gamma-points", "200", "--quiet", "--allow-no-struct"])
    shown = capsys.readouterr()
    row = json.loads((out / "batch.json").read_text(encoding="utf-8"))["named"]
    assert row["error"] is None and row["no_structures"] == NO_STRUCTURES, row
    assert any(w.startswith(NO_STRUCT_WARNING) and "as asked (--allow-no-struct)" in w for w in row["warnings"])
    assert f"named: {'PASS' if row['passed'] else 'FAIL'}" in shown.out and f"({NO_STRUCTURES})" in shown.out, shown.out
    assert f"({NO_STRUCTURES})" in html.unescape((out / "index.html").read_text(encoding="utf-8"))

"""Patient sub-folder names of ``mcproton check --batch`` that are not what a batch expects (untrusted-input audit 29).

F4: a sub-folder named ``batch.json`` or ``index.html`` was checked into ``OUT/batch.json/``; the batch then could not
write its summary ``OUT/batch.json`` ("is a folder: ... give another path") and stopped after that patient's MC,
the other patients unchecked.  Now the survey refuses such a sub-folder before any patient, saying to rename it.
F5: a sub-folder name holding a newline or an escape sequence was printed raw: on stdout (the batch's verdicts)
``\\x1b[8m`` hid the "REFUSED (...)" after a forged "p1: PASS", and on stderr a newline made a line of its own that
read as another patient's verdict.  Now the names and the messages holding them are printed escaped.

The patients here are refused at once (a folder without DICOM): no transport.
"""
from __future__ import annotations

import sys

import pytest

from mcproton._check.batch import survey
from mcproton._check.inputs import CheckInputError
from mcproton.cli import main

FORGED = "mcproton check --batch: p1: PASS"


@pytest.mark.parametrize("name", ["batch.json", "index.html", "Index.HTML"])
def test_a_sub_folder_named_as_a_batch_output_is_refused_before_any_patient(tmp_path, name):
    root = tmp_path / "PTS"
    for n in ("a", name, "z"):
        (root / n).mkdir(parents=True)
        (root / n / "RP.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(CheckInputError, match=rf"--batch: the sub-folder '{name}' of .*PTS has the name of a file "
                       r"the batch writes in its output folder \(--out .*out: batch\.json, index\.html\).*rename the "
                       r"sub-folder"):
        survey(root, tmp_path / "out")


@pytest.mark.skipif(sys.platform == "win32", reason="a newline and ESC cannot be in a Windows folder name")
def test_names_with_newlines_and_escape_sequences_are_printed_escaped(tmp_path, capsys):
    root = tmp_path / "PTS"
    hostile = f"p1\n[14:00:00] {FORGED}\x1b[8m"
    for n in (hostile, "p2"):
        (root / n).mkdir(parents=True)
        (root / n / "x.dcm").write_text("not DICOM")
    rc = main(["check", str(root), "--batch", "--beam-model", "dcpt_v5", "--out", str(tmp_path / "out"),
               "--primaries", "1000"])
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    for stream in (cap.out, cap.err):
        assert "\x1b" not in stream
        # the name's tail never a line of its own: the forged words only after the escaped newline
        forged = [line for line in stream.splitlines() if FORGED in line]
        assert forged and all(f"\\n[14:00:00] {FORGED}" in line for line in forged), forged
    verdicts = [line for line in cap.out.splitlines() if line.startswith(("p1", "p2"))]
    assert len(verdicts) == 2 and verdicts[0].startswith("p1\\n[14:00:00] ") and "REFUSED" in verdicts[0], cap.out

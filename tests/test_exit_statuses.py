"""The exit status of an error that is none of mcproton's own classes (audit 26 exitcodes, F4): a programming error
(numpy's "zero-size array to reduction operation", a broadcast of two shapes, a dict changed during iteration) is
an internal error (4, "please report it"), not a refused input (2) or the machine's (3); an error raised by a reader
of input files keeps its status; a library's own error gets the --debug hint."""
from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mcproton.cli import main
from mcproton.errors import exit_status, status_of

sys.path.insert(0, str(Path(__file__).resolve().parent / "run"))
from run_helpers import write_cfg  # noqa: E402  (tests/run: the small water-pencil config)


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test looks at it
        return exc
    raise AssertionError("nothing raised")


def _empty_max() -> None:
    np.max(np.array([]))


def _broadcast() -> None:
    np.ones(3) + np.ones(4)


def _changed_size() -> None:
    d = {1: 1}
    for k in d:
        d[k + 1] = 1


def _ambiguous() -> None:
    if np.ones(2) > 0:
        pass


def load_truncated_slice() -> None:   # a reader of input files: numpy's error is the input's
    np.reshape(np.zeros(5), (2, 2))


def _mcproton_refusal() -> None:
    raise ValueError("run.batches must be >= 2")


@pytest.mark.parametrize("fn, status", [
    (_empty_max, "internal_error"),
    (_broadcast, "internal_error"),
    (_changed_size, "internal_error"),
    (_ambiguous, "internal_error"),
    (load_truncated_slice, "refused"),
    (_mcproton_refusal, "refused"),
    (lambda: open("/nonexistent/x.toml"), "refused"),
    (lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")), "environment_error"),
])
def test_a_programming_error_is_internal_and_an_input_error_keeps_its_status(fn, status):
    exc = _raised(fn)
    assert status_of(exc) == status, repr(exc)
    assert exit_status(exc) == {"internal_error": 4, "refused": 2, "environment_error": 3}[status]


def test_the_run_exits_4_for_numpys_error_after_its_inputs_are_read(tmp_path, monkeypatch, capsys):
    """Before: exit 2 "mcproton: error: zero-size array ..." (refused: fix the input) with no hint to report it."""
    import mcproton.cli

    def bug(*args, **kwargs):
        _empty_max()

    monkeypatch.setattr(mcproton.cli, "_body_outline_and_check_outputs", bug)
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "mcproton: internal error: ValueError: zero-size array" in err and "please report it" in err, err
    assert "--debug" in err


def test_the_run_exits_4_for_a_dict_changed_during_iteration(tmp_path, monkeypatch, capsys):
    """Before: exit 3 (the machine's: retry on another node)."""
    import mcproton.cli

    monkeypatch.setattr(mcproton.cli, "_body_outline_and_check_outputs", lambda *a, **k: _changed_size())
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 4
    assert "please report it" in capsys.readouterr().err


def test_a_librarys_error_gets_the_debug_hint_and_keeps_its_status(tmp_path, monkeypatch, capsys):
    """An OSError raised inside a library (h5py's "Unable to open file", here json's decoder) keeps its status (a
    refused input), and its line says how to see the traceback."""
    import mcproton.cli

    def read(*args, **kwargs):
        json.loads("{")

    monkeypatch.setattr(mcproton.cli, "_body_outline_and_check_outputs", read)
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "rerun with --debug for the traceback" in err and "please report it" not in err, err
    # mcproton's own refusal (a plain ValueError it raises) gets no hint, also under python -m mcproton.cli, where
    # the command line's module is __main__
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "mcproton.cli", "run", str(cfg), "--out", str(tmp_path / "o.h5"),
                           "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("--workers must be >= 1; got 0"), proc.stderr


def test_a_check_records_numpys_error_as_internal(tmp_path, monkeypatch, capsys):
    """check --json: the record said "refused" (exit 2) for a numpy error after the inputs were read."""
    from mcproton._check import api

    def bug(**kw):
        _empty_max()

    monkeypatch.setattr(api, "check", bug)
    rc = main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), "--json"])
    cap = capsys.readouterr()
    assert rc == 4, cap.err
    assert json.loads(cap.out)["status"] == "internal_error" and "please report it" in cap.err


SPOTS = "nominal_energy_mev,z_mm,sigma_x_mm,sigma_y_mm\n150,0,4,4\n"
#: each command, given --out in a folder it cannot write: @d is that folder, @cfg a run config, @spots a spot CSV
UNWRITABLE_OUT = {
    "run": ["run", "@cfg", "--out", "@d/o.h5", "--quiet"],
    "commission": ["commission", "--beam-model", "dcpt_v5", "--spots", "@spots", "--out", "@d/cm", "--threads", "1"],
    "check": ["check", "@empty", "--beam-model", "dcpt_v5", "--out", "@d/c"],
    "demo": ["demo", "--out", "@d/d", "--primaries", "1000", "--threads", "1"],
    "phantom": ["phantom", "--age", "5", "--out", "@d/p"],
    "validate": ["validate", "--cases", "stopping_power", "--out", "@d/v"],
}


def _unwritable_folder_runner(tmp_path):
    """How to run a command with ``@d`` a folder it cannot write: a read-only tmpfs in a mount namespace of its own
    (as root, whom permissions do not stop; skipped where ``unshare -m`` is not allowed), else a folder without
    write permission."""
    import os
    import shutil
    import subprocess
    import sys

    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        return d, lambda argv: subprocess.run([sys.executable, "-m", "mcproton.cli", *argv], capture_output=True,
                                              text=True, timeout=300)
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("root, and no mount namespace for a read-only file system (unshare -m)")
    import shlex

    def run(argv):
        line = " ".join(map(shlex.quote, [sys.executable, "-m", "mcproton.cli", *argv]))
        mount = f"mount -t tmpfs -o size=1m,ro tmpfs {shlex.quote(str(d))}"
        return subprocess.run(["unshare", "-m", "bash", "-c", f"{mount} && exec {line}"], capture_output=True,
                              text=True, timeout=300)

    return d, run


@pytest.mark.parametrize("command", list(UNWRITABLE_OUT))
def test_an_unwritable_out_is_the_machines_in_every_command(command, tmp_path):
    """A read-only --out (or one without write permission) exits 3 ("the machine or the output: the disk full or
    read-only") in every command, as the table of mcproton.errors says; run and commission exited 2 (a refused
    input: "config error") where check, demo, phantom and validate exited 3 (audit 26 exitcodes, F3)."""
    d, run = _unwritable_folder_runner(tmp_path)
    write_cfg(tmp_path / "job.toml", 1000)
    (tmp_path / "spots.csv").write_text(SPOTS)
    (tmp_path / "empty").mkdir()
    subst = {"@cfg": str(tmp_path / "job.toml"), "@spots": str(tmp_path / "spots.csv"),
             "@empty": str(tmp_path / "empty")}
    argv = [subst.get(a, a.replace("@d", str(d))) for a in UNWRITABLE_OUT[command]]
    proc = run(argv)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "error:" in proc.stderr and "config error" not in proc.stderr, proc.stderr


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="no /dev/full")
def test_a_summary_that_cannot_be_written_to_stdout_is_an_error():
    """stdout on a full disk (/dev/full): the printed record was lost with exit status 0 and no word (audit 26
    exitcodes, F5); now a line on stderr and exit status 3.  A broken pipe (| head) stays exit status 0."""
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "mcproton.cli", "check", "--print-levels"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "could not all be written: [Errno 28] No space left on device" in proc.stderr, proc.stderr
    head = subprocess.run(f"{sys.executable} -m mcproton.cli check --print-levels | head -c 10 >/dev/null; "
                          "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                          text=True, timeout=120)
    assert head.returncode == 0 and "could not" not in head.stderr, head.stderr


@pytest.mark.parametrize("extra, words", [
    (["--out", "@o", "--bogus"], "unrecognized arguments: --bogus"),
    (["--out", "@o", "--primaries", "abc"], "argument --primaries: invalid int value: 'abc'"),
    (["--out", "@o", "--backend", "gpu"], "argument --backend: invalid choice: 'gpu'"),
    ([], "the following arguments are required: --out"),
])
def test_check_json_prints_its_record_for_a_usage_error(extra, words, tmp_path, capsys):
    """docs/check.md: "--json prints the record on stdout, in every outcome"; a refusal made by argparse printed
    nothing on stdout, and a wrapper's json.loads(stdout) failed on the first typo (audit 26 exitcodes, F6)."""
    argv = ["check", str(tmp_path), "--beam-model", "dcpt_v5",
            *[str(tmp_path / "o") if a == "@o" else a for a in extra], "--json"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    cap = capsys.readouterr()
    record = json.loads(cap.out)
    assert record["status"] == "refused" and record["exit_status"] == 2 and record["passed"] is False
    assert words in record["error"] and words in cap.err
    assert record["provenance"]["out"] == (str(tmp_path / "o") if extra else None)
    with pytest.raises(SystemExit):   # without --json: nothing on stdout, as before
        main(argv[:-1])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("word", ["--j", "--js", "--jso"])
def test_check_prints_no_record_for_a_prefix_of_json(word, tmp_path, capsys):
    """A prefix of --json is not --json (options by their whole name only): it is refused as an unknown option, and
    no JSON record is printed for a command that did not ask for one (review 26a, R5: it was)."""
    with pytest.raises(SystemExit) as exc:
        main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), word])
    assert exc.value.code == 2
    cap = capsys.readouterr()
    assert cap.out == "" and f"unrecognized arguments: {word}" in cap.err, cap

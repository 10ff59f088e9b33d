"""Bad inputs: each case of tests/run/make_bad_input_table.py fails before any transport with exit status 2
and one message naming the key (run in-process here; the script runs the real CLI and writes
docs/bad_inputs.md)."""
from __future__ import annotations

from pathlib import Path

import pytest
from fakes import log_lines  # tests/fakes.py
from make_bad_input_table import CASES, case_argv

from mcproton.cli import main


def assert_refused(args, text, must, tmp_path, capsys, monkeypatch):
    """The CLI exits 2 with one 'mcproton:' line containing `must`, writes nothing and never transports."""
    import mcproton.run

    def no_transport(*a, **k):
        raise AssertionError("a bad input reached the transport")

    monkeypatch.setattr(mcproton.run.Simulation, "run_histories", no_transport)
    monkeypatch.setattr(mcproton.run.Simulation, "run_histories_sparse", no_transport)
    rc = main(case_argv(args, text, tmp_path, 0))
    err = log_lines(capsys.readouterr().err.strip())
    # the machine, not the input (a scheduler that does not answer): exit status 3 (mcproton.errors)
    assert rc == (3 if must in ENVIRONMENT_MUSTS else 2), (rc, err)
    assert len(err) == 1 and err[0].startswith("mcproton:"), err
    assert must in err[0], err[0]
    assert not list(tmp_path.glob("*.h5"))
    return err[0]


#: the cases (by their expected text) whose cause is the machine, exit status 3, not 2: an output folder that is
#: read-only or cannot be written is 3 in every command (audit 26 exitcodes, F3: run said 2, "config error")
ENVIRONMENT_MUSTS = {"Dask scheduler", "cannot be written", "is on a read-only file system"}


def _comparable(msg: str) -> str:
    """A message with the run's own file numbers (case07.toml, out07.h5) made alike."""
    import re

    return re.sub(r"(case|out)\d+\.", r"\1NN.", msg)


@pytest.mark.parametrize("case,args,text,must", CASES, ids=[c[0] for c in CASES])
def test_bad_input_message(case, args, text, must, tmp_path, capsys, monkeypatch):
    """The message is the one docs/bad_inputs.md shows: a changed message fails here until the table is
    regenerated (python tests/run/make_bad_input_table.py)."""
    from make_bad_input_table import DOC, ROOT

    msg = assert_refused(args, text, must, tmp_path, capsys, monkeypatch)
    # the script runs the CLI in the repository root; here the current folder is pytest's
    msg = (msg.replace(str(tmp_path), "$TMP").replace(str(ROOT), "$REPO").replace(str(Path.cwd()), "$REPO")
           .replace("|", "&#124;"))
    row = next((ln for ln in DOC.read_text().splitlines() if ln.startswith(f"| {case} |")), "")
    shown = row.rsplit(" | ", 1)[-1].removesuffix(" |") if row else ""
    assert _comparable(shown) == _comparable(msg), (
        "docs/bad_inputs.md shows another message for this case: rerun python tests/run/make_bad_input_table.py\n"
        f" doc: {shown}\n now: {msg}")


def test_doc_lists_every_case():
    from make_bad_input_table import DOC

    text = DOC.read_text()
    for case, *_ in CASES:
        assert f"| {case} |" in text, f"docs/bad_inputs.md lacks {case!r}: rerun tests/run/make_bad_input_table.py"


SLABS = """\
[run]
primaries = 100
backend = "cpu"
threads = 1

[phantom]
type = "slabs"
lateral_size_mm = [40.0, 40.0]
voxel_mm = [4.0, 4.0, 2.0]
layers = [{material = "water", thickness_mm = 20.0}]

[beam]
energy_mev = 100.0
position_mm = [0.0, 0.0, -10.0]

[output]
plot = false
"""


@pytest.mark.parametrize("text,args,must", [
    # zero voxel size of a slab phantom: used to end in an OverflowError traceback
    (SLABS, ["--set", "phantom.voxel_mm=0"], "voxel_mm"),
    (SLABS, ["--set", "phantom.voxel_mm=[0.0, 4.0, 2.0]"], "voxel_mm"),
    # zero / negative lateral size: used to run silently on a one-voxel-wide phantom
    (SLABS, ["--set", "phantom.lateral_size_mm=[0.0, 40.0]"], "lateral_size_mm"),
    (SLABS, ["--set", "phantom.lateral_size_mm=[-40.0, 40.0]"], "lateral_size_mm"),
    # a box of zero density: used to run and write an all-zero dose
    (None, ["--set", "phantom.density_g_cm3=0"], "density"),
], ids=["slab zero voxel", "slab zero voxel x", "slab zero lateral size", "slab negative lateral size",
        "zero density"])
def test_more_bad_inputs_refused(text, args, must, tmp_path, capsys, monkeypatch):
    assert_refused(args, text, must, tmp_path, capsys, monkeypatch)


def test_a_grid_that_cannot_fit_in_memory_is_refused(tmp_path, capsys, monkeypatch, warnings_to_stderr):
    """A dose grid whose run would exceed the machine's memory (it would be killed after the transport and lose
    it) is refused before any transport, naming the grid, the need and the fix; one that fits but takes most of
    the memory runs with a warning."""
    import mcproton._run.inputs as inputs
    import mcproton.run
    from mcproton.cli import main

    from run_helpers import write_cfg

    cfg = write_cfg(tmp_path / "job.toml", 200)
    n = 10 * 10 * 50                                      # the helper config's 40 x 40 x 100 mm at 4 x 4 x 2 mm
    need = inputs.host_memory_estimate(n)                 # the most: every voxel with dose
    least = inputs.host_memory_least(n)   # under ulimit -v: the tallies and running sums allocated
    monkeypatch.setattr(inputs, "available_memory", lambda: inputs.Memory(0.5 * least, 0.0, "the test's limit", True))

    def no_transport(*a, **k):
        raise AssertionError("a run that cannot fit reached the transport")

    monkeypatch.setattr(mcproton.run.Simulation, "run_histories", no_transport)
    monkeypatch.setattr(mcproton.run.Simulation, "run_histories_sparse", no_transport)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "10 x 10 x 50" in err and "needs at least 0.0 GB of memory" in err and "phantom.voxel_mm" in err, err
    monkeypatch.undo()
    monkeypatch.setattr(inputs, "available_memory", lambda: inputs.Memory(1.1 * need, 0.0))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 0
    assert "warning" in capsys.readouterr().err
    # a patient CT's pencil beams (52 M voxels, measured 5.47 / 8.97 GB for 1 / 3 beams before the LETd's running
    # sums of 2026-12-08, which add 24 B per voxel touched whole: 1.26 GB, not measured there): within the most, and
    # the least does not refuse them where they fit
    assert inputs.host_memory_estimate(52_428_800, 1) > 6.73e9 and inputs.host_memory_estimate(52_428_800, 3) > 10.23e9
    # the least: the tallies and running sums, which a run touches whole even for a pencil beam (77 B per voxel
    # measured through the CLI on 8 M voxels before, 108 after, 2026-12-08), below what the patient CT's run needs
    assert 5e9 < inputs.host_memory_least(52_428_800) < 6.73e9


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_transport(tmp_path, capsys, monkeypatch):
    """--out (or --rtdose) in a folder without write permission: refused before any transport (before: the run
    went through the whole transport and only then found it could not write the output; the result went to the
    temporary folder).  os.access is faked: this test may run as root, whom permissions do not stop."""
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if os.fspath(p) == str(locked) else real(p, mode, **k))
    assert_refused(["--out", str(locked / "o.h5")], None, "cannot be written", tmp_path, capsys, monkeypatch)
    assert_refused(["--set", "beam.total_protons=1e9", "--rtdose", str(locked / "sub" / "rd.dcm")], None,
                   "cannot be written", tmp_path, capsys, monkeypatch)
    assert not list(locked.iterdir())


def test_an_output_folder_on_a_read_only_file_system_is_named_so(tmp_path, capsys, monkeypatch):
    """The long-runs audit, F12: a read-only mount was reported as "no permission" (os.statvfs is faked)."""
    import os
    from types import SimpleNamespace

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(f_flag=os.ST_RDONLY) if os.fspath(p) == str(ro)
                        else real(p))
    assert_refused(["--out", str(ro / "o.h5")], None, "is on a read-only file system", tmp_path, capsys, monkeypatch)

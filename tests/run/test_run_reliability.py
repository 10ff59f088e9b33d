"""Issue 17: nothing is destroyed, a full disk keeps the finished run and never crashes the process, a finished
run that scored nothing fails, no traceback or hang reaches the user (top-level guard, memory, Dask endpoint)."""
from __future__ import annotations

import errno
import json
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import log_lines  # tests/fakes.py
from make_bad_input_table import RUN_CASES, case_argv
from run_helpers import no_transport, read_h5, write_cfg

from mcproton.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _failure_lines(err: str) -> list[str]:
    """The lines of ``err`` (the CLI's stderr) less the line naming the backend and device, which a run that reached
    the transport prints also with --quiet (the CLI-help audit of 2026-12-07, F11)."""
    return [ln for ln in log_lines(err.strip()) if not ln.startswith("mcproton: backend ")]


def _one_line(capsys, only_ours: bool = False) -> str:
    """The one line the CLI wrote to stderr (only_ours: among lines that Dask's own logging may add), beside the
    backend's (:func:`_failure_lines`)."""
    err = _failure_lines(capsys.readouterr().err)
    if only_ours:
        err = [ln for ln in err if ln.startswith("mcproton:")]
    assert len(err) == 1 and err[0].startswith("mcproton:"), err
    return err[0]


_no_transport = no_transport


# --- the finished run is checked -----------------------------------------------------------------------------

@pytest.mark.parametrize("case,args,text,must", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_that_mostly_missed_or_escaped_fails(case, args, text, must, tmp_path, capsys):
    """Used to exit 0 with a (nearly) empty dose; now exit 2, one line saying why, nothing written."""
    assert main(case_argv(args, text, tmp_path, 0)) == 2
    assert must in _one_line(capsys)
    assert not list(tmp_path.glob("*.h5"))


def test_allow_empty_writes_it_anyway(tmp_path, capsys):
    argv = case_argv(["--set", "beam.sigma_mm=[100.0, 100.0]", "--allow-empty"], None, tmp_path, 0)
    assert main(argv) == 0
    assert list(tmp_path.glob("*.h5"))


def test_a_refused_result_keeps_its_checkpoint_and_says_how_to_write_it(tmp_path, capsys, monkeypatch):
    """A finished run whose result is refused keeps its checkpoint (it was deleted: where the check was wrong, as
    with the ledger that wrapped past 2.4e9 primaries at 230 MeV, a run of hours was lost; the scale audit 19, F2):
    the message says so, the same command without --resume names the finished run, and --resume --allow-empty
    writes its outputs without transporting again."""
    from mcproton._run.checkpoint import checkpoint_path

    argv = case_argv(["--set", "beam.sigma_mm=[100.0, 100.0]"], None, tmp_path, 0)
    argv.remove("--no-checkpoint")
    out = Path(argv[argv.index("--out") + 1])
    ck = checkpoint_path(out)
    assert main(argv) == 2
    msg = _one_line(capsys)
    assert "missed the grid" in msg and f"the finished run is kept in the checkpoint {ck}" in msg
    assert "--resume --allow-empty" in msg and ck.exists() and not out.exists()
    # what it advises is what works: --allow-empty alone is refused while the checkpoint is kept (the CLI-help audit
    # of 2026-12-07, F12: the message said "rerun with --allow-empty" too)
    assert "rerun with --allow-empty" not in msg, msg
    assert main([*argv, "--allow-empty"]) == 2
    assert "add --resume --allow-empty" in _one_line(capsys)
    assert main(argv) == 2
    msg = _one_line(capsys)
    assert "holds a finished run" in msg and "--allow-empty" in msg and "--resume" in msg
    _no_transport(monkeypatch)   # written from the checkpoint
    assert main([*argv, "--resume", "--allow-empty"]) == 0
    assert out.exists() and not ck.exists()


def test_a_corrected_run_replaces_the_refused_checkpoint_of_another_config(tmp_path, capsys):
    """Review 5 of 2026-12-06, F3: after a refused result (its checkpoint kept), the corrected config was refused
    ("holds a finished run ... add --resume"), and with --resume refused again as another run's, until the file was
    deleted by hand: a retry script was stuck.  The refused checkpoint is marked; a run of another config replaces it
    with a note, with or without --resume.  A checkpoint of another config that is not marked refused is named as
    another run's, without advising --resume; one of the same config is kept."""
    from mcproton._run.checkpoint import checkpoint_path, is_refused

    argv = case_argv(["--set", "beam.sigma_mm=[100.0, 100.0]"], None, tmp_path, 0)
    argv.remove("--no-checkpoint")
    out = Path(argv[argv.index("--out") + 1])
    ck = checkpoint_path(out)
    assert main(argv) == 2 and ck.exists() and is_refused(ck)
    assert "a corrected run (another beam, phantom or config) with the same --out replaces it" in _one_line(capsys)
    corrected = [*argv, "--set", "beam.sigma_mm=[3.0, 3.0]"]
    for resume in ([], ["--resume"]):
        if resume:   # again refused, to be replaced by the corrected run with --resume
            assert main(argv) == 2 and is_refused(ck)
            capsys.readouterr()
        assert main([*corrected, *resume]) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert f"mcproton: note: {ck} held a finished run" in err and "whose result was refused" in err, err
        assert "another beam" in err and "replaced by this run" in err, err
        assert out.exists() and not ck.exists()
        out.unlink()
    # a finished run of another config, not refused (a signal as its outputs were written): named, not replaced
    assert main(argv) == 2 and ck.exists()
    import h5py

    with h5py.File(ck, "a") as f:
        del f.attrs["result_refused"]
    capsys.readouterr()
    assert main(corrected) == 2
    msg = _one_line(capsys)
    assert "of another run: it belongs to a run with another beam" in msg and f"delete {ck}" in msg, msg
    assert "add --resume" not in msg and ck.exists()
    # the same config, refused: kept, and told how to write it
    from mcproton._run.checkpoint import mark_refused

    mark_refused(ck, "refused")
    assert main(argv) == 2
    msg = _one_line(capsys)
    assert "holds a finished run of this config" in msg and "--resume --allow-empty" in msg and ck.exists(), msg


def test_zero_dose_fails():
    from mcproton._run.inputs import check_result

    res = SimpleNamespace(dose_gy_zyx=np.zeros((2, 2, 2)),
                          ledger={"incident": 100.0, "deposited": 0.0, "escaped": 0.0, "missed": 0.0})
    with pytest.raises(RuntimeError, match="no dose"):
        check_result(res)
    check_result(res, allow_empty=True)


def test_prescription_warning(monkeypatch):
    """The mean dose in the target against the plan's prescription (RP_plan05: 2.2 Gy(RBE) in 1 fraction)."""
    import mcproton._io.rtstruct as rs
    from mcproton._run import inputs

    assert inputs.plan_prescription(ROOT / "tests/data/dicom/RP_plan05.dcm")[:2] == (2.2, 1)
    # the DCPT head plan's dose references are two COORDINATES points (verification): no target prescription
    assert inputs.plan_prescription(ROOT / "tests/data/dicom/RN_headphantom_rs.dcm") is None
    mask = np.zeros((2, 2, 2), bool)
    mask[0] = True
    monkeypatch.setattr(rs, "read_rtstruct", lambda p: SimpleNamespace(roi_numbers={"BODY": 1, "CTV": 2},
                                                                       roi_types={"BODY": "EXTERNAL", "CTV": "CTV"}))
    monkeypatch.setattr(rs, "rasterise", lambda st, g, names=None: {"CTV": mask})
    cfg = {"plan": {"rtplan": str(ROOT / "tests/data/dicom/RP_plan05.dcm"), "rtstruct": "RS.dcm"}}
    res = SimpleNamespace(normalisation="Gy", geometry=None, dose_gy_zyx=np.where(mask, 1.0, 0.0))
    msg = inputs.prescription_check(cfg, res)
    assert msg and "'CTV'" in msg and "0.50 times" in msg and "2.2 Gy" in msg, msg
    res.dose_gy_zyx = np.where(mask, 2.0, 0.0)   # 2.0 x 1.1 = 2.2 Gy(RBE): as prescribed
    assert inputs.prescription_check(cfg, res) is None


# --- nothing is destroyed ------------------------------------------------------------------------------------

def test_slab_ct_never_deletes_an_existing_folder(tmp_path):
    from mcproton._io.slab_ct import slab_ct_geometry

    ct = tmp_path / "patient_ct"
    ct.mkdir()
    (ct / "CT_0001.dcm").write_bytes(b"patient slice")
    with pytest.raises(ValueError, match="not empty"):
        slab_ct_geometry([("water", 10.0)], ct_dir=ct, voxel_mm=(4, 4, 2), lateral_size_mm=(20, 20))
    assert (ct / "CT_0001.dcm").read_bytes() == b"patient slice"
    with pytest.raises(ValueError, match="air_mm"):
        slab_ct_geometry([("water", 10.0)], air_mm=1e7, voxel_mm=(4, 4, 2), lateral_size_mm=(20, 20))


def test_output_equal_to_a_ct_slice_is_refused(tmp_path, capsys, monkeypatch):
    from make_bad_input_table import CT

    _no_transport(monkeypatch)
    argv = case_argv([], CT.replace("@EXTRA", ""), tmp_path, 0)
    slice_ = sorted((tmp_path / "ct").iterdir())[0]
    before = slice_.read_bytes()
    assert main(argv + ["--rtdose", str(slice_)]) == 2
    assert "phantom.ct_dir" in _one_line(capsys)
    assert slice_.read_bytes() == before


# --- a full disk ---------------------------------------------------------------------------------------------

def _enospc_on(monkeypatch, suffix: str, code: int = errno.ENOSPC):
    """Make every atomic write of a file ending in ``suffix`` fail like a full disk (or with ``code``) after
    writing part of it."""
    from mcproton._io import atomic

    real = atomic.atomic_write_file

    def failing(path, write):
        if not str(path).endswith(suffix):
            return real(path, write)

        def partial(tmp):
            write(tmp)
            raise OSError(code, os.strerror(code))

        return real(path, partial)

    monkeypatch.setattr(atomic, "atomic_write_file", failing)


@pytest.mark.parametrize("what", [".png", ".dcm"])
def test_full_disk_at_the_plot_or_rt_dose_keeps_the_run(what, tmp_path, capsys, monkeypatch):
    """Used to end in a traceback (and a truncated RT Dose under its name); now one line, no partial file, the
    HDF5 and the checkpoint kept, and --resume writes the missing file without transporting again."""
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out, rd = tmp_path / "o.h5", tmp_path / "rd.dcm"
    argv = ["run", str(cfg), "--out", str(out), "--rtdose", str(rd), "--quiet", "--set", "output.plot=true",
            "--set", "beam.total_protons=1e9"]   # an RT Dose holds Gy: a beam with its protons
    _enospc_on(monkeypatch, what)
    assert main(argv) == 3   # an output that cannot be written: the machine's (mcproton.errors)
    cap = capsys.readouterr()
    summary = json.loads(cap.out)   # printed all the same, naming what failed (the long-runs audit, F14)
    assert summary["output"] == str(out) and "no space left on device" in summary["failed_outputs"][0]
    err = _failure_lines(cap.err)
    assert len(err) == 1 and err[0].startswith("mcproton:"), err
    msg = err[0]
    assert "no space left on device" in msg and "--resume" in msg and "free disk space" in msg, msg
    failed = out.with_suffix(".png") if what == ".png" else rd
    assert not failed.exists()
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.tmp"))
    assert read_h5(out)["dose"].max() > 0
    assert (tmp_path / "o.ckpt.h5").exists()
    monkeypatch.undo()
    _no_transport(monkeypatch)
    assert main(argv + ["--resume"]) == 0
    assert failed.exists() and not (tmp_path / "o.ckpt.h5").exists()


def test_another_write_error_of_the_rt_dose_is_not_called_a_full_disk(tmp_path, capsys, monkeypatch):
    """The remedy follows the cause: "free disk space" only for a full disk or quota, else the error itself."""
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    argv = ["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(tmp_path / "rd.dcm"), "--quiet",
            "--set", "beam.total_protons=1e9"]
    _enospc_on(monkeypatch, ".dcm", errno.EACCES)
    assert main(argv) == 3   # an output that cannot be written: the machine's (mcproton.errors)
    msg = _one_line(capsys)
    assert "permission denied" in msg and "remove the cause named above" in msg and "--resume" in msg, msg
    assert "disk space" not in msg


def test_full_disk_at_the_hdf5_without_checkpoint_writes_a_rescue_copy(tmp_path, capsys, monkeypatch):
    import tempfile

    cfg = write_cfg(tmp_path / "job.toml", 2000)
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(rescue))
    _enospc_on(monkeypatch, str(tmp_path / "o.h5"))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--no-checkpoint"]) == 3
    assert "written to" in _one_line(capsys)
    assert not (tmp_path / "o.h5").exists()
    (copy,) = rescue.glob("*o.h5")
    assert read_h5(copy)["dose"].max() > 0


def test_a_full_disk_at_the_rt_dose_as_pydicom_reports_it_is_one_line(tmp_path, capsys, monkeypatch):
    """pydicom raises a full disk while writing the pixel data as an OSError without errno, with its traceback in
    the message (deployment audit F7): the failed output is named with the real error ("no space left on device"),
    one line, and the remedy is disk space."""
    from full_disk import full_disk_at   # tests/full_disk.py

    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out, rd = tmp_path / "o.h5", tmp_path / "rd.dcm"
    full_disk_at(monkeypatch, rd)
    assert main(["run", str(cfg), "--out", str(out), "--rtdose", str(rd), "--quiet", "--set",
                 "beam.total_protons=1e9"]) == 3   # an output that cannot be written: the machine's (mcproton.errors)
    cap = capsys.readouterr()
    assert json.loads(cap.out)["failed_outputs"] == [f"the RT Dose {rd} (no space left on device)"]
    err = _failure_lines(cap.err)
    assert len(err) == 1 and "Traceback" not in err[0] and "With tag" not in err[0], err
    assert "free disk space" in err[0] and f"could not write the RT Dose {rd} (no space left on device)" in err[0]
    assert read_h5(out)["dose"].max() > 0 and not rd.exists()


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a small tmpfs needs root on Linux")
def test_full_disk_on_a_real_filesystem_does_not_crash(tmp_path):
    """A 200 kB tmpfs: the HDF5 output used to crash the process with a segmentation fault (h5py/HDF5 closing a
    file after ENOSPC); now exit 2, one line, the result in a rescue copy."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        cfg = write_cfg(tmp_path / "job.toml", 2000).read_text().replace("[4.0, 4.0, 2.0]", "[2.0, 2.0, 1.0]")
        (tmp_path / "job.toml").write_text(cfg)
        env = dict(os.environ, TMPDIR=str(tmp_path))
        proc = subprocess.run([sys.executable, "-m", "mcproton.cli", "run", str(tmp_path / "job.toml"), "--out",
                               str(mnt / "o.h5"), "--quiet"], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 3, (proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr and "no space left" in proc.stderr.splitlines()[-1], proc.stderr
        assert not (mnt / "o.h5").exists() and not list(mnt.glob(".*.tmp"))
        (copy,) = tmp_path.glob("mcproton-rescued-*o.h5")
        assert read_h5(copy)["dose"].max() > 0
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_disk_space_estimate_is_an_upper_bound_of_what_a_run_writes(tmp_path):
    """The estimate behind the free-space warning bounds the real files: the checkpoint of a dense field (every
    voxel has dose) and the outputs (HDF5 + RT Dose) of the same run."""
    from mcproton._run.checkpoint import BeamState, save_checkpoint
    from mcproton._run.inputs import disk_space_estimate
    from mcproton.run import Accumulator

    n = 40 * 40 * 50
    acc = Accumulator(n)
    for arr in list(acc.sums.values()) + [acc.sum_x, acc.sum_x2, *acc.let_moments.values()]:
        arr[:] = np.random.default_rng(1).random(n)   # incompressible and dense: the checkpoint's worst case
    ckpt = save_checkpoint(tmp_path / "c.h5", {"x": "y"}, [BeamState(acc), BeamState(acc)])
    est = disk_space_estimate(n, 2, checkpoint=True, rtdose_files=1)
    assert 0.8 * est["checkpoint"] < ckpt.stat().st_size <= est["checkpoint"], (ckpt.stat().st_size, est)

    assert est["peak"] >= 2 * est["checkpoint"] and disk_space_estimate(n, 2, checkpoint=False, rtdose_files=0)[
        "checkpoint"] == 0


def test_too_little_free_space_is_warned_before_the_transport(tmp_path, capsys, monkeypatch):
    """A run whose checkpoints and outputs may not fit on the output's file system is warned before the
    transport (it used to learn it from a failed checkpoint or a rescued output hours later); enough space, no
    warning.  The warning names the free space, the need and the remedies."""
    import shutil

    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton._run.inputs import disk_space_estimate

    cfg = write_cfg(tmp_path / "job.toml", 500)
    out = tmp_path / "sub" / "o.h5"
    argv = ["run", str(cfg), "--out", str(out), "--quiet", "--rtdose", str(tmp_path / "rd.dcm"), "--set",
            "beam.total_protons=1e9"]
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
    with pytest.warns(McprotonRuntimeWarning, match="has 0.0 MB free") as said:
        assert main(argv) == 0
    msg = str(said[0].message)
    # the folder named is the nearest that exists (sub/ is made later)
    assert "--no-checkpoint" in msg and "coarser voxels" in msg and f"of {tmp_path} " in msg, msg
    with pytest.warns(McprotonRuntimeWarning, match="has 0.0 MB free") as said:
        assert main(argv + ["--no-checkpoint"]) == 0
    assert "--no-checkpoint" not in str(said[0].message)
    monkeypatch.undo()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        assert main(argv) == 0
    est = disk_space_estimate(20 * 20 * 50, 1, checkpoint=False, rtdose_files=1)
    assert out.stat().st_size + (tmp_path / "rd.dcm").stat().st_size <= est["outputs"]


# --- no traceback, no hang -----------------------------------------------------------------------------------

def test_unexpected_error_is_one_line_with_a_debug_hint(tmp_path, capsys, monkeypatch):
    import mcproton.config

    def boom(cfg):
        raise ZeroDivisionError("something unforeseen")

    monkeypatch.setattr(mcproton.config, "build_geometry", boom)
    argv = ["run", str(write_cfg(tmp_path / "job.toml", 100)), "--out", str(tmp_path / "o.h5"), "--quiet"]
    assert main(argv) == 4
    msg = _one_line(capsys)
    assert "ZeroDivisionError" in msg and "--debug" in msg
    # --debug: the traceback, then the same line and exit status (before: re-raised, so Python's exit status 1)
    assert main(argv + ["--debug"]) == 4
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "the traceback is above" in err


def test_debug_keeps_the_exit_status_of_an_error(tmp_path, capsys, monkeypatch):
    """``--debug`` with a full disk exited 1 (the re-raised error, Python's status) where the same run without it
    exited 3, the machine's (the environment audit 19, F8): the traceback is shown and the status kept."""
    import errno

    import mcproton.config

    def full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o.h5"))

    monkeypatch.setattr(mcproton.config, "build_geometry", full)
    argv = ["run", str(write_cfg(tmp_path / "job.toml", 100)), "--out", str(tmp_path / "o.h5"), "--quiet"]
    assert main(argv) == 3
    capsys.readouterr()
    assert main(argv + ["--debug"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "No space left on device" in err.splitlines()[-1]


def test_out_of_memory_is_caught(tmp_path, capsys, monkeypatch):
    import mcproton.config

    def alloc(cfg):
        return np.empty(2 ** 62, np.uint8)   # numpy's _ArrayMemoryError

    monkeypatch.setattr(mcproton.config, "build_geometry", alloc)
    argv = ["run", str(write_cfg(tmp_path / "job.toml", 100)), "--out", str(tmp_path / "o.h5"), "--quiet"]
    assert main(argv) == 3
    assert "out of memory" in _one_line(capsys)


def test_memory_is_checked_before_the_grid_is_allocated(tmp_path, capsys, monkeypatch):
    """An 800^3 grid used to be refused only after the phantom (2.5 GB) was allocated."""
    import mcproton.geometry
    from mcproton._run import inputs

    monkeypatch.setattr(inputs, "available_memory", lambda: inputs.Memory(4e9, 0.0))
    monkeypatch.setattr(mcproton.geometry, "box_phantom", lambda *a, **k: pytest.fail("the grid was allocated"))
    argv = ["run", str(write_cfg(tmp_path / "job.toml", 100)), "--out", str(tmp_path / "o.h5"), "--quiet",
            "--set", "phantom.size_mm=[800.0, 800.0, 800.0]", "--set", "phantom.voxel_mm=1.0"]
    assert main(argv) == 2
    assert "800 x 800 x 800" in _one_line(capsys)


def test_scheduler_at_an_http_port_is_named_not_a_hang(tmp_path, capsys, monkeypatch):
    """A Dask client pointed at an HTTP server (the dashboard's port) used to wait without end."""
    pytest.importorskip("distributed")
    from mcproton._run import distributed

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 2.0)
    _no_transport(monkeypatch)
    try:
        argv = ["run", str(write_cfg(tmp_path / "job.toml", 100)), "--out", str(tmp_path / "o.h5"), "--quiet",
                "--scheduler", f"tcp://127.0.0.1:{srv.server_address[1]}"]
        assert main(argv) == 3
        msg = _one_line(capsys, only_ours=True)
        assert "HTTP server" in msg and "Dask scheduler" in msg and "8786" in msg, msg
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_real_scheduler_passes_the_probe_and_one_without_workers_is_named(tmp_path, capsys, monkeypatch):
    """A scheduler without workers used to keep the run waiting without end."""
    distributed = pytest.importorskip("distributed")
    from mcproton._run import distributed as mdist

    monkeypatch.setattr(mdist, "WORKERS_TIMEOUT_S", 1.0)
    _no_transport(monkeypatch)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None, protocol="tcp",
                                  host="127.0.0.1") as cluster:
        mdist.probe_scheduler(cluster.scheduler_address, 5.0)
        argv = ["run", str(write_cfg(tmp_path / "job.toml", 100)), "--out", str(tmp_path / "o.h5"), "--quiet",
                "--scheduler", cluster.scheduler_address]
        assert main(argv) == 3
        assert "no workers" in _one_line(capsys, only_ours=True)


def test_an_rt_dose_on_another_file_system_is_checked_there(tmp_path, monkeypatch):
    """Review 2026-12-05: the RT Dose was counted against --out's file system only.  On another one its files are
    checked there (a warning naming that folder), and --out's check goes on without them; a folder that cannot be
    asked does not stop --out's check."""
    import os

    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton._run.inputs import check_disk_space

    out_dir, rd_dir = tmp_path / "out", tmp_path / "rd"
    out_dir.mkdir()
    rd_dir.mkdir()
    real_stat = os.stat

    class _Dev:
        def __init__(self, st, dev):
            self._st, self.st_dev = st, dev

        def __getattr__(self, k):
            return getattr(self._st, k)

    monkeypatch.setattr(os, "stat", lambda p, *a, **k: _Dev(real_stat(p, *a, **k), 99) if Path(p) == rd_dir
                        else real_stat(p, *a, **k))
    free = {out_dir: 1e12, rd_dir: 1e3}
    with pytest.warns(McprotonRuntimeWarning, match=f"file system of {rd_dir} has .* RT Dose"):
        check_disk_space(out_dir / "o.h5", 10**6, 1, checkpoint=True, rtdose_files=2,
                         free_bytes=lambda f: free[Path(f)], rtdose=rd_dir / "rd.dcm")
    free = {out_dir: 1e3}   # the RT Dose folder cannot be asked: --out is still checked
    with pytest.warns(McprotonRuntimeWarning, match=f"file system of {out_dir} has"):
        check_disk_space(out_dir / "o.h5", 10**6, 1, checkpoint=True, rtdose_files=2,
                         free_bytes=lambda f: free.get(Path(f)) if Path(f) in free else (_ for _ in ()).throw(
                             OSError("no")), rtdose=rd_dir / "rd.dcm")

"""SIGINT/SIGTERM while a run writes its outputs (the long-runs audit, 2026-12-05, F2/F10): the process used to die
silently (SIGTERM) or say only "interrupted" (SIGINT), could leave a new HDF5 beside an earlier run's RT Dose and
PNG, and left its temporary files behind for good."""
from __future__ import annotations

import os
import signal

import pytest
from run_helpers import no_transport, read_h5, write_cfg

from mcproton.cli import main


def _signal_while_writing_the_rtdose(monkeypatch, sig):
    """The RT Dose's temporary file is half written when ``sig`` arrives."""
    import mcproton._io.dicom_common as dicom_common

    def save(ds, tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half an RT Dose")
        os.kill(os.getpid(), sig)
        raise AssertionError("the signal did not stop the writing")

    monkeypatch.setattr(dicom_common, "save_dataset", save)

    def unhandled(signum, frame):   # without the output phase's own handler: a failure, not a dead pytest
        raise AssertionError(f"{signal.Signals(signum).name} not handled by the output phase")

    old = signal.signal(signal.SIGTERM, unhandled)
    return old


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_writing_says_what_was_written_and_resume_writes_the_rest(sig, tmp_path, capsys,
                                                                                  monkeypatch):
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out, rd, png = tmp_path / "o.h5", tmp_path / "rd.dcm", tmp_path / "o.png"
    argv = ["run", str(cfg), "--out", str(out), "--rtdose", str(rd), "--quiet", "--set", "output.plot=true",
            "--set", "beam.total_protons=1e9"]
    # an earlier run's outputs of the same names (another seed), and a temporary file a killed run left
    assert main(argv + ["--set", "run.seed=99"]) == 0
    old_png = png.read_bytes()
    (tmp_path / ".rd.dcm.abc123.tmp").write_bytes(b"left by a killed writer")
    capsys.readouterr()
    old = _signal_while_writing_the_rtdose(monkeypatch, sig)
    try:
        handler = signal.getsignal(sig)
        assert main(argv) == 128 + sig
        assert signal.getsignal(sig) is handler   # the handler of the output phase is given back
    finally:
        signal.signal(signal.SIGTERM, old)
    err = capsys.readouterr().err
    assert f"{signal.Signals(sig).name} received while writing the outputs" in err
    assert f"written: {out}" in err and f"not written: {rd}, {png}" in err and "--resume" in err
    assert "without transporting again" in err
    # no temporary file is left (neither this run's nor the earlier one's), and no earlier run's RT Dose or PNG
    # lies beside this run's HDF5
    assert not list(tmp_path.glob(".*.tmp"))
    assert not rd.exists() and not png.exists() and out.exists()
    assert (tmp_path / "o.ckpt.h5").exists() and not (tmp_path / "o.h5.lock").exists()
    monkeypatch.undo()
    no_transport(monkeypatch)
    assert main(argv + ["--resume"]) == 0
    assert rd.exists() and png.exists() and png.read_bytes() != old_png
    assert read_h5(out)["dose"].max() > 0 and not (tmp_path / "o.ckpt.h5").exists()


def test_without_checkpoint_the_message_does_not_promise_a_resume(tmp_path, capsys, monkeypatch):
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    argv = ["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(tmp_path / "rd.dcm"), "--quiet",
            "--set", "beam.total_protons=1e9", "--no-checkpoint"]
    old = _signal_while_writing_the_rtdose(monkeypatch, signal.SIGTERM)
    try:
        assert main(argv) == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, old)
    err = capsys.readouterr().err
    assert "--no-checkpoint" in err and "--resume" not in err

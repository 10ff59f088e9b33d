"""A stop signal that comes during the batch that finishes a beam is honoured, not forgotten (the long-runs
audit 2, F3).

Before, the stream's stopping rules tested "primaries reached" before the stop flag, so a SIGINT in a beam's last
batch ended the beam normally: ``mcproton run`` said "finishing the batch in flight and writing a checkpoint" and then
wrote every output and exited 0; ``mcproton check`` went on with its top-up, gamma analysis and report and exited
with its PASS/FAIL status.  Now: after a beam that is not the last, the checkpoint and exit 128 + signal, as for any
interruption; after the last, the checkpoint of the finished run (``--resume`` writes the outputs without
transporting) or, where no checkpoint holds it (``--no-checkpoint``), the outputs written and exit 128 + signal.
The signal is sent by a progress callback when the beam's last batch is done (no timing)."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from run_helpers import no_transport, read_h5

from mcproton._run.checkpoint import checkpoint_path, describe, is_complete


def _sigint_when(total: int, calls: list[int] | None = None):
    """A progress callback that sends this process SIGINT once, when ``total`` primaries of a beam are done."""
    sent: list[int] = []

    def progress(done, rate):
        if calls is not None:
            calls.append(done)
        if done >= total and not sent:
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    return progress


def _two_beams():
    from mcproton.geometry import box_phantom
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    g = box_phantom("water", (40.0, 40.0, 80.0), (4.0, 4.0, 2.0))
    beams = [Beam.pencil(80.0, position_mm=(-6.0, 0.0, -1.0), sigma_mm=(3.0, 3.0)),
             Beam.pencil(60.0, position_mm=(8.0, 4.0, -1.0), sigma_mm=(2.0, 2.0))]
    return g, beams, RunSettings(primaries=4000, seed=21, backend="cpu", threads=1, batch_size=400,
                                 checkpoint_interval_s=0)


def test_a_signal_in_the_last_batch_of_a_beam_stops_before_the_next(tmp_path):
    from mcproton._run.job import RunInterrupted, run_job

    g, beams, s = _two_beams()
    out = tmp_path / "job.h5"
    calls: list[int] = []
    with pytest.raises(RunInterrupted) as ei:
        run_job(None, s, g, beams, out, progress=_sigint_when(4000, calls), log=lambda m: None)
    assert ei.value.code == 130 and ei.value.results is None
    msg = str(ei.value)
    assert "after beam 1 of 2" in msg and "checkpoint written to" in msg and "--resume" in msg, msg
    assert calls[-1] == 4000 and len(calls) == 10, calls   # beam 2 not started
    assert describe(checkpoint_path(out)).startswith("4,000 of 8,000")


def test_a_signal_in_the_last_batch_of_the_run_keeps_the_finished_run(tmp_path, monkeypatch):
    """The last beam's last batch: RunInterrupted with the results, the checkpoint holds the finished run, and
    --resume only writes the outputs (bitwise the uninterrupted run's dose)."""
    from mcproton._run.job import RunInterrupted, run_job

    g, beams, s = _two_beams()
    out = tmp_path / "job.h5"
    ref = run_job(None, s, g, beams, None, progress=False, log=lambda m: None)
    calls: list[int] = []

    def progress(done, rate):   # SIGINT when the second beam's last batch is done
        calls.append(done)
        if len(calls) == 20:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted) as ei:
        run_job(None, s, g, beams, out, progress=progress, log=lambda m: None)
    exc = ei.value
    assert exc.code == 130 and exc.kept and exc.results is not None and len(exc.results) == 2
    assert "as the transport finished" in str(exc) and "--resume" in str(exc), str(exc)
    assert is_complete(checkpoint_path(out))
    no_transport(monkeypatch)
    got = run_job(None, s, g, beams, out, resume=True, progress=False, log=lambda m: None)
    for a, b in zip(ref, got):
        assert np.array_equal(a.dose_gy_zyx, b.dose_gy_zyx)


def test_without_a_checkpoint_the_finished_run_is_stopped_with_its_results(small_cfg):
    """As ``mcproton check`` runs its MC (no checkpoint): the signal in the last batch raises RunInterrupted, so
    that the check stops before its top-up, gamma and report (before: the run returned as if nothing came)."""
    from mcproton._run.job import JobOptions, RunInterrupted, run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    cfg = small_cfg(8000, batch_size=800, checkpoint_interval_s=0)
    c = load_config(cfg)
    with pytest.raises(RunInterrupted) as ei:
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), None,
                JobOptions(checkpoint=False, progress=_sigint_when(8000), log=lambda m: None))
    exc = ei.value
    assert exc.code == 130 and not exc.kept and exc.results is not None
    assert "nothing was kept" in str(exc) and "--resume" not in str(exc), str(exc)


def _cli_sigint_at_the_end(monkeypatch):
    """The command line's progress bar replaced by a callback that sends SIGINT at the run's last batch."""
    from mcproton._run import job

    monkeypatch.setattr(job, "progress_printer", lambda total, *a, **k: _sigint_when(total))


@pytest.mark.parametrize("checkpoint", [True, False])
def test_cli_signal_in_the_last_batch_exits_130(small_cfg, tmp_path, monkeypatch, capsys, checkpoint):
    """``mcproton run``: exit 130, not 0.  With a checkpoint nothing is written but the checkpoint of the finished
    run (--resume writes the outputs, without transport); with --no-checkpoint the outputs are written (else the
    run would be lost) and the message says both."""
    from mcproton.cli import main

    cfg = small_cfg(8000, batch_size=800, checkpoint_interval_s=0)
    out = tmp_path / "o.h5"
    _cli_sigint_at_the_end(monkeypatch)
    rc = main(["run", str(cfg), "--out", str(out)] + ([] if checkpoint else ["--no-checkpoint"]))
    err = capsys.readouterr().err
    assert rc == 130, err
    if checkpoint:
        assert not out.exists() and is_complete(checkpoint_path(out))
        assert "as the transport finished" in err and "--resume" in err, err
        monkeypatch.undo()
        no_transport(monkeypatch)
        assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
        assert read_h5(out)["provenance"]["primaries"] == 8000 and not checkpoint_path(out).exists()
    else:
        assert read_h5(out)["provenance"]["primaries"] == 8000
        assert "interrupted by SIGINT as the transport finished: the outputs were written" in err, err

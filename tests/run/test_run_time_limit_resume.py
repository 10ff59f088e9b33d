"""A run stopped by run.time_limit_s and resumed: with a larger limit (or none) it continues from where it stopped
and says so; with the same limit it adds nothing and says why; the output is normalised to the protons actually
run and says that the run stopped at the time limit (summary, HDF5 provenance).

Before: the checkpoint of a time-limited run marked its beam done, so --resume with a larger limit only rewrote the
output of the first segment ("resuming from ... 74,000 of 400,000 primaries done", then nothing); the CLI deleted
the checkpoint after writing the output, so a time-limited run could not be continued at all; the CLI summary did
not say why the run stopped; a plan's summed provenance gave beam 1's stop reason for all beams.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from run_helpers import cli, read_h5

from mcproton._run.checkpoint import checkpoint_path, describe

PRIMARIES = 400_000
BATCH = 2000     # fixed batches: the resumed run goes through the batches of an uninterrupted one (bitwise)


def _job(cfg: Path, out: Path | None, sets: list[str], resume: bool = False, logs: list | None = None):
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    c = load_config(cfg, sets)
    return run_job(c, run_settings(c), build_geometry(c), build_beams(c), out, resume=resume, progress=False,
                   log=(logs.append if logs is not None else lambda m: None))


def test_time_limited_checkpoint_continues_with_a_larger_limit(small_cfg, tmp_path, monkeypatch):
    """In this process on the ticking clock (one fake second per perf_counter call, :func:`_ticking_clock`): the
    stop falls in the same batch on any machine, so 10 batches of 2000 do (the real clock needed 400,000 primaries
    to be sure 0.3 s stopped a fast machine's run before its end; the command line's test below keeps it)."""
    _ticking_clock(monkeypatch)
    primaries = 10 * BATCH
    cfg = small_cfg(primaries, batch_size=BATCH)
    out = tmp_path / "run.h5"
    first = _job(cfg, out, ["run.time_limit_s=4"])[0]
    n1 = first.primaries
    assert first.provenance["stop_reason"] == "time_limit" and 0 < n1 < primaries
    assert checkpoint_path(out).exists() and "time limit" in describe(checkpoint_path(out))
    # the same limit: nothing added, and the log says why
    logs: list[str] = []
    same = _job(cfg, out, ["run.time_limit_s=4"], resume=True, logs=logs)[0]
    assert same.primaries == n1 and same.provenance["stop_reason"] == "time_limit"
    assert np.array_equal(same.dose_gy_zyx, first.dose_gy_zyx)
    said = " ".join(logs)
    assert "no primaries added" in said and "larger run.time_limit_s" in said, logs
    # no limit: continues from history n1 to the end, and says so
    logs = []
    full = _job(cfg, out, [], resume=True, logs=logs)[0]
    said = " ".join(logs)
    assert "continuing" in said and f"{n1:,}" in said, logs
    assert full.primaries == primaries and full.provenance["stop_reason"] == "primaries"
    ref = _job(cfg, None, [])[0]    # uninterrupted, no limit
    assert np.array_equal(ref.dose_gy_zyx, full.dose_gy_zyx)   # the same histories, the same batches


def test_a_resumed_run_records_each_part(small_cfg, tmp_path, monkeypatch):
    """Audit 25 provenance, F6: a run stopped by its time limit and resumed without one looked uninterrupted in its
    outputs, and its uncertainty (batches of a hundredth of the primaries with the limit, a tenth without) could not
    be re-done from them.  Now each result records ``resumed`` and ``segments``: each part's settings (time limit,
    batch size as set and the histories of its batches), where each beam started and stopped (histories, batches)
    and the kernel build that ran it; the checkpoint carries the earlier parts to the resume."""
    _ticking_clock(monkeypatch)
    primaries = 20_000
    cfg = small_cfg(primaries)   # no run.batch_size: a hundredth of the primaries with a time limit, a tenth without
    out = tmp_path / "run.h5"
    first = _job(cfg, out, ["run.time_limit_s=4"])[0]
    n1, b1 = first.primaries, first.provenance["batches"]
    assert 0 < n1 < primaries and first.provenance["resumed"] is False
    [only] = first.provenance["segments"]
    assert (only["from_histories"], only["to_histories"], only["to_batches"]) == ([0], [n1], [b1]), only
    full = _job(cfg, out, [], resume=True)[0]
    prov = full.provenance
    assert prov["resumed"] is True and prov["batch_size"] is None
    one, two = prov["segments"]
    assert (one["time_limit_s"], one["batch_size"], one["batch_histories"]) == (4, None, primaries // 100), one
    assert (one["from_histories"], one["to_histories"], one["from_batches"], one["to_batches"]) == (
        [0], [n1], [0], [b1]), one
    assert (two["time_limit_s"], two["batch_histories"]) == (None, primaries // 10), two
    assert (two["from_histories"], two["to_histories"], two["from_batches"], two["to_batches"]) == (
        [n1], [primaries], [b1], [prov["batches"]]), two
    assert one["started"] <= two["started"] and two["kernel_build"] == prov["kernel_build"]
    assert prov["kernel_build"]["kernel_key"] and prov["kernel_build"]["mcproton"]["kernel_hash"]


def test_cli_time_limited_run_keeps_its_checkpoint_and_resumes(small_cfg, tmp_path):
    cfg = small_cfg(PRIMARIES, batch_size=BATCH, time_limit_s=0.3)
    out = tmp_path / "run.h5"
    ckpt = checkpoint_path(out)
    r = cli("run", cfg, "--out", out, "--quiet")
    s = json.loads(r.stdout)
    n1 = s["primaries"]
    assert 0 < n1 < PRIMARIES
    assert s["stop_reason"] == "time_limit" and s["primaries_requested"] == PRIMARIES, s
    assert "time limit" in r.stderr and "--resume" in r.stderr and str(ckpt) in r.stderr, r.stderr
    h = read_h5(out)
    assert h["provenance"]["stop_reason"] == "time_limit" and h["provenance"]["primaries"] == n1
    assert ckpt.exists(), "the checkpoint of a time-limited run is kept, so that it can be continued"
    # the same command again without --resume: refused, saying what the checkpoint holds
    again = cli("run", cfg, "--out", out, "--quiet", check=False)
    assert again.returncode == 2 and "time limit" in again.stderr and "--resume" in again.stderr, again.stderr
    # a larger limit: continues to the end; the output is of every primary, and the checkpoint is gone
    r2 = cli("run", cfg, "--out", out, "--quiet", "--resume", "--set", "run.time_limit_s=1000")
    s2 = json.loads(r2.stdout)
    assert "continuing" in r2.stderr, r2.stderr
    assert s2["primaries"] == PRIMARIES and s2["stop_reason"] == "primaries", s2
    h2 = read_h5(out)
    assert h2["provenance"]["primaries"] == PRIMARIES and h2["provenance"]["stop_reason"] == "primaries"
    assert not ckpt.exists()
    ref = _job(cfg, None, ["run.time_limit_s=1000"])[0]
    assert np.array_equal(ref.dose_gy_zyx, h2["dose"])


def test_summed_provenance_names_each_beams_stop_reason():
    """sum_results kept beam 1's stop_reason (and next_history) for the sum of all beams."""
    from types import SimpleNamespace

    from mcproton._run.result import combined_stop_reason

    rs = [SimpleNamespace(provenance={"stop_reason": "primaries"}),
          SimpleNamespace(provenance={"stop_reason": "time_limit"})]
    assert combined_stop_reason(rs) == "beam 1: primaries; beam 2: time_limit"
    assert combined_stop_reason(rs[:1] * 2) == "primaries"


# ---------------------------------------------------------------- the run's limit, shared by its beams (F5)
def _ticking_clock(monkeypatch) -> None:
    """time.perf_counter advancing 1 s at each call: the transport times (and so the time-limit stops) of a run are
    the same on any machine, however loaded (no timing in the tests)."""
    import time

    now = [0.0]

    def tick() -> float:
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(time, "perf_counter", tick)


def _two_beams(primaries: int, limit: float | None):
    from mcproton.geometry import box_phantom
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    g = box_phantom("water", (40.0, 40.0, 80.0), (4.0, 4.0, 2.0))
    beams = [Beam.pencil(80.0, position_mm=(-6.0, 0.0, -1.0), sigma_mm=(3.0, 3.0)),
             Beam.pencil(60.0, position_mm=(8.0, 4.0, -1.0), sigma_mm=(2.0, 2.0))]
    return g, beams, RunSettings(primaries=primaries, seed=21, backend="cpu", threads=1, batch_size=500,
                                 checkpoint_interval_s=0, time_limit_s=limit)


def test_the_time_limit_is_the_runs_and_every_beam_gets_a_share(monkeypatch, tmp_path):
    """The long-runs audit 2, F5: run.time_limit_s bounded each beam, so a 2-beam plan given 6 s ran 12.5 s.  Now the
    beams' transport times add up to the limit (plus the batch in flight of each), and each beam of a plan that does
    not fit gets some of it (the first does not take it all)."""
    from mcproton._run.job import run_job

    _ticking_clock(monkeypatch)
    limit = 40.0
    g, beams, s = _two_beams(400_000, limit)
    logs: list[str] = []
    res = run_job(None, s, g, beams, tmp_path / "o.h5", progress=False, log=logs.append)
    transport = [r.provenance["phase_s"]["transport"] for r in res]
    batches = [r.primaries / 500 for r in res]
    per_batch = max(t / b for t, b in zip(transport, batches))   # the fake seconds of one batch
    assert sum(transport) <= limit + 2 * per_batch, (transport, per_batch)   # before: about 2 x limit
    assert all(r.provenance["stop_reason"] == "time_limit" and 0 < r.primaries < 400_000 for r in res)
    assert "shared by its 2 beams" in " ".join(logs), logs


def test_a_beam_left_no_time_is_not_started_and_resume_adds_it(monkeypatch, tmp_path):
    """The limit used up by beam 1 (one batch longer than the limit): beam 2 is not started, the log says so, the
    checkpoint holds it as stopped by the time limit, and --resume without a limit completes both beams, bitwise
    the uninterrupted run."""
    from mcproton._run.checkpoint import checkpoint_path, describe
    from mcproton._run.job import run_job

    g, beams, s = _two_beams(2000, None)
    ref = run_job(None, s, g, beams, None, progress=False, log=lambda m: None)
    _ticking_clock(monkeypatch)
    out = tmp_path / "o.h5"
    _, _, s_lim = _two_beams(2000, 0.5)
    logs: list[str] = []
    res = run_job(None, s_lim, g, beams, out, progress=False, log=logs.append)
    assert res[0].primaries == 500 and res[1].primaries == 0
    assert [r.provenance["stop_reason"] for r in res] == ["time_limit", "time_limit"]
    said = " ".join(logs)
    assert "beam 2 (" in said and "not started: the run's time limit is used up" in said, logs
    assert describe(checkpoint_path(out)) == "500 of 4,000 primaries done, stopped by the time limit"
    monkeypatch.undo()
    got = run_job(None, s, g, beams, out, resume=True, progress=False, log=lambda m: None)
    for a, b in zip(ref, got):
        assert np.array_equal(a.dose_gy_zyx, b.dose_gy_zyx)


def test_a_beam_runs_on_where_the_later_beams_fit_in_what_is_left():
    """The beam's stopping time: what the run has left less what the later beams need at this beam's speed, never
    below its share (a plan that fits runs to the end; one that does not gives every beam some)."""
    from mcproton._run.job import _beam_time_limit

    limit = _beam_time_limit(2.0, 10.0, 5.0, 1000)   # 2 s used before, 10 s left, a share of 5 s, 1000 to come
    assert limit(0, 0.0) == 2.0 + 5.0                  # speed unknown: the share
    assert limit(0, 1000.0) == 2.0 + 9.0               # the later beams need 1 s: this one may use 9
    assert limit(0, 10.0) == 2.0 + 5.0                 # they need 100 s: the share

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


def test_time_limited_checkpoint_continues_with_a_larger_limit(small_cfg, tmp_path):
    cfg = small_cfg(PRIMARIES, batch_size=BATCH)
    out = tmp_path / "run.h5"
    first = _job(cfg, out, ["run.time_limit_s=0.3"])[0]
    n1 = first.primaries
    assert first.provenance["stop_reason"] == "time_limit" and 0 < n1 < PRIMARIES
    assert checkpoint_path(out).exists() and "time limit" in describe(checkpoint_path(out))
    # the same limit: nothing added, and the log says why
    logs: list[str] = []
    same = _job(cfg, out, ["run.time_limit_s=0.3"], resume=True, logs=logs)[0]
    assert same.primaries == n1 and same.provenance["stop_reason"] == "time_limit"
    assert np.array_equal(same.dose_gy_zyx, first.dose_gy_zyx)
    said = " ".join(logs)
    assert "no primaries added" in said and "larger run.time_limit_s" in said, logs
    # no limit: continues from history n1 to the end, and says so
    logs = []
    full = _job(cfg, out, [], resume=True, logs=logs)[0]
    said = " ".join(logs)
    assert "continuing" in said and f"{n1:,}" in said, logs
    assert full.primaries == PRIMARIES and full.provenance["stop_reason"] == "primaries"
    ref = _job(cfg, None, [])[0]    # uninterrupted, no limit
    assert np.array_equal(ref.dose_gy_zyx, full.dose_gy_zyx)   # the same histories, the same batches


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

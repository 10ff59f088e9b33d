"""Batches of unequal size (a short last batch, a GPU batch halved after running out of memory): the batch-means
uncertainty weights each batch by its histories (mcproton/_run/stats.py batch_rel_uncertainty).  The statistics
audit of 2026-12-05 (F1): every batch counted alike, and 20,001 primaries in batches of 2,000 (a last batch of one
history) reported 12.7 % where the spread over 12 seeds was 2.8 %; now 2.78 %."""
from __future__ import annotations

import numpy as np
import pytest
from run_helpers import write_cfg

import mcproton as mcp
from mcproton._run.stats import batch_rel_uncertainty


def test_the_weighted_estimator_is_unbiased_for_unequal_batches():
    """Synthetic batch means x_b ~ N(mu, sigma^2 / n_b) for batch sizes 2000 x 10 + 1 (and 100 x 99 + 1), 20,000
    realisations: the mean estimated variance of the mean is within 3 % of the true sigma^2 / N (its sampling error
    over 20,000 realisations is about 1 %: 3 sd; before, the short batch made it 21x / 2x too large)."""
    rng = np.random.default_rng(7)
    mu, sigma, reps = 1.0, 3.0, 20_000
    for sizes in ([2000] * 10 + [1], [100] * 99 + [1]):
        n = np.asarray(sizes, float)
        x = mu + sigma / np.sqrt(n) * rng.standard_normal((reps, n.size))
        w = n / n[0]
        rel = batch_rel_uncertainty((w * x).sum(1), (w * x * x).sum(1), n.size, float(w.sum()))
        var_est = np.mean((rel * (w * x).sum(1) / w.sum()) ** 2)
        assert var_est / (sigma ** 2 / n.sum()) == pytest.approx(1.0, abs=0.03)
        unweighted = np.mean((batch_rel_uncertainty(x.sum(1), (x * x).sum(1), n.size) * x.mean(1)) ** 2)
        assert unweighted / (sigma ** 2 / n.sum()) > 1.9      # the old estimator: what the fix changed


def test_a_short_last_batch_no_longer_inflates_the_uncertainty():
    """The same seed, 20,000 primaries in 10 batches of 2,000 against 20,001 (a last batch of one history): the two
    runs share 20,000 histories, so their per-voxel uncertainties agree within 5 % (the extra history moves them by
    about 1/2000); before the fix the second read 4.5x the first.  Equal batches keep their uncertainty bit for bit
    (tests/regression)."""
    geom = mcp.box_phantom("water", size_mm=(40, 40, 120), voxel_mm=(5, 5, 5))
    beam = mcp.Beam.pencil(120.0, position_mm=(0, 0, -10), energy_spread_mev=0.5, sigma_mm=(5, 5))
    even = mcp.simulate(geom, beam, mcp.RunSettings(primaries=20_000, batch_size=2000, seed=11, backend="cpu",
                                                    threads=1))
    short = mcp.simulate(geom, beam, mcp.RunSettings(primaries=20_001, batch_size=2000, seed=11, backend="cpu",
                                                     threads=1))
    assert short.provenance["batches"] == 11 and even.provenance["batches"] == 10
    assert short.mean_rel_uncertainty_50 / even.mean_rel_uncertainty_50 == pytest.approx(1.0, abs=0.05)
    hi = even.dose_gy_zyx >= 0.5 * even.dose_gy_zyx.max()
    ratio = short.uncertainty_rel_zyx[hi] / even.uncertainty_rel_zyx[hi]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)


def test_unequal_batch_weights_survive_a_checkpoint(tmp_path):
    """A checkpoint keeps the batch weights (their sum and unit), under its checksum: a resumed run goes on
    weighting as the uninterrupted one; a damaged sum or unit is refused as corrupt."""
    from mcproton._run import checkpoint as ck
    from mcproton.run import Accumulator

    acc = Accumulator(10)
    for n in (100, 100, 7):
        acc.add({**{k: np.full(10, 5, np.int64) for k in acc.sums}, "ledger": np.zeros_like(acc.ledger)}, n)
    assert acc.batch_unit == 100 and acc.batch_weight_sum == pytest.approx(2.07)
    p = tmp_path / "c.ckpt.h5"
    ck.save_checkpoint(p, {"n_beams": "1"}, [ck.BeamState(acc, next_history=207)])
    back = ck.load_checkpoint(p, {"n_beams": "1"}, 10)[0].acc
    assert back.batch_unit == 100 and back.batch_weight_sum == acc.batch_weight_sum
    import h5py

    for attr, bad in (("batch_weight_sum", 3.0), ("batch_unit", 7)):   # the weights are under the checksum
        ck.save_checkpoint(p, {"n_beams": "1"}, [ck.BeamState(acc, next_history=207)])
        with h5py.File(p, "r+") as f:
            f["beam_000"].attrs[attr] = bad
        with pytest.raises(ck.CheckpointError, match="corrupt"):
            ck.load_checkpoint(p, {"n_beams": "1"}, 10)


def test_few_batches_are_said_to_read_low(tmp_path):
    """Statistics audit F2: a run of 2-9 batches quoted its uncertainty (a mean of per-voxel standard deviations)
    20 % (2 batches) to 3 % (9) low, as c4(B) says, without a word; it is now warned about with the figure.  Ten
    batches, the default, are not."""
    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton.cli import main

    cfg = write_cfg(tmp_path / "job.toml", 3000)
    with pytest.warns(McprotonRuntimeWarning, match=r"from 3 batches only, and reads low by about 11 %"):
        assert main(["run", str(cfg), "--out", str(tmp_path / "a.h5"), "--quiet", "--set", "run.batches=3"]) == 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        assert main(["run", str(cfg), "--out", str(tmp_path / "b.h5"), "--quiet"]) == 0


@pytest.mark.parametrize("sets,said", [
    # run.batches sets the batches: it is the advice
    (["run.batches=3"], "use at least 10 batches (run.batches, or a smaller run.batch_size) for"),
    # run.batch_size sets them: run.batches would do nothing
    (["run.batches=20", "run.batch_size=1000"], "use at least 10 batches (a smaller run.batch_size) for"),
    # a time limit makes them a hundredth of the primaries and stopped the run after 6 of them
    (["run.batches=20", "run.time_limit_s=6"],
     "use at least 10 batches (a longer run.time_limit_s, or a smaller run.batch_size) for"),
    # ... after one
    (["run.batches=20", "run.time_limit_s=1e-9"],
     "only one batch was completed (the time limit stopped it, after 30 primaries): its statistical uncertainty "
     "cannot be estimated (NaN in the outputs); give a longer run.time_limit_s or a smaller run.batch_size"),
], ids=["by-batches", "batch-size", "time-limit", "time-limit-one-batch"])
def test_the_few_batches_advice_names_what_sets_the_batches(tmp_path, monkeypatch, sets, said):
    """The warnings of few batches, and of one batch after a time limit's stop, name what sets the number of batches
    in the run: run.batches only where it does (streaming.BatchPlan.by_batches); run.batch_size, or a longer
    run.time_limit_s, where they are of a size (run.batches is then not used: the log says so).  Before (audit 27
    followb) both advised run.batches there, which changed nothing.  On the ticking clock (one fake second per
    perf_counter call) the time limit stops in the same batch on any machine."""
    from test_run_time_limit_resume import _ticking_clock

    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    _ticking_clock(monkeypatch)
    c = load_config(write_cfg(tmp_path / "job.toml", 3000), sets)
    with pytest.warns(McprotonRuntimeWarning) as rec:
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), None, progress=False, log=lambda m: None)
    (few,) = [str(w.message) for w in rec if "batch" in str(w.message)]
    assert said in few, few
    assert ("run.batches" in few) == (sets == ["run.batches=3"]), few

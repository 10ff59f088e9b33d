"""Streaming batches: the batch plan, GPU out-of-memory handling (a fake OOM injected on the CPU), and the
stopping criteria (target uncertainty, time limit, primaries)."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._run.streaming import BatchPlan, LocalExecutor, is_out_of_memory, mean_rel_uncertainty_50, \
    run_shrinking, stream
from mcproton.config import build_beams, build_geometry, load_config, run_settings
from mcproton.run import Accumulator, Simulation, batch_plan, finish, simulate


class OutOfMemoryError(Exception):
    """Stands for cupy.cuda.memory.OutOfMemoryError (matched by name)."""


class OomProxy:
    """A Simulation that runs out of 'GPU memory' for batches larger than ``limit`` histories."""

    def __init__(self, sim, limit):
        self.sim, self.limit, self.calls = sim, limit, []
        self.backend = sim.backend

    def run_histories(self, first, n):
        self.calls.append((first, n))
        if n > self.limit:
            raise OutOfMemoryError(f"Out of memory allocating {n * 1000:,} bytes")
        return self.sim.run_histories(first, n)


def _setup(small_cfg, primaries=12000, *sets):
    cfg = load_config(small_cfg(primaries), list(sets))
    s = run_settings(cfg)
    g = build_geometry(cfg)
    return s, g, build_beams(cfg)[0]


def test_batch_plan_matches_legacy_and_is_positional():
    p = BatchPlan(1003, batches=10)
    assert list(p.iter_from(0)) == batch_plan(1003, 10)
    mid = batch_plan(1003, 10)[4][0] + 7      # resuming inside a batch finishes that batch first
    assert list(p.iter_from(mid))[0] == (mid, batch_plan(1003, 10)[5][0] - mid)
    q = BatchPlan(10_000, batch_size=3000)
    assert list(q.iter_from(0)) == [(0, 3000), (3000, 3000), (6000, 3000), (9000, 1000)]
    assert BatchPlan(10**9, batches=10).size == 1_000_000              # bounded batch (checkpoint granularity)
    assert BatchPlan(10**6, batches=10, early_stop=True).size == 10_000  # 100 batches when stopping early


def test_is_out_of_memory():
    assert is_out_of_memory(OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("cuLaunchKernel failed: CUDA_ERROR_OUT_OF_MEMORY"))
    assert not is_out_of_memory(ValueError("bad"))


def test_oom_shrinks_the_batch_and_keeps_the_dose(small_cfg):
    s, g, beam = _setup(small_cfg, 12000, "run.batch_size=4000")
    ref = Simulation(g, beam, s)
    acc_ref = Accumulator(ref.n_vox)
    plan = BatchPlan.from_settings(s)
    stream(acc_ref, plan, LocalExecutor(ref, plan), s, g)
    msgs = []
    proxy = OomProxy(Simulation(g, beam, s), limit=1500)
    acc = Accumulator(ref.n_vox)
    ex = LocalExecutor(proxy, plan, log=msgs.append)
    res = stream(acc, plan, ex, s, g)
    assert res.stop_reason == "primaries" and res.next_history == 12000 == acc.primaries
    assert ex.cap == 1000 and len(msgs) == 2 and "retrying with batches of 2,000" in msgs[0]
    assert "retrying with batches of 1,000" in msgs[1]
    assert all(n <= 1000 for f, n in proxy.calls[3:])
    for k in acc.sums:
        assert np.array_equal(acc.sums[k], acc_ref.sums[k])       # the dose is bitwise unchanged
    assert acc.batches == 12                                       # each shrunk piece is a batch


def test_oom_in_a_chunk_sums_pieces(small_cfg):
    s, g, beam = _setup(small_cfg, 3000)
    sim = Simulation(g, beam, s)
    whole = sim.run_histories(0, 3000)
    pieces, cap = run_shrinking(OomProxy(sim, 800), 0, 3000, cap=None, log=lambda m: None)
    assert cap == 750
    for k in whole:
        assert np.array_equal(whole[k], pieces[k])


def test_oom_at_the_smallest_batch_is_a_clear_error(small_cfg):
    s, g, beam = _setup(small_cfg, 100)
    plan = BatchPlan(100, batch_size=100)
    ex = LocalExecutor(OomProxy(Simulation(g, beam, s), 0), plan, log=lambda m: None)
    with pytest.raises(RuntimeError, match="out of memory even for a batch of 1 histories"):
        stream(Accumulator(g.material_index_zyx.size), plan, ex, s, g)


def test_stops_at_target_uncertainty(small_cfg):
    """Tolerance: the run stops at the first batch boundary (after >= 10 batches) where the mean relative
    uncertainty over voxels >= 50 % Dmax is <= the target: final <= target, one batch fewer > target."""
    target, bs = 0.015, 1000
    s, g, beam = _setup(small_cfg, 10**6, f"run.target_uncertainty={target}", f"run.batch_size={bs}")
    r = simulate(g, beam, s)
    assert r.provenance["stop_reason"] == "target_uncertainty"
    assert 10 * bs < r.primaries < 10**6 and r.primaries % bs == 0
    assert r.mean_rel_uncertainty_50 <= target
    s2, *_ = _setup(small_cfg, r.primaries - bs, f"run.batch_size={bs}")
    r2 = simulate(g, beam, s2)
    assert r2.mean_rel_uncertainty_50 > target
    # the stopping point is reproducible (same batches, same float sums)
    assert simulate(g, beam, s).primaries == r.primaries


def test_stops_at_time_limit_and_at_primaries(small_cfg):
    s, g, beam = _setup(small_cfg, 10**7, "run.time_limit_s=0.6", "run.batch_size=2000")
    r = simulate(g, beam, s)
    assert r.provenance["stop_reason"] == "time_limit"
    assert 0.6 <= r.wall_s < 0.6 + 2.0   # checked between batches: overrun < one batch (~0.05 s) + slack
    assert 0 < r.primaries < 10**7 and r.primaries % 2000 == 0
    s3, *_ = _setup(small_cfg, 5000, "run.target_uncertainty=0.0001", "run.time_limit_s=100")
    r3 = simulate(g, beam, s3)
    assert r3.provenance["stop_reason"] == "primaries" and r3.primaries == 5000


def test_mean_uncertainty_matches_finish(small_cfg):
    s, g, beam = _setup(small_cfg, 8000)
    sim = Simulation(g, beam, s)
    acc = Accumulator(sim.n_vox)
    plan = BatchPlan.from_settings(s)
    stream(acc, plan, LocalExecutor(sim, plan), s, g)
    from mcproton._run.streaming import inverse_mass

    assert mean_rel_uncertainty_50(acc, inverse_mass(g), g.density_g_cm3_zyx) == pytest.approx(
        finish(sim, acc, 1.0).mean_rel_uncertainty_50, rel=1e-12)


def test_oom_shrink_is_kept_by_every_intermediate_checkpoint(small_cfg, tmp_path, monkeypatch):
    """After a GPU out-of-memory the shrunk batch size goes into each later checkpoint, so that a run
    killed mid-way resumes with the batch that fits instead of hitting the OOM again."""
    import mcproton._run.job as job
    from mcproton.run import Simulation as RealSimulation

    limit = 1500
    real_run = RealSimulation.run_histories

    def oom_above_limit(self, first, n):
        if n > limit:
            raise OutOfMemoryError(f"Out of memory allocating {n * 1000:,} bytes")
        return real_run(self, first, n)

    monkeypatch.setattr(RealSimulation, "run_histories", oom_above_limit)
    monkeypatch.setattr(RealSimulation, "sparse_batches", property(lambda self: False))   # the GPU's path
    saved = []
    real_save = job.save_checkpoint

    def spy(path, fp, states, *args, **kwargs):
        saved.append([st.batch_cap for st in states])
        return real_save(path, fp, states, *args, **kwargs)

    monkeypatch.setattr(job, "save_checkpoint", spy)
    cfg = load_config(small_cfg(12000, batch_size=4000, checkpoint_interval_s=0))
    job.run_job(cfg, run_settings(cfg), build_geometry(cfg), build_beams(cfg), tmp_path / "out.h5",
                progress=False, log=lambda m: None)
    assert len(saved) >= 5
    # 4000 -> 2000 -> 1000 on the first batch; every checkpoint written after it carries the cap of 1000
    assert all(caps == [1000] for caps in saved[:-1]), saved


def test_progress_bar_in_a_log_file_is_a_line_per_tenth(capsys):
    """Not on a terminal (a batch job's log, a pipe) the bar is whole lines at the first batch, every 10 % and the
    end, never a carriage return; on a terminal it is redrawn in place."""
    from mcproton._run.streaming import progress_printer

    show = progress_printer(100_000, tty=False)
    for done in range(1_000, 100_001, 1_000):      # 100 batches
        show(done, 0.0)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and err.endswith("\n")
    assert len(lines) == 11                          # 1 %, then 10 %, 20 %, ..., 100 %
    assert " 1,000/100,000 " in lines[0] and "100,000/100,000" in lines[-1]
    show = progress_printer(100_000, tty=True)
    for done in (1_000, 2_000):
        show(done, 0.0)
    err = capsys.readouterr().err
    assert err.count("\r") == 2 and "\n" not in err


def test_progress_eta_goes_to_the_target_uncertainty(capsys, monkeypatch):
    """With a target uncertainty the ETA is to the primaries the 1/sqrt(N) law says the target needs, not to the
    cap (audit 2026-12-05: "100,000/10,000,000 protons ... ETA 75.8 s" for a beam that stopped at 1,000,000); before
    the uncertainty is known, and where the target needs more than the cap, it says "to the cap"."""
    from mcproton._run import streaming
    from mcproton._run.streaming import progress_printer

    clock = iter([0.0, 1.0, 2.0, 3.0] + [4.0] * 4)
    monkeypatch.setattr(streaming.time, "perf_counter", lambda: next(clock))
    show = progress_printer(10_000_000, tty=True, target=0.01)
    assert show.wants_uncertainty
    show(100_000, 0.0)                       # 100,000 p/s; the uncertainty not known yet
    show(200_000, 0.0, 0.02)                 # 2 % at 200,000: 800,000 needed for 1 %, 600,000 to go at 100,000 p/s
    show(300_000, 0.0, 0.1)                  # 10 %: 3e7 needed, beyond the cap of 1e7
    lines = capsys.readouterr().err.split("\r")[1:]
    assert lines[0].endswith("ETA   99.0 s to the cap"), lines[0]
    assert lines[1].endswith("ETA    6.0 s to 1 % (now 2.00 %)"), lines[1]
    assert lines[1].count("#") == 7          # 200,000 of the 800,000 needed: a quarter of 30
    assert lines[2].endswith("ETA   97.0 s to the cap"), lines[2]
    assert not hasattr(progress_printer(100), "wants_uncertainty") or not progress_printer(100).wants_uncertainty


def test_progress_eta_to_the_time_limit_in_hours_and_days_and_log_lines_by_time(capsys, monkeypatch):
    """The long-runs audit, F8: the ETA ignored the time limit (8.9 s for a run a 2 s limit stopped), long ETAs
    were raw seconds ("ETA 8133193.8 s"), and a log got a line only every 10 % of the cap (one line in a 10-hour
    time-limited run)."""
    from mcproton._run import streaming
    from mcproton._run.streaming import progress_printer

    clock = iter([0.0, 1.0, 2.0])
    monkeypatch.setattr(streaming.time, "perf_counter", lambda: next(clock))
    show = progress_printer(10_000_000, tty=True, time_limit_s=10.0, elapsed_before_s=0.5)
    show(100_000, 0.0)                       # 100,000 p/s: 99 s to the cap, 8.5 s to the limit
    show(200_000, 0.0)
    lines = capsys.readouterr().err.split("\r")[1:]
    assert lines[0].endswith("ETA    8.5 s to the time limit"), lines[0]
    assert lines[1].endswith("ETA    7.5 s to the time limit"), lines[1]
    clock = iter([0.0, 1.0])
    show = progress_printer(10**12, tty=True)
    show(100_000, 0.0)                       # 1e7 s to go: 115.7 days
    lines = capsys.readouterr().err.split("\r")[1:]
    assert lines[0].endswith("ETA  115.7 d"), lines[0]
    # in a log: a line at least every LOG_EVERY_S, however slowly the tenths go
    t = iter([0.0] + [301.0 * k for k in range(1, 6)])
    monkeypatch.setattr(streaming.time, "perf_counter", lambda: next(t))
    show = progress_printer(10**12, tty=False)
    for k in range(1, 6):
        show(k * 1000, 0.0)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5 and lines[-1].endswith(" d"), lines


def test_a_run_of_more_than_a_day_without_a_time_limit_is_warned_about(small_cfg, tmp_path, monkeypatch):
    import pytest

    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton._run import streaming
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    monkeypatch.setattr(streaming, "LONG_RUN_S", 1e-6)   # any run "takes more than a day"
    c = load_config(small_cfg(20_000, batch_size=2000))
    with pytest.warns(McprotonRuntimeWarning, match="remaining 18,000 primaries would take about") as rec:
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), None, progress=False, log=lambda m: None)
    assert sum("would take about" in str(w.message) for w in rec) == 1
    c = load_config(small_cfg(20_000, batch_size=2000, time_limit_s=1000.0))
    import warnings

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), None, progress=False, log=lambda m: None)
    assert not any("would take about" in str(w.message) for w in rec)


def test_progress_of_a_plan_names_the_beam_and_gives_the_runs_eta(capsys, monkeypatch):
    """The long-runs audit 2, F5: a plan's bar gave the current beam's ETA only ("ETA 5.6 s to the time limit" with
    12 s of transport to go), with nothing on the line to say so.  Now it says which beam runs and its ETA is the
    run's: to the end of the last beam, or to the run's time limit (the time the other beams used counted)."""
    from mcproton._run import streaming
    from mcproton._run.streaming import progress_printer

    clock = iter([0.0, 1.0])
    monkeypatch.setattr(streaming.time, "perf_counter", lambda: next(clock))
    show = progress_printer(1_000_000, tty=True, beam="beam 1/2", later_primaries=1_000_000)
    show(100_000, 0.0)                       # 100,000 p/s: 9 s of this beam, 10 s of the next
    line = capsys.readouterr().err.split("\r")[1]
    assert line.startswith("  beam 1/2 [") and line.endswith("ETA   19.0 s to the end of the run"), line
    clock = iter([0.0, 1.0])
    show = progress_printer(1_000_000, tty=True, beam="beam 2/2", time_limit_s=10.0, elapsed_before_s=4.0)
    show(100_000, 0.0)                       # beam 1 used 4 s of the run's 10: 5 s left after this second
    line = capsys.readouterr().err.split("\r")[1]
    assert line.startswith("  beam 2/2 [") and line.endswith("ETA    5.0 s to the time limit"), line


def test_a_batch_longer_than_the_checkpoint_interval_is_warned_about_once(small_cfg, tmp_path, monkeypatch):
    """Checkpoints and the SIGTERM stop come only between batches; the default batch is a tenth of the run, so a
    long run's batch outlasts run.checkpoint_interval_s and a scheduler's grace time (the cluster audit, F2).  The
    first such batch is warned about, naming run.batch_size; a run without checkpoints is not."""
    import warnings

    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton._run import streaming
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    monkeypatch.setattr(streaming, "LONG_BATCH_S", -1.0)   # any batch is "long"
    c = load_config(small_cfg(20_000, batch_size=2000, checkpoint_interval_s=0))
    with pytest.warns(McprotonRuntimeWarning, match=r"a batch of 2,000 primaries took .* longer than "
                      r"run.checkpoint_interval_s = 0 s.*SIGTERM.*set run.batch_size = \d+") as rec:
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), tmp_path / "o.h5", progress=False,
                log=lambda m: None)
    assert sum("run.batch_size =" in str(w.message) for w in rec) == 1
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run_job(c, run_settings(c), build_geometry(c), build_beams(c), None, progress=False, log=lambda m: None)
    assert not any("run.batch_size =" in str(w.message) for w in rec)


def test_long_batch_warning_thresholds():
    from mcproton._run.streaming import LONG_BATCH_S, _warn_long_batch

    assert not _warn_long_batch(1000, LONG_BATCH_S - 1, 0.0)   # under the grace time: no warning
    assert not _warn_long_batch(1000, 50.0, 60.0)               # within the checkpoint interval
    with pytest.warns(Warning, match=r"run.batch_size = 400 \(batches of about 20 s"):
        assert _warn_long_batch(1000, 50.0, 1.0)

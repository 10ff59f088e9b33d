"""The plan-level top-up of ``mcproton check`` says what happened when the beams stopped at --primaries (before
2026-12-05 it said "after every beam reached 1.41 % ... topping up each beam by 50758 % more primaries" and then
topped up nothing, since no primaries were left under the limit)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mcproton._check.compute import _top_up


def _beam_result(stop_reason: str, primaries: int) -> SimpleNamespace:
    return SimpleNamespace(provenance={"stop_reason": stop_reason}, primaries=primaries)


def test_beams_stopped_at_the_primaries_limit_get_no_top_up_and_the_warning_says_why():
    """One warning (into check.json's warnings and the report, audit 18b F2, not only a log line on stderr), naming
    the check's options and the beams by their BeamNumber (F12: it said "beam(s) 1, 2" of beams 0 and 1)."""
    from mcproton._io.errors import McprotonRuntimeWarning, recording_warnings

    results = [_beam_result("primaries", 100_000), _beam_result("primaries", 100_000)]
    beams = [SimpleNamespace(meta={"beam_number": 0}), SimpleNamespace(meta={"beam_number": 1})]
    tot = SimpleNamespace(mean_rel_uncertainty_50=0.215)
    logs: list[str] = []
    with recording_warnings() as said, pytest.warns(McprotonRuntimeWarning):
        out, out_tot = _top_up(results, tot, beams, None, SimpleNamespace(target_uncertainty=0.0141, seed=1),
                               0.01, 100_000, False, logs.append)
    assert out is results and out_tot is tot
    assert logs == [] and len(said) == 1
    assert "stopped at the limit of 100,000 primaries per beam (--primaries) in beam(s) 0, 1" in said[0]
    assert "topping up" not in said[0] and "after every beam reached" not in said[0]
    assert "46,225,000 primaries per beam would reach the target" in said[0]   # 1e5 x (21.5 / 1)^2
    assert "would reach the target: raise --primaries to that" in said[0] and "no top-up" in said[0]
    assert "run.primaries" not in said[0] and "1.41" not in said[0]


def test_a_time_limited_beam_names_the_time_limit():
    from mcproton._io.errors import McprotonRuntimeWarning, recording_warnings

    results = [_beam_result("time_limit", 50_000), _beam_result("target_uncertainty", 80_000)]
    with recording_warnings() as said, pytest.warns(McprotonRuntimeWarning):
        _top_up(results, SimpleNamespace(mean_rel_uncertainty_50=0.02), [None, None], None,
                SimpleNamespace(target_uncertainty=0.0141, seed=1, time_limit_s=60.0), 0.01, 10**6, False,
                lambda m: None)
    assert "--time-limit 60 s in beam(s) 1" in said[0] and "give a longer --time-limit" in said[0]
    assert "320,000 primaries per beam would reach" in said[0]
    assert "raise --primaries" not in said[0]   # 320,000 per beam is within the 1,000,000 allowed


def test_no_message_when_the_plan_dose_reached_its_target():
    logs: list[str] = []
    res = [_beam_result("primaries", 100_000)]
    tot = SimpleNamespace(mean_rel_uncertainty_50=0.0100)
    assert _top_up(res, tot, [None], None, SimpleNamespace(target_uncertainty=0.01), 0.01, 10**5, False,
                   logs.append) == (res, tot)
    assert logs == []


def test_the_topped_up_beam_keeps_its_deposited_energy_consistent_with_its_dose():
    """The top-up merges the two runs of a beam as the primaries-weighted mean of their doses; the deposited energy
    (MeV per primary) must be the same mean, so that dose x mass = edep x total_protons x (MeV/g -> Gy) holds for
    the merged beam as for each run (before, the weights were applied twice: (n1^2 e1 + n2^2 e2) / n^2).
    Exact up to rounding (rtol 1e-9); two tiny CPU runs."""
    import math

    import numpy as np
    import pytest

    from mcproton._check.compute import TOP_UP_MARGIN
    from mcproton._run.result import MEV_PER_G_TO_GY
    from mcproton.geometry import box_phantom
    from mcproton.run import simulate
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    g = box_phantom("water", (30.0, 30.0, 40.0), (3.0, 3.0, 2.0))
    beam = Beam.pencil(60.0, position_mm=(0, 0, -5), total_protons=1e9)
    s = RunSettings(primaries=1000, seed=4, backend="cpu", threads=1, batches=2, target_uncertainty=0.05)
    r = simulate(g, beam, RunSettings(primaries=1000, seed=4, backend="cpu", threads=1, batches=2))
    r.provenance["stop_reason"] = "target_uncertainty"   # as if it had stopped at its target
    logs: list[str] = []
    (merged,), _ = _top_up([r], SimpleNamespace(mean_rel_uncertainty_50=0.2), [beam], g, s, 0.1, 10**6, False,
                           logs.append)
    n2 = math.ceil(1000 * ((0.2 / 0.1) ** 2 - 1.0) * TOP_UP_MARGIN)   # 3301 (3300 and a rounding)
    assert merged.primaries == 1000 + n2 and f"top-up of beam 1 (1/1): {beam.name}, {n2:,} more" in logs[-1]
    mass_g = g.density_g_cm3_zyx.astype(np.float64) * g.voxel_volume_cm3
    for res in (r, merged):
        want = res.dose_gy_zyx * mass_g / (MEV_PER_G_TO_GY * 1e9)
        np.testing.assert_allclose(res.edep_mev_zyx, want, rtol=1e-9, atol=1e-300)
    assert merged.edep_mev_zyx.sum() == pytest.approx(r.edep_mev_zyx.sum(), rel=0.1)   # the same beam, per primary


def test_a_signal_in_the_last_batch_of_the_top_up_stops_the_check():
    """The long-runs audit 2, F3: a SIGINT during the last batch of a run_job of the check (here the top-up's) was
    acknowledged ("... stopping") and forgotten: the check merged the beam and went on to the gamma and the report,
    exiting with its PASS/FAIL status instead of 130.  Now RunInterrupted stops it (no timing: the progress
    callback sends the signal when the top-up's last batch is done)."""
    import os
    import signal

    import pytest

    from mcproton._run.job import RunInterrupted
    from mcproton.geometry import box_phantom
    from mcproton.run import simulate
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    g = box_phantom("water", (30.0, 30.0, 40.0), (3.0, 3.0, 2.0))
    beam = Beam.pencil(60.0, position_mm=(0, 0, -5), total_protons=1e9)
    s = RunSettings(primaries=1000, seed=4, backend="cpu", threads=1, batches=2, target_uncertainty=0.05)
    r = simulate(g, beam, RunSettings(primaries=1000, seed=4, backend="cpu", threads=1, batches=2))
    r.provenance["stop_reason"] = "target_uncertainty"
    sent: list[int] = []

    def progress(done, rate):   # the top-up is 3301 primaries in 10 batches: SIGINT when the last is done
        if done >= 3301 and not sent:
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted) as ei:
        _top_up([r], SimpleNamespace(mean_rel_uncertainty_50=0.2), [beam], g, s, 0.1, 10**6, progress,
                lambda m: None)
    assert sent and ei.value.code == 130 and "as the transport finished" in str(ei.value), str(ei.value)


def test_the_top_up_runs_within_what_the_time_limit_left():
    """--time-limit is the transport time of all the beams (docs/check.md): the top-up ran without a limit, so a
    check given 60 s whose beams took 50 s could take 50 s more.  Now each top-up gets its share of what is left
    (here 10 s over two beams: 5 s for the first), and none runs where the beams used the limit.  No transport:
    run_job is replaced by one that records its settings."""
    from mcproton._io.errors import McprotonRuntimeWarning, recording_warnings
    from mcproton._run import job
    from mcproton.settings import PhysicsSettings

    def beam(t_s: float) -> SimpleNamespace:
        return SimpleNamespace(provenance={"stop_reason": "target_uncertainty", "phase_s": {"transport": t_s}},
                               primaries=100_000)

    asked: list = []

    class Ran(Exception):
        pass

    def fake_run_job(out, settings, *args, **kwargs):
        asked.append(settings)
        raise Ran

    s = SimpleNamespace(target_uncertainty=0.0141, seed=1, time_limit_s=60.0, backend="cpu", threads=1,
                        physics=PhysicsSettings())
    tot = SimpleNamespace(mean_rel_uncertainty_50=0.02)
    fields = [SimpleNamespace(name=f"F{k}", meta={"beam_number": k}) for k in (1, 2)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(job, "run_job", fake_run_job)
        with pytest.raises(Ran):
            _top_up([beam(25.0), beam(25.0)], tot, fields, None, s, 0.01, 10**7, False, lambda m: None)
        assert asked[0].time_limit_s == pytest.approx(5.0)   # (60 - 50) s over the two beams to top up
        asked.clear()
        results = [beam(30.0), beam(30.0)]
        with recording_warnings() as said, pytest.warns(McprotonRuntimeWarning):
            assert _top_up(results, tot, fields, None, s, 0.01, 10**7, False, lambda m: None) == (results, tot)
    assert asked == [] and len(said) == 1
    assert "used the --time-limit of 60 s, so there is no top-up" in said[0]


@pytest.mark.parametrize("primaries, said", [
    (6_500, "topping up each beam by 15 % more primaries (the estimate 10 %, at least 1,000 primaries a beam and "
            "within the --primaries limit)"),   # the review's topup_prov.py: 1,000 of 6,500
    (100_000, "topping up each beam by 10 % more primaries"),   # the estimate itself: nothing more to say
])
def test_the_top_up_log_says_the_primaries_it_runs(primaries, said):
    """The log's percentage is what each beam is given, not the 1/sqrt(N) estimate before the TOP_UP_MIN floor of
    1,000 primaries (review of 2026-12-06, R6: "by 10 % more primaries", then 1,000 of 6,500, 15 %).  No transport:
    run_job is replaced by one that stops the top-up once asked."""
    import math

    from mcproton._check.compute import TOP_UP_MARGIN
    from mcproton._run import job
    from mcproton.settings import PhysicsSettings

    class Ran(Exception):
        pass

    def fake_run_job(*args, **kwargs):
        raise Ran

    results = [SimpleNamespace(provenance={"stop_reason": "target_uncertainty"}, primaries=primaries)
               for _ in range(2)]
    s = SimpleNamespace(target_uncertainty=0.0141, seed=1, time_limit_s=None, backend="cpu", threads=1,
                        physics=PhysicsSettings())
    u = 0.01 * math.sqrt(1 + 0.10 / TOP_UP_MARGIN)   # the estimate: 10 % more primaries with the margin
    fields = [SimpleNamespace(name=f"F{k}", meta={"beam_number": k}) for k in (1, 2)]
    logs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(job, "run_job", fake_run_job)
        with pytest.raises(Ran):
            _top_up(results, SimpleNamespace(mean_rel_uncertainty_50=u), fields, None, s, 0.01, 10**7, False,
                    logs.append)
    assert logs[0].endswith(f"(target 1 %: the beams overlap less in the high-dose region); {said}"), logs
    assert f"top-up of beam 1 (1/2): F1, {max(math.ceil(primaries * 0.10), 1000):,} more primaries" == logs[1]

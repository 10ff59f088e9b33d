"""The plan-level top-up of ``mcproton check`` says what happened when the beams stopped at --primaries (before
2026-12-05 it said "after every beam reached 1.41 % ... topping up each beam by 50758 % more primaries" and then
topped up nothing, since no primaries were left under the limit)."""
from __future__ import annotations

from types import SimpleNamespace

from mcproton._check.compute import _top_up


def _beam_result(stop_reason: str, primaries: int) -> SimpleNamespace:
    return SimpleNamespace(provenance={"stop_reason": stop_reason}, primaries=primaries)


def test_beams_stopped_at_the_primaries_limit_get_no_top_up_and_the_log_says_why():
    results = [_beam_result("primaries", 100_000), _beam_result("primaries", 100_000)]
    tot = SimpleNamespace(mean_rel_uncertainty_50=0.215)
    logs: list[str] = []
    out, out_tot = _top_up(results, tot, [None, None], None, SimpleNamespace(target_uncertainty=0.0141, seed=1),
                           0.01, 100_000, False, logs.append)
    assert out is results and out_tot is tot
    assert len(logs) == 1
    assert "stopped at the limit of 100,000 primaries per beam" in logs[0] and "beam(s) 1, 2" in logs[0]
    assert "topping up" not in logs[0] and "after every beam reached" not in logs[0]
    assert "46,225,000 primaries per beam would reach the target" in logs[0]   # 1e5 x (21.5 / 1)^2


def test_no_message_when_the_plan_dose_reached_its_target():
    logs: list[str] = []
    res = [_beam_result("primaries", 100_000)]
    tot = SimpleNamespace(mean_rel_uncertainty_50=0.0100)
    assert _top_up(res, tot, [None], None, SimpleNamespace(target_uncertainty=0.01), 0.01, 10**5, False,
                   logs.append) == (res, tot)
    assert logs == []

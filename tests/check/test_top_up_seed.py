"""The check's top-up pass runs with a seed derived from the first pass's: always a valid run.seed (the scale audit
19, F6: a --seed within TOP_UP_SEED_OFFSET of 2^63 failed with a ValueError after the whole first pass)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mcproton.settings import RunSettings


def test_the_top_up_seed_is_always_a_valid_seed(monkeypatch):
    """A --seed within TOP_UP_SEED_OFFSET of 2^63 made the top-up's RunSettings fail with a ValueError after the
    whole first pass; its seed now wraps below 2^63, and is never the first pass's."""
    import mcproton._run.job as job
    from mcproton._check.compute import TOP_UP_SEED_OFFSET, _top_up, top_up_seed

    for seed in (0, 12345, 2**63 - TOP_UP_SEED_OFFSET - 1, 2**63 - TOP_UP_SEED_OFFSET, 2**63 - 1):
        s = top_up_seed(seed)
        assert 0 <= s < 2**63 and s != seed
        assert RunSettings(seed=s).seed == s

    seen = []

    class Ran(Exception):
        pass

    def fake_run_job(cfg, settings, *a, **k):
        seen.append(settings.seed)
        raise Ran

    monkeypatch.setattr(job, "run_job", fake_run_job)
    results = [SimpleNamespace(primaries=10_000, provenance={"stop_reason": "target_uncertainty"})]
    beams = [SimpleNamespace(name="b", meta={})]
    settings = RunSettings(seed=2**63 - 1, target_uncertainty=0.01, backend="cpu")
    with pytest.raises(Ran):   # it got as far as the top-up's run (a ValueError before)
        _top_up(results, SimpleNamespace(mean_rel_uncertainty_50=0.02), beams, None, settings, 0.01, 10**7,
                False, lambda m: None)
    assert seen == [top_up_seed(2**63 - 1)]

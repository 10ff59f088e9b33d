"""BatchPlan with run.batches in the millions (overflow audit 29, F3): the plan's boundaries are arithmetic, not two
Python lists of one tuple per batch made before the first batch (3e6 batches took 7.7 s and 0.64 GB; 1e8 would have
taken about 20 GB, 1e9 a MemoryError, with nothing naming run.batches), and they are bitwise those of batch_plan."""
from __future__ import annotations

import tracemalloc

import numpy as np

from mcproton._run.streaming import BatchPlan, batch_plan


def test_boundaries_are_batch_plans_for_every_split():
    rng = np.random.default_rng(29)
    cases = [(1003, 10), (10, 10), (11, 10), (19, 10), (7, 3), (1, 2), (5, 7)] + \
        [(int(t), int(b)) for t, b in zip(rng.integers(1, 5000, 200), rng.integers(2, 300, 200))]
    for total, batches in cases:
        plan = BatchPlan(total, batches)
        ref = batch_plan(total, batches)
        assert plan.by_batches
        assert list(plan.iter_from(0)) == ref, (total, batches)
        assert plan.size == max(n for _, n in ref)
        for first, n in ref:   # resumed at or inside any batch: that batch's end first
            for pos in {first, first + n // 2, first + n - 1}:
                assert plan.next_n(pos) == first + n - pos, (total, batches, pos)
        assert plan.next_n(total) == 0


def test_a_million_batches_make_no_list_of_them():
    tracemalloc.start()
    try:
        plan = BatchPlan(10**9, 10**6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"BatchPlan(1e9, 1e6) allocated {peak:,} bytes"   # was ~200 MB (two lists of 1e6 tuples)
    assert plan.size == 1000 and plan.by_batches
    assert plan.next_n(0) == 1000 and plan.next_n(10**9 - 1) == 1 and plan.next_n(123_456_789) == 211
    uneven = BatchPlan(10**9 + 7, 10**6)   # the first 7 batches hold 1001 histories, the rest 1000
    assert [uneven.next_n(p) for p in (0, 7006, 7007, 10**9 + 6)] == [1001, 1, 1000, 1]

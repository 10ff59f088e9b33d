"""A run with run.target_uncertainty cannot stop before about a tenth of run.primaries (statistics audit 2026-12-06,
F6: a 5 % target with a cap of 2e6 ran 200,000 primaries where ~17,000 sufficed): the target is judged from the 10th
batch and batches are primaries / 100.  The floor is documented where the option is (the README's config table,
from mcproton.config.SCHEMA), with run.batch_size as the way to stop sooner; this keeps the words and the code
together."""
from __future__ import annotations

from pathlib import Path

from mcproton._run.streaming import EARLY_STOP_BATCHES, MIN_BATCHES_FOR_TARGET, BatchPlan

ROOT = Path(__file__).resolve().parents[2]


def test_the_floor_of_a_target_run_is_a_tenth_of_its_primaries_and_batch_size_lowers_it():
    assert MIN_BATCHES_FOR_TARGET / EARLY_STOP_BATCHES == 0.1
    assert BatchPlan(2_000_000, early_stop=True).size * MIN_BATCHES_FOR_TARGET == 200_000
    assert BatchPlan(2_000_000, batch_size=2_000, early_stop=True).size * MIN_BATCHES_FOR_TARGET == 20_000


def test_the_readme_says_so():
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| `run.target_uncertainty`"))
    assert "~10 % of primaries" in row and "batch_size" in row

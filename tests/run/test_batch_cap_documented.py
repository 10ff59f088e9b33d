"""The default batch is primaries / batches (primaries / 100 when the run may stop early) but at most
DEFAULT_MAX_BATCH histories (10^6 on the CPU, 10^7 on the GPU): the README's config table, its signals paragraph and
docs/check.md said "a tenth of the run" without the cap (audit 24 "docs" F3: a 1.2e7-proton CPU run had 12 batches
of 10^6, not 10 of 1.2e6).  This keeps the words and the code together."""
from __future__ import annotations

import math
import re
from pathlib import Path

from mcproton._run.streaming import DEFAULT_MAX_BATCH, BatchPlan
from mcproton.config import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def _power(n: int) -> str:
    assert n == 10 ** round(math.log10(n)), n
    return f"10^{round(math.log10(n))}"


CAP = f"at most {_power(DEFAULT_MAX_BATCH['cpu'])} on the CPU, {_power(DEFAULT_MAX_BATCH['cuda'])} on the GPU"


def test_the_default_batch_is_capped():
    assert BatchPlan(12_000_000, 10).size == DEFAULT_MAX_BATCH["cpu"] == 10**6   # 12 batches, not 10
    assert BatchPlan(3_000_000, 10).size == 300_000                               # below the cap: a tenth
    assert BatchPlan(12_000_000, 10, backend="cuda").size == 1_200_000
    assert BatchPlan(200_000_000, 10, backend="cuda").size == DEFAULT_MAX_BATCH["cuda"] == 10**7
    assert BatchPlan(10**9, 10, early_stop=True).size == 10**6


def test_the_config_reference_states_the_cap():
    assert CAP in SCHEMA["run"]["batch_size"][1]
    assert re.sub(r"at most ", "", CAP, count=1) in SCHEMA["run"]["target_uncertainty"][1]


def test_every_batch_is_a_tenth_sentence_states_the_cap():
    """Wherever the docs say a batch is a tenth (or a hundredth) of the run, the cap follows within the sentence."""
    found = 0
    for doc in ("README.md", "docs/check.md"):
        text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
        for m in re.finditer(r"batch(?:es)? (?:is|are) (?:by default |at most )?a (?:tenth|hundredth) of", text):
            found += 1
            after = text[m.end():m.end() + 160]
            assert _power(DEFAULT_MAX_BATCH["cpu"]) in after, f"{doc}: {text[m.start():m.end() + 160]}"
    assert found >= 3, found

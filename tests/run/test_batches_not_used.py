"""run.batches given but replaced (audit 27 "dead options", F4): with run.batch_size, run.target_uncertainty or
run.time_limit_s, or where its batches would exceed the largest default batch, the run makes other batches
(streaming.BatchPlan).  Before 2026-12-07 nothing said so: a time limit that never stopped the run turned
``batches = 20`` into 100 batches (another uncertainty dataset).  Now the log says, in one line, what was asked,
what is used and why; the config reference says it too."""
from __future__ import annotations

import json

import pytest

from mcproton.config import SCHEMA
from mcproton.settings import RunSettings


@pytest.mark.parametrize("kw, words", [
    ({"batches": 20, "time_limit_s": 1000.0},
     "run.batches = 20 is not used: with run.time_limit_s set the run may stop between batches, so they are a "
     "hundredth of run.primaries (at most 1,000,000 histories on the CPU); the run makes batches of 30 histories "
     "(100 of run.primaries = 3,000 per beam at most); set run.batch_size to choose their size"),
    ({"batches": 4, "target_uncertainty": 0.01, "time_limit_s": 5.0},
     "with run.target_uncertainty and run.time_limit_s set"),
    ({"batches": 4, "batch_size": 500},
     "run.batches = 4 is not used: run.batch_size = 500 sets the batches; the run makes batches of 500 histories (6 "
     "of run.primaries = 3,000 per beam)"),
    ({"batches": 2, "primaries": 3_000_000},
     "run.batches = 2 is not used: 2 batches would hold 1,500,000 histories each, more than the largest default "
     "batch on the CPU (1,000,000: it bounds the work lost to a kill and a time limit's overrun); the run makes "
     "batches of 1,000,000 histories (3 of run.primaries = 3,000,000 per beam)"),
])
def test_what_was_asked_what_is_used_and_why(kw, words):
    from mcproton._run.streaming import batches_not_used

    said = batches_not_used(RunSettings(**{"primaries": 3000, "backend": "cpu", **kw}), "cpu")
    assert said is not None and said.startswith("mcproton: note: run.batches = ") and words in said, said
    assert "\n" not in said


@pytest.mark.parametrize("kw", [{"batches": 20}, {"batches": 10, "batch_size": 300},
                                {"batches": 100, "time_limit_s": 5.0}])
def test_nothing_is_said_where_the_batches_are_those_asked(kw):
    from mcproton._run.streaming import batches_not_used

    assert batches_not_used(RunSettings(**{"primaries": 3000, "backend": "cpu", **kw}), "cpu") is None


@pytest.mark.parametrize("batches_given", [True, False])
def test_the_run_says_it_once_where_run_batches_is_given(tmp_path, capsys, batches_given):
    """``mcproton run`` with run.time_limit_s (never reached): the note once on the console where the config gives
    run.batches, none where it does not (the default 10 is nobody's request); the batches made are recorded."""
    from mcproton.cli import main

    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nprimaries = 1000\nseed = 7\nbackend = "cpu"\nthreads = 1\ntime_limit_s = 1000\n'
                   + ("batches = 20\n" if batches_given else "")
                   + '[phantom]\ntype = "water"\nsize_mm = [20.0, 20.0, 40.0]\nvoxel_mm = [4.0, 4.0, 4.0]\n'
                     '[beam]\nenergy_mev = 50.0\nposition_mm = [0.0, 0.0, -1.0]\n[output]\nplot = false\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--no-checkpoint"]) == 0
    out = capsys.readouterr()
    notes = [line for line in out.err.splitlines() if "run.batches" in line and "is not used" in line]
    assert len(notes) == (1 if batches_given else 0), out.err
    if batches_given:
        assert "run.batches = 20 is not used: with run.time_limit_s set" in notes[0]
    assert json.loads(out.out)["batches"] == 100


def test_the_config_reference_says_so():
    text = SCHEMA["run"]["batches"][1]
    assert all(k in text for k in ("run.batch_size", "run.target_uncertainty", "run.time_limit_s", "the log"))

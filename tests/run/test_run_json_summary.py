"""The JSON that `mcproton run` (its summary, --check-config) and `mcproton check --json` print is strict JSON: a
figure that is not a number (a run stopped by run.time_limit_s after its first batch, a body outline without tissue)
is null, never NaN, which RFC 8259 does not allow and strict parsers (jq, JSON.parse) refuse (before: NaN)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from mcproton._io.json_out import json_text
from mcproton.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_bad_input_table import BASE  # noqa: E402


def _strict(text: str):
    def refuse(c):
        raise ValueError(f"not JSON: {c}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_null_at_any_depth():
    obj = {"a": math.nan, "b": [1.0, np.float32("inf"), {"c": -math.inf, "d": np.float64(2.5)}], "e": np.int64(3),
           "f": np.bool_(True), "g": "NaN", "h": (np.nan, 1)}
    assert _strict(json_text(obj)) == {"a": None, "b": [1.0, None, {"c": None, "d": 2.5}], "e": 3, "f": True,
                                        "g": "NaN", "h": [None, 1]}


def test_the_run_summary_holds_null_for_a_figure_that_is_not_a_number(tmp_path, capsys, monkeypatch):
    """The summary of a run whose uncertainty figure is NaN (as after one batch: the audit's c16 case)."""
    import mcproton._run.job as job

    real = job.run_job

    def nan_figure(*a, **k):
        results = real(*a, **k)
        for r in results:
            r.mean_rel_uncertainty_50 = math.nan
        return results

    monkeypatch.setattr(job, "run_job", nan_figure)
    cfg = tmp_path / "c.toml"
    cfg.write_text(BASE)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--no-checkpoint"]) == 0
    out = capsys.readouterr().out
    summary = _strict(out[out.index("{"):])
    assert "mean_rel_uncertainty_50" in summary and summary["mean_rel_uncertainty_50"] is None, out
    assert main(["run", str(cfg), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert _strict(out[out.index("{"):])["config_ok"] is True

"""What a check says about its MC's noise and its organs at risk (audit 18b, 2026-12-06): the D95 note's remedy
follows what stopped the beams (F1), one warning of the check's own words says the MC stopped short of its target
instead of mcproton run's per-beam run.* warnings (F2, F7), the TPS-grid uncertainty's interpolation caveat only on
an interpolated grid (F12), and an organ at risk whose dose differs beyond the noise is named (F3)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_head import write_case  # noqa: E402


def _mc(u: float, stops: list[str], primaries: int = 200_000) -> SimpleNamespace:
    return SimpleNamespace(mean_rel_uncertainty_50=u,
                           beam_meta={i: {"stop_reason": r, "primaries": primaries} for i, r in enumerate(stops)})


# ---- F1: the D95 note's remedy
def test_beams_stopped_at_the_primaries_get_more_primaries_not_a_lower_target():
    """OpenTPS head at 200k per beam: 5.46 % against a 1 % target; it said "rerun with a lower
    --target-uncertainty (e.g. 1 %)", the target it had."""
    from mcproton._check.api import noise_remedy

    text = noise_remedy(_mc(0.0546, ["primaries", "primaries"]), 0.01, 200_000, None)
    assert text.startswith("raise --primaries to about 5,962,320 per beam"), text   # 2e5 x 5.46^2
    assert "--target-uncertainty" not in text


def test_a_target_above_the_suggested_one_is_lowered_too():
    from mcproton._check.api import noise_remedy

    text = noise_remedy(_mc(0.03, ["primaries"], 100_000), 0.02, 100_000, None)
    assert "raise --primaries to about 900,000 per beam" in text and "--target-uncertainty 0.01 (1 %)" in text


def test_a_time_limit_names_the_time_limit():
    from mcproton._check.api import noise_remedy

    text = noise_remedy(_mc(0.04, ["time_limit"], 50_000), 0.01, 10_000_000, 30.0)
    assert text.startswith("rerun with a longer --time-limit than 30 s"), text
    assert "raise --primaries" not in text   # 800,000 is within the 10 M allowed


def test_beams_that_reached_their_target_get_a_lower_target():
    from mcproton._check.api import noise_remedy

    text = noise_remedy(_mc(0.02, ["target_uncertainty", "target_uncertainty + top-up of 5,000 primaries"]), 0.02,
                        10_000_000, None)
    assert text == "rerun with --target-uncertainty 0.01 (1 %)", text


def test_a_reached_target_at_the_floor_is_not_suggested_again():
    """Every beam reached a 0.25 % target: the remedy said "rerun with --target-uncertainty 0.0025 (0.25 %)", the
    target the check had (the suggestion's 0.25 % floor), so following it changed nothing."""
    from mcproton._check.api import noise_remedy

    text = noise_remedy(_mc(0.0024, ["target_uncertainty"], 1_000_000), 0.0025, 10_000_000, None)
    assert text.startswith("rerun with --target-uncertainty 0.00125 (0.125 %)"), text


def test_a_top_up_stopped_by_the_time_limit_names_the_time_limit():
    """The plan-level top-up runs within --time-limit (compute._top_up); where the limit stopped it, the remedy is a
    longer --time-limit, not a lower target than the one the beams reached."""
    from mcproton._check.api import noise_remedy

    text = noise_remedy(_mc(0.02, ["target_uncertainty + top-up of 3,000 primaries of 9,000 (time_limit)"]), 0.01,
                        10_000_000, 60.0)
    assert text.startswith("rerun with a longer --time-limit than 60 s"), text


# ---- F12: the interpolation caveat
def test_the_tps_grid_caveat_only_on_an_interpolated_grid():
    from mcproton._check.api import tps_grid_uncertainty_text

    assert "lower bound" in tps_grid_uncertainty_text(1.2)
    same = tps_grid_uncertainty_text(1.2, interpolated=False)
    assert "1.20 %" in same and "lower bound" not in same and "interpolated grid" not in same


# ---- F3: organs at risk beyond the noise
def _metric(tps: float, mc: float, nm_pct: float, sd_pct: float) -> dict:
    return {"tps_gy": tps, "mc_gy": mc, "diff_pct": (mc - tps) / tps * 100, "noise_matched_diff_pct": nm_pct,
            "noise_sd_pct": sd_pct}


def _structs(**oars: dict) -> dict:
    rows = {"CTV": {"kind": "target", "metrics": {"D50": {"tps_gy": 1.8}}}}
    rows.update({nm: {"kind": "oar", "metrics": m} for nm, m in oars.items()})
    return rows


def test_an_organ_at_risk_beyond_the_noise_is_named():
    """OpenTPS head at 2 M per beam: brainstem Dmean +18.8 %, D2 +21.1 % noise-matched (noise SD 0.8 %), PASS and
    no message at all."""
    from mcproton._check.api import oar_notes

    structs = _structs(brainstem={"Dmean": _metric(0.30, 0.356, 18.8, 0.8), "D2": _metric(0.76, 0.92, 21.1, 0.8),
                                  "Dmax": _metric(0.9, 0.98, 8.9, 0.8)},
                       eye={"Dmean": _metric(0.01, 0.02, 100.0, 5.0)},         # 0.01 Gy: far below 2 % of 1.8 Gy
                       chiasm={"D2": _metric(1.0, 1.06, 6.0, 2.5)},           # within 3 noise SD
                       cochlea={"D2": _metric(1.0, 1.04, 4.0, 0.1)})          # under 5 % of its TPS value
    notes = oar_notes(structs, 1.8)
    assert len(notes) == 1, notes
    n = notes[0]
    assert "brainstem Dmean +18.8 % (0.3 -> 0.356 Gy), D2 +21.1 % (0.76 -> 0.92 Gy)" in n, n
    assert "no action level: review" in n and "2 % of the prescription (1.8 Gy)" in n
    assert "eye" not in n and "chiasm" not in n and "cochlea" not in n and "Dmax" not in n


def test_without_a_prescription_the_target_d50_is_the_scale_and_none_is_said_within_the_noise():
    from mcproton._check.api import oar_notes

    assert "the target's TPS D50 (1.8 Gy)" in oar_notes(_structs(cord={"D2": _metric(1.0, 1.2, 20.0, 1.0)}), None)[0]
    assert oar_notes(_structs(cord={"D2": _metric(1.0, 1.02, 2.0, 1.0)}), None) == []


# ---- F2 + F7: one warning in the check's words, in check.json's warnings
@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("head"), shape_zyx=(24, 64, 64), pixel_mm=2.0, slice_mm=2.5)


def test_a_check_stopped_at_its_primaries_says_so_once_in_its_own_words(case, tmp_path):
    """One beam, 20,000 primaries against a 0.1 % target: before, mcproton run's warning ("run.target_uncertainty
    ... raise run.primaries (and set run.time_limit_s)") was the report's only word on it, and the primaries that
    would reach the target were on stderr alone.  Deterministic (seeded); the numbers are not asserted."""
    pytest.importorskip("pymedphys")
    import json

    import mcproton._check.api as api

    out = tmp_path / "chk"
    res = api.check(plan=case["plan"], dose=case["dose"], ct=case["ct"], beam_model="dcpt_v5", primaries=20_000,
                    target_uncertainty=0.001, backend="cpu", threads=1, gamma_points=200, out=out, report=False,
                    progress=False, log=lambda m: None)
    said = [w for w in res.warnings if "stopped at" in w]
    assert len(said) == 1, res.warnings
    assert "the limit of 20,000 primaries per beam (--primaries)" in said[0] and "raise --primaries to that" in said[0]
    assert not [w for w in res.warnings if "run.primaries" in w or "run.target_uncertainty" in w], res.warnings
    record = json.loads((out / "check.json").read_text(encoding="utf-8"))
    assert said[0] in record["warnings"]
    assert said[0] in res.summary()


def test_the_suggested_target_is_rounded_to_type():
    """Statistics audit 2026-12-06, F4: a check at 1 % that reached 0.998 % said "rerun with --target-uncertainty
    0.00499062 (0.499062 %)", a command a physicist copies: the target is given with two significant digits (an
    exact one with three, 0.125 %, as it is)."""
    from mcproton._check.api import noise_remedy

    text = noise_remedy(_mc(0.00998124, ["target_uncertainty", "target_uncertainty"], 555_000), 0.01, 2_000_000, None)
    assert text.startswith("rerun with --target-uncertainty 0.005 (0.5 %) and --primaries raised to about "), text

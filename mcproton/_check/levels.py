"""Action levels of ``mcproton check`` (pass/fail), their defaults and where each comes from.

A TOML file can change any of them (``--config check.toml``, section ``[levels]``); ``mcproton check
--print-levels`` prints the defaults as such a file (:func:`defaults_toml`; examples/check.toml is a copy).
The frame is AAPM TG-219 (Zhu et al. 2021, Med Phys 48(10) e808-e829: independent dose calculations as the
secondary check of every plan); the numbers are those of common practice, each with its source below.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

#: The frame of the action levels (shown in the report).
FRAME = ("Frame: AAPM TG-219 (Zhu et al. 2021, Med Phys 48(10) e808-e829), independent dose calculation as "
         "the secondary check of every plan; the numbers follow AAPM TG-218 (gamma 3 %/2 mm) and common "
         "clinical MC-check practice (2 %/2 mm >= 95 % in the body, target D95 within 3 %).")

SOURCES = {
    "gamma_3_2_min": "AAPM TG-218 (Miften et al. 2018, Med Phys 45(4) e53-e83): 3 %/2 mm global, 10 % "
                     "threshold, tolerance limit >= 95 %",
    "gamma_2_2_min": "common clinical MC-check practice: 2 %/2 mm global >= 95 % in the body",
    "target_d95_pct": "common clinical MC-check practice: target D95 within 3 %",
    "target_dmean_pct": "as the target D95 (3 %)",
    "range_median_mm": "a systematic range difference of 1 mm is a third of the 3.5 % + 1 mm range margin at "
                       "6 cm (Paganetti 2012, PMB 57 R99)",
    "range_within_2mm_min": "most beam's-eye-view rays within 2 mm (the penumbra gives a few outliers); of the "
                            "rays that the MC's noise alone leaves within 2 mm (the TPS against itself with the "
                            "MC's noise: at 2.4 % only ~71 % on a shallow per-beam fall-off, APTG plan03)",
    "beam_gamma_2_2_min": "per-beam doses: 2 %/2 mm global >= 95 % as for the plan; also each separate field's "
                          "region of a plan dose without per-beam doses (a 5 mm shift of one of four CSI fields "
                          "passed every plan-level row)",
    "beam_dose_ratio_pct": "per-beam doses: the beam's MC/TPS dose (median voxel ratio over its high-dose region) "
                           "within 3 %, as the target Dmean: one beam's MU or output error is diluted in the "
                           "plan-level rows (a 5 % error on one of four CSI fields passed them all)",
    "mc_uncertainty_max_pct": "the MC's own statistical uncertainty must stay well below the dose criteria "
                              "(2 % = twice the default 1 % target)",
}


#: What each level is, in the words of a comment in the defaults' TOML file (:func:`defaults_toml`), in its order
MEANINGS = {
    "gamma_3_2_min": "% of points, 3 %/2 mm global, body, 10 % threshold (AAPM TG-218)",
    "gamma_2_2_min": "% of points, 2 %/2 mm global (common MC-check practice)",
    "beam_gamma_2_2_min": "per-beam TPS doses, 2 %/2 mm; and each separate field's region of a plan dose",
    "beam_dose_ratio_pct": "per-beam TPS doses: |MC/TPS - 1| of the beam's dose (median over its >= 50 % region)",
    "target_d95_pct": "|MC - TPS| / TPS of each target's D95: raw, noise-matched and MC-corrected, all three",
    "target_dmean_pct": "... and Dmean",
    "range_median_mm": "|median distal R80 difference| per beam, noise-matched",
    "range_within_2mm_min": "% of the share of beam's-eye-view rays that the MC's noise alone leaves within 2 mm",
    "mc_uncertainty_max_pct": "the MC's own mean uncertainty above 50 % of the maximum",
}

#: How the command line and check.json name the default levels: what an installed user has to see them
DEFAULTS_SOURCE = "the defaults (built in; mcproton check --print-levels prints them as a --config file)"


#: The levels that are a percentage of points or rays passing (95 = 95 %), not a fraction
PERCENT_OF_POINTS = ("gamma_3_2_min", "gamma_2_2_min", "range_within_2mm_min", "beam_gamma_2_2_min")
#: The dose levels in percent (3 = 3 %) refused in (0, 1) as a fraction (0.03 for 3 %: every such row would FAIL,
#: sending the reader after a dose error; the units audit of 2026-12-07, F3): a level below 1 % is below what two
#: independent dose calculations agree to (the defaults, common MC-check practice, are 3 %), so no value there is
#: meant.  0 stays what it was: an exact match asked for.
PERCENT_DOSE_LEVELS = ("target_d95_pct", "target_dmean_pct", "beam_dose_ratio_pct")
#: The levels in percent warned about in (0, 1) as a possible fraction, but kept: an MC statistical uncertainty of
#: 0.5 % is a strict level that a check run to --target-uncertainty 0.005 may mean.
PERCENT_WARNED_LEVELS = ("mc_uncertainty_max_pct",)


def _fraction_hint(v: float) -> str:
    """What to give for a level in percent given as a fraction ``v`` (0 < v <= 1): "give 95 for 95 % (0.95 looks like
    a fraction)"."""
    return f"give {100 * v:g} for {100 * v:g} % ({v:g} looks like a fraction)"


@dataclass
class ActionLevels:
    gamma_3_2_min: float = 95.0          # % of points passing
    gamma_2_2_min: float = 95.0
    target_d95_pct: float = 3.0          # |MC - TPS| / TPS
    target_dmean_pct: float = 3.0
    range_median_mm: float = 1.0         # |median distal R80 difference| per beam
    range_within_2mm_min: float = 90.0   # % of rays
    beam_gamma_2_2_min: float = 95.0
    beam_dose_ratio_pct: float = 3.0     # |MC/TPS - 1| of each beam's dose with a per-beam TPS dose, %
    mc_uncertainty_max_pct: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"action level {f.name} = {v!r} must be a non-negative number")
            if f.name in PERCENT_OF_POINTS and not (v == 0 or 1.0 < v <= 100.0):   # 0: the level off
                # a fraction (0.95, as pymedphys and check.json's gamma pass_rate give it) would let a 52 % gamma
                # pass a ">= 0.95 %" level
                raise ValueError(f"action level {f.name} = {v!r} is a percentage of points, in (1, 100] (0 switches "
                                 f"it off): {_fraction_hint(v) if 0 < v <= 1 else 'give 95 for 95 %'}")
            if f.name in PERCENT_DOSE_LEVELS and 0 < v < 1:
                raise ValueError(f"action level {f.name} = {v!r} is in percent, and a level below 1 % is below what "
                                 "two independent dose calculations agree to (the default is 3 %): "
                                 f"{_fraction_hint(v)}")
            if f.name in PERCENT_WARNED_LEVELS and 0 < v < 1:
                from .._io.errors import McprotonWarning, warn

                warn(f"action level {f.name} = {v!r} is in percent: the check FAILs an MC whose statistical "
                     f"uncertainty is above {v:g} %, which needs a --target-uncertainty of {v / 100:g} or less; if "
                     f"{100 * v:g} % was meant, {_fraction_hint(v)}", McprotonWarning)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> ActionLevels:
        data: dict[str, Any] = {}
        if path is not None:
            from ..config import read_toml_file

            p = Path(path)
            doc = read_toml_file(p, f"check config {p} not found; give a TOML file with a [levels] table "
                                    "(mcproton check --print-levels prints one with the defaults)")
            data = dict(doc.get("levels", {}))
            extra = set(doc) - {"levels"}
            if extra:
                raise ValueError(f"{p}: unknown section(s) {sorted(extra)}; the check config has one table "
                                 "[levels]")
        data.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in fields(cls)}
        bad = set(data) - names
        if bad:
            import difflib

            hint = difflib.get_close_matches(min(bad), names, n=1)
            raise ValueError(f"unknown action level(s) {sorted(bad)}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; known: {', '.join(sorted(names))}")
        for k, v in data.items():   # checked as given (a bool or text is not made a number first)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"action level {k} = {v!r} must be a non-negative number")
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}" if path is not None else str(exc)) from None

    def describe(self) -> dict[str, dict]:
        return {k: {"value": v, "source": SOURCES[k]} for k, v in asdict(self).items()}


def defaults_toml() -> str:
    """The default action levels as a ``--config`` file (``mcproton check --print-levels``; examples/check.toml
    is this text): a [levels] table, each level with what it is; an installed mcproton has no examples/ folder
    (audit 21 F6)."""
    return _levels_toml(ActionLevels(), [
        "# The default action levels of `mcproton check` (`mcproton check --print-levels` prints this file):",
        "# edit a copy and give it with --config FILE; a level left out keeps its default.  The source of",
        "# each: the report's last table and check.json's \"levels\"."])


def config_levels_toml(path: str | Path) -> str:
    """The action levels that ``--config path`` gives (its [levels] over the defaults, read and refused as the
    check reads them) as a ``--config`` file: ``mcproton check --print-levels --config FILE``.  A level other than
    its default says the default beside it (realcheck audit F5: the defaults were printed, the config not read)."""
    levels = ActionLevels.load(path)
    defaults = asdict(ActionLevels())
    return _levels_toml(levels, [
        f"# The action levels of `mcproton check --config {path}`: its [levels] over the defaults",
        "# (`mcproton check --print-levels --config FILE` prints this file); a level other than its default",
        "# says the default at the end of its line.  The source of each: the report's last table and",
        "# check.json's \"levels\"."],
        {k: f" (default {defaults[k]!r})" for k, v in asdict(levels).items() if v != defaults[k]})


def _levels_toml(levels: ActionLevels, header: list[str], after: dict[str, str] | None = None) -> str:
    """``levels`` as a --config file: ``header``, then a [levels] table, each level with what it is (and
    ``after[name]`` at the end of its line)."""
    values = asdict(levels)
    assert set(MEANINGS) == set(values), "levels.MEANINGS names every action level"
    width = max(len(f"{k} = {v!r}") for k, v in values.items()) + 2
    lines = [*header, "[levels]"]
    lines += [f"{f'{k} = {values[k]!r}':<{width}}# {m}{(after or {}).get(k, '')}" for k, m in MEANINGS.items()]
    return "\n".join(lines) + "\n"

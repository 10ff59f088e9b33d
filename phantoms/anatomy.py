"""Age-dependent anatomical parameters of the procedural paediatric phantoms.

The numbers live in ``data/head_anatomy_by_age.csv`` (each row names its source and how far it was
verified).  ``anatomy_parameters(age, sex)`` interpolates every quantity linearly in age.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
MIN_AGE_Y = 0.5
MAX_AGE_Y = 18.0
SEXES = ("male", "female")


@lru_cache(maxsize=None)
def _table() -> dict[tuple[str, str], list[tuple[float, float, str, str]]]:
    out: dict[tuple[str, str], list[tuple[float, float, str, str]]] = {}
    with open(DATA_DIR / "head_anatomy_by_age.csv", newline="", encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        for r in rows:
            key = (r["quantity"], r["sex"])
            out.setdefault(key, []).append((float(r["age_years"]), float(r["value"]), r["source"], r["status"]))
    for v in out.values():
        v.sort()
    return out


@lru_cache(maxsize=None)
def sources() -> dict[str, str]:
    """Source key -> full citation (from the CSV header)."""
    out = {}
    with open(DATA_DIR / "head_anatomy_by_age.csv", encoding="utf-8") as f:
        for line in f:
            if line.startswith("# source "):
                k, v = line[len("# source "):].split(":", 1)
                out[k.strip()] = v.strip()
    return out


def check_age(age_years: float) -> float:
    a = float(age_years)
    if not np.isfinite(a) or a < MIN_AGE_Y or a > MAX_AGE_Y:
        raise ValueError(f"age_years must be within {MIN_AGE_Y}..{MAX_AGE_Y} y (paediatric range of the published "
                         f"tables); got {age_years}")
    return a


def _sex_code(sex: str) -> str:
    s = str(sex).lower()
    if s in ("m", "male", "boy", "boys"):
        return "M"
    if s in ("f", "female", "girl", "girls"):
        return "F"
    raise ValueError(f"sex must be 'male' or 'female'; got {sex!r}")


def _points(quantity: str, sex: str) -> list[tuple[float, float, str, str]]:
    t = _table()
    code = _sex_code(sex)
    pts = {a: (a, v, s, st) for a, v, s, st in t.get((quantity, "all"), [])}
    pts.update({a: (a, v, s, st) for a, v, s, st in t.get((quantity, code), [])})
    if not pts:
        raise KeyError(f"no anatomy data for {quantity!r}")
    return [pts[a] for a in sorted(pts)]


def quantities() -> list[str]:
    return sorted({q for q, _ in _table()})


def published_value(quantity: str, age_years: float, sex: str = "male") -> float:
    """The tabulated value of ``quantity`` at ``age_years`` (linear interpolation between table ages)."""
    a = check_age(age_years)
    pts = _points(quantity, sex)
    return float(np.interp(a, [p[0] for p in pts], [p[1] for p in pts]))


def published_source(quantity: str, age_years: float, sex: str = "male") -> tuple[str, str]:
    """(source key, status) of the table row nearest in age to ``age_years``."""
    pts = _points(quantity, sex)
    p = min(pts, key=lambda p: abs(p[0] - float(age_years)))
    return p[2], p[3]


def anatomy_parameters(age_years: float, sex: str = "male") -> dict[str, float]:
    """Every tabulated quantity at this age (units as in the CSV: cm, mm, g, kg, mL, fractions)."""
    check_age(age_years)
    return {q: published_value(q, age_years, sex) for q in quantities()}


def brain_volume_from_hc_ml(hc_cm: float) -> float:
    """Brain volume (mL) from head circumference, Jorgensen et al. (Danish series) as reproduced on
    medicalalgorithms.com (see /work/shared/reference/anatomy/head_anatomy_age_sources.csv; secondary source):
    V = 42.41*HC - 998.4 for HC 24-45 cm, V = 36*HC - 700 for HC 45-70 cm.  Used only as a second comparison."""
    return 42.41 * hc_cm - 998.4 if hc_cm < 45.0 else 36.0 * hc_cm - 700.0

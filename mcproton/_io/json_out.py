"""JSON as mcproton writes it (the run's summary, ``--check-config``, ``check.json`` and ``check --json``,
``batch.json``, the demo's and ``validate``'s ``summary.json``, ``commission.json``, ``bench --json``,
``info --json``): strict JSON that any parser reads."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite number (NaN, infinity: a figure of a run stopped after its first batch, of a
    dose that is zero in the body) as None, NumPy numbers as plain ones, dict keys as text, and the arrays held in
    dicts left out (a result's grids are not JSON): NaN is not JSON, and a strict parser (jq, JavaScript, Python's
    json with parse_constant) refuses the whole document."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items() if not isinstance(v, np.ndarray)}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (:func:`json_safe`; ``allow_nan=False`` makes sure)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)

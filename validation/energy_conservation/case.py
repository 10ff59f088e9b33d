"""The ``energy_conservation`` validation case: energy conservation.

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

import numpy as np

from ..core import CaseResult, Context, Metric


def case_energy_conservation(ctx: Context) -> CaseResult:
    from ...geometry import slab_phantom
    from ...source import Beam

    cr = CaseResult("energy_conservation", "Energy conservation: ledger of every run (imbalance < 0.1 %)",
                    "conservation law")
    geo = slab_phantom([("water", 20.0), ("bone_compact_icru", 10.0), ("lung", 30.0, 0.26), ("water", 100.0)],
                       (60.0, 60.0), (2.0, 2.0, 2.0), name="water/bone/lung/water, 60 mm wide")
    beam = Beam.pencil(180.0, position_mm=(5.0, 0, -1.0), direction=(0.05, 0, 1), energy_spread_mev=0.5,
                       sigma_mm=(4, 4))
    ctx.simulate(geo, beam, ctx.pick(20_000, 100_000), "180 MeV oblique, slabs, lateral and distal escape",
                 cr.name, seed_offset=500, shoots_through=True)   # about half its energy leaves the slabs, as meant
    for rec in ctx.runs:
        led = rec.get("ledger") or {}

        def term(k):   # the engine names the terms "incident", ...; the API contract "incident_mev", ...
            return float(led.get(k, led.get(f"{k}_mev", 0.0)))
        inc = term("incident") or float("nan")
        parts = sum(term(k) for k in ("deposited", "escaped", "neutral", "missed", "shifter"))
        own = (inc - parts) / inc
        eng = float(led.get("imbalance_rel", own))
        cr.metrics.append(Metric(f"|imbalance| {rec['case']}: {rec['label']}", abs(eng), None, 1e-3, "",
                                 "max",
                                 "recomputed (incident - deposited - escaped - neutral - missed - "
                                 f"shifter)/incident = {own:.2e}"))
        if np.isfinite(own) and abs(own - eng) > 1e-6:
            cr.metrics.append(Metric(f"ledger self-consistency {rec['case']}: {rec['label']}", abs(own - eng),
                                     None,
                                     1e-6, "", "max",
                                     "engine imbalance_rel vs recomputed from the ledger terms"))
        cr.tables.setdefault("ledgers", []).append({"case": rec["case"], "run": rec["label"], **led})
    return cr

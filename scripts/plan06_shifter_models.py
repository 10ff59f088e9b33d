"""APTG plan06 (3 cm Lexan range shifter) with the shifter transported as a slab (the default) and as an energy
loss only (``plan.range_shifter_model = "energy_only"``): the figures README.md and docs/check.md quote for what
the shifter's transport changes (MC/TPS integral, gammas, distal dR80 against RayStation's dose).

    python examples/aptg_plan06_struct.py APTG_REPO OUT_FOLDER [DENSITY]      # the phantom's structure set
    python scripts/plan06_shifter_models.py OUT_FOLDER [PRIMARIES]

Each model is one ``mcproton.check`` of the plan, dose and structure set in OUT_FOLDER
(``--phantom-from-struct``, beam model dcpt_v5, CPU, seed 12345, PRIMARIES protons, default 1.5 x 10^6, no
uncertainty target), written to OUT_FOLDER/check_rs_<model>.  ``mcproton check`` has no option for the
energy-only model (a check computes the plan as delivered), so this script gives it to the check's
``plan_to_beams`` for that run; its check.json still records the default model.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from unittest import mock

import mcproton
from mcproton._io import rtplan


def _one(folder: Path, pattern: str) -> Path:
    """The one file of ``pattern`` in ``folder`` itself (not the checks' output folders below it)."""
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"{folder}: {len(found)} files {pattern} (need one, as examples/aptg_plan06_struct.py "
                         "writes them)")
    return found[0]


def run(folder: Path, model: str, primaries: int) -> dict:
    orig = rtplan.plan_to_beams
    with mock.patch.object(rtplan, "plan_to_beams", functools.partial(orig, range_shifter_model=model)):
        res = mcproton.check(plan=_one(folder, "RP*.dcm"), dose=_one(folder, "RD*.dcm"),
                             struct=_one(folder, "RS_*.dcm"), phantom_from_struct=True, beam_model="dcpt_v5",
                             primaries=primaries, target_uncertainty=None, backend="cpu",
                             out=folder / f"check_rs_{model}", report=False, progress=False)
    g = {k: 100 * v["pass_rate"] for k, v in res.gamma.items()}
    r = res.ranges[1]
    dd = res.dose_difference
    return {"gamma": g, "integral": dd["integral_ratio_mc_tps"], "median": dd["percentiles_pct"]["p50"],
            "p5": dd["percentiles_pct"]["p5"], "p95": dd["percentiles_pct"]["p95"], "r80": r["median_mm"],
            "r80_5": r["p5_mm"], "r80_95": r["p95_mm"], "within2": 100 * r["within_2mm"], "rays": r["rays"],
            "unc": res.provenance.get("mc_uncertainty_pct", float("nan"))}


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__)
        return 2
    folder = Path(argv[0])
    primaries = int(float(argv[1])) if len(argv) == 2 else 1_500_000
    rows = {m: run(folder, m, primaries) for m in ("energy_only", "transport")}
    print(f"plan06, {primaries} primaries, seed 12345, CPU; columns: energy_only | transport")
    crit = ("3%/2mm", "2%/2mm", "1%/1mm", "2%/2mm local")
    for m, r in rows.items():
        gam = ", ".join(f"{r['gamma'][c]:.1f}" for c in crit)
        print(f"{m}: gamma {gam} % pass; dose difference median "
              f"{r['median']:+.1f}, 5-95 % {r['p5']:+.1f}..{r['p95']:+.1f} (% of the normalisation); MC/TPS "
              f"integral {r['integral']:.3f}; distal dR80 ({r['rays']} rays) median {r['r80']:+.2f} mm "
              f"({r['r80_5']:+.2f}..{r['r80_95']:+.2f}), {r['within2']:.0f} % within 2 mm")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Why each tolerance is what it is, and how much each quick-mode metric scatters from seed to seed.

* :func:`tolerance_basis` gives, per metric, the source or reason of its tolerance (condensed from the case's
  README, validation/<case>/README.md, and validation/README.md "Why these tolerances").
* :func:`quick_spread` gives the measured seed-to-seed standard deviation of a quick-mode metric (1 sd of its value,
  a statistical uncertainty: not a tolerance) from ``quick_spread.csv`` in this folder, written by
  ``python -m mcproton.validation.tolerances RUN_DIR... --out validation/quick_spread.csv`` from
  ``mcproton validate --quick`` runs with different ``--seed``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPREAD_FILE = HERE / "quick_spread.csv"

_STATS = ("statistics: the quick-mode sd of the value is in the 'statistical sd' column (measured over seeds)")

#: (case, regular expression matched against the metric's name, source/reason of the tolerance)
BASIS: list[tuple[str, str, str]] = [
    ("stopping_power", r"S_el", "reference uncertainty: ICRU 49/90 quote 1-2 % for stopping powers of compounds at "
     "therapy energies (stopping_power/README.md); a wrong I-value by 10 % moves S_el by ~1.5 %"),
    ("stopping_power", r"R_csda", "reference uncertainty: as for S_el, integrated into the CSDA range"),
    ("ranges_water", r"R80 - CSDA", "physics: R80 of a near-monoenergetic beam = CSDA x detour factor + ~0.6 "
     "straggling sigma - nuclear shift, within 0.4 % of CSDA (TOPAS: -0.35 % to -0.02 %); 0.2 mm floor for the bin "
     "interpolation (ranges_water/README.md)"),
    ("ranges_water", r"vs TOPAS", "code-to-code: 0.5 mm covers the linear energy interpolation of the TOPAS metrics "
     "and the Geant4 vs engine straggling at R90/R20 (ranges_water/README.md)"),
    ("topas_idd", r"^R80", "code-to-code: 0.3 mm, the engine's design target (issue 3) against TOPAS"),
    ("topas_idd", r"fall-off", "code-to-code: 0.25 mm, the engine's design target (range straggling and energy "
     "spread)"),
    ("topas_idd", r"peak/entrance", "code-to-code: 5 % covers nuclear models and bin averaging"),
    ("topas_idd", r"entrance IDD", "code-to-code: stopping power at E0 (1 %) plus nuclear secondaries near the "
     "surface"),
    ("topas_idd", r"gamma", "code-to-code: 1 %/1 mm (global) with >= 95 % passing is the usual MC-to-MC criterion"),
    ("catana_62mev", r"range shift", "fit consistency: the fitted E0 against the engine's range (R0 vs R80 ~0.1 mm, "
     "table interpolation)"),
    ("catana_62mev", r"W80", "measurement: ~25 % of the 1.14 mm measured width (chamber volume averaging, 0.3 mm "
     "measurement step)"),
    ("catana_62mev", r"R20-R80", "measurement: ~25 % of the 0.54 mm fall-off; tests the engine's straggling against "
     "Bortfeld's"),
    ("catana_62mev", r"R10-R90", "measurement: as R20-R80, wider levels"),
    ("catana_62mev", r"peak/plateau", "measurement: chamber perturbation and the tail-correction model"),
    ("catana_62mev", r"gamma", "measurement: 2 %/1 mm, the usual criterion for measured relative depth doses; 2 % "
     "~ 4 x the point-to-point scatter of the measurement"),
    ("heterogeneity_slabs", r"range shift", "clinical range budget: 0.5 mm for a heterogeneity of this size; the "
     "PSTAR WET itself is good to ~0.5 % of the WET (< 0.1 mm)"),
    ("lateral_spread", r"Fermi-Eyges", "theory: Fermi-Eyges with differential Moliere agrees with Moliere theory "
     "and measurement within ~2 % (Gottschalk 2010); Gaussian core fit and 1 mm bins ~2 %"),
    ("lateral_spread", r"Highland", "theory: Highland's formula is accurate to about +-5 % (Gottschalk 1993), plus "
     "the fit's ~2 %"),
    ("range_shifter", r"without shifter", "set-up: no divergence and no scattering in the scoring layer; Gaussian "
     "fit"),
    ("range_shifter", r"sigma at iso", "theory: the generalised Highland formula is good to about +-3-5 % "
     "(Gottschalk 1993); Gaussian core fit of a profile with a single- and nuclear-scattering tail ~2 %"),
    ("range_shifter", r"range shift", "stopping powers: the engine agrees with PSTAR within 0.15 % for these "
     "materials (40 mm WET: 0.06 mm); R80 read in 1 mm bins"),
    ("step_convergence", r"R80", "numerical: a 0.1 % energy-loss bias of the long steps moves R80 by 0.16 mm"),
    ("step_convergence", r"fall-off", "numerical: an error of the straggling of the long steps"),
    ("step_convergence", r"peak/entrance", "numerical: an error of the energy loss or straggling of the long steps"),
    ("step_convergence", r"plateau", "numerical: an energy-loss or sharing error of the long steps"),
    ("dcpt_plan02", r"^R80", "code-to-code: the four codes agree within 0.4 mm (TOPAS left out: its solid water was "
     "1.039 g/cm3)"),
    ("dcpt_plan02", r"fall-off", "code-to-code: 0.25 mm, the engine's design target in water"),
    ("dcpt_plan02", r"dose at 22.5", "code-to-code: dose per primary, independent of protons/MU (which cancels: the "
     "codes report dose per primary; absolute dose per MU is commissioned against measurement); the five codes spread "
     "3 %"),
    ("dcpt_plan02", r"peak/entrance", "code-to-code: the codes spread 4 % (3.93-4.10)"),
    ("dcpt_plan02", r"LETd", "code-to-code: the codes disagree by 10-40 % near the end of range; inside their range "
     "widened by 5 % (scored in --full only)"),
    ("tissue_spr", r"", "measurement: 2 x the stated 1 sd of the measured SPR; the I-value sets and ICRU 49 "
     "compounds are info"),
    ("backend_agreement", r"p-value", "statistics: alpha = 1e-3 is the false-positive rate for two correct backends"),
    ("backend_agreement", r"\|z\| > 3", "statistics: 0.27 % expected for Gaussian z; a localised disagreement"),
    ("backend_agreement", r"R80", "statistics: ~5 x the statistical uncertainty of R80 at these statistics"),
    ("energy_conservation", r"", "conservation law: the tallies are integer fixed-point sums; the legitimate "
     "imbalance (rounding) is orders of magnitude below 1e-3"),
]


def why_these_tolerances(readme: Path = HERE / "README.md") -> list[str]:
    """The bullets of the section "Why these tolerances" of validation/README.md (one string per bullet)."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("## Why these tolerances", 1)[1].split("\n## ", 1)[0]
    bullets = [b.strip() for b in re.split(r"^\* ", section, flags=re.M)[1:]]
    return [" ".join(b.split()) for b in bullets]


def tolerance_basis(case: str, metric: str) -> str:
    """The source/reason of the tolerance of ``metric`` of ``case`` ('' if none is listed)."""
    for c, pattern, reason in BASIS:
        if c == case and re.search(pattern, metric):
            return reason
    return ""


#: a header line of the spread file, "# seeds per case: ..." (written by :func:`main`); its prose lines ("# For
#: comparison abs/rel ... (rel: a fraction)") are none: read as one, they gave summary.json's quick_spread a key of
#: half a sentence (the integrator audit of 2026-12-06, F13)
_HEADER_LINE = re.compile(r"#\s*([a-z][a-z0-9_]*(?: [a-z0-9_]+)*):(.*)")


@lru_cache(maxsize=4)
def _read_spread(path: str) -> tuple[dict[tuple[str, str], dict], dict[str, str]]:
    rows: dict[tuple[str, str], dict] = {}
    header: dict[str, str] = {}
    p = Path(path)
    if not p.is_file():
        return rows, header
    lines = p.read_text(encoding="utf-8").splitlines()
    for line in lines:   # "# key: value", a key of lower-case words: the file's prose lines hold ':' too
        m = _HEADER_LINE.fullmatch(line.strip())
        if m:
            header[m.group(1)] = m.group(2).strip()
    for r in csv.DictReader([ln for ln in lines if not ln.startswith("#")]):
        rows[(r["case"], r["metric"])] = {"n": int(r["n_seeds"]), "mean": float(r["mean_value"]),
                                          "sd": float(r["sd_value"]), "min": float(r["min_value"]),
                                          "max": float(r["max_value"]), "primaries": r.get("primaries", "")}
    return rows, header


def quick_spread(case: str, metric: str, path: Path | str = SPREAD_FILE) -> dict | None:
    """The measured quick-mode seed-to-seed spread of a metric's value (keys n, mean, sd, min, max), or None."""
    return _read_spread(str(path))[0].get((case, metric))


def sd_text(case: str, metric: str, comparison: str, mode: str) -> str:
    """The statistical uncertainty of a metric's value as the report shows it: the measured quick-mode seed-to-seed
    sd (quick_spread.csv; rel metrics in %, of the reference); in --full mode "<= " that (--full runs at least the
    quick mode's primaries per case); "0 (deterministic)" where the seeds gave identical values; "not measured"
    where the metric is not in the file (e.g. the energies only --full runs)."""
    sp = quick_spread(case, metric)
    if sp is None or not math.isfinite(sp["sd"]):
        return "not measured"
    if sp["sd"] == 0.0:
        return "0 (deterministic)"
    v = f"{sp['sd'] * 100:.2g} %" if comparison == "rel" else f"{sp['sd']:.2g}"
    return ("<= " + v if mode == "full" else v) + f" (n = {sp['n']})"


def spread_header(path: Path | str = SPREAD_FILE) -> dict[str, str]:
    """The ``# key: value`` lines of the spread file (seeds, kernel, command)."""
    return _read_spread(str(path))[1]


#: the committed full report, whose kernel the new run is compared with
REPORT_FILE = HERE / "REPORT.md"


def report_kernel(path: Path | str = REPORT_FILE) -> str:
    """The kernel hash named in the committed validation/REPORT.md ("- version ..., kernel `HASH`"), or ""."""
    import re

    try:
        m = re.search(r"kernel `([0-9a-f]+)`", Path(path).read_text(encoding="utf-8"))
    except OSError:
        return ""
    return m.group(1) if m else ""


def kernel_warnings(engine_kernel: str, spread_kernel: str, committed_kernel: str) -> list[str]:
    """Warnings where the transport kernel that ran differs from the kernel that measured quick_spread.csv or
    produced the committed REPORT.md (validation audit 2026-12-06, F7): the seed-to-seed sd column and the
    printed reference values then belong to another kernel.  Hashes are compared on their common prefix (the
    files keep 16 hex digits); an unknown hash gives no warning."""
    eng = str(engine_kernel or "")
    out = []
    for what, k in (("validation/quick_spread.csv (the 'statistical sd' column)", spread_kernel),
                    ("the committed validation/REPORT.md", committed_kernel)):
        ks = [x.strip() for x in str(k or "").split(",") if x.strip()]
        if not eng or not ks or eng.startswith("fake"):
            continue
        if not any(eng[:len(x)] == x[:len(eng)] for x in ks):
            out.append(f"kernel mismatch: this run's transport kernel is {eng[:16]}, but {what} was made with "
                       f"kernel {', '.join(x[:16] for x in ks)}; its numbers may differ from this run's: "
                       "regenerate it with this kernel before relying on it")
    return out


def false_fail_probability(comparison: str, tolerance: float | None, mean_diff: float, sd: float,
                           n: int | None = None) -> float:
    """Probability that a correct engine fails the metric by chance: for a Gaussian value with the measured mean
    difference (or mean value for "min"/"max") and sd taken as exact (``n`` None); with ``n``, the number of runs
    that mean and sd were measured from, for one more run's value as they predict it: the Student t of n - 1 degrees
    of freedom scaled by sd x sqrt(1 + 1/n) (the posterior predictive of a normal sample with the usual
    non-informative prior; e.g. Gelman et al., Bayesian Data Analysis, 3rd ed., section 3.2).  With 9 seeds and a
    mean 2.8 sd inside the tolerance that is 1.5e-2 against the Gaussian's 2.6e-3: a sd measured from 9 runs is
    itself uncertain by about 25 % (hygiene audit 31, F1)."""
    if tolerance is None or comparison == "info" or not (sd > 0):
        return 0.0
    if n is not None and n >= 2:
        from scipy import stats

        scale = sd * math.sqrt(1.0 + 1.0 / n)
        cdf = lambda x: float(stats.t.cdf(x, n - 1))  # noqa: E731 - Student t CDF, n - 1 degrees of freedom
    else:
        scale = sd
        cdf = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731 - standard normal CDF
    if comparison == "min":
        return cdf((tolerance - mean_diff) / scale)
    if comparison == "max":
        return 1.0 - cdf((tolerance - mean_diff) / scale)
    return cdf((-tolerance - mean_diff) / scale) + 1.0 - cdf((tolerance - mean_diff) / scale)


def _deciding(metric: str) -> str | None:
    """The name of the info metric holding the deciding gamma of a gamma pass-rate metric, else None."""
    new = re.sub(r"gamma \S+ pass rate", "gamma of the deciding point", metric)
    return new if new != metric else None


def margins(rows: list[dict]) -> list[dict]:
    """Per scored, stochastic metric of the spread rows: the distance of its mean from the tolerance in sd
    (``margin_sd``) and the probability that a correct engine fails it by chance (``p_fail``, Gaussian with the
    measured sd; ``p_fail_predictive``, allowing for that sd being measured from ``n_seeds`` runs only:
    :func:`false_fail_probability`).  A gamma
    pass rate moves in steps of one point: it is judged by its deciding gamma (metrics.deciding_gamma, <= 1 to pass)
    where that was measured."""
    by = {(r["case"], r["metric"]): r for r in rows}
    out = []
    for r in rows:
        tol = r["tolerance"]
        if r["comparison"] == "info" or tol in (None, "") or not float(r["sd_value"]) > 0:
            continue
        comp, tol, mean, sd = r["comparison"], float(tol), float(r["mean_value"]), float(r["sd_value"])
        n = int(r["n_seeds"]) if r.get("n_seeds") not in (None, "") else None
        dec = by.get((r["case"], _deciding(r["metric"]) or ""))
        judged = r["metric"]
        if comp == "min" and dec is not None and float(dec["sd_value"]) > 0:
            comp, tol, mean, sd, judged = "max", 1.0, float(dec["mean_value"]), float(dec["sd_value"]), dec["metric"]
            n = int(dec["n_seeds"]) if dec.get("n_seeds") not in (None, "") else None
        margin = (mean - tol) if comp == "min" else (tol - mean) if comp == "max" else tol - abs(mean)
        out.append({"case": r["case"], "metric": r["metric"], "judged_by": judged, "mean": mean, "sd": sd,
                    "tolerance": tol, "margin_sd": margin / sd, "p_fail": false_fail_probability(comp, tol, mean, sd),
                    "p_fail_predictive": false_fail_probability(comp, tol, mean, sd, n)})
    return out


def measure_spread(run_dirs: list[Path]) -> tuple[list[dict], dict[str, str]]:
    """Per (case, metric) the mean and sd over the runs' summary.json (same mode, different seeds).  For a
    comparison "abs"/"rel" the spread is that of the difference (rel: a fraction); else of the value.

    A case's spread is measured from the runs of its current budget only: where the runs of a case differ in their
    primaries (some were made before the case's budget changed), the primaries of its newest run are kept and the
    other runs of that case are left out (named in the header).  Runs of a subset of the cases (--cases) can so
    add seeds to the cases whose budget changed.  A seed is counted once per case."""
    summaries = []
    for d in run_dirs:
        s = json.loads((Path(d) / "summary.json").read_text(encoding="utf-8"))
        summaries.append((Path(d), s))
    modes = {s.get("mode") for _, s in summaries}
    if len(modes) != 1:
        raise ValueError(f"the runs mix modes {sorted(map(str, modes))}")
    per_case: dict[str, list[tuple[tuple, tuple, int, dict, Path]]] = {}
    for d, s in summaries:
        for c in s["cases"]:
            if c.get("status") not in ("passed", "failed"):
                continue
            budget = tuple(int(r.get("primaries") or 0) for r in c.get("runs", []))
            when = (str(s.get("generated", "")), (d / "summary.json").stat().st_mtime_ns)   # newest run last
            per_case.setdefault(c["name"], []).append((when, budget, s.get("seed"), c, d))
    values: dict[tuple[str, str], list[float]] = {}
    meta: dict[tuple[str, str], dict] = {}
    prims: dict[tuple[str, str], int] = {}
    seeds: dict[str, list[str]] = {}
    left_out = []
    for case, entries in per_case.items():
        newest = max(entries, key=lambda e: e[0])[1]
        old = [e for e in entries if e[1] != newest]
        if old:
            budgets = "/".join(str(sum(b)) for b in sorted({e[1] for e in old}))
            left_out.append(f"{case}: {len(old)} runs with {budgets} primaries (now {sum(newest)})")
        by_seed: dict[str, tuple] = {}   # one run per seed (the same seed and budget again: the same run)
        for e in sorted((e for e in entries if e[1] == newest), key=lambda e: e[0]):
            by_seed[str(e[2])] = e
        kept = list(by_seed.values())
        seeds[case] = list(by_seed)
        for _, budget, _, c, _ in kept:
            for m in c.get("metrics", []):
                key = (case, m["name"])
                v = m["difference"] if m["comparison"] in ("abs", "rel") else m["value"]
                if v is None:
                    continue
                values.setdefault(key, []).append(float(v))
                meta[key] = m
                prims[key] = sum(budget)
    rows = []
    for key, vs in values.items():
        m = meta[key]
        n = len(vs)
        mean = sum(vs) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in vs) / (n - 1)) if n > 1 else float("nan")
        rows.append({"case": key[0], "metric": key[1], "comparison": m["comparison"],
                     "tolerance": m["tolerance"], "primaries": prims[key], "n_seeds": n,
                     "mean_value": mean, "sd_value": sd, "min_value": min(vs), "max_value": max(vs)})
    kernels = sorted({str((s.get("engine") or {}).get("kernel_hash", ""))[:16] for _, s in summaries})
    all_seeds = sorted({x for v in seeds.values() for x in v}, key=lambda x: (len(x), x))
    header = {"seeds": " ".join(all_seeds), "mode": str(modes.pop()), "kernel": ", ".join(kernels)}
    odd = {c: v for c, v in seeds.items() if sorted(v) != sorted(all_seeds)}
    if odd:
        header["seeds per case"] = "; ".join(f"{c}: {' '.join(v)}" for c, v in sorted(odd.items()))
    if left_out:
        header["left out (older budget)"] = "; ".join(left_out)
    return rows, header


def write_spread(rows: list[dict], header: dict[str, str], out: Path) -> Path:
    cols = ["case", "metric", "comparison", "tolerance", "primaries", "n_seeds", "mean_value", "sd_value",
            "min_value", "max_value"]
    lines = ["# Seed-to-seed spread of the quick validation's metrics (mcproton validate --quick, one run per seed).",
             "# For comparison abs/rel the values are the differences from the reference (rel: a fraction), for",
             "# min/max/info the metric's value. Written by python -m mcproton.validation.tolerances.",
             *(f"# {k}: {v}" for k, v in header.items())]
    out = Path(out)
    with out.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(lines) + "\n")
        w = csv.DictWriter(fh, cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else ("" if r[k] is None else r[k]))
                        for k in cols})
    _read_spread.cache_clear()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="measure the quick validation's seed-to-seed spread per metric")
    ap.add_argument("run_dirs", nargs="+", type=Path, help="folders of mcproton validate --quick runs (one per seed)")
    ap.add_argument("--out", type=Path, default=SPREAD_FILE)
    a = ap.parse_args(argv)
    rows, header = measure_spread(a.run_dirs)
    print(write_spread(rows, header, a.out))
    ms = sorted(margins(rows), key=lambda m: m["margin_sd"])
    total = 1.0 - math.prod(1.0 - m["p_fail"] for m in ms)
    predictive = 1.0 - math.prod(1.0 - m["p_fail_predictive"] for m in ms)
    print(f"false-FAIL probability per run (Gaussian, measured mean and sd): {total:.2e}; allowing for the sds "
          f"measured from the seeds given (Student t predictive): {predictive:.2e}")
    for m in ms[:10]:
        print(f"  {m['margin_sd']:5.2f} sd  p {m['p_fail']:.1e} (predictive {m['p_fail_predictive']:.1e})  "
              f"{m['case']}: {m['judged_by']}  mean {m['mean']:+.4g} "
              f"sd {m['sd']:.3g} tolerance {m['tolerance']:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

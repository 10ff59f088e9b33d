"""``mcproton validate``: run the validation cases and write the commissioning report.

    mcproton validate [--quick | --full] [--backend auto|cpu|cuda] --out DIR [--cases NAME,...] [--seed N]
                      [--water-model icru90|pstar] [--list]

Writes DIR/report.html (self-contained), DIR/summary.json and DIR/*.png.  Exit status: 0 if every case passed
(or was skipped), 1 if any case failed or raised, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from .cases import CASE_NAMES, CASES
from .core import ERROR, CaseResult, Context
from .report import write_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcproton validate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="cases: " + ", ".join(CASE_NAMES))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                   help="few energies and ~1e6 protons in all (default; about 30 s on 2 CPU cores)")
    g.add_argument("--full", dest="mode", action="store_const", const="full",
                   help="all energies, sub-percent statistics")
    p.set_defaults(mode="quick")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default: the GPU if CuPy finds one, else the CPU), cpu or cuda")
    p.add_argument("--out", required=False,
                   help="output folder for report.html, summary.json and the figures (created; required)")
    p.add_argument("--cases", default="", help="comma-separated subset of the cases (default: all; see --list)")
    p.add_argument("--seed", type=int, default=20240611, help="random seed of the runs (default 20240611)")
    p.add_argument("--batches", type=int, default=10,
                   help="statistical batches per run, for the uncertainties (default 10)")
    p.add_argument("--water-model", default=None, choices=("icru90", "pstar"),
                   help="water stopping powers: icru90 (I = 78 eV, default) or pstar (I = 75 eV)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


def run_cases(ctx: Context, names: list[str]) -> list[CaseResult]:
    results = []
    for spec in CASES:
        if spec.name not in names:
            continue
        ctx.log(f"[{spec.name}] ...")
        n_runs = len(ctx.runs)
        t0 = time.perf_counter()
        try:
            cr = spec.func(ctx)
        except Exception as exc:
            cr = CaseResult(spec.name, spec.name, status=ERROR,
                            message=f"error: {type(exc).__name__}: {exc}")
            cr.notes.append(traceback.format_exc(limit=6))
        cr.wall_s = time.perf_counter() - t0
        cr.runs = [r for r in ctx.runs[n_runs:]]
        cr.finalize()
        ctx.log(f"[{spec.name}] {cr.status} ({cr.wall_s:.1f} s){': ' + cr.message if cr.message else ''}")
        results.append(cr)
    return results


def main(argv: list[str] | None = None, simulate_fn=None) -> int:
    p = build_parser()
    try:
        args = p.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    if args.list:
        here = Path(__file__).resolve().parent
        for spec in CASES:
            readme = here / spec.name / "README.md"
            first = readme.read_text().splitlines()[0].lstrip("# ") if readme.exists() else ""
            print(f"{spec.name:22s} {first.split(': ', 1)[-1]}")
        return 0
    if not args.out:
        p.print_usage(sys.stderr)
        print("mcproton validate: error: --out DIR is required", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.cases.split(",") if n.strip()] or list(CASE_NAMES)
    unknown = [n for n in names if n not in CASE_NAMES]
    if unknown:
        print(f"mcproton validate: unknown case(s) {unknown}; known: {', '.join(CASE_NAMES)}", file=sys.stderr)
        return 2
    if args.backend == "cuda" and simulate_fn is None:   # refused once, not as an error in every case
        try:
            from .._backend import get_backend

            get_backend("cuda")
        except RuntimeError as exc:
            print(f"mcproton validate: error: {exc}", file=sys.stderr)
            return 2
    physics = None
    try:
        from ..settings import PhysicsSettings
        physics = PhysicsSettings(**({"water_model": args.water_model} if args.water_model else {}))
    except Exception as exc:  # pragma: no cover - settings module always present in the package
        print(f"warning: physics settings unavailable ({exc})", file=sys.stderr)
    ctx = Context(mode=args.mode, backend=args.backend, seed=args.seed, batches=args.batches, physics=physics,
                  out_dir=Path(args.out), simulate_fn=simulate_fn)
    t0 = time.perf_counter()
    results = run_cases(ctx, names)
    meta = {"mode": args.mode, "backend_requested": args.backend, "seed": args.seed, "batches": args.batches,
            "physics": vars(physics) if physics is not None else None,
            "command": "mcproton validate " + " ".join(sys.argv[1:] if argv is None else argv),
            "total_wall_s": round(time.perf_counter() - t0, 2)}
    summary = write_report(args.out, results, meta)
    out = Path(args.out)
    print(f"report: {out / 'report.html'}\nsummary: {out / 'summary.json'}")
    for c in results:
        print(f"  {c.status:8s} {c.name}{'  ' + c.message if c.message else ''}")
    print("ALL PASSED" if summary["all_passed"] else "SOME CASES FAILED")
    return 0 if summary["all_passed"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

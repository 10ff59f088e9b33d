"""``mcproton validate``: run the validation cases and write the commissioning report.

    mcproton validate [--quick | --full] [--backend auto|cpu|cuda] --out DIR [--cases NAME,...] [--seed N]
                      [--water-model icru90|pstar] [--list]

Writes DIR/report.html (self-contained), DIR/summary.json and DIR/*.png; the progress goes to stderr, the result
(the report's paths, each case's status) to stdout.  Exit status, as ``mcproton run`` and ``mcproton check``
(mcproton.errors): 0 if every case passed (or was skipped), 1 if a case failed, 2 for a usage error (an option,
--out), 3 for the machine (``--backend cuda`` without a usable GPU), 4 if a case raised (a crash: the report
names it; it outranks a failed case).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from .cases import CASE_NAMES, CASES
from .core import ERROR, CaseResult, Context
from .report import REPORT_TITLE, write_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcproton validate", description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="cases: " + ", ".join(CASE_NAMES))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                   help="few energies and ~6e6 protons in all (default; about 1.5-3.5 minutes on 2 CPU cores)")
    g.add_argument("--full", dest="mode", action="store_const", const="full",
                   help="all energies, sub-percent statistics")
    p.set_defaults(mode="quick")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default: the GPU if CuPy finds one, else the CPU), cpu or cuda")
    out = p.add_argument("--out", required=False,   # but for --list: main() says so (exit status 2)
                         help="output folder for report.html, summary.json and the figures (created; required "
                              "unless --list)")
    setattr(out, "required_unless", "--list")   # mcproton.cli.REQUIRED_UNLESS: the README's table marks it
    p.add_argument("--cases", default="", help="comma-separated subset of the cases (default: all; see --list)")
    p.add_argument("--seed", type=int, default=20240611, help="random seed of the runs (default 20240611)")
    p.add_argument("--batches", type=int, default=10,
                   help="statistical batches per run, for the uncertainties (default 10)")
    p.add_argument("--water-model", default=None, choices=("icru90", "pstar"),
                   help="water stopping powers: icru90 (I = 78 eV, default) or pstar (I = 75 eV)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


#: the report's own files in its folder (report.write_report), beside the PNGs its summary.json lists
REPORT_FILES = ("summary.json", "report.html")


def _input_folders() -> list[Path]:
    """The folders mcproton reads its own inputs from: the package, the validation cases with their reference data
    (and validation/report_figures, the committed report's figures), the kernels and the phantom data."""
    import importlib.util

    out = []
    for name in ("mcproton", "mcproton.validation", "mcproton.kernels", "mcproton.phantoms"):
        spec = importlib.util.find_spec(name)
        out += [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    return out


def _earlier_report(out: Path) -> tuple[list[Path], str | None]:
    """The files of an earlier ``mcproton validate`` report in ``out`` (summary.json, report.html and the figures
    its summary lists), or a reason to refuse ``out``: a summary.json or report.html of something else."""
    summary, page = out / "summary.json", out / "report.html"
    old: list[Path] = []
    if summary.exists():
        try:
            s = json.loads(summary.read_text(encoding="utf-8"))
            ours = isinstance(s, dict) and "schema_version" in s and isinstance(s.get("cases"), list)
        except (OSError, ValueError):
            ours = False
        if not ours:
            return [], f"{summary} is not the summary of an mcproton validate report"
        old.append(summary)
        for c in s["cases"]:
            for name in (c.get("figures") or []) if isinstance(c, dict) else []:
                f = out / str(name)
                if Path(str(name)).name == str(name) and f.suffix == ".png" and f.is_file():
                    old.append(f)
    if page.exists():
        try:
            ours = page.is_file() and REPORT_TITLE in page.read_text(encoding="utf-8", errors="replace")[:4000]
        except OSError:
            ours = False
        if not ours:
            return [], f"{page} is not an mcproton validate report"
        old.append(page)
    return old, None


def check_out_dir(out: Path) -> tuple[list[Path], str | None]:
    """Check the report folder before any case runs: ``(files of an earlier report there, to be replaced by the
    new one, error message or None)``.  Refused: a file; a folder inside mcproton's own input folders; a folder
    holding a summary.json or report.html that an earlier ``mcproton validate`` did not write; a folder that
    cannot be made or written."""
    fix = "give another folder (a new one, or one with an earlier mcproton validate report, which is replaced)"
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == out else f"lies below {p}, which is a file"
            return [], f"--out {out} {what}, not a folder; {fix}"
    real = out.resolve()
    for folder in _input_folders():
        if real == folder or folder in real.parents:
            return [], (f"--out {out} lies inside {folder}, one of mcproton's own input folders (the package, the "
                        "validation cases' reference data and the committed report's figures): the report and "
                        "its figures would be written among them; give a folder outside it")
    old, why = _earlier_report(out) if out.is_dir() else ([], None)
    if why:
        return [], f"--out {out}: {why}, and writing the report would replace it; {fix}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".mcproton-validate-{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return [], f"--out {out} cannot be written ({type(exc).__name__}: {exc}); {fix}"
    return old, None


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
        cr.finalize(ctx.water_model())
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
        except RuntimeError as exc:   # the machine's, as run/check/demo/bench say it (integrator audit F5: was 2)
            from ..errors import EXIT_ENVIRONMENT

            print(f"mcproton validate: error: {exc}", file=sys.stderr)
            return EXIT_ENVIRONMENT
    earlier, why = check_out_dir(Path(args.out))   # before any case: no run lost to an unwritable folder
    if why:
        print(f"mcproton validate: error: {why}", file=sys.stderr)
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
    for f in earlier:   # the earlier report's files: none of its figures stays beside the new report
        f.unlink(missing_ok=True)
    if earlier:
        print(f"mcproton validate: the earlier report in {args.out} ({len(earlier)} files) was replaced",
              file=sys.stderr)
    summary = write_report(args.out, results, meta)
    out = Path(args.out)
    print(f"report: {out / 'report.html'}\nsummary: {out / 'summary.json'}")
    for c in results:
        print(f"  {c.status:8s} {c.name}{'  ' + c.message if c.message else ''}")
    for w in summary.get("kernel_warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print("ALL PASSED" if summary["all_passed"] else
          "SOME CASES RAISED (exit status 4)" if summary["n_errors"] else "SOME CASES FAILED")
    by_design = [c.name for c in results if c.expected_failure]
    if by_design:
        print(f"  of them failed by design with --water-model {ctx.water_model()}: {', '.join(by_design)} (their "
              "references were computed with ICRU 90 water, I = 78 eV); the exit status stays 1")
    return int(summary["exit_status"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``mcproton validate``: run the validation cases and write the commissioning report.

    mcproton validate [--quick | --full] [--backend auto|cpu|cuda] --out DIR [--cases NAME,...] [--seed N]
                      [--water-model icru90|pstar] [--list]

Writes DIR/report.html (self-contained), DIR/summary.json and DIR/*.png; the progress goes to stderr, the result
(the report's paths, each case's status) to stdout.  Exit status, as ``mcproton run`` and ``mcproton check``
(mcproton.errors): 0 if every case passed (or was skipped), 1 if a case failed, 2 for a usage error (an option,
--out), 3 for the machine (``--backend cuda`` without a usable GPU) or a DIR that another validation, demo or
phantom is writing now (its lock), 4 if a case raised (a crash: the report names it; it outranks a failed case),
128 + the signal when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

An earlier report in DIR is moved into DIR/earlier_validate_<date>/ as the validation starts and removed once the
new report is complete.  A validation stopped by a signal writes no report: DIR/summary.json then records the stop
(``"status": "interrupted"``, ``all_passed`` false, ``exit_status`` 128 + the signal, the cases done), the earlier
report stays in earlier_validate_<date>/, and the message says so; one ended by an error (a full disk while the
report is written) leaves the same record with ``"status": "failed"`` and the ``error``, and the error is raised on;
a complete report's summary.json has ``"status": "complete"``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from .._io.lock import locks_output
from .._io.set_aside import discard_aside, files_text, set_aside
from .._signals import RaiseUntilComplete, StopSignal
from .cases import CASE_NAMES, CASES
from .core import ERROR, CaseResult, Context
from .report import FAILED, INTERRUPTED, REPORT_TITLE, SCHEMA_VERSION, write_report


def build_parser() -> argparse.ArgumentParser:
    from .._io.cli_args import PARSER_OPTIONS, folder_name, whole_number

    p = argparse.ArgumentParser(prog="mcproton validate", description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter, **PARSER_OPTIONS,
                                epilog="cases: " + ", ".join(CASE_NAMES))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                   help="few energies and ~6e6 protons in all (default; about 1.5-3.5 minutes on 2 CPU cores)")
    g.add_argument("--full", dest="mode", action="store_const", const="full",
                   help="all energies, sub-percent statistics")
    p.set_defaults(mode="quick")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default: the GPU if CuPy finds one, else the CPU), cpu or cuda")
    out = p.add_argument("--out", required=False, type=folder_name,   # but for --list: main() says so (exit status 2)
                         help="output folder for report.html, summary.json and the figures (created; required "
                              "unless --list)")
    setattr(out, "required_unless", "--list")   # mcproton.cli.REQUIRED_UNLESS: the README's table marks it
    p.add_argument("--cases", default=None, help="comma-separated subset of the cases (default: all; see --list)")
    p.add_argument("--seed", type=whole_number, default=20240611,
                   help="random seed of the runs, 0 to 2^63 - 1 (default 20240611)")
    p.add_argument("--batches", type=whole_number, default=10,
                   help="statistical batches per run, for the uncertainties, at least 2 (default 10)")
    p.add_argument("--water-model", default=None, choices=("icru90", "pstar"),
                   help="water stopping powers: icru90 (I = 78 eV, default) or pstar (I = 75 eV)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


def _refused_run_options(args: argparse.Namespace) -> str | None:
    """Why ``--seed`` or ``--batches`` cannot be a run's (as :class:`~mcproton.settings.RunSettings` checks them,
    named as the options), else None.  Before, each case that runs the Monte Carlo raised it ("SOME CASES RAISED",
    exit status 4, the internal error's), and a validation of analytic cases only passed with the bad value in its
    report (the CLI-help audit of 2026-12-07, F3)."""
    from ..settings import RunSettings

    try:
        RunSettings(seed=args.seed, batches=args.batches, backend=args.backend)
    except ValueError as exc:
        return str(exc).replace("run.seed", "--seed").replace("run.batches", "--batches")
    return None


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


_FIX = "give another folder (a new one, or one with an earlier mcproton validate report, which is replaced)"


def _misplaced(out: Path) -> str | None:
    """Why ``out`` is no place for the report whatever it holds (a file, below a file, inside mcproton's own input
    folders), or None: refused before the folder's lock is taken (which would be made there)."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == out else f"lies below {p}, which is a file"
            return f"--out {out} {what}, not a folder; {_FIX}"
    real = out.resolve()
    for folder in _input_folders():
        if real == folder or folder in real.parents:
            return (f"--out {out} lies inside {folder}, one of mcproton's own input folders (the package, the "
                    "validation cases' reference data and the committed report's figures): the report and its "
                    "figures would be written among them; give a folder outside it")
    return None


def check_out_dir(out: Path) -> tuple[list[Path], str | None]:
    """Check the report folder before any case runs: ``(files of an earlier report there, to be replaced by the
    new one, error message or None)``.  Refused: a file; a folder inside mcproton's own input folders; a folder
    holding a summary.json or report.html that an earlier ``mcproton validate`` did not write; a folder that
    cannot be made or written."""
    why = _misplaced(out)
    if why:
        return [], why
    old, why = _earlier_report(out) if out.is_dir() else ([], None)
    if why:
        return [], f"--out {out}: {why}, and writing the report would replace it; {_FIX}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".mcproton-validate-{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return [], f"--out {out} cannot be written ({type(exc).__name__}: {exc}); {_FIX}"
    return old, None


def run_cases(ctx: Context, names: list[str], results: list[CaseResult] | None = None,
              started: list[str] | None = None) -> list[CaseResult]:
    """Run the cases ``names`` (in the order of CASES); each result is appended to ``results`` (a new list where
    None) as its case ends, and each case's name to ``started`` as it begins, so that a caller stopped part-way
    knows the cases done and the one under way.  Returns the list."""
    results = [] if results is None else results
    for spec in CASES:
        if spec.name not in names:
            continue
        if started is not None:
            started.append(spec.name)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    if args.list:
        here = Path(__file__).resolve().parent
        for spec in CASES:
            readme = here / spec.name / "README.md"
            first = readme.read_text(encoding="utf-8").splitlines()[0].lstrip("# ") if readme.exists() else ""
            print(f"{spec.name:22s} {first.split(': ', 1)[-1]}")
        return 0
    if not args.out:
        p.print_usage(sys.stderr)
        print("mcproton validate: error: --out DIR is required", file=sys.stderr)
        return 2
    why = _refused_run_options(args)
    if why:   # before any case (each case raised it: exit status 4, or an ALL PASSED report recording it)
        p.print_usage(sys.stderr)
        print(f"mcproton validate: error: {why}", file=sys.stderr)
        return 2
    names = list(CASE_NAMES) if args.cases is None else [n.strip() for n in args.cases.split(",") if n.strip()]
    if not names:   # --cases "$CASES" with CASES empty ran the whole suite (audit 26 exitcodes, F10)
        print(f"mcproton validate: error: --cases {args.cases!r} names no case; give one or more of the names "
              "mcproton validate --list prints, separated by commas, or leave --cases out for every case",
              file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in CASE_NAMES]
    if unknown:
        print(f"mcproton validate: unknown case(s) {unknown}; known: {', '.join(CASE_NAMES)}", file=sys.stderr)
        return 2
    if args.backend == "cuda" and simulate_fn is None:   # refused once, not as an error in every case
        try:
            from .._backend import CPU_BY_OPTION, get_backend

            get_backend("cuda", cpu_choice=CPU_BY_OPTION)
        except RuntimeError as exc:   # the machine's, as run/check/demo/bench say it (integrator audit F5: was 2)
            from ..errors import EXIT_ENVIRONMENT

            print(f"mcproton validate: error: {exc}", file=sys.stderr)
            return EXIT_ENVIRONMENT
    from .._io.errors import McprotonEnvironmentError

    why = _misplaced(Path(args.out))   # before the folder's lock (made in it) is taken
    if why:
        print(f"mcproton validate: error: {why}", file=sys.stderr)
        return 2
    try:
        return _validate(args.out, args, argv, names, simulate_fn)
    except McprotonEnvironmentError as exc:   # --out locked by another validation (or demo, phantom) running now
        from ..errors import EXIT_ENVIRONMENT

        print(f"mcproton validate: error: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT


#: the folder in --out that an earlier report is moved into as a new validation starts (removed once the new report
#: is complete; kept, and named by the record of a validation that does not complete)
EARLIER_DIR = "earlier_validate_"


class _Stopped(StopSignal):
    """SIGINT/SIGTERM/SIGHUP during a validation."""


class _StopHandlers(RaiseUntilComplete):
    """The stop signals raise :class:`_Stopped` (the first one; none once the report is complete)."""

    exc = _Stopped


@locks_output()
def _validate(out: str, args: argparse.Namespace, argv: list[str], names: list[str], simulate_fn) -> int:
    """The validation of ``args`` into ``out``, holding the lock of that folder: a second validation (or a demo, a
    phantom) on it is refused, exit status 3 (before, both ran and one result was lost: the concurrency audit of
    2026-12-07, F3).  An earlier report there is set aside into ``earlier_validate_<date>/`` before the first case
    and removed once this report is complete; a stop signal ends the validation with a ``summary.json`` that records
    it (``"status": "interrupted"``, ``all_passed`` false), a message saying what ``out`` holds and exit status
    128 + the signal (before, SIGTERM and SIGHUP ended it without a word and the earlier ALL PASSED report stayed in
    place, unmarked: F2).  Any other error (a full disk while the report is written) leaves the same record,
    ``"status": "failed"`` with the error, and is raised on (before, the earlier report stayed set aside, named by
    nothing, beside the new figures: review 2a of 2026-12-07, R3)."""
    from .._io.lock import remove_stale_temporaries

    folder = Path(out)
    earlier, why = check_out_dir(folder)   # before any case: no run lost to an unwritable folder
    if why:
        print(f"mcproton validate: error: {why}", file=sys.stderr)
        return 2
    remove_stale_temporaries([folder / n for n in REPORT_FILES], log=_say)   # of a validation killed while writing
    physics = None
    try:
        from ..settings import PhysicsSettings
        physics = PhysicsSettings(**({"water_model": args.water_model} if args.water_model else {}))
    except Exception as exc:  # pragma: no cover - settings module always present in the package
        print(f"warning: physics settings unavailable ({exc})", file=sys.stderr)
    ctx = Context(mode=args.mode, backend=args.backend, seed=args.seed, batches=args.batches, physics=physics,
                  out_dir=folder, simulate_fn=simulate_fn)
    meta = {"mode": args.mode, "backend_requested": args.backend, "seed": args.seed, "batches": args.batches,
            "physics": vars(physics) if physics is not None else None,
            "command": "mcproton validate " + " ".join(argv)}
    results: list[CaseResult] = []
    started: list[str] = []
    written: list[Path] = []
    aside: list[Path | None] = [None]
    stop = _StopHandlers()
    with stop:
        try:
            aside[0] = _set_aside(folder, earlier)
            stop.deliver_deferred()   # a signal that came as the command line started (audit 26 exitcodes, F2)
            t0 = time.perf_counter()
            run_cases(ctx, names, results, started)
            meta["total_wall_s"] = round(time.perf_counter() - t0, 2)
            summary = write_report(folder, results, meta, written=written)
            stop.complete = True
        except (_Stopped, KeyboardInterrupt) as exc:
            stop.complete = True   # a further signal is ignored while the record is written
            signum = getattr(exc, "signum", signal.SIGINT)
            return _interrupted(folder, signum, names, results, started, written, aside[0], meta)
        except BaseException as exc:   # an error: a full disk while the report is written, a bug in build_summary
            stop.complete = True
            _failed(folder, exc, names, results, started, written, aside[0], meta)
            raise
        _discard(folder, aside[0])
    print(f"report: {folder / 'report.html'}\nsummary: {folder / 'summary.json'}")
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


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _interrupted_record(path: Path) -> bool:
    """Whether ``path`` is the summary.json of a validation that was stopped or failed (:func:`_unfinished`), not a
    report."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return path.name == "summary.json" and isinstance(doc, dict) and doc.get("status") in (INTERRUPTED, FAILED)


def _set_aside(out: Path, earlier: list[Path]) -> Path | None:
    """Move the earlier report's files into ``out/earlier_validate_<date>/`` (an earlier record of a stopped
    validation is removed, the folder it names moved with them: mcproton._io.set_aside, as ``mcproton check`` sets
    its earlier outputs aside); returns that folder (None: nothing moved)."""
    if not earlier:
        return None
    return set_aside(out, earlier, _say, is_record=_interrupted_record, prefix=EARLIER_DIR,
                     whose="mcproton validate: note: the earlier validation's report",
                     why="is not the result of this validation: set aside as it starts (removed once its report is "
                         "complete; kept where it does not complete)")


def _discard(out: Path, aside: Path | None) -> None:
    """This report is complete: the earlier one set aside is removed (replaced), and said to be, with the number of
    its files (before, the number of files found in ``out``: "(1 files)" where that was the record of a stopped
    validation, whose folder held the 3 files of the report replaced: review 2a of 2026-12-07, R3)."""
    if aside is not None:
        _say(discard_aside(out, aside, "mcproton validate: the earlier report"))


def _interrupted(out: Path, signum: int, names: list[str], results: list[CaseResult], started: list[str],
                 written: list[Path], aside: Path | None, meta: dict) -> int:
    """A validation stopped by ``signum``: :func:`_unfinished` with ``"status": "interrupted"`` and exit status
    128 + the signal, which is returned."""
    name = signal.Signals(signum).name
    code = 128 + signum
    _unfinished(out, INTERRUPTED, f"interrupted by {name}", "run it again", code, {"signal": name}, names, results,
                started, written, aside, meta)
    return code


def _failed(out: Path, exc: BaseException, names: list[str], results: list[CaseResult], started: list[str],
            written: list[Path], aside: Path | None, meta: dict) -> None:
    """A validation ended by the error ``exc`` (not a stop signal; raised on by the caller): :func:`_unfinished`
    with ``"status": "failed"``, the error, and the exit status the command line gives it."""
    from ..errors import exit_status

    error = f"{type(exc).__name__}: {exc}"
    _unfinished(out, FAILED, f"stopped by an error ({error})", "see the error below", exit_status(exc),
                {"error": error}, names, results, started, written, aside, meta)


def _unfinished(out: Path, status: str, how: str, todo: str, code: int, extra: dict, names: list[str],
                results: list[CaseResult], started: list[str], written: list[Path], aside: Path | None,
                meta: dict) -> None:
    """A validation that did not complete (``status``: stopped by a signal, or failed): the report files it wrote
    (the report was not complete) are removed, ``out/summary.json`` records it (``status``, ``all_passed`` false,
    ``exit_status`` ``code``, the cases done and not, where the earlier report went: ``earlier_outputs_moved_to``,
    which the next validation removes with the record), and the message says what ``out`` holds and when it stopped:
    during the case under way (``started``' last), after a case, before the first one (a signal as the command line
    started: it named the first case, review 26a, R8) or while the report was written.  Where the record
    cannot be written (a full disk), the earlier report is moved back into ``out`` instead, so that it is never left
    in a folder that nothing names."""
    import datetime as _dt

    from .._io.atomic import write_bytes_atomic
    from .._io.json_out import json_text

    for f in written:
        f.unlink(missing_ok=True)
    done = {c.name: c.status for c in results}
    order = [spec.name for spec in CASES if spec.name in names]
    left = [n for n in order if n not in done]
    where = ("while writing the report" if not left else "before the first case" if not started
             else f"during case {started[-1]}" if started[-1] not in done else f"after case {started[-1]}")
    done_text = ", ".join(f"{n} {s}" for n, s in done.items()) or "none"
    kept = (f"; the earlier report found there ({files_text(aside)}) was moved into {aside}: it is not the result "
            "of this validation") if aside is not None else ""
    record = {"schema_version": SCHEMA_VERSION, "status": status,
              "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **meta,
              "all_passed": False, "exit_status": code, **extra,
              "n_cases": len(order), "cases_done": [{"name": n, "status": s} for n, s in done.items()],
              "cases_not_done": left, "cases": [],
              "earlier_outputs_moved_to": None if aside is None else str(aside)}
    msg = (f"{how} {where} (cases done: {done_text}; not done: {', '.join(left) or 'none'}): no report was written to "
           f"--out {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out / "summary.json", (json_text({**record, "message": msg + kept}) + "\n").encode())
        msg += f"{kept}; {out / 'summary.json'} records this {status} validation (all_passed false)"
    except OSError as exc:
        msg += f"; its record could not be written to {out / 'summary.json'} ({exc})" + _moved_back(out, aside)
    _say(f"mcproton validate: {msg}; {todo}")


def _moved_back(out: Path, aside: Path | None) -> str:
    """The earlier report set aside in ``aside`` moved back into ``out`` (where no record names the folder); the
    words that say so."""
    if aside is None:
        return ""
    back = []
    try:
        for p in sorted(aside.iterdir()):
            if not (out / p.name).exists():
                os.replace(p, out / p.name)
                back.append(p.name)
        aside.rmdir()
    except OSError as exc:
        return (f"; the earlier report found there is in {aside} ({', '.join(back) or 'nothing'} moved back into "
                f"--out before {exc})")
    return f"; the earlier report found there ({', '.join(back)}) was moved back into --out"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

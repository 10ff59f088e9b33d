"""``mcproton check``: the command line of the independent MC plan check (registered in mcproton/cli.py)."""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

EPILOG = """examples:
  mcproton check --ct CT/ --plan RP.dcm --dose RD.dcm --struct RS.dcm --beam-model dcpt_v5 --out check/
  mcproton check patient_folder/ --beam-model dcpt_v5 --out check/       (files found and paired by UID)
  mcproton check phantom/ --phantom-from-struct --beam-model dcpt_v5 --out check/   (no CT: a phantom built
                                                   from the RT Struct's ROI material overrides)
exit status: 0 the check passes every action level, 1 it fails one (the report says which), 2 bad input
(refused: the export, an option), 3 the machine or the output (--out busy, the disk full or read-only, no GPU),
4 an internal error (a bug: rerun with --debug and report it), 128 + the signal when stopped (130 Ctrl-C,
143 SIGTERM, 129 SIGHUP).  --batch: the worst of its patients' (4 > 3 > 2 > 1 > 0); a full or read-only disk
stops it.  An earlier check's outputs in --out are moved into earlier_check_<date>/ there as the check starts
(removed once its report is complete); a check that fails or is stopped leaves a check.json recording why
("status": "refused", "interrupted", ...); --json prints one record in every outcome; see mcproton.errors.
The report (check.html, check.json) and the MC dose as RT Dose (RD_mc.dcm; RD_mc_beam<N>.dcm for each per-beam
TPS dose; on the TPS grid, in its study) go to --out; see the README, "Independent plan check (`mcproton check`)"."""


class _PrintLevels(argparse.Action):
    """``--print-levels``: print the action levels as a --config file and exit 0, as --version does (no other option
    needed, --out included): an installed mcproton has no examples/check.toml (audit 21 F6).  The defaults, or with
    ``--config FILE`` (before or after it on the line) the levels that file gives over them (realcheck audit F5:
    the defaults were printed, the config not read, without a word).  The other options are not read."""

    def __init__(self, option_strings: list[str], dest: str, **kw) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        # printed by main() once the whole line is parsed (a --config may follow); --out and the like then are not
        # required (this parser is built for this one line: cli.build_parser)
        namespace.print_levels = True
        for a in parser._actions:
            a.required = False


def print_levels(config: str | None) -> int:
    """What ``--print-levels`` prints (:class:`_PrintLevels`): the defaults, or ``config``'s levels over them."""
    from .levels import config_levels_toml, defaults_toml

    print(defaults_toml() if config is None else config_levels_toml(config), end="")
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    from .._io.cli_args import (OWN_BEAM_MODEL, PARSER_OPTIONS, beam_model_name, builtin_beam_models_text,
                                  calibration_name, file_name, folder_name, whole_number)

    c = sub.add_parser("check", **PARSER_OPTIONS,
                       help="independent MC check of a plan against its planning-system dose",
                       description="Recompute an RT Ion Plan with Monte Carlo on the planning system's dose grid "
                                   "and compare: 3-D gamma, dose differences, DVH metrics per structure, distal "
                                   "range per beam; HTML + JSON report with pass/fail against action levels.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("folder", nargs="?", type=folder_name,
                   help="a folder with one patient's DICOM files (CT, RT Plan, RT Dose(s), RT Struct), paired by "
                        "their UIDs; explicit options below win")
    c.add_argument("--batch", action="store_true",
                   help="FOLDER holds one sub-folder per patient: check each into OUT/<sub-folder>/, summary in "
                        "OUT/index.html and OUT/batch.json (the output folder, hidden and system folders such as "
                        "__MACOSX are skipped and named)")
    c.add_argument("--skip-checked", action="store_true",
                   help="with --batch: a patient whose earlier check.json in OUT/<sub-folder>/ records the same "
                        "files (SHA-256), build (version, kernel, physics data and code: the SHA-256 of every "
                        "Python and kernel source of mcproton), beam model, calibration, action levels and options, "
                        "and is complete (PASS or FAIL, not stopped by --time-limit), is not checked again: its "
                        "verdict goes into the summary marked reused; anything else (an upgrade that changed only "
                        "Python code among it) is checked")
    c.add_argument("--ct", type=folder_name, help="folder of the plan's CT series")
    c.add_argument("--ct-series", metavar="UID",
                   help="SeriesInstanceUID of the plan's CT where the folder holds several CT series (default: the "
                        "only axial one, else the one the RT Struct was drawn on; a localizer is skipped)")
    c.add_argument("--plan", type=file_name, help="RT Ion Plan (RP.dcm)")
    c.add_argument("--dose", action="append", type=file_name,
                   help="TPS RT Dose: the plan dose and/or per-beam doses (repeatable)")
    c.add_argument("--struct", type=file_name,
                   help="RT Structure Set (RS.dcm): DVH metrics, the target D95/Dmean rows and the body outline "
                        "(External)")
    c.add_argument("--allow-no-struct", action="store_true",
                   help="check without a structure set where the plan names one (its ReferencedStructureSetSequence) "
                        "that is not among the inputs (default: refused); without one the verdict says that the "
                        "target D95/Dmean rows were not evaluated")
    c.add_argument("--beam-model", type=beam_model_name,
                   help=f"beam model (required: no default): a built-in, {builtin_beam_models_text()}; or a "
                        f".toml or an MCsquare BDL file ({OWN_BEAM_MODEL})")
    c.add_argument("--out", required=True, type=folder_name,
                   help="folder for check.html, check.json and the MC dose RD_mc.dcm (created)")
    c.add_argument("--calibration", default=None, type=calibration_name,
                   help="HU calibration: give the planning system's curve, a folder with its HU -> SPR table "
                        "hu_spr.csv (or hu_density.csv) beside hu_materials.csv, or a built-in name (default "
                        "schneider2000, a generic curve: the range rows then compare the two curves as much as the "
                        "plan; mcsquare_default for OpenTPS/MCsquare; dcpt_spr_brain for an SPR-map CT; a phantom CT "
                        "that mcproton wrote with another one, or an SPR map, is refused with the default)")
    c.add_argument("--struct-overrides", choices=["apply", "ignore"], default="apply",
                   help="the RT Struct's material overrides (a bolus, a couch, artifacts set to tissue) on a patient "
                        "CT: apply (default: as the planning system computed) or ignore")
    c.add_argument("--outside-external", choices=["ct", "air"], default="ct",
                   help="the CT outside the RT Struct's External ROI (a couch, a head rest): ct (default: transported; "
                        "beams crossing it are named) or air (outside the External and its SUPPORT/FIXATION/BOLUS "
                        "ROIs, as a planning system that computes inside them only)")
    c.add_argument("--phantom-from-struct", action="store_true",
                   help="no CT: build the phantom from the RT Struct's ROI material overrides (External etc.), air "
                        "elsewhere, with its own exact calibration (--calibration, --struct-overrides ignore and "
                        "--outside-external air are refused with it)")
    c.add_argument("--no-machine-check", action="store_true",
                   help="run a plan whose TreatmentMachineName the beam model does not name (default: refused)")
    c.add_argument("--ignore-beam-limiting-devices", action="store_true",
                   help="compute a beam whose control points place an MLC, jaws or an aperture as if the device were "
                        "open, with a warning (default: refused, as mcproton does not model it; for a device known "
                        "to touch no spot)")
    c.add_argument("--dose-to", choices=["water", "medium"], default=None,
                   help="what the TPS dose is (DICOM does not say): water or medium (default: what an RT Dose "
                        "mcproton wrote says in its DoseComment, else water, as RayStation and Eclipse report)")
    c.add_argument("--rbe", type=float, default=None,
                   help="constant RBE of a DoseType EFFECTIVE dose (default 1.1); for a PHYSICAL TPS dose only what "
                        "the plan's TargetPrescriptionDose and --prescription (Gy(RBE)) are divided by for V95/V100")
    c.add_argument("--patient-position", metavar="POSITION", default=None,
                   help="the plan's PatientPosition (HFS, HFP, FFS, ...) where the plan has none (OpenTPS leaves it "
                        "empty; refused without this); a plan that says another position, or a CT that does, is "
                        "refused")
    c.add_argument("--dose-type", choices=["physical", "effective"], default=None, type=str.lower,
                   help="what the TPS dose is, whatever its DoseType says (default: its DoseType); an OpenTPS dose "
                        "labelled EFFECTIVE is refused without it, as OpenTPS labels its physical MCsquare doses so")
    c.add_argument("--prescription", action="append", metavar="GY or ROI=GY",
                   help="the targets' prescribed dose for V95/V100 in Gy(RBE) for all fractions of the plan, as the "
                        "plan's TargetPrescriptionDose (e.g. 54 for 30 x 1.8 Gy(RBE)), converted as it is: divided "
                        "by the RBE (1.1, or --rbe) for a PHYSICAL TPS dose and by the fractions for a TPS dose of "
                        "one fraction; ROI=GY for one target (repeatable: a boost). A physical dose: give it x the "
                        "RBE (1.8 Gy: 1.98); a note says how a value was read where no TargetPrescriptionDose checks "
                        "it. Refused where it differs from the plan's TargetPrescriptionDose (ROI=GY: that ROI's, else "
                        "another only where the ROI's TPS median sides with it) by "
                        "the factor of a slip (x 100: cGy; / the fractions: one fraction; / 1.1: a physical dose) or "
                        "from the TPS dose's median in the target by such a factor or more than 2 x. Default: the "
                        "plan's TargetPrescriptionDose, else each target's own TPS median")
    c.add_argument("--prescription-anyway", action="store_true",
                   help="keep a --prescription that differs from the plan's TargetPrescriptionDose or the TPS dose "
                        "as above (a deliberate other prescription; the report says what it differs from)")
    c.add_argument("--fractions", choices=["auto", "all", "one"], default="auto",
                   help="which fractions the TPS dose holds: auto (default) from its DoseSummationType as DICOM "
                        "defines it (PLAN, FRACTION, BEAM: all fractions; FRACTION_SESSION, BEAM_SESSION: one), all, "
                        "or one (e.g. for a system that writes FRACTION for one fraction)")
    c.add_argument("--primaries", type=whole_number, default=10_000_000,
                   help="upper limit of protons per beam (default 10000000)")
    c.add_argument("--target-uncertainty", type=float, default=0.01,
                   help="stop at this mean relative uncertainty above 50 %% of the maximum, a fraction (default "
                        "0.01 for 1 %%; 0: no target, each beam runs all its --primaries, within --time-limit if "
                        "given)")
    c.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop the MC after this many seconds of transport over all the beams (each beam its share), "
                        "as mcproton run's run.time_limit_s; the check goes on with the dose reached, the report "
                        "says so, and an uncertainty above the target is judged by its action level "
                        "(mc_uncertainty_max_pct: FAIL above it). Default: no limit")
    c.add_argument("--seed", type=whole_number, default=12345, help="random seed of the Monte Carlo (default 12345)")
    c.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto (default: the GPU if CuPy finds one, else the CPU), cpu or cuda")
    c.add_argument("--config", type=file_name,
                   help="TOML with a [levels] table of action levels (default: the built-in levels, which "
                        "--print-levels prints as such a file to copy and edit)")
    c.add_argument("--print-levels", action=_PrintLevels,
                   help="print the default action levels as a --config TOML file (each with what it is) and exit; "
                        "with --config FILE, the levels FILE gives over the defaults")
    c.add_argument("--gamma-points", type=whole_number, default=10000,
                   help="random subset of points for the 3-D gamma (default 10000; 0 = all)")
    c.add_argument("--gamma-workers", type=whole_number, default=0,
                   help="processes for the six 3-D gammas (default 0: one per gamma up to the cores and as many as the "
                        "memory holds; 1: in this process; the same results either way)")
    c.add_argument("--json", action="store_true", help="print the JSON report instead of the summary")
    c.add_argument("--quiet", action="store_true",
                   help="no progress bar and no step lines (reading the CT, the gammas, the report ...)")
    c.set_defaults(func=main)
    return c


def main(args: argparse.Namespace) -> int:
    from .record import invoked_as

    if getattr(args, "print_levels", False):   # --print-levels: nothing checked, nothing written
        return print_levels(args.config)
    with invoked_as(getattr(args, "command_line", None) or ["mcproton", *sys.argv[1:]]):   # in the record
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    """:func:`_checked`, and with ``--json`` one JSON record on stdout in every outcome: where the check or batch
    did not complete (an option refused, the inputs refused, the machine, a bug, a signal), the record of why
    (:func:`_failure_record`), or an interrupted batch's batch.json.  Before 2026-12-06 an option refused and an
    interrupted ``--batch`` printed nothing (the integrators' audit, F4)."""
    from .._signals import RunInterrupted

    try:
        return _checked(args)
    except (Exception, RunInterrupted, KeyboardInterrupt) as exc:
        if args.json:
            from .._io.json_out import json_text

            batch_json = getattr(exc, "batch_json", None)   # a batch that ran: its rows say how far it got
            if batch_json is not None and Path(batch_json).is_file():
                print(Path(batch_json).read_text(encoding="utf-8"))
            else:
                print(json_text(_failure_record(exc, args), indent=1))
        raise


def _refuse_usage(args: argparse.Namespace) -> None:
    """The command line's slips that read no file, refused before the missing --beam-model is (review a of audit 33,
    R5: a user who made one and missed --beam-model was refused twice, the slip second)."""
    if args.batch:
        if args.prescription or args.prescription_anyway:
            raise ValueError(f"--prescription{'-anyway' if not args.prescription else ''} is one plan's; --batch "
                             "checks many: leave it out (each plan's TargetPrescriptionDose, else each target's TPS "
                             "median, is used)")
        if not args.folder or args.plan or args.dose or args.ct or args.struct or args.ct_series:
            raise ValueError("--batch takes one folder holding one sub-folder per patient, and no --plan/--dose/--ct/"
                             "--ct-series/--struct")
        return
    if args.skip_checked:
        raise ValueError("--skip-checked skips the patients of a --batch already checked; give --batch (one check "
                         "is run whenever asked)")
    if not (args.folder or args.plan):
        raise ValueError("give a patient folder or --plan with --dose (and --ct or --phantom-from-struct); "
                         "see mcproton check --help")


def _checked(args: argparse.Namespace) -> int:
    from ..errors import EXIT_FAIL, EXIT_PASS
    from .api import check, check_batch
    from .compute import no_beam_model

    _refuse_usage(args)
    if args.beam_model is None:   # an option it misses, refused before any file is read (journey audit 33, F1)
        raise no_beam_model()
    common = {"beam_model": args.beam_model, "calibration": args.calibration,
              "phantom_from_struct": args.phantom_from_struct, "dose_to": args.dose_to, "rbe": args.rbe,
              "dose_type": args.dose_type.upper() if args.dose_type else None,
              "patient_position": args.patient_position,
              "fractions": args.fractions, "primaries": args.primaries,
              "target_uncertainty": args.target_uncertainty or None, "time_limit_s": args.time_limit,
              "seed": args.seed, "backend": args.backend,
              "levels": args.config, "gamma_points": args.gamma_points or None, "progress": not args.quiet,
              "gamma_workers": args.gamma_workers or None, "machine_check": not args.no_machine_check,
              "ignore_beam_limiting_devices": args.ignore_beam_limiting_devices,
              "struct_overrides": args.struct_overrides, "outside_external": args.outside_external,
              "allow_no_struct": args.allow_no_struct}
    if args.batch:
        from .._io.console import printable
        from .batch_log import verdict_word

        with _warnings_as_they_come():   # each patient's warnings named by check_batch ([p1] ...)
            results = check_batch(args.folder, args.out, skip_checked=args.skip_checked, **common)
        if args.json:   # batch.json's record (automation audit, F9: --json was ignored)
            print((Path(args.out) / "batch.json").read_text(encoding="utf-8"))
        else:   # the verdicts again, together (each was said on stderr as its patient ended)
            for name, r in results.items():   # escaped: stdout passes escape sequences on (audit 29, F5)
                print(f"{printable(name)}: {printable(verdict_word(r))}")
            print(f"summary: {Path(args.out) / 'index.html'}\n         {Path(args.out) / 'batch.json'}")
        # the worst status of its patients (mcproton.errors): 4 internal > 3 environment > 2 refused > 1 FAIL > 0
        return max((r.exit_status if isinstance(r, str) else EXIT_PASS if r.passed else EXIT_FAIL
                    for r in results.values()), default=EXIT_PASS)
    from .._io.json_out import json_text

    # mcproton's warnings on stderr as each is raised, each once (the progress-log audit 26, F1: they were held back to
    # the summary, so the warning that the run would take 32 h came when it ended, and a check killed with SIGKILL
    # left a log without any), and gathered again in the summary on stdout (what is read and pasted; check.html and
    # check.json keep them), with a count on stderr at the end
    with _warnings_as_they_come():
        res = check(plan=args.plan, dose=args.dose, ct=args.ct, struct=args.struct, folder=args.folder,
                    out=args.out, prescription=_prescription_arg(args.prescription),
                    prescription_anyway=args.prescription_anyway, ct_series=args.ct_series,
                    **common)
    if res.warnings:
        where = "check.json's warnings" if args.json else "the summary below"
        print(f"mcproton check: {len(res.warnings)} warning(s) during the check, each said above as it came: in full "
              f"in {where}" + (f" and in {res.report_html}" if res.report_html else ""), file=sys.stderr)
    if args.json:
        print(json_text(res.to_dict(), indent=1))
    else:
        print(res.summary())
        print(f"report: {res.report_html}\n        {res.report_json}")
        if res.mc_rtdose and res.out_dir:
            print("MC dose (RT Dose): " + ", ".join(str(Path(res.out_dir) / v["file"]) for v in res.mc_rtdose.values()))
    return EXIT_PASS if res.passed else EXIT_FAIL


@contextlib.contextmanager
def _warnings_as_they_come() -> Iterator[None]:
    """``with _warnings_as_they_come():`` each of mcproton's warnings raised in the block is written to stderr at once
    (flushed: a log file holds it however the process ends later, SIGKILL included), as the command line writes it
    (``mcproton: warning: ...``), and each text once in the block (a check that says one thing twice is not shown it
    twice).  Other warnings are shown as before."""
    import warnings

    from .._io.console import write_stderr
    from .._io.errors import McprotonWarning

    said: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", McprotonWarning)   # each time it is raised (the command line's rule)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if not (isinstance(category, type) and issubclass(category, McprotonWarning)):
                shown(message, category, filename, lineno, file, line)
                return
            if str(message) in said:
                return
            said.add(str(message))
            write_stderr(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show
        yield


def _failure_record(exc: BaseException, args: argparse.Namespace) -> dict:
    """What ``--json`` prints for a check that did not finish: the record written into --out/check.json
    (out_dir.record_failure; an interrupted check's too), or, where none was made (an option refused, --out busy,
    a batch refused as a whole), the same keys without the file."""
    record = getattr(exc, "check_record", None)
    if record is not None:
        return record
    from .. import __version__
    from .._build import check_build_record
    from ..errors import exit_status, status_of
    from .record import now_text
    from .out_dir import CHECK_JSON_SCHEMA

    return {"schema_version": CHECK_JSON_SCHEMA, "status": status_of(exc), "passed": False,
            "exit_status": exit_status(exc), "checks": [],
            "error": " ".join(str(exc).split()) or type(exc).__name__, "error_type": type(exc).__name__,
            "provenance": {"mcproton_version": __version__, "build": check_build_record(), "check_started": None,
                           "check_finished": now_text(),
                           "identification": {}, "given_inputs": _given(args), "out": args.out}}


def print_usage_error_record(argv: list[str], message: str) -> None:
    """``check ... --json`` refused by argparse (an unknown option, a number or choice it cannot take, ``--out``
    missing: exit status 2): the record of that refusal on stdout, as :func:`_main` prints for every other outcome
    ("--json prints one record in every outcome"; before, nothing: audit 26 exitcodes, F6).  ``argv``: the command
    line after ``mcproton``; nothing is printed without ``--json`` itself (an option is taken by its whole name only:
    ``--js`` is refused as an unknown option, and printed the record before review 26a, R5)."""
    from ..errors import CheckInputError

    words = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if "--json" not in words:
        return
    given: dict = {"folder": None, "plan": None, "dose": None, "ct": None, "struct": None, "beam_model": None,
                   "out": None}
    for i, a in enumerate(words[:-1]):   # what the line names, as far as it can be read
        key = a[2:].replace("-", "_") if a.startswith("--") else None
        if key in given and not words[i + 1].startswith("-"):
            given[key] = words[i + 1]
    from .._io.json_out import json_text

    print(json_text(_failure_record(CheckInputError(message), argparse.Namespace(**given)), indent=1))


def _given(args: argparse.Namespace) -> dict:
    """The inputs given on the command line (as the record of out_dir.record_failure names them)."""
    given = {"folder": args.folder, "plan": args.plan, "dose": args.dose, "ct": args.ct, "struct": args.struct,
             "beam_model": args.beam_model}
    return {k: v for k, v in given.items() if v is not None}


def _prescription_arg(values: list[str] | None) -> float | dict[str, float] | None:
    """``--prescription`` values: one "GY" for every target, or "ROI=GY" items (the ROI name may hold "=" and
    spaces; the dose is after the last "=")."""
    if not values:
        return None
    plain = [v for v in values if "=" not in v]
    if plain and len(values) > 1:
        raise ValueError(f"--prescription: give one dose for every target, or ROI=GY for each; got {values}")
    def gy(text: str, what: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--prescription {what!r}: {text!r} is not a dose in Gy(RBE) (e.g. 54 or PTV=54)") \
                from None
    if plain:
        return gy(plain[0], plain[0])
    out: dict[str, float] = {}
    for v in values:
        name, _, dose = v.rpartition("=")
        if not name.strip():
            raise ValueError(f"--prescription {v!r}: no ROI name before '='")
        out[name.strip()] = gy(dose, v)
    return out

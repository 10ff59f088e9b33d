"""``mcproton phantom --age A --out DIR [--voxel-mm V] [--region R] [--sex S]``: write a paediatric phantom as
a DICOM CT series (``DIR/ct/``), an RT Structure Set (``DIR/rtstruct.dcm``, one ROI per label) and
``DIR/phantom.h5`` (materials, densities and the label map)."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from .._io.lock import locks_output


def build_parser() -> argparse.ArgumentParser:
    from .._io.cli_args import PARSER_OPTIONS, calibration_name, folder_name, phantom_age, phantom_voxel_mm

    p = argparse.ArgumentParser(prog="mcproton phantom", description=__doc__.split("\n\n")[0].replace("``", ""),
                                **PARSER_OPTIONS)
    p.add_argument("--age", type=phantom_age, required=True, help="age in years (0.5-18)")
    p.add_argument("--out", required=True, type=folder_name, help="output folder")
    p.add_argument("--voxel-mm", type=phantom_voxel_mm, default=2.0,
                   help="isotropic voxel size in mm, at most 10 (default 2)")
    p.add_argument("--region", default="neuraxis", choices=["head", "head_neck", "neuraxis"],
                   help="extent: head, head_neck (to T1) or neuraxis (whole spine; default)")
    p.add_argument("--sex", default="male", choices=["male", "female"],
                   help="body proportions of the age-dependent reference data (default male)")
    p.add_argument("--calibration", default="schneider2000", type=calibration_name,
                   help="HU -> density calibration whose inverse gives the CT numbers (default schneider2000)")
    p.add_argument("--no-rtstruct", action="store_true", help="skip the RT Structure Set")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _phantom(args.out, args)


@locks_output()
def _phantom(out: str, args: argparse.Namespace) -> int:
    """The phantom of ``args`` into ``out``, holding its lock (a second phantom or demo on the folder is refused,
    exit status 3); a SIGINT, SIGTERM or SIGHUP stops it with a message saying what ``out`` holds, exit status
    128 + the signal (before, SIGTERM ended it without a word, and a CT series cut short was left: the concurrency
    audit of 2026-12-07, F4; the series is now written whole or not at all)."""
    from .._io.lock import remove_stale_temporaries
    from .._signals import RaiseOnStopSignals, RunInterrupted, StopSignal
    from .coverage import labels_off_volume, make_head_phantom, missing_labels
    from .dicom_export import PHANTOM_FILES, check_outputs_replaceable, earlier_phantom_ct, export_phantom

    folder = Path(out)
    # the calibration refused naming --calibration, before the phantom is made (the error-message audit 27, F4)
    from .._io.hu_calibration import given_calibration

    cal = given_calibration(args.calibration)
    # --out a file, below a file, or holding files mcproton did not write: refused before the phantom is made (export
    # checks them again), not once it is built (audit 26 exitcodes, F11)
    earlier_phantom_ct(folder / "ct")
    check_outputs_replaceable(folder, [n for n in PHANTOM_FILES if n != "rtstruct.dcm" or not args.no_rtstruct])
    # what a phantom killed with SIGKILL left: the temporary folder of its CT series, its files' temporary files
    remove_stale_temporaries([folder / "ct", *(folder / n for n in PHANTOM_FILES)],
                             log=lambda m: print(m, file=sys.stderr))
    t0 = time.perf_counter()
    writing = False
    earlier = _identities(folder)   # what was there before: a stop's message tells this phantom's files from it
    with RaiseOnStopSignals() as stop:
        try:
            stop.deliver_deferred()   # a signal that came as the command line started (audit 26 exitcodes, F2)
            g = make_head_phantom(args.age, args.voxel_mm, sex=args.sex, region=args.region)
            writing = True
            res = export_phantom(g, folder, calibration=cal, rtstruct=not args.no_rtstruct)
        except StopSignal as exc:
            raise RunInterrupted(_stopped(exc.signum, folder, args, writing, earlier), 128 + exc.signum) from None
        except OSError as exc:   # a full disk, a quota: what --out holds, as a stop says it (audit 26 exitcodes, F11)
            from .._io.atomic import failed_write_text, is_no_space
            from .._io.errors import OutputWriteError
            from ..errors import status_of

            if not writing or status_of(exc) != "environment_error":
                raise
            raise OutputWriteError(f"the phantom stopped: {failed_write_text(exc)}; {_held(folder, args, earlier)}; "
                                   + ("free disk space" if is_no_space(exc) else "remove the cause named above")
                                   + " and run mcproton phantom again", no_space=is_no_space(exc)) from exc
    summary = {"phantom": g.name, "shape_zyx": list(g.shape_zyx), "voxel_mm": args.voxel_mm,
               "origin_mm": list(g.origin_mm), "ct": str(res["ct_dir"]), "slices": len(res["ct"].sop_instance_uids),
               "frame_of_reference_uid": res["ct"].frame_of_reference_uid,
               "rtstruct": str(res.get("rtstruct", "")), "hdf5": str(res["hdf5"]),
               "labels": len(g.label_names), "labels_lost_to_voxel_size": missing_labels(g),
               "labels_volume_off_by_voxel_size": labels_off_volume(g),
               "calibration": args.calibration,
               "wall_s": round(time.perf_counter() - t0, 2)}
    print(json.dumps(summary, indent=2))
    return 0


#: the files of a phantom in its folder, as a stop's message names them
_NAMES = ("ct/", "rtstruct.dcm", "phantom.h5")


def _identities(out: Path) -> dict[str, tuple[int, int, int] | None]:
    """Each of the phantom's files in ``out`` (``ct/``: its first slice) as (inode, mtime in ns, size), None where
    absent: a file written since (each is written whole, to a new file renamed into place) has another."""
    found: dict[str, tuple[int, int, int] | None] = {}
    for name in _NAMES:
        p = out / ("ct/CT_0000.dcm" if name == "ct/" else name)
        try:
            st = p.stat()
            found[name] = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            found[name] = None
    return found


def _stopped(signum: int, out: Path, args: argparse.Namespace, writing: bool,
             earlier: dict[str, tuple[int, int, int] | None]) -> str:
    """The message of a phantom stopped by ``signum``: what ``out`` holds now (:func:`_held`), where it was
    ``writing`` (else nothing was written)."""
    name = signal.Signals(signum).name
    if not writing:
        return (f"interrupted by {name} while the phantom was made, before any of its files was written (--out "
                f"{out} is as it was); run mcproton phantom again")
    return (f"interrupted by {name} while the phantom was written: {_held(out, args, earlier)}; run mcproton phantom "
            "again")


def _held(out: Path, args: argparse.Namespace, earlier: dict[str, tuple[int, int, int] | None]) -> str:
    """What ``out`` holds of a phantom that stopped while it was written (each file, the CT series as a whole, is
    written whole or not at all): this phantom's files (those that were not there, or other files, when it started:
    ``earlier``, :func:`_identities`) named as such, and an earlier phantom's still there named as not this one's
    (before, they were listed as written: a 6-year-old phantom stopped as it began writing "held" the 5-year-old
    one's CT, RT Struct and HDF5, audit 26 exitcodes, F8)."""
    want = ["ct/"] + (["rtstruct.dcm"] if not args.no_rtstruct else []) + ["phantom.h5"]
    ct = out / "ct"
    n = len(list(ct.glob("CT_*.dcm"))) if ct.is_dir() else 0
    now = _identities(out)
    there = [f for f in _NAMES if now[f] is not None and (n or f != "ct/")]
    mine = [f for f in there if now[f] != earlier.get(f)]

    def shown(f: str) -> str:
        return f"ct/ ({n} slices, the whole series)" if f == "ct/" else f

    have = [shown(f) for f in want if f in mine]
    others = [shown(f) for f in there if f not in mine]
    missing = [f for f in want if f not in mine]
    held = f"--out {out} holds this phantom's {', '.join(have)}" if have else \
        f"nothing of this phantom's was written to --out {out}"
    return (held + (f"; not written: {', '.join(missing)}" if missing else "")
            + (f"; the earlier phantom's {', '.join(others)} {'is' if len(others) == 1 else 'are'} still there: not "
               "this phantom's" if others else "")
            + " (no file is cut short: each, the CT series as a whole, is written whole or not at all)")

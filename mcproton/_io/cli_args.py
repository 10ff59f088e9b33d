"""What every mcproton command line (run, check, demo, phantom, validate, bench, commission, and the package's own
``python -m mcproton.phantoms.verify_craniospinal`` and ``make_figures``: review 26a, R9) does with its options before
a command uses them: one rule for each kind, so that a value one command takes is not refused, or read otherwise, by
another (the CLI-help audit of 2026-12-07, audit 26: F7, F8, F10).

* :data:`PARSER_OPTIONS`: the keyword arguments of every parser and sub-parser, ``allow_abbrev=False``: an option is
  recognised by its whole name only.  With argparse's default a prefix was taken for the option it starts (``--no``
  for ``--no-machine-check``, ``--al`` for ``--allow-empty``: safety switches reached by a slip), and ``--deb`` was
  taken as ``--debug`` by the parser but not by the command, which looks for ``--debug`` itself (F7).
* :func:`whole_number`: a whole number written as digits, e.g. 10000000 or 10_000_000, as a config's whole
  numbers are written (TOML reads 1e7 as a decimal number, and the config refuses it: docs/bad_inputs.md); 1e7 and
  2.5 are refused, 1e7 with the digits to write (F8: the help showed "default 1e7", which the option refused as
  "invalid int value").
* :func:`folder_name`, :func:`file_name`: a path, never the empty text: ``--out ''`` is the current folder to the
  file system, and the demo, the phantom, the check and the commission wrote their files there, while ``--rtdose ''``
  was taken as no ``--rtdose`` (F10).  The current folder is ``.`` (said only where a folder is taken: review 26a,
  R6).
* :func:`calibration_name`, :func:`beam_model_name`: a built-in name or a path, never the empty text: ``--calibration
  ''`` (a shell variable left unset) was the current folder, whose hu_spr.csv was taken as the HU calibration with
  exit status 0, where the default was meant (review 26a, R2).
"""
from __future__ import annotations

import argparse
import math
from typing import Any

#: the keyword arguments of every mcproton parser and sub-parser (a sub-parser inherits none of its parent's)
PARSER_OPTIONS: dict[str, Any] = {"allow_abbrev": False}


def whole_number(text: str) -> int:
    """argparse ``type`` of a whole-number option: ``text`` as an int (digits, a sign, underscores between digits:
    what ``int`` reads); a number with a decimal point or an exponent that is whole is refused with the digits to
    write, anything else as argparse refuses it for ``type=int`` ("invalid int value: '2.5'")."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        f = math.nan
    if math.isfinite(f) and f.is_integer():
        n = int(f)
        raise argparse.ArgumentTypeError(f"{text} is written as a decimal number: write {n}"
                                         + (f" (or {n:_})" if abs(n) >= 10_000 else "")
                                         + " without a decimal point or exponent, as in a config")
    raise argparse.ArgumentTypeError(f"invalid int value: {text!r}")   # argparse's own words for type=int


def _not_empty(text: str, refusal: str) -> str:
    """``text`` as given; ``refusal`` (argparse prefixes the option's name) where it is the empty text."""
    if text == "":
        raise argparse.ArgumentTypeError(refusal)
    return text


def folder_name(text: str) -> str:
    """argparse ``type`` of a folder option: ``text`` as given, the empty text refused (it is not taken as the
    current folder, nor as the option left out)."""
    return _not_empty(text, "an empty path: give a folder name ('' is not taken as the current folder; write . for "
                            "that)")


def file_name(text: str) -> str:
    """argparse ``type`` of a file option: ``text`` as given, the empty text refused (it is not taken as the option
    left out)."""
    return _not_empty(text, "an empty path: give a file name ('' names no file)")


#: what an empty ``--calibration`` is told to give instead (the HU-calibration loader and the config say it too)
CALIBRATION_ADVICE = ("give a built-in name (schneider2000, dcpt_spr_brain, mcsquare_default, ...) or a calibration "
                      "folder, or leave it out for the default (schneider2000); '' is not taken as the current folder")
#: The built-in beam models (mcproton/_io/beam_model.BUILTIN, which tests/check/test_check_journey.py holds to these
#: names), each with what it is: the advice of an empty --beam-model, ``mcproton check --help`` and the refusal of a
#: plan for another machine name them all (journey audit 28, F7: the IBA model was named in docs/beam_model.md only).
#: Here, not read from BUILTIN, so that building the command line imports no beam-model code.
BUILTIN_BEAM_MODELS = {
    "dcpt_v5": "DCPT's Varian ProBeam, machines TR1-TR3, model version 5",
    "dcpt_v2": "the same machines, model version 2",
    "mcsquare_upenn_iba_dn": "an IBA dedicated nozzle, MCsquare's UPenn model; it names no machine",
}
#: what an empty ``--beam-model`` is told to give instead
BEAM_MODEL_ADVICE = f"give a built-in model ({', '.join(BUILTIN_BEAM_MODELS)}) or a .toml or MCsquare BDL file"
#: where a user whose machine has no built-in model is sent (the refusal of a plan for another machine, the help):
#: what an installed mcproton has (no docs/: tests/test_messages_name_no_docs_folder.py)
OWN_BEAM_MODEL = ("for your machine's own model, write it as the built-in models' TOML files installed with mcproton "
                  "(mcproton/data/beam_models/) or as an MCsquare BDL, and compare it with the machine's measurements "
                  "with mcproton commission (the README, \"Commissioning a beam model (`mcproton commission`)\")")


def builtin_beam_models_text() -> str:
    """Every built-in beam model with what it is, as one text: "dcpt_v5 (DCPT's ...), dcpt_v2 (...), ..."."""
    return ", ".join(f"{k} ({v})" for k, v in BUILTIN_BEAM_MODELS.items())


def calibration_name(text: str) -> str:
    """argparse ``type`` of ``--calibration`` (a built-in name or a folder): ``text`` as given, the empty text
    refused."""
    return _not_empty(text, f"an empty calibration: {CALIBRATION_ADVICE}")


def phantom_age(text: str | float) -> float:
    """argparse ``type`` of a paediatric phantom's ``--age`` (demo, phantom; run_demo checks its ``age`` with it):
    the age in years within the range of the published tables the phantom is built from, refused before anything is
    announced or made, in the option's words (the error-message audit 27, F9: "age_years must be within 0.5..18.0 y",
    the Python argument's name, after "[demo] phantom: 0.1-year-old head")."""
    from ..phantoms.anatomy import MAX_AGE_Y, MIN_AGE_Y

    age = _number(text, "the age in years")
    if not MIN_AGE_Y <= age <= MAX_AGE_Y:
        raise argparse.ArgumentTypeError(f"{text}: give an age of {MIN_AGE_Y:g} to {MAX_AGE_Y:g} years (the range of "
                                         "the published paediatric tables the phantom is built from)")
    return age


def phantom_voxel_mm(text: str | float) -> float:
    """argparse ``type`` of a paediatric phantom's ``--voxel-mm`` (demo, phantom; as :func:`phantom_age`)."""
    from ..phantoms.generator import MAX_VOXEL_MM

    v = _number(text, "the voxel size in mm")
    if not 0 < v <= MAX_VOXEL_MM:
        raise argparse.ArgumentTypeError(f"{text}: give a voxel size above 0 and at most {MAX_VOXEL_MM:g} mm (the "
                                         "phantom's voxels are cubes of this edge)")
    return v


def _number(text: str | float, what: str) -> float:
    """``text`` as a finite float, else argparse's refusal saying ``what`` is asked for."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: give {what}")
    return v


def beam_model_name(text: str) -> str:
    """argparse ``type`` of ``--beam-model`` (a built-in name or a file): ``text`` as given, the empty text refused."""
    return _not_empty(text, f"an empty beam model: {BEAM_MODEL_ADVICE}")

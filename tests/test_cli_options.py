"""The rules every mcproton command applies to its options (mcproton/_io/cli_args.py; the CLI-help audit of
2026-12-07, audit 26): an option by its whole name only (F7), whole numbers written as digits, as the help shows them
and as a config writes them (F8), no empty path (F10); and the bench's options checked before any work (F4), check's
--target-uncertainty 0 documented (F9)."""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from mcproton.cli import build_parser, command_parsers, main

ROOT = Path(__file__).resolve().parents[1]


def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    """The top-level parser, each of its sub-parsers and each command's own parser (validate, demo and phantom parse
    their own lines)."""
    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"mcproton": top, **{f"sub {k}": v for k, v in sub.choices.items()}, **command_parsers()}


def _parse_error(capsys, argv: list[str]) -> str:
    """The error line of ``mcproton ARGV`` refused by its parser (exit status 2; validate returns it)."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    assert rc == 2, argv
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- F7: no abbreviations -------------------------------------------------------------------------------------

def test_every_parser_takes_options_by_their_whole_name_only():
    parsers = _all_parsers()
    assert len(parsers) >= 16, sorted(parsers)
    assert [name for name, p in parsers.items() if p.allow_abbrev] == []


@pytest.mark.parametrize("argv, prefix", [
    (["--deb", "info"], "--deb"),   # argparse took it as --debug, which the command never read
    (["run", "job.toml", "--out", "o.h5", "--q", "--al"], "--q"),
    (["check", "--prim", "1000", "--out", "x", "--print-levels"], "--prim"),
    (["check", "--no", "--out", "x", "--print-levels"], "--no"),   # was --no-machine-check
    (["bench", "--backend", "cpu", "--energy", "nan", "--rep", "1"], "--rep"),
    (["commission", "--beam-model", "dcpt_v5", "--out", "x", "--sigma", "0.1"], "--sigma"),
    # (an age out of range is refused by --age's own parser since audit 27, F9: before the abbreviation)
    (["demo", "--seed", "-1", "--prim", "100"], "--prim"),
    (["phantom", "--age", "5", "--out", "/dev/null", "--vox", "4"], "--vox"),
    (["validate", "--out", "x", "--cases", "nonesuch", "--bat", "4"], "--bat"),
])
def test_an_abbreviated_option_is_refused(argv, prefix, capsys, tmp_path, monkeypatch):
    """Each line is refused by another option too (a missing file, a seed or energy out of range, an unknown case), so
    that an abbreviation taken again fails this test at once instead of running the command."""
    monkeypatch.chdir(tmp_path)
    err = _parse_error(capsys, argv)
    assert "unrecognized arguments" in err and prefix in err, err
    assert list(tmp_path.iterdir()) == []


def test_debug_is_recognised_anywhere_on_the_line(capsys):
    """--debug is taken out of the line by the command (anywhere on it); a prefix of it is refused above."""
    assert main(["--debug", "bench", "--backend", "cpu", "--voxel-mm", "0"]) == 2
    assert main(["bench", "--backend", "cpu", "--voxel-mm", "0", "--debug"]) == 2
    assert "--voxel-mm 0" in capsys.readouterr().err


# --- F8: whole numbers as the help shows them -----------------------------------------------------------------

def _primaries_options():
    for name, p in command_parsers().items():
        for a in p._actions:
            if "--primaries" in a.option_strings:
                yield name, a


def test_every_primaries_default_the_help_shows_can_be_typed():
    """The help showed "default 1e7" (check), "2,500,000" (demo) and "10^7" (bench), which the option refused."""
    seen = 0
    for name, a in _primaries_options():
        numbers = re.findall(r"(?<![\w.])(\d[\w.,^]*)", a.help.split("default", 1)[1])
        assert numbers, (name, a.help)
        for text in numbers:
            assert isinstance(a.type(text), int), (name, text)
            seen += 1
    assert seen >= 6


@pytest.mark.parametrize("command", ["check", "demo", "bench", "commission"])
def test_primaries_in_exponent_form_is_refused_with_the_digits_to_write(command, capsys):
    """One rule with the config, which refuses run.primaries = 1e6 ("write 1000000"): digits, no exponent."""
    argv = {"check": ["check", "--out", "x"], "demo": ["demo"], "bench": ["bench"],
            "commission": ["commission", "--beam-model", "dcpt_v5", "--out", "x"]}[command]
    err = _parse_error(capsys, [*argv, "--primaries", "1e7"])
    assert "argument --primaries: 1e7 is written as a decimal number: write 10000000 (or 10_000_000)" in err, err
    err = _parse_error(capsys, [*argv, "--primaries", "2.5"])
    assert "argument --primaries: invalid int value: '2.5'" in err, err
    parser = command_parsers()[command]
    action = next(a for a in parser._actions if "--primaries" in a.option_strings)
    assert action.type("10000000") == action.type("10_000_000") == 10_000_000


# --- F10: no empty path ---------------------------------------------------------------------------------------

EMPTY_PATHS = [
    ["run", "", "--check-config"], ["run", "job.toml", "--out", ""],
    ["run", "job.toml", "--out", "o.h5", "--rtdose", ""],
    ["demo", "--out", "", "--age", "200"], ["phantom", "--out", "", "--age", "200"], ["validate", "--out", ""],
    ["check", "--out", ""], ["check", "", "--out", "x"], ["check", "--plan", "", "--out", "x"],
    ["check", "--ct", "", "--out", "x"], ["check", "--dose", "", "--out", "x"], ["check", "--struct", "", "--out", "x"],
    ["check", "--config", "", "--out", "x"],
    ["commission", "--beam-model", "dcpt_v5", "--spots", "s.csv", "--out", ""],
    ["commission", "--beam-model", "dcpt_v5", "--spots", "", "--out", "x"],
]


#: the options above that take a folder (the others take a file): only these are told that . is the current folder
FOLDER_OPTIONS = {("demo", "--out"), ("phantom", "--out"), ("validate", "--out"), ("check", "--out"), ("check", ""),
                  ("check", "--ct"), ("commission", "--out")}


@pytest.mark.parametrize("argv", EMPTY_PATHS, ids=[" ".join(repr(a) if not a else a for a in v) for v in EMPTY_PATHS])
def test_an_empty_path_is_refused_and_nothing_is_written(argv, capsys, tmp_path, monkeypatch):
    """`demo --out ''` wrote the whole demo into the current folder (exit 0), and so did phantom and commission;
    `check --out ''` wrote check.json there; `run --rtdose ''` was taken as no --rtdose.  "write . for that" is said
    where a folder is taken only: `run --out ''` (an HDF5 file) was told to write . (review 26a, R6)."""
    monkeypatch.chdir(tmp_path)
    err = _parse_error(capsys, argv)
    assert "an empty path" in err and "argument" in err, err
    i = argv.index("")
    option = argv[i - 1] if argv[i - 1].startswith("--") else ""
    if (argv[0], option) in FOLDER_OPTIONS:
        assert "give a folder name ('' is not taken as the current folder; write . for that)" in err, err
    else:
        assert "give a file name" in err and "folder" not in err and "write ." not in err, err
    assert list(tmp_path.iterdir()) == []


def _calibration_folder(folder: Path) -> Path:
    """``folder`` holding a valid HU -> SPR calibration (hu_spr.csv + hu_materials.csv: DCPT's brain curve), as a
    calibration folder, or a patient folder with a copy of its TPS's curve, does."""
    import shutil

    from mcproton._io.hu_calibration import DATA_DIR

    folder.mkdir(exist_ok=True)
    shutil.copy(DATA_DIR / "dcpt_spr_brain_hu_spr.csv", folder / "hu_spr.csv")
    shutil.copy(DATA_DIR / "dcpt_spr_brain_materials.csv", folder / "hu_materials.csv")
    return folder


EMPTY_NAMES = [
    (["check", "patient", "--beam-model", "dcpt_v5", "--out", "chk", "--calibration", ""], "--calibration"),
    (["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", "ph", "--calibration", ""],
     "--calibration"),
    (["check", "patient", "--beam-model", "", "--out", "chk"], "--beam-model"),
    (["commission", "--beam-model", "", "--spots", "s.csv", "--out", "cm"], "--beam-model"),
]


@pytest.mark.parametrize("argv,option", EMPTY_NAMES, ids=[" ".join(v) for v, _ in EMPTY_NAMES])
def test_an_empty_calibration_or_beam_model_is_refused_naming_the_option(argv, option, capsys, tmp_path,
                                                                          monkeypatch):
    """Review 26a, R2: `--calibration ''` (a shell variable left unset) was the current folder: where that held
    hu_spr.csv and hu_materials.csv, the check (and the phantom, exit 0) ran with that curve, not the default;
    `--beam-model ''` was refused as ". is a folder", naming neither the option nor the empty value."""
    monkeypatch.chdir(_calibration_folder(tmp_path))
    (tmp_path / "patient").mkdir()
    err = _parse_error(capsys, argv)
    what = "calibration" if option == "--calibration" else "beam model"
    assert f"argument {option}: an empty {what}: give a built-in" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hu_materials.csv", "hu_spr.csv", "patient"]


def test_the_loaders_refuse_an_empty_calibration_or_beam_model(tmp_path, monkeypatch):
    """The Python API (mcproton.check, HUCalibration.load, load_beam_model) too: "" took the current folder's
    calibration (review 26a, R2); "." still names it."""
    from mcproton.dicom import HUCalibration, load_beam_model
    from mcproton.errors import BeamModelError, CalibrationError

    monkeypatch.chdir(_calibration_folder(tmp_path))
    with pytest.raises(CalibrationError, match=r"the calibration is empty \(''\): give a built-in name"):
        HUCalibration.load("")
    with pytest.raises(BeamModelError, match=r"the beam model is empty \(''\): give a built-in model"):
        load_beam_model("")
    assert HUCalibration.load(".").name.startswith("hu_spr")   # the current folder's, asked for by its name


@pytest.mark.parametrize("key", ["phantom.calibration", "plan.beam_model", "phantom.ct_dir", "plan.rtplan",
                                 "plan.rtstruct", "output.rtdose"])
def test_a_config_refuses_an_empty_path_naming_the_key(key, tmp_path, monkeypatch):
    """phantom.calibration = "" was the config file's folder (its hu_spr.csv taken), plan.beam_model = "" was refused
    as ". is a folder", output.rtdose = "" was no RT Dose (review 26a, R2): in the file and with --set."""
    from mcproton.config import load_config
    from mcproton.errors import ConfigError

    cfg = _calibration_folder(tmp_path / "cfg") / "job.toml"
    sec, name = key.split(".")
    cfg.write_text(f'[{sec}]\n{name} = ""\n')
    monkeypatch.chdir(tmp_path)
    from mcproton.config import _NOT_EMPTY

    said = (f"{key} = '': an empty path; give {_NOT_EMPTY[key]} (\"\" is not taken as a folder, the config file's or "
            "the current one, nor as the key left out)")
    for path, sets in ((cfg, []), (None, [f'{key}=""']), (None, [f"{key}="])):
        with pytest.raises(ConfigError) as exc:
            load_config(path, sets)
        assert str(exc.value).startswith(said), str(exc.value)


def test_the_python_api_refuses_an_empty_output_folder(tmp_path, monkeypatch):
    from mcproton.commission import CommissionInputError, check_out_dir
    from mcproton.demo import run_demo

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--out is empty: give a folder"):
        run_demo("", primaries=100, voxel_mm=4.0, backend="cpu", quiet=True, age=200.0)   # the age: refused too
    with pytest.raises(CommissionInputError, match="--out is empty: give a folder"):
        check_out_dir("")
    assert list(tmp_path.iterdir()) == []


# --- F4: mcproton bench's options -----------------------------------------------------------------------------

BENCH_REFUSED = [
    (["--voxel-mm", "0"], "--voxel-mm 0"),   # was an internal error (ZeroDivisionError), exit 4
    (["--voxel-mm", "nan"], "--voxel-mm nan"),   # "cannot convert float NaN to integer"
    (["--voxel-mm", "-1"], "--voxel-mm -1"),
    (["--voxel-mm", "1000"], "--voxel-mm 1000"),
    (["--energy", "nan"], "--energy nan"),
    (["--energy", "inf"], "--energy inf"),
    (["--energy", "0.5"], "--energy 0.5"),   # a benchmark of 0.0 steps per proton, exit 0
    (["--energy", "400"], "--energy 400"),
    (["--repeats", "0"], "--repeats 0"),   # "best of 0", exit 0
    (["--repeats", "-3", "--json"], "--repeats -3"),   # {"repeats": -3}, exit 0
    (["--primaries", "0"], "--primaries 0"),   # "run.primaries must be ..."
    (["--simt", "--primaries", "0"], "--primaries 0"),   # ran the default 200000 histories
    (["--simt", "--repeats", "2"], "--repeats 2 with --simt"),   # ignored without a word
]


@pytest.mark.parametrize("args, said", BENCH_REFUSED, ids=[" ".join(a) for a, _ in BENCH_REFUSED])
def test_bench_refuses_an_option_out_of_range_before_any_work(args, said, capsys, monkeypatch):
    import mcproton._backend as backends
    import mcproton.bench as bench

    def no_backend(*a, **k):
        raise AssertionError("the backend was loaded before the refusal")

    monkeypatch.setattr(backends, "get_backend", no_backend)
    monkeypatch.setattr(bench, "get_backend", no_backend, raising=False)   # imported by the module before
    assert main(["bench", "--backend", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mcproton: error: {said}"), err


def test_bench_runs_with_the_options_given(capsys):
    import json

    from mcproton.bench import run_bench

    assert main(["bench", "--backend", "cpu", "--primaries", "300", "--energy", "70", "--voxel-mm", "4",
                 "--repeats", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["primaries"] == 300 and res["repeats"] == 1 and res["voxel_mm"] == 4.0 and res["steps_per_proton"] > 1
    with pytest.raises(ValueError, match="--repeats 0"):
        run_bench(backend="cpu", primaries=300, repeats=0)
    with pytest.raises(ValueError, match="--energy nan"):
        run_bench(backend="cpu", energy_mev=math.nan)


# --- F9: check --target-uncertainty 0 --------------------------------------------------------------------------

def test_target_uncertainty_zero_is_documented():
    help_text = next(a.help for a in command_parsers()["check"]._actions
                     if "--target-uncertainty" in a.option_strings)
    assert "0: no target, each beam runs all its --primaries" in help_text, help_text
    doc = " ".join((ROOT / "docs" / "check.md").read_text().split())
    assert "`0` sets no target: each beam runs all its `--primaries`" in doc

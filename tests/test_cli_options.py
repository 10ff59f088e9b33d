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
    (["demo", "--age", "200", "--prim", "100"], "--prim"),
    (["phantom", "--age", "200", "--out", "x", "--vox", "4"], "--vox"),
    (["validate", "--out", "x", "--cases", "nonesuch", "--bat", "4"], "--bat"),
])
def test_an_abbreviated_option_is_refused(argv, prefix, capsys, tmp_path, monkeypatch):
    """Each line is refused by another option too (a missing file, an age or energy out of range, an unknown case), so
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
    ["demo", "--age", "200", "--out", ""], ["phantom", "--age", "200", "--out", ""], ["validate", "--out", ""],
    ["check", "--out", ""], ["check", "", "--out", "x"], ["check", "--plan", "", "--out", "x"],
    ["check", "--ct", "", "--out", "x"], ["check", "--dose", "", "--out", "x"], ["check", "--struct", "", "--out", "x"],
    ["check", "--config", "", "--out", "x"],
    ["commission", "--beam-model", "dcpt_v5", "--spots", "s.csv", "--out", ""],
    ["commission", "--beam-model", "dcpt_v5", "--spots", "", "--out", "x"],
]


@pytest.mark.parametrize("argv", EMPTY_PATHS, ids=[" ".join(repr(a) if not a else a for a in v) for v in EMPTY_PATHS])
def test_an_empty_path_is_refused_and_nothing_is_written(argv, capsys, tmp_path, monkeypatch):
    """`demo --out ''` wrote the whole demo into the current folder (exit 0), and so did phantom and commission;
    `check --out ''` wrote check.json there; `run --rtdose ''` was taken as no --rtdose."""
    monkeypatch.chdir(tmp_path)
    err = _parse_error(capsys, argv)
    assert "an empty path" in err and "argument" in err, err
    assert list(tmp_path.iterdir()) == []


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

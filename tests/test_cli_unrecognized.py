"""An option that ``mcproton run`` or ``mcproton check`` does not take is refused by that command's parser (its usage,
"mcproton run: error: ..."), with what the command takes instead where that is known (the error-message audit 27,
F3): ``mcproton run --threads 1`` got the top-level usage and "unrecognized arguments: --threads 1", naming neither
the command nor run.threads, the config key that sets it; ``mcproton check --threads 2`` did not say that
OMP_NUM_THREADS sets the check's threads."""
from __future__ import annotations

import pytest

from fakes import log_lines  # tests/fakes.py
from mcproton.cli import CHECK_INSTEAD_OF_OPTION, RUN_KEY_OF_OPTION, command_parsers, main
from mcproton.config import SCHEMA


def _refusal(argv, capsys) -> tuple[str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = log_lines(capsys.readouterr().err)
    return err[0], err[-1]


@pytest.mark.parametrize("extra, said", [
    (["--threads", "1"], "--threads is run.threads (--set run.threads=1)"),
    (["--primaries", "1000"], "--primaries is run.primaries (--set run.primaries=1000)"),
    (["--seed=7"], "--seed is run.seed (--set run.seed=7)"),
    (["--backend", "cpu", "--time-limit", "60"], "--backend is run.backend (--set run.backend=cpu); --time-limit is "
                                                 "run.time_limit_s (--set run.time_limit_s=60)"),
    # a negative value is the option's (review c of audit 27, R2: VALUE), a whole number in digits (R3: 1e6 was
    # suggested as is, and run.primaries = 1e6 is a decimal, refused)
    (["--seed", "-1"], "--seed is run.seed (--set run.seed=-1)"),
    (["--primaries", "1e6"], "--primaries is run.primaries (--set run.primaries=1000000)"),
    (["--threads"], "--threads is run.threads (--set run.threads=VALUE)"),   # no value: VALUE
])
def test_run_names_the_config_key_of_another_command_s_option(extra, said, tmp_path, capsys):
    usage, line = _refusal(["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "o.h5"), *extra], capsys)
    assert usage.startswith("usage: mcproton run "), usage
    assert line == (f"mcproton run: error: unrecognized arguments: {' '.join(extra)}; mcproton run takes these "
                    f"settings from its config: {said}"), line


def _hint_of(argv, capsys) -> str:
    usage, line = _refusal(argv, capsys)
    assert usage.startswith(f"usage: mcproton {argv[0]} "), usage
    return line


@pytest.mark.parametrize("extra", [["--threads", "4"], ["--threads=4"]])
def test_the_value_is_the_one_after_the_option_on_the_command_line(extra, tmp_path, capsys):
    """An option before the config: argparse reads its value as the config file, and the config as unrecognized
    (review c of audit 27, R2: "--set run.threads=job.toml"): the value is the token after the option (or after its
    "="), and a value taken for the config is said, with the line as meant."""
    cfg = str(tmp_path / "job.toml")
    line = _hint_of(["run", *extra, cfg, "--out", str(tmp_path / "o.h5")], capsys)
    assert "(--set run.threads=4)" in line and "job.toml)" not in line, line
    if extra == ["--threads", "4"]:
        assert line.startswith(f"mcproton run: error: unrecognized arguments: --threads {cfg}; "), line
        assert line.endswith(f"; the 4 after --threads was read as the config file; the line as meant: mcproton run "
                             f"--set run.threads=4 {cfg} --out {tmp_path / 'o.h5'}"), line
    else:
        assert "read as" not in line, line


def test_the_line_as_meant_is_one_the_parser_takes(tmp_path, capsys):
    """Several options before the config, one a negative number: each its own value, and the line as meant parses
    with nothing left over."""
    import shlex

    from mcproton.cli import build_parser

    cfg = str(tmp_path / "my job.toml")
    line = _hint_of(["run", "--seed", "-1", "--primaries", "2e5", cfg, "--check-config"], capsys)
    assert "(--set run.seed=-1)" in line and "(--set run.primaries=200000)" in line, line
    said, meant = line.split("; the line as meant: mcproton ", 1)
    assert said.endswith("; the -1 after --seed was read as the config file"), line
    args, left = build_parser().parse_known_args(shlex.split(meant))
    assert not left and args.config == cfg and args.set == ["run.seed=-1", "run.primaries=200000"], meant


def test_the_line_as_meant_is_parsed_by_the_parser_that_refused_it(tmp_path, capsys, monkeypatch):
    """The refusal's line as meant is tried on the parser that parsed the command line, not on a second one built
    for it (the re-read of 2026-12-07, b 6: build_parser twice); the hint as before."""
    import mcproton.cli as cli

    built = []
    real = cli.build_parser

    def counted():
        built.append(1)
        return real()

    monkeypatch.setattr(cli, "build_parser", counted)
    cfg = str(tmp_path / "job.toml")
    line = _hint_of(["run", "--threads", "4", cfg], capsys)
    assert line.endswith(f"; the line as meant: mcproton run --set run.threads=4 {cfg}"), line
    assert len(built) == 1


def test_a_suggested_set_is_one_the_config_takes_as_meant():
    """--set run.primaries=1000000 is the whole number the config's integer key takes (1e6 is a decimal there)."""
    from mcproton.config import parse_override

    assert parse_override("run.primaries=1000000") == ("run", "primaries", 1000000)
    assert parse_override("run.primaries=1e6")[2] == 1e6 and isinstance(parse_override("run.primaries=1e6")[2], float)


def test_the_keys_that_are_not_the_option_s_setting_everywhere_say_so(tmp_path, capsys):
    """--beam-model is plan.beam_model for a [plan] config only; check's --target-uncertainty is the plan dose's
    target, run.target_uncertainty each beam's (review c of audit 27, R3: "is" equated them)."""
    line = _hint_of(["run", str(tmp_path / "job.toml"), "--beam-model", "dcpt_v5", "--target-uncertainty", "0.01"],
                    capsys)
    assert ("--beam-model is plan.beam_model, for a [plan] config only (a [beam] config takes no beam model) "
            "(--set plan.beam_model=dcpt_v5)") in line, line
    assert ("--target-uncertainty is run.target_uncertainty, the target of each beam's own dose (mcproton check's "
            "--target-uncertainty is the plan dose's: of n beams, t x sqrt(n) per beam) "
            "(--set run.target_uncertainty=0.01)") in line, line


def test_check_says_a_value_read_as_the_folder(tmp_path, capsys):
    line = _hint_of(["check", "--threads", "2", str(tmp_path), "--out", str(tmp_path / "c")], capsys)
    assert line.endswith("; the 2 after --threads was read as the FOLDER"), line


@pytest.mark.parametrize("before, hint", [
    (["--bogus"], ""),
    (["--quiet"], " (--quiet is an option of mcproton run: give it after the command word, mcproton run ...)")])
def test_an_option_before_the_command_is_refused_by_mcproton_s_parser(before, hint, tmp_path, capsys):
    """Given to mcproton, not to the command: the top-level usage and "mcproton: error:", as before the merge of
    the error messages (review c of audit 27, R4: run's usage and "mcproton run: error")."""
    usage, line = _refusal([*before, "run", str(tmp_path / "job.toml"), "--threads", "2"], capsys)
    assert usage.startswith("usage: mcproton [") and "usage: mcproton run" not in usage, usage
    assert line == f"mcproton: error: unrecognized arguments: {before[0]}{hint}", line


def test_an_unknown_option_is_refused_by_the_command_s_parser_alone(tmp_path, capsys):
    usage, line = _refusal(["run", str(tmp_path / "job.toml"), "--thread", "1"], capsys)
    assert usage.startswith("usage: mcproton run ")
    assert line == "mcproton run: error: unrecognized arguments: --thread 1", line


def test_check_names_omp_num_threads(tmp_path, capsys):
    usage, line = _refusal(["check", str(tmp_path), "--out", str(tmp_path / "c"), "--threads", "2"], capsys)
    assert usage.startswith("usage: mcproton check "), usage
    assert line.startswith("mcproton check: error: unrecognized arguments: --threads 2; --threads: the check's CPU "
                           "threads are set by OMP_NUM_THREADS"), line


def test_the_tables_name_options_of_other_commands_and_keys_of_the_config():
    """Each option of the tables is one that another command takes and this one does not, and each key is the
    config's."""
    options = {name: {o for a in p._actions for o in a.option_strings} for name, p in command_parsers().items()}
    for table, command in ((RUN_KEY_OF_OPTION, "run"), (CHECK_INSTEAD_OF_OPTION, "check")):
        for option in table:
            assert option not in options[command], option
            assert any(option in opts for name, opts in options.items() if name != command), option
    for key in RUN_KEY_OF_OPTION.values():
        section, name = key.split(".")
        assert name in SCHEMA[section], key

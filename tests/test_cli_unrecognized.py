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
])
def test_run_names_the_config_key_of_another_command_s_option(extra, said, tmp_path, capsys):
    usage, line = _refusal(["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "o.h5"), *extra], capsys)
    assert usage.startswith("usage: mcproton run "), usage
    assert line == (f"mcproton run: error: unrecognized arguments: {' '.join(extra)}; mcproton run takes these "
                    f"settings from its config: {said}"), line


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

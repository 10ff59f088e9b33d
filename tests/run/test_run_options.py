"""``mcproton run``'s options against their help (the CLI-help audit of 2026-12-07, audit 26): --check-config makes
the options' checks a run makes (F5), --workers and --scheduler are one or the other and an empty --scheduler is
refused (F6), --quiet leaves out the progress bar only (F11), --allow-empty's help says what it does not allow (F12)."""
from __future__ import annotations

import pytest
from run_helpers import refused_before_transport, write_cfg

from mcproton.cli import command_parsers, main


@pytest.fixture
def no_dask(monkeypatch):
    import mcproton._run.distributed as distributed

    def refuse(*a, **k):
        raise AssertionError("a Dask session was started")

    monkeypatch.setattr(distributed, "DaskSession", refuse)


@pytest.mark.parametrize("check_config", [True, False], ids=["--check-config", "run"])
@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_is_refused_with_check_config_as_by_the_run(workers, check_config, tmp_path, capsys,
                                                                     monkeypatch, no_dask):
    """--check-config passed --workers 0 and -3 (exit 0); the run refused them after the CT and plan were read."""
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    argv = ["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--workers", workers]
    msg = refused_before_transport([*argv, *(["--check-config"] if check_config else [])], capsys, monkeypatch)
    assert msg == f"mcproton: error: --workers must be >= 1; got {workers}", msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


@pytest.mark.parametrize("check_config", [True, False], ids=["--check-config", "run"])
@pytest.mark.parametrize("extra, said", [
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers 2 and --scheduler tcp://127.0.0.1:1: give one "
                                                             "of them"),
    (["--scheduler", ""], "--scheduler is empty: give the address of the Dask scheduler"),   # ran here, exit 0
    (["--scheduler", "  "], "--scheduler is empty"),
], ids=["workers and scheduler", "empty scheduler", "blank scheduler"])
def test_workers_with_a_scheduler_and_an_empty_scheduler_are_refused(extra, said, check_config, tmp_path, capsys,
                                                                     monkeypatch, no_dask):
    """A remote cluster has its own workers: --workers was dropped without a word; --scheduler '' ran locally."""
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    argv = ["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", *extra]
    msg = refused_before_transport([*argv, *(["--check-config"] if check_config else [])], capsys, monkeypatch)
    assert msg.startswith(f"mcproton: error: {said}"), msg


def _help(option: str) -> str:
    return " ".join(next(a.help for a in command_parsers()["run"]._actions if option in a.option_strings).split())


def test_quiet_keeps_the_backend_line(tmp_path, capsys):
    """--quiet hid the line naming the backend and device, the one place the console says which device computed the
    dose; it leaves out the progress bar only, as its help says."""
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--no-checkpoint"]) == 0
    err = capsys.readouterr().err
    assert "mcproton: backend cpu on CPU" in err, err
    assert "\r" not in err and "primaries/s" not in err, err   # no progress bar
    assert "no progress bar" in _help("--quiet") and "backend and device" in _help("--quiet")


def test_allow_empty_help_says_a_beam_missing_the_grid_is_refused_all_the_same(tmp_path, capsys, monkeypatch):
    """The help said it writes the output "even if ... most of the beam's energy missed"; a beam that misses the grid
    entirely is refused before the transport, with --allow-empty too."""
    text = _help("--allow-empty")
    assert "A beam whose every spot misses the grid is refused before the transport, with or without it" in text, text
    assert "--resume --allow-empty writes the run kept in the checkpoint" in text, text
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    msg = refused_before_transport(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--allow-empty",
                                    "--set", "beam.direction=[0,0,-1]"], capsys, monkeypatch)
    assert "every spot of beam 'beam' misses the phantom" in msg, msg

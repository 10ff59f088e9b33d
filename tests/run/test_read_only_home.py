"""A home that cannot be written (a read-only or missing home: containers, cluster nodes): matplotlib made its own
temporary folder and printed three lines on every run ("Matplotlib created a temporary cache directory ... it is
highly recommended to set the MPLCONFIGDIR environment variable"; the environment audit 19, F8).  The command line
now points MPLCONFIGDIR at a private temporary folder, for its own process, removed when it exits."""
from __future__ import annotations

import os
import subprocess
import sys

import mcproton._backend.cpu as cpu


def _run_with_a_read_only_home(small_cfg, tmp_path, name: str) -> subprocess.CompletedProcess:
    """``mcproton run`` (with a figure: matplotlib imported) where the home cannot be written, TMPDIR tmp_path/tmp."""
    (tmp_path / "file").write_text("")   # a home under a file stands for a read-only one: root writes anywhere else
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path / "file" / "home"), TMPDIR=str(tmp_path / "tmp"),
               **{cpu.CACHE_ENV: str(cpu.cache_dir())})   # this session's kernels: no compile
    out = tmp_path / f"{name}.h5"
    cfg = small_cfg(2000, name=f"{name}.toml")
    cfg.write_text(cfg.read_text().replace("plot = false", "plot = true"))   # matplotlib imported
    proc = subprocess.run([sys.executable, "-m", "mcproton.cli", "run", str(cfg), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.with_suffix(".png").is_file(), os.listdir(tmp_path)
    return proc


def test_a_home_that_cannot_be_written_gives_no_matplotlib_lines(small_cfg, tmp_path):
    """No "MPLCONFIGDIR" lines on any run; matplotlib's folder is kept in the per-user temporary folder, so that its
    font cache is built by the first run only (isolation audit 32, F5: a new folder per run rebuilt it on every run,
    6-8 s on two loaded cores, and past 5 s matplotlib said "Matplotlib is building the font cache" each time)."""
    first = _run_with_a_read_only_home(small_cfg, tmp_path, "first")
    assert "MPLCONFIGDIR" not in first.stderr, first.stderr
    kept = tmp_path / "tmp" / f"mcproton-{os.getuid()}" / "matplotlib"
    (fonts,) = kept.glob("fontlist-*.json")
    built = fonts.stat().st_mtime_ns
    second = _run_with_a_read_only_home(small_cfg, tmp_path, "second")
    assert "MPLCONFIGDIR" not in second.stderr and "Matplotlib" not in second.stderr, second.stderr
    assert fonts.stat().st_mtime_ns == built   # read, not built again
    assert os.listdir(tmp_path / "tmp") == [kept.parent.name]   # no folder per run


def test_a_per_user_folder_open_to_others_gives_a_private_folder_removed_at_exit(small_cfg, tmp_path):
    """Where the per-user temporary folder cannot be used (open to others: its files could be another user's), a
    private folder for the run, removed when it exits, as before."""
    shared = tmp_path / "tmp" / f"mcproton-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    proc = _run_with_a_read_only_home(small_cfg, tmp_path, "open")
    assert "MPLCONFIGDIR" not in proc.stderr, proc.stderr
    assert os.listdir(tmp_path / "tmp") == [shared.name] and os.listdir(shared) == []


def test_a_writable_home_or_a_set_mplconfigdir_is_left_alone(tmp_path, monkeypatch):
    from mcproton.cli import _private_matplotlib_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))   # to be made: its parent is writable
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    _private_matplotlib_dir()
    assert "MPLCONFIGDIR" not in os.environ and not (tmp_path / "home").exists()   # nothing made, nothing set
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "file"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))
    _private_matplotlib_dir()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")

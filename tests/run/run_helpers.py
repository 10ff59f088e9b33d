"""Helpers of the long-run tests: a small water-pencil config (CPU, 1 thread) and CLI runners."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CFG = """\
[run]
primaries = {primaries}
seed = 2024
backend = "cpu"
threads = 1
batches = 10
{run_extra}

[phantom]
type = "water"
size_mm = [40.0, 40.0, 100.0]
voxel_mm = [4.0, 4.0, 2.0]

[beam]
energy_mev = 90.0
energy_spread_mev = 0.5
position_mm = [0.0, 0.0, -10.0]
direction = [0.0, 0.0, 1.0]
sigma_mm = [3.0, 3.0]

[output]
plot = false
"""


def write_cfg(path: Path, primaries: int = 20000, **run_extra) -> Path:
    extra = "\n".join(f"{k} = {v!r}" for k, v in run_extra.items())
    path.write_text(CFG.format(primaries=primaries, run_extra=extra))
    return path


def cli(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mcproton.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mcproton {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def cli_popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mcproton.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def read_h5(path: Path) -> dict:
    from mcproton._io.hdf5 import read_dose_hdf5

    return read_dose_hdf5(path)


def no_transport(monkeypatch) -> None:
    """Make any transport fail the test (a --resume that must only write the outputs)."""
    import mcproton.run

    def transported(*a, **k):
        raise AssertionError("transported")

    monkeypatch.setattr(mcproton.run.Simulation, "run_histories", transported)
    monkeypatch.setattr(mcproton.run.Simulation, "run_histories_sparse", transported)


def refused_before_transport(argv: list[str], capsys, monkeypatch) -> str:
    """Run ``mcproton`` in-process with ``argv``, expecting a refusal before any transport (exit 2) of one line
    (any transport fails the test); returns that line."""
    from mcproton.cli import main

    no_transport(monkeypatch)
    assert main(argv) == 2
    from fakes import log_lines   # tests/fakes.py: the lines without their time of day

    err = [ln for ln in log_lines(capsys.readouterr().err) if ln.startswith("mcproton:")]
    assert len(err) == 1, err
    return err[0]

"""`mcproton run` gives the wall time of each phase of the job in its JSON summary (phase_s, issue 15 item 3),
and the process CPU time per phase (phase_cpu_s); the phases add up to the job's wall time."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from run_helpers import write_cfg

from mcproton.cli import main

CT_CFG = """\
[run]
primaries = 2000
seed = 7
backend = "cpu"
threads = 1
batches = 2

[phantom]
type = "ct"
ct_dir = "ct"
dose_voxel_mm = [4.0, 4.0, 4.0]

[beam]
energy_mev = 70.0
position_mm = [0.0, 0.0, -40.0]
direction = [0.0, 0.0, 1.0]
sigma_mm = [3.0, 3.0]
"""


def _run(argv: list[str], capsys) -> tuple[dict, float]:
    """The summary and the wall time of ``mcproton argv``, measured on a second, identical run (to other output
    files): the first one pays the imports of this process, which happen before the phases' clock starts (alone,
    the CT case measured 0.13 s of phases in 0.28 s of wall time, and the test failed now and then)."""
    warm = [a.replace(".h5", "_warm.h5").replace("_RD.dcm", "_warm_RD.dcm") for a in argv]
    assert main(warm) == 0
    capsys.readouterr()
    t = time.perf_counter()
    assert main(argv) == 0
    wall = time.perf_counter() - t
    return json.loads(capsys.readouterr().out), wall


#: what of the call's wall time (s) may lie outside the run's phases (its argument parsing and printing): 89 ms
#: measured on two cores at load average 10, where 50 ms failed the test (isolation audit 32, F6); under
#: :data:`BUILD_DELAY_S`, so that a kernel build left outside the phases still fails it
UNPHASED_S = 0.25
#: the delay (s) put into the kernel build of test_kernel_build_is_its_own_phase (a build on an empty kernel cache)
BUILD_DELAY_S = 1.0


def _check_sums(summary: dict, wall: float, want: set[str]) -> None:
    ph, cpu = summary["phase_s"], summary["phase_cpu_s"]
    assert want <= set(ph), sorted(want - set(ph))
    assert set(cpu) == set(ph) and all(v >= 0 for v in ph.values()) and all(v >= 0 for v in cpu.values())
    parts = sum(v for k, v in ph.items() if k != "total")
    # exclusive times: they add up to the total (rounding to 1 ms per phase), and the total is the call's wall
    # time less the argument parsing and the printing (well within 5 %, or UNPHASED_S on a loaded machine)
    assert parts == pytest.approx(ph["total"], abs=1e-3 * len(ph))
    assert ph["total"] <= wall and ph["total"] == pytest.approx(wall, rel=0.05, abs=UNPHASED_S)
    assert ph["transport"] > 0 and ph["transport"] >= summary["wall_s"] * 0.99


def test_water_run_has_phase_times(tmp_path, capsys):
    cfg = write_cfg(tmp_path / "w.toml", primaries=2000)
    text = cfg.read_text().replace("plot = false", "plot = true")
    cfg.write_text(text.replace("batches = 10", "batches = 2"))
    summary, wall = _run(["run", str(cfg), "--out", str(tmp_path / "w.h5"), "--rtdose",
                          str(tmp_path / "w_RD.dcm"), "--quiet", "--set", "beam.total_protons=1e9"], capsys)
    _check_sums(summary, wall, {"config", "input_checks", "geometry", "plan", "body_outline", "transport",
                                "result_checks", "hdf5", "summary", "rtdose", "plot", "other", "total"})


def test_ct_run_times_import_calibration_and_resampling(tmp_path, capsys):
    from mcproton._io.ct import write_ct_series

    hu = np.full((20, 16, 16), -1000, np.int16)
    hu[:, 2:14, 2:14] = 40                                   # a soft-tissue block in air
    write_ct_series(hu, (2.0, 2.0, 2.0), (-15.0, -15.0, -20.0), tmp_path / "ct")
    cfg = tmp_path / "ct.toml"
    cfg.write_text(CT_CFG)
    summary, wall = _run(["run", str(cfg), "--out", str(tmp_path / "ct.h5"), "--quiet", "--no-checkpoint"],
                         capsys)
    _check_sums(summary, wall, {"ct_import", "hu_to_material", "resampling", "geometry", "transport", "hdf5"})


def test_kernel_build_is_its_own_phase(tmp_path, capsys, monkeypatch):
    """The kernel build (the C++ / NVRTC compile on an empty kernel cache: seconds on a fresh machine; here a delay
    of BUILD_DELAY_S) is the phase kernel_build, not transport (the host audit of 2026-12-05, F3), and the phases
    still add up to the total."""
    from mcproton._backend.cpu import CpuBackend

    build = CpuBackend.compile

    def cold_build(self):
        time.sleep(BUILD_DELAY_S)
        build(self)

    monkeypatch.setattr(CpuBackend, "compile", cold_build)
    cfg = write_cfg(tmp_path / "w.toml", primaries=2000)
    summary, wall = _run(["run", str(cfg), "--out", str(tmp_path / "w.h5"), "--quiet", "--no-checkpoint"], capsys)
    _check_sums(summary, wall, {"kernel_build", "transport"})
    assert summary["phase_s"]["kernel_build"] >= BUILD_DELAY_S

"""The CPU backend records the OpenMP team the runtime gives it, not the threads asked for (the environment audit of
2026-12-06, F3).

With ``OMP_THREAD_LIMIT=1`` (set by some cluster environments) the transport ran on one thread, and with
``OMP_DYNAMIC=true`` on a loaded machine the OpenMP runtime shrank the team, while the device text of the summary
and the provenance said "(2 OpenMP threads)", with no warning that the run was slower.  The runtime's limit is now
asked through the kernel library's handle (the OpenMP runtime it is linked with) and caps the count recorded; dynamic
adjustment is recorded as "up to"; each is warned about once.  Each case runs in a fresh interpreter: the OpenMP
runtime reads these variables once, when it is loaded.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = r"""
import warnings
import mcproton as mcp

with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    r = mcp.simulate(mcp.box_phantom("water", (20, 20, 40), 2.0), mcp.Beam.pencil(60.0, position_mm=(0, 0, -1)),
                     mcp.RunSettings(primaries=300, backend="cpu", threads=2, seed=3))
print("DEVICE", r.device)
print("PROVENANCE", r.provenance["device"])
for w in rec:
    print("WARNING", str(w.message).replace("\n", " "))
"""


def _run(**env_extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    env.update(env_extra)
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_a_thread_limit_caps_the_recorded_count_and_is_warned_about():
    out = _run(OMP_THREAD_LIMIT="1")
    assert "(1 OpenMP thread: the OpenMP thread limit caps the 2 asked for)" in out, out
    assert "PROVENANCE CPU:" in out and "(2 OpenMP threads)" not in out, out
    warned = [line for line in out.splitlines() if line.startswith("WARNING") and "OMP_THREAD_LIMIT=1" in line]
    assert len(warned) == 1 and "not the 2 asked for" in warned[0] and "the dose is the same" in warned[0], out


def test_dynamic_adjustment_is_recorded_as_up_to_and_warned_about():
    out = _run(OMP_DYNAMIC="true")
    assert "(up to 2 OpenMP threads: OMP_DYNAMIC lets the runtime run fewer)" in out, out
    warned = [line for line in out.splitlines() if line.startswith("WARNING") and "OMP_DYNAMIC=true" in line]
    assert len(warned) == 1 and "OMP_DYNAMIC=false" in warned[0], out


@pytest.mark.parametrize("env", [{}, {"OMP_DYNAMIC": "false", "OMP_THREAD_LIMIT": "8"}])
def test_without_a_cap_the_device_says_the_threads_asked_for_and_nothing_is_warned(env):
    out = _run(**env)
    assert "DEVICE CPU:" in out and "(2 OpenMP threads)" in out, out
    assert "WARNING" not in out or not any(k in out for k in ("OMP_THREAD_LIMIT", "OMP_DYNAMIC")), out


@pytest.mark.parametrize("env, says", [({"OMP_THREAD_LIMIT": "1"}, "(1 OpenMP thread: the OpenMP thread limit caps "
                                                                   "the 2 asked for)"),
                                       ({"OMP_DYNAMIC": "true"}, "(up to 2 OpenMP threads: OMP_DYNAMIC lets"),
                                       ({"OMP_THREAD_LIMIT": "8"}, "(2 OpenMP threads)"),
                                       ({"OMP_THREAD_LIMIT": "x"}, "(2 OpenMP threads)")])
def test_the_device_says_the_team_before_the_first_launch(monkeypatch, env, says):
    """Review 2 of 2026-12-06, F8: ``mcproton run``'s first line ("backend cpu on CPU: ... (2 OpenMP threads)") is
    the backend's device text before its first launch, which gave the threads asked for; the warning and the summary
    that followed gave the thread limit's.  A new backend's text now says what the OpenMP environment allows (the
    runtime reads it when the kernel loads it; the first launch then asks the runtime itself)."""
    from mcproton._backend.cpu import CpuBackend

    for k in ("OMP_THREAD_LIMIT", "OMP_DYNAMIC"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert says in CpuBackend(2).device, CpuBackend(2).device


#: OMP_DYNAMIC values: libgomp reads "true"/"false" in any case, after white space; "1", "yes", "on" are refused
#: ("Invalid value") and leave dynamic adjustment off; "truex" is refused but leaves it on
DYNAMIC_VALUES = ["true", "TRUE", " True ", "\ttrue", "truex", "false", "FALSE", "1", "yes", "on", ".true.", "", " "]


@pytest.mark.parametrize("value", DYNAMIC_VALUES)
def test_omp_dynamic_is_read_as_libgomp_reads_it(value):
    """Review 5 of 2026-12-06, F5: the device text before the first launch took OMP_DYNAMIC=1, yes and on for on
    ("up to 2 OpenMP threads: OMP_DYNAMIC lets the runtime run fewer"); libgomp refuses those values and keeps
    dynamic adjustment off, so the launch, the summary and the HDF5 said "2 OpenMP threads".  Compared with
    libgomp's own omp_get_dynamic() under each value (a fresh interpreter: libgomp reads it when loaded)."""
    import ctypes.util

    from mcproton._backend.cpu import omp_dynamic_env

    if ctypes.util.find_library("gomp") is None:
        pytest.skip("no libgomp on this machine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    env["OMP_DYNAMIC"] = value
    r = subprocess.run([sys.executable, "-c", "import ctypes, ctypes.util; "
                        "print(ctypes.CDLL(ctypes.util.find_library('gomp')).omp_get_dynamic())"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert omp_dynamic_env(value) is bool(int(r.stdout.strip())), (value, r.stdout, r.stderr)


@pytest.mark.parametrize("value, up_to", [("1", False), ("yes", False), ("on", False), ("True", True)])
def test_the_device_text_reads_omp_dynamic_as_libgomp(monkeypatch, value, up_to):
    from mcproton._backend.cpu import CpuBackend

    monkeypatch.delenv("OMP_THREAD_LIMIT", raising=False)
    monkeypatch.setenv("OMP_DYNAMIC", value)
    device = CpuBackend(2).device
    assert ("(up to 2 OpenMP threads: OMP_DYNAMIC" in device) is up_to and ("(2 OpenMP threads)" in device) is not up_to


def test_the_team_and_fork_warnings_are_in_the_record_of_each_run(monkeypatch):
    """In-process audit 25, F4: the thread limit, dynamic adjustment and forked-child warnings were said once per
    process, so that only the first run or check of a process (a notebook, a pool worker's first task) recorded them
    in its provenance and report.  Now once in each run or check (a recording_warnings block), however many launches
    it makes, and once per process outside one."""
    import warnings

    from mcproton._backend import cpu
    from mcproton._io.errors import recording_warnings

    class Lib:   # the OpenMP runtime's answers, as the kernel library's handle gives them
        def __init__(self, limit: int, dynamic: int) -> None:
            self.omp_get_thread_limit, self.omp_get_dynamic = (lambda: limit), (lambda: dynamic)

    monkeypatch.setattr(cpu, "_TEAM_WARNED", set())
    monkeypatch.setattr(cpu, "_FORK_WARNED", set())
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    monkeypatch.setenv("OMP_DYNAMIC", "true")
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            with recording_warnings() as said:
                for _ in range(2):   # two launches (beams) of one run: each said once
                    assert cpu._runtime_team(Lib(1, 0), 4)[0] == 1
                    assert cpu._runtime_team(Lib(0, 1), 4)[0] == 4
                    cpu._warn_forked(4)
            records.append(said)
    assert [len(r) for r in records] == [3, 3] and records[0] == records[1], records
    assert records[0][0].startswith("the CPU backend runs on 1 OpenMP thread, not the 4 asked for")
    assert "OMP_DYNAMIC=true" in records[0][1] and records[0][2].startswith("this process was forked"), records
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # outside a run or check: once per process, said already
        cpu._runtime_team(Lib(1, 0), 4), cpu._runtime_team(Lib(0, 1), 4), cpu._warn_forked(4)

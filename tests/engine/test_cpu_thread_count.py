"""The CPU backend's default thread count (the deployment audit, F8 and F9).

F8: it was ``os.cpu_count()``, every CPU of the node, whatever the process may run on (``taskset``, a Slurm or
cgroup cpuset): 64 threads on a 4-core allocation, and a provenance recording threads the job did not have.  The
default is now the CPUs of the process's affinity (mcproton/_cpus.py), and so are the gamma workers of ``mcproton
check`` and the HDF5 compression threads.

F9: ``OMP_NUM_THREADS=4,1`` (an OpenMP list, valid), ``abc`` or ``-1`` stopped every command with "invalid literal
for int()" (or ran on "-1 threads"); a list now gives its first element, and a value that is not a positive whole
number is ignored with a warning naming the variable.

A CPU quota (``docker --cpus=2``, a Kubernetes CPU limit: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) was not
counted: a container given 2 CPUs' time on a 64-core node ran 64 throttled OpenMP threads.  It now caps the count
(the quota over the period, rounded up); the tests lay out a fake ``/proc`` and ``/sys/fs/cgroup``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
from fakes import cgroup_fs   # tests/fakes.py

from mcproton import _cpus
from mcproton._io.errors import McprotonWarning


@pytest.fixture(autouse=True)
def no_quota(monkeypatch):
    """The machine running the tests may itself have a CPU quota (a CI container): no quota unless a test sets
    one."""
    monkeypatch.setattr(_cpus, "cpu_quota", lambda root="/": None)


@pytest.fixture
def affinity(monkeypatch):
    """Make the process's CPU affinity look like ``cpus`` (a set), on a machine of 64 CPUs."""
    def set_affinity(cpus: set[int]) -> None:
        monkeypatch.delattr(os, "process_cpu_count", raising=False)   # Python >= 3.13: the same affinity
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cpus), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 64)

    return set_affinity


def test_usable_cpus_is_the_affinity_not_the_machine(affinity):
    affinity({0, 1, 2, 3})
    assert _cpus.usable_cpus() == 4


def test_usable_cpus_without_an_affinity_is_the_machines_count(monkeypatch):
    monkeypatch.delattr(os, "process_cpu_count", raising=False)
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert _cpus.usable_cpus() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)   # "cannot be determined"
    assert _cpus.usable_cpus() == 1


def test_usable_cpus_uses_process_cpu_count_where_it_exists(monkeypatch):
    """Python >= 3.13: os.process_cpu_count() (the affinity, or -X cpu_count / PYTHON_CPU_COUNT)."""
    monkeypatch.setattr(os, "process_cpu_count", lambda: 3, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert _cpus.usable_cpus() == 3


REAL_CPU_QUOTA = _cpus.cpu_quota   # before the autouse fixture replaces it


@pytest.mark.parametrize("proc, files, quota", [
    # cgroup v2 in a container with its own cgroup namespace (docker --cpus=2)
    ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),   # no quota
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
    # v2 on a host: a Slurm/systemd slice with a quota on the parent of the job's cgroup (the smallest counts)
    ("0::/job/step\n", {"cpu.max": "max 100000", "job/cpu.max": "400000 100000", "job/step/cpu.max": "max 100000"},
     4.0),
    # v2 without a cgroup namespace: /proc names the host's path; the container's own cgroup is the mount
    ("0::/docker/abc\n", {"cpu.max": "300000 100000"}, 3.0),
    # cgroup v1 (docker on older hosts): cpu,cpuacct controller
    ("12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n",
     {"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
    ("2:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ("2:cpu:/\n", {}, None),   # no controller files
    ("garbage\n", {}, None),
])
def test_cpu_quota_read_from_the_cgroup(tmp_path, proc, files, quota):
    assert REAL_CPU_QUOTA(cgroup_fs(tmp_path, proc, files)) == quota


def test_cpu_quota_without_proc_is_none(tmp_path):
    assert REAL_CPU_QUOTA(tmp_path) is None


@pytest.mark.parametrize("quota, cpus", [(2.0, 2), (1.5, 2), (0.5, 1), (100.0, 4), (None, 4)])
def test_usable_cpus_is_capped_by_the_cpu_quota(affinity, monkeypatch, quota, cpus):
    """A container given 2 CPUs' time (docker --cpus=2) on a node whose affinity shows 4 (here) or 64 runs 2
    threads; a fractional quota rounds up; a quota above the affinity does not raise it."""
    affinity({0, 1, 2, 3})
    monkeypatch.setattr(_cpus, "cpu_quota", lambda root="/": quota)
    assert _cpus.usable_cpus() == cpus


@pytest.mark.parametrize("value, threads", [("4", 4), (" 8 ", 8), ("4,1", 4), ("6, 2, 1", 6), ("", None)])
def test_omp_num_threads_as_openmp_reads_it(value, threads):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cpus.omp_num_threads({"OMP_NUM_THREADS": value}) == threads
    assert _cpus.omp_num_threads({}) is None


@pytest.mark.parametrize("value", ["abc", "-1", "0", "4.5", "4,abc", ",4", "4,0", "٣"])
def test_omp_num_threads_not_a_positive_number_is_ignored_with_a_note(value):
    with pytest.warns(McprotonWarning, match=r"OMP_NUM_THREADS=.* is ignored: it is not a positive whole number"):
        assert _cpus.omp_num_threads({"OMP_NUM_THREADS": value}) is None


def test_cpu_backend_default_threads(affinity, monkeypatch):
    """CpuBackend() runs on OMP_NUM_THREADS's first element, else on the CPUs of the affinity; an explicit
    thread count wins; the device text (recorded in every result's provenance) says the count used."""
    from mcproton._backend.cpu import CpuBackend

    affinity({0, 1, 2, 3})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    be = CpuBackend()
    assert be.threads == 4 and be.device.endswith("(4 OpenMP threads)")
    monkeypatch.setenv("OMP_NUM_THREADS", "4,1")
    assert CpuBackend().threads == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert CpuBackend().threads == 2 and CpuBackend(threads=3).threads == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "-1")
    with pytest.warns(McprotonWarning, match="OMP_NUM_THREADS='-1' is ignored"):
        assert CpuBackend().threads == 4


def test_the_default_thread_count_is_read_at_each_run_of_a_long_lived_process(affinity, monkeypatch):
    """get_backend kept the CPU backend of the first run, with the thread count of that moment: a notebook that
    then lowered OMP_NUM_THREADS, or pinned itself to one CPU, still ran 2 OpenMP threads (the long-lived-process
    audit, F6).  The default is now read at each call (the dose does not depend on it); a given count wins."""
    from mcproton._backend import get_backend

    affinity({0, 1, 2, 3})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert get_backend("cpu").threads == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert get_backend("cpu").threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    affinity({0, 1})
    assert get_backend("cpu").threads == 2 and get_backend("cpu", 3).threads == 3
    assert get_backend("cpu") is get_backend("cpu")   # one backend (its loaded kernels) per thread count


def test_omp_num_threads_above_the_usable_cpus_is_kept_with_one_warning(affinity, monkeypatch):
    """The automation audit (F7): OMP_NUM_THREADS=64 on 2 CPUs ran 64 threads, 2.2-2.6 x slower than 2, without a
    word.  It is still taken (the user's choice), with one warning per value naming the CPUs; at or below the
    usable CPUs, nothing is said."""
    from mcproton._backend.cpu import CpuBackend

    affinity({0, 1})
    monkeypatch.setattr(_cpus, "cpu_quota", lambda root="/": None)
    monkeypatch.setattr(_cpus, "_OVERSUBSCRIBED", set())
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    with pytest.warns(McprotonWarning, match=r"OMP_NUM_THREADS=64 is more than the 2 CPU\(s\) this process may use"):
        assert CpuBackend().threads == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CpuBackend().threads == 64                   # once per value
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert CpuBackend().threads == 2


AFFINITY_CODE = r"""
import json, os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import mcproton as mcp
from mcproton._backend.cpu import CpuBackend
r = mcp.simulate(mcp.box_phantom("water", (10, 10, 20), 2.0), mcp.Beam.pencil(60.0, position_mm=(0, 0, -1)),
                 mcp.RunSettings(primaries=200, backend="cpu", seed=1), progress=False)
print(json.dumps({"threads": CpuBackend().threads, "device": r.device, "cpu_count": os.cpu_count()}))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity (Linux)")
def test_a_run_pinned_to_one_cpu_runs_and_records_one_thread():
    """In a process pinned to one CPU (as ``taskset -c 0``), a run uses and records 1 OpenMP thread."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    p = subprocess.run([sys.executable, "-c", AFFINITY_CODE], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["threads"] == 1 and r["device"].endswith("(1 OpenMP threads)"), r


@pytest.mark.parametrize("value", ["4,1", "abc"])
def test_info_runs_with_an_openmp_list_or_a_bad_value(value):
    """`mcproton info` (and every other command) runs with OMP_NUM_THREADS=4,1; a bad value is a warning line."""
    env = dict(os.environ, OMP_NUM_THREADS=value)
    p = subprocess.run([sys.executable, "-m", "mcproton.cli", "info"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert "invalid literal" not in p.stdout + p.stderr
    if value == "abc":
        assert "OMP_NUM_THREADS='abc' is ignored" in p.stderr
    else:
        assert "(4 OpenMP threads)" in p.stdout, p.stdout


def test_info_says_that_the_cpu_backend_refuses_omp_num_threads_above_the_limit():
    """`mcproton info` with OMP_NUM_THREADS=100000: the CPU backend a run would use is refused (the concurrency audit
    25, F6), so info says so (cpu: False, the refusal as cpu_error) and, with no GPU, exits 3 as with no usable
    backend (1 before audit 26 exitcodes F9: 3 as run and bench), instead of printing "100000 OpenMP threads" and
    exit status 0."""
    env = dict(os.environ, OMP_NUM_THREADS="100000")
    p = subprocess.run([sys.executable, "-m", "mcproton.cli", "info", "--json"], capture_output=True, text=True,
                       env=env, timeout=300)
    info = json.loads(p.stdout)
    assert info["backends"]["cpu"] is False and "OMP_NUM_THREADS=100000 asks for" in info["cpu_error"], info
    assert p.returncode == (0 if info["backends"]["cuda"] else 3), p.stderr


def test_no_work_is_sized_by_the_machines_cpu_count():
    """Every count of CPUs that sizes work (threads, workers) is usable_cpus(), not os.cpu_count(): the only
    os.cpu_count() left are _cpus.py's fall-back and check.json's record of the machine (beside cpus_usable)."""
    import re
    from pathlib import Path

    import mcproton

    root = Path(mcproton.__file__).parent
    found = []
    for f in sorted(root.rglob("*.py")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"\bcpu_count\(\)", line) and f.name != "_cpus.py":
                found.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
    assert len(found) == 1 and '"cpu_count": os.cpu_count()' in found[0], found


@pytest.mark.parametrize("value", ["", "  ", "abc", "0", "-1", "2.5", "4,abc"])
def test_a_blank_or_bad_omp_num_threads_is_unset_for_the_openmp_runtime_too(value):
    """OMP_NUM_THREADS= (``export OMP_NUM_THREADS=$N`` with N unset): mcproton takes it as unset, and libgomp, loaded
    with the kernel, printed "libgomp: Invalid value for environment variable OMP_NUM_THREADS" with no word from
    mcproton (the environment audit 19, F8); now it is removed from the process's environment before the kernel is
    loaded, and the run says nothing about it.  So is a value that is not a thread count (``abc``, ``0``, ``-1``,
    ``2.5``): mcproton says once that it ignores it, and libgomp said it again in its own words (the concurrency
    audit 25, F6)."""
    code = AFFINITY_CODE.replace("os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n", "")
    env = dict(os.environ, OMP_NUM_THREADS=value)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "libgomp" not in p.stderr, p.stderr
    if value.strip():
        assert p.stderr.count("is ignored") == 1 and f"OMP_NUM_THREADS={value!r} is ignored" in p.stderr, p.stderr
    else:
        assert "OMP_NUM_THREADS" not in p.stderr, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["threads"] == _cpus.usable_cpus()


@pytest.mark.parametrize("value", ["100000", "40000,1", "99999999999"])
def test_omp_num_threads_above_the_thread_limit_is_refused_as_run_threads_is(affinity, monkeypatch, value):
    """The concurrency audit 25, F6: run.threads = 1000 is refused ("thousands abort or crash the run"), but the same
    count from OMP_NUM_THREADS (the only way to set mcproton check's threads) was taken with a warning of
    oversubscription: 40000 made libgomp abort the process (exit status 1, a FAIL to a script, the locks left
    behind), and 99999999999 ran out of memory after a warning that "the dose is the same, the run slower".  It is
    refused now (a ValueError: exit status 2), naming the variable, where the settings are made and where the CPU
    backend takes its default; a count given (run.threads) or the GPU backend does not use it."""
    from mcproton._backend.cpu import CpuBackend
    from mcproton.settings import RunSettings, thread_limit

    affinity({0, 1})   # 64 CPUs in the machine: the limit is 256
    assert thread_limit() == 256
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    for make in (RunSettings, CpuBackend, _cpus.default_threads):
        with pytest.raises(ValueError, match=rf"OMP_NUM_THREADS={value} asks for [0-9,]+ CPU threads, more than "
                                             r"mcproton accepts here \(256: .* set OMP_NUM_THREADS to at most the 2 "
                                             r"CPU\(s\) this process may use, or unset it"):
            make()
    assert RunSettings(threads=2).threads == 2 and RunSettings(backend="cuda").threads is None
    monkeypatch.setenv("OMP_NUM_THREADS", "256")   # at the limit: taken (with the oversubscription warning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert RunSettings().threads is None and _cpus.default_threads() == 256


def test_a_run_and_a_check_refuse_omp_num_threads_above_the_limit_before_anything_is_locked(tmp_path):
    """The audit's reproduction: ``OMP_NUM_THREADS=40000 mcproton run`` exited 1 with libgomp's line and its lock
    files left, and ``mcproton check --json`` printed nothing and recorded nothing.  Now both exit 2 before any lock
    or transport, ``run --check-config`` too, and the check's --json prints its record ("refused")."""
    cfg = tmp_path / "w.toml"
    cfg.write_text('[run]\nprimaries = 100\nbackend = "cpu"\n\n[phantom]\ntype = "water"\n'
                   'size_mm = [10.0, 10.0, 20.0]\nvoxel_mm = [2.0, 2.0, 2.0]\n\n[beam]\nenergy_mev = 60.0\n'
                   'position_mm = [0.0, 0.0, -1.0]\n\n[output]\nplot = false\n')
    env = dict(os.environ, OMP_NUM_THREADS="100000")
    for extra in (["--check-config"], ["--out", str(tmp_path / "o" / "w.h5"), "--quiet"]):
        p = subprocess.run([sys.executable, "-m", "mcproton.cli", "run", str(cfg), *extra], capture_output=True,
                           text=True, env=env, timeout=300)
        assert p.returncode == 2 and "OMP_NUM_THREADS=100000 asks for 100,000 CPU threads" in p.stderr, p.stderr
        assert "\nlibgomp" not in p.stderr and p.stderr.count("\n") == 1, p.stderr   # one line: mcproton's
    assert not (tmp_path / "o").exists(), "refused before any lock or output"
    out = tmp_path / "chk"
    p = subprocess.run([sys.executable, "-m", "mcproton.cli", "check", str(tmp_path / "patient"), "--out", str(out),
                        "--beam-model", "dcpt_v5", "--json", "--quiet"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 2, p.stderr
    record = json.loads(p.stdout)
    assert record["status"] == "refused" and "OMP_NUM_THREADS=100000" in record["error"], record
    assert not out.exists() or not list(out.glob("*.lock")) and not (out / ".mcproton-lock").exists()


def test_each_run_of_a_process_records_omp_num_threads_above_the_cpus(affinity, monkeypatch):
    """In-process audit 25, F4: the warning was said once per value and process, so a second simulate (a notebook's
    next cell) had nothing in its provenance of the oversubscribed threads it ran on."""
    import mcproton as mcp

    affinity({0})
    monkeypatch.setattr(_cpus, "_OVERSUBSCRIBED", set())
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    geom = mcp.box_phantom("water", (20, 20, 40), 2.0)
    beam = mcp.Beam.pencil(60.0, position_mm=(0, 0, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [mcp.simulate(geom, beam, mcp.RunSettings(primaries=200, backend="cpu", seed=1), log=None)
                for _ in range(2)]
    for r in runs:
        said = r.provenance.get("warnings", [])
        assert sum(w.startswith("OMP_NUM_THREADS=2 is more than the 1 CPU(s) this process may use") for w in said) \
            == 1, said

"""A cgroup memory limit (Slurm ``--mem``, ``docker --memory``, Kubernetes limits) counts in the memory check before
the transport, as ``ulimit -v`` does (the cluster audit, F1: a run needing 1.7 GB in a 600 MB cgroup was accepted
by ``--check-config``, then killed by the kernel with no message and its lock files left behind); ``--check-config``
prints the run's memory estimate and what bounds it, so that ``--mem`` can be sized from it."""
from __future__ import annotations

import json

import pytest
from fakes import cgroup_fs   # tests/fakes.py
from make_bad_input_table import BASE

from mcproton import _cpus
from mcproton._run import inputs
from mcproton.cli import main

GB = 10 ** 9


@pytest.mark.parametrize("proc, files, left", [
    # cgroup v2 in a container (docker --memory=2g): 2 GB, 0.5 GB used
    ("0::/\n", {"memory.max": f"{2 * GB}\n", "memory.current": f"{GB // 2}\n"}, 1.5 * GB),
    ("0::/\n", {"memory.max": "max\n", "memory.current": "123\n"}, None),   # no limit
    # v2 on a Slurm node: the job's cgroup has the limit, the step's none; the page cache is not counted as used
    ("0::/job_7/step_0\n", {"memory.max": "max", "job_7/memory.max": f"{GB}", "job_7/memory.current": f"{GB // 2}",
                            "job_7/memory.stat": f"anon 1\ninactive_file {GB // 4}\n",
                            "job_7/step_0/memory.max": "max"}, 0.75 * GB),
    # the smallest along the path counts
    ("0::/a/b\n", {"a/memory.max": f"{4 * GB}", "a/memory.current": "0", "a/b/memory.max": f"{3 * GB}",
                   "a/b/memory.current": f"{GB}"}, 2 * GB),
    # cgroup v1 (the audit's machine): the memory controller's hierarchy; "unlimited" is the huge number
    ("4:memory:/slurm/job_1\n1:cpu:/\n", {"memory/slurm/job_1/memory.limit_in_bytes": f"{600 * 10 ** 6}",
                                         "memory/slurm/job_1/memory.usage_in_bytes": f"{100 * 10 ** 6}",
                                         "memory/memory.limit_in_bytes": "9223372036854771712"}, 500e6),
    ("4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712"}, None),
    ("4:memory:/\n", {}, None),
    ("garbage\n", {}, None),
])
def test_cgroup_memory_read_from_the_cgroup(tmp_path, proc, files, left):
    got = _cpus.cgroup_memory(cgroup_fs(tmp_path, proc, files))
    if left is None:
        assert got is None
    else:
        assert got is not None and got[0] == pytest.approx(left) and "cgroup memory limit" in got[1], got


def test_cgroup_memory_without_proc_is_none(tmp_path):
    assert _cpus.cgroup_memory(tmp_path) is None


def _limit(monkeypatch, left: float) -> None:
    monkeypatch.setattr(_cpus, "cgroup_memory", lambda root="/": (
        left, f"the cgroup memory limit of {left / GB:.1f} GB (memory.max; Slurm --mem)"))


def test_a_run_over_the_cgroup_memory_limit_is_refused_naming_it(monkeypatch):
    """300 M voxels need at least 0.9 GB however little of them gets dose: refused in a 0.6 GB cgroup whatever the
    machine's free memory, naming the cgroup limit (before: accepted, then killed by the OOM killer)."""
    _limit(monkeypatch, 0.6 * GB)
    mem = inputs.available_memory()
    assert mem is not None and mem.available <= 0.6 * GB and mem.swap == 0.0 and "cgroup" in mem.limit
    with pytest.raises(Exception, match=r"needs at least 31\.2 GB.*only 0\.6 GB are available.*cgroup memory limit"):
        inputs.check_memory(300_000_000, 1, (100, 1000, 3000), False)


def test_a_generous_cgroup_limit_does_not_bound_the_check(monkeypatch):
    _limit(monkeypatch, 1e18)
    mem = inputs.available_memory()
    assert mem is not None and "cgroup" not in mem.limit


def test_check_config_prints_the_memory_estimate_and_the_limit(tmp_path, capsys, monkeypatch):
    _limit(monkeypatch, 0.6 * GB)
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE)
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    assert got["memory_estimate_gb"] == pytest.approx(inputs.host_memory_estimate(10 * 10 * 50) / GB, abs=0.01)
    assert got["memory_available_gb"] <= 0.6 and "cgroup memory limit" in got["memory_limit"], got


def _linux_without_meminfo(monkeypatch, meminfo: str | None) -> None:
    """Linux where /proc/meminfo cannot be read (``meminfo`` None: a sandbox without /proc) or has no MemAvailable
    (a kernel before 3.14); the rest of /proc cannot be read either."""
    import builtins
    import io

    def fake_open(path, *a, **k):
        if str(path) == "/proc/meminfo" and meminfo is not None:
            return io.StringIO(meminfo)
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return builtins.open(path, *a, **k)

    monkeypatch.setattr(inputs, "open", fake_open, raising=False)
    monkeypatch.setattr(inputs, "_on_linux", lambda: True)


OLD_KERNEL = "MemTotal:       32000000 kB\nMemFree:        20000000 kB\nCached:          8000000 kB\n"


@pytest.mark.parametrize("meminfo", [None, OLD_KERNEL], ids=["no /proc/meminfo", "no MemAvailable"])
def test_without_memavailable_the_cgroup_limit_still_bounds_the_check(monkeypatch, meminfo):
    """Review c of audit 27, R6: where /proc/meminfo gives no MemAvailable, the machine's memory came from sysconf
    and the cgroup limit was not applied: a run over the limit was accepted and killed by the kernel."""
    _linux_without_meminfo(monkeypatch, meminfo)
    _limit(monkeypatch, 0.6 * GB)
    mem = inputs.available_memory()
    assert mem is not None and mem.available <= 0.6 * GB and mem.swap == 0.0 and "cgroup" in mem.limit, mem
    with pytest.raises(Exception, match=r"needs at least 31\.2 GB.*only 0\.6 GB are available.*cgroup memory limit"):
        inputs.check_memory(300_000_000, 1, (100, 1000, 3000), False)


@pytest.mark.parametrize("meminfo", [None, OLD_KERNEL], ids=["no /proc/meminfo", "no MemAvailable"])
def test_without_memavailable_ulimit_v_still_bounds_the_check(monkeypatch, meminfo):
    """The same for an address-space limit (ulimit -v): applied, what of it is in use said to be unknown where
    /proc/self/statm cannot be read."""
    import resource

    _linux_without_meminfo(monkeypatch, meminfo)
    monkeypatch.setattr(_cpus, "cgroup_memory", lambda root="/": None)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (int(0.8 * GB), resource.RLIM_INFINITY))
    mem = inputs.available_memory()
    assert mem is not None and mem.available == pytest.approx(0.8 * GB) and mem.allocated_counts, mem
    assert mem.limit == ("the address-space limit (ulimit -v) of 0.8 GB (what of it is in use cannot be read: no "
                         "/proc/self/statm)"), mem


def test_where_only_a_limit_can_be_read_it_bounds_the_check(monkeypatch):
    """Nothing of the machine's memory read (no /proc/meminfo, no sysconf), a cgroup limit read: the limit is what
    the run may use, not an unchecked run."""
    _linux_without_meminfo(monkeypatch, None)
    monkeypatch.setattr(inputs, "_memory_without_proc", lambda: None)
    _limit(monkeypatch, 0.6 * GB)
    mem = inputs.available_memory()
    assert mem is not None and mem.available == 0.6 * GB and "cgroup" in mem.limit, mem


def test_the_docs_state_the_run_estimate_of_the_code():
    """README and docs/check.md give `mcproton run`'s memory estimate per voxel (mcproton/_run/inputs.py
    HOST_BYTES_*); review b, R5: docs/check.md still said 200 / 100 bytes after the code moved to 230 / 130."""
    from pathlib import Path

    from mcproton._run.inputs import HOST_BYTES_BASE, HOST_BYTES_PER_VOXEL, HOST_BYTES_PER_VOXEL_AND_BEAM

    root = Path(__file__).resolve().parents[2]
    stated = (f"0.15 GB + {HOST_BYTES_PER_VOXEL} bytes per voxel for one beam and {HOST_BYTES_PER_VOXEL_AND_BEAM} "
              "more per")
    assert HOST_BYTES_BASE == 0.15e9
    for doc in ("README.md", "docs/check.md"):
        text = " ".join((root / doc).read_text(encoding="utf-8").split())
        assert stated in text, f"{doc} does not state the estimate of the code: {stated!r}"

"""mcproton info (the deployment audit of 2026-12-05, F5 and F12): with no usable backend it says auto_backend: none
and exits 1 (it said cpu and exited 0 with no compiler); it shows the kernel cache and whether it can be written,
and the optional packages."""
from __future__ import annotations

import json
import sys

import pytest

import mcproton._backend as backends
import mcproton._backend.cpu as cpu
from mcproton.cli import main


@pytest.fixture
def fresh_backends():
    backends.get_backend.cache_clear()
    yield
    backends.get_backend.cache_clear()


def test_info_with_no_backend_says_none_and_exits_1(fresh_backends, monkeypatch, tmp_path, capsys):
    def none():
        raise RuntimeError("no C++ compiler found for the CPU backend")

    monkeypatch.setattr(cpu, "find_compiler", none)
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "empty"))   # and no cached kernel to use without one
    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no GPU (test)"))
    assert main(["info", "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["auto_backend"] == "none" and info["backends"] == {"cpu": False, "cuda": False}
    assert "no C++ compiler" in info["cpu_error"] and cpu.CACHE_ENV in info["cpu_error"]


def test_info_shows_the_kernel_cache_and_the_optional_packages(fresh_backends, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "k"))
    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no GPU (test)"))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["auto_backend"] == "cpu"
    assert info["kernel_cache"] == {"folder": str(tmp_path / "k"), "writable": True}
    assert set(info["optional"]) >= {"pymedphys", "cupy", "numba", "distributed"}
    assert "for the GPU backend" in info["optional"]["cupy"]
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "file" / "k"))   # cannot be created: as a read-only home
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    main(["info"])
    out = capsys.readouterr().out
    assert "writable: False" in out and f"fallback: {tmp_path / 'tmp'}" in out


def test_info_names_pymedphys_as_missing_where_it_cannot_be_imported(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pymedphys", None)   # as a plain install on Python 3.13
    main(["info"])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("pymedphys:"))
    assert "missing (for mcproton check's 3-D gamma): pip install 'pymedphys>=0.41'" in line


def test_info_shows_the_cpus_with_a_cpu_quota(fresh_backends, monkeypatch, capsys):
    """In a container given 2 CPUs' time (docker --cpus=2) on a node whose affinity shows 64 CPUs, info says 2
    usable, the affinity, the quota and the machine's count (mcproton/_cpus.py)."""
    from mcproton import _cpus

    monkeypatch.delattr(_cpus.os, "process_cpu_count", raising=False)
    monkeypatch.setattr(_cpus.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(_cpus, "cpu_quota", lambda root="/": 2.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no GPU (test)"))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cpus"]["usable"] == 2 and info["cpus"]["affinity"] == 64
    assert info["cpus"]["quota"] == "2 CPUs' time (cgroup CPU quota)"
    assert info["cpu_device"].endswith("(2 OpenMP threads)"), info["cpu_device"]


def test_info_says_a_pymedphys_that_is_installed_but_cannot_be_imported(monkeypatch, tmp_path, capsys):
    """A broken pymedphys (found, its distribution's version known, its import failing) was listed with its version,
    while mcproton check refused for it (audit 24 "docs" F1): info now tries the import and gives the reason."""
    shadow = tmp_path / "site" / "pymedphys"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("a broken pymedphys (test)")\n')
    for name in [m for m in sys.modules if m == "pymedphys" or m.startswith("pymedphys.")]:
        monkeypatch.delitem(sys.modules, name)   # restored after the test
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    main(["info"])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("pymedphys:"))
    assert "installed" in line and "but cannot be imported: ImportError: a broken pymedphys (test)" in line, line
    assert "for mcproton check's 3-D gamma" in line and "pip install --force-reinstall 'pymedphys>=0.41'" in line
    assert "pymedphys" not in sys.modules   # the failed import left nothing behind


def test_info_imports_pymedphys_only_when_asked():
    """``import mcproton`` does not import pymedphys (info does, when run)."""
    import subprocess

    code = "import sys, mcproton, mcproton.cli; print('pymedphys' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

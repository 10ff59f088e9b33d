"""mcproton info (the deployment audit of 2026-12-05, F5 and F12): with no usable backend it says auto_backend: none
and exits 1 (it said cpu and exited 0 with no compiler; and with a compiler that cannot build the CPU kernel until
the packaging audit of 2026-12-07, F3); it shows the kernel cache and whether it can be written, and the optional
packages."""
from __future__ import annotations

import json
import sys

import pytest

import mcproton._backend as backends
import mcproton._backend.cpu as cpu
from mcproton.cli import main

from fakes import no_openmp_compiler_on_path   # tests/fakes.py


@pytest.fixture
def fresh_backends():
    backends.get_backend.cache_clear()
    yield
    backends.get_backend.cache_clear()


def test_info_with_no_backend_says_none_and_exits_3(fresh_backends, monkeypatch, tmp_path, capsys):
    def none():
        raise RuntimeError("no C++ compiler found for the CPU backend")

    monkeypatch.setattr(cpu, "find_compiler", none)
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "empty"))   # and no cached kernel to use without one
    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no GPU (test)"))
    assert main(["info", "--json"]) == 3
    info = json.loads(capsys.readouterr().out)
    assert info["auto_backend"] == "none" and info["backends"] == {"cpu": False, "cuda": False}
    assert "no C++ compiler" in info["cpu_error"] and cpu.CACHE_ENV in info["cpu_error"]


def test_info_with_a_compiler_that_cannot_build_the_kernel_says_cpu_false_and_exits_3(fresh_backends, monkeypatch,
                                                                                       tmp_path, capsys):
    """A compiler that is found but cannot build the CPU kernel (clang++ without libomp-dev; on macOS, g++ is Apple
    clang) left info saying cpu: True, auto_backend cpu, exit status 0, and the first run failed after its phantom
    and plan (the packaging audit of 2026-12-07, F3).  Now info loads the kernel as a run does (built where the
    cache has none): cpu False, the compiler's error with what to do about the missing OpenMP, and exit status 3
    (the machine's, as run and bench exit for it: 1 before audit 26, exitcodes F9)."""
    no_openmp_compiler_on_path(tmp_path / "bin", monkeypatch)
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no GPU (test)"))
    cpu.compiler_version.cache_clear()   # by the compiler's name: "clang++" here is the fake
    try:
        assert main(["info", "--json"]) == 3
    finally:
        cpu.compiler_version.cache_clear()
    info = json.loads(capsys.readouterr().out)
    assert info["backends"] == {"cpu": False, "cuda": False} and info["auto_backend"] == "none"
    assert info["cpu_compiler"].startswith("Debian clang version 14.0.6 (fake")
    err = info["cpu_error"]
    assert "compiling kernels/transport.cu for the CPU with clang++ failed (exit status 1" in err, err
    assert "fatal error: 'omp.h' file not found" in err
    assert "clang++ has no OpenMP" in err and "libomp-dev for clang++" in err and "set CXX to" in err
    assert not list((tmp_path / "empty").glob("transport-*.so"))


def test_info_says_when_it_builds_the_cpu_kernel(fresh_backends, monkeypatch, capsys):
    """Building the CPU kernel takes ~15 s (more on a loaded machine): where loading it takes longer than
    INFO_BUILD_NOTE_AFTER_S, info says on stderr what it is doing; loading a cached one says nothing."""
    import time

    import mcproton.cli as cli

    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no GPU (test)"))
    monkeypatch.setattr(cli, "INFO_BUILD_NOTE_AFTER_S", 0.05)
    monkeypatch.setattr(cpu.CpuBackend, "compile", lambda self: time.sleep(0.5))
    assert main(["info"]) == 0
    assert "mcproton info: building the CPU kernel for this CPU" in capsys.readouterr().err
    monkeypatch.setattr(cpu.CpuBackend, "compile", lambda self: None)
    assert main(["info"]) == 0
    assert "building" not in capsys.readouterr().err


def test_info_shows_the_kernel_cache_and_the_optional_packages(fresh_backends, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "k"))
    monkeypatch.setattr(cpu.CpuBackend, "compile", lambda self: None)   # not built into the empty cache (~15 s)
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


def test_info_lists_the_dicom_decoders(fresh_backends, monkeypatch, tmp_path, capsys):
    """Per compressed transfer syntax a CT may come in, whether pydicom can decode it here, and the pip command where
    it cannot (audit 27 encodings, F5c: a site learnt that its archive's CTs could not be read only at the first
    run)."""
    from mcproton._io import decoders

    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "k"))
    monkeypatch.setattr(cpu.CpuBackend, "compile", lambda self: None)   # not built into the empty cache (~15 s)
    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no GPU (test)"))
    monkeypatch.setattr(decoders, "_decoder", lambda uid: type("Decoder", (), {
        "is_available": uid != "1.2.840.10008.1.2.4.57", "available_plugins": ("pydicom",)})())
    main(["info", "--json"])
    got = json.loads(capsys.readouterr().out)["dicom_decoders"]
    assert list(got) == [name for name, *_ in decoders.DECODER_GROUPS]
    assert got["JPEG Lossless (.57, .70)"] == ("missing: `pip install pylibjpeg pylibjpeg-libjpeg` (or `pip install "
                                               "python-gdcm`)")
    assert got["RLE Lossless (.5)"] == "yes (pydicom)"
    main(["info"])
    assert "dicom_decoders:" in capsys.readouterr().out

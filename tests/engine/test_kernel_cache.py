"""The CPU kernel cache (the deployment audit of 2026-12-05, F4, F5 and the -march=native risk): a damaged cached
kernel is rebuilt, not loaded (a truncated .so killed every run with SIGBUS, an empty one with "file too short"); the
cache honours XDG_CACHE_HOME and falls back to a per-user temporary folder where it cannot be written; a machine
with no compiler uses a verified kernel built for its CPU; and the key holds the CPU's instruction-set flags.

One kernel is compiled for the module (a few seconds) and copied into each test's own cache."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mcproton._backend.cpu as cpu

from fakes import no_openmp_compiler_on_path   # tests/fakes.py

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="needs a C++ compiler")

# a run of a few hundred protons in a fresh interpreter: the kernel loaded and launched from the given cache
RUN = """
from mcproton.geometry import box_phantom
from mcproton.run import simulate
from mcproton.settings import RunSettings
from mcproton.source import Beam
r = simulate(box_phantom("water", (10, 10, 20), 2.0), Beam.pencil(50.0, position_mm=(0, 0, -1)),
             RunSettings(primaries=200, backend="cpu", batches=2, threads=1), progress=False)
assert r.dose_gy_zyx.sum() > 0
print("ok")
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A cache folder holding the transport kernel and its manifest: copies of the session's (the configured cache's,
    built there by the first run of the session if no test built it before, and verified against its manifest by
    cpu._kernel_path), instead of a build of its own in this folder (4-8 s of compiling on 2 cores for the same
    bytes; the tests below that need a build, a damaged kernel's, build it)."""
    d = tmp_path_factory.mktemp("kernels")
    so = cpu._kernel_path("transport.cu", cpu.find_compiler())
    manifest = so.parent / (so.name.rsplit("-", 1)[0] + ".json")
    for f in (so, manifest):
        shutil.copy2(f, d / f.name)
    assert cpu._verified(d / manifest.name)[2] is None, "the copy is not the kernel its manifest names"
    return d


@pytest.fixture
def cache(built, tmp_path, monkeypatch) -> Path:
    """This test's own copy of the built cache, set as MCPROTON_CACHE_DIR; the notes said afresh."""
    d = tmp_path / "cache"
    shutil.copytree(built, d)
    monkeypatch.setenv(cpu.CACHE_ENV, str(d))
    monkeypatch.setattr(cpu, "_NOTED", set())
    return d


def _kernel(folder: Path) -> Path:
    (so,) = folder.glob("transport-*.so")
    return so


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_cached_kernel_is_rebuilt_and_the_run_works(cache, damage):
    so = _kernel(cache)
    good = so.read_bytes()
    with open(so, "r+b") as fh:
        fh.truncate(20_000 if damage == "truncated" else 0)
    r = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=600,
                       env={**os.environ, cpu.CACHE_ENV: str(cache)})
    # before: SIGBUS (rc -7) for the truncated file, "file too short" for the empty one
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stdout + r.stderr)
    assert "damaged" in r.stderr and "rebuilding it" in r.stderr, r.stderr
    rebuilt = _kernel(cache)   # one kernel again, complete, and its manifest's
    assert rebuilt.stat().st_size == len(good)
    assert cpu._verified(cache / (rebuilt.name.rsplit("-", 1)[0] + ".json"))[2] is None


def test_a_kernel_without_a_valid_manifest_is_not_loaded(cache):
    """A kernel is only trusted with its manifest (size and SHA-256), written after the kernel's fsynced rename: an
    unreadable manifest (a crash while it was written) means a rebuild, not a load."""
    (manifest,) = cache.glob("transport-*.json")
    manifest.write_text("{")
    ident = cpu.kernel_identity(cpu.assemble("transport.cu"), cpu.compiler_version(cpu.find_compiler()))
    assert cpu._find(cache, "transport.cu", ident) is None
    (manifest,) = cache.glob("transport-*.json")   # untouched by the look-up; the build replaces it
    assert manifest.read_text() == "{"


def test_cache_key_holds_the_cpu_flags(monkeypatch):
    """-march=native builds for the CPU's instruction set: a VM's generic model name is the same with and without
    AVX-512, so the flags are in the key (the risk noted by the audit: SIGILL from a shared cache)."""
    monkeypatch.setattr(cpu, "cpu_model", lambda: "Intel(R) Xeon(R) Processor")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: "avx avx2 fma sse4_2")
    a = cpu.kernel_identity("source", "g++ 12")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: "avx avx2 avx512f fma sse4_2")
    b = cpu.kernel_identity("source", "g++ 12")
    assert a["cpu_model"] == b["cpu_model"] and a["key"] != b["key"]
    assert cpu.kernel_identity("source", "g++ 12")["key"] == b["key"]   # and it is a function of them only


def test_cpu_flags_are_read_from_proc_cpuinfo():
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo")
    cpu.cpu_flags.cache_clear()
    flags = cpu.cpu_flags().split()
    assert flags == sorted(flags) and len(flags) > 3


def test_cache_dir_honours_mcproton_cache_dir_then_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv(cpu.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cpu.cache_dir() == tmp_path / "xdg" / "mcproton" / "kernels"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")   # invalid by the XDG specification: ignored
    assert cpu.cache_dir() == Path.home() / ".cache" / "mcproton" / "kernels"
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "mine"))
    assert cpu.cache_dir() == tmp_path / "mine"


def test_an_unwritable_cache_falls_back_to_a_per_user_temporary_folder(built, tmp_path, monkeypatch, capsys):
    """A read-only home stopped every run with "[Errno 30] Read-only file system"; now the kernel is built in
    <tmp>/mcproton-<uid>/kernels with a note, and mcproton info says so (a folder under a file stands for a
    read-only one: root writes anywhere else)."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "file" / "kernels"))
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(cpu, "_NOTED", set())
    status = cpu.cache_status()
    assert status["writable"] is False and status["reason"]
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    fallback = tmp_path / "tmp" / f"mcproton-{uid}" / "kernels"
    assert status["fallback"] == str(fallback)
    shutil.copytree(built, fallback, dirs_exist_ok=True)   # as a first run there would have built it (tested above)
    capsys.readouterr()
    folder, note = cpu._build_dir()
    assert folder == fallback and cpu.CACHE_ENV in note and "cannot be written" in note
    assert cpu._kernel_path("transport.cu", cpu.find_compiler()).parent == fallback


@pytest.mark.parametrize("setting", ["a file", "a read-only folder"])
def test_a_bad_cache_dir_is_noted_on_every_run_with_its_reason(built, tmp_path, monkeypatch, capsys, setting):
    """MCPROTON_CACHE_DIR naming a file (a typo) or a folder this user cannot write (a shared cache): the note that
    the kernels are in the per-user temporary folder came only on the run that built them there; every later run
    used them silently, and the reason for a file was "File exists" (the environment audit 19, F4).  Each run (a
    process: its notes said afresh) now says it, with the reason in words.  A read-only folder is simulated (the
    tests may run as root, who writes anywhere)."""
    conf = tmp_path / "conf"
    if setting == "a file":
        conf.write_text("x")
        reason = "it is a file, not a folder"
    else:
        conf.mkdir()
        real = cpu.tempfile.TemporaryFile

        def temporary_file(*a, dir=None, **k):
            if dir is not None and Path(dir) == conf:
                raise PermissionError(13, "Permission denied", str(dir))
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(cpu.tempfile, "TemporaryFile", temporary_file)
        reason = "it is not writable by this user (Permission denied)"
    monkeypatch.setenv(cpu.CACHE_ENV, str(conf))
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(cpu, "_PRIVATE_TMP", None)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    fallback = tmp_path / "tmp" / f"mcproton-{uid}" / "kernels"
    assert cpu.cache_status()["reason"] == reason
    shutil.copytree(built, fallback, dirs_exist_ok=True)   # as the first run built it there
    for _run in range(2):
        monkeypatch.setattr(cpu, "_NOTED", set())   # a new process
        capsys.readouterr()
        assert cpu._kernel_path("transport.cu", cpu.find_compiler()).parent == fallback
        err = capsys.readouterr().err
        assert f"{conf} cannot be written ({reason})" in err and str(fallback) in err and cpu.CACHE_ENV in err, err


@pytest.mark.parametrize("blank", [" ", "\t  "])
def test_a_blank_cache_dir_is_taken_as_unset(monkeypatch, tmp_path, blank):
    """MCPROTON_CACHE_DIR=' ' made a folder named " " in the working folder (the environment audit 19, F8): blank,
    as empty, is unset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(cpu.CACHE_ENV, blank)
    assert cpu.cache_dir() == tmp_path / "xdg" / "mcproton" / "kernels"


def test_no_home_directory_falls_back_too(tmp_path, monkeypatch):
    """A container run with a UID that has no passwd entry and no HOME: "Could not determine home directory."."""
    def no_home(cls):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv(cpu.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(pathlib.Path, "home", classmethod(no_home))
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError, match="home directory is unknown"):
        cpu.cache_dir()
    folder, note = cpu._build_dir()
    assert folder.parent.parent == tmp_path and "home directory is unknown" in note
    assert cpu.cache_status()["folder"] is None


def test_a_temporary_folder_open_to_others_is_not_used(tmp_path, monkeypatch):
    """A kernel is loaded into the process: the shared temporary directory's mcproton-<uid> is used only where it is
    this user's and closed to others (another user could have made it to plant a library)."""
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX permissions")
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cpu, "_PRIVATE_TMP", None)
    shared = tmp_path / f"mcproton-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    d = cpu._fallback_dir()
    assert shared not in d.parents and d != shared / "kernels" and d.parent == tmp_path
    assert not d.stat().st_mode & 0o077


def test_no_compiler_uses_a_verified_kernel_built_for_this_cpu(cache, monkeypatch):
    """A compute node with no compiler and a cache shared with a login node: the kernel built there (same source,
    options and CPU; any compiler) is used, and the provenance names the compiler that built it."""
    def none():
        raise RuntimeError("no C++ compiler found for the CPU backend")

    monkeypatch.setattr(cpu, "find_compiler", none)
    cxx, compiler = cpu.toolchain()
    assert cxx is None and "no compiler on this machine" in compiler
    assert compiler.startswith(cpu.compiler_version(shutil.which("g++") or shutil.which("c++")))
    assert cpu._kernel_path("transport.cu", None) == _kernel(cache)
    # not for another CPU's flags, nor when the kernel is damaged
    monkeypatch.setattr(cpu, "cpu_flags", lambda: "another cpu")
    with pytest.raises(RuntimeError, match=cpu.CACHE_ENV):
        cpu.toolchain()
    monkeypatch.undo()
    monkeypatch.setattr(cpu, "find_compiler", none)
    monkeypatch.setenv(cpu.CACHE_ENV, str(cache))
    with open(_kernel(cache), "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(RuntimeError, match="no C[+][+] compiler found.*no kernel built for this CPU"):
        cpu.toolchain()


def test_cache_dir_expands_tilde_and_variables(monkeypatch, tmp_path):
    """MCPROTON_CACHE_DIR='~/kcache' or '$HOME/kcache' (single quotes in an sbatch script, a systemd Environment=, a
    Kubernetes env value) was taken literally: folders named '~' and '$HOME' in the working folder (the cluster
    audit, F7).  Now ~ and variables are expanded, and a relative path is made absolute with a note."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MY_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setattr(cpu, "_NOTED", set())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cpu.CACHE_ENV, "~/kcache")
    assert cpu.cache_dir() == tmp_path / "home" / "kcache"
    monkeypatch.setenv(cpu.CACHE_ENV, "$HOME/kcache")
    assert cpu.cache_dir() == tmp_path / "home" / "kcache"
    monkeypatch.setenv(cpu.CACHE_ENV, "${MY_SCRATCH}/k")
    assert cpu.cache_dir() == tmp_path / "scratch" / "k"
    monkeypatch.setenv(cpu.CACHE_ENV, "rel/k")
    assert cpu.cache_dir() == tmp_path / "rel" / "k" and any("relative path" in n for n in cpu._NOTED)
    assert not (tmp_path / "~").exists() and not (tmp_path / "$HOME").exists()


@pytest.mark.parametrize("value", ["$NO_SUCH_VARIABLE_MCPROTON/k", "~no_such_user_mcproton/k"])
def test_an_unexpandable_cache_dir_is_refused_not_created(monkeypatch, tmp_path, value):
    """A variable that is not set, or an unknown user's ~: the run stops naming the setting (it neither creates a
    folder named '$NO_SUCH…' nor builds its kernel somewhere else unasked); mcproton info reports it."""
    monkeypatch.delenv("NO_SUCH_VARIABLE_MCPROTON", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cpu.CACHE_ENV, value)
    with pytest.raises(cpu.CacheDirError, match=f"{cpu.CACHE_ENV}=.*cannot be expanded.*absolute folder"):
        cpu.cache_dir()
    with pytest.raises(cpu.CacheDirError):
        cpu._build_dir()
    with pytest.raises(cpu.CacheDirError):
        cpu._kernel_path("transport.cu", None)
    status = cpu.cache_status()
    assert status["folder"] is None and "cannot be expanded" in status["reason"]
    assert list(tmp_path.iterdir()) == []


#: a stand-in compiler: --version; the link step (-o *.so) an empty shared library that the real compiler makes (a
#: kernel is loaded before it is stored: the environment audit 19, F5); else a few bytes written to the file after -o
FAKE_CXX = """#!/bin/sh
[ "$1" = "--version" ] && { echo "fake c++ 1.0"; exit 0; }
while [ $# -gt 1 ]; do
  if [ "$1" = "-o" ]; then
    case "$2" in *.so) exec REAL_CXX -shared -x c++ /dev/null -o "$2";; esac
    printf 'not a library' > "$2"; exit 0
  fi
  shift
done
exit 1
""".replace("REAL_CXX", str(shutil.which("g++") or shutil.which("c++")))
#: CXX=gcc, the C driver: it builds a library that does not load (undefined symbol __gxx_personality_v0); here one
#: that is not a library at all
NOT_A_CXX = FAKE_CXX.replace("*.so)", "*.nothing)")


@pytest.mark.parametrize("kind", ["an unloadable library", "no output", "a failure with no message"])
def test_cxx_that_is_not_a_working_cpp_compiler_is_named_and_nothing_is_cached(tmp_path, monkeypatch, kind):
    """CXX naming something that is not a working C++ compiler (the environment audit 19, F5): CXX=gcc left a kernel
    that did not load in the (shared) cache, where a node with no compiler then took it, and the error suggested a
    noexec mount; a wrapper that exits 0 without output was blamed on the cache folder ("No such file or
    directory"); one that fails without a message gave "failed:" and nothing after it.  Now the compiler is named,
    with what to do, and nothing is stored in the cache."""
    cxx = tmp_path / "cxx"
    wrapper = '#!/bin/sh\n[ "$1" = "--version" ] && echo "wrapper 1.0"\nexit {}\n'
    cxx.write_text({"an unloadable library": NOT_A_CXX, "no output": wrapper.format(0),
                    "a failure with no message": wrapper.format(1)}[kind])
    cxx.chmod(0o755)
    monkeypatch.setenv("CXX", str(cxx))
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cpu, "_NOTED", set())
    expected = {"an unloadable library": f"built cannot be loaded .*; it is not stored in the kernel cache; is "
                                         f"CXX={cxx} a C[+][+] compiler[?]",
                "no output": "exited with status 0 but wrote no .o file .*: it is not a working C[+][+] compiler",
                "a failure with no message": f"failed [(]exit status 1, and no message; the command: {cxx} .*[)]; "
                                             f"is CXX={cxx} a C[+][+] compiler[?]"}[kind]
    with pytest.raises(RuntimeError, match=f"(?s){expected}; set CXX to a C[+][+] compiler, such as g[+][+]"):
        cpu.load_kernel("transport.cu", cpu.find_compiler())
    assert not list((tmp_path / "cache").glob("transport-*.so")) and not list((tmp_path / "cache").glob("*.json"))


def test_a_compiler_without_openmp_is_named_with_what_to_do(tmp_path, monkeypatch):
    """A compiler found on the PATH (not $CXX) that has no OpenMP (clang++ without libomp-dev; macOS's g++, Apple
    clang) failed with its "'omp.h' file not found" and no advice (the packaging audit of 2026-12-07, F3): the
    error now says that it has no OpenMP and what to install, or which compiler to set; nothing is cached."""
    no_openmp_compiler_on_path(tmp_path / "bin", monkeypatch)
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "cache"))
    cpu.compiler_version.cache_clear()   # by the compiler's name: "clang++" here is the fake
    try:
        with pytest.raises(RuntimeError, match=r"(?s)compiling kernels/transport.cu for the CPU with clang[+][+] "
                                               r"failed .*[)]; clang[+][+] has no OpenMP, which the CPU kernel is "
                                               r"built with: install its OpenMP runtime \(libgomp for g[+][+], .*; "
                                               r"libomp-dev for clang[+][+]\), or set CXX to a compiler that has it, "
                                               r"such as g[+][+]:\n.*'omp.h' file not found"):
            cpu.load_kernel("transport.cu", cpu.find_compiler())
    finally:
        cpu.compiler_version.cache_clear()
    assert not list((tmp_path / "cache").glob("transport-*.so"))


def test_a_built_kernel_is_readable_by_all_whatever_the_umask(tmp_path):
    """Under umask 077 the kernel was -rwx------ and its manifest -rw-------: in a group-shared cache the others
    called it damaged, deleted it and rebuilt on every run (the cluster audit, F5)."""
    cxx = tmp_path / "fake-c++"
    cxx.write_text(FAKE_CXX)
    cxx.chmod(0o755)
    folder = tmp_path / "cache"
    folder.mkdir()
    old = os.umask(0o077)
    try:
        so = cpu._compile("transport.cu", "source", cpu.kernel_identity("source", "fake c++ 1.0"), folder, str(cxx))
    finally:
        os.umask(old)
    (manifest,) = folder.glob("transport-*.json")
    assert so.stat().st_mode & 0o777 == 0o755 and manifest.stat().st_mode & 0o777 == 0o644


def _unreadable_reads(monkeypatch, cache: Path) -> None:
    """Reading the cache's manifest raises PermissionError, as for another user's file under umask 077 (the tests
    may run as root, whom the mode does not stop)."""
    real = Path.read_text

    def read_text(self, *a, **k):
        if self.parent == cache and self.suffix == ".json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)


def test_another_users_unreadable_kernel_is_left_alone_and_built_in_the_per_user_folder(cache, tmp_path,
                                                                                          monkeypatch):
    """Not called damaged, not deleted: the note says it is not readable (owner and mode), and the kernel is built in
    the per-user temporary folder."""
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    before = sorted(p.name for p in cache.iterdir())
    _unreadable_reads(monkeypatch, cache)
    built_in: list[Path] = []
    monkeypatch.setattr(cpu, "_compile", lambda entry, src, ident, folder, cxx: built_in.append(folder) or folder)
    cpu._kernel_path("transport.cu", cpu.find_compiler())
    assert sorted(p.name for p in cache.iterdir()) == before   # nothing removed
    assert built_in and built_in[0] != cache and (tmp_path / "tmp") in built_in[0].parents
    notes = " ".join(cpu._NOTED)
    assert "not readable by this user (owner uid" in notes and "damaged" not in notes, notes


def test_no_compiler_and_an_unreadable_kernel_says_so(cache, tmp_path, monkeypatch):
    """On a node with no compiler the message said "no kernel built for this CPU": false, it is there, unreadable."""
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path / "tmp"))   # an empty per-user folder
    (tmp_path / "tmp").mkdir()
    _unreadable_reads(monkeypatch, cache)
    with pytest.raises(RuntimeError, match="cannot be read: transport-.*not readable by this user.*chmod a[+]r"):
        cpu._kernel_path("transport.cu", None)
    assert _kernel(cache).is_file()


@pytest.fixture
def scratch_caches(tmp_path, monkeypatch) -> Path:
    """An empty configured cache (returned) and an empty temporary directory for the per-user folder."""
    conf = tmp_path / "conf"
    monkeypatch.setenv(cpu.CACHE_ENV, str(conf))
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(cpu, "_NOTED", set())
    monkeypatch.setattr(cpu, "_PRIVATE_TMP", None)
    return conf


def test_a_full_cache_is_reported_and_the_kernel_built_in_the_per_user_folder(scratch_caches, monkeypatch):
    """A full disk or a home over quota: a zero-byte probe file was created there, mcproton info said "writable",
    and the build then stopped with a bare "[Errno 28] No space left on device" (the cluster audit, F4)."""
    import errno

    real = cpu.tempfile.TemporaryFile

    class Full:
        def __init__(self, *a, **k):
            self.fh = real()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def temporary_file(*a, dir=None, **k):
        return Full() if dir is not None and Path(dir) == scratch_caches else real(*a, dir=dir, **k)

    monkeypatch.setattr(cpu.tempfile, "TemporaryFile", temporary_file)
    status = cpu.cache_status()
    assert status["writable"] is False and status["reason"] == os.strerror(errno.ENOSPC), status
    folder, note = cpu._build_dir()
    assert folder != scratch_caches and "No space left" in note and cpu.CACHE_ENV in note


def test_a_noexec_cache_is_reported_and_the_kernel_built_once_elsewhere(scratch_caches, monkeypatch):
    """A cache on a noexec mount: the kernel was built, failed to load, built again and failed again; info said all
    was well (the cluster audit, F6)."""
    if not hasattr(os, "ST_NOEXEC"):
        pytest.skip("no ST_NOEXEC here")
    real = os.statvfs

    class NoExec:
        f_flag = os.ST_NOEXEC

    monkeypatch.setattr(cpu.os, "statvfs", lambda p: NoExec() if Path(p) == scratch_caches else real(p))
    status = cpu.cache_status()
    assert status["writable"] is False and "noexec" in status["reason"] and status["fallback"].startswith(
        str(Path(cpu.tempfile.gettempdir())))
    folder, note = cpu._build_dir()
    assert folder != scratch_caches and "noexec" in note


def test_a_build_that_runs_out_of_space_moves_to_the_per_user_folder(scratch_caches, monkeypatch):
    """Over quota during the build (the probe passed): a note, and the build again in the per-user folder, not a bare
    Errno."""
    import errno

    def compile_(entry, src, ident, folder, cxx):
        if folder == scratch_caches:
            raise OSError(errno.EDQUOT if hasattr(errno, "EDQUOT") else errno.ENOSPC, "Disk quota exceeded")
        return folder / "k.so"

    monkeypatch.setattr(cpu, "_compile", compile_)
    got = cpu._kernel_path("transport.cu", cpu.find_compiler())
    assert got.parent != scratch_caches and scratch_caches not in got.parents
    notes = " ".join(cpu._NOTED)
    assert "cannot take a kernel (Disk quota exceeded)" in notes and cpu.CACHE_ENV in notes, notes


def _fake_compiler(tmp_path: Path) -> Path:
    cxx = tmp_path / "fake-c++"
    cxx.write_text(FAKE_CXX)
    cxx.chmod(0o755)
    return cxx


def test_concurrent_builds_of_one_kernel_compile_it_once(tmp_path, monkeypatch):
    """Two builders of one kernel on an empty cache: the second waits for the first's build lock, then finds its
    kernel (the cluster audit, F8: the N tasks of a job array each compiled it, 30 s each on two cores).  The first
    build goes on only once the second has looked and found no kernel, so without the lock both would build."""
    cxx = _fake_compiler(tmp_path)
    monkeypatch.setenv(cpu.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cpu, "_NOTED", set())
    real_find, real_compile = cpu._find, cpu._compile
    looked: set[int] = set()
    builds: list[int] = []

    def find(*a, **k):
        looked.add(threading.get_ident())
        return real_find(*a, **k)

    def compile_(*a):
        builds.append(threading.get_ident())
        deadline = time.monotonic() + 30   # a bound for a broken test only: the other thread looks at once
        while len(looked) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_compile(*a)

    monkeypatch.setattr(cpu, "_find", find)
    monkeypatch.setattr(cpu, "_compile", compile_)
    got: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            got.append(cpu._kernel_path("transport.cu", str(cxx)))
        except BaseException as exc:   # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=build) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors and len(got) == 2, errors
    assert len(builds) == 1 and got[0] == got[1]
    assert [p.name for p in (tmp_path / "cache").glob("transport-*.so")] == [got[0].name]
    assert len(list((tmp_path / "cache").glob("transport-*.lock"))) == 1


def test_a_build_waits_for_the_lock_with_a_note_and_not_for_ever(tmp_path, monkeypatch):
    """A waiter says what it waits for, and after _LOCK_WAIT_S builds the kernel itself (a builder stuck on a stalled
    file system holds up no one for ever)."""
    fcntl = pytest.importorskip("fcntl")
    cxx = _fake_compiler(tmp_path)
    folder = tmp_path / "cache"
    folder.mkdir()
    ident = cpu.kernel_identity("source", "fake c++ 1.0")
    monkeypatch.setattr(cpu, "_NOTED", set())
    monkeypatch.setattr(cpu, "_LOCK_NOTE_AFTER_S", 0.0)
    monkeypatch.setattr(cpu, "_LOCK_WAIT_S", 0.5)
    lock = folder / f"transport-{ident['key']}.lock"
    with open(lock, "w") as held:   # the other process's lock, held throughout
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        so = cpu._build("transport.cu", "source", ident, folder, str(cxx))
    assert so.is_file()
    notes = " ".join(cpu._NOTED)
    assert f"waiting for another mcproton process compiling the CPU kernel (lock {lock})" in notes, notes
    assert "compiling the CPU kernel in this one too" in notes, notes


def test_a_file_system_without_flock_builds_without_the_lock(tmp_path, monkeypatch):
    """flock refused (ENOLCK: some NFS mounts): the kernel is built as before, without a lock and without waiting."""
    import errno

    fcntl = pytest.importorskip("fcntl")

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    folder = tmp_path / "cache"
    folder.mkdir()
    so = cpu._build("transport.cu", "source", cpu.kernel_identity("source", "fake c++ 1.0"), folder,
                    str(_fake_compiler(tmp_path)))
    assert so.is_file()


def test_old_build_folders_of_killed_builds_are_removed_when_building(tmp_path):
    """A build killed by SIGKILL left its tmp* folder (source, object) in the cache for ever (the cluster audit, F9):
    those older than an hour go at the next build; a recent one (a build under way) and anything that is not a
    build's are kept."""
    folder = tmp_path / "cache"
    old, recent, other = folder / "tmpold", folder / "tmprecent", folder / "tmpother"
    for d in (old, recent, other):
        d.mkdir(parents=True)
    (old / "transport.cpp").write_text("//")
    (old / "k.o").write_text("")
    (recent / "transport.cpp").write_text("//")
    (other / "notes.txt").write_text("mine")
    two_hours_ago = time.time() - 7200
    for d in (old, other):
        os.utime(d, (two_hours_ago, two_hours_ago))
    cpu._build("transport.cu", "source", cpu.kernel_identity("source", "fake c++ 1.0"), folder,
               str(_fake_compiler(tmp_path)))
    assert not old.exists() and recent.is_dir() and other.is_dir()


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie no one reaps counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_compiler_dies_with_the_process_that_started_it(tmp_path):
    """A run killed (SIGKILL) while compiling left its compiler running as an orphan (the cluster audit, F9): the
    compiler is now started with PR_SET_PDEATHSIG, so it is killed with its parent.  The stand-in compiler records
    its pid and sleeps; the waits below are bounds, not timings."""
    pidfile = tmp_path / "compiler.pid"
    cxx = tmp_path / "slow-c++"
    cxx.write_text(f'#!/bin/sh\necho $$ > "{pidfile}"\nexec sleep 120\n')
    cxx.chmod(0o755)
    code = ("import sys; from pathlib import Path; import mcproton._backend.cpu as cpu; "
            "cpu._compile('transport.cu', 'source', cpu.kernel_identity('source', 'slow'), Path(sys.argv[1]), "
            "sys.argv[2])")
    (tmp_path / "cache").mkdir()
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cache"), str(cxx)])
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.is_file() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert not _gone(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _gone(child), "the compiler outlived the process that started it"
    finally:
        if not _gone(child):
            os.kill(child, 9)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners")
def test_a_refused_per_user_folder_is_explained_and_the_private_one_removed_at_exit(tmp_path):
    """$TMPDIR/mcproton-<uid> open to others (or another user's): each run built in a new mcproton-kernels-XXXX
    folder, never removed, and the note did not say why (the cluster audit, F9).  Now the note says why, and the
    private folder goes when the process exits."""
    shared = tmp_path / f"mcproton-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    code = ("import tempfile, sys; tempfile.tempdir = sys.argv[1]; import mcproton._backend.cpu as cpu; "
            "d = cpu._fallback_dir(); print(d); assert d.is_dir()")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    private = Path(r.stdout.strip())
    assert private.parent == tmp_path and private.name.startswith("mcproton-kernels-")
    assert "is not used for the CPU kernels (it is open to other users (mode 0777)" in r.stderr, r.stderr
    assert "removed when this process exits" in r.stderr
    assert not private.exists()


def test_another_users_per_user_folder_is_named_as_such(tmp_path, monkeypatch):
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX owners")
    me = os.getuid()
    monkeypatch.setattr(cpu.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cpu, "_PRIVATE_TMP", None)
    monkeypatch.setattr(cpu, "_NOTED", set())
    monkeypatch.setattr(cpu.os, "getuid", lambda: me + 1)   # the folder is then "another user's"
    (tmp_path / f"mcproton-{me + 1}").mkdir(mode=0o700)
    d = cpu._fallback_dir()
    assert d.name.startswith("mcproton-kernels-")
    assert f"it belongs to uid {me}, not to this user (uid {me + 1})" in " ".join(cpu._NOTED)


def _entry(folder: Path, key: str, days_unused: float, stem: str = "transport") -> list[Path]:
    """A cache entry of ``key`` (manifest, kernel, lock file) whose files were last modified ``days_unused`` ago."""
    files = [folder / f"{stem}-{key}.json", folder / f"{stem}-{key}-{'5' * 16}.so", folder / f"{stem}-{key}.lock"]
    folder.mkdir(parents=True, exist_ok=True)
    then = time.time() - days_unused * 86400
    for f in files:
        f.write_text("{}" if f.suffix == ".json" else "")
        os.utime(f, (then, then))
    return files


def test_entries_of_other_keys_unused_for_30_days_are_removed_when_a_kernel_is_built(tmp_path):
    """The resources audit 31, F3: one entry per mcproton version, compiler and CPU (~115 kB) was kept for ever.  A
    build now removes the entries of other keys that were neither built nor loaded for 30 days (all their files:
    manifest, kernel, lock); a recently used one, files of other names, and the built key's own are kept."""
    folder = tmp_path / "cache"
    old = _entry(folder, "a" * 24, 31)
    old_probes = _entry(folder, "b" * 24, 45, stem="probes")
    recent = _entry(folder, "c" * 24, 29)
    mine = folder / "transport-notes.txt"   # not an entry's name: never removed
    mine.write_text("mine")
    os.utime(mine, (0, 0))
    so = cpu._build("transport.cu", "source", cpu.kernel_identity("source", "fake c++ 1.0"), folder,
                    str(_fake_compiler(tmp_path)))
    assert not any(f.exists() for f in old + old_probes)
    assert all(f.exists() for f in recent) and mine.exists() and so.is_file()


def test_a_used_kernel_is_marked_used_and_kept(built, tmp_path):
    """Loading a kernel sets its manifest's modification time (its use), so that an entry in use, however old its
    build, is not removed by another version's build."""
    folder = tmp_path / "cache"
    shutil.copytree(built, folder)
    (manifest,) = folder.glob("transport-*.json")
    long_ago = time.time() - 90 * 86400
    for f in folder.iterdir():
        os.utime(f, (long_ago, long_ago))
    src = cpu.assemble("transport.cu")
    ident = cpu.kernel_identity(src, cpu.compiler_version(cpu.find_compiler()))
    assert cpu._find(folder, "transport.cu", ident) is not None
    assert time.time() - manifest.stat().st_mtime < 3600
    cpu._remove_unused_entries(folder, "f" * 24)   # another version's build
    assert cpu._find(folder, "transport.cu", ident) is not None


def test_a_kernel_read_by_a_user_who_cannot_mark_it_is_kept(built, tmp_path, monkeypatch):
    """A cache shared by several users (a group's folder, a login node's for compiler-less compute nodes): a reader
    may not set the manifest's modification time of a kernel another user built (os.utime: EPERM), so its daily use
    left the entry "unused" and the owner's next build of another key removed it (review b of audit 32, R2: a real
    process loading it three times, then another key built, and it was gone; a compute node without a compiler then
    finds no kernel).  Reading the kernel (its hash is verified before each load) sets its access time: that is use."""
    folder = tmp_path / "cache"
    shutil.copytree(built, folder)
    long_ago = time.time() - 90 * 86400
    for f in folder.iterdir():
        os.utime(f, (long_ago, long_ago))
    src = cpu.assemble("transport.cu")
    ident = cpu.kernel_identity(src, cpu.compiler_version(cpu.find_compiler()))

    def no_utime(*a, **k):   # as for a file another user owns
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(cpu.os, "utime", no_utime)
    assert cpu._find(folder, "transport.cu", ident) is not None   # a load by the reader
    monkeypatch.undo()
    so = next(folder.glob("transport-*.so"))
    if time.time() - so.stat().st_atime > 3600:
        pytest.skip("this file system does not record access times (noatime): use is the manifest's time alone")
    cpu._remove_unused_entries(folder, "f" * 24)   # the owner builds another version's kernel
    assert cpu._find(folder, "transport.cu", ident) is not None


def test_an_entry_being_built_or_another_users_is_not_removed(tmp_path, monkeypatch):
    """An old entry whose build lock another process holds (it is rebuilding it) is left alone, as is one whose files
    are another user's."""
    fcntl = pytest.importorskip("fcntl")
    folder = tmp_path / "cache"
    held = _entry(folder, "a" * 24, 60)
    with open(held[2], "rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        cpu._remove_unused_entries(folder, "f" * 24)
    assert all(f.exists() for f in held)
    monkeypatch.setattr(cpu.os, "getuid", lambda: os.stat(folder).st_uid + 1)
    cpu._remove_unused_entries(folder, "f" * 24)
    assert all(f.exists() for f in held)
    monkeypatch.undo()
    cpu._remove_unused_entries(folder, "f" * 24)
    assert not any(f.exists() for f in held)


def test_a_kernel_removed_between_its_check_and_its_load_is_looked_for_again(cache, monkeypatch):
    """Another process removed the kernel just verified (it tidied the cache): the load looks for it again, as a
    kernel of this build is still there (or is built), instead of calling it damaged and compiling it anew."""
    real = cpu._kernel_path
    calls: list[bool] = []

    def kernel_path(entry, cxx, rebuild=False):
        calls.append(rebuild)
        return cache / "transport-gone.so" if len(calls) == 1 else real(entry, cxx, rebuild)

    monkeypatch.setattr(cpu, "_kernel_path", kernel_path)
    lib = cpu.load_kernel("transport.cu", cpu.find_compiler())
    assert lib is not None and calls == [False, False], calls
    assert not any("cannot be loaded" in n for n in cpu._NOTED), cpu._NOTED


def test_builds_tidying_one_cache_at_once_remove_each_old_entry_once_and_keep_the_used(tmp_path):
    """Four processes (threads here: flock's locks belong to each open file, as between processes) tidy one cache at
    once while a fifth loads a kernel of another old build over and over: every unused entry goes, without an error,
    and the loaded one, marked used on each load, stays."""
    folder = tmp_path / "cache"
    old = [f for k in range(40) for f in _entry(folder, f"{k:024x}", 40)]
    used = _entry(folder, "e" * 24, 40)
    errors: list[BaseException] = []
    stop = threading.Event()

    def tidy() -> None:
        try:
            cpu._remove_unused_entries(folder, "f" * 24)
        except BaseException as exc:   # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def load() -> None:
        while not stop.is_set():
            cpu._mark_used(used[0])

    cpu._mark_used(used[0])   # loaded just before the tidying began
    loader = threading.Thread(target=load)
    loader.start()
    workers = [threading.Thread(target=tidy) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    stop.set()
    loader.join(60)
    assert not errors, errors
    assert not any(f.exists() for f in old)
    assert all(f.exists() for f in used)

"""CPU backend: the kernel source compiled by the host C++ compiler with OpenMP, cached as a shared
library keyed by SHA-256(source + options + compiler version + CPU model and flags), loaded with ctypes.

The cache: $MCPROTON_CACHE_DIR, else $XDG_CACHE_HOME/mcproton/kernels, else ~/.cache/mcproton/kernels; where that
cannot be written (a read-only or missing home), a per-user folder in the temporary directory, with a note.  Each
kernel has a manifest beside it (its size and SHA-256, and what it was built from), written after the kernel's
fsynced rename and checked before every load: a damaged kernel (a truncated copy: SIGBUS when loaded) is rebuilt,
not loaded.  A machine with no compiler uses a verified kernel that any compiler built from the same source and
options for the same CPU (a cache shared with a login node).  A kernel not loaded or built for 30 days is removed
when one of another key is built (:func:`_remove_unused_entries`)."""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import errno
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._cpus import default_threads, unset_unusable_omp_num_threads
from .._io.atomic import _fsync_dir, write_bytes_atomic
from .._kernels.layout import ENTRY_POINTS
from .._kernels.source import assemble
from .base import cast_scalar

# -ffast-math for speed, but keep IEEE infinities (the kernels use +inf as "no limit").
CPU_COMPILE_OPTIONS = ("-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp", "-fPIC",
                       "-std=c++17", "-x", "c++", "-c")
# Linked in a second step WITHOUT -ffast-math: with it, gcc < 13 links crtfastmath.o into the shared library,
# whose constructor switches the whole process to flush-to-zero / denormals-are-zero when the library is
# loaded - silently changing every later NumPy/SciPy result in the user's process (it sent scipy's cKDTree into
# endless recursion in the demo's planner).  tests/engine/test_cpu_backend_fp_env.py guards this.
CPU_LINK_OPTIONS = ("-shared", "-fopenmp")
CPU_OPTIONS = CPU_COMPILE_OPTIONS + ("&&",) + CPU_LINK_OPTIONS   # as recorded in the provenance

#: whether this process has launched a kernel on an OpenMP team of more than one thread: its OpenMP runtime then
#: keeps a pool of worker threads
_TEAM_RUN = False
#: whether this process was forked (multiprocessing's "fork" start method, the default on Linux before Python 3.14)
#: from one that had (or from such a child): the GNU OpenMP runtime (libgomp) is not fork-safe, and the child inherits
#: a pool whose threads do not exist in it, so the child's first team of more than one thread waits for them for
#: ever (the Python-API audit, F1: multiprocessing workers hung without a word).  Such a child runs on one thread.
_FORKED_AFTER_TEAM = False
#: whether :func:`_warn_forked` has said it in this process ({"forked"} or empty): outside a run or check once per
#: process, in one once per run or check (errors.said_in_this_call)
_FORK_WARNED: set[str] = set()


def _after_fork_in_child() -> None:
    global _FORKED_AFTER_TEAM
    _FORKED_AFTER_TEAM = _FORKED_AFTER_TEAM or _TEAM_RUN
    _FORK_WARNED.clear()   # each process says it


if hasattr(os, "register_at_fork"):   # POSIX; imported before the first kernel runs, so before any team exists
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _warn_forked(threads: int) -> None:
    """Say why a forked child runs on one thread, and how to get its threads: once in each run or check (its record
    holds it: in-process audit 25, F4; before, a pool worker's second task said nothing), once per process outside
    one."""
    from .._io.errors import McprotonRuntimeWarning, said_in_this_call, warn

    said = "this process was forked from one that had run the CPU backend on several OpenMP threads"
    if said_in_this_call(said, _FORK_WARNED, "forked", at_start=True):
        return
    warn(f"{said} (multiprocessing's \"fork\" start method, the default on Linux before Python 3.14); the OpenMP "
         "runtime is not fork-safe, and a team of several threads here would wait for ever for the parent's threads, "
         f"so the CPU backend runs on 1 thread in this process instead of {threads}; for {threads} threads per worker, "
         "start the workers with multiprocessing.get_context(\"spawn\") or get_context(\"forkserver\") (e.g. "
         "ProcessPoolExecutor(mp_context=multiprocessing.get_context(\"spawn\"))); RunSettings(threads=1) in the "
         "workers runs them on 1 thread without this warning", McprotonRuntimeWarning)


#: the environment variable that names the CPU kernel cache folder (README "Set-up"): a folder shared between the
#: nodes of a cluster lets a node with no compiler use the kernels a login node built for the same CPU
CACHE_ENV = "MCPROTON_CACHE_DIR"
#: the manifest's format: a JSON file beside each kernel, written after the kernel's fsynced rename, naming the kernel
#: file, its size and SHA-256, and what it was built from (the deployment audit of 2026-12-05, F4)
_MANIFEST_FORMAT = 1

#: the modes of a built kernel and its manifest, whatever the umask: readable by all (a group-shared cache)
_KERNEL_MODE = 0o755
_MANIFEST_MODE = 0o644

_NOTED: set[str] = set()
_PRIVATE_TMP: Path | None = None


def _note(text: str) -> None:
    """One ``mcproton: note:`` line on stderr, each text once per process."""
    if text not in _NOTED:
        _NOTED.add(text)
        from .._io.console import write_stderr

        write_stderr(f"mcproton: note: {text}\n")


def cache_dir() -> Path:
    """The configured folder of the CPU kernel cache: $MCPROTON_CACHE_DIR, else $XDG_CACHE_HOME/mcproton/kernels (an
    absolute XDG_CACHE_HOME only, as the XDG specification says), else ~/.cache/mcproton/kernels.  RuntimeError where
    none can be named (no home directory: a container run with a UID that has no passwd entry and no HOME);
    :class:`CacheDirError` where $MCPROTON_CACHE_DIR cannot be expanded (:func:`_expanded_cache_env`)."""
    d = _cache_env()
    if d is not None:
        return _expanded_cache_env(d)
    return user_cache_folder("kernels", CACHE_ENV, "the CPU kernel cache")


def user_cache_folder(name: str, var: str, what: str) -> Path:
    """$XDG_CACHE_HOME/mcproton/``name`` (an absolute XDG_CACHE_HOME only, as the XDG specification says), else
    ~/.cache/mcproton/``name``: the folder of ``what`` (the CPU kernel cache: "kernels"; the demo's plan cache:
    "plans") where its environment variable ``var`` does not name one.  RuntimeError where none can be named (no
    home directory: a container run with a UID that has no passwd entry and no HOME)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "mcproton" / name
    try:
        return Path.home() / ".cache" / "mcproton" / name
    except (RuntimeError, KeyError, OSError) as exc:
        raise RuntimeError(f"no folder for {what}: {var} and XDG_CACHE_HOME are not set and the home directory is "
                           f"unknown ({exc})") from None


def _cache_env() -> str | None:
    """$MCPROTON_CACHE_DIR, None where it is unset, empty or blank (only spaces: taken as unset, as an empty one is;
    before, ``' '`` made a folder named " " in the working folder; the environment audit 19, F8)."""
    value = os.environ.get(CACHE_ENV)
    return value if value and value.strip() else None


class CacheDirError(RuntimeError):
    """$MCPROTON_CACHE_DIR names no usable folder (``~`` or a variable left unexpanded): the run stops, rather than
    building its kernels elsewhere, so that the setting is mended."""


def _expanded_cache_env(value: str, var: str = CACHE_ENV, what: str = "the CPU kernel cache",
                        example: str = "kernels") -> Path:
    """$MCPROTON_CACHE_DIR (``var``: the environment variable that holds ``value``, the folder of ``what``) with ``~``
    and environment variables expanded, made absolute (a relative one from the working folder, with a note);
    :class:`CacheDirError` where a ``$`` or a leading ``~`` is left after expansion (its message suggests
    ``$HOME/.cache/mcproton/<example>``).  Before, ``'~/kcache'`` or ``'$HOME/kcache'`` (single quotes in an sbatch
    script, a systemd ``Environment=``, a Kubernetes env value) was taken literally: folders named ``~`` and ``$HOME``
    in each job's working folder, one cache per job folder (the cluster audit, F7; ``rm -rf ~`` typed to tidy such a
    folder removes the home).  The demo's plan cache (``MCPROTON_PLAN_CACHE_DIR``,
    :mod:`mcproton.planning._plan_cache`) is read so too."""
    path = os.path.expandvars(os.path.expanduser(value))
    if "$" in path or path.startswith("~"):
        raise CacheDirError(f"{var}={value!r} cannot be expanded (it is {path!r} after expanding ~ and the "
                            "environment variables: an unset variable, or an unknown user): set it to an absolute "
                            f"folder, e.g. {var}=\"$HOME/.cache/mcproton/{example}\" with double quotes, so that "
                            "the shell expands it")
    if not os.path.isabs(path):
        absolute = os.path.abspath(path)
        _note(f"{var}={value!r} is a relative path: {what} is {absolute}, in the working folder "
              "(give an absolute folder to share one cache between runs started from different folders)")
        path = absolute
    return Path(path)


def user_temp_folder(create: bool = True) -> tuple[Path, str]:
    """The per-user folder in the temporary directory (``mcproton-<uid>``; made, mode 0700, with ``create``) and ""
    where it is this user's and closed to others, else why it is not to be used (another user's, open to others,
    not a folder, not there): where the CPU kernels (:func:`_fallback_dir`) and the demo's plans
    (:mod:`mcproton.planning._plan_cache`) are kept when their configured folder cannot be written."""
    base = Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else None
    d = base / f"mcproton-{uid if uid is not None else 'user'}"
    try:
        if create:
            d.mkdir(mode=0o700, exist_ok=True)
        st = d.lstat()
        if stat.S_ISDIR(st.st_mode) and (uid is None or st.st_uid == uid) and not st.st_mode & 0o077:
            return d, ""
        why = ("it is not a folder" if not stat.S_ISDIR(st.st_mode) else
               f"it belongs to uid {st.st_uid}, not to this user (uid {uid})" if uid is not None and st.st_uid != uid
               else f"it is open to other users (mode {stat.S_IMODE(st.st_mode):04o})")
    except OSError as exc:
        why = exc.strerror or str(exc)
    return d, why


def _fallback_dir() -> Path:
    """The kernel cache used where the configured one cannot be written: a per-user folder in the temporary
    directory (``mcproton-<uid>/kernels``: :func:`user_temp_folder`), used only where it is this user's and closed to
    others (a kernel is loaded into the process: another user's file must never be), else a private folder for this
    process."""
    global _PRIVATE_TMP
    d, why = user_temp_folder()
    if not why:
        return d / "kernels"
    if _PRIVATE_TMP is None:
        _PRIVATE_TMP = Path(tempfile.mkdtemp(prefix="mcproton-kernels-"))
        # removed at exit: each run made a new one and left it, kernel and all (the cluster audit, F9); a kernel
        # loaded from it stays mapped after its file is removed
        atexit.register(shutil.rmtree, _PRIVATE_TMP, ignore_errors=True)
        _note(f"the per-user temporary folder {d} is not used for the CPU kernels ({why}: a kernel loaded from it "
              f"could be another user's): they are built in {_PRIVATE_TMP}, removed when this process exits, so "
              f"each run compiles them again (remove {d}, or set {CACHE_ENV} to a folder of yours, to keep them)")
    return _PRIVATE_TMP


#: bytes written (and fsynced) to test that a kernel can be built in a folder: a build writes the source (~0.1 MB),
#: the object (~0.2 MB) and the library (~0.1 MB) there; a zero-byte file was created on a full disk or over quota
#: and the build then failed with a bare "[Errno 28] No space left on device" (the cluster audit, F4)
_PROBE_BYTES = 512 * 1024
#: the errors of a folder that cannot take a kernel for want of space or of write access: the build moves to the
#: per-user temporary folder
_NO_ROOM = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM} | (
    {errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())


def _unwritable(d: Path) -> str | None:
    """None where kernels can be built and loaded from folder ``d`` (created if need be), else why not: the
    system's words where half a megabyte cannot be written there (full, over quota, read-only), or that its file
    system is mounted noexec (a kernel there cannot be loaded: it was built, failed to load, built again and failed
    again; the cluster audit, F6)."""
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=d) as fh:
            fh.write(bytes(_PROBE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return _why_not_a_folder(d, exc)
    if hasattr(os, "statvfs") and hasattr(os, "ST_NOEXEC"):
        with contextlib.suppress(OSError):
            if os.statvfs(d).f_flag & os.ST_NOEXEC:
                return "its file system is mounted noexec: a kernel there cannot be loaded"
    return None


def _why_not_a_folder(d: Path, exc: OSError) -> str:
    """Why a kernel cannot be written in folder ``d``, in words where the system's are not clear: a path naming a
    file gave "File exists" (from mkdir) and a read-only folder "Permission denied" (the environment audit 19, F4);
    other errors (a full disk, a quota) in the system's words."""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        for p in (d, *d.parents):
            with contextlib.suppress(OSError):
                if p.exists() and not p.is_dir():
                    return "it is a file, not a folder" if p == d else f"{p} is a file, not a folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"it is not writable by this user ({exc.strerror or exc})"
    if exc.errno == errno.EROFS:
        return f"it is on a read-only file system ({exc.strerror or exc})"
    return exc.strerror or str(exc)


def cache_status() -> dict[str, Any]:
    """The kernel cache as ``mcproton info`` shows it: the configured folder, whether it can be written, and where
    kernels are built instead when it cannot (the per-user temporary folder)."""
    try:
        d = cache_dir()
    except CacheDirError as exc:   # a run stops on it (it does not fall back)
        return {"folder": None, "writable": False, "reason": str(exc), "fallback": f"none: set {CACHE_ENV} right"}
    except RuntimeError as exc:
        status: dict[str, Any] = {"folder": None, "writable": False, "reason": str(exc)}
    else:
        why = _unwritable(d)
        status = {"folder": str(d), "writable": why is None}
        if why is None:
            return status
        status["reason"] = why
    try:
        fb = _fallback_dir()
        bad = _unwritable(fb)
    except OSError as exc:   # no usable temporary directory either
        fb, bad = None, str(exc)
    status["fallback"] = (f"{fb}" if bad is None else
                          f"none ({fb or 'the temporary folder'}: {bad}); set {CACHE_ENV} to a writable folder")
    return status


def _build_dir() -> tuple[Path, str | None]:
    """The folder a kernel is built in: the configured one where it can be written, else the per-user temporary one,
    with the note that says so (None for the configured folder).  RuntimeError where neither can be written."""
    try:
        d: Path | None = cache_dir()
    except CacheDirError:
        raise
    except RuntimeError as exc:
        d, why = None, str(exc)
    if d is not None:
        bad = _unwritable(d)
        if bad is None:
            return d, None
        why = f"the CPU kernel cache {d} cannot be {'used' if 'noexec' in bad else 'written'} ({bad})"
    try:
        fb = _fallback_dir()
        bad = _unwritable(fb)
    except OSError as exc:
        fb, bad = None, str(exc)
    if bad is not None:
        raise RuntimeError(f"{why}, nor can the temporary folder {fb or ''} ({bad}): set {CACHE_ENV} to a writable "
                           "folder for the CPU kernel cache")
    assert fb is not None
    return fb, f"{why}: the kernels are built in {fb} instead (set {CACHE_ENV} to a writable folder to keep them)"


def find_compiler() -> str:
    cxx = os.environ.get("CXX")
    if cxx and not shutil.which(cxx):
        _note(f"CXX={cxx} is not found: using the first of g++, c++, clang++ on the PATH")
    for cand in (cxx, "g++", "c++", "clang++"):
        if cand and shutil.which(cand):
            return cand
    raise RuntimeError("no C++ compiler found for the CPU backend (looked for $CXX, g++, c++, clang++); "
                       f"install one, e.g. {install_compiler()}")


def install_compiler() -> str:
    """How to get a C++ compiler with OpenMP on this system, as the messages say it after "e.g.": Linux's
    ``apt-get install g++``; on macOS Homebrew's GCC (macOS's own g++ is Apple clang, without OpenMP); on Windows
    WSL or the CUDA backend (MSVC's cl is not supported: the kernel is built with GCC's options; a native MinGW-w64
    g++ is untested: the kernel is loaded before it is fsynced, which Windows may refuse, and Python does not look
    for its libgomp DLL on the PATH).
    Before, every system was told ``apt-get install g++`` (the portability audit 27, F8)."""
    if sys.platform == "darwin":
        return ("Homebrew's GCC, `brew install gcc`, then set CXX to it by its version's name, such as CXX=g++-14; "
                "macOS's own g++ is Apple clang, which has no OpenMP")
    if sys.platform == "win32":
        return ("g++ in WSL, the Windows Subsystem for Linux (`apt-get install g++` there), and run mcproton there, or "
                "use the CUDA backend on an NVIDIA GPU instead; MSVC's cl is not supported (the CPU kernel is built "
                "with GCC's options), and a native Windows g++ (MinGW-w64) is untested")
    return "`apt-get install g++`"


@lru_cache(maxsize=None)
def compiler_version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else cxx


def _cpuinfo() -> str | None:
    """/proc/cpuinfo's text (Linux), or None where it cannot be read (macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


@lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's "model name" (Linux), ``sysctl machdep.cpu.brand_string`` (macOS), the
    registry's ProcessorNameString (Windows); else :func:`platform.processor` or :func:`platform.machine` (on macOS
    only "i386" or "arm": the portability audit 27, F11)."""
    text = _cpuinfo()
    for line in (text or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    if text is None:
        other = _sysctl("-n", "machdep.cpu.brand_string") if sys.platform == "darwin" else \
            _windows_cpu_name() if sys.platform == "win32" else None
        if other:
            return other.strip()
    return platform.processor() or platform.machine()


@lru_cache(maxsize=None)
def cpu_flags() -> str:
    """The CPU's instruction-set flags (/proc/cpuinfo "flags"; "Features" on ARM), sorted.  The kernel is built with
    -march=native, so the cache key holds them: a VM's generic model name ("Intel(R) Xeon(R) Processor") is the same
    on hosts with and without AVX-512, and a kernel built on one would stop with SIGILL on the other.  Without
    /proc (the portability audit 27, F11: the whole "flags" were ``platform.machine()``, so two Intel Macs with and
    without AVX-512 sharing a cache had one key): on macOS ``sysctl``'s CPU features (machdep.cpu.*features,
    hw.optional.*), on Windows the processor features IsProcessorFeaturePresent reports (AVX2, AVX-512F, ...) with
    PROCESSOR_IDENTIFIER; where none can be read, the machine and this host's name, so that a shared cache keeps
    each host's kernel apart rather than hand one to another CPU."""
    text = _cpuinfo()
    for line in (text or "").splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return " ".join(sorted(value.split()))
    if text is not None or sys.platform.startswith("linux"):
        return platform.machine()
    other = (_sysctl("machdep.cpu.features", "machdep.cpu.leaf7_features", "machdep.cpu.extfeatures", "hw.optional")
             if sys.platform == "darwin" else _windows_cpu_features() if sys.platform == "win32" else None)
    if other:
        return "\n".join(sorted({ln.strip() for ln in other.splitlines() if ln.strip()}))
    import socket

    return f"{platform.machine()} {platform.processor()} host {socket.gethostname()}"


def _sysctl(*names: str) -> str | None:
    """macOS: what ``sysctl names...`` prints (a name this CPU lacks, such as machdep.cpu.features on Apple silicon,
    is left out by sysctl itself), or None where it cannot be run."""
    try:
        out = subprocess.run(["sysctl", *names], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _windows_cpu_name() -> str | None:
    """Windows: the registry's ProcessorNameString of CPU 0, or None."""
    try:
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,   # type: ignore[attr-defined]
                            r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as key:
            return str(winreg.QueryValueEx(key, "ProcessorNameString")[0])   # type: ignore[attr-defined]
    except (ImportError, OSError):
        return None


def _windows_cpu_features() -> str | None:
    """Windows: the numbers of the processor features (PF_*: 40 AVX2, 41 AVX-512F, ...) that
    IsProcessorFeaturePresent reports, and PROCESSOR_IDENTIFIER (family, model, stepping), or None."""
    try:
        present = ctypes.windll.kernel32.IsProcessorFeaturePresent   # type: ignore[attr-defined]
        features = [f"PF_{i}" for i in range(64) if present(i)]
    except (AttributeError, OSError):
        return None
    return "\n".join([*features, f"PROCESSOR_IDENTIFIER {os.environ.get('PROCESSOR_IDENTIFIER', '')}"])


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def kernel_identity(src: str, compiler: str | None) -> dict[str, Any]:
    """What a cached kernel is built from: the source, the options, the compiler (its ``--version`` line) and the
    CPU (model name and instruction-set flags, for -march=native).  ``key``: the cache key of all of them."""
    ident: dict[str, Any] = {"source_sha256": _sha256(src), "options": " ".join(CPU_OPTIONS), "compiler": compiler,
                             "cpu_model": cpu_model(), "cpu_flags_sha256": _sha256(cpu_flags())}
    ident["key"] = _sha256("\0".join(str(ident[k]) for k in ("source_sha256", "options", "compiler", "cpu_model",
                                                             "cpu_flags_sha256")))[:24]
    return ident


#: the fields of a manifest that must match for a kernel built by any compiler to serve a machine with none
_SAME_BUILD = ("source_sha256", "options", "cpu_model", "cpu_flags_sha256")


class _Unreadable(Exception):
    """A cached kernel or manifest that this user may not read (another user's, written under a private umask)."""


def _unreadable(path: Path) -> str:
    """Why ``path`` cannot be read by this user: its owner and mode."""
    try:
        st = path.stat()
        return f"{path.name} is not readable by this user (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})"
    except OSError:
        return f"{path.name} is not readable by this user"


def _verified(manifest: Path) -> tuple[Path | None, dict[str, Any], str | None]:
    """The kernel a manifest names, the manifest, and None where the kernel's size and SHA-256 are the manifest's;
    else (None, the manifest or {}, what is wrong).  :class:`_Unreadable` where the manifest or the kernel is there
    but this user may not read it: that is not damage (the cluster audit, F5: users of a group-shared cache called
    each other's kernels damaged, deleted them and rebuilt on every run)."""
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        name = str(m["kernel"])
        size, sha = int(m["size"]), str(m["sha256"])
    except PermissionError:
        raise _Unreadable(_unreadable(manifest)) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, {}, f"its manifest {manifest.name} is unreadable ({type(exc).__name__})"
    so = manifest.parent / Path(name).name
    try:
        data = so.read_bytes()   # ~90 kB: hashing it costs well under a millisecond
    except PermissionError:
        raise _Unreadable(_unreadable(so)) from None
    except OSError as exc:
        return None, m, f"{so.name}: {exc.strerror or exc}"
    if len(data) != size:
        return None, m, f"{so.name} is {len(data)} bytes, its manifest says {size}"
    if _sha256(data) != sha:
        return None, m, f"the SHA-256 of {so.name} is not its manifest's"
    return so, m, None


def _find(folder: Path, entry: str, ident: dict[str, Any], unreadable: list[str] | None = None,
          quiet: bool = False) -> Path | None:
    """A verified kernel for ``ident`` in ``folder``: the one of its key, or, with no compiler (``ident["compiler"]``
    None), the newest built by any compiler from the same source and options for this CPU.  A damaged one is named
    in a note (and rebuilt by the caller; its kernel removed where this user owns it); one this user may not read is
    left alone and named in ``unreadable``.  ``quiet``: only a verified kernel or None, nothing said or removed (the
    second look, under the build lock, for a kernel another process built meanwhile)."""
    stem = Path(entry).stem
    if ident["compiler"] is not None:
        manifests = [folder / f"{stem}-{ident['key']}.json"]
    else:
        try:
            manifests = sorted(folder.glob(f"{stem}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return None
    for manifest in manifests:
        if not manifest.is_file():
            continue
        try:
            so, m, wrong = _verified(manifest)
        except _Unreadable as exc:
            if unreadable is not None:
                unreadable.append(str(exc))
            continue
        if ident["compiler"] is None and any(m.get(k) != ident[k] for k in _SAME_BUILD):
            continue
        if wrong is None and ident["compiler"] is not None and any(m.get(k) != ident[k]
                                                                   for k in (*_SAME_BUILD, "compiler")):
            wrong = f"its manifest {manifest.name} describes another build"
        if wrong is None:
            _mark_used(manifest)
            return so
        if quiet:
            continue
        _note(f"the cached CPU kernel in {folder} is damaged ({wrong}): "
              + ("rebuilding it" if ident["compiler"] is not None else "not used"))
        if ident["compiler"] is not None and m.get("kernel"):   # the rebuilt one may get another name
            kernel = folder / Path(str(m["kernel"])).name
            with contextlib.suppress(OSError):
                if not hasattr(os, "getuid") or kernel.stat().st_uid == os.getuid():   # never another user's file
                    kernel.unlink()
    return None


def _compile(entry: str, src: str, ident: dict[str, Any], folder: Path, cxx: str) -> Path:
    """Build the kernel in ``folder``: compiled and linked in a temporary folder there, fsynced, renamed to a name
    that holds its own SHA-256 (two processes building at once never replace each other's file), then its manifest
    written (atomically) beside it.  A kernel without a valid manifest is never loaded."""
    stem = Path(entry).stem
    preexec = _die_with_parent()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cpp = Path(tmp) / f"{stem}.cpp"
        cpp.write_text(src, encoding="utf-8")
        tmp_o, tmp_so = Path(tmp) / "k.o", Path(tmp) / "k.so"
        for what, cmd, out in (("compiling", [cxx, *CPU_COMPILE_OPTIONS, str(cpp), "-o", str(tmp_o)], tmp_o),
                               ("linking", [cxx, *CPU_LINK_OPTIONS, str(tmp_o), "-o", str(tmp_so)], tmp_so)):
            proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec)
            said = proc.stderr.strip() or proc.stdout.strip()
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{what} kernels/{entry} for the CPU with {cxx} failed (exit status {proc.returncode}"
                    f"{'' if said else ', and no message'}; the command: {shlex.join(cmd)})"
                    f"{_no_openmp_advice(cxx, said) or _not_a_cxx_advice(cxx)}"
                    + (f":\n{said[-6000:]}" if said else ""))
            if not out.is_file():
                raise RuntimeError(
                    f"{what} kernels/{entry} for the CPU: {cxx} exited with status 0 but wrote no {out.suffix} file "
                    f"(the command: {shlex.join(cmd)}): it is not a working C++ compiler"
                    + _not_a_cxx_advice(cxx, ask=False))
        try:   # loaded before it is stored: a library that does not load must never reach the (shared) cache
            ctypes.CDLL(str(tmp_so))
        except OSError as exc:
            raise RuntimeError(
                f"the CPU kernel that {cxx} ({ident['compiler']}) built cannot be loaded ({exc}); it is not stored "
                "in the kernel cache" + (_not_a_cxx_advice(cxx)
                                         or "; is the compiler's runtime (libstdc++, libgomp) installed?")) from None
        data = tmp_so.read_bytes()
        with open(tmp_so, "rb+") as fh:
            os.fsync(fh.fileno())
        sha = _sha256(data)
        so = folder / f"{stem}-{ident['key']}-{sha[:16]}.so"
        # readable by all whatever the umask: nothing in a kernel is secret, and in a group-shared cache a kernel
        # written under umask 077 was unreadable to the others, who rebuilt it on every run (the cluster audit, F5)
        os.chmod(tmp_so, _KERNEL_MODE)
        os.replace(tmp_so, so)  # atomic: concurrent builders never see a partial library
    _fsync_dir(folder)
    manifest = {"format": _MANIFEST_FORMAT, "kernel": so.name, "size": len(data), "sha256": sha, "entry": entry,
                **{k: v for k, v in ident.items() if k != "key"},
                "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = write_bytes_atomic(folder / f"{stem}-{ident['key']}.json", (json.dumps(manifest, indent=1) + "\n").encode())
    os.chmod(path, _MANIFEST_MODE)
    return so


#: what a compiler without OpenMP says when it builds the kernel (-fopenmp, #include <omp.h>, linking libgomp or
#: libomp): clang++ without libomp-dev, "fatal error: 'omp.h' file not found"; Apple clang (macOS's g++),
#: "unsupported option '-fopenmp'"; a g++ without libgomp, "cannot find -lgomp"
_NO_OPENMP = re.compile(r"omp\.h|'-fopenmp'|-lgomp|-lomp\b|libgomp|libomp")


def _no_openmp_advice(cxx: str, said: str) -> str:
    """Where the compiler's output ``said`` shows that it has no OpenMP (:data:`_NO_OPENMP`), what to do; else "".
    The packaging audit of 2026-12-07, F3: a clang++ without libomp-dev (or macOS's g++, Apple clang) failed with
    "'omp.h' file not found" and no advice."""
    if not _NO_OPENMP.search(said):
        return ""
    if sys.platform == "darwin" or _is_apple_clang(cxx):   # -fopenmp is refused by Apple clang whatever is installed
        return (f"; {cxx} has no OpenMP, which the CPU kernel is built with: on macOS g++ and clang++ are Apple clang, "
                "which refuses -fopenmp: install Homebrew's GCC, `brew install gcc`, and set CXX to it by its "
                "version's name, such as CXX=g++-14")
    if sys.platform == "win32":
        return (f"; {cxx} has no OpenMP, which the CPU kernel is built with: run mcproton in WSL, the Windows "
                "Subsystem for Linux, where `apt-get install g++` gives it a compiler that has it, or use the CUDA "
                "backend on an NVIDIA GPU (a native Windows g++, MinGW-w64, is untested)")
    return (f"; {cxx} has no OpenMP, which the CPU kernel is built with: install its OpenMP runtime (libgomp for g++, "
            "e.g. `apt-get install g++`; libomp-dev for clang++), or set CXX to a compiler that has it, such as g++")


def _is_apple_clang(cxx: str) -> bool:
    """Whether ``cxx`` is Apple clang (its ``--version`` line; macOS's g++ is too)."""
    try:
        return compiler_version(cxx).startswith("Apple clang")
    except OSError:
        return False


def _not_a_cxx_advice(cxx: str, ask: bool = True) -> str:
    """Where ``cxx`` is $CXX (the user's choice, not g++ found on the PATH), what to do when it fails: it may not be a
    C++ compiler (CXX=gcc, the C driver, built a kernel that did not load; a wrapper that exits 0 wrote nothing:
    the environment audit 19, F5); ``ask``: ask first whether it is one.  "" for a compiler found by mcproton
    itself (its own message says what failed)."""
    if os.environ.get("CXX") != cxx:
        return ""
    return ((f"; is CXX={cxx} a C++ compiler?" if ask else "")
            + "; set CXX to a C++ compiler, such as g++ (or unset it: g++, c++ or clang++ is then found)")


#: how long (s) a process waits for another that holds the build lock of the same kernel before it compiles it too:
#: a compile takes ~5 s alone and ~30 s with four at once on two cores (the cluster audit, F8); a builder stuck on a
#: stalled file system must not hold up every task of a job array for ever
_LOCK_WAIT_S = 900.0
#: after waiting this long (s) for the lock, a note says what the process waits for
_LOCK_NOTE_AFTER_S = 5.0
#: how often (s) a waiting process tries the lock again
_LOCK_POLL_S = 0.2
#: a build folder (``tmp*`` in the cache) older than this (s) is the litter of a build killed by SIGKILL (its
#: TemporaryDirectory never removed; ~190 kB each): removed when a kernel is next built there (the cluster audit, F9)
_STALE_BUILD_S = 3600.0
#: prctl option that sends the child a signal when its parent dies (<linux/prctl.h>)
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def _build_lock(folder: Path, stem: str, key: str) -> Iterator[None]:
    """Hold the advisory build lock of kernel ``key`` in ``folder`` (``flock`` on ``<stem>-<key>.lock`` beside the
    kernel) while the body runs: a second process waits for the builder, then finds the kernel built (the cluster
    audit, F8: the N tasks of a job array on an empty cache each compiled it, 30 s each instead of 5 s once).  Where
    no lock can be had (no fcntl, a file system without flock, a folder in which this user cannot create the lock
    file) the body runs without it, as before; after :data:`_LOCK_WAIT_S` s of waiting too, with a note.  The lock
    file stays: removing it would let a third process lock a new file while a second still waits on the old one."""
    try:
        import fcntl
    except ImportError:   # not POSIX
        yield
        return
    path = folder / f"{stem}-{key}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)   # flock needs no write access: another user's file
    except OSError:
        yield
        return
    locked = False
    try:
        with contextlib.suppress(OSError):   # openable by all whatever the umask (a group-shared cache)
            os.fchmod(fd, 0o644)
        start = time.monotonic()
        noted = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:   # another process builds this kernel
                pass
            except OSError:   # ENOLCK, EOPNOTSUPP: a file system without flock (some NFS mounts)
                break
            waited = time.monotonic() - start
            if waited >= _LOCK_WAIT_S:
                _note(f"another mcproton process has held the build lock {path} for {waited:.0f} s: compiling the "
                      "CPU kernel in this one too")
                break
            if not noted and waited >= _LOCK_NOTE_AFTER_S:
                noted = True
                _note(f"waiting for another mcproton process compiling the CPU kernel (lock {path})")
            time.sleep(_LOCK_POLL_S)
        yield
    finally:
        if locked:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _remove_stale_builds(folder: Path) -> None:
    """Remove this user's build folders (``tmp*`` holding only a build's .cpp, .o and .so) older than
    :data:`_STALE_BUILD_S` from ``folder``: those of builds killed by SIGKILL, left for ever before."""
    now = time.time()
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith("tmp")]
    except OSError:
        return
    for p in candidates:
        try:
            st = p.lstat()
            if (not stat.S_ISDIR(st.st_mode) or now - st.st_mtime < _STALE_BUILD_S
                    or (uid is not None and st.st_uid != uid)):
                continue
            if all(n.endswith((".cpp", ".o", ".so")) for n in os.listdir(p)):   # a build's, nothing else
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


#: an entry of the kernel cache (a kernel, its manifest and its lock file, of one key) that has not been loaded or built
#: for this long (s; 30 days) is removed when a kernel of another key is next built in that folder: one entry per
#: mcproton version, compiler and CPU (~115 kB each) was kept for ever (the resources audit 31, F3; a physicist who
#: upgrades every month, or a CI cache restored on every job, gathered them without bound)
_UNUSED_ENTRY_S = 30 * 86400.0
#: the names of an entry's files: ``<stem>-<key>.json`` (its manifest), ``<stem>-<key>-<sha>.so`` (its kernel) and
#: ``<stem>-<key>.lock`` (its build lock); no other file of the folder is ever removed
_ENTRY_FILE = re.compile(r"(?P<stem>[A-Za-z0-9_]+)-(?P<key>[0-9a-f]{24})(?:-[0-9a-f]{16}\.so|\.json|\.lock)")


def _mark_used(manifest: Path) -> None:
    """Record that the kernel of ``manifest`` was used now: its manifest's modification time, which
    :func:`_remove_unused_entries` reads.  Nothing where it cannot be set (a cache this user may only read, another
    user's kernel: there the kernel's and manifest's access times, set when they are read to be verified, tell its use,
    where the file system records them; mounted noatime, the entry's age is that of its last build or marked use)."""
    with contextlib.suppress(OSError):
        os.utime(manifest)


def _remove_unused_entries(folder: Path, keep: str) -> None:
    """Remove from ``folder`` the entries of other keys than ``keep`` whose files were all last modified (built, or
    marked used by :func:`_mark_used`) and last read (verified before a load) more than :data:`_UNUSED_ENTRY_S` ago,
    all of whose files are this user's:
    their manifest first (no process verifies the kernel after that), then the kernel and the lock file, holding the
    entry's build lock (an entry being built is left alone).  A process that loads the kernel between its check and
    its removal looks again (:func:`load_kernel`); one that loaded it before keeps it mapped."""
    try:
        import fcntl
    except ImportError:   # not POSIX: no lock to hold, nothing removed
        return
    uid = os.getuid() if hasattr(os, "getuid") else None
    entries: dict[tuple[str, str], list[Path]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _ENTRY_FILE.fullmatch(name)
        if m and m["key"] != keep:
            entries.setdefault((m["stem"], m["key"]), []).append(folder / name)

    def unused(files: list[Path]) -> bool:
        try:
            stats = [f.lstat() for f in files]
        except OSError:   # removed meanwhile by another process, or not ours to look at
            return False
        # used: modified (built, marked) or read (the hash verified before each load: a reader who may not mark it,
        # as for another user's kernel in a shared cache, still sets its access time where the file system records it)
        return all(time.time() - max(st.st_mtime, st.st_atime) > _UNUSED_ENTRY_S and stat.S_ISREG(st.st_mode)
                   and (uid is None or st.st_uid == uid) for st in stats)

    for (stem, key), files in sorted(entries.items()):
        if not unused(files):
            continue
        lock = folder / f"{stem}-{key}.lock"
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:   # being built now (or no flock here): left alone
                continue
            # looked at again under the lock: used or rebuilt since, or a file added, and the entry is kept
            files = [folder / n for n in os.listdir(folder)
                     if (m := _ENTRY_FILE.fullmatch(n)) and (m["stem"], m["key"]) == (stem, key)]
            if not unused([f for f in files if f != lock]):
                continue
            for f in sorted(files, key=lambda f: (f.suffix != ".json", f == lock)):   # the manifest first
                with contextlib.suppress(OSError):
                    f.unlink()
        except OSError:
            continue
        finally:
            os.close(fd)   # releases the lock


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the compiler killed when this process dies (Linux: ``prctl(PR_SET_PDEATHSIG,
    SIGKILL)``): a run killed while compiling left the compiler running on as an orphan (the cluster audit, F9).  None
    where there is no prctl.  Only the compiler driver is covered: the driver's own children (cc1plus) finish their
    step and exit."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl   # looked up here: nothing but the call in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:   # the parent died before the prctl: nobody is left to send the signal
            os._exit(1)

    return preexec


def _build(entry: str, src: str, ident: dict[str, Any], folder: Path, cxx: str, look: bool = True) -> Path:
    """Build the kernel in ``folder`` holding its build lock (:func:`_build_lock`); ``look``: first look again for
    the kernel, which another process may have built while this one waited for the lock.  Old build folders of
    killed builds, and the entries of other keys not used for 30 days, are removed first
    (:func:`_remove_stale_builds`, :func:`_remove_unused_entries`)."""
    with _build_lock(folder, Path(entry).stem, ident["key"]):
        if look:
            found = _find(folder, entry, ident, quiet=True)
            if found is not None:
                return found
        _remove_stale_builds(folder)
        _remove_unused_entries(folder, ident["key"])
        return _compile(entry, src, ident, folder, cxx)


def _kernel_path(entry: str, cxx: str | None, rebuild: bool = False) -> Path:
    """The verified kernel library of ``entry`` for this CPU: from the cache (the configured folder, then the
    per-user temporary one), else built with ``cxx`` (None: no compiler; RuntimeError where none is cached).  Where
    the configured folder's kernel is there but not readable by this user, it is left alone and the kernel is built
    in the per-user temporary folder, with a note."""
    src = assemble(entry)
    ident = kernel_identity(src, compiler_version(cxx) if cxx else None)
    try:
        conf: Path | None = cache_dir()
    except CacheDirError:
        raise
    except RuntimeError:
        conf = None
    unreadable: list[str] = []
    if conf is not None and not rebuild:
        found = _find(conf, entry, ident, unreadable)
        if found is not None:
            return found
    try:
        folder, note = _build_dir()
    except RuntimeError:
        if cxx is None:   # nothing to build with anyway
            raise RuntimeError(_no_kernel(conf, unreadable)) from None
        raise
    if unreadable and folder == conf:   # another user's kernel: not replaced, not removed
        folder = _fallback_dir()
        _unwritable(folder)   # created
        note = (f"the cached CPU kernel in {conf} is there but {'; '.join(unreadable)}: the kernels are built in "
                f"{folder} instead (its owner can make it readable with chmod a+r, or rebuild it with this "
                "mcproton, which writes kernels readable by all)")
    if folder != conf and not rebuild:
        found = _find(folder, entry, ident)
        if found is not None:
            # the user's own setting that cannot be used, or another user's kernel: said on every run (once per
            # process), not only on the run that built the kernel here (the environment audit 19, F4: a typo naming a
            # file, or a shared cache read-only for this user, went unnoticed after the first run)
            if note and (unreadable or _cache_env() is not None):
                _note(note)
            return found
    if cxx is None:
        raise RuntimeError(_no_kernel(conf, unreadable))
    if note:
        _note(note)
    try:
        return _build(entry, src, ident, folder, cxx, look=not rebuild)
    except OSError as exc:
        # a quota or a full disk that the probe missed (it filled up during the build): the per-user folder instead
        if exc.errno not in _NO_ROOM or folder != conf:
            raise RuntimeError(f"the CPU kernel cannot be built in the kernel cache {folder} ({exc.strerror or exc}); "
                               f"set {CACHE_ENV} to a folder with space that can be written") from None
        why = exc.strerror or str(exc)
    fallback = _fallback_dir()
    bad = _unwritable(fallback)
    if bad is not None:
        raise RuntimeError(f"the CPU kernel cannot be built in the kernel cache {folder} ({why}), nor in the temporary "
                           f"folder {fallback} ({bad}): set {CACHE_ENV} to a folder with space that can be written")
    _note(f"the CPU kernel cache {folder} cannot take a kernel ({why}): the kernels are built in {fallback} instead "
          f"(free space there, or set {CACHE_ENV} to another folder, to keep them)")
    return _build(entry, src, ident, fallback, cxx, look=not rebuild)


def _no_kernel(conf: Path | None, unreadable: list[str] | None = None) -> str:
    if unreadable:   # the kernel is there: it cannot be read (the cluster audit, F5: "no kernel built" was false)
        return (f"no C++ compiler found for the CPU backend (looked for $CXX, g++, c++, clang++), and the kernel built "
                f"for this CPU in the kernel cache {conf or ''} cannot be read: {'; '.join(unreadable)}; ask its "
                f"owner to make it readable (chmod a+r), or install a compiler (e.g. {install_compiler()})")
    return (f"no C++ compiler found for the CPU backend (looked for $CXX, g++, c++, clang++), and no kernel built for "
            f"this CPU and this mcproton's kernel source in the kernel cache {conf or ''}; install a compiler (e.g. "
            f"{install_compiler()}), or set {CACHE_ENV} to a cache shared with a machine that has one and the same "
            "CPU, where one mcproton run builds the kernels")


def load_kernel(entry: str, cxx: str | None) -> ctypes.CDLL:
    """The kernel library of ``entry``, loaded.  One that the loader refuses (a cache copied from another machine, a
    missing runtime library) is rebuilt once where a compiler is present, with a note.  One removed between its check
    and its load (another process tidying the cache: :func:`_remove_unused_entries`) is looked for again."""
    unset_unusable_omp_num_threads()   # before the OpenMP runtime, loaded with the kernel, reads it
    path = _kernel_path(entry, cxx)
    try:
        return ctypes.CDLL(str(path))
    except OSError as exc:
        if not path.exists():   # removed meanwhile: not damaged; another kernel of this build, or a build, serves
            return _load_again(entry, cxx)
        if cxx is None:
            raise RuntimeError(f"the cached CPU kernel {path} cannot be loaded ({exc}) and there is no C++ compiler to "
                               f"rebuild it; install one (e.g. {install_compiler()})") from None
        _note(f"the cached CPU kernel {path} cannot be loaded ({exc}): rebuilding it")
    path = _kernel_path(entry, cxx, rebuild=True)
    try:
        return ctypes.CDLL(str(path))
    except OSError as exc:
        raise RuntimeError(f"the CPU kernel {path}, just built, cannot be loaded ({exc}); where its folder is on a "
                           f"file system mounted noexec, set {CACHE_ENV} to a folder on another") from None


def _load_again(entry: str, cxx: str | None) -> ctypes.CDLL:
    """The kernel library of ``entry`` found (or built) again and loaded, its one removed by another process between
    its check and its load (:func:`load_kernel`)."""
    path = _kernel_path(entry, cxx)
    try:
        return ctypes.CDLL(str(path))
    except OSError as exc:
        raise RuntimeError(f"the CPU kernel {path} cannot be loaded ({exc}), nor the one found before it, removed "
                           f"meanwhile; run again, or set {CACHE_ENV} to a folder of your own") from None


def toolchain() -> tuple[str | None, str]:
    """The C++ compiler and its version line; with none on this machine, (None, the compiler that built the cached
    kernel) where the cache holds a verified kernel of this source and options for this CPU (a cache shared with a
    login node), else RuntimeError."""
    cxx, text, _ = _toolchain()
    return cxx, text


def _toolchain() -> tuple[str | None, str, str]:
    """:func:`toolchain`, and the ``--version`` line of the compiler that builds (or, with none here, built) the
    kernel: the ``compiler`` of its :func:`kernel_identity`."""
    try:
        cxx = find_compiler()
    except RuntimeError:
        path = _kernel_path("transport.cu", None)
        built_by = json.loads(path.with_name(path.name.rsplit("-", 1)[0] + ".json").read_text(encoding="utf-8"))
        line = str(built_by.get("compiler"))
        return None, f"{line} (the cached kernel {path.name}; no compiler on this machine)", line
    return cxx, compiler_version(cxx), compiler_version(cxx)


#: what :func:`_runtime_team` has said in this process (each case once outside a run or check; in one, once per run
#: or check: errors.said_in_this_call)
_TEAM_WARNED: set[tuple[str, int, int]] = set()


def _runtime_team(lib: ctypes.CDLL, n: int) -> tuple[int, str]:
    """The OpenMP threads a launch of ``n`` gets from the OpenMP runtime the kernel library ``lib`` is linked with
    (libgomp, libomp; asked through its handle), and the device text where that is not simply ``n``: the runtime's
    thread limit (OMP_THREAD_LIMIT, set by some cluster environments) caps the team, and dynamic adjustment
    (OMP_DYNAMIC=true) lets it run fewer threads on a loaded machine, as many as it sees fit for each launch (which
    the kernel does not report: the text says "up to").  Either is warned about once in each run or check (its
    record holds it: in-process audit 25, F4) and once per process outside one: the dose is the same (bitwise: it
    does not depend on the thread count), the run slower.  Before, the device text and the provenance said the
    threads asked for (the environment audit of 2026-12-06, F3)."""
    from .._io.errors import McprotonRuntimeWarning, said_in_this_call, warn

    limit, dynamic = int(lib.omp_get_thread_limit()), bool(int(lib.omp_get_dynamic()))
    team, text = _team_text(n, limit, dynamic)
    if team < n:
        said = f"the CPU backend runs on {limit} OpenMP thread{'s' if limit > 1 else ''}, not the {n} asked for "
        if not said_in_this_call(said, _TEAM_WARNED, ("limit", n, limit), at_start=True):
            env = os.environ.get("OMP_THREAD_LIMIT")
            why = f"OMP_THREAD_LIMIT={env} in the environment" if env is not None else "the OpenMP runtime's limit"
            warn(f"{said}(run.threads or OMP_NUM_THREADS): {why} caps every OpenMP team of this process; the dose "
                 f"is the same, the run slower; unset OMP_THREAD_LIMIT (or set it to at least {n}) to use {n} threads",
                 McprotonRuntimeWarning)
        n = team
    if n > 1 and dynamic:
        said = f"the OpenMP runtime may run the CPU backend on fewer than the {n} threads asked for "
        if not said_in_this_call(said, _TEAM_WARNED, ("dynamic", n, 0)):
            warn(f"OpenMP dynamic adjustment is on (OMP_DYNAMIC={os.environ.get('OMP_DYNAMIC', 'true')} in the "
                 f"environment): {said}while the machine is loaded, and the device text says \"up to\"; the dose is "
                 "the same, the run slower; set OMP_DYNAMIC=false to run on all of them", McprotonRuntimeWarning)
    return n, text


def _team_text(n: int, limit: int, dynamic: bool) -> tuple[int, str]:
    """The OpenMP threads a team of ``n`` asked for gets under the runtime's thread ``limit`` (0: none) with dynamic
    adjustment on or off, and the device text where that is not simply ``n`` (:func:`_runtime_team`)."""
    team, text = n, ""
    if 0 < limit < n:
        team = limit
        text = f"{limit} OpenMP thread{'s' if limit > 1 else ''}: the OpenMP thread limit caps the {n} asked for"
    if team > 1 and dynamic:
        text = (f"up to {team} OpenMP threads: " + (f"the OpenMP thread limit caps the {n} asked for, and "
                                                     if team < n else "") + "OMP_DYNAMIC lets the runtime run fewer")
    return team, text


def _env_team_text(n: int) -> str:
    """:func:`_team_text` of the OpenMP environment (OMP_THREAD_LIMIT, OMP_DYNAMIC), which the OpenMP runtime reads
    when the kernel library loads it: the device text of a backend before its first launch asks the runtime itself.
    ``mcproton run``'s first line ("backend cpu on ...") said the threads asked for, then the warning and the summary
    the thread limit's (review 2 of 2026-12-06, F8)."""
    try:
        limit = int(os.environ.get("OMP_THREAD_LIMIT", "").strip() or 0)
    except ValueError:   # the runtime ignores a value it cannot read
        limit = 0
    return _team_text(n, max(limit, 0), omp_dynamic_env(os.environ.get("OMP_DYNAMIC")))[1]


#: the characters C's isspace() skips (the C locale): libgomp skips them around a boolean's value
_C_SPACE = " \t\n\v\f\r"


def omp_dynamic_env(value: str | None) -> bool:
    """Whether the OpenMP runtime turns dynamic adjustment on for ``OMP_DYNAMIC=value``, read as libgomp (GCC's
    runtime, which the kernel is built with: -fopenmp) reads it: after leading white space, "true" in any case is
    on; "false", anything else and no value leave it off (libgomp says "Invalid value" and keeps its default, off:
    "1", "yes" and "on" included; review 5 of 2026-12-06, F5, where the device text said "up to" for them while
    the run used every thread).  Checked against libgomp's omp_get_dynamic() (tests/engine)."""
    return value is not None and value.lstrip(_C_SPACE)[:4].lower() == "true"


_CTYPES = {"p": ctypes.c_void_p, "u64": ctypes.c_uint64, "i64": ctypes.c_int64, "i32": ctypes.c_int32,
           "f32": ctypes.c_float}


class CpuBackend:
    name = "cpu"
    xp = np

    def __init__(self, threads: int | None = None) -> None:
        self._cxx, self.compiler, self._kernel_compiler = _toolchain()
        self.compile_options = CPU_OPTIONS
        self._libs: dict[str, ctypes.CDLL] = {}
        # default: OMP_NUM_THREADS, else the CPUs this process may run on (its affinity: taskset, Slurm), not the
        # machine's (mcproton/_cpus.py; the deployment audit, F8, F9)
        self.threads = threads or default_threads()
        # the team the OpenMP environment allows (a launch asks the runtime, and says what it found: _team_size)
        team = _env_team_text(self.threads) if self.threads > 1 else ""
        self.device = f"CPU: {cpu_model()} ({team or f'{self.threads} OpenMP threads'})"

    def build_identity(self) -> dict[str, str]:
        """What identifies the transport kernel this backend runs: the compiler (its ``--version`` line), the
        options, the CPU it is built for (-march=native: model and instruction-set flags) and the kernel cache's key
        of them all (:func:`kernel_identity`).  Two builds that differ in it may round a few histories differently
        (-ffast-math): a checkpoint records it, so that a run resumed by another build says so (the environment
        audit, F2)."""
        ident = kernel_identity(assemble("transport.cu"), self._kernel_compiler)
        return {"compiler": str(ident["compiler"]), "options": ident["options"], "cpu_model": ident["cpu_model"],
                "cpu_flags_sha256": ident["cpu_flags_sha256"], "kernel_key": ident["key"]}

    def _lib(self, entry: str) -> ctypes.CDLL:
        if entry not in self._libs:
            lib = load_kernel(entry, self._cxx)
            for name, (file, spec) in ENTRY_POINTS.items():
                if file == entry:
                    fn = getattr(lib, name)
                    fn.argtypes = [_CTYPES[k] for k in spec]
                    fn.restype = None
            self._libs[entry] = lib
        return self._libs[entry]

    def compile(self) -> None:
        self._lib("transport.cu")

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a)

    def zeros(self, shape: Any, dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def ptr(self, a: np.ndarray) -> int:
        return int(a.ctypes.data)

    def to_host(self, a: np.ndarray) -> np.ndarray:
        return a

    def synchronize(self) -> None:
        pass

    def device_context(self) -> Any:
        return contextlib.nullcontext()

    def launch(self, name: str, n_items: int, *args: Any) -> None:
        file, spec = ENTRY_POINTS[name]
        if len(args) != len(spec):
            raise TypeError(f"{name} takes {len(spec)} arguments, got {len(args)}")
        cargs = []
        for kind, a in zip(spec, args):
            if kind == "p":
                if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                    raise TypeError(f"{name}: pointer arguments must be C-contiguous numpy arrays")
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                cargs.append(cast_scalar(kind, a).item())
        lib = self._lib(file)
        threads = self._team_size(lib)
        # through the kernel library's own handle: the OpenMP runtime it was linked with (libgomp, libomp).  The
        # calling thread's OpenMP thread count is put back afterwards: it is the script's too (every other OpenMP
        # library in the process, and a limit the script set with threadpoolctl; the Python-API audit, F7)
        before = int(lib.omp_get_max_threads())
        lib.omp_set_num_threads(ctypes.c_int(threads))
        try:
            getattr(lib, name)(*cargs)
        finally:
            lib.omp_set_num_threads(ctypes.c_int(before))

    def _team_size(self, lib: Any = None) -> int:
        """The OpenMP threads of the next launch: ``threads``, or 1 in a process forked after its parent ran a team
        of several (_FORKED_AFTER_TEAM; said once, and in ``device``), or fewer where the OpenMP runtime of the
        kernel library ``lib`` caps or may shrink the team (:func:`_runtime_team`)."""
        global _TEAM_RUN
        n = max(1, int(self.threads))
        if n > 1 and _FORKED_AFTER_TEAM:
            _warn_forked(n)
            self.device = f"CPU: {cpu_model()} (1 OpenMP thread: forked after the parent used {n})"
            return 1
        if n > 1 and lib is not None:
            n, text = _runtime_team(lib, n)
            self.device = f"CPU: {cpu_model()} ({text or f'{n} OpenMP threads'})"   # the runtime's word over the env's
        if n > 1:
            _TEAM_RUN = True   # before the launch: a fork from another thread during it inherits the pool
        return n

"""Output locks: one run (``mcproton run``) or check (``mcproton check --out``, ``--batch``) writes an output at a
time.

Before its transport a run takes ``<output>.lock`` beside each of its outputs (created with ``O_CREAT | O_EXCL``,
so of two runs exactly one gets it) and holds it until its outputs are written; it is removed at the end, also on
an error or an interrupt.  The lock file holds the holder's pid, host, start time and command line, so that a
second run on the same output is refused with a message naming the run that holds it (an audit of long runs,
2026-12-05: two runs with one ``--out`` both exited 0 and one of the two doses was lost without a word).

The lock of a folder output (``mcproton check --out DIR``, ``--batch ... --out DIR``) is ``DIR/.mcproton-lock``
inside the folder (created as the check would create it): the folder's parent may be one the user cannot write
(``--out ~``, a per-user folder of a QA share).

A run locks every file it writes, not only its outputs: its checkpoint and its plot are named after ``--out`` without
its ``.h5``/``.hdf5`` suffix, so ``--out x.h5`` and ``--out x.hdf5`` share ``x.ckpt.h5`` and ``x.png`` (the long-runs
audit, F4: two such runs overwrote and deleted each other's checkpoint).  Each lock file records the role of its
file in the holder's run (``role``), so that a refusal says what the file is to both runs.

A lock left behind by a run that no longer exists (killed with SIGKILL, a crashed node) is stale: on the same host
and boot a pid that is gone (or now belongs to a process started at another time: also this process's own pid, a
container restarted after an OOM kill being pid 1 again) is taken over with a note, and so is a lock written before
the host last booted (another boot id).  A lock of another host, or of another PID namespace on this host (a
container sharing the host's name), cannot be checked from here and is refused with the file to delete.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .atomic import name_tag, name_too_long, temporary_files
from .errors import McprotonEnvironmentError

#: the lock files this process holds, with the content it wrote in each (for :func:`drop_held_locks`)
_HELD: dict[Path, bytes] = {}
#: the fields of a lock file that name its holder (one run): its lock files alike in them are one run's
_HOLDER = ("pid", "host", "started", "proc_start", "boot_id")
#: the name of the lock file inside a folder output
FOLDER_LOCK = ".mcproton-lock"
#: the suffix of the lock file beside a file output: the longest name mcproton derives from an output's
LOCK_SUFFIX = ".lock"


def _unlink_own(path: Path, content: bytes) -> bool:
    """Remove the lock file ``path`` only if it still holds ``content`` (this process's own): a lock that another
    run has taken over (wrongly, or after this one was suspended for long) is left to it.  Whether removed."""
    try:
        if path.read_bytes() != content:
            return False
        path.unlink()
        return True
    except OSError:
        return False


def drop_held_locks() -> None:
    """Remove the lock files this process holds, from any thread: a process about to end at once (a second
    SIGINT/SIGTERM, mcproton._run.job) leaves no lock behind."""
    for p, content in list(_HELD.items()):
        _unlink_own(p, content)
        _HELD.pop(p, None)


def command_line(argv: list[str] | None = None) -> str:
    """This process's command line as a user types it (``argv``: sys.argv), for a lock file's ``command``, which
    refusals and stale-lock notes show: ``mcproton ...`` for the ``mcproton`` script and for ``python -m mcproton``
    (``argv[0]`` is then ``.../mcproton/__main__.py``, or ``.../mcproton/cli.py`` under ``python -m mcproton.cli``:
    before, that path was recorded, a command nobody can type: review 2a of 2026-12-07, R5); otherwise the line
    as it is (a script of the user's)."""
    argv = list(sys.argv if argv is None else argv)
    first = Path(argv[0]) if argv and argv[0] else Path("")
    ours = first.name.startswith("mcproton") or (first.name in ("__main__.py", "cli.py")
                                                 and first.parent.name == "mcproton")
    return " ".join(["mcproton", *argv[1:]]) if ours else " ".join(argv)


class OutputLockedError(McprotonEnvironmentError):
    """The output is locked by another run that is (or may be) still running; the message names it."""


class OutputLockError(McprotonEnvironmentError, ValueError):
    """The lock file of an output could not be created (a read-only folder, no permission); the message says what,
    where and what to do.  An environment error (exit status 3), and a ValueError as before."""


def lock_path(target: str | Path, folder: bool = False) -> Path:
    """The lock file of ``target``: ``<target>.lock`` beside a file, ``<target>/.mcproton-lock`` inside a folder
    (``folder``), with the links resolved, so that two spellings of one output (``out/o.h5``,
    ``./out/../out/o.h5``) share one lock."""
    t = Path(os.path.realpath(target))
    return t / FOLDER_LOCK if folder else t.parent / (t.name + LOCK_SUFFIX)


def _boot_id() -> str | None:
    """This boot's id (Linux): a lock of this host with another one was written before the host rebooted."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> int | None:
    """The id of this process's PID namespace (Linux): pids of another namespace (another container on the same
    host, sharing its host name) cannot be seen from here."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux /proc), or None where unknown: tells a
    pid reused by another process from the lock's holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


#: Windows (:func:`_alive_windows`): OpenProcess's right to read a process's exit code, GetExitCodeProcess's code of a
#: process still running, and OpenProcess's error for a pid that no process has (WinError 87)
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_STILL_ACTIVE = 259
_ERROR_INVALID_PARAMETER = 87


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (another user's too).  On Windows through OpenProcess and
    GetExitCodeProcess (:func:`_alive_windows`), never ``os.kill(pid, 0)``: there signal 0 is CTRL_C_EVENT, so that
    call sends a Ctrl-C to the console of a live ``pid`` (and to every process attached to it: both runs stopped),
    and for a pid that has ended it fails with WinError 87, an OSError, which was taken for "alive": no finished
    run's lock was ever seen stale (the portability audit 27, F1 and F3)."""
    if os.name == "nt":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    except OSError:
        return True
    return True


def _alive_windows(pid: int) -> bool:
    """:func:`_alive` on Windows: the process ``pid`` can be opened and its exit code is STILL_ACTIVE.  A pid no
    process has (ERROR_INVALID_PARAMETER) is gone; one that cannot be opened otherwise (access denied: another
    user's, a protected process) counts as alive, as a PermissionError does on POSIX; so does one whose exit code
    cannot be read, and every pid where ``_winapi`` is missing (the lock is then refused naming the file to
    delete)."""
    try:
        import _winapi
    except ImportError:
        return True
    try:
        handle = _winapi.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    except OSError as exc:
        return getattr(exc, "winerror", None) != _ERROR_INVALID_PARAMETER
    try:
        return bool(_winapi.GetExitCodeProcess(handle) == _STILL_ACTIVE)
    except OSError:
        return True
    finally:
        _winapi.CloseHandle(handle)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def describe_holder(info: dict[str, Any]) -> str:
    """'pid N on host H, started T (command)' from a lock file's content."""
    cmd = info.get("command")
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f" ({cmd})" if cmd else ""))


def _unverifiable(info: dict[str, Any]) -> str | None:
    """Why the holder of the lock ``info`` cannot be checked from here (another host, or another PID namespace of
    this host), or None."""
    host = socket.gethostname()
    if info.get("host") != host:
        return f"host {info.get('host')} is not this one, {host}: whether it still runs cannot be checked from here"
    ns = info.get("pid_ns")
    if ns is not None and ns != _pid_namespace() and not _rebooted(info):
        return (f"it was written in another PID namespace of this host (another container: namespace {ns}, this is "
                f"{_pid_namespace()}): whether it still runs cannot be checked from here")
    return None


def _rebooted(info: dict[str, Any]) -> bool:
    boot = info.get("boot_id")
    return boot is not None and _boot_id() is not None and boot != _boot_id()


def _stale(info: dict[str, Any], path: Path | None = None) -> str | None:
    """Why the lock ``path`` of content ``info`` is stale (its holder is gone), or None when the holder may still
    run."""
    if not info or info.get("host") != socket.gethostname():
        return None
    if _rebooted(info):
        return f"this host has booted again since (boot id {info.get('boot_id')}, now {_boot_id()})"
    if _unverifiable(info):
        return None
    try:
        pid = int(info.get("pid"))
    except (TypeError, ValueError):
        return None
    if pid == os.getpid():
        if path is not None and path in _HELD:
            return None   # this process holds it (another output of this command, or a caller's nesting)
        mine = _proc_start(pid)
        if mine is None or info.get("proc_start") is None:
            return None
        # the same pid in an earlier process (pid 1 of a container restarted after an OOM kill)
        return (f"pid {pid} is this process's now, which started at another time: an earlier process with this "
                "pid (a container restarted after it was killed?)" if info["proc_start"] != mine
                else "written by this process, which no longer holds it")
    if not _alive(pid):
        return f"pid {pid} no longer exists on this host; killed?"
    start = _proc_start(pid)
    if start is not None and info.get("proc_start") not in (None, start):
        return f"pid {pid} now belongs to another process; killed?"
    return None


class OutputLock:
    """``with OutputLock(targets, what, log):``: hold the locks of ``targets`` (files or folders; see
    :func:`lock_path`) for the block, or raise :class:`OutputLockedError` naming the run that holds one.
    ``what`` names the outputs in messages (e.g. ``"--out"``); ``log`` gets the note of a stale lock taken over;
    ``roles`` (target -> e.g. ``"the checkpoint of --out x.h5"``) says what a target is to this run, in the lock file
    (another run's refusal names it) and in this run's messages."""

    def __init__(self, targets: list[str | Path] | str | Path, what: str = "the output",
                 log: Callable[[str], None] | None = None, folder: bool = False,
                 roles: dict[Any, str] | None = None) -> None:
        if isinstance(targets, (str, Path)):
            targets = [targets]
        seen: dict[Path, Path] = {}   # lock file -> its output
        self.roles: dict[Path, str] = {}   # lock file -> what its output is to this run
        for t in targets:
            lp = lock_path(t, folder)
            seen.setdefault(lp, Path(os.path.realpath(t)))
            role = (roles or {}).get(t) or (roles or {}).get(Path(t))
            if role:
                self.roles.setdefault(lp, role)
        self.paths = list(seen)
        self.targets = seen
        self.what = what
        self.log = log or (lambda m: (sys.stderr.write(m + "\n"), sys.stderr.flush()))
        self.held: list[Path] = []
        self.wrote: dict[Path, bytes] = {}   # the content of each lock file held
        self.made: list[Path] = []   # folders made for the locks, removed again if still empty at the end
        self.taken_over: list[tuple[Path, dict[str, Any], str]] = []   # stale locks taken over: (lock, holder, why)

    def _content(self, path: Path) -> bytes:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command_line(),
                "proc_start": _proc_start(os.getpid()), "boot_id": _boot_id(), "pid_ns": _pid_namespace()}
        if path in self.roles:
            info["role"] = self.roles[path]
        return (json.dumps(info) + "\n").encode()

    def _take(self, path: Path) -> None:
        missing = []
        up = path.parent
        while not up.exists() and up != up.parent:
            missing.append(up)
            up = up.parent
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._cannot(path, exc)
        self.made += missing
        for _ in range(5):
            try:
                # O_BINARY (Windows; 0 on POSIX): without it the file is in text mode there and os.write stores its
                # line feed as CR LF, so its content differed from what this process wrote, _unlink_own never
                # removed it and every finished run left its locks behind (the portability audit 27, F1)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o644)
            except FileExistsError:
                info = _read(path)
                if info is None:   # removed in between: try again
                    continue
                why = _stale(info, path)
                if why is None:
                    target = self.targets[path]
                    unknown = "" if info else " (the lock file is unreadable)"
                    other = _unverifiable(info) if info else None
                    check = f" ({other})" if other else ""
                    mine = f"{target} ({self.roles[path]})" if path in self.roles else f"{self.what} {target}"
                    theirs = f", as {info['role']}" if info.get("role") else ""
                    # a holder that cannot be checked (another node: a job requeued elsewhere) may be dead
                    now = "is locked by another run, which may still be writing it" if other else \
                        "is being written by another run now"
                    raise OutputLockedError(
                        f"{mine} {now}{theirs}: {describe_holder(info)}"
                        f"{unknown}{check}; two runs on one output would lose one's result: wait for it to end, stop "
                        f"it, or give another output. If that run is not running any more, "
                        f"{self._delete_all(path, info)}")
                self._steal(path, info, why)
                continue
            except OSError as exc:
                self._cannot(path, exc)
            content = self._content(path)
            try:
                try:
                    os.write(fd, content)
                finally:
                    os.close(fd)
            except OSError as exc:   # a full disk: no half-written lock is left
                path.unlink(missing_ok=True)
                self._cannot(path, exc)
            self.held.append(path)
            self.wrote[path] = _HELD[path] = content
            return
        raise OutputLockedError(f"could not take the lock {path} of {self.what} (it keeps changing: another run "
                                "is starting on the same output); give another output or try again")

    def _delete_all(self, path: Path, info: dict[str, Any]) -> str:
        """What to delete where the run holding lock ``path`` (content ``info``) has ended: every lock file of this
        run's that the same run holds, in one command.  Before, each refusal named one, and a job killed on one node
        and requeued on another was refused once per lock file (the cluster audit, F3: three submissions, each
        waiting in the queue, before it resumed)."""
        holder = {k: info.get(k) for k in _HOLDER}
        # this run's lock files, and the others beside them (the holder's plot or RT Dose that this run does not write)
        candidates = dict.fromkeys(self.paths)
        for folder in dict.fromkeys(p.parent for p in self.paths):
            try:
                candidates.update(dict.fromkeys(sorted(folder.glob(f"*{LOCK_SUFFIX}"))))
            except OSError:
                pass
        same = [path] + [p for p in candidates if p != path and p not in self.held
                         and (other := _read(p)) and {k: other.get(k) for k in _HOLDER} == holder]
        if len(same) == 1:
            return f"delete {path}"
        if os.name == "nt":   # no rm there, nor POSIX quoting (the portability audit 27, F1)
            quoted = " ".join(f'"{p}"' for p in same)
            return (f"delete its {len(same)} lock files: del {quoted} (in cmd.exe; in PowerShell: Remove-Item with the "
                    "names separated by commas)")
        import shlex

        return f"delete its {len(same)} lock files: rm {' '.join(shlex.quote(str(p)) for p in same)}"

    def _cannot(self, path: Path, exc: OSError) -> None:
        """An OSError while taking the lock ``path``: what, where and what to do."""
        why = {errno.EROFS: "the file system is read-only", errno.EACCES: "no permission",
               errno.EPERM: "no permission", errno.ENOSPC: "the disk is full",
               errno.EDQUOT: "the disk quota is exceeded"}.get(exc.errno or 0, exc.strerror or str(exc))
        too_long = name_too_long(self.targets[path], ("", LOCK_SUFFIX)) if exc.errno == errno.ENAMETOOLONG else None
        if too_long:   # refused before the run writes anything (deployment audit F6)
            role = f" ({self.roles[path]})" if path in self.roles else ""
            raise OutputLockError(f"{self.what} {self.targets[path]}{role}: {too_long}") from exc
        raise OutputLockError(
            f"{self.what} {self.targets[path]}: could not create its lock file {path} ({why}), which keeps a second "
            "run from writing the same output at once; give an output in a folder you can write to") from exc

    def _steal(self, path: Path, info: dict[str, Any], why: str) -> None:
        """Move a stale lock aside (only if it is still the stale one: another run may have taken it over)."""
        # a short name whatever the lock's (".<name>.stale.<pid>" was 20 characters longer: deployment audit F6)
        aside = path.with_name(f".mcp-stale-{name_tag(path.name)}-{os.getpid()}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
        if _read(aside) != info:   # another run replaced it in between: put it back, unless there is one again
            try:
                os.link(aside, path)
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        self.taken_over.append((path, info, why))

    def _say_taken_over(self) -> None:
        """One note per earlier run whose stale locks were taken over, naming it once and listing its lock files
        (before, a note per lock file, each with the run's whole command line: four after a SIGKILLed run with a
        plot and an RT Dose; the concurrency audit 25, F7)."""
        runs: dict[tuple[Any, ...], list[tuple[Path, dict[str, Any], str]]] = {}
        for entry in self.taken_over:
            runs.setdefault(tuple(str(entry[1].get(k)) for k in _HOLDER), []).append(entry)
        self.taken_over = []
        for entries in runs.values():
            path, info, why = entries[0]
            if len(entries) == 1:
                self.log(f"mcproton: note: took over the lock {path} of an earlier run that ended without removing it "
                         f"({describe_holder(info)}: {why})")
            else:
                self.log(f"mcproton: note: took over the {len(entries)} locks of an earlier run that ended without "
                         f"removing them ({describe_holder(info)}: {why}): {', '.join(str(p) for p, _, _ in entries)}")

    def __enter__(self) -> "OutputLock":
        try:
            for p in self.paths:
                self._take(p)
        except BaseException:
            self.release()
            raise
        finally:   # those taken over before a refusal too: they are gone
            self._say_taken_over()
        return self

    def release(self) -> None:
        while self.held:
            p = self.held.pop()
            _HELD.pop(p, None)
            _unlink_own(p, self.wrote.pop(p))
        for d in self.made:   # innermost first: only those still empty (a refused run leaves no folder behind)
            try:
                d.rmdir()
            except OSError:
                pass
        self.made = []

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_stale_temporaries(targets: list[str | Path], log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the temporary files (mcproton._io.atomic.temporary_files) that an atomic write of ``targets`` left
    when it was killed, and the temporary folders of a folder written whole (a CT series:
    mcproton._io.atomic.atomic_write_folder) (call it holding the targets' locks: a running writer's temporary file
    looks the same).  Returns them."""
    import shutil

    gone = []
    for t in targets:
        t = Path(t)
        if not t.parent.is_dir():
            continue
        for q in temporary_files(t):
            try:
                if q.is_dir() and not q.is_symlink():
                    shutil.rmtree(q)
                else:
                    q.unlink()
                gone.append(q)
            except OSError:
                pass
    if gone and log is not None:
        log(f"mcproton: note: removed {len(gone)} temporary file(s) left by an earlier run that was stopped while "
            f"writing: {', '.join(q.name for q in gone)}")
    return gone


def locks_output(param: str = "out", what: str = "--out") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function holds the :class:`OutputLock` of its argument ``param``, a folder output (its lock
    ``param/.mcproton-lock`` inside it, the folder created for it and removed again if still empty at the end; no
    lock when it is None, a file, or under something that is not a folder, which the function refuses itself)
    while it runs; its ``log`` argument, if given, gets the notes.  The empty text is refused (ValueError naming
    ``what``): ``Path('')`` is the current folder, where the demo, the phantom and the check wrote their files
    (the CLI-help audit of 2026-12-07, F10)."""
    import functools
    import inspect

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind_partial(*args, **kwargs).arguments
            out = bound.get(param)
            if out is None:
                return fn(*args, **kwargs)
            if isinstance(out, str) and not out:
                raise ValueError(f"{what} is empty: give a folder ('' is not taken as the current folder; write . "
                                 "for that)")
            o = Path(out)
            if (o.exists() or o.is_symlink()) and not o.is_dir():   # a file, a broken link: refused by fn
                return fn(*args, **kwargs)
            up = o.parent
            while not (up.exists() or up.is_symlink()) and up != up.parent:   # a broken link stops it
                up = up.parent
            if not up.is_dir():
                return fn(*args, **kwargs)
            with OutputLock(out, what, bound.get("log"), folder=True):
                return fn(*args, **kwargs)

        return wrapper

    return deco

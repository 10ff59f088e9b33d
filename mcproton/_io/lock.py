"""Output locks: one run (``mcproton run``) or check (``mcproton check --out``, ``--batch``) writes an output at a
time.

Before its transport a run takes ``<output>.lock`` beside each of its outputs (created with ``O_CREAT | O_EXCL``,
so of two runs exactly one gets it) and holds it until its outputs are written; it is removed at the end, also on
an error or an interrupt.  The lock file holds the holder's pid, host, start time and command line, so that a
second run on the same output is refused with a message naming the run that holds it (an audit of long runs,
2026-12-05: two runs with one ``--out`` both exited 0 and one of the two doses was lost without a word).

A lock left behind by a run that no longer exists (killed with SIGKILL, a crashed node) is stale: on the same host
a pid that is gone (or now belongs to a process started later) is taken over with a note; a lock of another host
cannot be checked from here and is refused with the command that removes it.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable


#: the lock files this process holds (for :func:`drop_held_locks`)
_HELD: set[Path] = set()


def drop_held_locks() -> None:
    """Remove the lock files this process holds, from any thread: a process about to end at once (a second
    SIGINT/SIGTERM, mcproton._run.job) leaves no lock behind."""
    for p in list(_HELD):
        try:
            p.unlink()
        except OSError:
            pass
        _HELD.discard(p)


class OutputLockedError(RuntimeError):
    """The output is locked by another run that is (or may be) still running; the message names it."""


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target`` (a file or a folder): ``<target>.lock`` beside it, with the folder's links
    resolved, so that two spellings of one output (``out/o.h5``, ``./out/../out/o.h5``) share one lock."""
    t = Path(os.path.realpath(target))
    return t.parent / (t.name + ".lock")


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux /proc), or None where unknown: tells a
    pid reused by another process from the lock's holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    except OSError:
        return True
    return True


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


def _stale(info: dict[str, Any]) -> str | None:
    """Why the lock of ``info`` is stale (its holder is gone), or None when the holder may still run."""
    if not info:
        return None
    if info.get("host") != socket.gethostname():
        return None
    try:
        pid = int(info.get("pid"))
    except (TypeError, ValueError):
        return None
    if pid == os.getpid():
        return None   # this process holds it (another output of this command, or a caller's nesting)
    if not _alive(pid):
        return f"pid {pid} no longer exists on this host"
    start = _proc_start(pid)
    if start is not None and info.get("proc_start") not in (None, start):
        return f"pid {pid} now belongs to another process"
    return None


class OutputLock:
    """``with OutputLock(targets, what, log):``: hold the locks of ``targets`` (files or folders; see
    :func:`lock_path`) for the block, or raise :class:`OutputLockedError` naming the run that holds one.
    ``what`` names the outputs in messages (e.g. ``"--out"``); ``log`` gets the note of a stale lock taken over."""

    def __init__(self, targets: list[str | Path] | str | Path, what: str = "the output",
                 log: Callable[[str], None] | None = None) -> None:
        if isinstance(targets, (str, Path)):
            targets = [targets]
        seen: dict[Path, None] = {}
        for t in targets:
            seen[lock_path(t)] = None
        self.paths = list(seen)
        self.what = what
        self.log = log or (lambda m: (sys.stderr.write(m + "\n"), sys.stderr.flush()))
        self.held: list[Path] = []
        self.made: list[Path] = []   # folders made for the locks, removed again if still empty at the end

    def _content(self) -> bytes:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(["mcproton", *sys.argv[1:]])
                if Path(sys.argv[0]).name.startswith("mcproton") else " ".join(sys.argv),
                "proc_start": _proc_start(os.getpid())}
        return (json.dumps(info) + "\n").encode()

    def _take(self, path: Path) -> None:
        missing = []
        up = path.parent
        while not up.exists() and up != up.parent:
            missing.append(up)
            up = up.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        self.made += missing
        for _ in range(5):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = _read(path)
                if info is None:   # removed in between: try again
                    continue
                why = _stale(info)
                if why is None:
                    target = path.with_name(path.name[:-len(".lock")])
                    unknown = "" if info else " (the lock file is unreadable)"
                    other = info.get("host") not in (None, socket.gethostname())
                    check = (f" (host {info.get('host')} is not this one, {socket.gethostname()}: whether it still "
                             "runs cannot be checked from here)") if other else ""
                    raise OutputLockedError(
                        f"{self.what} {target} is being written by another run now: {describe_holder(info)}"
                        f"{unknown}{check}; two runs on one output would lose one's result: wait for it to end, stop "
                        f"it, or give another output. If that run is not running any more, delete {path}")
                self._steal(path, info, why)
                continue
            try:
                os.write(fd, self._content())
            finally:
                os.close(fd)
            self.held.append(path)
            _HELD.add(path)
            return
        raise OutputLockedError(f"could not take the lock {path} of {self.what} (it keeps changing: another run "
                                "is starting on the same output); give another output or try again")

    def _steal(self, path: Path, info: dict[str, Any], why: str) -> None:
        """Move a stale lock aside (only if it is still the stale one: another run may have taken it over)."""
        aside = path.with_name(f".{path.name}.stale.{os.getpid()}")
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
        self.log(f"mcproton: note: took over the lock {path} of an earlier run that ended without removing it "
                 f"({describe_holder(info)}: {why}; killed?)")

    def __enter__(self) -> "OutputLock":
        try:
            for p in self.paths:
                self._take(p)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        while self.held:
            p = self.held.pop()
            _HELD.discard(p)
            try:
                p.unlink()
            except OSError:
                pass
        for d in self.made:   # innermost first: only those still empty (a refused run leaves no folder behind)
            try:
                d.rmdir()
            except OSError:
                pass
        self.made = []

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_stale_temporaries(targets: list[str | Path], log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the temporary files ``.<name>.*.tmp`` that an atomic write of ``targets`` left when it was killed
    (call it holding the targets' locks: a running writer's temporary file looks the same).  Returns them."""
    gone = []
    for t in targets:
        t = Path(t)
        if not t.parent.is_dir():
            continue
        for q in sorted(t.parent.glob(f".{t.name}.*.tmp")):
            try:
                q.unlink()
                gone.append(q)
            except OSError:
                pass
    if gone and log is not None:
        log(f"mcproton: note: removed {len(gone)} temporary file(s) left by an earlier run that was stopped while "
            f"writing: {', '.join(q.name for q in gone)}")
    return gone


def locks_output(param: str = "out", what: str = "--out") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function holds the :class:`OutputLock` of its argument ``param`` (a file or folder; no
    lock when it is None or under something that is not a folder, which the function refuses itself) while it
    runs; its ``log`` argument, if given, gets the notes."""
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
            o = Path(out)
            if (o.exists() or o.is_symlink()) and not o.is_dir():   # a file, a broken link: refused by fn
                return fn(*args, **kwargs)
            up = o.parent
            while not (up.exists() or up.is_symlink()) and up != up.parent:   # a broken link stops it
                up = up.parent
            if not up.is_dir():
                return fn(*args, **kwargs)
            with OutputLock(out, what, bound.get("log")):
                return fn(*args, **kwargs)

        return wrapper

    return deco

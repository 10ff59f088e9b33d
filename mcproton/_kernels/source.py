"""Assemble a kernel translation unit: inline our own ``#include "..."`` files with ``#line`` markers.

Inlining gives one self-contained source string, so NVRTC (which cannot see the package's folders) and
the host compiler compile exactly the same text, compiler errors point at the real files, and the cache
key (SHA-256 of the text) changes whenever any header changes.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')
ENTRY_FILES = ("transport.cu", "probes.cu")


def kernels_dir() -> Path:
    """The folder holding the CUDA C sources (``kernels/`` in the repository, installed as mcproton.kernels)."""
    return Path(str(resources.files("mcproton.kernels")))


def _inline(path: Path, seen: set[Path], out: list[str]) -> None:
    path = path.resolve()
    if path in seen:  # every header has #pragma once
        return
    seen.add(path)
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(kernels_dir().resolve()).as_posix()
    out.append(f'#line 1 "{rel}"')
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _INCLUDE.match(line)
        if m:
            inc = (path.parent / m.group(1)).resolve()
            if not inc.is_file():
                raise FileNotFoundError(f"{rel}:{lineno}: included file {m.group(1)!r} not found")
            _inline(inc, seen, out)
            out.append(f'#line {lineno + 1} "{rel}"')
        elif line.strip() == "#pragma once":
            out.append("")
        else:
            out.append(line)


@lru_cache(maxsize=8)
def assemble(entry: str = "transport.cu") -> str:
    """The full translation unit for one entry file (``transport.cu`` or ``probes.cu``)."""
    if entry not in ENTRY_FILES:
        raise ValueError(f"unknown kernel entry file {entry!r}; expected one of {ENTRY_FILES}")
    out: list[str] = [f"/* mcproton kernel translation unit assembled from kernels/{entry} */"]
    _inline(kernels_dir() / entry, set(), out)
    return "\n".join(out) + "\n"


def source_hash(entry: str = "transport.cu") -> str:
    """SHA-256 of the assembled source (recorded in every output as ``kernel_hash``)."""
    return hashlib.sha256(assemble(entry).encode()).hexdigest()

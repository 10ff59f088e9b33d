"""The packages that parts of mcproton need beyond its dependencies: whether each is installed (``mcproton info``),
and a refusal that names the pip command before a command that needs one reads anything or runs the transport
(``mcproton check`` without pymedphys used to fail at its gamma, after the whole Monte Carlo, as an "internal error":
the deployment audit of 2026-12-05, F3)."""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from typing import Any

#: pymedphys's newest release (0.41) declares Python < 3.13, so it is a dependency of mcproton there only
#: (pyproject.toml); on a newer Python it is installed by hand, where pymedphys allows it
PYMEDPHYS_PYTHON = (3, 13)

#: module -> (distribution names, what needs it, how to install it)
OPTIONAL: dict[str, tuple[tuple[str, ...], str, str]] = {
    "pymedphys": (("pymedphys",), "mcproton check's 3-D gamma", "pip install 'pymedphys>=0.41'"),
    "numba": (("numba",), "a faster 3-D gamma in mcproton check", "pip install numba"),
    "cupy": (("cupy-cuda12x", "cupy-cuda13x", "cupy"), "the GPU backend, --backend cuda",
             "pip install 'mcproton[cuda12]' (or '[cuda13]')"),
    "distributed": (("distributed",), "distributed runs on Dask, mcproton run --workers/--scheduler",
                    "pip install 'mcproton[distributed]'"),
}


def _version(dists: tuple[str, ...]) -> str | None:
    for d in dists:
        try:
            return importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def present(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path; not imported here: CuPy's import takes seconds)."""
    if sys.modules.get(module, True) is None:   # a module blocked in sys.modules (as the tests do)
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install_hint(module: str) -> str:
    hint = OPTIONAL[module][2]
    if module == "pymedphys" and sys.version_info >= PYMEDPHYS_PYTHON:
        hint += (" (pymedphys 0.41, the newest release, installs on Python 3.10-3.12 only: run mcproton check with "
                 "one of those)")
    return hint


#: the optional packages that ``mcproton info`` imports, not only finds: pymedphys's import is cheap (~0.1 s) and a
#: broken install (found, with its version, but its import failing) was listed as fine while ``mcproton check``
#: refused (audit 24 "docs" F1).  CuPy's import takes seconds, so it is only found; none is imported by
#: ``import mcproton``.
IMPORTED_BY_INFO = ("pymedphys",)


def import_error(module: str) -> str | None:
    """Why ``module`` cannot be imported ("ExcType: message"), or None where it imports.  Any exception counts: a
    broken install can raise more than ImportError."""
    try:
        importlib.import_module(module)
    except Exception as exc:   # noqa: BLE001 - reported, not raised: mcproton info describes the installation
        return f"{type(exc).__name__}: {exc}"
    return None


def components() -> dict[str, str]:
    """Each optional package: its version and what it serves, "missing" with the pip command, or (pymedphys,
    which is imported here) "installed but cannot be imported: <reason>"."""
    out = {}
    for module, (dists, needed_by, _) in OPTIONAL.items():
        if not present(module):
            out[module] = f"missing (for {needed_by}): {install_hint(module)}"
            continue
        version = _version(dists)
        why = import_error(module) if module in IMPORTED_BY_INFO else None
        if why is not None:
            out[module] = (f"installed{f' ({version})' if version else ''} but cannot be imported: {why} "
                           f"(for {needed_by}): fix what the reason names, or reinstall it: "
                           f"{install_hint(module).replace('pip install', 'pip install --force-reinstall', 1)}")
        else:
            out[module] = f"{version or 'installed'}, for {needed_by}"
    return out


def require(module: str, what: str) -> Any:
    """Import ``module`` for ``what``; RuntimeError in one line naming the pip command where it is missing or
    broken."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise RuntimeError(f"{what} needs {module}, which cannot be imported ({type(exc).__name__}: {exc}): "
                           f"{install_hint(module)}") from None

"""The build identity of this mcproton: what changes when its physics changes, as the version string does not.

``mcproton.__version__`` has been "0.1.0" since the first commit, through many changes of the kernels, the physics
tables and the built-in calibrations (the new-features audit of 2026-12-06, F3: ``--skip-checked`` reused a verdict
of the old physics after an upgrade, as the same "version").  What ``check --batch --skip-checked``'s reuse key and
``run --resume``'s run identity record of the build is :func:`build_identity`: the version, the transport kernel's
source hash (as the checkpoint's fingerprint and every output's ``kernel_hash``), the SHA-256 of the package's
physics data files (``mcproton/data``: stopping powers, nuclear cross sections, materials, HU calibrations, beam
models) and of its Python physics modules (``mcproton/_physics``: the tables made from those data).  It is computed
once per process (about 700 kB of files: a few milliseconds).

What decides a check's verdict is more than the physics: the check's comparison (``_check``: range rays, rows,
noise matching), the DICOM readers (``_io``), the planner and the driver are Python too, and changed the check's
numbers under one kernel and one physics (the compat audit of 2026-12-06, F2: ``--skip-checked`` carried a
verdict of the older check code forward as of "the same build").  :func:`code_sha256` is the SHA-256 of every
Python and kernel source of the installed package, and :func:`check_build_identity` is :func:`build_identity` with
it: what a check records (its check.json's ``provenance.build``, the reuse key), what every result's
``provenance["build"]`` and ``mcproton run``'s summary record (since 2026-12-07), and what the RT Dose mcproton
writes names in its SoftwareVersions (:func:`software_versions`; of a dose computed by another build or other code,
that build's version, kernel, physics data and code, and the writer's as "written by").  It is not part of
:func:`build_identity`: the resume of ``mcproton run`` compares that, and a resume across pure Python changes of one
kernel and one physics is bitwise right (the kernel computes every history).
"""
from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

#: the package's folder
_PACKAGE = Path(__file__).resolve().parent
#: the folders whose files make the physics besides the kernels, and which files of each count
_PHYSICS_FILES = (("data", "*"), ("_physics", "*.py"))


#: the package's parts installed from the repository's top level (pyproject's [tool.setuptools.package-dir]): inside
#: the package in a wheel, beside it in an editable install; each is read where it is installed, by the same names
#: ("kernels/..."), so that both installs of one commit have one :func:`code_sha256`
_TOP_LEVEL_PARTS = ("kernels", "phantoms", "validation")
#: the files of the code: the Python modules and the kernels' CUDA C sources
_CODE_PATTERNS = ("*.py", "*.cu", "*.h")


def _tree_digests(root: Path, patterns: Iterable[str]) -> dict[str, str]:
    """{name relative to ``root``: SHA-256} of the files matching any of ``patterns`` under ``root`` (not in
    ``__pycache__``; :func:`~mcproton._io.file_hash.sha256_by_name`)."""
    from ._io.file_hash import sha256_by_name

    return sha256_by_name((f for pattern in patterns for f in root.rglob(pattern) if "__pycache__" not in f.parts),
                          root)


def _digests_sha256(digests: dict[str, str]) -> str:
    """One SHA-256 over files by their names and contents, in the order of their names: a file added, removed,
    renamed or changed changes it."""
    return hashlib.sha256("".join(f"{name}\0{d}\n" for name, d in sorted(digests.items())).encode()).hexdigest()


def _tree_sha256(root: Path, pattern: str) -> str:
    """One SHA-256 over the files matching ``pattern`` under ``root`` by their relative names and contents
    (:func:`_digests_sha256`)."""
    return _digests_sha256(_tree_digests(root, (pattern,)))


def _installed_part(name: str) -> Path | None:
    """Where the package's part ``name`` (:data:`_TOP_LEVEL_PARTS`) is installed; None where it is not."""
    spec = importlib.util.find_spec(f"{__package__}.{name}")
    places = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(places[0]) if places else None


@lru_cache(maxsize=1)
def code_sha256() -> str:
    """The SHA-256 of the installed package's code: every Python module under the package's folder and its
    top-level parts (:data:`_TOP_LEVEL_PARTS`: the kernels' ``*.cu``/``*.h`` among them), by their names in the
    package and their contents, in the order of their names.  Computed once per process (about 2.5 MB: tens of
    milliseconds)."""
    digests = {name: d for name, d in _tree_digests(_PACKAGE, _CODE_PATTERNS).items()
               if name.split("/", 1)[0] not in _TOP_LEVEL_PARTS}
    for part in _TOP_LEVEL_PARTS:
        where = _installed_part(part)
        if where is not None:
            digests.update({f"{part}/{name}": d for name, d in _tree_digests(where, _CODE_PATTERNS).items()})
    return _digests_sha256(digests)


@lru_cache(maxsize=1)
def physics_files_sha256() -> str:
    """The SHA-256 of the package's physics data and Python physics modules (:data:`_PHYSICS_FILES`)."""
    h = hashlib.sha256()
    for folder, pattern in _PHYSICS_FILES:
        h.update(f"{folder}:{_tree_sha256(_PACKAGE / folder, pattern)}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def build_identity() -> dict[str, str]:
    """{"version", "kernel_hash" (the assembled transport kernel's SHA-256), "physics_files_sha256"}: what the
    transport computes with, which ``mcproton run --resume`` and ``sum_results`` compare.  Not all that may change a
    dose: the Python that makes a plan's spots or converts a CT is in :func:`check_build_identity` (``code_sha256``),
    which every result's ``provenance["build"]`` and ``mcproton run``'s summary record (audit 25 provenance, F5: they
    recorded this one, and a Python change of the dose left them the same).  Cached: computed once per process."""
    from . import __version__
    from ._kernels.source import source_hash

    return {"version": __version__, "kernel_hash": source_hash("transport.cu"),
            "physics_files_sha256": physics_files_sha256()}


def check_build_identity() -> dict[str, str]:
    """:func:`build_identity` with ``code_sha256`` (:func:`code_sha256`): the build of the code that makes a check's
    verdict, as its check.json records it (``provenance.build``) and ``--skip-checked`` compares it; and of the code
    that made a result's dose, as its ``provenance["build"]`` and ``mcproton run``'s summary record it."""
    return {**build_identity(), "code_sha256": code_sha256()}


def result_build_identity() -> dict[str, str]:
    """:func:`check_build_identity` for a result's ``provenance["build"]`` and ``mcproton run``'s summary: where a
    source file cannot be read (:func:`code_sha256` fails), :func:`build_identity` with ``code_sha256_unknown``
    saying why, so that a dose computed already is never lost to it (as :func:`software_versions`)."""
    try:
        return check_build_identity()
    except Exception as exc:  # noqa: BLE001 - an unreadable source file must not lose a dose computed already
        return {**build_identity(), "code_sha256_unknown": f"{type(exc).__name__}: {exc}"}


def check_build_record() -> dict[str, str]:
    """:func:`check_build_identity`, or {"error": why} where it cannot be computed (a source file unreadable): for
    the records written because something failed, which must be written whatever failed."""
    try:
        return check_build_identity()
    except Exception as exc:  # noqa: BLE001 - the failure's own record is written all the same
        return {"error": f"{type(exc).__name__}: {exc}"}


#: what an RT Dose's SoftwareVersions names of the build that computed its dose: each key of
#: :func:`check_build_identity`, its name there and how much of its value (the hashes' first 16 hex digits; None: all)
_DOSE_BUILD_NAMES = (("version", "mcproton", None), ("kernel_hash", "kernel", 16),
                     ("physics_files_sha256", "physics data", 16), ("code_sha256", "code", 16))
#: DICOM's LO (SoftwareVersions' value representation): at most 64 characters a value, no backslash
_LO_MAX = 64


def _lo_value(v: object, digits: int | None) -> str:
    """A build key's value for SoftwareVersions: "unknown" where not recorded, "mixed" where a sum's provenance says
    its parts differ (:data:`mcproton._run.builds.MIXED`), else its text (its first ``digits`` characters), without
    a backslash (LO's value separator)."""
    from ._run.builds import MIXED

    if v is None or str(v) == "":
        return "unknown"
    if str(v) == MIXED:
        return "mixed"
    return str(v)[:digits].replace("\\", "/")


def software_versions(dose_provenance: Mapping[str, Any] | None = None) -> list[str]:
    """The RT Dose's SoftwareVersions (0018,1020; LO, each value at most 64 characters).

    For a dose computed by the running build (``dose_provenance`` None, or a result's provenance that records this
    build's version, kernel, physics data and code, as every result this mcproton computes does): "mcproton
    <version>" and the first 16 hex digits of the transport kernel's, the physics data's and the code's SHA-256
    (:func:`check_build_identity`), each named.

    For a result computed by another build or other code (``dose_provenance``: its provenance, which
    ``DoseResult.save`` and ``load`` keep: an older dose.h5 re-exported, a dose.h5 of another install whose Python
    differs, or a ``sum_results(..., allow=("mixed_builds",))``), "mcproton", "kernel", "physics data" and "code"
    name the build that computed the dose, as the result records it (``provenance["build"]``, a sum's parts in
    ``["summed_builds"]``: :func:`mcproton._run.builds.part_records`): "unknown" where it does not record one (a
    file of an older mcproton: the code since 2026-12-07), "mixed: <each part's>" where the parts of a sum differ
    ("mixed" alone where they do not fit in 64 characters, or where a sum of one build records only that its parts'
    code differs); then "written by mcproton <version> code <16 hex>": the mcproton that wrote the file (before,
    the writer's build was named as the dose's: the check review of 2026-12-06, R3; and the writer's code as the
    dose's code, though every result records its own since 2026-12-07: review 2b, R2)."""
    try:
        b = check_build_identity()
    except Exception:  # noqa: BLE001 - an unreadable source file must not lose a dose computed already
        # (the RT Dose of mcproton run is written after the MC: run review of 2026-12-06, F5)
        from . import __version__

        return [f"mcproton {__version__}", "build unknown: a source file could not be read"]
    own = [f"{name} {_lo_value(b[key], digits)}" for key, name, digits in _DOSE_BUILD_NAMES]
    if dose_provenance is None:
        return own
    from ._run.builds import part_records

    parts = part_records(dict(dose_provenance))
    if all(p.get(key) == b[key] for p in parts for key, _, _ in _DOSE_BUILD_NAMES):
        return own
    out = []
    for key, name, digits in _DOSE_BUILD_NAMES:
        values = list(dict.fromkeys(_lo_value(p.get(key), digits) for p in parts))
        if len(values) == 1:
            out.append(f"{name} {values[0]}"[:_LO_MAX])
        else:
            listed = f"{name} mixed: {', '.join(values)}"
            out.append(listed if len(listed) <= _LO_MAX else f"{name} mixed")
    code = f"code {b['code_sha256'][:16]}"
    writer = f"written by mcproton {_lo_value(b['version'], None)} {code}"
    out += ([writer] if len(writer) <= _LO_MAX
            else [f"written by mcproton {_lo_value(b['version'], None)}"[:_LO_MAX], f"written by {code}"])
    return out

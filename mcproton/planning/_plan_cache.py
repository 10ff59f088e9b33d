"""The demo's plan cache: an optimised plan kept on disk under a key of everything that makes it, so that a second
``mcproton demo`` of the same phantom does not optimise the same plan again.

The demo's plan depends only on its phantom, its target, the planner's settings, the beam model, the code and the
numerical libraries, and it comes out bit for bit the same on every run (the host-time audit of 2026-12-07, F1:
equal spot weights in two demos); its optimisation was 75-83 % of a CPU demo's wall time at 2 mm (11-15 s on 2
loaded cores) and 2.7 x the Monte Carlo on an H200.  :func:`cached_plan` makes the plan with ``make()`` once and
stores it; later calls with the same key read it back: the same spots, energies and weights, bit for bit, so the
same Monte Carlo dose.

The key (SHA-256) holds the plan's :func:`recipe` (what decides its meaning: the geometry's material, density and
label arrays, its materials, voxel size and origin; the target mask; the settings, every argument of the planning
function, its defaults included; the beam model's name and the SHA-256 of its file and table; the physics data,
:func:`mcproton._build.physics_files_sha256`; the planner's code, :func:`planner_code_sha256`), and what decides its
last bits: the code (:func:`mcproton._build.code_sha256`: every Python module of the package); NumPy's and SciPy's
versions and BLAS builds, the BLAS core they run (threadpoolctl's report, where it is installed) and the
environment variables that choose it (:data:`KERNEL_ENV`); and the CPU (model and instruction-set flags, as the
kernel cache's key: OpenBLAS picks its kernels by the CPU, which may change the optimiser's last bits).  Any change
of these is another entry.  An entry read back is the plan that the demo which stored it made, to the bit; that
this is the plan optimising it again would give rests on the key holding all that the optimiser's arithmetic
depends on, which is what it was built to hold, not a proof.

The folder: ``$MCPROTON_PLAN_CACHE_DIR``, else ``plans`` in ``$MCPROTON_CACHE_DIR`` (the CPU kernel cache's folder),
else ``$XDG_CACHE_HOME/mcproton/plans``, else ``~/.cache/mcproton/plans`` (beside the kernel cache's ``kernels``);
``MCPROTON_PLAN_CACHE=0`` (or ``off``, ``no``, ``false``) turns the cache off.  Where that folder cannot be written
or read by this user (read-only, full, another user's entry or folder), the entry is kept in and read from
``plans`` in the per-user temporary folder that the kernel cache falls back to (``/tmp/mcproton-<uid>``), with one
note where it is stored there (and on each demo that reads it there where the folder is ``$MCPROTON_PLAN_CACHE_DIR``
or cannot be read by this user).  An entry is an ``.npz`` file ``plan-<key>.npz`` read without pickle
(``allow_pickle=False``): the plan's arrays and a JSON record of the rest, with the key and a SHA-256 of its
content, checked when read (a checksum, not a signature: a folder others can write is trusted with the demo's
plan, as a shared kernel cache is with its kernels); it is written to a temporary file and renamed
(``os.replace``), so that demos run together each read a whole entry or none.  An entry that cannot be read
(damaged, truncated, of another format) is named in a note and the plan is made again (and stored again).  A plan
whose making warned is not stored (its warnings would not be said again).  At most :data:`MAX_ENTRIES` entries are
kept (the least recently used are removed); no file but the cache's own (its entries and their temporary files)
is removed.

The plan shipped with mcproton (:func:`shipped_plan`; the default demo's, phantoms/plans/demo_plan_5y_2mm.npz,
written by scripts/make_shipped_demo_plan.py): an entry of the same format (deflated) under its
:func:`recipe_key`, the SHA-256 of its :func:`recipe` alone, with a record of when and on what machine and software
it was optimised.  Where the cache holds no entry of the demo's key, a shipped plan whose recipe key is the demo's is
the demo's plan (not optimised: a first demo on a fresh machine reads it in a fraction of a second instead of
optimising for ~10 CPU s at 2 mm), said to be the shipped one in the record (``shipped``); it is not stored in the
cache (an entry there is the plan this machine's optimiser made, to the bit; the shipped plan was optimised
elsewhere and would differ in its last bits or, through the optimiser's active set, in a few spots: the BLAS core
alone, OPENBLAS_CORETYPE=Prescott on this VM, made 6108 spots instead of 6071, model D95 99.345 % instead of
99.370 %).  A shipped plan of another recipe (a changed phantom, target, setting, beam model, physics data or
planner's code; another NumPy, SciPy or CPU that makes another phantom: :func:`another_recipe`), damaged or missing
is named in a note (the part that differs with it) and in the record (``shipped_not_used``), and the plan optimised
here and stored as without it.  ``MCPROTON_PLAN_CACHE=0`` turns it off with the cache: the plan is optimised.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import io
import json
import os
import re
import stat
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .plan import FieldSpots, Plan

#: the environment variable naming the plan cache's folder
DIR_ENV = "MCPROTON_PLAN_CACHE_DIR"
#: the environment variable that turns the plan cache off (:data:`OFF_VALUES`)
SWITCH_ENV = "MCPROTON_PLAN_CACHE"
OFF_VALUES = ("0", "off", "no", "false")
ON_VALUES = ("", "1", "on", "yes", "true")
#: the format of an entry: raised when what an entry holds changes (an older entry is then another key)
FORMAT = 1
#: the most entries kept in the folder (each ~0.25 MB at 2 mm); the least recently used beyond them are removed
MAX_ENTRIES = 32
#: a temporary file of a write killed before its rename is removed by a later store after this long (s)
STALE_TEMPORARY_S = 3600.0
_PREFIX, _SUFFIX = "plan-", ".npz"


class _Uncacheable(Exception):
    """The plan (or its settings) holds something an entry cannot hold exactly: it is made, not stored."""


def cache_folder(note: Callable[[str], None]) -> tuple[Path | None, str]:
    """(the plan cache's folder, "") or (None, why it is off): ``MCPROTON_PLAN_CACHE`` off, a value of it not
    understood (said in a ``note``), a ``MCPROTON_PLAN_CACHE_DIR`` (or ``MCPROTON_CACHE_DIR``) that cannot be
    expanded, or no home folder.  The folder: ``$MCPROTON_PLAN_CACHE_DIR``, else ``plans`` in the CPU kernel cache's
    ``$MCPROTON_CACHE_DIR`` (with the kernels), else ``plans`` beside the kernel cache's ``kernels``."""
    from .._backend.cpu import CacheDirError, _cache_env, _expanded_cache_env, user_cache_folder

    raw = os.environ.get(SWITCH_ENV, "")
    switch = raw.strip().lower()
    if switch in OFF_VALUES:
        return None, f"off ({SWITCH_ENV}={raw})"
    if switch not in ON_VALUES:
        why = (f"{SWITCH_ENV}={raw!r} is not one of {', '.join(OFF_VALUES)} (off) or 1, on, yes, true: the plan "
               f"cache is off (its folder is {DIR_ENV})")
        note(why)
        return None, f"off ({why})"
    value = os.environ.get(DIR_ENV, "")
    try:
        if value.strip():
            return _expanded_cache_env(value, DIR_ENV, "the plan cache", "plans"), ""
        kernels = _cache_env()
        if kernels is not None:
            return _expanded_cache_env(kernels) / "plans", ""
        return user_cache_folder("plans", DIR_ENV, "the plan cache"), ""
    except (CacheDirError, RuntimeError) as exc:
        note(f"{exc}; the plan is optimised without the cache")
        return None, f"off ({exc})"


# ---------------------------------------------------------------------- the key
def _add(h: Any, name: str, data: bytes) -> None:
    h.update(f"{name}\0{len(data)}\0".encode())
    h.update(data)


def _add_array(h: Any, name: str, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    _add(h, name, f"{a.dtype.str} {a.shape}".encode())
    _add(h, f"{name} data", a.view(np.uint8).reshape(-1).data if a.size else b"")


#: the environment variables that choose the numerical kernels NumPy's and SciPy's BLAS run (OpenBLAS's core with
#: DYNAMIC_ARCH, MKL's code path and reproducibility mode, NumPy's CPU dispatch): each may change the optimiser's last
#: bits (OPENBLAS_CORETYPE did: the review of audit 27's merges, R4).  The thread counts are not among them: the
#: plan was the same to the bit with 1 and 2 threads (ibid.; the optimiser sums its chunks in a fixed order)
KERNEL_ENV = ("OPENBLAS_CORETYPE", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE",
              "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES")


def _blas_runtime() -> list[dict[str, Any]] | None:
    """The BLAS libraries loaded, as threadpoolctl reports them (their API, version and the core they run:
    ``architecture``), where threadpoolctl is installed (it is not required); None where it is not."""
    try:
        import scipy.linalg  # noqa: F401 - loaded, as when the plan is made: SciPy's own BLAS is then reported too
        import threadpoolctl
        info = threadpoolctl.threadpool_info()
    except Exception:  # noqa: BLE001 - not installed, or an old one: the environment and the builds key it then
        return None
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer")
    return sorted(({k: str(d.get(k)) for k in keep} for d in info if d.get("user_api") == "blas"),
                  key=lambda d: json.dumps(d, sort_keys=True))


def _libraries() -> dict[str, Any]:
    """NumPy's and SciPy's versions and BLAS builds, the BLAS core run (:func:`_blas_runtime`) and the environment
    that chooses it (:data:`KERNEL_ENV`), and the CPU: what the optimiser's arithmetic rests on."""
    import platform

    import scipy

    from .._backend.cpu import cpu_flags, cpu_model

    def blas(module: Any) -> Any:
        try:
            deps = module.__config__.CONFIG["Build Dependencies"]
            return {k: {"name": deps[k].get("name"), "version": deps[k].get("version"),
                        "configuration": deps[k].get("openblas configuration")} for k in ("blas", "lapack")}
        except Exception:  # noqa: BLE001 - an older build's config: its version alone then
            return None

    return {"numpy": np.__version__, "numpy_blas": blas(np), "scipy": scipy.__version__, "scipy_blas": blas(scipy),
            "blas_runtime": _blas_runtime(), "environment": {k: os.environ.get(k) for k in KERNEL_ENV},
            "machine": platform.machine(), "cpu_model": cpu_model(), "cpu_flags": cpu_flags()}


def plan_settings(function: Callable[..., Plan], kwargs: dict[str, Any], *, skip: tuple[str, ...]) -> dict[str, Any]:
    """Every argument of ``function`` (a planning function, e.g. ``posterior_fossa_plan``) as a call with ``kwargs``
    gives it, its defaults included, without those in ``skip`` (the geometry and the target, keyed by their
    arrays), and the ``seed`` of :func:`~mcproton.planning.optimise_plan` it plans with."""
    from .optimiser import optimise_plan

    out = {name: p.default for name, p in inspect.signature(function).parameters.items()
           if name not in skip and p.default is not inspect.Parameter.empty}
    out.update({k: v for k, v in kwargs.items() if k not in skip})
    out["optimise_plan seed"] = inspect.signature(optimise_plan).parameters["seed"].default
    out["function"] = f"{function.__module__}.{function.__qualname__}"
    return out


def _json(record: dict[str, Any]) -> str:
    """``record`` as the keys' JSON text (sorted keys); :class:`_Uncacheable` where a value is not plain."""
    try:
        return json.dumps(record, sort_keys=True, allow_nan=True)
    except TypeError as exc:
        raise _Uncacheable(f"a setting is not a plain value ({exc})") from None


#: the modules of mcproton/planning that do not make a plan, left out of :func:`planner_code_sha256`: the plan cache
#: itself (it reads and writes plans; what its entries hold is :data:`FORMAT`) and the Monte Carlo of a made plan
PLANNER_CODE_LEFT_OUT = ("_plan_cache.py", "verify.py")
#: the modules outside mcproton/planning whose code makes the numbers of the demo's plan, by their names in the package
#: (as in a wheel): the reference plans (the demo's fields, target and the call of the optimiser); the beam model's
#: reader (``BeamModel.at``: the spot sigma, divergence and energy spread of every layer, planning/machine.py) and the
#: source (``make_spots``, ``RangeShifterSlab``, ``default_axis_x``: planning/plan.py, raytrace.py); the geometry
#: (``axis_mm``: the voxel centres the rays and the spots are placed by); the gantry's direction
#: (``beam_direction_lps``, _io/rtplan.py: planning/raytrace.py ``gantry_direction``); the range shifter's stopping
#: table, pv and Highland sigma (validation/reference.py, range_shifter_model.py: planning/machine.py; the demo plans
#: with RS_3CM).  The 28th audit's re-read (F3): _io/beam_model.py and source.py were not keyed, so a change there
#: that changed the demo's plan left the shipped plan in use, caught only by the slow test.
PLANNER_CODE_ALSO = ("phantoms/reference_plans.py", "_io/beam_model.py", "source.py", "geometry.py", "_io/rtplan.py",
                     "validation/reference.py", "validation/range_shifter_model.py")


def planner_code_files() -> dict[str, Path]:
    """{name in the package: file} of the planner's code, whose SHA-256 (:func:`planner_code_sha256`) a
    :func:`recipe` holds: every module of mcproton/planning (spot placement, layers and range shifters, the
    stopping-power ratios and the ray tracing, the dose model, the objective and the optimiser) but those of
    :data:`PLANNER_CODE_LEFT_OUT`, and the modules elsewhere that it runs for the plan's numbers,
    :data:`PLANNER_CODE_ALSO` (the beam model's reader, the source, the geometry, the gantry's direction, the range
    shifter's scattering, the reference plans).  Not the code they call that is keyed otherwise (the physics,
    :func:`mcproton._build.physics_files_sha256`; the beam model's data, by its file and table; the phantom, by its
    arrays) nor the reports around it (mcproton/dvh.py: the plan's ``model_stats`` figures) nor the thread count
    (mcproton/_cpus.py; as NumPy, SciPy and the BLAS, it changes the optimiser's arithmetic, not what the plan is made
    for): a change there that changes the demo's plan is caught by the slow test of tests/phantoms/test_shipped_plan.py.
    Named as in a wheel (``planning/...``, ``phantoms/...``, ``_io/...``), so that a wheel and a checkout of one
    commit agree: each is found by its module (phantoms/ and validation/ lie beside the package in an editable
    install)."""
    import importlib

    here = Path(__file__).resolve().parent
    files = {f"planning/{f.name}": f for f in sorted(here.glob("*.py")) if f.name not in PLANNER_CODE_LEFT_OUT}
    for name in PLANNER_CODE_ALSO:
        module = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.{name[:-3].replace('/', '.')}")
        files[name] = Path(module.__file__).resolve()
    return files


def planner_code_sha256() -> str:
    """The SHA-256 of the planner's code (:func:`planner_code_files`), by the files' names and contents: a change of
    the planner (the spots' spacing, the optimiser) is another :func:`recipe`, so that a plan shipped with mcproton
    that the current planner would not make is not used (the review of 2026-12-07's shipped plan, R1)."""
    from .._build import _digests_sha256
    from .._io.file_hash import sha256_file

    try:
        return _digests_sha256({name: sha256_file(f) for name, f in planner_code_files().items()})
    except OSError as exc:
        raise _Uncacheable(f"the planner's code cannot be read to key the plan ({exc})") from None


def recipe(geometry: Any, target: np.ndarray, settings: dict[str, Any], beam_model: Any) -> dict[str, Any]:
    """What decides a plan's meaning, as plain values: the SHA-256 of the phantom (its material, density and label
    arrays, its materials, voxel size and origin) and of the target mask; the ``settings`` (:func:`plan_settings`);
    the beam model's name and the SHA-256 of its file and table; the physics data
    (:func:`mcproton._build.physics_files_sha256`); the planner's code (:func:`planner_code_sha256`: the modules
    that place the spots and optimise them).  Not the rest of the code, the numerical libraries or the CPU: those
    are the plan cache's (:func:`plan_key`), not the shipped plan's (:func:`recipe_key`).  :class:`_Uncacheable`
    where the beam model was made in memory (no file, no SHA-256 to key it by) or a setting is not a plain value."""
    from .._build import physics_files_sha256

    phantom = hashlib.sha256()
    _add_array(phantom, "material_index_zyx", geometry.material_index_zyx)
    _add_array(phantom, "density_g_cm3_zyx", geometry.density_g_cm3_zyx)
    if geometry.labels_zyx is not None:
        _add_array(phantom, "labels_zyx", geometry.labels_zyx)
    _add(phantom, "materials", "\n".join(repr(m) for m in geometry.materials).encode())
    _add(phantom, "grid", repr((tuple(float(v) for v in geometry.voxel_size_mm),
                                tuple(float(o) for o in geometry.origin_mm))).encode())
    mask = hashlib.sha256()
    _add_array(mask, "target", np.asarray(target, bool))
    model = None
    if beam_model is not None:
        prov = beam_model.provenance()
        if not prov.get("sha256"):
            raise _Uncacheable(f"the beam model {prov.get('name')!r} was made in memory (no file to key it by)")
        model = {k: v for k, v in prov.items() if k in ("name", "sha256", "table_sha256")}
    out = {"phantom": phantom.hexdigest(), "target": mask.hexdigest(), "settings": settings, "beam_model": model,
           "physics_files_sha256": physics_files_sha256(), "planner_code_sha256": planner_code_sha256()}
    _json(out)   # a setting that is not a plain value: _Uncacheable here
    return out


def recipe_key(geometry: Any, target: np.ndarray, settings: dict[str, Any], beam_model: Any) -> str:
    """The key (SHA-256 hex) of the plan shipped with mcproton (:func:`shipped_plan`): of its :func:`recipe` and the
    entry's :data:`FORMAT` (an entry of another format cannot be read), not of the code, NumPy's and SciPy's builds,
    the BLAS or the CPU, which the plan cache's :func:`plan_key` holds."""
    h = hashlib.sha256()
    _add(h, "shipped plan's recipe", _json({"format": FORMAT, "recipe": recipe(geometry, target, settings,
                                                                               beam_model)}).encode())
    return h.hexdigest()


def plan_key(geometry: Any, target: np.ndarray, settings: dict[str, Any], beam_model: Any) -> str:
    """The entry's key (SHA-256 hex) of a plan made on ``geometry`` for ``target`` with ``settings``
    (:func:`plan_settings`) on ``beam_model`` (a BeamModel, or None): its :func:`recipe`, the code
    (:func:`mcproton._build.code_sha256`) and the numerical libraries and CPU (:func:`_libraries`);
    :class:`_Uncacheable` where the settings are not plain values or the beam model was made in memory (no file, no
    SHA-256 to key it by)."""
    from .._build import code_sha256

    h = hashlib.sha256()
    _add(h, "format", str(FORMAT).encode())
    _add(h, "record", _json({"recipe": recipe(geometry, target, settings, beam_model), "libraries": _libraries(),
                             "code_sha256": code_sha256()}).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------- a plan as arrays and JSON, and back
def _encode(v: Any, arrays: dict[str, np.ndarray], where: str) -> dict[str, Any]:
    """``v`` as JSON with its type kept (``{"t": type, "v": value}``; arrays into ``arrays`` under ``where``);
    :class:`_Uncacheable` for anything else."""
    from .machine import FieldMachine

    if isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            raise _Uncacheable(f"{where} is an array of objects")
        arrays[where] = v
        return {"t": "array", "v": where}
    for kind in (type(None), bool, int, float, str):
        if type(v) is kind:
            return {"t": kind.__name__, "v": v}
    if isinstance(v, np.generic) and v.dtype.kind in "biuf":
        return {"t": "numpy", "dtype": v.dtype.str, "v": v.item()}
    if type(v) in (list, tuple):
        return {"t": type(v).__name__, "v": [_encode(x, arrays, f"{where}/{k}") for k, x in enumerate(v)]}
    if type(v) is dict and all(isinstance(k, str) for k in v):
        return {"t": "dict", "v": {k: _encode(x, arrays, f"{where}/{k}") for k, x in v.items()}}
    if type(v) is FieldMachine:
        return {"t": "machine", "shifter": None if v.shifter is None else v.shifter.id,
                "v": _encode(v.shifter_distance_mm, arrays, f"{where}/distance"), "water_model": v.water_model}
    raise _Uncacheable(f"{where} is a {type(v).__name__}")


def _decode(node: dict[str, Any], arrays: Any, beam_model: Any) -> Any:
    """The value :func:`_encode` gave ``node`` for (a machine's beam model: ``beam_model``)."""
    from .machine import FieldMachine

    kind, v = node["t"], node.get("v")
    if kind == "array":
        return np.asarray(arrays[v])
    if kind in ("NoneType", "bool", "int", "float", "str"):
        return {"NoneType": lambda x: None, "bool": bool, "int": int, "float": float, "str": str}[kind](v)
    if kind == "numpy":
        return np.dtype(node["dtype"]).type(v)
    if kind in ("list", "tuple"):
        items = [_decode(x, arrays, beam_model) for x in v]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: _decode(x, arrays, beam_model) for k, x in v.items()}
    if kind == "machine":
        shifter = None if node["shifter"] is None else beam_model.range_shifter(node["shifter"])
        return FieldMachine(beam_model, shifter, _decode(v, arrays, beam_model), node["water_model"])
    raise ValueError(f"unknown item {kind!r}")


#: the attributes of a Plan that an entry holds; the others are the caller's (the target) or made again from the
#: geometry (``meta``: :func:`~mcproton.planning.optimiser.plan_meta`)
_PLAN_ITEMS = ("name", "target_name", "prescription_gy", "prescription_gy_rbe", "model_stats")


def _entry(plan: Plan) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    record = {"plan": {k: _encode(getattr(plan, k), arrays, k) for k in _PLAN_ITEMS},
              "fields": [{f.name: _encode(getattr(fs, f.name), arrays, f"fields/{n}/{f.name}")
                          for f in dataclasses.fields(FieldSpots)} for n, fs in enumerate(plan.fields)]}
    return record, arrays


def _plan_of(record: dict, arrays: Any, geometry: Any, target: np.ndarray, beam_model: Any) -> Plan:
    from .optimiser import plan_meta

    fields = [FieldSpots(**{k: _decode(v, arrays, beam_model) for k, v in f.items()}) for f in record["fields"]]
    items = {k: _decode(v, arrays, beam_model) for k, v in record["plan"].items()}
    mask = np.asarray(target, bool)
    return Plan(items["name"], items["target_name"], mask, fields, items["prescription_gy"],
                items["prescription_gy_rbe"], items["model_stats"], plan_meta(geometry, mask))


def _same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same to the bit: types, arrays' dtypes, shapes and bytes, a machine's model,
    range shifter, distance and water model."""
    from .machine import FieldMachine

    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, FieldMachine):
        return (a.model.provenance() == b.model.provenance() and _same(a.shifter_distance_mm, b.shifter_distance_mm)
                and a.water_model == b.water_model and (a.shifter is b.shifter if a.model is b.model
                                                        else getattr(a.shifter, "id", None)
                                                        == getattr(b.shifter, "id", None)))
    if isinstance(a, FieldSpots):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(FieldSpots))
    if isinstance(a, Plan):
        return (all(_same(getattr(a, k), getattr(b, k)) for k in (*_PLAN_ITEMS, "fields", "target_mask_zyx"))
                and _same_meta(a.meta, b.meta))
    if isinstance(a, (float, np.floating)):
        return bool(np.asarray(a).tobytes() == np.asarray(b).tobytes())
    return bool(a == b)


def _same_meta(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr) and \
        all(type(a["grid"][k]) is type(b["grid"][k]) for k in a.get("grid", {}))


def _content_sha256(key: str, text: str, arrays: Any) -> str:
    h = hashlib.sha256()
    _add(h, "key", key.encode())
    _add(h, "record", text.encode())
    for name in sorted(arrays):
        _add_array(h, name, np.asarray(arrays[name]))
    return h.hexdigest()


def _entry_bytes(key: str, plan: Plan, about: dict[str, Any] | None = None, compress: bool = False) -> bytes:
    """The entry of ``plan`` under ``key``: its arrays, its JSON record (with ``about``, where given: what a shipped
    plan says of its making, under its content's SHA-256 too) and its head (format, key, SHA-256); ``compress``:
    deflated (the shipped plan: half the bytes), else stored (the cache's entries)."""
    record, arrays = _entry(plan)
    if about is not None:
        record["about"] = about
    text = json.dumps(record, allow_nan=True)
    head = json.dumps({"format": FORMAT, "key": key, "sha256": _content_sha256(key, text, arrays)})
    members: dict[str, Any] = {f"a{k}": v for k, v in enumerate(arrays.values())}
    members.update(record=np.frombuffer(text.encode(), np.uint8), head=np.frombuffer(head.encode(), np.uint8),
                   names=np.frombuffer(json.dumps(list(arrays)).encode(), np.uint8))
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **members)
    return buf.getvalue()


def _load_entry(source: Any) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(head, record, arrays) of the entry ``source`` (its path, or its bytes as a file), read without pickle;
    ValueError (or the reader's error) where it is of another format or its content does not match its SHA-256."""
    with np.load(source, allow_pickle=False) as z:
        head = json.loads(z["head"].tobytes().decode())
        if head.get("format") != FORMAT:
            raise ValueError(f"it is of another format ({head.get('format')!r})")
        text = z["record"].tobytes().decode()
        names = json.loads(z["names"].tobytes().decode())
        arrays = {name: z[f"a{k}"] for k, name in enumerate(names)}
    if _content_sha256(str(head.get("key")), text, arrays) != head.get("sha256"):
        raise ValueError("its content does not match its SHA-256 (damaged)")
    return head, json.loads(text), arrays


def _read_entry(source: Any, key: str, geometry: Any, target: np.ndarray, beam_model: Any) -> Plan:
    """The plan of the entry ``source`` (its path, or its bytes as a file); ValueError (or the reader's error) where
    it is not whole, not of this format or not of this key."""
    head, record, arrays = _load_entry(source)
    if head.get("key") != key:
        raise ValueError("it is of another key")
    return _plan_of(record, arrays, geometry, target, beam_model)


# ---------------------------------------------------------------------- the cache
def _entry_path(folder: Path, key: str) -> Path:
    return folder / f"{_PREFIX}{key}{_SUFFIX}"


#: the name of an entry: the key's 64 hex digits; :func:`_tidy` removes no other file (a user's own
#: ``plan-<name>.npz`` in a folder given as the cache's was removed as an entry: the review of audit 27's merges, R3)
_ENTRY_NAME = re.compile(rf"{re.escape(_PREFIX)}[0-9a-f]{{64}}{re.escape(_SUFFIX)}")


def _tidy(folder: Path, keep: Path) -> None:
    """The least recently used entries beyond :data:`MAX_ENTRIES` removed (never ``keep``), and the temporary files
    that writes of the entries there (``keep``'s among them) left more than :data:`STALE_TEMPORARY_S` ago; only
    files of the cache's names (:data:`_ENTRY_NAME`, and the temporary names of those: ``.mcp-<tag>-*.tmp``); an
    error (another demo removed it first) ignored."""
    from .._io.atomic import TEMP_PREFIX, name_tag

    with contextlib.suppress(OSError):
        names = os.listdir(folder)
        mine = {n for n in names if _ENTRY_NAME.fullmatch(n)} | {keep.name}
        tags = {f"{TEMP_PREFIX}{name_tag(n)}-" for n in mine}
        entries = []
        for name in names:
            p = folder / name
            with contextlib.suppress(OSError):
                if name in mine and p != keep:
                    entries.append((p.stat().st_mtime, p))
                elif name.startswith(tuple(tags)) and name.endswith(".tmp") and \
                        time.time() - p.stat().st_mtime > STALE_TEMPORARY_S:
                    p.unlink()
        for _, p in sorted(entries)[:max(0, len(entries) + 1 - MAX_ENTRIES)]:
            with contextlib.suppress(OSError):
                p.unlink()


def _spare_folder(create: bool) -> tuple[Path | None, str]:
    """(``plans`` in the per-user temporary folder, "") where the per-user folder is this user's and closed to others
    (:func:`mcproton._backend.cpu.user_temp_folder`, the kernel cache's fallback), else (None, why not); made with
    ``create``, else only looked at."""
    from .._backend.cpu import user_temp_folder

    base, why = user_temp_folder(create)
    return (None, f"{base}: {why}") if why else (base / "plans", "")


def _look(path: Path, key: str, geometry: Any, target: np.ndarray, beam_model: Any) -> tuple[Plan | None, str, str]:
    """(the plan of the entry ``path``, "", "") where it is there and whole, else (None, kind, what is wrong): kind
    "" (no entry), "damaged" (made again and stored there anew), "theirs" (an entry this user may not read: another
    user's, left alone) or "closed" (a folder this user may not search, or an error of the system).  Nothing
    raised: before (review of audit 27's merges, R1) a folder that could not be searched raised PermissionError from
    ``Path.exists`` and stopped the demo."""
    try:
        return _read_entry(path, key, geometry, target, beam_model), "", ""
    except (FileNotFoundError, NotADirectoryError):
        return None, "", ""
    except PermissionError as exc:
        return _closed(path, exc)
    except OSError as exc:   # EIO, ENAMETOOLONG, ELOOP: not the entry's damage
        return None, "closed", f"the plan cache's entry {path} cannot be read ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001 - any damage of an entry: the plan is made again and stored anew
        return None, "damaged", f"the plan cache's entry {path} cannot be read ({_said(exc)})"


def _closed(path: Path, exc: OSError) -> tuple[None, str, str]:
    """:func:`_look`'s answer where this user may not read the entry ``path``: its owner and mode ("theirs"), or a
    folder that cannot be searched ("closed")."""
    try:
        st = path.stat()
    except OSError:
        return None, "closed", (f"the plan cache {path.parent} cannot be searched by this user ({exc.strerror or exc};"
                                " it or a folder above it is another user's or group's)")
    whose = "another user's" if hasattr(os, "getuid") and st.st_uid != os.getuid() else "this user's"
    return None, "theirs", (f"the plan cache's entry {path} is not readable by this user ({whose}: owner uid "
                            f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}; its owner can make it readable with "
                            "chmod a+r)")


def cached_plan(make: Callable[[], Plan], geometry: Any, target: np.ndarray, settings: dict[str, Any], *,
                beam_model: Any = None, note: Callable[[str], None],
                shipped: Path | None = None) -> tuple[Plan, dict[str, Any]]:
    """``make()``'s plan, from the cache where it holds one of this key (:func:`plan_key` of ``geometry``,
    ``target``, ``settings`` and ``beam_model``: the BeamModel that ``make`` plans on, as loaded from its name or
    file, or None), else the plan shipped with mcproton in the file ``shipped`` where its recipe is this one
    (:func:`shipped_plan`; not stored in the cache: see below), else made and stored.  Returns (plan, record):
    ``record["plan_from_cache"]`` whether it was read from the cache; ``"cache"`` what the cache did ("read",
    "stored", "shipped ...", "made: ..." with why it was not stored, "off ..."); ``"file"`` the entry or the
    shipped file (None where off); ``"shipped"`` None, or what the shipped plan says of its making
    (:data:`SHIPPED_SAID`: when, on what machine and software it was optimised) with its ``file`` and ``recipe_key``;
    ``"shipped_not_used"`` None, or why a shipped plan offered (``shipped``) was not used (damaged, missing, another
    recipe: :func:`shipped_plan`; or this machine's own entry of the plan damaged, which is made and written anew).
    ``note(text)`` says, once, what went wrong with the cache (a damaged entry, another user's, a folder that cannot
    be searched or written) or why the shipped plan was not used (as the record, and "optimising the plan here");
    the plan is made then, as without the cache.  Where the folder cannot be read or written, the entry is kept in
    (and read from) ``plans`` in the per-user temporary folder, as the CPU kernels are (:func:`_spare_folder`).

    ``MCPROTON_PLAN_CACHE=0`` turns off the shipped plan too: the plan is optimised, as the switch always said.  A
    shipped plan is not stored in the cache: an entry there is the plan that this machine's optimiser made (its key
    holds the code, the libraries and the CPU), and the shipped plan was made on another (the BLAS core alone moved
    the demo's spots: 6071 on this VM's default core, 6108 with OPENBLAS_CORETYPE=Prescott); read from its own file
    on each demo, it is said to be the shipped plan each time."""
    folder, off = cache_folder(note)
    record: dict[str, Any] = {"plan_from_cache": False, "cache": off, "file": None, "shipped": None,
                              "shipped_not_used": None}
    if folder is None and (shipped is None or _asked_off()):
        return make(), record
    key = ""
    try:
        key = plan_key(geometry, target, settings, beam_model) if folder is not None else ""
    except Exception as exc:  # noqa: BLE001 - the cache only saves time: without a key the plan is made, as before
        record["cache"] = f"made: not cached ({exc if isinstance(exc, _Uncacheable) else _said(exc)})"
        return make(), record
    plan, kind, wrong, path = None, "", "", None
    if folder is not None:
        path = _entry_path(folder, key)
        record["file"] = str(path)
        plan, kind, wrong = _look(path, key, geometry, target, beam_model)
        if plan is None and kind != "damaged":   # none there, or not for this user to read: the spare folder's
            spare, _ = _spare_folder(create=False)
            if spare is not None:
                plan = _look(_entry_path(spare, key), key, geometry, target, beam_model)[0]   # damaged: rewritten
                if plan is not None:
                    if wrong or os.environ.get(DIR_ENV, "").strip():   # the user's own folder not used: said each run
                        why = wrong or (f"the plan cache {folder} ({DIR_ENV}) holds no entry of this plan (it could "
                                        "not be written when it was stored)")
                        note(f"{why}: the plan is read from {spare}, where an earlier demo kept it")
                    path = _entry_path(spare, key)
    if plan is not None and path is not None:
        with contextlib.suppress(OSError):
            os.utime(path)                  # recently used (:func:`_tidy`)
        record.update(plan_from_cache=True, cache="read", file=str(path))
        return plan, record
    if shipped is not None and kind != "damaged":   # a damaged entry of this machine's: optimised and stored anew
        plan, said, why = shipped_plan(shipped, geometry, target, settings, beam_model)
        if plan is not None:
            if wrong:
                note(f"{wrong}: the plan shipped with mcproton is used")
            record.update(cache="shipped (not stored in the cache)" if folder is not None
                          else f"shipped; the cache is {off}", file=str(shipped), shipped=said)
            return plan, record
        record["shipped_not_used"] = why
        note(f"{why}; optimising the plan here")
    elif shipped is not None:
        record["shipped_not_used"] = f"{wrong} (the plan is optimised here and its entry written anew)"
    if folder is None or path is None:
        return make(), record
    with warnings.catch_warnings(record=True) as warned:   # under the filters in force: what would be said
        plan = make()
    for w in warned:   # said again as they came, and the plan not stored: a read would not say them
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if warned:
        if wrong:
            note(f"{wrong}: the plan is optimised again")
        record["cache"] = f"made: not cached (its making warned: {len(warned)} warning(s))"
        return plan, record
    record["cache"], record["file"] = _store(None if kind in ("closed", "theirs") else path, key, plan, geometry,
                                             target, beam_model, note, wrong, advise=kind != "theirs")
    return plan, record


def _asked_off() -> bool:
    """Whether ``MCPROTON_PLAN_CACHE`` asks for the plan to be optimised: off, or a value not understood (which
    :func:`cache_folder` names and takes for off)."""
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ON_VALUES


# ---------------------------------------------------------------------- the plan shipped with mcproton
#: the script that writes the shipped plan (its header says when and how)
SHIPPED_SCRIPT = "scripts/make_shipped_demo_plan.py"
#: what a demo's record (``shipped``) says of the shipped plan's making, from its ``about``
SHIPPED_SAID = ("optimised", "platform", "cpu_model", "python", "numpy", "scipy", "mcproton_version", "code_sha256")
#: the parts of a :func:`recipe`, as a message names them where the shipped plan's differ from this demo's
_RECIPE_PARTS = {"phantom": "the phantom (its material, density or label arrays, its materials or grid)",
                 "target": "the target mask", "settings": "the planner's settings",
                 "beam_model": "the beam model (its file or table)",
                 "physics_files_sha256": "the physics data (mcproton/data, mcproton/_physics)",
                 "planner_code_sha256": ("the planner's code (mcproton/planning, phantoms/reference_plans.py and "
                                         "the beam model's reader, source, geometry, gantry and range-shifter "
                                         "code it runs)")}
#: the parts of a :func:`recipe` that are made here, by the phantom generator with NumPy's and SciPy's arithmetic,
#: rather than given: where only they differ, another NumPy, SciPy or CPU may be why (not a change to ship)
_MADE_PARTS = ("phantom", "target")


def write_shipped(path: Path, plan: Plan, geometry: Any, target: np.ndarray, settings: dict[str, Any],
                  beam_model: Any, about: dict[str, Any]) -> str:
    """Write ``plan`` (made on ``geometry`` for ``target`` with ``settings`` on ``beam_model``) as the shipped plan
    ``path``: an entry of the cache's format (deflated) under its :func:`recipe_key`, its record holding ``about``
    (when and where it was optimised: :data:`SHIPPED_SAID`) and the :func:`recipe` itself (to name the part that
    differs when a demo's does not match); checked first (read back from its bytes, it must be ``plan`` to the bit),
    written whole.  Returns the recipe key."""
    from .._io.atomic import write_bytes_atomic

    key = recipe_key(geometry, target, settings, beam_model)
    data = _entry_bytes(key, plan, {**about, "recipe": recipe(geometry, target, settings, beam_model)},
                        compress=True)
    if not _same(plan, _read_entry(io.BytesIO(data), key, geometry, target, beam_model)):
        raise ValueError("the shipped plan's file would not give back the same plan to the bit")
    write_bytes_atomic(Path(path), data)
    return key


def shipped_plan(path: Path, geometry: Any, target: np.ndarray, settings: dict[str, Any], beam_model: Any, *,
                 in_checkout: bool = False) -> tuple[Plan | None, dict[str, Any] | None, str]:
    """(the plan of the shipped file ``path``, what it says of its making (:data:`SHIPPED_SAID`, its ``file`` and
    ``recipe_key``), "") where its recipe key is this demo's (:func:`recipe_key` of ``geometry``, ``target``,
    ``settings`` and ``beam_model``), else (None, None, why not): the file missing or damaged, or made for another
    recipe (:func:`another_recipe`: the parts that differ, and whether the environment may be why; what to do about
    it, with the script that makes it anew, where ``in_checkout``: for scripts/make_shipped_demo_plan.py --check and
    the tests, not for the demo, whose users may have no checkout and so no script)."""
    name = f"the plan shipped with mcproton for this demo ({path})"
    try:
        key = recipe_key(geometry, target, settings, beam_model)
        head, record, arrays = _load_entry(path)
    except _Uncacheable as exc:
        return None, None, f"{name} cannot be matched with this demo's recipe ({exc})"
    except FileNotFoundError:
        return None, None, f"{name} is missing (an installation without the package's data?)"
    except Exception as exc:  # noqa: BLE001 - damaged or unreadable: the plan is optimised, as without it
        return None, None, f"{name} cannot be read ({_said(exc)})"
    about = record.get("about") or {}
    if head.get("key") != key:
        return None, None, f"{name} {another_recipe(about, geometry, target, settings, beam_model, in_checkout)}"
    try:
        plan = _plan_of(record, arrays, geometry, target, beam_model)
    except Exception as exc:  # noqa: BLE001 - a record that does not make a plan: optimised, as without it
        return None, None, f"{name} cannot be read ({_said(exc)})"
    return plan, {**{k: about.get(k) for k in SHIPPED_SAID}, "file": str(path), "recipe_key": key}, ""


def another_recipe(about: dict[str, Any], geometry: Any, target: np.ndarray, settings: dict[str, Any],
                   beam_model: Any, in_checkout: bool = False) -> str:
    """What a shipped plan's record ``about`` made for another recipe says of it, after its name: "is for another
    recipe: " and the parts that differ (:func:`recipe_difference`).  Where only the phantom or the target differ
    (:data:`_MADE_PARTS`: made here by NumPy's and SciPy's arithmetic) on another NumPy, SciPy, BLAS or CPU than the
    plan was made on (its record's ``libraries``, :func:`_libraries`), the NumPy, SciPy and machine it was made with
    and this one's: another of them may make another phantom, and the plan made anew here would then not match where
    it was made.  ``in_checkout`` (the script's ``--check``, the tests: a developer's checkout): what to do, which is
    to make it anew (python :data:`SHIPPED_SCRIPT`) where a part that is given differs (the settings, the beam model,
    the physics data, the planner's code) or the libraries and CPU are those it was made on, and not to blindly
    where only the phantom or the target differ on another."""
    import platform

    import scipy

    from .._backend.cpu import cpu_model

    theirs = about.get("recipe")
    differ = recipe_difference(theirs, geometry, target, settings, beam_model)
    parts = _parts_differing(theirs, geometry, target, settings, beam_model)
    given = [p for p in parts if p not in _MADE_PARTS]
    here = about.get("libraries") == json.loads(_json(_libraries()))
    out = f"is for another recipe: {differ}"
    if parts and not given:
        out += (" (it was made with the NumPy, SciPy, BLAS and CPU of this machine: the phantom generator or the "
                "target was changed)" if here else
                f" (it was made with NumPy {about.get('numpy')} and SciPy {about.get('scipy')} on "
                f"{about.get('platform')} ({about.get('cpu_model')}), this is NumPy {np.__version__} and SciPy "
                f"{scipy.__version__} on {platform.system()} {platform.machine()} ({cpu_model()}): where the phantom "
                "generator and the target were not changed, another NumPy, SciPy or CPU made another phantom)")
    if not in_checkout:
        return out
    run = f"run python {SHIPPED_SCRIPT} (and commit the file)"
    if given or not parts or here:
        return f"{out}: it is stale; {run}"
    return (f"{out}: if you changed neither the phantom generator nor the target, do not make it anew (it would then "
            "not match where it was made): report it (the demo optimises the plan here, with a note); if you changed "
            f"them, {run}")


def _parts_differing(shipped: Any, geometry: Any, target: np.ndarray, settings: dict[str, Any],
                     beam_model: Any) -> list[str]:
    """The parts (:data:`_RECIPE_PARTS`' keys) of the recipe ``shipped`` (a shipped plan's record) that differ from
    this demo's (:func:`recipe`): all where ``shipped`` is not a recipe."""
    if not isinstance(shipped, dict):
        return list(_RECIPE_PARTS)
    mine = json.loads(_json(recipe(geometry, target, settings, beam_model)))   # as JSON gives it back: lists
    return [part for part in _RECIPE_PARTS if shipped.get(part) != mine[part]]


def recipe_difference(shipped: Any, geometry: Any, target: np.ndarray, settings: dict[str, Any],
                      beam_model: Any) -> str:
    """Which parts of the recipe ``shipped`` (a shipped plan's record) differ from this demo's (:func:`recipe`):
    their names (:data:`_RECIPE_PARTS`; a setting by its name and both values)."""
    if not isinstance(shipped, dict):
        return "its recipe is not recorded"
    mine = json.loads(_json(recipe(geometry, target, settings, beam_model)))   # as JSON gives it back: lists
    said = []
    for part in _parts_differing(shipped, geometry, target, settings, beam_model):
        what, theirs = _RECIPE_PARTS[part], shipped.get(part)
        if part == "settings" and isinstance(theirs, dict):
            what += " (" + ", ".join(f"{n}: {theirs.get(n)!r} there, {mine[part].get(n)!r} here"
                                     for n in sorted(set(theirs) | set(mine[part])) if theirs.get(n)
                                     != mine[part].get(n)) + ")"
        said.append(what)
    return ("; ".join(said) + (" differ" if len(said) > 1 else " differs")) if said else "its recipe key differs"


def _store(path: Path | None, key: str, plan: Plan, geometry: Any, target: np.ndarray, beam_model: Any,
           note: Callable[[str], None], wrong: str = "", advise: bool = True) -> tuple[str, str | None]:
    """Write the entry of ``plan`` (checked first: read back from its bytes, it must be ``plan`` to the bit) to
    ``path``, else (None: not for this user; or it cannot be written) to the spare folder (:func:`_spare_folder`),
    saying so in one note, after ``wrong`` (what was wrong with the entry there), with what to do about the folder
    where ``advise`` (not for another user's entry: the folder is fine); (what was done, for the record, the entry
    written or None)."""
    from .._io.atomic import write_bytes_atomic

    try:
        data = _entry_bytes(key, plan)
        same = _same(plan, _read_entry(io.BytesIO(data), key, geometry, target, beam_model))
    except _Uncacheable as exc:
        why = f"made: not cached ({exc})"
    except Exception as exc:  # noqa: BLE001 - an entry that cannot be read back is not stored; the plan stands
        why = f"made: not cached (its entry could not be read back: {_said(exc)})"
    else:
        why = "" if same else "made: not cached (the entry would not give back the same plan to the bit)"
    if why:
        if wrong:
            note(f"{wrong}: the plan is optimised again")
        return why, None if path is None else str(path)
    said = [wrong] if wrong else []
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)
        except OSError as exc:
            said.append(f"the plan cache {path.parent} cannot be written ({exc.strerror or exc})")
        else:
            _tidy(path.parent, path)
            if said:
                note(f"{said[0]}: the plan is optimised again and the entry written anew")
            return "stored", str(path)
    spare, bad = _spare_folder(create=True)
    if spare is not None:
        kept = _entry_path(spare, key)
        try:
            spare.mkdir(exist_ok=True)
            write_bytes_atomic(kept, data)
        except OSError as exc:
            bad = f"{spare}: {exc.strerror or exc}"
        else:
            _tidy(spare, kept)
            to_do = (f" (set {DIR_ENV} to a folder of yours that can be written to keep it there, or {SWITCH_ENV}=0 "
                     "to turn the cache off)") if advise else ""
            note(f"{'; '.join(said)}: the plan is optimised and kept in {spare} instead{to_do}")
            return "stored", str(kept)
    note(f"{'; '.join(said)}, nor can it be kept in the per-user temporary folder ({bad}): the plan is not kept "
         f"(set {DIR_ENV} to a writable folder, or {SWITCH_ENV}=0 to turn the cache off)")
    return f"made: not cached ({'; '.join(said)})", None if path is None else str(path)


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"

"""What computed a result's dose, beyond its phantom and beams: the build of mcproton (version, transport kernel
source, physics data files) and the physics (``PhysicsSettings``, the physics tables made from them), as
:func:`~mcproton.sum_results` compares them before it adds results.

Before (the compat audit of 2026-12-06, F1), ``sum_results`` added a beam re-run after an upgrade, or with another
``water_model``, to the other beams of a plan without a word, and the sum's provenance named result 1's kernel and
physics for all of them.  Now results that differ are refused unless ``allow=`` names ``"mixed_builds"`` /
``"mixed_physics"``; an allowed mix keeps each part's record (``provenance["summed_builds"]``).

Where each is recorded: ``version``, ``kernel_hash``, ``physics`` and ``tables`` in every result since the first
version; the SHA-256 of the physics data files (``physics_files_sha256``, :func:`mcproton._build.build_identity`) in
every result's ``provenance["build"]`` since 2026-12-06 (the fix of that audit), and before that in an
``mcproton run`` output's ``run_identity`` only.  What a result does not record is unknown: refused against a result
that records it (two results that both lack it are compared on what they record).

The records of the run that computed a result (its seed, batches, parts, kernel build, and of an ``mcproton run``
output its command, config and RT Dose UIDs) are a sum's only where they are every part's
(:func:`sum_run_records`): else each part's is kept in ``provenance["summed_runs"]`` (review 2b, R1: a sum named
result 1's for all).
"""
from __future__ import annotations

import json
from typing import Any, Callable

#: the keys of a build that change the dose (:func:`mcproton._build.build_identity`): a hash of pure Python code (a
#: change that does not touch the physics) is not among them, as ``mcproton run --resume`` goes on across one
BUILD_KEYS = ("version", "kernel_hash", "physics_files_sha256")
#: the keys of ``provenance["tables"]`` (mcproton/_physics/tables.py) that do not depend on the phantom's materials
_TABLE_KEYS = ("water_model", "ivalue_set", "e_min_mev", "e_max_mev", "n_e", "n_r")
#: the keys of ``provenance["tables"]`` that hold a value per material (by name)
_TABLE_PER_MATERIAL = ("i_values_ev", "scattering_length_g_cm2")
#: what a mixed sum says in the provenance keys whose value differs among its parts
MIXED = "mixed: each part's in summed_builds"
#: what each of :data:`BUILD_KEYS` is, for a message
_WHAT = {"version": "mcproton version", "kernel_hash": "transport kernel source (kernel_hash)",
         "physics_files_sha256": "physics data files (physics_files_sha256)"}


def _mapping(v: Any) -> dict | None:
    """A provenance value that is a dict (or a JSON string of one, as an HDF5 written before may hold it)."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    return v if isinstance(v, dict) else None


def _beams(prov: dict) -> list[str]:
    from .._io.hdf5 import beam_records

    return [str(b.get("name")) for b in beam_records(prov) if b.get("name")]


#: a build record's ``code_sha256`` (:func:`build_record`) where the result is a sum of parts computed by different
#: code (or of one that does not record its code)
CODE_MIXED = "mixed"


def build_record(prov: dict) -> dict:
    """What a result's provenance records of what computed it: ``beams`` (the beam names), each of
    :data:`BUILD_KEYS` (None where not recorded), ``code_sha256`` (None where not recorded, :data:`CODE_MIXED` for a
    sum of different code), ``physics`` and ``tables`` (None where not recorded).  The build's keys are read from
    ``provenance["build"]`` (every result since 2026-12-06; the code since 2026-12-07), else from an ``mcproton run``
    output's ``run_identity`` (its ``build``), else ``version`` and ``kernel_hash`` from the provenance itself."""
    build = _mapping(prov.get("build"))
    if build is None:
        build = _mapping((_mapping(prov.get("run_identity")) or {}).get("build")) or {}
    rec: dict[str, Any] = {"beams": _beams(prov)}
    for k in BUILD_KEYS:
        v = build.get(k, prov.get(k) if k != "physics_files_sha256" else None)
        rec[k] = None if v is None else str(v)
    # the code's SHA-256 (not compared: pure Python changes are summed), as the RT Dose's SoftwareVersions names the
    # code that computed the dose (review 2b, R2): "mixed" for a sum of parts of different code
    # (``code_sha256_of_parts``), None where not recorded (a result of an mcproton before 2026-12-07)
    code = build.get("code_sha256")
    rec["code_sha256"] = (str(code) if code is not None else
                          CODE_MIXED if build.get("code_sha256_of_parts") is not None else None)
    rec["physics"] = _mapping(prov.get("physics"))
    rec["tables"] = _mapping(prov.get("tables"))
    return rec


def part_records(prov: dict) -> list[dict]:
    """The records of the parts of a result: of a sum made of several builds or physics (``summed_builds``), each
    part's; else the result's own (:func:`build_record`)."""
    return _kept_parts(prov, "summed_builds", build_record)


def _kept_parts(prov: dict, key: str, own: Callable[[dict], dict]) -> list[dict]:
    """The records a sum keeps of its parts under ``key`` (a list of dicts), copied; else ``[own(prov)]``."""
    parts = prov.get(key)
    if isinstance(parts, list) and parts and all(isinstance(p, dict) for p in parts):
        return [dict(p) for p in parts]
    return [own(prov)]


def _short(v: Any) -> str:
    """A value for a message: a hash's first 16 hex digits, text quoted, else as Python writes it."""
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:16]
    return repr(v)


def _table_differences(t1: dict, tk: dict, same_materials: set[str]) -> list[str]:
    """How the physics tables ``tk`` differ from ``t1``: their phantom-independent keys, and each per-material value
    of the materials ``same_materials`` (defined alike in both phantoms; a material defined otherwise is a phantom
    difference, warned of by sum_results)."""
    out = [f"tables.{k} {_short(tk.get(k))} against {_short(t1.get(k))}" for k in _TABLE_KEYS if tk.get(k) != t1.get(k)]
    for k in _TABLE_PER_MATERIAL:
        a, b = t1.get(k) or {}, tk.get(k) or {}
        out += [f"tables.{k}[{m!r}] {b[m]!r} against {a[m]!r}" for m in sorted(same_materials)
                if m in a and m in b and a[m] != b[m]]
    return out


def differences(r1: dict, rk: dict, same_materials: set[str]) -> dict[str, list[str]]:
    """How the record ``rk`` differs from result 1's ``r1`` (:func:`build_record`), by the ``allow=`` name that passes
    it: ``"mixed_physics"`` for the PhysicsSettings, ``"mixed_builds"`` for the build, the tables (compared where the
    physics settings agree: they follow from them) and whatever one records and the other does not."""
    builds, physics = [], []

    def unknown(what: str, key: str, a: Any, b: Any) -> str:
        older = f"written by an older mcproton that did not record {key}"
        if b is None:
            return f"{what} not recorded ({older}; result 1's: {_short(a)})"
        return f"{what} {_short(b)}, where result 1's is not recorded ({older})"

    for k in BUILD_KEYS:
        a, b = r1.get(k), rk.get(k)
        if a != b:
            builds.append(unknown(_WHAT[k], k, a, b) if a is None or b is None
                          else f"{_WHAT[k]} {_short(b)} against {_short(a)}")
    p1, pk = r1.get("physics"), rk.get("physics")
    if p1 != pk:
        if p1 is None or pk is None:
            builds.append(unknown("physics settings", "them", p1, pk))
        else:   # a setting one of them does not record: an older mcproton's (a build difference)
            one = sorted(set(p1) ^ set(pk))
            if one:
                builds.append(f"physics settings {', '.join(one)} recorded by one only (written by an older "
                              "mcproton that did not have them)")
            said = [f"{k} {_short(pk[k])} against {_short(p1[k])}" for k in sorted(set(p1) & set(pk))
                    if p1[k] != pk[k]]
            if said:
                physics.append("physics " + ", ".join(said))
    t1, tk = r1.get("tables"), rk.get("tables")
    if not physics and t1 != tk:
        if t1 is None or tk is None:
            builds.append("physics tables not recorded (written by an older mcproton that did not record them)"
                          if tk is None else "physics tables recorded, where result 1's are not (written by an older "
                          "mcproton that did not record them)")
        else:
            said = _table_differences(t1, tk, same_materials)
            if said:
                builds.append("physics tables: " + "; ".join(said[:3])
                              + (f" and {len(said) - 3} more" if len(said) > 3 else ""))
    return {k: v for k, v in (("mixed_builds", builds), ("mixed_physics", physics)) if v}


def label(k: int, rec: dict, part: int | None = None) -> str:
    """"result 2 (beam 'G90')", "result 1, part 2 (beams 'a', 'b')": a result (and a part of a mixed sum) for a
    message."""
    beams = rec.get("beams") or []
    names = ", ".join(repr(b) for b in beams)
    return (f"result {k}" + (f", part {part}" if part is not None else "")
            + (f" (beam{'s' if len(beams) > 1 else ''} {names})" if beams else ""))


#: what to do, by the ``allow=`` name
ADVICE = {
    "mixed_builds": ("their doses differ by what changed between the builds (stopping powers, I-values, cross "
                     "sections, the transport), and the sum would name one build for all: run every beam with one "
                     "mcproton (the beams of one mcproton run share one), or, if adding them as they are is known to "
                     "be right, pass allow=(\"mixed_builds\",) to sum_results"),
    "mixed_physics": ("the sum would add doses of different physics and name one setting for all: run every beam with "
                      "the same PhysicsSettings, or, for a study that means it, pass allow=(\"mixed_physics\",) to "
                      "sum_results"),
}
#: the refusal's opening, by the ``allow=`` name
WHAT_DIFFERS = {"mixed_builds": "the results were not computed by one build of mcproton",
                "mixed_physics": "the results were computed with different physics settings"}


# --- the records of the run that computed a result, and of a sum's runs -----------------------------------------------

#: the provenance keys of how one ``mcproton run`` was started and what it wrote (its command record, mcproton/cli.py
#: COMMAND_RECORD_KEYS; its ``run_identity``, which ``--resume`` compares; its RT Dose's UIDs and contents): a run's,
#: never a sum's, which keeps them of each part in ``summed_runs``
RUN_FILE_KEYS = ("invocation", "working_directory", "config", "config_file_sha256", "set_options", "config_effective",
                 "config_effective_sha256", "input_paths", "run_identity", "rtdose_uids", "rtdose_dose")
#: the provenance keys of a run's random numbers, batches, parts and kernel build (mcproton/_run/result.py finish,
#: mcproton/_run/job.py): a sum's where every part records the same (the beams of one run), else :data:`RUNS_DIFFER`
#: (``resumed``: true where any part was resumed)
RUN_SHARED_KEYS = ("seed", "batches", "batch_size", "segments", "resumed", "kernel_build", "kernel_builds")
#: what a sum records in a key of :data:`RUN_SHARED_KEYS` that its parts record differently
RUNS_DIFFER = "differ: each part's in summed_runs"


def run_record(prov: dict) -> dict:
    """The keys of :data:`RUN_FILE_KEYS` and :data:`RUN_SHARED_KEYS` that ``prov`` records."""
    return {k: prov[k] for k in (*RUN_FILE_KEYS, *RUN_SHARED_KEYS) if k in prov}


def run_parts(prov: dict) -> list[dict]:
    """The run records of a result's parts: of a sum of several runs, each part's (``summed_runs``); else the
    result's own (:func:`run_record`)."""
    return _kept_parts(prov, "summed_runs", run_record)


def _same(values: list[Any]) -> bool:
    """Whether ``values`` are one value (compared as JSON: a record loaded from an HDF5 against one in memory)."""
    texts = {json.dumps(v, sort_keys=True, default=str) for v in values}
    return len(texts) == 1


def sum_run_records(prov: dict, provs: list[dict]) -> None:
    """The run records of the sum (``prov``, result 1's copied) of results of provenance ``provs``: no
    :data:`RUN_FILE_KEYS` (a sum was not started by a command and wrote no RT Dose: result 1's invocation, config
    and RT Dose UIDs were kept before, review 2b R1); each of :data:`RUN_SHARED_KEYS` where every part records the
    same, else :data:`RUNS_DIFFER` (``resumed``: true where any part was, false where every part says false); and
    where any of them differs or a part is an ``mcproton run`` output, each part's record in ``summed_runs`` (the
    parts of a part that is itself such a sum, each)."""
    parts = [p for q in provs for p in run_parts(q)]
    for k in (*RUN_FILE_KEYS, "summed_runs"):
        prov.pop(k, None)
    differ = False
    for k in RUN_SHARED_KEYS:
        values = [p[k] for p in parts if k in p]
        prov.pop(k, None)
        if k == "resumed":
            flags = [bool(v) for v in values]
            if any(flags) or (flags and len(flags) == len(parts)):
                prov[k] = any(flags)
            differ |= bool(flags) and (len(set(flags)) > 1 or len(flags) < len(parts))
        elif len(values) == len(parts) and _same(values):
            prov[k] = values[0]
        elif values:
            prov[k] = RUNS_DIFFER
            differ = True
    if differ or any(k in p for p in parts for k in RUN_FILE_KEYS):
        prov["summed_runs"] = parts


def recorded_seeds(prov: dict) -> list[str]:
    """The random-number seeds of a result's runs (:func:`run_parts`), each once, in order ("unknown" for a part that
    does not record its seed); [] where none records one."""
    seeds = [p.get("seed") for p in run_parts(prov)]
    if all(s is None for s in seeds):
        return []
    return list(dict.fromkeys("unknown" if s is None else str(s) for s in seeds))

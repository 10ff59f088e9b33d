"""Checkpoints: the running sums of a run and its RNG position, written atomically beside the output.

A checkpoint is a sibling of the output, ``<out stem>.ckpt.h5``.  It holds, per beam of the job, the
integer tally sums, the ledger, the float sums of the batch dose and its square (for the uncertainty), the
number of batches and primaries, and the *next history index* (each history's random numbers depend only on
the seed and its index, and batches are consecutive history ranges, so this index is the whole RNG state).

Writes are built in memory, go to a temporary ``.<name>.*.tmp`` beside it, are fsync'ed and renamed over the old
checkpoint (``os.replace``): a kill at any moment leaves either the previous or the new checkpoint, never a
partial one.  A checksum over every array and counter detects a damaged file; a fingerprint (config, version,
kernel, geometry, the materials in full, the physics settings in effect, beams, backend, seed) refuses a checkpoint of
another job: of everything that changes the physics of the dose (:func:`fingerprint`), a resume with any part changed
is refused, naming it (and where the transport's data come from mcproton's own files, by the physics data's SHA-256
of the kernel builds below).

Beside the fingerprint, a checkpoint records the *builds* of the transport kernel that ran its histories
(:func:`kernel_build`: compiler, options, the CPU or GPU it was built for, the kernel cache's key, mcproton's build
identity), each with the history position of every beam where it took over.  A run resumed by another build (a
Slurm requeue onto a node with another compiler, or another CPU: -march=native) is not refused: its dose is
statistically valid, but not bitwise equal to an uninterrupted run of either build; the run says so and its
provenance records the builds (``kernel_builds``).  One resumed with other physics data is refused.  A Dask run's
builds are its workers' (each chunk names its worker's: mcproton._run.distributed); a part of a run that records no
build (a --workers run before 2026-12-07) is an unknown one on resume (:func:`with_unrecorded_builds`).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .stats import weight_sum_of

FORMAT = 1
#: run keys that do not change the result and may differ on resume
_FREE_RUN_KEYS = ("threads", "time_limit_s", "checkpoint_interval_s", "backend", "gpu")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (corrupt, or written by another job); the message says what to do."""


#: the checkpoint of ``--out x.h5`` (or ``x.hdf5``, or ``x``) is ``x`` + this, beside it (an --out ending in it is
#: refused: mcproton.cli._check_paths)
CHECKPOINT_SUFFIX = ".ckpt.h5"


def checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix in (".h5", ".hdf5") else out.name
    return out.with_name(stem + CHECKPOINT_SUFFIX)


def _sha(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode() + str(p.shape).encode())
            h.update(np.ascontiguousarray(p).view(np.uint8))   # the buffer itself: no copy of a large grid
        else:
            h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def config_hash(cfg: dict[str, Any]) -> str:
    """Hash of the parts of a config that change the result (not [output], threads, time limit, checkpoint
    interval, the config's folder; the backend is checked on its own)."""
    c = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "output"}
    if "run" in c:
        c["run"] = {k: v for k, v in c["run"].items() if k not in _FREE_RUN_KEYS}
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()


def geometry_hash(g: Any) -> str:
    return _sha(g.material_index_zyx, g.density_g_cm3_zyx, np.asarray(g.voxel_size_mm, np.float64),
                np.asarray(g.origin_mm, np.float64), [m.name for m in g.materials])


def beams_hash(beams: list[Any]) -> str:
    return _sha(*[x for b in beams for x in (b.spot_array(), b.spot_cdf(), b.total_protons)])


def physics_settings_text(settings: Any) -> str:
    """The physics settings a run transports with (``settings.physics``, its defaults included), as JSON: the config's
    [physics] as written is in the config hash, but a default changed by another mcproton is not."""
    import dataclasses

    phys = getattr(settings, "physics", None)
    fields = dataclasses.asdict(phys) if dataclasses.is_dataclass(phys) and not isinstance(phys, type) else {}
    return json.dumps(fields, sort_keys=True, default=str)


def shifter_materials(beams: list[Any]) -> list[Any]:
    """The range shifters' materials of ``beams`` (each once by name, in order of first use): a beams hash holds only
    their index (Beam.spot_array), not their compositions."""
    out: dict[str, Any] = {}
    for b in beams:
        for m in b.shifter_materials():
            out.setdefault(m.name, m)
    return list(out.values())


def fingerprint(cfg: dict[str, Any] | None, settings: Any, backend: str, geometry: Any,
                beams: list[Any], first_beam_index: int = 0, *, streams: Sequence[int] | None = None) -> dict[str, str]:
    """What identifies a job (its checkpoint's fingerprint): ``streams``, the beams' random streams (default
    ``first_beam_index + i``), are recorded as ``first_beam_index`` where they run on from it (absent from 0: as
    before the key existed), else as ``beam_streams`` (e.g. "0,2": plan.beams = [1, 3] of a three-beam plan).

    Everything that changes the physics of the dose is in it: the kernel source (``kernel_hash``), the config less the
    keys that do not change the result (``config_hash``), the geometry's voxels, densities and material names
    (``geometry_hash``), the materials in full: compositions, I-values, nominal densities (``materials_sha256``: a
    HU calibration's hu_materials.csv or an RT Struct's ROIElementalComposition corrected under the same names; the
    concurrency audit 25, F1: a resume mixed two physics in one dose), the physics settings in effect, defaults
    included (``physics_settings``), the beams' spots and protons (``beams_hash``) and their range shifters'
    materials (``shifter_materials_sha256``, where there are any), the backend, seed and primaries.  The physics
    tables are made from these and from mcproton's physics data, whose SHA-256 each kernel build records
    (:func:`physics_changed`: another one is refused too).  The input files themselves are not: what of them the
    transport sees is the geometry, materials and beams above (an RT Struct re-contoured in place changes the DVHs,
    computed from the final dose, not the transport)."""
    from .. import __version__
    from .._io.hu_calibration import materials_sha256
    from .._kernels.source import source_hash

    streams = [int(k) for k in streams] if streams is not None else \
        [int(first_beam_index) + i for i in range(len(beams))]
    first = streams[0] if streams else 0
    on_from_first = streams == list(range(first, first + len(streams)))
    return {
        "format": str(FORMAT), "version": __version__, "kernel_hash": source_hash("transport.cu"),
        "config_hash": config_hash(cfg) if cfg is not None else "none",
        "geometry_hash": geometry_hash(geometry), "materials_sha256": materials_sha256(geometry.materials),
        "physics_settings": physics_settings_text(settings), "beams_hash": beams_hash(beams),
        "backend": backend, "seed": str(settings.seed), "primaries": str(settings.primaries),
        "n_beams": str(len(beams)),
        # absent without range shifters (so a checkpoint of before 2026-12-07 without any has none either)
        **({"shifter_materials_sha256": materials_sha256(shifters)} if (shifters := shifter_materials(beams)) else {}),
        # the beams' random streams (JobOptions.first_beam_index / beam_streams); absent for 0, 1, ..., as before
        # the key existed
        **({"first_beam_index": str(first)} if on_from_first and first else {}),
        **({} if on_from_first else {"beam_streams": ",".join(map(str, streams))}),
    }


#: the checkpoint attribute holding the kernel builds (JSON list of {"kernel": kernel_build(...) or None for an
#: unknown one, "from_histories": [each beam's next history when it took over]})
BUILDS_ATTR = "kernel_builds"


def kernel_build(backend: Any) -> dict[str, Any]:
    """What identifies the transport kernel a backend runs: the backend's ``build_identity()`` (the CPU's compiler,
    options, CPU model and flags, kernel cache key; CUDA's NVRTC version, options and compute capability), else its
    compiler, options and device; with mcproton's build identity (:func:`mcproton._build.build_identity`: version,
    kernel source, physics data)."""
    from .._build import build_identity

    own = getattr(backend, "build_identity", None)
    kernel = dict(own()) if callable(own) else {
        "compiler": str(getattr(backend, "compiler", "")),
        "options": " ".join(map(str, getattr(backend, "compile_options", ()))),
        "target": str(getattr(backend, "device", ""))}
    return {"backend": str(getattr(backend, "name", "")), **kernel, "mcproton": build_identity()}


#: the note of a kernel build that Dask workers ran beside another in one part of a run (the checkpoint's and the
#: provenance's ``kernel_builds``): their batches interleave, so ``from_histories`` is where it was first seen
WORKER_BUILDS_NOTE = ("the Dask workers of this part of the run ran several builds, their batches interleaved: "
                      "from_histories is where this one was first seen")
#: ``kernel_build`` (provenance, segments) of a part of a run whose Dask workers ran several builds
WORKER_BUILDS_DIFFER = "differ: the Dask workers ran several builds, each in kernel_builds"


def with_unrecorded_builds(builds: list[dict[str, Any]], segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``builds`` (the checkpoint's, being resumed) with an unknown build (``kernel`` None) where a part of the run
    transported histories but records no build (``kernel_build`` None: a --workers run of an mcproton before
    2026-12-07, whose workers' builds were not known), in its place in time: its resume says that whether it is
    bitwise an uninterrupted run cannot be verified, and records ``kernel_builds`` (audit 26 interact, F3)."""
    out = list(builds)
    for seg in segments:
        frm, to = seg.get("from_histories"), seg.get("to_histories")
        if "kernel_build" not in seg or seg["kernel_build"] is not None or not frm or not to or list(frm) == list(to):
            continue
        entry = {"kernel": None, "from_histories": [int(h) for h in frm]}
        if any(b.get("kernel") is None and b.get("from_histories") == entry["from_histories"] for b in out):
            continue
        at = sum(frm)   # the histories only grow: the builds that took over before it come first
        out.insert(sum(1 for b in out if sum(b.get("from_histories") or [0]) <= at), entry)
    return out


def describe_build(build: dict[str, Any] | None) -> str:
    """A kernel build in words (for messages)."""
    if not build:
        return "an unknown build (a checkpoint of an mcproton that did not record it)"
    where = (f"for {build['cpu_model']} (CPU flags {str(build.get('cpu_flags_sha256'))[:12]})" if "cpu_model" in build
             else f"for GPUs of compute capability {build['compute_capability']}" if "compute_capability" in build
             else f"for {build.get('target')}")
    key = f", kernel cache key {build['kernel_key']}" if build.get("kernel_key") else ""
    return f"{build.get('compiler') or 'an unknown compiler'} {where}{key}"


def read_builds(path: str | Path) -> list[dict[str, Any]] | None:
    """The kernel builds a checkpoint records (:data:`BUILDS_ATTR`); None for one written before they were
    recorded (or unreadable)."""
    return _json_list_attr(path, BUILDS_ATTR)


def _json_list_attr(path: str | Path, name: str) -> list[Any] | None:
    """The JSON list a checkpoint holds in its attribute ``name``; None where it has none (or it is unreadable)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if name not in f.attrs:
                return None
            value = json.loads(f.attrs[name])
            return value if isinstance(value, list) else None
    except (OSError, ValueError, TypeError):
        return None


#: the checkpoint attribute holding the parts of the run so far (JSON list: mcproton._run.job._segment_end), which a
#: resumed run's outputs record (``segments``)
SEGMENTS_ATTR = "segments"


def read_segments(path: str | Path) -> list[dict[str, Any]] | None:
    """The parts of the run a checkpoint records (:data:`SEGMENTS_ATTR`); None for one written before they were
    recorded (or unreadable)."""
    return _json_list_attr(path, SEGMENTS_ATTR)


def physics_changed(builds: list[dict[str, Any]] | None, current: dict[str, Any]) -> bool:
    """Whether the physics data of a checkpoint's last known build differ from ``current``'s (mcproton's
    ``physics_files_sha256``): a resume would mix two physics, which is refused."""
    known = [b["kernel"] for b in builds or [] if b.get("kernel")]
    if not known:
        return False
    old = (known[-1].get("mcproton") or {}).get("physics_files_sha256")
    return old is not None and old != (current.get("mcproton") or {}).get("physics_files_sha256")


#: how to resume a checkpoint whose beams ran on other random streams
_STREAMS_HOW = ("its beams ran on other random streams, so continued its histories and this run's would not be one "
                "run's: resume with the same random streams (JobOptions first_beam_index / beam_streams)")
#: the same, for a checkpoint of mcproton run's plan.beams written before each beam ran on its place in the plan
_OLD_STREAMS_HOW = ("its beams ran on other random streams: since 2026-12-06 mcproton run runs each beam of an RT Ion "
                    "Plan on the stream of its place in the plan, and a checkpoint of some of a plan's beams "
                    "(plan.beams) written before then ran them on streams 0, 1, ..., so continued its histories and "
                    "this run's would not be one run's")
_WHAT = {"format": ("checkpoint format", "it was written by another mcproton version"),
         "version": ("mcproton version", "resume with the version that wrote it"),
         "kernel_hash": ("transport kernel", "the kernel source changed since; resume with the same build"),
         "config_hash": ("config", "resume with the same config and --set options (only run.threads, run.gpu, "
                                   "run.time_limit_s, run.checkpoint_interval_s and [output] may change)"),
         "geometry_hash": ("geometry", "the phantom/CT differs from the interrupted run's"),
         "materials_sha256": ("material table", "the materials of the geometry differ from the interrupted run's in "
                              "composition (mass fractions), I-value or nominal density under the same names: the HU "
                              "calibration's hu_materials.csv (phantom.calibration) or the RT Struct's material "
                              "overrides (ROIElementalComposition) changed since it was interrupted, and a resume "
                              "would add the new physics's histories to the old's in one dose: resume with the "
                              "materials of the interrupted run (put its calibration back)"),
         "shifter_materials_sha256": ("range shifter material", "a range shifter's material differs from the "
                                      "interrupted run's in composition or I-value (the beam's range shifter changed "
                                      "since): resume with the interrupted run's"),
         "physics_settings": ("physics settings", "the physics settings in effect differ from the interrupted run's "
                              "while the config is the same: mcproton's defaults of [physics] changed (another "
                              "mcproton); resume with the mcproton that wrote it, or give the interrupted run's values "
                              "in [physics]"),
         "beams_hash": ("beam", "the beam/plan differs from the interrupted run's"),
         "backend": ("backend", "resume on the same backend (--set run.backend=...)"),
         "seed": ("seed", "resume with the same run.seed"),
         "primaries": ("number of primaries", "resume with the same run.primaries"),
         "n_beams": ("number of beams", "resume with the same plan"),
         "first_beam_index": ("first beam index (random stream)", _STREAMS_HOW),
         "beam_streams": ("random streams of the beams", _STREAMS_HOW)}


#: the datasets of a beam's ledger: ``ledger`` (int64), and ``ledger_hi`` where an entry does not fit in int64
LEDGER_DATASETS = ("ledger", "ledger_hi")


def ledger_datasets(ledger: Any) -> dict[str, np.ndarray]:
    """A running ledger (Python ints, engine.exact_ledger) as the checkpoint stores it: ``{"ledger": int64}`` where
    every entry fits in int64 (as before the ledger was exact, so that such a checkpoint reads, and checksums, as
    before), else the low 32 bits of each entry as ``ledger`` and the rest (``entry >> 32``) as ``ledger_hi``, both
    int64: a beam's ledger reaches 2^73 units (2^40 primaries at 400 MeV, 2^-24 MeV units)."""
    values = [int(v) for v in np.asarray(ledger).reshape(-1)]
    if all(-2**63 <= v < 2**63 for v in values):
        return {"ledger": np.array(values, np.int64)}
    return {"ledger": np.array([v & 0xFFFFFFFF for v in values], np.int64),
            "ledger_hi": np.array([v >> 32 for v in values], np.int64)}


def ledger_from_datasets(lo: Any, hi: Any = None) -> np.ndarray:
    """The running ledger (Python ints) of a checkpoint's ``ledger`` and, where stored, ``ledger_hi``
    (:func:`ledger_datasets`)."""
    from .engine import exact_ledger

    if hi is None:
        return exact_ledger(np.asarray(lo, np.int64))
    lo, hi = np.asarray(lo, np.int64).reshape(-1), np.asarray(hi, np.int64).reshape(-1)
    if lo.shape != hi.shape:
        raise ValueError(f"ledger: {lo.size} low words for {hi.size} high words")
    return exact_ledger([(int(h) << 32) + int(v) for h, v in zip(hi, lo)])


@dataclass
class CompactSums:
    """What a compacted BeamState keeps of its Accumulator besides the stored arrays."""

    ledger: np.ndarray
    batches: int
    primaries: int
    n_vox: int
    batch_weight_sum: float | None = None   # stats.batch_weight (None: as many as batches, all of one size)
    batch_unit: int = 0


@dataclass
class BeamState:
    """The running state of one beam of a job."""

    acc: Any                    # run.Accumulator
    next_history: int = 0       # RNG position: histories [0, next_history) are in acc
    elapsed_s: float = 0.0      # transport wall time so far
    done: bool = False
    stop_reason: str = ""
    batch_cap: int = 0          # batch size after a GPU out-of-memory shrink (0 = none)
    stored: dict[str, np.ndarray] | None = None   # a finished beam's sums in their stored form only (compact())

    @property
    def n_vox(self) -> int:
        return int(self.acc.n_vox)   # Accumulator, ScoredSums (a GPU beam's host copy) or CompactSums

    def compact(self, voxels: np.ndarray | None = None) -> None:
        """Keep a finished beam's running sums only as a checkpoint stores them (voxels with dose), freeing the
        whole arrays (72 bytes per voxel): later checkpoints of the job write them unchanged.  Its result must
        have been computed (run.finish) before.  ``voxels``: scored_voxels of the sums, where already known."""
        if self.stored is None:
            self.stored = self.stored_arrays(voxels)
            a = self.acc
            self.acc = CompactSums(a.ledger, int(a.batches), int(a.primaries), self.n_vox, weight_sum_of(a),
                                   int(getattr(a, "batch_unit", 0)))

    def checksum(self, stored: dict[str, np.ndarray]) -> str:
        """Digest of the state as written: ``stored`` are the arrays of the file (whole, or voxel indices and
        the values there), so that a large grid is hashed in its compact form, on writing and on reading."""
        a = self.acc
        # the batch weights too (stats.batch_weight: their sum and unit), which a resumed run goes on with
        # the ledger as stored (one int64 array where it fits: the digest of a checkpoint written before it was exact)
        return _sha(*[stored[k] for k in sorted(stored)], *ledger_datasets(a.ledger).values(), int(a.batches),
                    int(a.primaries), int(self.next_history), bool(self.done), self.stop_reason, int(self.batch_cap),
                    repr(weight_sum_of(a)), int(getattr(a, "batch_unit", 0)))

    def stored_arrays(self, voxels: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The running sums as a checkpoint stores them: whole arrays when more than half the grid has dose,
        else ``voxels`` (flat indices where any sum is non-zero: scored_voxels, computed here if not given) and
        each array's values there."""
        if self.stored is not None:
            return self.stored
        from .engine import LET_MOMENTS, ScoredSums
        from .result import scored_voxels

        a = self.acc
        voxels = scored_voxels(a) if voxels is None else voxels
        n = self.n_vox
        if voxels.size > n // 2:   # mostly filled: whole arrays are smaller and quicker
            if isinstance(a, ScoredSums):
                a = a.dense()
            return {**{f"sum_{k}": v for k, v in a.sums.items()}, "sum_x": a.sum_x, "sum_x2": a.sum_x2,
                    **a.let_moments}
        at = a.at(voxels)   # of a ScoredSums (a GPU beam's host copy): its own arrays
        out = {**{f"sum_{k}": at[k] for k in a.sums}, "sum_x": at["sum_x"], "sum_x2": at["sum_x2"],
               **{k: at[k] for k in LET_MOMENTS}}
        out["voxels"] = voxels.astype(np.uint32 if n < 2**32 else np.int64)
        return out


#: Checkpoint arrays are written uncompressed and, where at most half the grid has dose, sparse
#: (BeamState.stored_arrays), and the checksum is taken over what is written: a checkpoint is a transient file
#: (removed when the run's output is written) and the run waits while it is written.  Measured 2026-11-26
#: (development VM, the 6 arrays of a 4 M-voxel grid, with fsync): gzip level 1 + shuffle of the whole arrays
#: took 2.0 s (135 MB) for a dense field and 0.69 s (41 MB) with 70 % empty voxels; uncompressed whole arrays
#: 0.49 s / 0.09 s (192 MB).  At the default 60 s interval gzip alone would cost a GPU run about 3 % of its
#: throughput.
_ARRAY_OPTS: dict[str, Any] = {}


def save_checkpoint(path: str | Path, fp: dict[str, str], states: list[BeamState],
                    builds: list[dict[str, Any]] | None = None,
                    voxels: Mapping[int, np.ndarray] | None = None, *,
                    segments: list[dict[str, Any]] | None = None) -> Path:
    """Write the states atomically (the HDF5 metadata built in memory, then it and the sums, from their own arrays,
    written to a temp file, fsync, os.replace: mcproton._io.atomic.write_hdf5_streamed; HDF5 never meets a failed
    write, which can crash it, and the sums are not copied into an in-memory image first: that image, 48 bytes per
    voxel of each beam's sums, was a plan run's peak memory, audit 25 memory).  On failure (disk full, no
    permission) the temporary file is removed, the previous checkpoint is left as it was, and the OSError is
    raised.  ``builds``: the kernel builds
    that ran its histories (:data:`BUILDS_ATTR`).  ``voxels``: the scored voxels of some states (by index) where
    the caller knows them (a beam just finished, a beam not started: none), so that a large grid is not scanned
    again for them (BeamState.stored_arrays).  ``segments``: the parts of the run so far (:data:`SEGMENTS_ATTR`)."""
    from .._io.atomic import write_hdf5_streamed

    return write_hdf5_streamed(path, lambda f, put: _fill_checkpoint(f, fp, states, builds, voxels, segments, put))


def _fill_checkpoint(f: Any, fp: dict[str, str], states: list[BeamState],
                     builds: list[dict[str, Any]] | None = None,
                     voxels: Mapping[int, np.ndarray] | None = None,
                     segments: list[dict[str, Any]] | None = None,
                     put: Callable[[Any, str, np.ndarray], Any] | None = None) -> None:
    """Fill the checkpoint file ``f``; ``put(group, name, array)`` creates the sums' datasets (write_hdf5_streamed's),
    else ``group.create_dataset``."""
    f.attrs["mcproton_checkpoint"] = FORMAT
    f.attrs["fingerprint"] = json.dumps(fp, sort_keys=True)
    f.attrs["fingerprint_sha"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    if builds is not None:
        f.attrs[BUILDS_ATTR] = json.dumps(builds, sort_keys=True)
    if segments is not None:
        f.attrs[SEGMENTS_ATTR] = json.dumps(segments, sort_keys=True, default=str)
    for i, st in enumerate(states):
        g = f.create_group(f"beam_{i:03d}")
        a = st.acc
        stored = st.stored_arrays((voxels or {}).get(i))
        g.attrs["n_vox"] = st.n_vox
        for name, v in stored.items():
            if put is not None and not _ARRAY_OPTS:
                put(g, name, v)
            else:
                g.create_dataset(name, data=v, **_ARRAY_OPTS)
        for name, words in ledger_datasets(a.ledger).items():
            g.create_dataset(name, data=words)
        g.attrs["batches"] = int(a.batches)
        g.attrs["batch_weight_sum"] = weight_sum_of(a)
        g.attrs["batch_unit"] = int(getattr(a, "batch_unit", 0))
        g.attrs["primaries"] = int(a.primaries)
        g.attrs["next_history"] = int(st.next_history)
        g.attrs["elapsed_s"] = float(st.elapsed_s)
        g.attrs["done"] = bool(st.done)
        g.attrs["stop_reason"] = st.stop_reason
        g.attrs["batch_cap"] = int(st.batch_cap)
        g.attrs["checksum"] = st.checksum(stored)


def _difference(old: dict[str, Any], fp: dict[str, Any]) -> str | None:
    """How the fingerprint ``old`` (a checkpoint's) differs from ``fp`` (this run's), the most specific reason first:
    'another beam (beams_hash a93f... != e865...): the beam/plan differs from the interrupted run's'; None where
    they are the same."""
    order = ("format", "version", "kernel_hash", "backend", "seed", "primaries", "n_beams",
             "geometry_hash", "materials_sha256", "beams_hash", "shifter_materials_sha256", "config_hash",
             "physics_settings")  # the most specific reason first ([physics] changed in the config: the config)
    for key in sorted(set(fp) | set(old), key=lambda k: (order.index(k) if k in order else len(order), k)):
        if old.get(key) != fp.get(key):
            what, how = _WHAT.get(key, (key, ""))
            if key in _RECORDED_SINCE and key not in old:
                return (f"a {what} it does not record (it was written by an mcproton before {_RECORDED_SINCE[key]}, "
                        f"which did not record {key}), so whether it is this run's cannot be told, and a resume "
                        f"with another would mix two physics in one dose: resume with the mcproton that wrote it")
            if key == "physics_settings":
                return f"other {what} ({_settings_changes(old.get(key), fp.get(key))}): {how}"
            if (key in ("first_beam_index", "beam_streams") and fp.get("config_hash", "none") != "none"
                    and not {"first_beam_index", "beam_streams"} & set(old)):
                # an mcproton run checkpoint on streams 0, 1, ...: plan.beams before 2026-12-06 (run review F4)
                how = _OLD_STREAMS_HOW
            return f"another {what} ({key} {str(old.get(key))[:16]} != {str(fp.get(key))[:16]}): {how}"
    return None


#: the fingerprint's keys that a checkpoint of an older mcproton lacks, and since when they are recorded: such a
#: checkpoint is refused (its materials or physics settings cannot be compared); shifter_materials_sha256 is not
#: among them (absent where there are no range shifters)
_RECORDED_SINCE = {"materials_sha256": "2026-12-07", "physics_settings": "2026-12-07"}


def _settings_changes(old: Any, new: Any) -> str:
    """The physics settings that differ between two :func:`physics_settings_text` (``physics.e_cut_mev 0.5 !=
    1.0``)."""
    try:
        a, b = json.loads(old), json.loads(new)
    except (TypeError, ValueError):
        return "(unreadable)"
    if not isinstance(a, dict) or not isinstance(b, dict):
        return "(unreadable)"
    return ", ".join(f"physics.{k} {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b))
                     if a.get(k) != b.get(k))


def checkpoint_difference(path: str | Path, fp: dict[str, Any]) -> str | None:
    """How the run of checkpoint ``path`` differs from this run's fingerprint ``fp`` (:func:`_difference`); None
    where it is this run's, or the checkpoint is unreadable (:func:`load_checkpoint` then says what is wrong)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            old = json.loads(f.attrs["fingerprint"])
    except Exception:  # noqa: BLE001 - unreadable: load_checkpoint says so
        return None
    return _difference(old, fp) if isinstance(old, dict) else None


#: the attribute of a checkpoint whose finished run's result ``mcproton run`` refused (its outputs not written; the
#: refusal's text): the same run writes it with --resume --allow-empty, and a run of another config replaces it
#: (review 5 of 2026-12-06, F3: the corrected run was refused until the file was deleted by hand)
REFUSED_ATTR = "result_refused"


def mark_refused(path: str | Path, why: str) -> None:
    """Mark checkpoint ``path`` as holding a finished run whose result was refused (``why``); best effort."""
    import h5py

    try:
        with h5py.File(path, "a") as f:
            f.attrs[REFUSED_ATTR] = why
    except Exception:  # noqa: BLE001 - unmarked, it is kept as any finished run: delete it or --resume
        pass


def is_refused(path: str | Path) -> bool:
    """Whether checkpoint ``path`` is marked by :func:`mark_refused`."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return REFUSED_ATTR in f.attrs
    except Exception:  # noqa: BLE001
        return False


def load_checkpoint(path: str | Path, fp: dict[str, str], n_vox: int) -> list[BeamState]:
    """Read and verify a checkpoint; CheckpointError if it is damaged or belongs to another job."""
    import h5py

    from .engine import Accumulator, LET_MOMENTS

    path = Path(path)
    fix = f"delete {path} to start the run afresh"
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({exc}); {fix}") from None
    try:
        with f:
            if "fingerprint" not in f.attrs or "mcproton_checkpoint" not in f.attrs:
                raise CheckpointError(f"{path} is not an mcproton checkpoint; {fix}")
            old = json.loads(f.attrs["fingerprint"])
            if hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest() != f.attrs["fingerprint_sha"]:
                raise CheckpointError(f"checkpoint {path} is corrupt (fingerprint checksum mismatch); {fix}")
            other = _difference(old, fp)
            if other is not None:
                raise CheckpointError(f"checkpoint {path} belongs to a run with {other}; or {fix}")
            states = []
            for i in range(int(fp["n_beams"])):
                g = f[f"beam_{i:03d}"]
                acc = Accumulator(n_vox)
                stored = {k: g[k][()] for k in g if k not in LEDGER_DATASETS}
                for k in acc.sums:
                    acc.sums[k] = _dense(g, stored, f"sum_{k}", np.int64)
                acc.ledger = ledger_from_datasets(g["ledger"][()], g["ledger_hi"][()] if "ledger_hi" in g else None)
                acc.sum_x = _dense(g, stored, "sum_x", np.float64)
                acc.sum_x2 = _dense(g, stored, "sum_x2", np.float64)
                # a checkpoint written before the LETd's moments (2026-12-08): unknown, NaN (its LETd uncertainty)
                acc.let_moments = {k: _dense(g, stored, k, np.float64) if k in stored else np.full(n_vox, np.nan)
                                   for k in LET_MOMENTS}
                acc.batches = int(g.attrs["batches"])
                # a checkpoint written before batch weights existed: its batches counted alike
                acc.batch_weight_sum = float(g.attrs.get("batch_weight_sum", acc.batches))
                acc.batch_unit = int(g.attrs.get("batch_unit", 0))
                acc.primaries = int(g.attrs["primaries"])
                if any(a.shape != (n_vox,) for a in (*acc.sums.values(), acc.sum_x, acc.sum_x2,
                                                     *acc.let_moments.values())):
                    raise CheckpointError(f"checkpoint {path} has tallies of another grid size; {fix}")
                st = BeamState(acc, int(g.attrs["next_history"]), float(g.attrs["elapsed_s"]), bool(g.attrs["done"]),
                               str(g.attrs["stop_reason"]), int(g.attrs["batch_cap"]))
                if st.checksum(stored) != g.attrs["checksum"]:
                    raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch in beam {i}); {fix}")
                if acc.primaries != st.next_history:
                    raise CheckpointError(f"checkpoint {path} is inconsistent (primaries {acc.primaries} != next "
                                          f"history {st.next_history}); {fix}")
                states.append(st)
            return states
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({type(exc).__name__}: {exc}); "
                              f"{fix}") from None


def _dense(g: Any, stored: dict[str, np.ndarray], name: str, dtype: Any) -> np.ndarray:
    """One running sum of a checkpoint group as a full array (stored sparse: values at ``voxels``)."""
    values = np.asarray(stored[name], dtype)
    if "voxels" not in stored:   # whole arrays (a mostly filled grid)
        return values
    voxels = np.asarray(stored["voxels"], np.int64)
    n = int(g.attrs["n_vox"])
    if values.shape != voxels.shape or (voxels.size and (voxels.min() < 0 or voxels.max() >= n)):
        raise ValueError(f"{name}: {values.shape[0]} values for {voxels.size} voxel indices of a grid of {n}")
    out = np.zeros(n, dtype)
    out[voxels] = values
    return out


def describe(path: str | Path) -> str:
    """A one-line summary of a checkpoint (for messages); '' if unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            fp = json.loads(f.attrs["fingerprint"])
            beams = [f[k] for k in f if k.startswith("beam_")]
            done = sum(int(g.attrs["next_history"]) for g in beams)
            total = int(fp["primaries"]) * int(fp["n_beams"])
            limited = any(str(g.attrs["stop_reason"]) == "time_limit" for g in beams)
            return f"{done:,} of {total:,} primaries done" + (", stopped by the time limit" if limited else "")
    except Exception:  # noqa: BLE001
        return ""


def is_complete(path: str | Path) -> bool:
    """True if the checkpoint is readable and every beam in it is done (a finished run: ``--resume`` only
    writes the output)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            beams = [f[k] for k in f if k.startswith("beam_")]
            return bool(beams) and all(bool(g.attrs["done"]) for g in beams)
    except Exception:  # noqa: BLE001
        return False

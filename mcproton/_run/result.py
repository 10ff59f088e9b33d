"""The result of a run (``DoseResult``), made from the running sums of one beam (``finish``) or summed over
the beams of a plan (``sum_results``)."""
from __future__ import annotations

import datetime as _dt
import math
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, cast

import numpy as np

from .. import __version__
from .._kernels.layout import LEDGER, LEDGER_ENTRIES, LET_SCALE, TALLY_SCALE
from .._build import result_build_identity
from .._kernels.source import source_hash
from ..geometry import VoxelGeometry, calibration_as_made, result_copy
from .stats import batch_rel_uncertainty, let_d_rel_uncertainty, mean_uncertainty_above_half_max, weight_sum_of
from .._io.errors import McprotonRuntimeWarning, warn
from .._io.rtplan import beam_geometry

#: the keys of a plan beam's ``meta`` (mcproton/_io/rtplan.py plan_to_beams) that a result keeps in its
#: ``provenance["beam"]`` (a sum: ``provenance["summed_beams"]``): what its RT Dose holds (rtdose.dose_contents), and
#: the beam model that made its spots (name, resolved path and SHA-256 of the file: BeamModel.provenance), and the
#: spots plan_to_beams' min_mu left out (where it left out any)
PLAN_META_KEYS = ("beam_number", "fractions", "fractions_planned", "plan_beam_numbers", "plan_sop_instance_uid",
                  "beam_model", "isocentre_shift_mm", "min_mu")

#: the keys of a plan beam's ``meta`` that say what :func:`~mcproton.dicom.plan_to_beams` checked of the plan against
#: its beam model ("yes: ...", "off ...", "not possible: ..."): a result keeps them in its provenance (audit 24
#: swallow, F2: a model that names no machines was checked as "yes")
PLAN_CHECK_KEYS = ("machine_check", "spot_tune_check")

MEV_TO_J = 1.602176634e-13  # J per MeV (SI exact, CODATA 2018)
MEV_PER_G_TO_GY = MEV_TO_J * 1e3  # MeV/g -> J/kg


@dataclass(frozen=True)
class ScoredGrid:
    """A result grid held as its values at the scored voxels (0.0 everywhere else) until it is read: a beam's
    result on a patient-CT grid needs a few % of the memory of its five whole float64 grids (1.85 GB at 46 M
    voxels), and the sum of a plan's beams (sum_results) reads only these values."""

    voxels: np.ndarray          # flat indices into the grid, increasing
    values: np.ndarray          # the grid's values there
    shape: tuple[int, ...]      # (z, y, x)

    def dense(self) -> np.ndarray:
        """The whole grid: zeros with the values at the voxels (bitwise what the same formulas give on it)."""
        out = np.zeros(int(np.prod(self.shape)), self.values.dtype)
        out[self.voxels] = self.values
        return out.reshape(self.shape)

    def at(self, idx: np.ndarray) -> np.ndarray:
        """The grid's values at the increasing flat indices ``idx`` (0.0 where no voxel is scored), without the
        whole grid."""
        return at_voxels(self.voxels, idx, self.values)[0]


def at_voxels(voxels: np.ndarray, idx: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
    """Arrays given at the increasing flat indices ``voxels`` (``values``, each aligned with them), read at the
    flat indices ``idx``: their value where ``idx`` is one of ``voxels``, 0 of their dtype elsewhere (one search
    for all of them).  The lookup of ScoredGrid and of the GPU's ScoredSums."""
    if voxels.size == 0:
        return [np.zeros(np.size(idx), v.dtype) for v in values]
    pos = np.minimum(np.searchsorted(voxels, idx), voxels.size - 1)
    hit = voxels[pos] == idx
    return [np.where(hit, v[pos], v.dtype.type(0)) for v in values]


#: the array fields of a DoseResult (z, y, x), any of which may be given as a ScoredGrid
GRID_FIELDS = ("dose_gy_zyx", "dose_to_water_gy_zyx", "let_d_kev_um_zyx", "uncertainty_rel_zyx", "edep_mev_zyx",
               "let_d_uncertainty_rel_zyx")


class _Grid:
    """A DoseResult array field that may be given as a ScoredGrid: made whole (and kept) the first time it is
    read, so that code reading the field sees an ordinary array (installed on the class below)."""

    def __init__(self, name: str, default: Any) -> None:
        self.key = "_" + name
        self.default = default

    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self.default
        v = obj.__dict__[self.key]
        if isinstance(v, ScoredGrid):
            v = obj.__dict__[self.key] = v.dense()
        return v

    def __set__(self, obj: object, value: Any) -> None:
        obj.__dict__[self.key] = value


def stored_grid(result: Any, name: str) -> Any:
    """The field ``name`` of a DoseResult as stored: a ScoredGrid where it was given so and not read since,
    else the array (or None); never makes the whole grid."""
    d = getattr(result, "__dict__", {})
    return d["_" + name] if "_" + name in d else getattr(result, name)


#: the normalisation of a dose per primary proton (a beam without ``total_protons``); a sum of such results says
#: "Gy per primary (sum over beams)" (:func:`sum_results`)
PER_PRIMARY = "Gy per primary"


def is_per_primary(result: Any) -> bool:
    """Whether the dose of ``result`` (a DoseResult, or its ``normalisation`` text) is per primary proton, not
    absolute: its normalisation names "Gy per primary" ("Gy per primary", a sum's "Gy per primary (sum over
    beams)", and the "Gy (sum of 2 beams: Gy per primary ...)" that sum_results gave a sum of such sums before
    2026-12-07, which is per primary too).  The one test for every place that treats the two apart (the HDF5's
    ``unit`` attributes, write_result_rtdose, mcnamara_of_result, sum_results, the prescription check, mcproton
    check's top-up, the dose plot): before (audit 26, F2), each compared the text with "Gy per primary", so a
    per-primary sum was taken for an absolute dose (written as an RT Dose in Gy, given a McNamara RBE of 1.4-2.9)."""
    norm = result if isinstance(result, str) else getattr(result, "normalisation", "")
    return PER_PRIMARY in str(norm or "")


@dataclass
class DoseResult:
    """The result of a run.  Arrays are (z, y, x).  Dose is Gy per primary proton unless the beam gives
    ``total_protons`` (then Gy for that many protons): see ``normalisation``.  An array may be given as a
    :class:`ScoredGrid` (``finish`` does): it becomes an ordinary array when first read.

    ``study_not_stored``: "" unless the CT study of the result is unknown: the HDF5 file(s) it was loaded from
    (or summed from) were written before 2026-12-06, when the study (``geometry.study``) was not stored, so
    whether its dose was computed on a CT, and on which, is unknown.  ``save`` keeps it (the file stores no study
    and names these files), ``sum_results`` passes it on, and ``write_result_rtdose`` refuses such a result
    without ``study=``; setting ``geometry.study`` (``StudyReference.from_ct``) states the study.

    ``fractions_not_stored``: "" unless how many fractions of its plan the dose holds is unknown: the HDF5 file(s)
    it was loaded from (or summed from) hold a plan's dose (``mcproton demo``'s root attribute ``plan``, or beams of
    an RT Ion Plan, named "N:name") written before the beams recorded their ``fractions`` (in 2026-12-05; the
    run simulated one fraction unless ``plan.all_fractions``).  ``save`` and ``sum_results`` keep it as the study's,
    and ``write_result_rtdose`` (``result_dose_contents``) refuses such a result without ``contents=``, rather than
    writing its dose as the whole course (DoseSummationType PLAN); stating the fractions in the beam records
    (``provenance["beam"]``, a sum's ``provenance["summed_beams"]``: ``fractions``, ``fractions_planned``) ends
    it (compat audit of 2026-12-06, F3)."""

    dose_gy_zyx: np.ndarray
    dose_to_water_gy_zyx: np.ndarray
    let_d_kev_um_zyx: np.ndarray
    uncertainty_rel_zyx: np.ndarray
    mean_rel_uncertainty_50: float
    geometry: VoxelGeometry
    ledger: dict
    provenance: dict
    primaries: int
    wall_s: float
    protons_per_second: float
    backend: str
    device: str
    normalisation: str = PER_PRIMARY
    edep_mev_zyx: np.ndarray | None = None
    study_not_stored: str = ""
    fractions_not_stored: str = ""
    #: the LETd's own relative standard error per voxel, from the batches (stats.let_d_rel_uncertainty); 0 where
    #: no proton deposited, NaN with one batch or where not known; None for a result without it (a file written
    #: before 2026-12-08, or a sum with such a part)
    let_d_uncertainty_rel_zyx: np.ndarray | None = None

    def integrated_depth_dose(self, axis: str = "z") -> tuple[np.ndarray, np.ndarray]:
        """(depth of the voxel centres in mm from the grid's front face along ``axis``, IDD in MeV cm2/(g
        primary)): the energy deposited per unit depth per unit density summed over the plane perpendicular to
        ``axis`` ("x", "y" or "z"), comparable with the TOPAS IDDs in validation/.  Per primary proton: of the
        beam's primaries for one beam; for a :func:`sum_results` of per-primary results the sum of the beams'
        IDDs (as its dose is the sum of their doses); for a sum of absolute results the deposited energy of all
        beams per simulated primary (see :func:`sum_results`).  The depth starts at the front face of the grid
        (half a voxel at the first centre), not at the absolute coordinates of :meth:`depth_axis_mm`.

        Needs the deposited energy (``edep_mev_zyx``): a result of :func:`simulate` or one saved by
        :meth:`save` has it; an HDF5 file written by ``mcproton run`` or ``mcproton demo`` does not store it,
        and its result raises ValueError (re-run in Python and save with :meth:`save`, or use the dose)."""
        if axis not in ("x", "y", "z"):
            raise ValueError(f"integrated_depth_dose: axis must be 'x', 'y' or 'z' (lower case); got {axis!r}")
        if self.edep_mev_zyx is None:
            raise ValueError("integrated_depth_dose needs the deposited energy (edep_mev_zyx), which this result "
                             "lacks: an HDF5 file written by mcproton run or mcproton demo does not store it (nor "
                             "does one written before format version 1); re-run the beam with mcproton.simulate "
                             "and save it with DoseResult.save, or use the dose (dose_gy_zyx) instead")
        g = self.geometry
        k = "xyz".index(axis)
        ax = 2 - k
        edep = self.edep_mev_zyx
        rho = g.density_g_cm3_zyx.astype(np.float64)
        d_cm = g.voxel_size_mm[k] / 10.0
        with np.errstate(divide="ignore", invalid="ignore"):
            per_rho = np.where(rho > 0, edep / rho, 0.0)
        other = tuple(i for i in range(3) if i != ax)
        idd = per_rho.sum(axis=other) / d_cm  # edep_mev_zyx is already per primary
        depth_mm = g.axis_mm(axis) - (g.origin_mm[k] - g.voxel_size_mm[k] / 2)  # from the grid's front face
        return depth_mm, idd

    def depth_axis_mm(self, axis: str = "z") -> np.ndarray:
        """The absolute coordinates (mm) of the voxel centres along ``axis`` ("x", "y" or "z"): the grid's
        ``origin_mm`` plus whole voxels (``geometry.axis_mm``).  Unlike the depth of
        :meth:`integrated_depth_dose`, which is measured from the grid's front face, these start at the origin
        (with ``origin_mm`` z = 100.5 and 1 mm voxels: 100.5, 101.5, ... here, 0.5, 1.5, ... there)."""
        if axis not in ("x", "y", "z"):
            raise ValueError(f"depth_axis_mm: axis must be 'x', 'y' or 'z' (lower case); got {axis!r}")
        return self.geometry.axis_mm(axis)

    def save(self, path: str | Path) -> Path:
        """Write the result to the HDF5 file ``path`` (atomically: complete or not at all) in the versioned
        layout ``mcproton-dose/1`` (README "Output (HDF5)", mcproton/_io/hdf5.py), with the geometry's full
        material definitions and the deposited energy, so that :meth:`load` gives the result back."""
        from .._io.hdf5 import write_result_hdf5

        return write_result_hdf5(self, path, edep=True)

    @classmethod
    def load(cls, path: str | Path) -> "DoseResult":
        """The result saved in ``path`` by :meth:`save` (or written by ``mcproton run``): the dose, dose to
        water, LET_d and uncertainty arrays, the deposited energy where the file holds it, the geometry (voxel
        size, origin, densities, materials, labels), normalisation, ledger and provenance.  Dose, dose to water
        and deposited energy come back bitwise (dose to water: from files written since 2026-12-07, float32 before);
        LET_d and uncertainty are stored (and come back) as float32.  Where the file holds them, ``dose_raw`` and
        ``body_mask`` come back in ``extra_datasets`` (written again by :meth:`save`).

        The deposited energy (dataset ``edep_mev_per_primary``) is written by :meth:`save` only: from a file of
        ``mcproton run`` or ``mcproton demo``, ``edep_mev_zyx`` is None and ``integrated_depth_dose`` raises
        ValueError.

        A file that is not HDF5, a truncated or damaged HDF5 (an interrupted copy), one not written by mcproton, or
        of an unknown format version (a newer mcproton) raises ``mcproton._io.hdf5.DoseFileError`` (a
        ``ValueError``), as do mcproton's other files, each named with what to do: a run's checkpoint
        (``<out>.ckpt.h5``: run the command again with ``--resume`` to write its result) and a phantom file (read
        it with ``mcproton.phantoms.read_phantom_hdf5``).  A file written before the format had a
        version is read as version 0 with a warning: it lacks the deposited energy, primaries, wall time and
        backend (taken from the provenance) and the definitions of materials that are not in the database
        (placeholders by name, not for transport)."""
        from .._io.hdf5 import load_result

        return load_result(path)


# the array fields read through _Grid (the dataclass's __init__ assigns them, so through _Grid.__set__ too)
for _name in GRID_FIELDS:
    setattr(DoseResult, _name, _Grid(_name, getattr(DoseResult, _name, None)))


def scored_voxels(acc: Any) -> Any:
    """Flat indices of the voxels where any running sum is non-zero (every result array is 0 elsewhere): of an
    Accumulator; of a ScoredSums, its voxels; of a DeviceAccumulator, computed on the device by the same
    expressions (its ``xp``), a device array (a -0.0 float sum is not scored, a NaN one is, as on the host)."""
    if isinstance(getattr(acc, "voxels", None), np.ndarray):   # a ScoredSums: made of exactly these voxels
        return acc.voxels
    xp = getattr(acc, "xp", np)
    used = acc.sum_x != 0
    for v in (*acc.sums.values(), acc.sum_x2):
        used |= v != 0
    return xp.flatnonzero(used)


def plan_dose_note(meta: dict) -> str:
    """What the dose of an RT Ion Plan's beam (``meta`` of :func:`mcproton.dicom.plan_to_beams`) is, for its
    ``normalisation``: "1 of 17 planned fractions; physical dose, no RBE"; "" for another beam.  A plan's
    prescription is per course or per fraction and in Gy(RBE): without it a scenario's D95 of 1.6 Gy was compared
    with 1.8 Gy(RBE) per fraction or 30.6 Gy(RBE) per course (robustness audit 2026-12-06, F4)."""
    if meta.get("fractions") is None:
        return ""
    fx = int(meta.get("fractions") or 1)
    planned = int(meta.get("fractions_planned") or fx)
    return f"{fx} of {planned} planned fractions; physical dose, no RBE"


#: a plan beam's normalisation: "Gy for N protons" and, in brackets, what the dose is (plan_dose_note)
_PLAN_NORM = re.compile(r"^(Gy for \S+ protons) \((.*)\)$")


def _summed_normalisation(results: list[DoseResult]) -> str:
    """The normalisation of a sum of absolute results: each beam's, and what the dose is once where every beam says
    the same ("Gy (sum of 2 beams: Gy for 1e9 protons; Gy for 2e9 protons; 1 of 17 planned fractions; physical
    dose, no RBE)")."""
    parts = [_PLAN_NORM.match(r.normalisation) for r in results]
    notes = {m.group(2) for m in parts if m is not None}
    if len(notes) == 1 and all(parts):
        return (f"Gy (sum of {len(results)} beams: " + "; ".join(m.group(1) for m in parts if m is not None)
                + f"; {notes.pop()})")
    return f"Gy (sum of {len(results)} beams: " + "; ".join(r.normalisation for r in results) + ")"


def finish(sim: Any, acc: Any, wall_s: float, voxels: np.ndarray | None = None) -> DoseResult:
    """The result of the running sums ``acc`` (an Accumulator, or a ScoredSums: the sums at the scored voxels
    only, as a GPU beam copies them back) of the Simulation ``sim``.  Computed on the
    scored voxels only (``voxels``: scored_voxels(acc), computed here if not given; on a patient-CT grid a
    fraction of the voxels) and held as ScoredGrids: read, each is the zero grid with these values at the
    voxels, bitwise what the same formulas give on the whole grid.  sum_results adds the beams of a plan at
    the voxels, without their whole grids."""
    g = sim.geometry
    shape = g.shape_zyx
    n = acc.primaries
    idx = scored_voxels(acc) if voxels is None else voxels

    def full(values: np.ndarray) -> Any:   # a ScoredGrid, read as the whole float64 grid (DoseResult)
        return ScoredGrid(idx, np.asarray(values, np.float64), tuple(shape))

    # computed in chunks of voxels (_CHUNK_VOXELS), each float64 operation per voxel as on the whole array (so
    # bitwise the same), into the five result arrays: before, the sums and about 20 float64 temporaries at every
    # voxel with dose at once peaked a run at ~160 bytes per voxel with dose over the tallies and sums (1.9 x the
    # memory estimate on a broad field: audit 25 memory)
    from .engine import exact_ledger, exact_sum

    nv = int(np.size(idx))
    dose, dose_w, let_d, unc, edep, let_unc = (np.empty(nv, np.float64) for _ in range(6))
    scored = getattr(acc, "voxels", None)
    whole = acc.at(idx) if isinstance(scored, np.ndarray) and (idx is scored or np.array_equal(idx, scored)) \
        else None   # a ScoredSums read at its own voxels: the stored arrays themselves, sliced below
    B = acc.batches
    w_sum = weight_sum_of(acc)
    deposited = 0
    density = g.density_g_cm3_zyx.reshape(-1)
    for i0 in range(0, nv, _CHUNK_VOXELS):
        c = slice(i0, min(i0 + _CHUNK_VOXELS, nv))
        sv = {k: v[c] for k, v in whole.items()} if whole is not None else acc.at(idx[c])
        rho = density[idx[c]].astype(np.float64)
        mass_g = rho * g.voxel_volume_cm3
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_mass = np.where(mass_g > 0, 1.0 / mass_g, 0.0)
            ed = sv["edep"] / TALLY_SCALE
            dose[c] = ed * inv_mass * MEV_PER_G_TO_GY / n
            dose_w[c] = sv["edep_water"] / TALLY_SCALE * inv_mass * MEV_PER_G_TO_GY / n
            ep = sv["edep_proton"] / TALLY_SCALE
            # the kernel tallies deposit x mass stopping power (MeV cm2/g, params.h MCP_LET_SCALE): x 0.1 rho for
            # keV/um
            let_d[c] = np.where(ep > 0, sv["let_num"] / LET_SCALE / np.where(ep > 0, ep, 1) * (0.1 * rho), 0.0)
            sx = sv["sum_x"]
            if B < 2:  # one batch (batch_size >= primaries, an early stop): no uncertainty estimate, not 0
                unc[c] = np.where(sx > 0, np.nan, 0.0)
            else:
                unc[c] = batch_rel_uncertainty(sx, sv["sum_x2"], B, w_sum)
            if B < 2:
                let_unc[c] = np.where(sv["let_num"] > 0, np.nan, 0.0)
            else:
                let_unc[c] = let_d_rel_uncertainty(sv["let_num"], sv["edep_proton"], n, sv["let_nn"], sv["let_ne"],
                                                   sv["let_ee"], B, w_sum)
            edep[c] = ed / n
        deposited += exact_sum(sv["edep"])
    scale = 1.0
    norm = PER_PRIMARY
    if sim.beam.total_protons:
        scale = float(sim.beam.total_protons)
        norm = f"Gy for {scale:.6g} protons"
        note = plan_dose_note(sim.beam.meta or {})
        if note:
            norm += f" ({note})"
    mean_unc = mean_uncertainty_above_half_max(dose, unc, density[idx])
    if scale != 1.0:
        dose *= scale   # in place: bitwise dose * scale, without a second array
        dose_w *= scale
    # every ledger entry of kernels/params.h (MCP_LEDGER_ENTRIES): energies in MeV, counts as integers; the
    # kernel leaves "deposited" at 0, it is the sum of the dose tally (exact_sum, per chunk above).  Both in Python
    # ints: an int64 sum wraps above 5.5e11 MeV (2.4e9 primaries at 230 MeV), and the wrapped ledger refused a
    # correct run (scale audit 19, F2)
    ledger = exact_ledger(acc.ledger)
    ledger[LEDGER["deposited"]] = deposited
    led = {e.name: int(ledger[e.index]) if e.kind == "count" else float(ledger[e.index]) / TALLY_SCALE
           for e in LEDGER_ENTRIES}
    e_in = sum(led[e.name] for e in LEDGER_ENTRIES if e.kind == "energy_in")
    out_e = sum(led[e.name] for e in LEDGER_ENTRIES if e.kind == "energy_out")
    led["imbalance_rel"] = (e_in - out_e) / e_in if e_in > 0 else 0.0
    pps = n / wall_s if wall_s > 0 else float("nan")
    b = sim.backend
    slabs = list({(r.id, r.material if isinstance(r.material, str) else id(r.material), r.thickness_mm): r
                  for r in (s.range_shifter for s in sim.beam.spots) if r is not None}.values())
    prov = {
        "package": "mcproton", "version": __version__,
        "kernel_hash": source_hash("transport.cu"),
        # the build (version, kernel source, physics data files: mcproton/_build.py), which sum_results compares,
        # and the code's SHA-256 (every Python and kernel source), as the RT Dose's SoftwareVersions names it: the
        # Python that makes the spots changes the dose without changing the three others (audit 25 provenance, F5)
        "build": dict(result_build_identity()),
        "compile_options": " ".join(b.compile_options), "compiler": b.compiler,
        "backend": b.name, "device": b.device,
        "seed": sim.settings.seed, "beam_index": sim.beam_index, "primaries": n, "batches": acc.batches,
        # run.batch_size as set (None: the primaries split into run.batches, or a hundredth of them with a target
        # uncertainty or a time limit): with the batches, what the uncertainty is made of (audit 25 provenance, F7);
        # each part of a resumed run's batches in "segments" (mcproton/_run/job.py)
        "batch_size": None if sim.settings.batch_size is None else int(sim.settings.batch_size),
        "physics": asdict(sim.settings.physics),
        "tables": sim.tables.meta,
        "materials": [m.name for m in g.materials],
        # IMAGE, or IMAGE + ROI_OVERRIDE where a structure set's overrides changed the CT (its RT Dose says the same)
        "tissue_heterogeneity": list(getattr(g, "tissue_heterogeneity", ("IMAGE",))),
        # which overrides those were (ROI, material, density, how chosen, voxels), where a structure set was applied
        **({"struct_overrides_applied": list(g.struct_overrides)} if getattr(g, "struct_overrides", None) is not None
           else {}),
        # each distinct shifter once (a planned field's spots each carry a slab of their own, with one material);
        # a sum of beams: every beam's (sum_results), and each beam's own in its summed_beams item
        "range_shifters": sorted({f"{r.id or '?'}: {r.material_name} {r.thickness_mm:.2f} mm" for r in slabs}),
        "range_shifter_model": sim.beam.meta.get("range_shifter_model", "transport"),
        # with the beam's plan keys (an RT Ion Plan's), from which write_result_rtdose tells what the dose holds, and
        # where a plan's beam points (angles, position, isocentre, direction, its shifters: rtplan.beam_geometry)
        "beam": {"name": sim.beam.name, "spots": len(sim.beam.spots),
                 "total_protons": sim.beam.total_protons,
                 **{k: sim.beam.meta[k] for k in PLAN_META_KEYS if k in (sim.beam.meta or {})},
                 "range_shifters": [{"id": r.id, "material": r.material_name, "thickness_mm": round(r.thickness_mm, 3)}
                                    for r in slabs],
                 **beam_geometry(sim.beam.meta)},
        "wall_s": wall_s, "protons_per_second": pps,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "python": platform.python_version(), "numpy": np.__version__,
        "normalisation": norm,
        # the refusals passed (simulate's allow=, mcproton run's plan.allow_*): [] for none, so that a file without
        # the key (an older mcproton's) is told apart: its overrides are unknown (write_result_rtdose, sum_results)
        "overrides": [],
    }
    cal = calibration_as_made(g)
    if cal:   # a CT's grid: the calibration that made it, by its data too (a scaled built-in says "modified"), and
        # whether its densities are still the calibration's (a dataclasses.replace scenario: review A, F3)
        said = [w for w, on in (("modified", cal.get("modified")),
                                ("densities changed after", cal.get("densities_changed_after"))) if on]
        prov["calibration"] = f"{cal['name']} ({', '.join(said)})" if said else cal["name"]
        prov["calibration_data_sha256"] = cal.get("data_sha256")
        prov["calibration_record"] = dict(cal)
        if cal.get("ct_acquisition"):   # the CT's KVP, scanner and kernel (a calibration belongs to one of each)
            prov["ct_acquisition"] = dict(cal["ct_acquisition"])
        if cal.get("kvp_comparison"):   # the CT's KVP against the calibration's stated kVp (match None: unknown)
            prov["ct_kvp_vs_calibration"] = dict(cal["kvp_comparison"])
    if (sim.beam.meta or {}).get("beam_model"):   # a plan's beam: the model that made its spots (also in "beam")
        prov["beam_model"] = sim.beam.meta["beam_model"]
    for key in PLAN_CHECK_KEYS:   # what plan_to_beams could check of the plan against that model
        if (sim.beam.meta or {}).get(key):
            prov[key] = sim.beam.meta[key]
    if led["errors"]:
        warn(f"{led['errors']} track(s) stopped on a numerical error (step limit); their energy was "
             "deposited locally. Please report this with the input.", McprotonRuntimeWarning, stacklevel=2)
    return DoseResult(
        dose_gy_zyx=full(dose), dose_to_water_gy_zyx=full(dose_w),
        let_d_kev_um_zyx=full(let_d), uncertainty_rel_zyx=full(unc),
        mean_rel_uncertainty_50=mean_unc, geometry=result_copy(g), ledger=led, provenance=prov, primaries=n,
        wall_s=wall_s, protons_per_second=pps, backend=b.name, device=b.device, normalisation=norm,
        edep_mev_zyx=full(edep), let_d_uncertainty_rel_zyx=full(let_unc))


def _per_beam(prov: dict, key: str, own: Any, n_beams: int) -> list:
    """A sum's list ``prov[key]`` (one item per beam record: ``summed_beam_indices``, ``summed_beam_seeds``,
    ``summed_primaries``) where it has one item per beam record, else ``own`` for each of the ``n_beams``."""
    said = prov.get(key)
    if "summed_beams" in prov and isinstance(said, list) and len(said) == n_beams:
        return list(said)
    return [own] * n_beams


def _beam_streams(r: DoseResult) -> list[tuple | None]:
    """The random stream (seed, beam index) of each beam record of ``r`` (:func:`mcproton._io.hdf5.beam_records`):
    of one beam, its ``seed`` and ``beam_index``; of a sum, each beam's (``summed_beam_seeds``: a sum of one run's
    beams, its ``seed``; ``summed_beam_indices``).  None where unknown (a result saved before the beam index was
    recorded), taken as independent of every other."""
    seeds, indices = _beam_seeds_and_indices(r.provenance or {})
    return [None if s is None or i is None else (s, i) for s, i in zip(seeds, indices)]


def _beam_seeds_and_indices(p: dict) -> tuple[list, list]:
    """The seed and the beam index of each beam record of the provenance ``p`` (None where not recorded; a sum's
    seed where all its parts share one, ``seed``, is each beam's)."""
    from .._io.hdf5 import beam_records

    from .builds import RUNS_DIFFER

    n = len(beam_records(p))
    seed = p.get("seed") if p.get("seed") != RUNS_DIFFER else None
    return (_per_beam(p, "summed_beam_seeds", seed, n), _per_beam(p, "summed_beam_indices", p.get("beam_index"), n))


def _stream_groups(results: list[DoseResult]) -> list[list[DoseResult]]:
    """The results grouped by random stream: results that hold a beam of one stream (seed, beam index) in common
    (a sum's every beam compared: a plan's run and a run of one of its beams share that beam's stream) are one
    group; a result of unknown streams is its own group.  Results of different streams are independent: their
    absolute standard errors add in quadrature.  Results of one stream (the same random numbers) are correlated,
    up to fully for the same beam: their standard errors add linearly (the upper bound), with a warning.  Before
    (audit 26, F1), a sum was of unknown stream, so a beam in two parts was added in quadrature, silently."""
    streams = [{s for s in _beam_streams(r) if s is not None} for r in results]
    group_of = list(range(len(results)))   # each result's group: the lowest result it shares a stream with

    def root(k: int) -> int:
        while group_of[k] != k:
            k = group_of[k]
        return k

    shared: dict[tuple, None] = {}
    for k in range(len(results)):
        for j in range(k):
            common = streams[k] & streams[j]
            if common:
                shared.update(dict.fromkeys(sorted(common, key=str)))
                a, b = root(k), root(j)
                group_of[max(a, b)] = min(a, b)
    groups: dict[int, list[DoseResult]] = {}
    for k, r in enumerate(results):
        groups.setdefault(root(k), []).append(r)
    if shared:
        n = sum(len(g) for g in groups.values() if len(g) > 1)
        warn(f"sum_results: {n} results share their random numbers ((seed, beam index): "
             f"{', '.join(map(str, shared))}), so their statistical errors are correlated and "
             "cannot be added in quadrature; their standard errors are added linearly (an upper "
             "bound). Give each beam its own stream: simulate(..., beam_index=i) for beam i, as "
             "mcproton run does (its runs of one beam each, plan.beams = [N], all ran on stream 0 before "
             "2026-12-06: run those again); a beam in two of the results (a plan's run and a run of one of its "
             "beams) is added twice.",
             McprotonRuntimeWarning, stacklevel=3)
    return list(groups.values())


# voxels per chunk of sum_results: its temporaries stay a few MB (cache-sized) instead of whole-grid arrays
_CHUNK_VOXELS = 1 << 18


def _nonzero_bits(a: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(a).reshape(-1)
    return flat.view(np.dtype(f"u{flat.dtype.itemsize}")) != 0


def _summed_voxels(results: list[DoseResult], nv: int) -> np.ndarray:
    """Flat indices of the voxels where any result's dose, dose to water or deposited energy has a non-zero
    bit pattern (so -0.0 and NaN count): everywhere else every summed array is +0.0, as the whole-grid
    formulas give (the uncertainty and LET_d are 0 where the summed dose is not > 0).  A ScoredGrid counts
    its values only (it is +0.0 elsewhere)."""
    used = np.zeros(nv, bool)
    for r in results:
        for name in ("dose_gy_zyx", "dose_to_water_gy_zyx", "edep_mev_zyx"):
            a = stored_grid(r, name)
            if isinstance(a, ScoredGrid):
                used[a.voxels[_nonzero_bits(a.values)]] = True
            elif a is not None:
                used |= _nonzero_bits(a)
    return np.flatnonzero(used)


def _sum_voxels(results: list[DoseResult], groups: list[list[DoseResult]], idx: np.ndarray,
                out: dict[str, np.ndarray], n: int, per_primary: bool) -> None:
    """The summed arrays at the flat voxel indices ``idx`` into the flat arrays ``out``: per voxel the same
    float64 operations in the same order as on the whole grid (so bitwise the whole-grid result).  The deposited
    energy: the sum of the beams' (``per_primary``), else the mean per simulated primary of all beams
    (:func:`sum_results`)."""
    def at(r: DoseResult, name: str) -> np.ndarray:
        a = stored_grid(r, name)
        return a.at(idx) if isinstance(a, ScoredGrid) else cast(np.ndarray, a).reshape(-1)[idx]

    def total(term: Callable[[DoseResult], np.ndarray]) -> np.ndarray:
        # beam by beam into one array, the same additions in the same order as np.sum(..., axis=0)
        acc = np.array(term(results[0]), dtype=np.float64)
        for r in results[1:]:
            acc += term(r)
        return acc

    doses = {id(r): at(r, "dose_gy_zyx") for r in results}
    dose = total(lambda r: doses[id(r)])
    out["dose"][idx] = dose
    out["dose_w"][idx] = total(lambda r: at(r, "dose_to_water_gy_zyx"))
    # the variance (Gy^2) of the summed dose: standard errors add linearly within a stream, in quadrature
    # between streams (_stream_groups)
    var = np.zeros(dose.shape, np.float64)
    for grp in groups:
        sigma = np.array(at(grp[0], "uncertainty_rel_zyx") * doses[id(grp[0])], dtype=np.float64)
        for r in grp[1:]:
            sigma += at(r, "uncertainty_rel_zyx") * doses[id(r)]
        var += sigma ** 2
    wlet = total(lambda r: at(r, "let_d_kev_um_zyx") * doses[id(r)])
    pos = dose > 0
    safe = np.where(pos, dose, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["unc"][idx] = np.where(pos, np.sqrt(var) / safe, 0.0)
        out["let_d"][idx] = np.where(pos, wlet / safe, 0.0)
        if "let_unc" in out:
            out["let_unc"][idx] = _summed_let_d_uncertainty(groups, lambda r, name: at(r, name), doses,
                                                            out["let_d"][idx], wlet)
    if "edep" in out and per_primary:
        out["edep"][idx] = total(lambda r: at(r, "edep_mev_zyx"))
    elif "edep" in out:
        out["edep"][idx] = total(lambda r: at(r, "edep_mev_zyx") * r.primaries) / n


def _summed_let_d_uncertainty(groups: list[list[DoseResult]], at: Callable[[DoseResult, str], np.ndarray],
                              doses: dict[int, np.ndarray], let_d: np.ndarray, wlet: np.ndarray) -> np.ndarray:
    """The relative standard error of the summed LETd L = sum_i D_i L_i / D (D = sum_i D_i) at the voxels, from each
    beam's dose D_i, LETd L_i and their relative standard errors: by the delta method, the beam's share of the
    error of L is (D_i sigma(L_i) + (L_i - L) sigma(D_i) x sign) / D, with the covariance of L_i and D_i unknown
    (the result keeps the standard errors, not the batches), taken at its largest (|correlation| = 1, Cauchy-Schwarz):
    D_i sigma(L_i) + |L_i - L| sigma(D_i).  An upper bound, exact for a voxel of one beam (L_i = L); shares add
    in quadrature between independent streams and linearly within one, as the dose's (:func:`_stream_groups`).
    0 where the summed LETd is 0."""
    var = np.zeros(let_d.shape, np.float64)
    for grp in groups:
        share = np.zeros(let_d.shape, np.float64)
        for r in grp:
            d_i = doses[id(r)]
            l_i = at(r, "let_d_kev_um_zyx")
            share += (d_i * l_i * at(r, "let_d_uncertainty_rel_zyx")
                      + np.abs(l_i - let_d) * d_i * at(r, "uncertainty_rel_zyx"))
        var += share ** 2
    pos = wlet > 0
    return np.where(pos, np.sqrt(var) / np.where(pos, wlet, 1.0), 0.0)


def _refuse_other_plans(results: list[DoseResult]) -> None:
    """Refuse (:class:`~mcproton.config.ConfigError`) results whose beams are not of one RT Ion Plan holding the same
    fractions of it (:func:`mcproton._io.hdf5.plan_record_differences` over every beam of every result: fractions
    held, fractions planned, the plan's SOP Instance UID and beam numbers), naming the results, their beams and
    values.  A sum has one label of fractions: its HDF5's ``fractions`` / ``fractions_planned``, its RT Dose's plan,
    fraction count and scale, the dose per fraction of ``mcproton.rbe.mcnamara_of_result``.  Before (audit 26
    interact, F1) a beam of a 5-fraction boost plan summed with a beam of a 17-fraction plan was labelled "1 of 17
    planned fractions" and written x 17 into the RT Dose, and a run of one fraction summed with runs of all 17
    (``plan.all_fractions``) was labelled "one fraction", without a word."""
    from .._io.hdf5 import beam_records, plan_record_differences

    records: list[dict] = []
    names: list[str] = []
    for k, r in enumerate(results, start=1):
        for b in beam_records(r.provenance or {}):
            records.append(b)
            names.append(f"result {k}" + (f" (beam {b['name']!r})" if b.get("name") else ""))
    said = plan_record_differences(records, names)
    if said:
        from ..config import ConfigError

        raise ConfigError(
            f"sum_results: the results are not beams of one RT Ion Plan holding the same fractions of it ({said}). "
            "A sum has one plan and one number of fractions (its HDF5's fractions, its RT Dose's plan and scale, the "
            "McNamara RBE's dose per fraction): sum the beams of one plan, each run for the same fractions (all one "
            "fraction, mcproton run's default, or all of them: plan.all_fractions = true, plan_to_beams(..., "
            "all_fractions=True)).  A sum of two plans (an initial plan and a boost) is not made here: write each "
            "plan's RT Dose (its whole course: mcproton run --rtdose) and add them where plan sums are made (the "
            "planning system).  A result whose beam record does not say how many fractions it holds (a file of an "
            "mcproton before 2026-12-05): state them where known, result.provenance[\"beam\"].update(fractions=1, "
            "fractions_planned=N)")


def _body_mask_of(r: DoseResult) -> tuple[np.ndarray, str] | None:
    """(mask, what it is) of the body outline applied to ``r`` (:func:`mcproton.body.apply_body_outline`: its
    ``body_outline``; of a loaded result, its ``extra_datasets["body_mask"]``), None for none."""
    outline = getattr(r, "body_outline", None)
    if outline is not None:
        return np.asarray(outline.mask, bool), str(outline.source)
    stored = (getattr(r, "extra_datasets", None) or {}).get("body_mask")
    if stored is not None:
        return np.asarray(stored[0]).astype(bool), str((stored[1] or {}).get("outline", ""))
    return None


def _raw_dose_of(r: DoseResult) -> np.ndarray | None:
    """The dose of ``r`` as computed, before its body outline (``dose_raw_gy_zyx``; loaded: ``extra_datasets``)."""
    raw = getattr(r, "dose_raw_gy_zyx", None)
    if raw is None:
        raw = ((getattr(r, "extra_datasets", None) or {}).get("dose_raw") or (None,))[0]
    return raw


def _sum_body_outline(total: DoseResult, results: list[DoseResult]) -> None:
    """Give the sum ``total`` the body outline its parts share (the same mask, said the same way): its ``body_mask``
    and ``dose_raw`` (``extra_datasets``, written by ``save``; ``dose_raw``: inside the mask the summed dose rounded
    to float32, as :func:`mcproton.body.apply_body_outline` keeps it, outside the sum of the parts' ``dose_raw``), its
    ``body_outline`` where every part holds one in memory, and ``provenance["body_outline"]``.  Parts whose outlines
    differ (or some with one and some without) are summed with a warning: each part's dose is 0 outside its own
    outline, the sum keeps none, and its ``provenance["body_outline"]`` names each part's.  Before (audit 26
    interact, F4) the sum kept no mask and no raw dose, and result 1's ``body_outline`` text."""
    from ..body import BodyOutline, keep_outline_datasets

    masks = [_body_mask_of(r) for r in results]
    said = [r.provenance.get("body_outline") for r in results]
    if all(m is None for m in masks) and len({str(t) for t in said}) == 1:
        return   # no outline: the parts' record of why (the same for all), kept from result 1's provenance
    first = masks[0]
    if first is None or not all(m is not None and m[1] == first[1] and np.array_equal(m[0], first[0])
                                for m in masks[1:]):
        parts = "; ".join(f"result {k}: {'none' if m is None else m[1]}" for k, m in enumerate(masks, start=1))
        text = f"differ: each part's dose is 0 outside its own outline ({parts}); the sum keeps none"
        total.provenance["body_outline"] = text
        warn(f"sum_results: the results' body outlines {text}, so its dose is 0 outside no one outline; sum results "
             "of one outline (as the beams of one mcproton run)", McprotonRuntimeWarning, stacklevel=3)
        return
    mask, source = first
    raws = [raw for r in results if (raw := _raw_dose_of(r)) is not None and np.shape(raw) == mask.shape]
    out: Any = total   # the attributes apply_body_outline gives a result
    summed = None
    if len(raws) == len(results):
        dose = total.dose_gy_zyx
        summed = np.empty(mask.shape, np.float32)
        for z in range(mask.shape[0]):   # slice by slice: no whole-grid float64 temporary
            acc = np.array(raws[0][z], np.float64)
            for raw in raws[1:]:
                acc += raw[z]
            summed[z] = np.where(mask[z], np.asarray(dose[z], np.float32), acc.astype(np.float32))
        out.dose_raw_gy_zyx = summed
    keep_outline_datasets(total, mask, source, summed)
    kinds = {str(k) for r in results if (k := getattr(getattr(r, "body_outline", None), "kind", None))}
    if len(kinds) == 1 and all(getattr(r, "body_outline", None) is not None for r in results):
        out.body_outline = BodyOutline(mask, source, kinds.pop())
    total.provenance["body_outline"] = source


def _summed_beam_lists(results: list[DoseResult]) -> dict[str, list]:
    """A sum's record of its beams, one item per beam of every part (a part that is itself a sum gives each of its
    beams): ``summed_beams`` (their records: :func:`mcproton._io.hdf5.beam_records`), ``summed_primaries``,
    ``summed_beam_indices`` and ``summed_beam_seeds`` (their random streams: :func:`_beam_streams`).  Before (audit
    26, F1), a part that was a sum gave one empty record: its beams' fractions, numbers and plan were lost, and the
    RT Dose of the sum of a plan's beams run in two jobs held one fraction labelled as the whole course."""
    from .._io.hdf5 import beam_records

    out: dict[str, list] = {"summed_beams": [], "summed_primaries": [], "summed_beam_indices": [],
                            "summed_beam_seeds": []}
    for r in results:
        p = r.provenance or {}
        beams = [dict(b) for b in beam_records(p)]
        seeds, indices = _beam_seeds_and_indices(p)
        out["summed_beams"] += beams
        out["summed_primaries"] += _per_beam(p, "summed_primaries", r.primaries, len(beams))
        out["summed_beam_indices"] += indices
        out["summed_beam_seeds"] += seeds
    return out


def early_stop_note(result: Any) -> str | None:
    """What a reader of the dose must know when the run did not do what was asked (the long-runs audit, F6/F7: an
    RT Dose of a run stopped at 15 % of its primaries looked like a complete one): "stopped by the time limit:
    30,000 of 200,000 primaries (15 %)", "target uncertainty 1 % not reached (2.3 %)"; None when the run did its
    primaries or reached its target, or its provenance does not say (a result not made by a run)."""
    prov = getattr(result, "provenance", None) or {}
    requested = prov.get("primaries_requested")
    reason = str(prov.get("stop_reason") or "")
    done = int(getattr(result, "primaries", 0) or 0)
    notes = []
    if requested and done < int(requested) and reason != "target_uncertainty":
        why = {"time_limit": "by the time limit", "primaries": "early",
               "tally_limit": "at the 64-bit limit of a voxel's tally"}.get(reason, f"early ({reason})"
                                                                           if reason else "early")
        notes.append(f"stopped {why}: {done:,} of {int(requested):,} primaries ({100 * done / int(requested):.3g} %)")
    target = prov.get("target_uncertainty")
    if target is not None and prov.get("target_reached") is False:
        unc = float(getattr(result, "mean_rel_uncertainty_50", float("nan")))
        now = f"{100 * unc:.3g} %" if math.isfinite(unc) else "no estimate"
        notes.append(f"target uncertainty {100 * float(target):.3g} % not reached ({now})")
    return "; ".join(notes) or None


def combined_stop_reason(results: Any) -> str:
    """Why the beams of a sum stopped: the reason all share ("primaries", "time_limit", ...), else each beam's
    ("beam 1: primaries; beam 2: time_limit")."""
    reasons = [str(r.provenance.get("stop_reason") or "") for r in results]
    if len(set(reasons)) == 1:
        return reasons[0]
    return "; ".join(f"beam {k}: {why or 'unknown'}" for k, why in enumerate(reasons, start=1))


def _material_keys(g: VoxelGeometry) -> list[tuple]:
    """What makes each of the geometry's materials the material it is (not its citation): to compare two grids'
    materials whatever the order of their lists."""
    return [(m.name, float(m.density_g_cm3), tuple(sorted(dict(m.mass_fractions).items())), m.i_value_ev)
            for m in g.materials]


def phantom_differences(g: VoxelGeometry, h: VoxelGeometry) -> list[str]:
    """How the phantom of ``h`` differs from that of ``g`` on the same grid (shape, voxel size and origin equal):
    its densities and the material of each voxel; [] for the same phantom.  The densities are compared exactly
    (both are the float32 the kernel reads, also after DoseResult.save/load)."""
    if h is g:
        return []
    out = []
    rg, rh = g.density_g_cm3_zyx, h.density_g_cm3_zyx
    if rg is not rh and not np.array_equal(rg, rh):
        n = int(np.count_nonzero(rg != rh))
        dmax = float(np.max(np.abs(rg.astype(np.float64) - rh.astype(np.float64))))
        out.append(f"the density of {n:,} voxel(s) (by up to {dmax:.3g} g/cm3)")
    kg, kh = _material_keys(g), _material_keys(h)
    mg, mh = g.material_index_zyx, h.material_index_zyx
    if kg == kh:
        same = mg is mh or np.array_equal(mg, mh)
        n = 0 if same else int(np.count_nonzero(mg != mh))
    else:   # other lists: the material each voxel holds, each list mapped to one numbering of the materials
        ids: dict[tuple, int] = {}
        cg = np.array([ids.setdefault(k, len(ids)) for k in kg], np.int64)
        ch = np.array([ids.setdefault(k, len(ids)) for k in kh], np.int64)
        n = int(np.count_nonzero(cg[mg] != ch[mh]))
    if n:
        names_g = sorted({m.name for m in g.materials})
        names_h = sorted({m.name for m in h.materials})
        also = f" ({', '.join(names_h)} against {', '.join(names_g)})" if names_g != names_h else ""
        out.append(f"the material of {n:,} voxel(s){also}")
    return out


def _as_results(results: Any) -> list[DoseResult]:
    """``results`` as a list of DoseResults (a tuple or a generator too); anything else refused, naming it."""
    if results is None or isinstance(results, (DoseResult, str, bytes, dict)) or not hasattr(results, "__iter__"):
        what = "a DoseResult: give [result]" if isinstance(results, DoseResult) else f"a {type(results).__name__}"
        raise ValueError(f"sum_results takes a list of DoseResults (of simulate or DoseResult.load); got {what}")
    out = list(results)
    for k, r in enumerate(out, start=1):
        if not isinstance(r, DoseResult):
            raise ValueError(f"sum_results: result {k} is a {type(r).__name__}, not a DoseResult (of simulate or "
                             "DoseResult.load)")
    return out


def _study_text(study: Any) -> str:
    """A result's CT study in words, for a warning: its patient and frame of reference, or "no CT"."""
    if study is None:
        return "no CT (a phantom)"
    return f"patient {study.patient_id or '(none)'!r}, frame of reference {study.frame_of_reference_uid or '(none)'}"


def _summed_study(results: list[DoseResult]) -> tuple[VoxelGeometry, str]:
    """The geometry of the sum of ``results`` (on one grid) and its ``study_not_stored``: result 1's geometry
    where every study is known; where any result's study is unknown (loaded from an HDF5 written before the study
    was stored), the sum's is unknown too: a copy of result 1's geometry without a study, and the files named,
    so that write_result_rtdose refuses it without ``study=`` as it refuses each of them (review B of
    2026-12-06, F1: the sum of such per-beam files wrote an RT Dose in a new frame with no patient, silently).
    Known studies that differ (patient, study or frame of reference; a CT's and no CT) are warned of: the sum
    keeps result 1's."""
    import copy

    g = results[0].geometry
    unknown = [r.study_not_stored for r in results if r.study_not_stored]
    known = [(k, getattr(r.geometry, "study", None)) for k, r in enumerate(results, start=1) if not r.study_not_stored]
    key = [(k, None if s is None else (s.patient_id, s.study_instance_uid, s.frame_of_reference_uid))
           for k, s in known]
    other = [(k, s) for (k, s), (_, c) in zip(known, key) if c != key[0][1]]
    if other:
        first = known[0]
        warn(f"sum_results: the results lie in different studies: result {first[0]} in {_study_text(first[1])}, "
             + ", ".join(f"result {k} in {_study_text(s)}" for k, s in other)
             + ("; the sum keeps result 1's study, so its RT Dose lies there" if not unknown else
                "; the study of the others is unknown, and so is the sum's")
             + " (sum the beams of one CT only)", McprotonRuntimeWarning, stacklevel=3)
    if not unknown:
        return g, ""
    if getattr(g, "study", None) is not None:
        g = copy.copy(g)
        g.study = None
    return g, _files_named(unknown)


def _files_named(texts: Iterable[str]) -> str:
    """The files named by ``texts`` (each "" or "a.h5; b.h5", as a result's study_not_stored and
    fractions_not_stored say them), once each, in order: "a.h5; b.h5; c.h5"."""
    return "; ".join(dict.fromkeys(f for t in texts if t for f in t.split("; ")))


def _copy_result(r: DoseResult) -> DoseResult:
    """A copy of ``r`` whose arrays, ledger, provenance and other attributes can be changed without changing ``r``:
    the grids copied (a grid still held as its scored voxels shares them: reading it makes a new array), the
    dictionaries deep-copied; the geometry is shared, as a sum shares its first result's."""
    import copy

    out = copy.copy(r)
    for k, v in list(out.__dict__.items()):
        if isinstance(v, np.ndarray):
            out.__dict__[k] = v.copy()
        elif k != "geometry" and not isinstance(v, ScoredGrid):
            out.__dict__[k] = copy.deepcopy(v)
    return out


def _sum_completeness(prov: dict, results: list[DoseResult], mean_unc: float) -> None:
    """What was asked of the sum and whether it was done (the keys of mcproton._run.job.mark_completeness that
    early_stop_note reads), from its beams': the primaries requested added; a target shared by every beam judged
    on the sum's own uncertainty; the warnings of every beam, each once.  Before (2026-12-05) the sum carried
    beam 1's, so a second beam stopped early went unsaid."""
    provs = [r.provenance for r in results]
    for k in ("primaries_requested", "target_uncertainty", "target_reached"):
        prov.pop(k, None)
    if all("primaries_requested" in p for p in provs):
        prov["primaries_requested"] = int(sum(int(p["primaries_requested"]) for p in provs))
    targets = [p.get("target_uncertainty") for p in provs]
    first = targets[0]
    if first is not None and all(t == first for t in targets):
        target = float(first)
        prov["target_uncertainty"] = target
        prov["target_reached"] = bool(math.isfinite(mean_unc) and mean_unc <= target)
    said = [w for p in provs for w in (p.get("warnings") or [])]
    if said:
        prov["warnings"] = list(dict.fromkeys(said))


def _positions_summed(results: list[DoseResult], allowed: frozenset[str]) -> str:
    """Refuse (ConfigError) to add, on a patient CT's grid (:func:`~mcproton._run.inputs.positions_checked`: not a
    slab CT written for its plan), the results of plan beams set up in different patient positions
    (their ``provenance["beam"]`` / ``["summed_beams"]``' ``patient_position``), as ``mcproton run`` refuses such a
    plan (mcproton/_run/inputs.py check_patient_position): one CT shows the patient lying one way.  With
    "position_mismatch" in ``allowed``: the warning to give; "" where the positions agree (or no CT, or beams without
    a plan)."""
    from .._io.rtplan import beams_by_position, mixed_positions
    from ..config import ConfigError
    from .inputs import positions_checked

    # as mcproton run: on a patient CT only (not a water box, not a slab CT written for its plan)
    if not positions_checked(results[0].geometry):
        return ""
    beams = [b for r in results for b in (r.provenance.get("summed_beams") or [r.provenance.get("beam") or {}])]
    by_position = beams_by_position((b.get("name", "?"), b.get("patient_position")) for b in beams
                                    if isinstance(b, dict))
    if len(by_position) < 2:
        return ""
    msg = f"sum_results: {mixed_positions(by_position)}"
    if "position_mismatch" not in allowed:
        raise ConfigError(f"{msg} (or, if the CT's and the plan's positions are known to be right, pass "
                          "allow=(\"position_mismatch\",) to sum_results, or set plan.allow_position_mismatch = true "
                          "in mcproton run: the sum and its RT Dose then say OVERRIDE)")
    return (f"{msg}; summed as given (allow \"position_mismatch\", plan.allow_position_mismatch in mcproton run): "
            "recorded in the sum's provenance \"overrides\", its RT Dose tagged OVERRIDE")


def _builds_summed(results: list[DoseResult], allowed: frozenset[str]) -> tuple[list[str], str, list[dict]]:
    """Refuse (ConfigError) to add results computed by different builds of mcproton (version, transport kernel
    source, physics data files), physics tables or physics settings (mcproton/_run/builds.py): a result that does
    not record one of these (an older mcproton's) against one that does, too.  With ``"mixed_builds"`` /
    ``"mixed_physics"`` in ``allowed``: (the names of the mixes passed, the warning to give, every part's record
    for the sum's ``summed_builds``); ([], "", []) where every part agrees."""
    from ..config import ConfigError
    from .builds import ADVICE, WHAT_DIFFERS, differences, label, part_records
    from .inputs import OVERRIDES

    ref = part_records(results[0].provenance)[0]
    defined = {key[0]: key for key in _material_keys(results[0].geometry)}
    found: dict[str, list[str]] = {}
    parts = []
    for k, r in enumerate(results, start=1):
        # a material defined alike in both phantoms: its tables compared (another definition: a phantom difference)
        same = {key[0] for key in _material_keys(r.geometry) if defined.get(key[0]) == key}
        recs = part_records(r.provenance)
        for j, rec in enumerate(recs, start=1):
            parts.append(rec)
            for name, said in differences(ref, rec, same).items():
                found.setdefault(name, []).append(f"{label(k, rec, j if len(recs) > 1 else None)}: "
                                                  + "; ".join(said))
    if not found:
        return [], "", []
    names = [n for n in OVERRIDES if n in found]
    text = "; and ".join(f"{WHAT_DIFFERS[n]} (each compared with {label(1, ref)}): {'; '.join(found[n])}"
                         for n in names)
    refused = [n for n in names if n not in allowed]
    if refused:
        raise ConfigError(f"sum_results: {text}; " + "; ".join(ADVICE[n] for n in refused)
                          + ": the sum then keeps each part's build and physics in its provenance "
                          "(\"summed_builds\"), and its RT Dose says OVERRIDE")
    return names, (f"sum_results: {text}; summed as given (allow {', '.join(repr(n) for n in names)}): each part's "
                   "build and physics recorded in the sum's provenance \"summed_builds\", its \"overrides\" and "
                   "its RT Dose tagged OVERRIDE"), parts


#: the sum's ``build["code_sha256_of_parts"]`` where its parts were computed by different code (or one does not
#: record its code: a result of an mcproton before 2026-12-07)
MIXED_CODE = "differ or not recorded: each part's own provenance names its code"


def _code_sha256(prov: dict) -> str | None:
    """The code's SHA-256 a result's provenance records (its ``build``, else an ``mcproton run`` output's
    ``run_identity`` build, as :func:`mcproton._run.builds.build_record` reads the build); None where it records none
    (a result of an mcproton before 2026-12-07)."""
    from .builds import _mapping

    build = _mapping(prov.get("build"))
    if build is None:
        build = _mapping((_mapping(prov.get("run_identity")) or {}).get("build")) or {}
    code = build.get("code_sha256")
    return None if code is None else str(code)


def _sum_builds(prov: dict, results: list[DoseResult], parts: list[dict]) -> None:
    """The build and physics of the sum (``prov``, result 1's copied): where every part agrees, result 1's, and its
    ``build`` (version, kernel source, physics data files) from whichever record holds it (``run_identity`` of an
    older ``mcproton run``); for an allowed mix (``parts``, :func:`_builds_summed`), each part's record in
    ``summed_builds`` and the keys on which they differ said to be mixed (before, the sum named result 1's for
    all: the compat audit of 2026-12-06, F1)."""
    from .builds import BUILD_KEYS, MIXED, build_record

    if not isinstance(prov.get("build"), dict):
        rec = build_record(results[0].provenance)
        prov["build"] = {k: rec[k] for k in BUILD_KEYS if rec[k] is not None}
    else:   # the code's SHA-256 (not compared: pure Python changes are summed) is the sum's where every part's is one
        prov["build"] = dict(prov["build"])
        codes = [_code_sha256(r.provenance) for r in results]
        if None in codes or len(set(codes)) > 1:
            prov["build"].pop("code_sha256", None)
            prov["build"]["code_sha256_of_parts"] = MIXED_CODE
    if not parts:
        return
    prov["summed_builds"] = parts
    for key in ("version", "kernel_hash", "physics", "tables"):
        if any(p.get(key) != parts[0].get(key) for p in parts):
            prov[key] = MIXED
    if any(p.get(k) != parts[0].get(k) for p in parts for k in BUILD_KEYS):
        prov["build"] = MIXED


def _sum_overrides_unknown(prov: dict, results: list[DoseResult]) -> None:
    """The sum's record that its overrides are not known, where a part's are not (a file of an older mcproton,
    :func:`~mcproton._run.inputs.overrides_not_recorded`): the files named, and a warning; its RT Dose then says
    "OVERRIDE unknown" (before, the sum of such a file and a new one kept the new one's overrides alone: the compat
    audit of 2026-12-06, F5)."""
    from .builds import build_record, label
    from .inputs import OVERRIDES_NOT_RECORDED, overrides_not_recorded, overrides_unknown_text

    prov.pop(OVERRIDES_NOT_RECORDED, None)
    unknown = [(k, r, overrides_not_recorded(r.provenance)) for k, r in enumerate(results, start=1)]
    unknown = [u for u in unknown if u[2]]
    if not unknown:
        return
    files = [w for _, _, w in unknown if w != "its provenance"]
    prov[OVERRIDES_NOT_RECORDED] = "; ".join(dict.fromkeys(files)) or "a part of this sum"
    who = ", ".join(label(k, build_record(r.provenance)) + (f" (from {w})" if w != "its provenance" else "")
                    for k, r, w in unknown)
    if len(unknown) > 1:   # "result 1 (...), result 2 (...) does not record whether its dose": one subject
        who = f"each of {who}"
    said = (f"sum_results: {overrides_unknown_text(who)}; so the sum's overrides are unknown too, and its RT Dose "
            "says \"OVERRIDE unknown\"")
    warn(said, McprotonRuntimeWarning, stacklevel=3)
    prov["warnings"] = list(dict.fromkeys([*(prov.get("warnings") or []), said]))


def sum_results(results: Iterable[DoseResult], *, allow: tuple[str, ...] = ()) -> DoseResult:
    """The sum of the DoseResults of several beams on the same geometry (e.g. the beams of a plan).

    ``results``: a list (or a tuple, or a generator) of DoseResults on one dose grid (refused otherwise), computed
    on one phantom: results on the same grid but of other densities or materials (say, of two HU calibrations) are
    summed with a :class:`~mcproton.McprotonRuntimeWarning` naming what differs, and the sum keeps the first
    result's geometry.  The sum is a new result: for one result, a copy of it (changing the sum does not change
    the result), sharing its geometry as the sum of several shares the first one's.

    It adds beams: the dose of the sum is the dose of all of them delivered together.  Two runs of the same beam
    therefore add to twice its dose; it is not a way to pool the statistics of repeated runs of one beam (for
    that, run once with more primaries, or take the primaries-weighted mean of the doses yourself).

    Dose and dose to water add; LET_d is the dose-weighted mean of the beams' LET_d; the relative
    uncertainty combines the beams' absolute standard errors in quadrature where their random numbers are
    independent (each beam its own stream: ``beam_index``, or another seed), linearly with a warning where
    they are not; the ledger energies, primaries and wall time add.  All results must be absolute
    (``Gy for N protons``) or all per primary.

    The sum records each beam (``provenance["summed_beams"]``: its record, with its plan keys; ``summed_primaries``,
    ``summed_beam_indices``, ``summed_beam_seeds``), a part that is itself a sum giving each of its beams: so a
    plan's beams run in two jobs and summed are the whole plan's (its RT Dose: PLAN, all fractions), and a beam in
    two parts (a plan's run and a run of one of its beams) is found to share its random stream.

    The beams must be of one RT Ion Plan and hold the same fractions of it (their records' ``fractions``,
    ``fractions_planned``, ``plan_sop_instance_uid``, ``plan_beam_numbers``: :func:`mcproton._io.hdf5.
    plan_record_differences`), or all be beams of no plan: others are refused (:class:`~mcproton.config.ConfigError`
    naming each result, its beams and their values), with no ``allow`` to pass it.  A sum has one number of fractions
    (its HDF5's ``fractions``, its RT Dose's plan and scale, the McNamara RBE's dose per fraction), which a beam of a
    17-fraction plan and a beam of a 5-fraction boost, or a run of one fraction and a run of all of them, do not
    share; before (audit 26 interact, F1) the first beam's was taken for all.  A sum of two plans is made where plan
    sums are made (the planning system), from each plan's RT Dose of its whole course.

    The body outline (:func:`mcproton.body.apply_body_outline`, or a loaded file's ``body_mask``) that every result
    shares is the sum's: its ``body_mask`` and ``dose_raw`` are saved with it, so a saved sum of a plan's beam runs is
    the run of the plan in every dataset (bitwise in ``dose``, ``dose_to_water``, ``body_mask``; ``let_d`` and
    ``uncertainty`` are recomputed from the parts', to float32 rounding of a loaded part's); results of different
    outlines are summed with a warning and keep none.

    The deposited energy ``edep_mev_zyx`` (MeV per primary, where every result has it):

    * per-primary results (normalisation "Gy per primary"): the sum of the beams' (each per primary of its own
      beam), like the dose, so that :meth:`DoseResult.integrated_depth_dose` of the sum is the sum of the
      beams' IDDs;
    * absolute results ("Gy for N protons"): the energy deposited by all beams' simulated histories divided by
      their number (sum over beams of edep x primaries, over the summed primaries), a mean per simulated
      primary that does not follow the beams' absolute weights (``total_protons``) as the dose does.

    On a patient CT's grid (``geometry.study`` set; not the slab CT written for a plan, ``slab_ct_geometry``, on
    which ``mcproton run`` does not check positions either), the results of a plan's beams set up in different
    patient positions are refused (:class:`~mcproton.config.ConfigError`), as ``mcproton run`` refuses such a plan
    (one CT shows the patient lying one way), unless ``allow`` names ``"position_mismatch"`` (as
    ``plan.allow_position_mismatch``; the same ``allow`` as :func:`~mcproton.simulate`'s, whose other names change
    nothing here): the sum is then made with a warning, and its ``provenance["overrides"]`` says so.  The sum's
    ``overrides`` are its beams' and its own: :func:`~mcproton.write_result_rtdose` tags its RT Dose OVERRIDE.

    Results computed by different builds of mcproton (its version, the transport kernel's source, the SHA-256 of
    its physics data files: ``provenance["build"]``, or ``run_identity`` of an older ``mcproton run`` output), with
    different physics tables, or with different physics settings (``PhysicsSettings``: ``provenance["physics"]``)
    are refused (:class:`~mcproton.config.ConfigError`, naming the key, both values and the results), unless
    ``allow`` names ``"mixed_builds"`` (build, tables) / ``"mixed_physics"`` (settings): a beam re-run after an
    upgrade, or with another ``water_model``, would be added to the others as if all were computed alike.  A result
    that does not record one of these (a file of an older mcproton: the physics data's SHA-256 is in every result
    since 2026-12-06, before in an ``mcproton run`` output's ``run_identity`` only) is of an unknown build, refused
    the same way against one that records it; two results that both lack it are compared on what they record.  An
    allowed mix is warned of and recorded as the other overrides are (its RT Dose says OVERRIDE), the sum keeps
    each part's build, physics and tables in ``provenance["summed_builds"]``, and the keys on which they differ
    (``kernel_hash``, ``physics``, ...) say "mixed".  The beams of one ``mcproton run``, one ``simulate`` session
    or one ``mcproton check`` share one build and physics: nothing changes for them.

    A result that does not record the refusals it passed (``provenance["overrides"]`` absent: a file of an older
    mcproton, which ``DoseResult.load`` marks ``provenance["overrides_not_recorded"]``) makes the sum's overrides
    unknown: it is summed with a warning, the sum names those files in ``overrides_not_recorded``, and its RT Dose
    says "OVERRIDE unknown".  Every result records its overrides, ``[]`` for none.

    The records of the run that computed a result (mcproton/_run/builds.py): the sum has none of an ``mcproton run``'s
    command and files (``invocation``, ``set_options``, ``config_effective``, ``run_identity``, ``rtdose_uids``, ...:
    the sum was not started by a command and wrote no RT Dose); its ``seed``, ``batches``, ``batch_size``,
    ``segments``, ``kernel_build`` are its parts' where every part records the same (the beams of one run), else
    "differ: each part's in summed_runs", and ``resumed`` is true where any part was resumed; where any of them
    differs, or a part is an ``mcproton run`` output, ``provenance["summed_runs"]`` holds each part's record (before,
    review 2b R1, the sum kept result 1's, and its RT Dose stated result 1's seed for all).
    """
    from .builds import sum_run_records
    from .inputs import checked_allow, ordered_overrides

    allowed = checked_allow(allow, "sum_results")
    results = _as_results(results)
    if not results:
        raise ValueError("sum_results needs at least one DoseResult")
    if len(results) == 1:
        return _copy_result(results[0])
    mixed = _positions_summed(results, allowed)
    mixed_builds, builds_said, parts = _builds_summed(results, allowed)
    g = results[0].geometry
    for k, r in enumerate(results[1:], start=2):
        rg = r.geometry
        if (rg.shape_zyx != g.shape_zyx or not np.allclose(rg.voxel_size_mm, g.voxel_size_mm)
                or not np.allclose(rg.origin_mm, g.origin_mm)):
            raise ValueError("sum_results: the results have different dose grids; resample them first")
        differ = phantom_differences(g, rg)
        if differ:
            warn(f"sum_results: result {k} was computed on another phantom than result 1 on the same grid: "
                 f"{' and '.join(differ)} differ; the sum keeps result 1's geometry, and adds doses of different "
                 "phantoms (sum results of one geometry only)", McprotonRuntimeWarning, stacklevel=2)
    g, unknown = _summed_study(results)
    per_primary = [is_per_primary(r) for r in results]
    if any(per_primary) and not all(per_primary):
        which = ", ".join(f"result {k} ({r.normalisation})" for k, r in enumerate(results, start=1)
                          if is_per_primary(r))
        raise ValueError(f"sum_results: cannot add a per-primary dose ({which}) to an absolute dose; give every "
                         "beam total_protons (plans do)")
    _refuse_other_plans(results)
    groups = _stream_groups(results)
    n = int(sum(r.primaries for r in results))
    first = stored_grid(results[0], "dose_gy_zyx")
    shape = first.shape
    names = ["dose", "dose_w", "unc", "let_d"]
    if all(stored_grid(r, "edep_mev_zyx") is not None for r in results):
        names.append("edep")
    if all(stored_grid(r, "let_d_uncertainty_rel_zyx") is not None for r in results):   # else none (an older file)
        names.append("let_unc")
    nv = int(np.prod(shape))
    flat = {k: np.zeros(nv, np.float64) for k in names}
    # only the voxels with dose (on a patient-CT grid a fraction), in cache-sized chunks; where all is 0 the
    # whole-grid formulas give +0.0 (with no primaries, 0/0: every voxel)
    idx = _summed_voxels(results, nv) if n > 0 else np.arange(nv)
    for i0 in range(0, idx.size, _CHUNK_VOXELS):
        _sum_voxels(results, groups, idx[i0:i0 + _CHUNK_VOXELS], flat, n, all(per_primary))
    # bitwise the whole-grid figure: outside idx the dose is 0, below half the maximum of a positive dose
    mean_unc = mean_uncertainty_above_half_max(flat["dose"][idx], flat["unc"][idx],
                                               g.density_g_cm3_zyx.reshape(-1)[idx])
    out = {k: v.reshape(shape) for k, v in flat.items()}
    dose, unc = out["dose"], out["unc"]
    edep = out.get("edep")
    led: dict = {}
    for r in results:
        for k, v in r.ledger.items():
            if k != "imbalance_rel":
                led[k] = led.get(k, 0) + v
    if "incident" in led:
        e_in = sum(led.get(e.name, 0.0) for e in LEDGER_ENTRIES if e.kind == "energy_in")
        out_e = sum(led.get(e.name, 0.0) for e in LEDGER_ENTRIES if e.kind == "energy_out")
        led["imbalance_rel"] = (e_in - out_e) / e_in if e_in > 0 else 0.0
    wall = float(sum(r.wall_s for r in results))
    pps = n / wall if wall > 0 else float("nan")
    norm = f"{PER_PRIMARY} (sum over beams)" if all(per_primary) else _summed_normalisation(results)
    prov = dict(results[0].provenance)
    prov.update({"primaries": n, "wall_s": wall, "protons_per_second": pps, "normalisation": norm,
                 **_summed_beam_lists(results)})
    # every beam's shifters: results[0]'s alone said "none" for a plan whose first beam has none (audit 17 F2)
    prov["range_shifters"] = sorted({x for r in results for x in r.provenance.get("range_shifters", [])})
    prov.pop("beam", None)
    prov.pop("beam_index", None)
    prov.pop("next_history", None)   # of beam 1 only; each beam's is its primaries (summed_primaries)
    sum_run_records(prov, [r.provenance for r in results])   # not result 1's command, RT Dose, seed (review 2b, R1)
    if any("stop_reason" in r.provenance for r in results):
        prov["stop_reason"] = combined_stop_reason(results)
    _sum_completeness(prov, results, mean_unc)
    _sum_builds(prov, results, parts)
    over = {str(o) for r in results for o in (r.provenance.get("overrides") or [])}
    over |= ({"position_mismatch"} if mixed else set()) | set(mixed_builds)
    # refusals passed for a beam or for the sum: its RT Dose says OVERRIDE; [] for none (absent: not recorded)
    prov["overrides"] = ordered_overrides(over)
    _sum_overrides_unknown(prov, results)
    for said in (mixed, builds_said):
        if said:
            warn(said, McprotonRuntimeWarning, stacklevel=2)
            prov["warnings"] = list(dict.fromkeys([*(prov.get("warnings") or []), said]))
    phases = [p for r in results if isinstance(p := r.provenance.get("phase_s"), dict)]
    if len(phases) == len(results):
        prov["phase_s"] = {k: float(sum(p.get(k, 0.0) for p in phases)) for k in phases[0]}
    total = DoseResult(
        dose_gy_zyx=dose, dose_to_water_gy_zyx=out["dose_w"], let_d_kev_um_zyx=out["let_d"],
        uncertainty_rel_zyx=unc,
        mean_rel_uncertainty_50=mean_unc, geometry=g, ledger=led, provenance=prov, primaries=n, wall_s=wall,
        protons_per_second=pps, backend=results[0].backend, device=results[0].device, normalisation=norm,
        edep_mev_zyx=edep, study_not_stored=unknown, let_d_uncertainty_rel_zyx=out.get("let_unc"),
        fractions_not_stored=_files_named([r.fractions_not_stored for r in results]))
    _sum_body_outline(total, results)
    return total

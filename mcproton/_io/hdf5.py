"""HDF5 output of a run (h5py).

Layout (every item, with its dtype, unit and attributes: README "Output (HDF5)", whose table
tests/test_hdf5_schema.py compares with the files written): datasets ``dose`` (Gy, float64), ``dose_to_water``
(Gy), ``let_d`` (keV/um), ``uncertainty`` (relative standard error), ``density`` (g/cm3) and ``material_index`` (and
``labels``), all with axes (z, y, x) (each dataset's attribute ``axes`` = "zyx"); root attributes ``voxel_size_mm``
(dx, dy, dz), ``origin_mm`` (x, y, z of the centre of the first voxel), ``axes`` = "zyx", ``normalisation``, and
for the beams of an RT Ion Plan ``fractions`` and ``fractions_planned`` (the dose datasets' ``fractions_note`` says
the same: "1 of 3 planned fractions (one fraction)"); groups ``provenance`` (attributes; dicts and lists as JSON
text, None as JSON ``null``; ``run_identity`` one JSON object) and ``ledger``; the datasets a result carries in
``extra_datasets`` (``dose_raw``, ``body_mask``: mcproton/body.py). The grids are stored in chunks
(:data:`GRID_CHUNK`) with the standard gzip filter (level :data:`GZIP_LEVEL`; shuffle on the result grids), fill
value 0; a chunk that is all 0 is not stored (any HDF5 reader returns the fill value).

Format version (root attribute ``format_version`` = :data:`FORMAT_VERSION`, "mcproton-dose/1"): version 1 adds
``materials_json`` (the full definitions of the geometry's materials), ``study`` (JSON: the CT's patient, study and
frame of reference UIDs, position, orientation and study date of a grid from a CT, ``null`` otherwise; files of
version 1 written before 2026-12-06 lack it, and their results refuse to be written as an RT Dose without a
``study``; such a result saved again, or a sum of it, still lacks it and names those files in the root attribute
``study_not_stored``: its study stays unknown; likewise ``fractions_not_stored`` names the older files of a plan's
dose that did not record how many fractions it holds: ``DoseResult.fractions_not_stored``) and the group ``result``
(attributes ``primaries``, ``wall_s``, ``protons_per_second``, ``backend``, ``device``), and, when written by
``DoseResult.save``, the dataset ``edep_mev_per_primary`` (for ``integrated_depth_dose``).  Files written before
the version existed (version 0) lack all of these.  Readers refuse a version they do not know.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from dataclasses import asdict
from typing import Any

import numpy as np

from .._cpus import usable_cpus
from .errors import McprotonWarning, warn

#: the layout written by this version of mcproton; bump the number on any change a reader must know about
FORMAT_NAME = "mcproton-dose"
FORMAT_VERSION = f"{FORMAT_NAME}/1"
KNOWN_VERSIONS = {FORMAT_VERSION: 1}
#: what a file without ``format_version`` (version 0, written before 2026-12-04) must hold to be read
V0_DATASETS = ("dose", "dose_to_water", "let_d", "uncertainty", "density", "material_index")
V0_ATTRS = ("voxel_size_mm", "origin_mm", "normalisation", "materials")


class DoseFileError(ValueError):
    """An HDF5 file that is not a dose file this version of mcproton can read."""


#: how an attribute holds None: JSON's ``null`` (so that ``json.loads`` of it gives None; files written before
#: 2026-12-07 hold "none", read as None too)
NULL = "null"
_NULL_TEXTS = (NULL, "none")


def _attr(v: Any) -> Any:
    """An attribute's value as stored: a dict or list (but a list of numbers: an HDF5 array) as JSON text, None as
    JSON ``null``, a string that would read back as None or as JSON as its JSON string, else as it is."""
    if isinstance(v, (dict, list, tuple)) and not (isinstance(v, (list, tuple)) and v and
                                                   all(isinstance(x, (int, float)) for x in v)):
        return json.dumps(v, default=str)
    if v is None:
        return NULL
    if isinstance(v, str) and (v in _NULL_TEXTS or v[:1] in '[{"'):
        return json.dumps(v)   # a string that would read back as None or as JSON: stored as a JSON string
    return v


#: the provenance key of what an ``mcproton run`` computed from and wrote (mcproton/cli.py ``_run_identity``, which
#: ``--resume`` compares)
RUN_IDENTITY = "run_identity"


def run_identity_record(v: Any) -> dict | None:
    """A run's ``run_identity`` as one JSON object (None where ``v`` is not one): ``mcproton run`` makes it as JSON
    text, whose ``output_settings`` is JSON text and ``beam_models`` a list of JSON texts; files written before
    2026-12-07 stored that text as a JSON string (decoded twice, and the nested texts again: audit 26 h5schema,
    F4).  Here every level is decoded, so that the HDF5 stores (and ``DoseResult.load`` gives) one object whose
    ``input_files_sha256`` is read with a single ``json.loads``, and ``--resume`` compares the objects."""
    for _ in range(3):   # the text, or the JSON string of it (older files)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if not isinstance(v, str):
            break
        try:
            v = json.loads(v)
        except ValueError:
            return None
    if not isinstance(v, dict):
        return None
    out = dict(v)

    def decoded(x: Any) -> Any:
        try:
            return json.loads(x) if isinstance(x, str) else x
        except ValueError:
            return x

    if "output_settings" in out:
        out["output_settings"] = decoded(out["output_settings"])
    if isinstance(out.get("beam_models"), list):
        out["beam_models"] = [decoded(m) for m in out["beam_models"]]
    return out


def _provenance_attr(key: str, v: Any) -> Any:
    """A provenance item as stored (:func:`_attr`): the run identity as one JSON object
    (:func:`run_identity_record`)."""
    if key == RUN_IDENTITY:
        v = run_identity_record(v) or v
    return _attr(v)


#: gzip (deflate) level of the grids: every HDF5 reader has gzip.  Level 1 against the former 4 on the 46 M-voxel
#: head CT (BENCHMARKS.md "Host phases (CPU)", HDF5 output): half the CPU time, files within 15 % of the size
GZIP_LEVEL = 1
#: chunk of a 3-D grid (z, y, x), cut to the grid: 32768 voxels (128-256 kB), written whole
GRID_CHUNK = (8, 64, 64)


def _shuffled(raw: np.ndarray) -> bytes:
    """The bytes of ``raw`` (a C-contiguous array) as HDF5's shuffle filter orders them: byte j of every
    element, for j = 0 .. itemsize-1 (the filter's layout: output[j * n + i] = input[i * itemsize + j])."""
    return np.ascontiguousarray(raw.reshape(-1).view(np.uint8).reshape(-1, raw.itemsize).T).tobytes()


def write_grid(f: Any, name: str, arr: Any, *, shuffle: bool = True, level: int = GZIP_LEVEL) -> Any:
    """Dataset ``name`` of ``f`` holding ``arr``, gzip ``level`` (+ shuffle: it helps noisy floats, not the few
    distinct values of a density or index grid), fill value 0.  A 3-D grid is written chunk by chunk
    (:data:`GRID_CHUNK`), compressed in threads (zlib releases the GIL) and stored with the standard filters
    (H5Dwrite_chunk: any HDF5 reader decodes it); a chunk whose bytes are all 0 (no dose there) is not stored,
    and reads back as the fill value, the same bytes (a -0.0 is not all-0 bytes, so it is stored)."""
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    a = np.ascontiguousarray(arr)
    if a.ndim != 3 or a.size == 0 or a.dtype.kind not in "biuf":
        opts = {"compression": "gzip", "compression_opts": level, "shuffle": shuffle} if a.size else {}
        return f.create_dataset(name, data=a, **opts)
    chunk = tuple(min(c, n) for c, n in zip(GRID_CHUNK, a.shape))
    d = f.create_dataset(name, shape=a.shape, dtype=a.dtype, chunks=chunk, compression="gzip",
                         compression_opts=level, shuffle=shuffle and a.itemsize > 1, fillvalue=a.dtype.type(0))
    starts = [(z, y, x) for z in range(0, a.shape[0], chunk[0]) for y in range(0, a.shape[1], chunk[1])
              for x in range(0, a.shape[2], chunk[2])]

    def compress(start: tuple[int, int, int]) -> bytes | None:
        block = np.ascontiguousarray(a[tuple(slice(s, s + c) for s, c in zip(start, chunk))])
        if not block.view(np.uint8).any():
            return None
        if block.shape != chunk:   # an edge chunk: stored whole, padded with the fill value
            full = np.zeros(chunk, a.dtype)
            full[tuple(slice(0, n) for n in block.shape)] = block
            block = full
        return zlib.compress(_shuffled(block) if shuffle and a.itemsize > 1 else block.tobytes(), level)

    workers = min(8, usable_cpus())   # the CPUs this process may run on (mcproton/_cpus.py)
    with ThreadPoolExecutor(workers) as pool:
        for start, data in zip(starts, pool.map(compress, starts)):
            if data is not None:
                d.id.write_direct_chunk(start, data)
    return d


def ledger_units() -> str:
    """The ``ledger`` group's attribute ``units``: JSON {entry: unit} of every entry of kernels/params.h
    (MCP_LEDGER_ENTRIES): "MeV" for the energies (of all primaries together), "count" for the counts, and
    imbalance_rel ("1": (energy in - energy out) / energy in)."""
    from .._kernels.layout import LEDGER_ENTRIES

    units = {e.name: "count" if e.kind == "count" else "MeV" for e in LEDGER_ENTRIES}
    return json.dumps({**units, "imbalance_rel": "1"})


#: The ``let_d`` dataset's description (docs/physics.md "Scoring"): which LET, of which particles, in which medium, how
#: weighted, what is left out, and the dose threshold below which it is mostly noise (a ratio of two noisy sums: the
#: demo's LETd reached 51 keV/um in voxels below 0.1 % of the prescription, 18 at 1-10 %, at most 9 above 50 %).
#: What the two dose datasets are, on the datasets themselves (the dose-to-water audit of 2026-12-06: they carried
#: only unit and axes; docs/physics.md "Scoring").
DOSE_DESCRIPTIONS = {
    "dose": "physical absorbed dose to the voxel medium (D_m), as simulated: each voxel's material of the CT "
            "calibration's bin (schneider2000: HU 0 is an adipose/soft-tissue mixture, not water) or of the phantom",
    "dose_to_water": "physical dose to water (D_w): each energy deposit x s_w/s_m, the ratio of the electronic mass "
                     "stopping powers of water (physics.water_model, default ICRU 90, I = 78 eV) and of the voxel "
                     "material (its I-value set, default ICRU 49) at the depositing proton's energy; nuclear "
                     "fragments and recoils deposited locally take their primary's ratio (Paganetti 2009 convention; "
                     "with ICRU 90 water D_w/D_m is about 0.5 % below ICRU 49's ratio for every tissue)",
}


def dose_description(name: str, provenance: dict | None) -> str:
    """:data:`DOSE_DESCRIPTIONS`' text of dataset ``name``; that of ``dose`` naming the run's own CT calibration
    where the provenance has one, and schneider2000's HU 0 as schneider2000's (journey audit 33, F4: a run with
    mcsquare_default was told "(schneider2000: HU 0 is ...)", read as its own curve; the RT Dose note was fixed so in
    journey audit 28, F5)."""
    cal = (provenance or {}).get("calibration") if name == "dose" else None
    if not cal:
        return DOSE_DESCRIPTIONS[name]
    hu0 = "in schneider2000" if str(cal).startswith("schneider2000") else "in the default schneider2000"
    return ("physical absorbed dose to the voxel medium (D_m), as simulated: each voxel's material of its bin in the "
            f"run's CT calibration, {str(cal)!r} ({hu0} HU 0 is an adipose/soft-tissue mixture, not water), or of "
            "the phantom")


LET_D_ATTRS = {
    "quantity": "dose-averaged LET (LETd) of protons: sum(E_dep x LET) / sum(E_dep) over proton energy deposits",
    "let": "unrestricted electronic LET in the voxel medium (stopping power x density), not in water: "
           "mcproton.rbe.let_d_to_water converts it (bone about 1.7 x water's, lung about 0.3 x)",
    "particles": "primary and secondary protons transported; secondary protons created below the transport cut "
                 "(e_cut, default 0.5 MeV) deposit locally without LET and are not counted",
    "uncertainty": "its own: the let_d_uncertainty dataset (since 2026-12-08; before, none; it reads low below 50 % "
                   "of the maximum dose with few primaries: its description). The uncertainty "
                   "dataset is the dose's; the LETd is noisier, by a factor that depends on the plan and the dose "
                   "band. Over the voxels at >= 10 % of the maximum dose its "
                   "seed-to-seed relative sd per voxel was 1.8-2.0 x the dose's uncertainty (median) and 2.9-3.1 x "
                   "at the 95th percentile in three beams in water (a 100 MeV pencil beam, 4- and 8-layer spot "
                   "fields; 30-40 seeds); in the 4-layer field 1.4 x (median) above 50 % of the maximum and 2.35 x "
                   "at 10-50 %; 1.25-1.4 x (median, by dose band) in the demo CT plan (20 seeds). Measured, not "
                   "bounds; the medians of per-voxel sd estimates rise slightly with the number of seeds, so they "
                   "read a few % low (statistics audits 2026-12-06 F4 and 2026-12-07 F1; review 28b R4)",
    "recommended_dose_threshold": "use where the dose is at least 10 % of its maximum: below, the LETd is a ratio of "
                                  "few deposits (let_d_uncertainty is NaN where too few); 0 where no proton "
                                  "deposited and outside the body outline (body_mask), where the dose is 0 too",
}


def dose_unit(result: Any) -> str:
    """The ``unit`` attribute of a result's dose datasets (``dose``, ``dose_to_water``, ``dose_raw``): "Gy per
    primary" for a dose per primary proton (:func:`mcproton.run.is_per_primary`: a beam without ``total_protons``,
    or a sum of such beams), else "Gy"."""
    return "Gy per primary" if is_per_primary(result) else "Gy"


#: the ``description`` of the ``uncertainty`` dataset
UNCERTAINTY_DESCRIPTION = ("relative standard error of the dose in each voxel (standard error / dose), from the spread "
                           "of the statistical batches; 0 where no dose (outside body_mask too, where dose is set to "
                           "0), NaN where the run had one batch (no estimate)")
#: the ``description`` of the ``let_d_uncertainty`` dataset
LET_D_UNCERTAINTY_DESCRIPTION = (
    "relative standard error of the LETd in each voxel (standard error / LETd), from the statistical batches: the "
    "delta-method variance of the ratio sum(E_dep x LET) / sum(E_dep), with the covariance of numerator and "
    "denominator (mcproton/_run/stats.py let_d_rel_uncertainty); 0 where no proton deposited, NaN where the run had "
    "one batch, where the protons' deposit has a relative standard error of 0.1 or more (too few protons: the "
    "linearisation does not hold), or where the estimate is unknown (resumed from an older checkpoint). A sum of "
    "beams gives an upper bound (the covariance of each beam's LETd and dose is taken at its largest), NaN where "
    "any beam's is NaN, even one that gives little of the voxel's dose (its LETd is often high there: in a sum of a "
    "100 and a 150 MeV pencil beam such a beam gave a median 0.6 % of the dose but 10 % of the LETd). Like the "
    "dose's, a mean of these over voxels reads low where a voxel has few deposits (the per-batch LETd is then "
    "skewed). It is the batches' estimate, and it reads low where rare high-LET deposits (secondary protons) dominate "
    "a voxel's LETd: a run that had none of them there has batches that agree, so it reports a small figure while its "
    "LETd reads low. Measured (review b, 2026-12-08, CPU; examples/water_pencil.toml's geometry: 150 MeV, 2 x 2 x 0.5 "
    "mm voxels, 10 batches, sets of 24 seeds; median over the voxels of sqrt(mean reported variance) / the seeds' "
    "relative sd of the LETd): at 2e4 primaries 0.72 x the seed-to-seed spread at 10-50 % of the maximum dose "
    "(median reported 2-3 % against a spread of 19-29 %; the median run's LETd there 11 % below a 1e6-primary "
    "reference) and 0.95-0.98 at >= 50 %; at 1e5 primaries 0.94 and 1.01 (at 10-20 % still 8.9 % against 13.4 %). "
    "Use it as it is at >= 50 % of the maximum dose; below, with 1e5 or more primaries per beam, or check it against "
    "two seeds' LETd. A figure below the dose's uncertainty (the uncertainty dataset) in the same voxel below 50 % of "
    "the maximum is a warning sign: the LETd's spread over seeds was 1.2-4 x the dose's (median by dose band) in "
    "every case measured")
#: the ``description`` of the phantom's grids
GEOMETRY_DESCRIPTIONS = {
    "density": "mass density of each voxel (float32, the density the transport used)",
    "material_index": "each voxel's material: an index (0-based) into the root attributes materials (names) and "
                      "materials_json (definitions)",
    "labels": "each voxel's organ or structure label of the phantom (0: outside air); names in the root attribute "
              "label_names (JSON {label: name})",
}


#: The keys of a beam record (``provenance["beam"]``, an item of ``["summed_beams"]``: :func:`beam_records`) that say
#: which plan, and how many of its fractions, a dose holds, with what they are called in a message.  The beams of one
#: dose must agree on every one of them (:func:`plan_record_differences`).
PLAN_RECORD_KEYS = {"fractions": "fractions held", "fractions_planned": "fractions planned",
                    "plan_sop_instance_uid": "RT Ion Plan (SOP Instance UID)",
                    "plan_beam_numbers": "the plan's beam numbers"}


def _plan_value(record: dict, key: str) -> Any:
    """The value of ``key`` (:data:`PLAN_RECORD_KEYS`) in a beam record, comparable and printable; None where it does
    not say (``fractions_planned`` not recorded: the fractions held, as :func:`plan_fractions` reads it)."""
    v = record.get(key)
    if key == "fractions_planned" and not v:
        v = record.get("fractions")
    if v is None or v == "":
        return None
    if key == "plan_beam_numbers":
        return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
    if key in ("fractions", "fractions_planned"):
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
    return str(v)


def plan_record_differences(records: list[dict], names: list[str] | None = None) -> str:
    """What differs among the beam records ``records`` (:func:`beam_records`) in the plan and fractions they hold
    ("" where they are of one RT Ion Plan and hold the same fractions of it): for each key of
    :data:`PLAN_RECORD_KEYS` on which they disagree, each value with the records that hold it (``names``: what to
    call each record, default "beam record k 'name'").

    ``fractions`` is compared over every record once one records it: a record that does not say (a beam of no plan,
    a file of an mcproton before 2026-12-05, an empty record of an older sum of sums) beside one that does differs.
    ``fractions_planned`` is compared where the fractions are recorded, the plan's UID and beam numbers where they are
    recorded (older files may lack them).  Before (audit 26 interact, F1), :func:`plan_fractions` and the RT Dose's
    contents read the first record only: the beam of a 5-fraction boost plan summed with a beam of a 17-fraction plan
    was labelled "1 of 17 planned fractions" and written x 17 into the RT Dose."""
    names = names or [f"beam record {k} {str(r.get('name') or '')!r}" for k, r in enumerate(records, start=1)]
    said = []
    for key, what in PLAN_RECORD_KEYS.items():
        values = [_plan_value(r, key) for r in records]
        if key == "fractions_planned":
            values = [v if r.get("fractions") is not None else None for r, v in zip(records, values)]
        held: dict[Any, list[str]] = {}
        for v, name in zip(values, names):
            if v is not None or key == "fractions":
                held.setdefault(v, []).append(name)
        if len(held) > 1 and any(v is not None for v in held):
            said.append(f"{what} ({key}): " + "; ".join(
                f"{'not recorded' if v is None else (list(v) if isinstance(v, tuple) else v)} in "
                f"{', '.join(which)}" for v, which in held.items()))
    return "; and ".join(said)


def plan_fractions(provenance: dict) -> tuple[int, int, str] | None:
    """(fractions the dose holds, fractions planned, their description e.g. "1 of 3 planned fractions (one
    fraction)") of a result of an RT Ion Plan's beams (their meta kept in ``provenance["beam"]`` or
    ``["summed_beams"]``); None for other beams.  The HDF5 of ``mcproton run`` holds one fraction while its RT Dose
    holds the plan: said in the file (root attributes ``fractions``, ``fractions_planned``; the dose datasets'
    ``fractions_note``), not only in a JSON string of its provenance (interop audit 2026-12-05, F2).

    Beam records that disagree (:func:`plan_record_differences`: beams of two plans, or holding different numbers
    of fractions, or some recording their fractions and some not) raise ValueError naming them and their values:
    before (audit 26 interact, F1) the first record that had fractions was taken for all, so the HDF5 of such a sum
    said "1 of 17 planned fractions (one fraction)" of a dose partly of 17 fractions, or of a 5-fraction plan, and
    ``mcproton.rbe.mcnamara_of_result`` took its dose per fraction from it."""
    beams = beam_records(provenance)
    said = plan_record_differences(beams)
    if said:
        raise ValueError(
            f"the result's beam records disagree on the plan or fractions its dose holds ({said}), so the dose holds "
            "no one number of fractions of one plan: sum only the beams of one RT Ion Plan run for the same fractions "
            "(mcproton.run.sum_results refuses others since 2026-12-07); where a record lost what it held, state it "
            "(result.provenance[\"summed_beams\"][k].update(fractions=1, fractions_planned=N) for one fraction of a "
            "plan of N)")
    for b in beams:
        if b.get("fractions") is not None:
            fx = int(b.get("fractions") or 1)
            planned = int(b.get("fractions_planned") or fx)
            what = "the plan" if fx == planned else ("one fraction" if fx == 1 else f"{fx} fractions")
            return fx, planned, f"{fx} of {planned} planned fractions ({what})"
    return None


def write_result_hdf5(result, path: str | Path, extra_attrs: dict | None = None, *, edep: bool = False) -> Path:
    """Write a DoseResult atomically (built in memory, written to a temporary file renamed into place:
    mcproton._io.atomic); a failed write (disk full) raises OSError and leaves nothing under ``path``.
    ``edep``: also store ``edep_mev_zyx`` (dataset ``edep_mev_per_primary``)."""
    from .atomic import write_bytes_atomic

    return write_bytes_atomic(path, result_hdf5_buffer(result, extra_attrs, edep=edep).getbuffer())


def result_hdf5_buffer(result, extra_attrs: dict | None = None, *, edep: bool = False):
    """The HDF5 file of a DoseResult built in memory (``io.BytesIO``; h5py can open it again, e.g. to add the
    DVH group, before it is written with :func:`mcproton._io.atomic.write_bytes_atomic`)."""
    from .atomic import hdf5_buffer

    g = result.geometry

    # a beam without total_protons gives Gy per primary proton (the file's normalisation attribute): say so on the
    # datasets too, where a reader looks first
    # (a sum of such beams too: "Gy per primary (sum over beams)", audit 26 F2)
    gy = dose_unit(result)

    fx = plan_fractions(result.provenance)

    def fill(f: Any) -> None:
        for name, arr, unit in (("dose", result.dose_gy_zyx, gy),
                                ("dose_to_water", result.dose_to_water_gy_zyx, gy),
                                ("let_d", result.let_d_kev_um_zyx, "keV/um"),
                                ("uncertainty", result.uncertainty_rel_zyx, "1 (relative standard error)")):
            # the two doses as computed (float64): a sum of saved beams is then bitwise the run of those beams in
            # both (dose_to_water was float32 before 2026-12-07, audit 26 interact F4); LET_d and the uncertainty
            # float32 (a sum of saved beams: theirs to float32 rounding)
            d = write_grid(f, name, np.asarray(arr, np.float64 if name in ("dose", "dose_to_water") else np.float32))
            d.attrs["unit"] = unit
            d.attrs["axes"] = "zyx"
            if fx is not None and name in ("dose", "dose_to_water"):
                d.attrs["fractions_note"] = fx[2]
            if name in DOSE_DESCRIPTIONS:
                d.attrs["description"] = dose_description(name, result.provenance)
            if name == "let_d":   # what the number is, where a reader of the file looks (rbe audit 2026-12-06, F5)
                d.attrs.update(LET_D_ATTRS)
            if name == "uncertainty":
                d.attrs["description"] = UNCERTAINTY_DESCRIPTION
        let_unc = getattr(result, "let_d_uncertainty_rel_zyx", None)
        if let_unc is not None:   # the LETd's own (2026-12-08); a result without it (an older file's) writes none
            d = write_grid(f, "let_d_uncertainty", np.asarray(let_unc, np.float32))
            d.attrs.update({"unit": "1 (relative standard error)", "axes": "zyx",
                            "description": LET_D_UNCERTAINTY_DESCRIPTION})
        for name, (arr, attrs) in (getattr(result, "extra_datasets", None) or {}).items():   # e.g. dose_raw
            ds = write_grid(f, name, arr, shuffle=np.asarray(arr).dtype.kind == "f")
            for k, v in attrs.items():
                ds.attrs[k] = _attr(v)
        # the phantom's grids carry their axes as the dose grids do (audit 26 h5schema, F6: they had none)
        grids = [("density", g.density_g_cm3_zyx, {"unit": "g/cm3"}), ("material_index", g.material_index_zyx, {})]
        if g.labels_zyx is not None:
            grids.append(("labels", g.labels_zyx, {}))
            f.attrs["label_names"] = json.dumps({str(k): v for k, v in g.label_names.items()})
        for name, arr, attrs in grids:
            ds = write_grid(f, name, arr, shuffle=False)
            ds.attrs.update({**attrs, "axes": "zyx", "description": GEOMETRY_DESCRIPTIONS[name]})
        f.attrs["voxel_size_mm"] = np.asarray(g.voxel_size_mm, np.float64)
        f.attrs["origin_mm"] = np.asarray(g.origin_mm, np.float64)
        f.attrs["axes"] = "zyx"
        f.attrs["normalisation"] = result.normalisation
        f.attrs["materials"] = json.dumps([m.name for m in g.materials])
        f.attrs["materials_json"] = json.dumps([asdict(m) for m in g.materials], default=dict)
        f.attrs["geometry_name"] = str(g.name)
        # the CT's patient, study, frame of reference, position and orientation ("null": a grid without a CT), so
        # that an RT Dose written from the loaded result lies in the CT's frame (I/O review 2026-12-06, F1)
        study = getattr(g, "study", None)
        unknown = getattr(result, "study_not_stored", "") if study is None else ""
        if unknown:   # loaded from (or summed from) a file without it: still unknown, so not "null" (no CT), which
            # would write its RT Dose in a new frame with no patient, silently (review B of 2026-12-06, F1)
            f.attrs["study_not_stored"] = unknown
        else:
            f.attrs["study"] = json.dumps(asdict(study) if study is not None else None)
        if getattr(result, "fractions_not_stored", ""):   # loaded (or summed) from an older plan's file: the
            # fractions its dose holds stay unknown (compat audit of 2026-12-06, F3)
            f.attrs["fractions_not_stored"] = result.fractions_not_stored
        f.attrs["format_version"] = FORMAT_VERSION
        if fx is not None:   # an RT Ion Plan's beams: how many of its fractions the dose holds (the RT Dose: all)
            f.attrs["fractions"], f.attrs["fractions_planned"] = fx[0], fx[1]
        rg = f.create_group("result")
        for k in ("primaries", "wall_s", "protons_per_second", "backend", "device"):
            rg.attrs[k] = getattr(result, k)
        if edep and result.edep_mev_zyx is not None:
            write_grid(f, "edep_mev_per_primary", np.asarray(result.edep_mev_zyx, np.float64)
                       ).attrs.update({"unit": "MeV per primary", "axes": "zyx"})
        f.attrs["mean_rel_uncertainty_50"] = result.mean_rel_uncertainty_50
        pg = f.create_group("provenance")
        for k, v in result.provenance.items():
            pg.attrs[k] = _provenance_attr(k, v)
        lg = f.create_group("ledger")
        for k, v in result.ledger.items():
            lg.attrs[k] = v
        lg.attrs["units"] = ledger_units()
        for k, v in (extra_attrs or {}).items():
            f.attrs[k] = _attr(v)

    return hdf5_buffer(fill)


#: the ``format_version`` of a phantom file (mcproton/phantoms/export.py PHANTOM_FORMAT_VERSION, "mcproton-phantom/1")
PHANTOM_FORMAT_NAME = "mcproton-phantom"
#: the root attribute of a checkpoint (mcproton/_run/checkpoint.py)
CHECKPOINT_ATTR = "mcproton_checkpoint"


def other_mcproton_file(f: Any, path: str | Path) -> str | None:
    """What an open HDF5 file written by mcproton that is not a dose file is, and what to do with it (for a
    message: "<path> is ..."): a checkpoint (root attribute ``mcproton_checkpoint``) or a phantom file
    (``format_version`` "mcproton-phantom/N"); None for anything else.  Before (audit 26 h5schema, F5), a checkpoint
    given for a result was "not an mcproton dose file ... give a file written by mcproton", and a phantom file
    "not an mcproton dose format"."""
    if CHECKPOINT_ATTR in f.attrs:
        from .._run.checkpoint import CHECKPOINT_SUFFIX

        name = Path(path).name
        stem = name[:-len(CHECKPOINT_SUFFIX)] if name.endswith(CHECKPOINT_SUFFIX) else ""
        out = f" (its --out: {stem}.h5, {stem}.hdf5 or {stem}, in the same folder)" if stem else ""
        return (f"{path} is the checkpoint of an mcproton run{out} that was interrupted, stopped by its time limit or "
                "refused at its end (root attribute mcproton_checkpoint): running sums, not a result; run the same "
                "mcproton run command with --resume to finish the run and write its result (the HDF5 of its --out), "
                "and read that")
    v = f.attrs.get("format_version")
    v = v.decode() if isinstance(v, bytes) else v
    if isinstance(v, str) and v.startswith(PHANTOM_FORMAT_NAME + "/"):
        return (f"{path} is an mcproton phantom file (format_version {v!r}: its materials, densities and labels, no "
                "dose), not a dose file: read it with mcproton.phantoms.read_phantom_hdf5")
    return None


def format_version(f: Any, path: str | Path) -> int:
    """The layout version of an open dose file: 1 for :data:`FORMAT_VERSION`, 0 for a file written before the
    version existed that holds the version-0 datasets; anything else raises :class:`DoseFileError` (saying what a
    checkpoint or a phantom file is: :func:`other_mcproton_file`)."""
    other = other_mcproton_file(f, path)
    if other:
        raise DoseFileError(other)
    v = f.attrs.get("format_version")
    if v is None:
        missing = [k for k in V0_DATASETS if k not in f] + [k for k in V0_ATTRS if k not in f.attrs]
        if missing:
            raise DoseFileError(f"{path} is not an mcproton dose file (no format_version attribute and no "
                                f"{', '.join(missing)}); give a file written by mcproton (DoseResult.save or "
                                "mcproton run)")
        return 0
    v = v.decode() if isinstance(v, bytes) else str(v)
    if v in KNOWN_VERSIONS:
        return KNOWN_VERSIONS[v]
    if v.startswith(FORMAT_NAME + "/"):
        raise DoseFileError(f"{path} has dose format {v!r}, which this mcproton ({FORMAT_VERSION}) does not know "
                            "(written by a newer mcproton?); read it with that version or upgrade mcproton")
    raise DoseFileError(f"{path} has format_version {v!r}, not an mcproton dose format ({FORMAT_VERSION}); give a "
                        "file written by mcproton")


def open_hdf5(path: str | Path, what: str = "an mcproton dose file") -> Any:
    """``h5py.File(path, "r")``; a file HDF5 cannot open although it is HDF5 (truncated: an interrupted copy or
    download, a full disk; damaged) raises :class:`DoseFileError` (a ValueError) saying so, not h5py's OSError
    ("Unable to synchronously open file (truncated file: eof = ...)": audit 26 h5schema, F5).  ``what``: the kind
    of file expected, for the message.  A missing file raises FileNotFoundError as before."""
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not Path(path).is_file():
            raise
        size = Path(path).stat().st_size
        raise DoseFileError(f"{path} ({size:,} bytes) is an HDF5 file that cannot be read: truncated or damaged (an "
                            "interrupted copy or download, or a disk that filled while another program wrote it: "
                            "mcproton writes its files whole or not at all); copy it again from where it came from, "
                            f"or write it again; expected {what} (h5py: {exc})") from None


def read_dose_hdf5(path: str | Path) -> dict[str, Any]:
    """Read back the arrays and attributes written by :func:`write_result_hdf5` (``format_version``: the layout
    version, 0 for a file written before it existed; an unknown version raises :class:`DoseFileError`)."""
    import h5py

    if Path(path).is_file() and not h5py.is_hdf5(path):
        raise DoseFileError(f"{path} is not an HDF5 file, so not an mcproton dose file; give a file written by "
                            "DoseResult.save or mcproton run (an .h5 file)")
    out: dict[str, Any] = {}
    with open_hdf5(path) as f:
        out["format_version"] = format_version(f, path)
        for k in ("dose", "dose_to_water", "let_d", "uncertainty", "density", "material_index", "labels", "dose_raw",
                  "body_mask", "edep_mev_per_primary", "let_d_uncertainty"):
            if k in f:
                out[k] = f[k][()]
        if "body_mask" in f:
            out["body_outline"] = str(f["body_mask"].attrs.get("outline", ""))
        out["attrs"] = dict(f.attrs)
        out["provenance"] = dict(f["provenance"].attrs) if "provenance" in f else {}
        out["ledger"] = ({k: v for k, v in f["ledger"].attrs.items() if k != "units"} if "ledger" in f else {})
        out["result"] = dict(f["result"].attrs) if "result" in f else {}
        out["dataset_attrs"] = {k: dict(f[k].attrs) for k in ("dose_raw", "body_mask") if k in f}
    return out


def _py(v: Any) -> Any:
    """An HDF5 attribute value as the Python value that was written (JSON strings of dicts/lists decoded)."""
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str) and v[:1] in '[{"':   # a dict or list, or a string that _attr stored as JSON
        try:
            return json.loads(v)
        except ValueError:
            return v
    return None if v in _NULL_TEXTS else v


def _materials(attrs: dict, path: str | Path) -> list:
    from ..materials import Material, get_material

    if "materials_json" in attrs:
        return [Material(**{**d, "mass_fractions": dict(d["mass_fractions"])})
                for d in json.loads(attrs["materials_json"])]
    out = []
    for name in json.loads(attrs["materials"]):   # version 0: names only
        try:
            out.append(get_material(name))
        except KeyError:
            out.append(Material(name, 1.0, {}, None, f"unknown: only the name is stored in {path} (format "
                                                        "version 0); do not transport through this geometry"))
    return out


def load_result(path: str | Path):
    """The DoseResult saved in ``path`` (see ``DoseResult.load``)."""
    from ..geometry import VoxelGeometry
    from ..run import DoseResult

    h = read_dose_hdf5(path)
    a = h["attrs"]
    if h["format_version"] == 0:
        warn(f"{path} has no format_version (written before {FORMAT_VERSION}): read as version 0; "
             "materials other than database ones, primaries, wall time, backend and deposited energy are "
             "not stored in it (re-save it with DoseResult.save)", McprotonWarning, stacklevel=3)
    labels = h.get("labels")
    names = {int(k): v for k, v in json.loads(a["label_names"]).items()} if "label_names" in a else {}
    geom = VoxelGeometry(h["material_index"], h["density"], _materials(a, path),
                         tuple(float(v) for v in a["voxel_size_mm"]), tuple(float(v) for v in a["origin_mm"]),
                         labels_zyx=labels, label_names=names, name=str(a.get("geometry_name", "voxel grid")),
                         study=_study(a))
    prov = {k: _py(v) for k, v in h["provenance"].items()}
    if RUN_IDENTITY in prov:   # one object, also of a file that stored it as a JSON string (before 2026-12-07)
        prov[RUN_IDENTITY] = run_identity_record(prov[RUN_IDENTITY]) or prov[RUN_IDENTITY]
    _restore_heterogeneity(geom, prov)
    r = {k: _py(v) for k, v in h["result"].items()}
    res = DoseResult(
        dose_gy_zyx=h["dose"], dose_to_water_gy_zyx=h["dose_to_water"], let_d_kev_um_zyx=h["let_d"],
        uncertainty_rel_zyx=h["uncertainty"], mean_rel_uncertainty_50=float(a.get("mean_rel_uncertainty_50", np.nan)),
        geometry=geom, ledger={k: _py(v) for k, v in h["ledger"].items()}, provenance=prov,
        primaries=int(r.get("primaries", prov.get("primaries", 0))),
        wall_s=float(r.get("wall_s", prov.get("wall_s", np.nan))),
        protons_per_second=float(r.get("protons_per_second", prov.get("protons_per_second", np.nan))),
        backend=str(r.get("backend", prov.get("backend", ""))), device=str(r.get("device", prov.get("device", ""))),
        normalisation=str(_py(a["normalisation"])), edep_mev_zyx=h.get("edep_mev_per_primary"),
        let_d_uncertainty_rel_zyx=h.get("let_d_uncertainty"))
    if h["dataset_attrs"]:   # dose_raw, body_mask (mcproton/body.py)
        res.extra_datasets = {k: (h[k], {n: _py(v) for n, v in at.items()}) for k, at in h["dataset_attrs"].items()}
    from .._run.inputs import OVERRIDES_NOT_RECORDED

    if "overrides" not in prov and not prov.get(OVERRIDES_NOT_RECORDED):
        # written before every result recorded the refusals it passed ([] for none): they are unknown, which
        # write_result_rtdose and sum_results say (the compat audit of 2026-12-06, F5); DoseResult.save keeps it
        prov[OVERRIDES_NOT_RECORDED] = str(path)
    if "study" not in a:   # written before the study was stored (or saved again from such a file, which it names):
        # whether it had a CT is unknown (write_result_rtdose)
        res.study_not_stored = str(_py(a.get("study_not_stored", "")) or path)
    res.fractions_not_stored = _fractions_not_stored(a, prov, res.normalisation, path)
    return res


def _restore_heterogeneity(geom: Any, prov: dict) -> None:
    """Give a loaded result's geometry what its dose was computed with (``provenance["tissue_heterogeneity"]``:
    IMAGE, or IMAGE and ROI_OVERRIDE), as the run's geometry had it; before, a loaded geometry said IMAGE whatever
    the run's said, and its RT Dose (write_result_rtdose) and a sum of loaded results with it (audit 24 swallow,
    F3).  A file that does not record it keeps the default."""
    said = recorded_heterogeneity(prov)
    if said:
        geom.tissue_heterogeneity = said


def recorded_heterogeneity(provenance: dict) -> tuple[str, ...]:
    """What a result's provenance records its dose was computed with (``tissue_heterogeneity``: IMAGE, or IMAGE and
    ROI_OVERRIDE), () where it records nothing usable (absent, empty, or not a list of non-empty strings): the one
    reading of the record for a loaded result's geometry (:func:`_restore_heterogeneity`) and its RT Dose
    (mcproton/_io/rtdose.py ``result_heterogeneity``)."""
    said = (provenance or {}).get("tissue_heterogeneity")
    if isinstance(said, (list, tuple)) and said and all(isinstance(v, str) and v for v in said):
        return tuple(said)
    return ()


#: the name plan_to_beams gives the beam of an RT Ion Plan: "<beam number>:<beam name>" ("1:G90")
_RT_PLAN_BEAM_NAME = re.compile(r"^\d+:")


def beam_records(provenance: dict) -> list[dict]:
    """The beam records of a result's provenance: ``["summed_beams"]`` for a sum (sum_results), else
    ``["beam"]`` alone; an item that is not a dict (or a missing one) as {}."""
    beams = provenance.get("summed_beams") if "summed_beams" in provenance else [provenance.get("beam")]
    return [b if isinstance(b, dict) else {} for b in beams or [None]]


def is_per_primary(result: Any) -> bool:
    """:func:`mcproton.run.is_per_primary` (imported when called: this module is read without mcproton.run)."""
    from .._run.result import is_per_primary as per_primary

    return per_primary(result)


def _fractions_not_stored(attrs: dict, prov: dict, normalisation: str, path: str | Path) -> str:
    """The files whose plan's dose does not record how many fractions it holds (``DoseResult.fractions_not_stored``):
    ``path`` for a file written before the beams recorded ``fractions`` (in 2026-12-05; such a file stores no
    ``study`` either: stored from 2026-12-06) that holds an absolute dose of a plan (the root attribute ``plan`` of
    ``mcproton demo``, or a beam of an RT Ion Plan, named "N:name" by ``plan_to_beams``); the files a file saved
    again from one names (root attribute ``fractions_not_stored``); "" where every beam records its fractions, for
    a dose per primary and for another beam (a pencil beam: the dose as simulated).  The compat audit of
    2026-12-06, F3: the demo's one fraction of 17 was written again as the whole course (DoseSummationType PLAN)."""
    beams = beam_records(prov)
    if all(b.get("fractions") is not None for b in beams) or is_per_primary(normalisation):
        return ""
    said = str(_py(attrs.get("fractions_not_stored", "")) or "")
    if said:
        return said
    of_plan = "plan" in attrs or any(_RT_PLAN_BEAM_NAME.match(str(b.get("name", ""))) for b in beams)
    return str(path) if "study" not in attrs and of_plan else ""


def _study(attrs: dict):
    """The :class:`~mcproton._io.dicom_common.StudyReference` stored in the root attribute ``study`` (None for a
    grid without a CT, or a file written before it was stored)."""
    import dataclasses

    from .dicom_common import StudyReference

    v = attrs.get("study")
    if v is None:
        return None
    d = json.loads(v.decode() if isinstance(v, bytes) else str(v))
    if d is None:
        return None
    known = {f.name for f in dataclasses.fields(StudyReference)}
    d = {k: v for k, v in d.items() if k in known}
    if "axis_directions" in d:
        d["axis_directions"] = tuple(int(x) for x in d["axis_directions"])
    return StudyReference(**d)

"""HDF5 output of a run (h5py).

Layout: datasets ``dose`` (Gy), ``dose_to_water`` (Gy), ``let_d`` (keV/um), ``uncertainty`` (relative
standard error), ``density`` (g/cm3) and ``material_index``, all with axes (z, y, x); root attributes
``voxel_size_mm`` (dx, dy, dz), ``origin_mm`` (x, y, z of the centre of the first voxel), ``axes`` =
"zyx", ``normalisation``; groups ``provenance`` (attributes; nested dicts as JSON strings) and ``ledger``;
the datasets a result carries in ``extra_datasets`` (``dose_raw``, ``body_mask``: mcproton/body.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _attr(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)) and not (isinstance(v, (list, tuple)) and v and
                                                   all(isinstance(x, (int, float)) for x in v)):
        return json.dumps(v, default=str)
    if v is None:
        return "none"
    return v


def write_result_hdf5(result, path: str | Path, extra_attrs: dict | None = None) -> Path:
    """Write a DoseResult atomically (built in memory, written to a temporary file renamed into place:
    mcproton._io.atomic); a failed write (disk full) raises OSError and leaves nothing under ``path``."""
    from .atomic import write_bytes_atomic

    return write_bytes_atomic(path, result_hdf5_buffer(result, extra_attrs).getbuffer())


def result_hdf5_buffer(result, extra_attrs: dict | None = None):
    """The HDF5 file of a DoseResult built in memory (``io.BytesIO``; h5py can open it again, e.g. to add the
    DVH group, before it is written with :func:`mcproton._io.atomic.write_bytes_atomic`)."""
    from .atomic import hdf5_buffer

    g = result.geometry

    def fill(f: Any) -> None:
        opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        for name, arr, unit in (("dose", result.dose_gy_zyx, "Gy"),
                                ("dose_to_water", result.dose_to_water_gy_zyx, "Gy"),
                                ("let_d", result.let_d_kev_um_zyx, "keV/um"),
                                ("uncertainty", result.uncertainty_rel_zyx, "1 (relative standard error)")):
            d = f.create_dataset(name, data=np.asarray(arr, np.float32 if name != "dose" else np.float64), **opts)
            d.attrs["unit"] = unit
            d.attrs["axes"] = "zyx"
        for name, (arr, attrs) in (getattr(result, "extra_datasets", None) or {}).items():   # e.g. dose_raw
            ds = f.create_dataset(name, data=arr, **opts)
            for k, v in attrs.items():
                ds.attrs[k] = _attr(v)
        f.create_dataset("density", data=g.density_g_cm3_zyx, **opts).attrs["unit"] = "g/cm3"
        f.create_dataset("material_index", data=g.material_index_zyx, **opts)
        if g.labels_zyx is not None:
            f.create_dataset("labels", data=g.labels_zyx, **opts)
            f.attrs["label_names"] = json.dumps({str(k): v for k, v in g.label_names.items()})
        f.attrs["voxel_size_mm"] = np.asarray(g.voxel_size_mm, np.float64)
        f.attrs["origin_mm"] = np.asarray(g.origin_mm, np.float64)
        f.attrs["axes"] = "zyx"
        f.attrs["normalisation"] = result.normalisation
        f.attrs["materials"] = json.dumps([m.name for m in g.materials])
        f.attrs["mean_rel_uncertainty_50"] = result.mean_rel_uncertainty_50
        pg = f.create_group("provenance")
        for k, v in result.provenance.items():
            pg.attrs[k] = _attr(v)
        lg = f.create_group("ledger")
        for k, v in result.ledger.items():
            lg.attrs[k] = v
        for k, v in (extra_attrs or {}).items():
            f.attrs[k] = _attr(v)

    return hdf5_buffer(fill)


def read_dose_hdf5(path: str | Path) -> dict[str, Any]:
    """Read back the arrays and attributes written by :func:`write_result_hdf5`."""
    import h5py

    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        for k in ("dose", "dose_to_water", "let_d", "uncertainty", "density", "material_index", "labels", "dose_raw",
                  "body_mask"):
            if k in f:
                out[k] = f[k][()]
        if "body_mask" in f:
            out["body_outline"] = str(f["body_mask"].attrs.get("outline", ""))
        out["attrs"] = dict(f.attrs)
        out["provenance"] = dict(f["provenance"].attrs) if "provenance" in f else {}
        out["ledger"] = dict(f["ledger"].attrs) if "ledger" in f else {}
    return out

"""HDF5 export of voxel phantoms and label-map helpers (DICOM CT / RT Struct export lives elsewhere)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..geometry import VoxelGeometry
from ..materials import Material


def label_map_to_masks(geometry_or_labels, label_names: dict[int, str] | None = None,
                       names=None) -> dict[str, np.ndarray]:
    """Boolean (z, y, x) mask per structure name from a label map (a VoxelGeometry or an int array +
    ``label_names``).  ``names`` restricts the output to those structures."""
    if isinstance(geometry_or_labels, VoxelGeometry):
        labels, label_names = geometry_or_labels.labels_zyx, geometry_or_labels.label_names
    else:
        labels = np.asarray(geometry_or_labels)
    if labels is None or not label_names:
        raise ValueError("a label map and label_names are needed")
    want = set(names) if names is not None else None
    return {nm: labels == i for i, nm in sorted(label_names.items())
            if (want is None or nm in want)}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


#: the layout of a phantom file (root attribute format_version); bump on a change a reader must know about
PHANTOM_FORMAT_VERSION = "mcproton-phantom/1"


def write_phantom_hdf5(geometry: VoxelGeometry, path) -> Path:
    """Datasets ``material_index`` (uint8), ``density`` (float32 g/cm3), ``labels`` (int16), all (z, y, x);
    root attributes ``format_version`` (:data:`PHANTOM_FORMAT_VERSION`), ``voxel_size_mm``, ``origin_mm`` (x, y,
    z; centre of voxel [0,0,0]), ``axes`` ("zyx", as the dose files say it) and ``axis_order``, ``label_names``
    (JSON {id: name}), ``name`` and ``meta`` (JSON, when the geometry has one); group ``materials`` with one
    subgroup per material (index order) holding name, density, I-value, source and the element mass fractions.
    Each dataset says its unit or where its values are named (``lookup``: the attribute or group that names a
    label or material index; the interop audit 2026-12-05 read the file with h5py alone, F4)."""
    from .._io.atomic import write_hdf5_atomic

    path = Path(path)

    def fill(f) -> None:   # built in memory, written whole (no partial file where the writer is stopped)
        opts = dict(compression="gzip", compression_opts=4, shuffle=True)
        f.create_dataset("material_index", data=geometry.material_index_zyx, **opts)
        f["material_index"].attrs["lookup"] = "group materials (subgroup = index, zero-padded: 000, 001, ...)"
        f.create_dataset("density", data=geometry.density_g_cm3_zyx, **opts)
        f["density"].attrs["unit"] = "g/cm3"
        if geometry.labels_zyx is not None:
            f.create_dataset("labels", data=geometry.labels_zyx, **opts)
            f["labels"].attrs["lookup"] = "root attribute label_names (JSON {label: name}; 0 = outside air)"
        f.attrs["format_version"] = PHANTOM_FORMAT_VERSION
        f.attrs["voxel_size_mm"] = np.asarray(geometry.voxel_size_mm, float)
        f.attrs["origin_mm"] = np.asarray(geometry.origin_mm, float)
        f.attrs["axes"] = "zyx"
        f.attrs["axis_order"] = "zyx (arrays); x, y, z (attributes)"
        f.attrs["name"] = geometry.name
        f.attrs["label_names"] = json.dumps({str(k): v for k, v in sorted(geometry.label_names.items())})
        meta = getattr(geometry, "meta", None)
        if meta is not None:
            f.attrs["meta"] = json.dumps(meta, default=_json_default)
        g = f.create_group("materials")
        g.attrs["names"] = json.dumps([m.name for m in geometry.materials])
        for i, m in enumerate(geometry.materials):
            gm = g.create_group(f"{i:03d}")
            gm.attrs["name"] = m.name
            gm.attrs["density_g_cm3"] = m.density_g_cm3
            gm.attrs["i_value_ev"] = np.nan if m.i_value_ev is None else m.i_value_ev
            gm.attrs["source"] = m.source
            gm.attrs["mass_fractions"] = json.dumps(dict(m.mass_fractions))

    write_hdf5_atomic(path, fill)
    return path


def read_phantom_hdf5(path) -> VoxelGeometry:
    """Inverse of :func:`write_phantom_hdf5`.  Another kind of file raises ValueError saying what it is and what to
    do: a dose file (read it with ``mcproton.DoseResult.load``), a checkpoint, a truncated file, an HDF5 without a
    phantom's groups (audit 26 h5schema, F5: a dose file was "written by another version of mcproton", a
    checkpoint a KeyError)."""
    from .._io.hdf5 import CHECKPOINT_ATTR, FORMAT_NAME, V0_DATASETS, open_hdf5, other_mcproton_file

    with open_hdf5(path, "an mcproton phantom file (mcproton phantom, write_phantom_hdf5)") as f:
        version = f.attrs.get("format_version")   # absent: written before 2026-12-05, the same layout
        version = version.decode() if isinstance(version, bytes) else version
        if CHECKPOINT_ATTR in f.attrs:
            raise ValueError(other_mcproton_file(f, path))
        if (str(version).startswith(FORMAT_NAME + "/") if version is not None
                else all(k in f for k in V0_DATASETS)):
            which = f"format_version {version!r}" if version is not None else "of format version 0"
            raise ValueError(f"{path} is an mcproton dose file ({which}), not a phantom file: read it with "
                             "mcproton.DoseResult.load (its geometry, the phantom the dose was computed on, is the "
                             "result's .geometry)")
        if version is not None and str(version) != PHANTOM_FORMAT_VERSION:
            phantom = str(version).startswith(PHANTOM_FORMAT_VERSION.split("/")[0] + "/")   # another version
            raise ValueError(f"{path} has format_version {str(version)!r}, not {PHANTOM_FORMAT_VERSION!r}: "
                             + ("it was written by another version of mcproton; read it with that version, or write "
                                "the phantom again (mcproton phantom)" if phantom else
                                "not an mcproton phantom file; give one written by mcproton phantom or "
                                "mcproton.phantoms.write_phantom_hdf5"))
        missing = [k for k in ("materials", "material_index", "density") if k not in f] + [
            k for k in ("voxel_size_mm", "origin_mm", "label_names", "name") if k not in f.attrs]
        if missing:
            raise ValueError(f"{path} is not an mcproton phantom file (no {', '.join(missing)}); give one written by "
                             "mcproton phantom or mcproton.phantoms.write_phantom_hdf5")
        mats = []
        for key in sorted(f["materials"].keys()):
            a = f["materials"][key].attrs
            iv = float(a["i_value_ev"])
            mats.append(Material(str(a["name"]), float(a["density_g_cm3"]), json.loads(a["mass_fractions"]),
                                 None if np.isnan(iv) else iv, str(a["source"])))
        labels = f["labels"][...] if "labels" in f else None
        names = {int(k): v for k, v in json.loads(f.attrs["label_names"]).items()}
        geom = VoxelGeometry(f["material_index"][...], f["density"][...], mats,
                             tuple(f.attrs["voxel_size_mm"]), tuple(f.attrs["origin_mm"]), labels, names,
                             name=str(f.attrs["name"]))
        if "meta" in f.attrs:
            geom.meta = json.loads(f.attrs["meta"])  # type: ignore[attr-defined]
    return geom

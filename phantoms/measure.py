"""Measurements on a voxelised phantom (used by the tests, the README table and make_figures.py)."""
from __future__ import annotations

import numpy as np

from .generator import BRAIN_PARENCHYMA, INTRACRANIAL, _ramanujan


def _ids(geom, names) -> list[int]:
    inv = {v: k for k, v in geom.label_names.items()}
    return [inv[n] for n in names if n in inv]


def _index(geom, axis: str, value: float) -> int:
    ax = geom.axis_mm(axis)
    return int(np.argmin(np.abs(ax - value)))


def label_volume_ml(geom, *names: str) -> float:
    ids = _ids(geom, names)
    return float(np.isin(geom.labels_zyx, ids).sum()) * geom.voxel_volume_cm3


def measure_phantom(geom) -> dict[str, float]:
    """Head circumference (cm; outer-body ellipse in the z = 0 plane from its voxel chords), skull thickness
    (mm; mean of the vertex and both lateral rays from the origin), brain-parenchyma, intracranial and
    structure volumes (mL)."""
    lab = geom.labels_zyx
    dx, dy, dz = geom.voxel_size_mm
    k0, j0, i0 = _index(geom, "z", 0.0), _index(geom, "y", 0.0), _index(geom, "x", 0.0)
    body = lab[k0] != 0
    width = body[j0, :].sum() * dx
    length = body[:, i0].sum() * dy
    skull = _ids(geom, ["skull"])[0]
    t_vertex = (lab[k0:, j0, i0] == skull).sum() * dz
    t_left = (lab[k0, j0, i0:] == skull).sum() * dx
    t_right = (lab[k0, j0, :i0 + 1] == skull).sum() * dx
    out = {
        "head_circumference_cm": _ramanujan(length / 2, width / 2) / 10.0,
        "head_length_mm": float(length), "head_width_mm": float(width),
        "skull_thickness_mm": float((t_vertex + t_left + t_right) / 3),
        "skull_thickness_vertex_mm": float(t_vertex),
        "skull_thickness_lateral_mm": float((t_left + t_right) / 2),
        "brain_volume_ml": label_volume_ml(geom, *BRAIN_PARENCHYMA),
        "intracranial_volume_ml": label_volume_ml(geom, *INTRACRANIAL),
    }
    for nm in sorted(set(geom.label_names.values())):
        out[f"volume_{nm}_ml"] = label_volume_ml(geom, nm)
    return out

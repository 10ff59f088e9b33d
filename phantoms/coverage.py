"""Which labels of a paediatric phantom its voxel size loses: a structure smaller than a voxel (the lenses at 5 mm,
the optic nerves of a 1-year-old at 5 mm, the intervertebral discs at 4 mm) gets no voxel centre inside it, and so
no voxels, no RT Struct ROI and no DVH.  Before (2026-12-06) it vanished without a word (phantom audit F3):
:func:`make_head_phantom` now names it in a warning."""
from __future__ import annotations

from functools import lru_cache

from ..geometry import VoxelGeometry
from .generator import make_head_phantom as _generate

#: The voxel size (mm) at which the phantoms draw every label of their age, sex and region: the same labels as at
#: 1 mm (the head at 0.5, 3, 10 and 18 y, both sexes: tests/phantoms/test_phantom_coverage.py; the neuraxis at 1, 5
#: and 15 y, 2026-12-06); a phantom with larger voxels is compared with the same phantom at this size
REFERENCE_VOXEL_MM = 2.0


@lru_cache(maxsize=32)
def _labels_at_reference(age_years: float, sex: str, region: str) -> frozenset[str]:
    return frozenset(_generate(age_years, REFERENCE_VOXEL_MM, sex=sex, region=region).label_names.values())


def missing_labels(geometry: VoxelGeometry) -> list[str]:
    """The labels that the phantom ``geometry`` (from :func:`make_head_phantom`) lacks but the same phantom at
    :data:`REFERENCE_VOXEL_MM` has: those its voxel size lost.  Empty at that size or finer, and for a geometry
    without the phantom's ``meta``."""
    meta = getattr(geometry, "meta", None) or {}
    try:
        v = float(meta["voxel_mm"])
        key = (float(meta["age_years"]), str(meta["sex"]), str(meta["region"]))
    except (KeyError, TypeError, ValueError):
        return []
    if v <= REFERENCE_VOXEL_MM:
        return []
    return sorted(_labels_at_reference(*key) - set(geometry.label_names.values()))


def warn_missing_labels(geometry: VoxelGeometry) -> list[str]:
    """Warn (McprotonWarning; ``mcproton phantom``: one "mcproton: warning:" line) naming the labels the phantom's
    voxel size lost (:func:`missing_labels`); returns them."""
    from .._io.errors import warn

    lost = missing_labels(geometry)
    if lost:
        meta = geometry.meta  # type: ignore[attr-defined]
        warn(f"at {meta['voxel_mm']:g} mm voxels the {meta['age_years']:g} y {meta['sex']} {meta['region']} phantom "
             f"has no {', '.join(lost)}: no voxel centre falls inside them (they are drawn at "
             f"{REFERENCE_VOXEL_MM:g} mm), so they have no voxels, no RT Struct ROI and no DVH; use voxels of "
             f"{REFERENCE_VOXEL_MM:g} mm or smaller to have them", stacklevel=3)
    return lost


def make_head_phantom(age_years: float, voxel_mm: float = 2.0, *, sex: str = "male",
                      region: str = "neuraxis") -> VoxelGeometry:
    """Voxel phantom of a child's head (and spine) at ``age_years`` (0.5..18 y), ``region`` "head", "head_neck" or
    "neuraxis" (default), with labels and ``.meta`` (:func:`mcproton.phantoms.generator.make_head_phantom`, which
    documents it); the labels that ``voxel_mm`` loses (a lens or an optic nerve smaller than a voxel) are named in a
    warning (:func:`warn_missing_labels`)."""
    g = _generate(age_years, voxel_mm, sex=sex, region=region)
    warn_missing_labels(g)
    return g

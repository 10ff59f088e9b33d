"""Procedurally generated paediatric head-and-spine phantoms (issue 5).

``make_head_phantom(age_years, voxel_mm=2.0, *, sex="male", region="neuraxis")`` -> VoxelGeometry with
labels and ``.meta``; ``landmarks(age)``; ``measure_phantom(geometry)``; ``write_phantom_hdf5``.
"""
from .anatomy import anatomy_parameters, published_value
from .generator import LABELS, LABEL_IDS, design, landmarks
from .coverage import make_head_phantom, missing_labels
from .measure import measure_phantom
from .export import label_map_to_masks, read_phantom_hdf5, write_phantom_hdf5

__all__ = ["make_head_phantom", "landmarks", "design", "measure_phantom", "anatomy_parameters",
           "published_value", "write_phantom_hdf5", "read_phantom_hdf5", "label_map_to_masks",
           "LABELS", "LABEL_IDS", "missing_labels"]

"""mcproton: GPU Monte Carlo proton transport for proton therapy (CUDA kernels, with a CPU/OpenMP build
of the same source).

The public API, for research scripts::

    import mcproton as mcp
    geom = mcp.box_phantom("water", size_mm=(100, 100, 200), voxel_mm=(2, 2, 0.5))
    res = mcp.simulate(geom, mcp.Beam.pencil(150.0, position_mm=(0, 0, -10)), mcp.RunSettings(primaries=10_000))
    res.save("water.h5")
    res = mcp.DoseResult.load("water.h5")

Every name in ``__all__`` is imported from its module on first use (PEP 562), so ``import mcproton`` stays
fast and does not load numpy, the physics tables or a backend; so are the public submodules (``mcp.dicom``,
``mcp.dvh``, ``mcp.body``, ``mcp.rbe``, ``mcp.phantoms``, ...: ``_SUBMODULES``), whatever else the script
imported first.  Modules whose names start with ``_`` are private: their contents may change without notice.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"   # the one source of the version: pyproject reads it ([tool.setuptools.dynamic])

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    # running
    "simulate": "mcproton.run", "sum_results": "mcproton.run", "DoseResult": "mcproton.run",
    "RunSettings": "mcproton.settings", "PhysicsSettings": "mcproton.settings",
    # sources
    "Beam": "mcproton.source", "Spot": "mcproton.source", "RangeShifterSlab": "mcproton.source",
    # geometry and materials
    "VoxelGeometry": "mcproton.geometry", "box_phantom": "mcproton.geometry", "slab_phantom": "mcproton.geometry",
    "resample_blocks": "mcproton.geometry", "slab_ct_geometry": "mcproton._io.slab_ct",
    "Material": "mcproton.materials", "get_material": "mcproton.materials", "list_materials": "mcproton.materials",
    # DICOM / patient workflow (mcproton.dicom has the rest)
    "load_ct_series": "mcproton.dicom", "HUCalibration": "mcproton.dicom", "load_rtplan": "mcproton.dicom",
    "plan_to_beams": "mcproton.dicom", "load_beam_model": "mcproton.dicom", "write_rtdose": "mcproton.dicom",
    "write_result_rtdose": "mcproton.dicom", "StudyReference": "mcproton.dicom",
    # warnings of mcproton's own (filter or catch them by class)
    "McprotonWarning": "mcproton._io.errors", "McprotonRuntimeWarning": "mcproton._io.errors",
    # the independent plan check (docs/check.md): the function itself, with its signature and parameters
    "check": "mcproton._check.api",
}

#: the public submodules (README, Layout: "Public: ..."; phantoms and validation are installed inside the package),
#: each an attribute of ``mcproton`` imported on first use (``mcp.dicom.dose_contents`` works after
#: ``import mcproton as mcp`` alone).  Not in ``__all__``: ``from mcproton import *`` would import them all.
_SUBMODULES = ("settings", "config", "run", "source", "geometry", "materials", "physics", "dicom", "dvh", "body",
               "rbe", "plots", "commission", "planning", "demo", "bench", "cli", "errors", "phantoms", "validation")

__all__ = [  # "__version__" and the keys of _LAZY (tests/test_public_api.py keeps them equal)
    "__version__", "check",
    "simulate", "sum_results", "DoseResult", "RunSettings", "PhysicsSettings",
    "Beam", "Spot", "RangeShifterSlab",
    "VoxelGeometry", "box_phantom", "slab_phantom", "resample_blocks", "slab_ct_geometry",
    "Material", "get_material", "list_materials",
    "load_ct_series", "HUCalibration", "load_rtplan", "plan_to_beams", "load_beam_model", "write_rtdose",
    "write_result_rtdose", "StudyReference", "McprotonWarning", "McprotonRuntimeWarning",
]


def __getattr__(name: str) -> Any:
    import importlib

    mod = _LAZY.get(name)
    if mod is not None:
        value = getattr(importlib.import_module(mod), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"mcproton.{name}")   # the import also sets the attribute
    else:
        raise AttributeError(f"module 'mcproton' has no attribute {name!r}")
    globals()[name] = value      # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))

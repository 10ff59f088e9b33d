"""Imported first by the scripts in this folder when they run from a source checkout (``python
phantoms/make_figures.py``): makes ``mcproton.phantoms`` this folder, as an install would."""
import importlib.util
import sys
from pathlib import Path

_root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_root))

import mcproton  # noqa: E402

_spec = importlib.util.spec_from_file_location("mcproton.phantoms", _root / "phantoms" / "__init__.py",
                                               submodule_search_locations=[str(_root / "phantoms")])
_mod = importlib.util.module_from_spec(_spec)
sys.modules["mcproton.phantoms"] = _mod
_spec.loader.exec_module(_mod)
mcproton.phantoms = _mod

"""Make ``mcproton.phantoms`` importable from a source checkout that was not pip-installed
(pyproject maps the top-level ``phantoms/`` folder to ``mcproton.phantoms``)."""
import importlib.util
import sys
from pathlib import Path

import mcproton

_root = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("mcproton.phantoms") is None:
    _spec = importlib.util.spec_from_file_location(
        "mcproton.phantoms", _root / "phantoms" / "__init__.py",
        submodule_search_locations=[str(_root / "phantoms")])
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["mcproton.phantoms"] = _mod
    _spec.loader.exec_module(_mod)
    mcproton.phantoms = _mod

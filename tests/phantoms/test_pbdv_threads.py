"""The planner's Bragg curve (scipy's pbdv) is safe beside other threads with every scipy it may meet (the
deployment audit, F2): scipy 1.10-1.12's pbdv allocates with Python's allocator where NumPy has let go of the
interpreter lock, and the planner calls it in a worker thread beside its own Python work (a segfault in about one
demo in two).  pyproject.toml asks for scipy >= 1.13; an older scipy (system packages, --no-deps) gets pbdv in
slices that NumPy runs with the lock held."""
import re
from pathlib import Path

import numpy as np
import pytest
import scipy
import scipy.special

from mcproton.planning import kernel as K

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    import tomli as tomllib


@pytest.fixture
def scipy_version(monkeypatch):
    """Set the scipy version that mcproton.planning.kernel sees."""
    def set_version(v: str) -> None:
        monkeypatch.setattr(scipy, "__version__", v)
        K._pbdv_needs_gil.cache_clear()

    yield set_version
    K._pbdv_needs_gil.cache_clear()


@pytest.mark.parametrize("version, needs", [("1.10.1", True), ("1.11.4", True), ("1.12.0", True),
                                            ("1.13.0", False), ("1.13.1", False), ("1.17.1", False),
                                            ("2.0.0", False), ("1.14.0rc1", False), ("1.12.0rc2", True)])
def test_pbdv_needs_the_lock_before_scipy_1_13(scipy_version, version, needs):
    scipy_version(version)
    assert K._pbdv_needs_gil() is needs


def test_old_scipy_pbdv_runs_in_slices_the_lock_is_held_for(scipy_version, monkeypatch):
    """With scipy < 1.13 every pbdv call of the Bragg curve covers at most NUMPY_GIL_LOOP_THRESHOLD values (NumPy
    keeps the interpreter lock for such a loop; pbdv_wrap's PyMem_Malloc is then safe), with the same curve as
    one call; with scipy >= 1.13 one call per term, as before."""
    real = scipy.special.pbdv
    sizes: list[int] = []

    def counting_pbdv(v, x):
        sizes.append(np.size(x))
        return real(v, x)

    z = np.linspace(0, 8.5, 20_000)                    # 100 MeV (range ~7.7 cm): ~3000 points near the peak
    scipy_version("1.17.1")
    monkeypatch.setattr(scipy.special, "pbdv", counting_pbdv)
    whole = K.bortfeld_idd(z, 100.0, 0.8)
    assert len(sizes) == 2 and max(sizes) > K.NUMPY_GIL_LOOP_THRESHOLD
    sizes.clear()
    scipy_version("1.10.1")
    sliced = K.bortfeld_idd(z, 100.0, 0.8)
    assert max(sizes) <= K.NUMPY_GIL_LOOP_THRESHOLD and len(sizes) > 2
    assert np.array_equal(whole, sliced)


def test_pyproject_asks_for_scipy_1_13():
    """The declared lower bound is one whose pbdv is thread-safe."""
    root = Path(__file__).resolve().parents[2]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    scipy_dep = next(d for d in deps if re.match(r"scipy\b", d))
    low = re.search(r">=\s*(\d+)\.(\d+)", scipy_dep)
    assert low is not None and (int(low.group(1)), int(low.group(2))) >= (1, 13), scipy_dep

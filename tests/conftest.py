"""Test configuration: one marker table (like pymedphys's SKIPPING_CONFIG) and the backend fixture.

Markers: gpu (auto-skipped without CuPy and a CUDA device), slow (only with `-m slow`), validation,
nvrtc (GPU compilation with NVRTC; needs cuda-bindings + nvidia-cuda-nvrtc, no GPU; skipped when they are
missing unless MCPROTON_REQUIRE_NVRTC=1, which CI sets so that the check can never be skipped there).

MCPROTON_TEST_HEADPHANTOM_CT: the folder of the DCPT head-phantom CT slices (not in the repository; examples/
headphantom_rs.toml says where to get them); the tests that read that real CT (fixture ``dcpt_head_ct``) are skipped
without it, saying so.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import sys

import pytest

from mcproton._backend import cuda_available

_GPU_OK, _GPU_WHY = cuda_available()

#: the demo's plan cache (mcproton/planning/_plan_cache.py) off in every test, and in the demos and commands the tests
#: start in fresh interpreters (they inherit it): a plan another test or an earlier session stored would be read in
#: place of the planner a test replaces or makes fail, and the tests would write into the user's ~/.cache; the tests
#: of the cache turn it on with a folder of their own (tests/phantoms/test_plan_cache.py)
os.environ["MCPROTON_PLAN_CACHE"] = "0"

#: whether pymedphys is installed here, looked for once, before a test hides it: pymedphys 0.41 declares Python
#: < 3.13, so `pip install -e ".[test]"` leaves it out on a newer Python (pyproject; the packaging audit of
#: 2026-12-07, F2)
PYMEDPHYS_INSTALLED = importlib.util.find_spec("pymedphys") is not None
_NO_PYMEDPHYS = ("mcproton check needs pymedphys, which is not installed: pip install 'pymedphys>=0.41' (pymedphys "
                 "0.41 installs on Python 3.10-3.12)")


@pytest.fixture(autouse=True, scope="session")
def skip_the_check_without_pymedphys():
    """Where pymedphys is not installed, a test whose ``mcproton check`` asks for it (its first step,
    ``mcproton._optional.require``) is skipped, saying so and how to install it, instead of failing on the check's
    refusal; a test that hides pymedphys itself (``sys.modules["pymedphys"] = None``) gets the refusal it tests.
    The tests that call pymedphys themselves skip with ``pytest.importorskip("pymedphys")``, and those whose check
    cannot skip from inside (run in a subprocess, or with every exception caught) are marked ``needs_pymedphys``."""
    if PYMEDPHYS_INSTALLED:
        yield
        return
    import mcproton._check.api as api
    import mcproton._optional as optional

    def require(module, what):
        if module == "pymedphys" and "pymedphys" not in sys.modules:   # not installed (not hidden by the test)
            pytest.skip(_NO_PYMEDPHYS)
        return optional_require(module, what)

    optional_require = optional.require
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(optional, "require", require)
        mp.setattr(api, "require", require)
        yield


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption("--update-regression", action="store_true", default=False,
                     help="rewrite tests/regression/*/results_true.json from this run (tests/regression/README.md)")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run-slow") or "slow" in (config.getoption("-m") or "")
    for item in items:
        if "gpu" in item.keywords and not _GPU_OK:
            item.add_marker(pytest.mark.skip(reason=f"no GPU: {_GPU_WHY}"))
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow test: run with --run-slow or -m slow"))
        if "needs_pymedphys" in item.keywords and not PYMEDPHYS_INSTALLED:
            item.add_marker(pytest.mark.skip(reason=_NO_PYMEDPHYS))


from fake_cupy import install_fake_cupy  # noqa: E402,F401  (re-exported: tests import it from here too)
from speedups import blank_report_figures  # noqa: E402  (tests/speedups.py: importable by name from any test folder)

BACKENDS = ["cpu", "cuda-emulated", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Each engine test runs on both backends with the same expectations (cuda skipped without a GPU).

    "cuda-emulated" runs the test through the CUDA backend's Python side with a strict CuPy stand-in
    (tests/fake_cupy.py) whose kernel launches execute on the CPU: it checks the GPU data flow and launch
    arguments in CI, without a GPU; the test sees the backend name "cuda"."""
    if request.param != "cuda-emulated":
        yield request.param
        return
    fake = install_fake_cupy(monkeypatch)
    yield "cuda"
    assert fake.launches, "the test never launched a kernel through the emulated CUDA backend"
    from mcproton._backend import get_backend

    get_backend.cache_clear()  # drop the backend built on the fake before the fake leaves sys.modules


def nvrtc_required() -> bool:
    return os.environ.get("MCPROTON_REQUIRE_NVRTC", "") == "1"


#: the environment variable naming the DCPT head-phantom CT folder for the tests that read it (``dcpt_head_ct``)
HEADPHANTOM_CT_VAR = "MCPROTON_TEST_HEADPHANTOM_CT"


@pytest.fixture
def dcpt_head_ct():
    """The folder of the DCPT head-phantom CT (nbassler/dicomexport 7397eb6, res/test_studies/DCPT_headphantom/
    CT.*.dcm: 512 x 512 x 177 slices, ~90 MB, so not in the repository) named by MCPROTON_TEST_HEADPHANTOM_CT; the
    test is skipped, saying what to put where, without it, and fails where it names no folder of CT slices.  Before
    (tests audit 21 F5) the tests read a fixed /tmp/headphantom/ct, or other sessions' audit folders, wherever
    someone had left them."""
    from pathlib import Path

    where = os.environ.get(HEADPHANTOM_CT_VAR, "")
    if not where:
        pytest.skip(f"the DCPT head-phantom CT is not in the repository: set {HEADPHANTOM_CT_VAR} to a folder "
                    "holding its slices (CT.*.dcm of res/test_studies/DCPT_headphantom/ in nbassler/dicomexport "
                    "at 7397eb6; examples/headphantom_rs.toml says how to get them) to run this test")
    folder = Path(where)
    assert folder.is_dir() and any(folder.glob("CT*.dcm")), \
        f"{HEADPHANTOM_CT_VAR}={where}: not a folder holding the head phantom's CT.*.dcm slices"
    return folder


@pytest.fixture
def warnings_to_stderr():
    """Warnings printed on stderr, each time, as the command line prints them (mcproton's own as one ``mcproton:
    warning:`` line): pytest otherwise records them in its summary, and a test reading stderr with capsys would not
    see them."""
    import sys
    import warnings

    from mcproton.cli import _warning_line

    fmt = _warning_line(warnings.formatwarning)

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(fmt(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


@pytest.fixture(scope="session")
def demo_plan_4mm_shared():
    """The demo's plan (the posterior-fossa boost of mcproton/demo.py, default optimiser settings, dcpt_v5) on the
    5-year-old head phantom at 4 mm instead of 2, as (geometry, plan): built once per session (10-30 s on 2 cores)
    for the tests of five files that each built the same plan.  Take it through :func:`demo_plan_4mm` (or
    ``copy.deepcopy`` it in a module fixture), never directly: a test that changed it would change the others'."""
    from mcproton.demo import demo_phantom_and_target
    from mcproton.phantoms.reference_plans import posterior_fossa_plan

    g, _ = demo_phantom_and_target(5, 4.0)       # the demo's phantom, as run_demo makes it
    return g, posterior_fossa_plan(g)


@pytest.fixture
def demo_plan_4mm(demo_plan_4mm_shared):
    """(geometry, plan) of :func:`demo_plan_4mm_shared`, a deep copy for this test alone (0.06 s)."""
    return copy.deepcopy(demo_plan_4mm_shared)


@pytest.fixture
def report_figures_blank(monkeypatch):
    """``mcproton check`` writes its report (check.html, check.json, RD_mc.dcm) with a blank image in place of
    each figure, for the tests that read the report's text, its JSON or its RT Dose and not its figures: drawing
    and encoding them (maps, histograms, DVH, beams) is about half of a check's time (11 of 22 s of a 3-beam check
    on 2 cores).  The figures' names still come from the report's own figure_builders (its names, planes and
    structures chosen as before); only drawing one is skipped.  The figures themselves are tested in
    tests/check/test_report.py and test_report_workers.py."""
    blank_report_figures(monkeypatch)

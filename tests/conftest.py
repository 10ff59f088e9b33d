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


#: pytest-xdist (``-n auto``, README's test command): at most this many workers; each holds up to ~1.1 GB (maximum
#: resident size measured 2026-12-07, 2 workers on 2 cores) and runs the CPU kernel on all the CPUs it sees, so more
#: workers than a few only oversubscribe the cores
XDIST_MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: a worker per CPU this process may use (mcproton._cpus.usable_cpus: its affinity and cgroup CPU
    quota, as the engine counts them; xdist's own count is the machine's physical cores), at most
    :data:`XDIST_MAX_WORKERS` and one per 1.5 GB of the memory it may allocate (mcproton._run.inputs.available_memory:
    MemAvailable within its cgroup and ulimit); 0 (the tests run in this process) with one CPU."""
    from mcproton._cpus import usable_cpus
    from mcproton._run.inputs import available_memory

    mem = available_memory()
    n = min(usable_cpus(), XDIST_MAX_WORKERS, int(mem.available // 1.5e9) if mem is not None else XDIST_MAX_WORKERS)
    return n if n >= 2 else 0


def pytest_configure(config):
    """Under pytest-xdist, a test file's tests go to one worker (``--dist loadfile``) unless the command line says
    otherwise: the module fixtures that build a check case or a plan (tests/check/test_check.py's ``base``, 5-10 s)
    are then built once, not once per worker.  Without pytest-xdist, ``-n`` is refused saying what to install."""
    if getattr(config.option, "numprocesses_without_xdist", None) is not None:
        raise pytest.UsageError(NO_XDIST)
    if getattr(config.option, "dist", "no") == "load" and not any(
            a.startswith("--dist") or a == "-d" for a in config.invocation_params.args):
        config.option.dist = "loadfile"


#: set (to the pid of the pytest process that started it) in the fresh process of the ``single_thread`` tests
FRESH_PROCESS_VAR = "MCPROTON_TEST_FRESH_PROCESS"

#: the environment the fresh process gets: this process's before any test ran (review R-b R4: taken when the first
#: marked test of a file ran, it held what that test's fixtures had set with monkeypatch.setenv, for every marked test
#: of the file)
_ENV_AT_START = dict(os.environ)

#: the results of the tests marked ``single_thread``, run in a fresh process, by test file: {file: {(JUnit classname,
#: name): (outcome, message)}} (:func:`pytest_pyfunc_call`, :func:`_junit_key`)
_FRESH_PROCESS_RESULTS: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test marked ``single_thread`` (it forks mcproton's worker processes, which need a process with no other
    Python thread: mcproton._forked.BackgroundProcess.available) run where another thread is running: the file's
    marked tests are run once in a fresh pytest process, and each reports its outcome there, its failure's text
    included.  Elsewhere the test runs here, as any other.  The thread is one an earlier test of the same process
    left running: dask's offload thread ("Dask-Offload_0", daemon, for the life of the process) after
    tests/engine/test_cuda_emulated.py's dask test.  As one process the suite ran tests/check before it; under
    pytest-xdist a worker can take tests/engine first, and four figure-worker tests of tests/check/
    test_report_workers.py failed there ("a forked figure worker needs Linux and no other Python thread"; measured
    2026-12-07, 2 workers)."""
    import threading

    if (pyfuncitem.get_closest_marker("single_thread") is None or threading.active_count() == 1
            or os.environ.get(FRESH_PROCESS_VAR)):   # already in the fresh process: run here, as it is
        return None
    results = _FRESH_PROCESS_RESULTS.get(str(pyfuncitem.path))
    if results is None:
        results = _FRESH_PROCESS_RESULTS[str(pyfuncitem.path)] = _run_in_a_fresh_process(pyfuncitem)
    outcome, message = results.get(_junit_key(pyfuncitem.nodeid),
                                   ("failed", "the fresh process reported no result for it"))
    if outcome == "skipped":
        pytest.skip(message)
    if outcome != "passed":
        pytest.fail(f"run in a fresh process (it needs one without other threads; tests/conftest.py): {outcome}:\n"
                    f"{message}", pytrace=False)
    return True


def _junit_key(nodeid: str) -> tuple[str, str]:
    """A test's (classname, name) as pytest's JUnit XML writes them: the name alone is not one test's (two classes of
    a file can hold a test of the same name; review R-b R2: a failing ``TestA::test_same`` took the result of a
    passing ``TestB::test_same`` and passed)."""
    from _pytest.junitxml import mangle_test_address

    names = mangle_test_address(nodeid)
    return ".".join(names[:-1]), names[-1]


def _run_in_a_fresh_process(item) -> dict[tuple[str, str], tuple[str, str]]:
    """Run the tests marked ``single_thread`` of ``item``'s file in a new pytest process without xdist; their
    outcomes by test name, read from its JUnit XML."""
    import subprocess
    import tempfile
    import xml.etree.ElementTree as ET
    from pathlib import Path

    ids = [i.nodeid for i in item.session.items if i.path == item.path and i.get_closest_marker("single_thread")]
    env = {k: v for k, v in _ENV_AT_START.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env[FRESH_PROCESS_VAR] = str(os.getpid())
    extra = ["--run-slow"] if item.config.getoption("--run-slow") else []
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "results.xml"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                               f"--junitxml={xml}", "--rootdir", str(item.config.rootpath), *extra, *ids],
                              cwd=item.config.rootpath, env=env, capture_output=True, text=True, timeout=1800)
        if not xml.exists():
            said = (proc.stdout + proc.stderr)[-4000:]
            return {_junit_key(i): ("failed", f"pytest ended with {proc.returncode}:\n{said}") for i in ids}
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for case in ET.parse(xml).iter("testcase"):
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                node = case.find(kind)
                if node is not None:
                    outcome = "skipped" if kind == "skipped" else kind
                    message = (node.get("message") or "") if kind == "skipped" else (node.text or node.get("message")
                                                                                       or "")
                    break
            key = (case.get("classname", ""), case.get("name", ""))
            out[key] = ("failed", "two results of this name in the fresh process's JUnit XML") if key in out \
                else (outcome, message)
        return out


#: README's test command (``-n auto``) without pytest-xdist (review R-b R3: pytest said only "unrecognized arguments:
#: -n")
NO_XDIST = ("-n/--numprocesses needs pytest-xdist, which is not installed here (or is turned off with -p no:xdist): "
            "install the test extra, python -m pip install -e \".[test]\" (or pytest-xdist>=3.5 alone), or run the "
            "tests in one process without -n")


def pytest_addoption(parser, pluginmanager):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption("--update-regression", action="store_true", default=False,
                     help="rewrite tests/regression/*/results_true.json from this run (tests/regression/README.md)")
    if not pluginmanager.hasplugin("xdist"):   # -n then says what to install (pytest_configure)
        parser.getgroup("xdist")._addoption(   # (a lowercase short option: the private form, as xdist adds it)
            "-n", "--numprocesses", dest="numprocesses_without_xdist", default=None,
            help="(needs pytest-xdist)")


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

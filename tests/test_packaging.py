"""A non-editable `pip install .` carries the kernels, data tables, phantom and validation data, and the licence
with the third-party notices."""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import mcproton

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: the files that pyproject's license-files puts into the wheel and the sdist
LICENCE_FILES = ("LICENSE", "THIRD_PARTY_NOTICES.md")


def test_non_editable_install_has_kernels_and_data(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    pkg = target / "mcproton"
    src = {p.relative_to(ROOT / "kernels") for p in (ROOT / "kernels").rglob("*") if p.suffix in (".h", ".cu")}
    inst = {p.relative_to(pkg / "kernels") for p in (pkg / "kernels").rglob("*") if p.suffix in (".h", ".cu")}
    assert src and src == inst, f"kernel sources missing from the wheel: {sorted(map(str, src - inst))}"
    for rel in ("py.typed",   # PEP 561: a user's mypy reads the package's annotations (packaging audit 2026-12-07, F7)
                "data/stopping_power/icru90_protons_water.csv", "data/nuclear/icru63_nonelastic_p_elements.csv",
                "data/nuclear/pp_elastic.csv", "data/nuclear/barashenkov_proton_nucleus.csv",
                "data/materials/materials.csv",
                "phantoms/data/tissues.csv", "validation/topas_idd/idd_mc_topas_matrad_generic_water_subset.csv",
                "phantoms/plans/demo_plan_5y_2mm.npz"):   # the default demo's shipped plan (mcproton.demo)
        assert (pkg / rel).is_file(), f"{rel} is not installed"
    # the licence and the third-party notices travel with it (provenance audit 2026-12-06, F1: neither existed)
    (dist,) = target.glob("mcproton-*.dist-info")
    for name in LICENCE_FILES:
        assert (dist / "licenses" / name).read_bytes() == (ROOT / name).read_bytes(), f"{name} not in the wheel"
    meta = (dist / "METADATA").read_text(encoding="utf-8")
    assert "License-Expression: Apache-2.0" in meta
    assert f"\nVersion: {mcproton.__version__}\n" in meta   # the one version (mcproton.__version__)
    assert all(f"License-File: {name}" in meta for name in LICENCE_FILES)
    # the installed package compiles and finds its kernels from anywhere
    code = ("import mcproton._kernels.source as s; t = s.assemble('transport.cu'); "
            "assert 'mcp_transport' in t; print(s.kernels_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert str(target) in out.stdout
    # the code's SHA-256 (check.json's build, --skip-checked's key) is the same for a wheel as for this (editable)
    # install of the same files: the kernels, phantoms and validation are read where each is installed
    from mcproton._build import code_sha256

    code = "import mcproton._build as b; print(b.code_sha256())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == code_sha256()
    # and the planner's code (the shipped plan's recipe key holds it: the review of 2026-12-07's shipped plan, R1),
    # so that the installed package's default demo uses the shipped plan (its recipe key is the checkout's)
    from mcproton.planning._plan_cache import planner_code_sha256

    code = ("import mcproton.planning._plan_cache as PC; from mcproton.demo import default_plan_inputs as d, "
            "shipped_plan_file as f; g, t, _, _, s, m = d(); p, said, why = PC.shipped_plan(f(), g, t, s, m); "
            "assert p is not None, why; print(PC.planner_code_sha256(), said['file'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [planner_code_sha256(), str(pkg / "phantoms" / "plans" / "demo_plan_5y_2mm.npz")]


def test_licence_is_the_whole_apache_2_text():
    """LICENSE is the complete Apache License 2.0 (copied from the standard text; all nine sections and the
    appendix), as pyproject's `license = "Apache-2.0"` says."""
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert re.search(r"Apache License\s+Version 2\.0, January 2004\s+http://www\.apache\.org/licenses/", text)
    for n, title in enumerate(("Definitions", "Grant of Copyright License", "Grant of Patent License",
                               "Redistribution", "Submission of Contributions", "Trademarks",
                               "Disclaimer of Warranty", "Limitation of Liability",
                               "Accepting Warranty or Additional Liability"), start=1):
        assert f"   {n}. {title}." in text, title
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = "Apache-2.0"' in pyproject
    assert 'license-files = ["LICENSE", "THIRD_PARTY_NOTICES.md"]' in pyproject


def _named_in_notices() -> list[str]:
    """The paths and patterns THIRD_PARTY_NOTICES.md names in backquotes ({a,b} expanded)."""
    out = []
    for tok in re.findall(r"`([^`\s]+)`", (ROOT / "THIRD_PARTY_NOTICES.md").read_text(encoding="utf-8")):
        m = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", tok)
        out += [m.group(1) + alt + m.group(3) for alt in m.group(2).split(",")] if m else [tok]
    return out


def test_every_shipped_third_party_data_file_is_in_the_notices():
    """Each data file of the wheel whose provenance header names an outside source or licence (or that is a
    DICOM copy) is named in THIRD_PARTY_NOTICES.md by its path, its folder or a pattern: a file added without
    its notice fails here."""
    names = _named_in_notices()
    listed = subprocess.run(["git", "ls-files", "mcproton/data", "validation", "phantoms/data"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    outside = re.compile(r"CC BY|Apache|\bMIT\b|GPL|Geant4|licen[cs]e|BSD|github", re.I)
    missing, checked = [], 0
    for rel in listed:
        p = ROOT / rel
        if p.suffix == ".dcm":
            third_party = True
        elif p.suffix in (".csv", ".toml"):
            lines = p.read_text(encoding="utf-8", errors="replace").splitlines()[:80]
            head = [ln for ln in lines if ln.startswith("#")]
            third_party = bool(outside.search("\n".join(head)))
        else:
            continue
        if not third_party:
            continue
        checked += 1
        if not any(rel.startswith(n) if n.endswith("/") else fnmatch.fnmatch(rel, n) for n in names):
            missing.append(rel)
    assert checked >= 50 and not missing, missing


#: the version a copy of the checkout is given by its mcproton/__init__.py alone, to show that the built metadata
#: takes it from there (:func:`built`)
BUMPED_VERSION = "99.1.2"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel, the build's output) of a copy of this checkout's files (tracked, and new ones git does not
    ignore; no .git, as in an unpacked archive) whose mcproton/__version__ alone is changed to
    :data:`BUMPED_VERSION`, built by setuptools' own backend in the version pyproject's build-system asks for
    (installed into a folder of its own, as pip's build isolation installs it)."""
    tmp = tmp_path_factory.mktemp("build")
    tools = tmp / "tools"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tools),
                    *PYPROJECT["build-system"]["requires"]], check=True, capture_output=True, timeout=300)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    src = tmp / "src"
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    init = src / "mcproton" / "__init__.py"
    text = init.read_text(encoding="utf-8")
    assert f'__version__ = "{mcproton.__version__}"' in text
    init.write_text(text.replace(f'__version__ = "{mcproton.__version__}"', f'__version__ = "{BUMPED_VERSION}"'))
    code = ("import sys, setuptools.build_meta as b; out = sys.argv[1]; "
            "print('SDIST', b.build_sdist(out)); print('WHEEL', b.build_wheel(out))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp / "dist")], cwd=src, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tools)}, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    names = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("SDIST ", "WHEEL ")))
    return tmp / "dist" / names["SDIST"], tmp / "dist" / names["WHEEL"], out.stdout + out.stderr


def test_the_version_is_mcproton_s_version_alone(built):
    """One source of the version (packaging audit 2026-12-07, F9: pyproject and __init__.py each held it, and a copy
    with only pyproject bumped installed as 0.2.0 while ``mcproton --version`` said 0.1.0): pyproject reads
    mcproton.__version__, and the installed metadata says the same."""
    import importlib.metadata

    assert "version" not in PYPROJECT["project"] and PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mcproton.__version__"}
    sdist, wheel, _ = built
    assert sdist.name == f"mcproton-{BUMPED_VERSION}.tar.gz" and wheel.name.startswith(f"mcproton-{BUMPED_VERSION}-")
    with zipfile.ZipFile(wheel) as z:
        assert f"\nVersion: {BUMPED_VERSION}\n" in z.read(f"mcproton-{BUMPED_VERSION}.dist-info/METADATA").decode()
    # this (editable) install: reinstall it (pip install -e .) after changing the version
    assert importlib.metadata.version("mcproton") == mcproton.__version__


def test_the_build_is_quiet_about_data_folders(built):
    """The kernels' header folders and the data folders are package data, not packages: setuptools warned "Package
    would be ignored" 15 times for them (packaging audit 2026-12-07, F6)."""
    assert "would be ignored" not in built[2] and "is absent from the `packages` configuration" not in built[2]


def test_the_sdist_has_no_partial_test_suite_and_the_readme_s_links_lead_to_files(built):
    """The sdist holds no tests (setuptools put 27 of the 302 files of tests/ into it, which could not run: packaging
    audit 2026-12-07, F6; they are run from a clone), and every file the README links to.  No example reads a file of
    the tests (review 2a of 2026-12-07, R4: examples/headphantom_rs.toml, headphantom_rs_compare.py and
    aptg_plan06_struct.py read tests/data, which the sdist leaves out): none of its scripts and configs names
    ``tests`` (as "tests/..." or as a path part, "tests" / "data"); the DICOM they read are in examples/data/."""
    sdist, wheel, _ = built
    with tarfile.open(sdist) as t:
        top = f"mcproton-{BUMPED_VERSION}/"
        names = {m.name[len(top):] for m in t.getmembers() if m.isfile()}
        examples = {n: t.extractfile(top + n).read().decode("utf-8") for n in names
                    if n.startswith("examples/") and n.endswith((".py", ".toml"))}
    assert not [n for n in names if n.startswith("tests/")]
    assert len(examples) >= 6, sorted(examples)
    naming = sorted(n for n, text in examples.items() if re.search(r"\btests\b", text))
    assert not naming, f"examples that read the tests' files, which the sdist does not hold: {naming}"
    named = {(n, f) for n, text in examples.items()   # the files of examples/data/ they name are there
             for f in re.findall(r"\bdata/([\w.]+\.dcm)", text) + re.findall(r"\"data\" / \"([\w.]+\.dcm)\"", text)}
    assert {f for _, f in named} >= {"RN_headphantom_rs.dcm", "RS_plan03.dcm", "RN_plan02_mono.dcm"}, named
    assert not [(n, f) for n, f in named if f"examples/data/{f}" not in names]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", readme)}
    targets = {t for t in targets if t and not re.match(r"[a-z]+:", t)}
    assert targets, "the README's relative links were not found"
    missing = sorted(t for t in targets if t.rstrip("/") not in names and not any(n.startswith(t.rstrip("/") + "/")
                                                                                 for n in names))
    assert not missing, f"the sdist lacks what the README links to: {missing}"
    with zipfile.ZipFile(wheel) as z:   # the wheel: the package only (no docs, examples or tests)
        wheel_names = z.namelist()
    assert "mcproton/py.typed" in wheel_names and "mcproton/__main__.py" in wheel_names
    assert not [n for n in wheel_names if n.split("/", 1)[0] in ("docs", "examples", "tests")]


def test_every_pymedphys_requirement_leaves_out_the_pythons_it_does_not_install_on():
    """pymedphys 0.41 declares Python < 3.13 (mcproton._optional.PYMEDPHYS_PYTHON): every requirement of it, in the
    dependencies and in every extra, carries that marker, so that `pip install -e ".[test]"` (README step 2) resolves
    on every Python that requires-python allows (packaging audit 2026-12-07, F2: the test and validation extras had
    no marker, and pip's resolver refused them on 3.13)."""
    from mcproton._optional import PYMEDPHYS_PYTHON

    marker = "python_version<'%d.%d'" % PYMEDPHYS_PYTHON
    project = PYPROJECT["project"]
    reqs = [("dependencies", r) for r in project["dependencies"]]
    reqs += [(f"[{extra}]", r) for extra, rs in project["optional-dependencies"].items() for r in rs]
    found = [(where, r) for where, r in reqs if re.match(r"pymedphys\b", r)]
    assert {w for w, _ in found} >= {"dependencies", "[test]"}, found
    wrong = [(where, r) for where, r in found if r.replace(" ", "").partition(";")[2] != marker]
    assert not wrong, f"pymedphys without the marker {marker}: {wrong}"


def test_python_m_mcproton_is_the_command_line(tmp_path):
    """``python -m mcproton`` runs the command line (packaging audit 2026-12-07, F8: "No module named
    mcproton.__main__"), for where the ``mcproton`` script is not on the PATH."""
    out = subprocess.run([sys.executable, "-m", "mcproton", "--version"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"mcproton {mcproton.__version__}", out.stderr
    out = subprocess.run([sys.executable, "-m", "mcproton", "no-such-command"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "usage: mcproton " in out.stderr, out.stderr

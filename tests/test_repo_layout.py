"""The README's Layout section matches the tree (it cannot drift), and pyproject installs every package.

Rules: every path the Layout block names exists; every tracked top-level folder of the repository has an
entry; every public module (``mcproton/<name>.py``, no leading underscore) and every package
(``mcproton/<name>/``) of ``mcproton/`` is named in its entry. A new private module (``_name.py``) or a new
module inside a listed folder does not need a README edit.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: a path token of the Layout block: a folder (ends with /), a path with /, or a file with these suffixes
FILE_SUFFIXES = (".py", ".cu", ".h", ".md", ".toml")


def layout_entries() -> dict[str, str]:
    """{top-level folder: its description} from the code block of the README's Layout section."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout\n")
    end = text.find("\n## ", start + 3)
    section = text[start:end if end >= 0 else len(text)]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README's Layout section has no code block"
    entries: dict[str, str] = {}
    current = None
    for line in block.group(1).splitlines():
        m = re.match(r"^(\S+)/\s+(.*)$", line)
        if m:
            current = m.group(1)
            entries[current] = m.group(2)
        elif line.strip():
            assert current is not None, f"Layout line outside an entry: {line!r}"
            entries[current] += " " + line.strip()
    return entries


def path_tokens(description: str) -> list[str]:
    tokens = re.findall(r"(?<![\w<.>/-])([\w.-]+(?:/[\w.-]+)*/?)", description)
    return [t for t in tokens if "/" in t or t.endswith(FILE_SUFFIXES)]


def tracked_top_level_folders() -> set[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=True)
        return {f.split("/", 1)[0] for f in out.stdout.splitlines() if "/" in f and not f.startswith(".")}
    except (OSError, subprocess.SubprocessError):   # no git (an unpacked source archive): the folders on disk
        return {d.name for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith(".")
                and not d.name.endswith(".egg-info") and d.name not in ("build", "dist", "__pycache__")}


def test_path_tokens_rule():
    """The parser finds folders, paths and file names, and ignores words and placeholders."""
    text = "core/ (portability), transport.cu = entry, kernels/params.h, <case>/ = case.py, RT Dose"
    assert path_tokens(text) == ["core/", "transport.cu", "kernels/params.h", "case.py"]


def test_every_path_in_the_layout_exists():
    missing = []
    for top, desc in layout_entries().items():
        if not (ROOT / top).is_dir():
            missing.append(f"{top}/")
            continue
        for tok in path_tokens(desc):
            rel = tok.rstrip("/")
            found = (ROOT / rel).exists() or (ROOT / top / rel).exists()
            if not found and "/" not in rel:      # a file name: anywhere inside the entry's folder
                found = any((ROOT / top).rglob(rel))
            if not found:
                missing.append(f"{top}/: {tok}")
    assert not missing, f"README Layout names paths that do not exist (update the Layout section): {missing}"


def test_every_top_level_folder_has_a_layout_entry():
    entries = layout_entries()
    absent = sorted(tracked_top_level_folders() - set(entries))
    assert not absent, f"top-level folders missing from the README Layout section: {absent}"


def test_every_public_module_and_package_of_mcproton_is_named():
    desc = layout_entries()["mcproton"]
    pkg = ROOT / "mcproton"
    modules = sorted(p.stem for p in pkg.glob("*.py") if not p.name.startswith("_"))
    packages = sorted(d.name for d in pkg.iterdir() if (d / "__init__.py").is_file())
    unnamed = [m for m in modules if not re.search(rf"(?<![\w/.]){re.escape(m)}\b(?!/)", desc)]
    unnamed += [f"{d}/" for d in packages if not re.search(rf"(?<![\w/.]){re.escape(d)}/", desc)]
    assert not unnamed, f"mcproton modules/packages missing from the README Layout section: {unnamed}"


def test_pyproject_installs_every_package():
    """Every folder with an __init__.py under mcproton/, kernels/, phantoms/ and validation/ is in pyproject's
    packages list, so that a non-editable install carries it."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    roots = {"mcproton": "mcproton", **{name: folder for name, folder in tool["package-dir"].items()}}
    missing = []
    for dotted, folder in roots.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" in rel:
                continue
            name = ".".join((dotted,) + rel)
            if name not in listed:
                missing.append(name)
    assert not missing, f"packages missing from pyproject [tool.setuptools] packages: {missing}"

"""No public example imports a private module: examples/*.py and the Python code blocks of README.md and
docs/*.md use only the public API (``mcproton.<name>`` where no module part starts with ``_``)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"```(?:python|py|pycon)\n(.*?)```", re.S)
_IMPORT_RE = re.compile(r"^\s*(?:>>>\s*)?(?:from\s+(mcproton[\w.]*)\s+import\s+([\w, ()]+)"
                        r"|import\s+(mcproton[\w.]*))", re.M)


def _private(module: str, names: list[str] = ()) -> bool:
    parts = module.split(".")
    if parts[0] != "mcproton":
        return False
    return any(p.startswith("_") for p in parts[1:]) or any(n.startswith("_") for n in names)


def private_imports(source: str) -> list[str]:
    """The private mcproton imports in Python ``source`` (an AST walk; a regex when it does not parse, e.g. a
    doctest block)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        found = []
        for m in _IMPORT_RE.finditer(source):
            mod = m.group(1) or m.group(3)
            names = [n.strip(" ()") for n in (m.group(2) or "").split(",")]
            if _private(mod, names):
                found.append(m.group(0).strip())
        return found
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [a.name for a in node.names]
            if _private(node.module, names):
                found.append(f"from {node.module} import {', '.join(names)}")
    return found


def _sources() -> list[tuple[str, str]]:
    out = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "examples").glob("*.py"))]
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for k, block in enumerate(_FENCE.findall(md.read_text())):
            out.append((f"{md.relative_to(ROOT)} (python block {k + 1})", block))
    return out


def test_the_scan_finds_private_imports():
    """The checker itself can fail: each form of a private import is found, public ones are not."""
    assert private_imports("from mcproton._io.hdf5 import read_dose_hdf5\n")
    assert private_imports("import mcproton._io.rtdose as r\n")
    assert private_imports("from mcproton import _check\n")
    assert private_imports(">>> from mcproton._io.hdf5 import read_dose_hdf5\n>>> x = (\n")   # no parse
    assert not private_imports("import mcproton\nfrom mcproton.dicom import write_rtdose\n"
                               "from ._x import y\n")


def test_examples_and_docs_import_no_private_module():
    sources = _sources()
    assert any(name.startswith("examples/") for name, _ in sources), "no examples found: nothing scanned"
    assert any(name.startswith("README.md") for name, _ in sources), "no README python block found"
    bad = [f"{name}: {imp}" for name, src in sources for imp in private_imports(src)]
    assert not bad, ("public examples import private modules (a module starting with '_' may change "
                     "without notice): use the public API (mcproton, mcproton.dicom, DoseResult.load):\n  "
                     + "\n  ".join(bad))

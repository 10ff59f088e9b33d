"""The messages, help texts and records of the installed package send the user only to what an installed mcproton
has (the error-message audit 27, F10): the wheel holds the package alone, without docs/ (tests/test_packaging.py),
so "(docs/beam_model.md)" in a refusal, "Formats and tolerances: docs/beam_model.md" in commission's --help and
"The source of each: docs/check.md" in --print-levels led nowhere.  They name a README section (the README is the
package's description, in the wheel's METADATA), a file installed with the package, or nothing."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import mcproton

ROOT = Path(__file__).resolve().parents[1]
#: the code that is installed (pyproject package-dir: phantoms/ and validation/ as mcproton.phantoms, .validation)
INSTALLED = [ROOT / "mcproton", ROOT / "phantoms", ROOT / "validation"]


def _strings():
    """(file, line, text) of every string constant of the installed code that is not a docstring (f-strings' parts
    included)."""
    for base in INSTALLED:
        for f in sorted(base.rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            docs = {id(n.body[0].value) for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                    and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
            for n in ast.walk(tree):
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
                    yield f.relative_to(ROOT), n.lineno, n.value


def test_no_message_names_a_file_of_docs():
    named = [f"{f}:{line}: {m.group(0)}" for f, line, text in _strings()
             for m in re.finditer(r"\bdocs/[\w./-]+\.md\b", text)]
    assert not named, "the installed package has no docs/: name a README section or an installed file\n" + \
        "\n".join(named)


def test_the_readme_sections_named_exist():
    headings = {ln.lstrip("#").strip() for ln in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
                if ln.startswith("#")}
    named = {(str(f), m.group(1)) for f, _, text in _strings()
             for m in re.finditer(r'README, \\?"([^"\\]+)\\?"', text)}
    assert named, "no README section is named"
    assert not [(f, s) for f, s in named if s not in headings], named


def test_the_beam_model_example_is_installed():
    from mcproton._io.beam_model import BUILTIN, MODEL_EXAMPLE

    example = BUILTIN["dcpt_v5"]
    assert str(example) in MODEL_EXAMPLE and example.is_file()
    assert Path(mcproton.__file__).parent / "data" in example.parents   # package-data "data/**/*"

"""Every text file the package and its scripts open names its encoding (UTF-8): without ``encoding=`` Python uses the
locale's, Windows' ANSI code page (cp1252), where ``python -m mcproton.validation.markdown`` failed on the DCPT
data set's creators "H. Brkić, L. Pasariček" and left an empty REPORT.md, ``phantoms/make_figures.py`` could not
read phantoms/README.md and the ICRU 90 table's header was read as mojibake (the portability audit 27, F9).

ruff's PLW1514 (unspecified-encoding) is a preview rule and misses ``(folder / "x.json").read_text()``, whose type it
cannot infer, so the calls are found here by their shape: ``open(...)``, ``x.open(...)``, ``x.read_text(...)``,
``x.write_text(...)`` in text mode without ``encoding``."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("mcproton", "validation", "phantoms", "kernels", "scripts")
#: ``<name>.open`` calls that are not file opens, or open binary files only
NOT_TEXT_FILES = {"os", "webbrowser", "tarfile", "zipfile", "Image", "h5py", "socket"}
#: the modules whose ``open`` takes the file first and the mode second, as the built-in's
MODULE_OPENS = {"io", "codecs", "gzip", "bz2", "lzma"}


def _mode(call: ast.Call, position: int) -> str | None:
    for kw in call.keywords:
        if kw.arg == "mode":
            return kw.value.value if isinstance(kw.value, ast.Constant) else None
    if len(call.args) > position:
        arg = call.args[position]
        return arg.value if isinstance(arg, ast.Constant) else None
    return "r"


def _names_encoding(call: ast.Call, position: int) -> bool:
    return any(kw.arg == "encoding" for kw in call.keywords) or len(call.args) > position


def unspecified_encodings(root: Path = ROOT) -> list[str]:
    """``file:line: call`` of each text-mode open, read_text or write_text without an encoding."""
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func
                if isinstance(fn, ast.Name) and fn.id == "open" or (
                        isinstance(fn, ast.Attribute) and fn.attr == "open"
                        and not (isinstance(fn.value, ast.Name) and fn.value.id in NOT_TEXT_FILES)):
                    # open(file, mode, buffering, encoding); io.open and gzip.open alike; Path.open(mode, ...)
                    module_open = isinstance(fn, ast.Name) or (isinstance(fn.value, ast.Name)
                                                               and fn.value.id in MODULE_OPENS)
                    position = 1 if module_open else 0
                    mode = _mode(node, position)
                    if (mode is not None and "b" in mode) or _names_encoding(node, position + 2):
                        continue
                elif isinstance(fn, ast.Attribute) and fn.attr in ("read_text", "write_text"):
                    if _names_encoding(node, 0 if fn.attr == "read_text" else 1):
                        continue
                else:
                    continue
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


def test_every_text_file_opened_names_its_encoding():
    missing = unspecified_encodings()
    assert not missing, "text I/O without encoding= (the locale's is cp1252 on Windows):\n" + "\n".join(missing)


def test_the_finder_finds_what_it_is_for(tmp_path):
    """The test can fail: each shape it looks for is found, and the binary and explicit ones are not."""
    (tmp_path / "mcproton").mkdir()
    (tmp_path / "mcproton" / "m.py").write_text(
        "import json, os\nfrom pathlib import Path\n"
        "a = open('x')\nb = open('x', 'w', newline='')\nc = (Path('d') / 'x.json').read_text()\n"
        "Path('y').write_text('t')\nwith Path('z').open('a') as f: pass\n"
        "ok1 = open('x', 'rb')\nok2 = open('x', encoding='utf-8')\nok3 = Path('y').read_text('utf-8')\n"
        "ok4 = Path('y').write_text('t', encoding='utf-8')\nok5 = os.open('x', 0)\nok6 = Path('z').open('rb')\n",
        encoding="utf-8")
    found = unspecified_encodings(tmp_path)
    assert [f.split(":")[1] for f in found] == ["3", "4", "5", "6", "7"], found

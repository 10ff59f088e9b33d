"""scripts/gpu_check.sh runs the GPU tests from a copy of a few folders of the checkout (not mcproton/, which must
not shadow the installed wheel).  A test module that reads a file outside that copy when it is collected stops the
whole `pytest -m gpu` run with a collection error: on 2026-12-05 the dry run found tests/test_docs_commands.py
reading docs/ and phantoms/README.md, which were not copied, so no GPU test would have run on the device."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _copied() -> set[str]:
    text = (ROOT / "scripts" / "gpu_check.sh").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("cp -r") and '"$WORK/repo/"' in ln)
    return set(re.findall(r'"\$REPO/([^"/]+)"', line))


def test_the_files_read_at_collection_are_in_the_gpu_checks_copy():
    sys.path.insert(0, str(ROOT / "tests"))
    import test_docs_commands as t

    copied = _copied()
    assert {"tests", "examples", "scripts"} <= copied
    needed = {p.relative_to(ROOT).parts[0] for p in [*t.DOCS, *t.EXAMPLES]}
    assert needed <= copied, f"gpu_check.sh must copy {sorted(needed - copied)} beside the tests"
    assert "mcproton" not in copied       # the installed wheel, not the checkout, is what the device tests

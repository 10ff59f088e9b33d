"""ruff with the project's settings (pyproject [tool.ruff]) finds nothing: unused imports, undefined names,
syntax errors, ... (issue 16).  ruff comes with the `test` extra; CI sets MCPROTON_REQUIRE_RUFF=1 so that the
check cannot be skipped there."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError as exc:
        if os.environ.get("MCPROTON_REQUIRE_RUFF", "") == "1":
            raise AssertionError("ruff is required here but missing: pip install ruff (or the test extra)") from exc
        pytest.skip("ruff not installed (pip install -e '.[test]' brings it)")
    proc = subprocess.run([find_ruff_bin(), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"ruff check (pyproject [tool.ruff]) found problems:\n{proc.stdout}{proc.stderr}"

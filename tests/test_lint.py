"""ruff with the project's settings (pyproject [tool.ruff]) finds nothing: unused imports, undefined names,
syntax errors, lines over 120 columns, ...; and mypy (pyproject [tool.mypy]) finds no type error in the public
modules and the driver (issue 16).  Both come with the `test` extra; CI sets MCPROTON_REQUIRE_RUFF=1 and
MCPROTON_REQUIRE_MYPY=1 so that neither check can be skipped there."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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


def test_mypy_is_clean():
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("MCPROTON_REQUIRE_MYPY", "") == "1":
            raise AssertionError("mypy is required here but missing: pip install mypy (or the test extra)")
        pytest.skip("mypy not installed (pip install -e '.[test]' brings it)")
    # in its own process (like ruff): its compiled modules stay out of the test process.  The files, the Python
    # version and the stub-less packages come from pyproject [tool.mypy]; .mypy_cache makes reruns fast.
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"mypy (pyproject [tool.mypy]) found problems:\n{proc.stdout}{proc.stderr}"

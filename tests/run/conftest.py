"""Fixtures of the long-run tests (helpers live in run_helpers.py)."""
from __future__ import annotations

import pytest
from run_helpers import write_cfg


@pytest.fixture
def small_cfg(tmp_path):
    def make(primaries: int = 20000, name: str = "job.toml", **run_extra):
        return write_cfg(tmp_path / name, primaries, **run_extra)

    return make

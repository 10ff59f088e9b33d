"""The README stays true: its config reference lists every config key, and CI runs its test command."""
from __future__ import annotations

import re
from pathlib import Path

from mcproton.config import SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def test_readme_config_reference_lists_every_key():
    text = (ROOT / "README.md").read_text()
    missing = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys if f"`{s}.{k}`" not in text]
    assert not missing, f"README config reference lacks {missing}: regenerate it from mcproton.config.schema_markdown()"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_cmd = [ln for b in blocks for ln in b.splitlines() if "pytest" in ln and not ln.startswith("#")]
    assert test_cmd, "README has no test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd[0].strip() in ci

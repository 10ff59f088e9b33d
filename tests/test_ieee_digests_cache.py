"""scripts/ieee_digests.py builds the IEEE kernels in a private kernel cache (mkdtemp) so that they never replace the
fast-math ones in the user's cache; before 2026-12-07 that folder stayed in the temporary directory after every run
(~130 kB each, three in /tmp of the resources audit 31 machine, F2).  The regression cases are stubbed here: what is
tested is the folder's life, not the digests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUB = """
import os, sys, types
sys.path.insert(0, {scripts!r})
sys.modules["regression_harness"] = types.SimpleNamespace(cases=lambda: [], run_case=None, record=None)
import ieee_digests
assert ieee_digests.digests() == {{}}
cache = os.environ["MCPROTON_CACHE_DIR"]
assert os.path.isdir(cache), cache
print(cache)
"""


def test_the_private_kernel_cache_is_removed_at_exit(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", STUB.format(scripts=str(ROOT / "scripts"))], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    cache = Path(out.stdout.strip().splitlines()[-1])
    assert cache.parent == tmp_path and cache.name.startswith("mcproton-ieee-")
    assert not cache.exists()   # before: left with its kernel for ever

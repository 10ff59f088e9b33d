"""The exact regression files' digests with the CPU kernels compiled as IEEE single precision: no -ffast-math and
no FMA contraction, so that every operation rounds as written.

The regression files (tests/regression) are recorded with -ffast-math, under which gcc may reassociate and fuse
operations differently when a refactor moves code between functions: the bits then move by rounding although the
arithmetic is the same.  Run this before and after such a refactor (each on its own checkout, same machine): equal
digests here show that the refactor kept every operation, and the fast-math files can be rewritten in a commit of
their own.

    python scripts/ieee_digests.py > before.json      # on the old checkout
    python scripts/ieee_digests.py > after.json       # on the new one
    python scripts/ieee_digests.py --compare before.json after.json
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def digests() -> dict:
    # a private kernel cache: the IEEE build must not replace the fast-math one in the user's cache; removed at exit
    # (before 2026-12-07 it stayed in the temporary folder, ~130 kB a run: resources audit 31, F2)
    cache = tempfile.mkdtemp(prefix="mcproton-ieee-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ["MCPROTON_CACHE_DIR"] = cache
    import mcproton._backend.cpu as cpu

    opts = [o for o in cpu.CPU_COMPILE_OPTIONS if o not in ("-ffast-math", "-fno-finite-math-only")]
    cpu.CPU_COMPILE_OPTIONS = tuple(opts) + ("-ffp-contract=off",)
    cpu.CPU_OPTIONS = cpu.CPU_COMPILE_OPTIONS + ("&&",) + cpu.CPU_LINK_OPTIONS
    sys.path.insert(0, str(ROOT / "tests" / "regression"))
    import regression_harness as h

    return {c: h.record(c, h.run_case(c))["sha256"] for c in h.cases()}


def compare(a_path: str, b_path: str) -> int:
    a, b = (json.loads(Path(a_path).read_text(encoding="utf-8")),
            json.loads(Path(b_path).read_text(encoding="utf-8")))
    moved = 0
    for case in sorted(set(a) | set(b)):
        diff = [k for k in sorted(set(a.get(case, {})) | set(b.get(case, {})))
                if a.get(case, {}).get(k) != b.get(case, {}).get(k)]
        print(f"{case}: {'identical' if not diff else 'MOVED: ' + ', '.join(diff)}")
        moved += bool(diff)
    return 1 if moved else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    print(json.dumps(digests(), indent=1, sort_keys=True))

"""Peak memory of a streamed CPU run does not grow with the number of primaries.

Runs ``mcproton run`` (in-process, in a fresh child process per size, with checkpoints every 5 s) on a
100 MeV pencil beam in a 100 x 100 x 120 mm water box with 2 x 2 x 1 mm voxels (300,000 voxels), in
batches of 20,000 histories, 1 OpenMP thread, for each number of primaries given, and prints the peak
resident set size (VmHWM of /proc/self/status) after the setup and at the end.

    python tests/run/memory_flat.py                 # 10^6 and 10^7 primaries (about 3 min on one core)
    python tests/run/memory_flat.py 100000 1000000  # other sizes
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CFG = """\
[run]
primaries = {n}
seed = 1
backend = "cpu"
threads = 1
batch_size = 20000
checkpoint_interval_s = 5

[phantom]
type = "water"
size_mm = [100.0, 100.0, 120.0]
voxel_mm = [2.0, 2.0, 1.0]

[beam]
energy_mev = 100.0
position_mm = [0.0, 0.0, -10.0]
direction = [0.0, 0.0, 1.0]
sigma_mm = [5.0, 5.0]

[output]
plot = false
"""


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(n: int) -> None:
    import contextlib
    import io

    import mcproton._run.job as job
    from mcproton.cli import main

    marks = {}
    orig = job.stream

    def stream(*a, **k):  # record the peak after the setup (tables, geometry, kernel loaded)
        marks["setup_mib"] = vm_hwm_mib()
        return orig(*a, **k)

    job.stream = stream
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "job.toml"
        cfg.write_text(CFG.format(n=n))
        t0 = time.perf_counter()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["run", str(cfg), "--out", str(Path(d) / "out.h5"), "--quiet"])
        summary = json.loads(buf.getvalue())
    print(json.dumps({"primaries": n, "rc": rc, "wall_s": round(time.perf_counter() - t0, 1),
                      "batches": n // 20000, "setup_peak_mib": round(marks["setup_mib"], 1),
                      "peak_rss_mib": round(vm_hwm_mib(), 1),
                      "mean_rel_uncertainty_50": summary["mean_rel_uncertainty_50"]}))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child(int(argv[1]))
        return 0
    sizes = [int(float(a)) for a in argv] or [10**6, 10**7]
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True,
                             check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| primaries | batches | wall (s) | peak RSS after setup (MiB) | peak RSS at end (MiB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['primaries']:,} | {r['batches']:,} | {r['wall_s']} | {r['setup_peak_mib']} "
              f"| {r['peak_rss_mib']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

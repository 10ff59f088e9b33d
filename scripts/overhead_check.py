"""Cost of streaming batches and checkpointing (issue: long runs): protons/s of the benchmark case run by the
job machinery (``mcproton run``'s code path) in one batch without checkpoints, against the same histories in
batches with checkpoints ("ratio"); also the bare kernel launch without any job machinery
("ratio_vs_one_launch": that one also charges the fixed per-run set-up and finish to the batching).

    python scripts/overhead_check.py [--backend cpu|cuda] [--primaries N | --seconds S] [--batches 20] \
        [--energy 150]

Prints one JSON object: both rates, their ratio, and the case.  Used for BENCHMARKS.md (CPU here; GPU in
scripts/gpu_check.sh).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mcproton._backend import get_backend
from mcproton._run.checkpoint import checkpoint_path
from mcproton._run.engine import Simulation
from mcproton._run.job import JobOptions, run_job
from mcproton.bench import bench_case
from mcproton.settings import RunSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--primaries", type=int)
    ap.add_argument("--batches", type=int, default=20,
                    help="batches of the streamed run (a checkpoint after each)")
    ap.add_argument("--energy", type=float, default=150.0)
    ap.add_argument("--interval", type=float, default=60.0,
                    help="seconds between checkpoints (run.checkpoint_interval_s; 60 is the default, "
                         "0 = every batch)")
    ap.add_argument("--seconds", type=float,
                    help="instead of --primaries: as many primaries as one launch transports in this many "
                         "seconds (measured first), so that a check on an unknown device takes a known time")
    a = ap.parse_args()
    be = get_backend(a.backend)
    n = a.primaries or (20_000_000 if be.name == "cuda" else 400_000)
    geom, beam = bench_case(a.energy)
    plain = RunSettings(primaries=n, seed=1, backend=be.name, batches=2)
    sim = Simulation(geom, beam, plain)
    sim.backend.compile()
    sim.run_histories(0, min(1000, n))                      # warm-up
    if a.seconds:
        cal = 2_000_000 if be.name == "cuda" else 50_000
        t = time.perf_counter()
        sim.run_histories(0, cal)
        rate = cal / (time.perf_counter() - t)
        n = max(a.batches, int(rate * a.seconds) // a.batches * a.batches)
    t = time.perf_counter()
    sim.run_histories(0, n)
    one_launch = n / (time.perf_counter() - t)
    quiet = JobOptions(progress=False, log=lambda m: None)
    # one batch, no checkpoint (out=None)
    whole = RunSettings(primaries=n, seed=1, backend=be.name, batch_size=n)
    t = time.perf_counter()
    phases = {"one_batch": run_job(None, whole, geom, [beam], None, quiet)[0].provenance["phase_s"]}
    job_without = n / (time.perf_counter() - t)
    streamed = RunSettings(primaries=n, seed=1, backend=be.name, batch_size=max(1, n // a.batches),
                           checkpoint_interval_s=a.interval)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.h5"
        t = time.perf_counter()
        phases["streamed"] = run_job(None, streamed, geom, [beam], out, quiet)[0].provenance["phase_s"]
        wall = time.perf_counter() - t
        ckpt = checkpoint_path(out)
        ckpt_size = ckpt.stat().st_size if ckpt.exists() else 0
    print(json.dumps({"case": f"{a.energy:g} MeV pencil beam in water, 1 mm voxels ({geom.shape_zyx} voxels)",
                      "backend": be.name, "device": getattr(be, "device", be.name),
                      "primaries": n, "batches": a.batches, "checkpoint_interval_s": a.interval,
                      "one_launch_protons_per_second": one_launch,
                      "job_one_batch_no_checkpoint_protons_per_second": job_without,
                      "streamed_checkpointed_protons_per_second": n / wall,
                      "ratio": (n / wall) / job_without, "ratio_vs_one_launch": (n / wall) / one_launch,
                      "checkpoint_bytes": ckpt_size, "phase_s": phases}, indent=1))


if __name__ == "__main__":
    main()

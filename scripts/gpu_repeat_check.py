"""Bitwise repeatability of the transport on one backend (scripts/gpu_check.sh's step "repeat"; gputry audit F2).

The dose of a history depends only on the seed and the history's index, and the tallies are integers, so on any
backend the same seed must give bitwise the same dose whichever thread runs which history: twice in a row, with
another batch split, after an interrupted run is resumed from its checkpoint, and (on the GPU) with the persistent
loop's refill threshold at 8 instead of 1 (``MCPROTON_CUDA_REFILL_MIN_IDLE``, a separate process, as the backend
reads it when it starts; on the CPU the knob is not used).  A run with another seed must differ (the comparison
can fail).  What is compared: ``dose_gy_zyx`` with ``np.array_equal`` (bitwise, every voxel).

    python scripts/gpu_repeat_check.py --backend cuda [--primaries 2000000]

Prints one JSON line; exit status 1 when any comparison fails.  The water pencil of examples/water_pencil.toml
(150 MeV, 2 x 2 x 0.5 mm voxels) on a 60 x 60 x 200 mm box.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "water_pencil.toml"


def _job(backend: str, primaries: int, sets: list[str], out: Path | None = None, resume: bool = False,
         progress=False):
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    c = load_config(CONFIG, [f"run.backend=\"{backend}\"", f"run.primaries={primaries}",
                             "phantom.size_mm=[60,60,200]", "run.checkpoint_interval_s=3600", *sets])
    return run_job(c, run_settings(c), build_geometry(c), build_beams(c), out, resume=resume, progress=progress,
                   log=lambda m: None)[0]


def _dose(backend: str, primaries: int, sets: list[str]) -> np.ndarray:
    return np.asarray(_job(backend, primaries, sets).dose_gy_zyx)


def _resumed(backend: str, primaries: int, batches: int, work: Path) -> np.ndarray:
    """SIGINT at the progress report after the first batch (the run writes its checkpoint and stops), then
    --resume's path (``resume=True``) to the end."""
    from mcproton._run.job import RunInterrupted

    out = work / "resume.h5"
    sent = []

    def interrupt(done: int, _pps: float) -> None:
        if done > 0 and not sent:
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    sets = ["run.seed=5", f"run.batches={batches}"]
    try:
        _job(backend, primaries, sets, out=out, progress=interrupt)
    except RunInterrupted:
        pass
    if not sent:
        raise SystemExit("the interrupt was never sent: no progress report came from the run")
    return np.asarray(_job(backend, primaries, sets, out=out, resume=True).dose_gy_zyx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--primaries", type=int, default=2_000_000)
    ap.add_argument("--dose-to", help=argparse.SUPPRESS)   # the refill-knob child: save its dose here
    a = ap.parse_args()
    # runs of 2-7 batches are the point here: their uncertainty's few-batch warning is not
    warnings.filterwarnings("ignore", message=".*statistical uncertainty comes from")
    if a.dose_to:
        np.save(a.dose_to, _dose(a.backend, a.primaries, ["run.seed=5", "run.batches=2"]))
        return 0
    t0 = time.perf_counter()
    n = a.primaries
    ref = _dose(a.backend, n, ["run.seed=5", "run.batches=2"])
    res: dict[str, object] = {"backend": a.backend, "primaries": n, "compared": "dose_gy_zyx, bitwise (np.array_equal)"}
    res["same_seed_twice"] = bool(np.array_equal(ref, _dose(a.backend, n, ["run.seed=5", "run.batches=2"])))
    res["batches_7"] = bool(np.array_equal(ref, _dose(a.backend, n, ["run.seed=5", "run.batches=7"])))
    res["other_seed_differs"] = not np.array_equal(ref, _dose(a.backend, n, ["run.seed=6", "run.batches=2"]))
    with tempfile.TemporaryDirectory() as tmp:
        res["resumed_4_batches"] = bool(np.array_equal(ref, _resumed(a.backend, n, 4, Path(tmp))))
        if a.backend == "cuda":
            f = Path(tmp) / "refill8.npy"
            env = {**os.environ, "MCPROTON_CUDA_REFILL_MIN_IDLE": "8"}
            rc = subprocess.call([sys.executable, "-P", __file__, "--backend", a.backend, "--primaries", str(n),
                                  "--dose-to", str(f)], env=env)
            res["refill_min_idle_8"] = rc == 0 and bool(np.array_equal(ref, np.load(f)))
    res["max_dose_gy"] = float(ref.max())
    res["seconds"] = round(time.perf_counter() - t0, 2)
    res["passed"] = all(v for k, v in res.items() if isinstance(v, bool))
    print(json.dumps({"repeat": res}))
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

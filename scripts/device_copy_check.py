"""What the end of a GPU beam costs the host: ``DeviceAccumulator.host()`` (the running sums at the scored voxels
only, a ScoredSums) against the whole-array copy it replaced (six whole sums), each followed by ``finish``, on
a patient-CT-sized water grid with a pencil beam or a square field of spots.

    python scripts/device_copy_check.py [--fake] [--shape 177 512 512] [--voxel-mm 2 0.977 0.977] \
        [--energy 150] [--field 1] [--primaries 20000] [--batches 2] [--repeats 2]

``--fake``: without a GPU, through the CuPy stand-in of the tests (tests/fake_cupy.py; its "device" is host
memory and its kernels run on the CPU backend): the bytes copied are those of a GPU, the times are not.  On a
GPU (real CuPy) the times are the GPU's.  Prints one JSON object: the grid, the scored voxels, and per method
the bytes copied to the host, the host memory allocated (tracemalloc peak: NumPy's allocations, not CuPy's)
and the wall times of the copy and of finish; the two results are checked bitwise equal.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np


def _install_fake() -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fake_cupy import make_fake_cupy

    from mcproton._backend import get_backend
    from mcproton._backend.cpu import CpuBackend

    fake = make_fake_cupy(CpuBackend())
    sys.modules["cupy"] = fake
    get_backend.cache_clear()
    return fake


def host_whole(dev: Any) -> Any:
    """The copy before this change: the six whole sums into new host arrays (an Accumulator)."""
    from mcproton._run.engine import Accumulator

    out = Accumulator.__new__(Accumulator)
    out.sums = {k: dev.xp.asnumpy(v) for k, v in dev.sums.items()}
    out.sum_x, out.sum_x2 = dev.xp.asnumpy(dev.sum_x), dev.xp.asnumpy(dev.sum_x2)
    out.let_moments = {k: dev.xp.asnumpy(v) for k, v in dev.let_moments.items()}   # (since 2026-12-08)
    out.ledger = dev.ledger.copy()
    out.batches, out.primaries = dev.batches, dev.primaries
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fake", action="store_true", help="the CuPy stand-in of the tests (no GPU)")
    ap.add_argument("--shape", type=int, nargs=3, default=[177, 512, 512], help="z y x voxels")
    ap.add_argument("--voxel-mm", type=float, nargs=3, default=[2.0, 0.977, 0.977], help="z y x")
    ap.add_argument("--energy", type=float, default=150.0)
    ap.add_argument("--field", type=int, default=1, help="N x N spots 10 mm apart (1: a pencil beam)")
    ap.add_argument("--primaries", type=int, default=20000)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    fake = _install_fake() if a.fake else None

    from mcproton._run.engine import DeviceAccumulator, ScoredSums, Simulation
    from mcproton._run.result import GRID_FIELDS, finish, stored_grid
    from mcproton.geometry import box_phantom
    from mcproton.settings import RunSettings
    from mcproton.source import Beam, Spot

    vz, vy, vx = a.voxel_mm
    nz, ny, nx = a.shape
    geom = box_phantom("water", (nx * vx, ny * vy, nz * vz), (vx, vy, vz))
    offs = (np.arange(a.field) - (a.field - 1) / 2) * 10.0
    beam = Beam([Spot(a.energy, position_mm=(x, y, -nz * vz / 2 + 1.0), sigma_mm=(4.0, 4.0))
                 for y in offs for x in offs])
    sim = Simulation(geom, beam, RunSettings(backend="cuda", primaries=a.primaries, seed=3))
    sim.backend.compile()
    n_vox = sim.n_vox
    t0 = time.perf_counter()
    dev = DeviceAccumulator(ScoredSums.empty(n_vox), sim.backend.xp, sim.backend.device_context)
    per = a.primaries // a.batches
    for b in range(a.batches):
        dev.add(sim.run_histories(b * per, per, on_device=True), per)
    transport_s = time.perf_counter() - t0

    def measure(copy: Any) -> tuple[dict, Any]:
        if fake is not None:
            fake.bytes_to_host = 0
        tracemalloc.start()
        t = time.perf_counter()
        with sim.backend.device_context():
            acc = copy(dev)
        sim.backend.synchronize()
        t_copy = time.perf_counter() - t
        _, peak_copy = tracemalloc.get_traced_memory()
        t = time.perf_counter()
        res = finish(sim, acc, 1.0)
        t_finish = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        copied = fake.bytes_to_host if fake is not None else sum(
            v.nbytes for v in (*acc.sums.values(), acc.sum_x, acc.sum_x2, getattr(acc, "voxels", acc.sum_x[:0])))
        return {"bytes_to_host": int(copied), "host_alloc_peak_copy": int(peak_copy),
                "host_alloc_peak_copy_finish": int(peak), "copy_s": round(t_copy, 4),
                "finish_s": round(t_finish, 4)}, res

    runs: dict[str, list[dict]] = {"whole": [], "scored": []}
    results = {}
    for _ in range(a.repeats):
        for name, fn in (("whole", host_whole), ("scored", DeviceAccumulator.host)):
            m, results[name] = measure(fn)
            runs[name].append(m)
    same = all(np.array_equal(stored_grid(results["whole"], f).voxels, stored_grid(results["scored"], f).voxels)
               and stored_grid(results["whole"], f).values.tobytes()
               == stored_grid(results["scored"], f).values.tobytes() for f in GRID_FIELDS)
    k = int(stored_grid(results["scored"], "dose_gy_zyx").voxels.size)
    print(json.dumps({"device": sim.backend.device, "fake": bool(fake), "shape_zyx": list(a.shape),
                      "n_vox": n_vox, "scored_voxels": k, "scored_fraction": round(k / n_vox, 5),
                      "spots": len(beam.spots), "energy_mev": a.energy, "primaries": a.primaries,
                      "transport_s": round(transport_s, 2), "bitwise_same_result": same, **runs}, indent=1))
    if not same:
        raise SystemExit("the scored copy's result differs from the whole copy's")


if __name__ == "__main__":
    main()

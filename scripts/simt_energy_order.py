"""Would sorting a launch's histories by energy keep the GPU's warps fuller?  (issue 15: "consider sorting or
binning work by energy")  Measured with the SIMT proxy of the persistent loop (mcproton/_kernels/simt.py) on a plan
launch: beam 1 of the DCPT head plan (examples/headphantom_rs.toml: 24 energy layers, 2.34 mm blocks of the head
CT, which must be in /tmp/headphantom as that file says), N histories (default 2e6, one batch of a 2e7-proton GPU
run) split over the layers by their weights.  Each layer's histories are counted by the CPU kernel on their own (a
beam of that layer's spots), then laid out (a) mixed in random order, as the kernel's per-history spot sampling
hands them out, (b) layer by layer from the highest energy down, (c) from the lowest up, and (d) sorted by each
history's own work (an oracle: no order known before the transport can do better).  Prints the active lanes per 32
for refill costs c = 0 and 0.5 of a step and refill thresholds k = 1 and 8.

    python scripts/simt_energy_order.py [N]
"""
import sys
import time
from pathlib import Path

import numpy as np
from mcproton.config import load_config, build_geometry, build_beams
from mcproton.settings import RunSettings
from mcproton.source import Beam
from mcproton._run.engine import Simulation
from mcproton._kernels import simt

cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "headphantom_rs.toml", [])
geo = build_geometry(cfg)
beam = build_beams(cfg)[0]
n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
energies = sorted({round(s.energy_mev, 4) for s in beam.spots}, reverse=True)
w_all = sum(s.weight for s in beam.spots)
parts = []
t0 = time.perf_counter()
for k, e in enumerate(energies):
    spots = [s for s in beam.spots if round(s.energy_mev, 4) == e]
    m = int(round(n * sum(s.weight for s in spots) / w_all))
    if m == 0:
        continue
    sim = Simulation(geo, Beam(spots), RunSettings(primaries=m, seed=20240227 + k, backend="cpu", batches=2))
    tr, _ = simt.history_steps(sim, 0, m)
    parts.append(tr.sum(axis=1))
print(f"{len(parts)} layers, {sum(p.size for p in parts)} histories counted in {time.perf_counter() - t0:.0f} s; "
      "mean steps per layer:", [round(float(p.mean()), 1) for p in parts], flush=True)
work_hi = np.concatenate(parts)
rng = np.random.default_rng(1)
orders = {"mixed (kernel)": rng.permutation(work_hi), "highest energy first": work_hi,
          "lowest energy first": np.concatenate(parts[::-1]), "by own work (oracle)": np.sort(work_hi)[::-1]}
for name, w in orders.items():
    r = {f"c={c},k={k}": simt.simt_efficiency_persistent(w, refill_cost=c, refill_min_idle=k)
         for c, k in ((0.0, 1), (0.5, 1), (0.5, 8))}
    print(f"{name:24s}", "  ".join(f"{kk}: {32 * v['efficiency']:.2f}/32 (tail {100 * v['tail_fraction']:.2f} %, "
                                   f"refill {100 * v['refill_fraction']:.1f} %)" for kk, v in r.items()), flush=True)

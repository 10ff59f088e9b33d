"""Make the plan of the default ``mcproton demo`` that is shipped with mcproton: phantoms/plans/demo_plan_5y_2mm.npz
(installed as mcproton/phantoms/plans/; mcproton.demo.shipped_plan_file).

What it is: the default demo's plan (the posterior-fossa boost on the 5-year-old head phantom at 2 mm: three fields
on dcpt_v5 with RS_3CM, ``posterior_fossa_plan`` with the demo's arguments), optimised once by this script, with its
spots, energies and weights, in the plan cache's entry format (an ``.npz`` read without pickle: mcproton/planning/
_plan_cache.py), under its *recipe key*: the SHA-256 of what decides the plan's meaning (the phantom's material,
density and label arrays, its materials and grid; the target mask; every setting of the planner; the beam model's
file and table; the physics data, mcproton._build.physics_files_sha256; the planner's code, the modules of
mcproton/planning that make a plan, phantoms/reference_plans.py and the modules the planner runs for the plan's
numbers, _plan_cache.PLANNER_CODE_ALSO: _plan_cache.planner_code_sha256).  Not of the
rest of the code, NumPy's and SciPy's builds, the BLAS or the CPU: those change the optimiser's arithmetic (on this
VM, OPENBLAS_CORETYPE=Prescott made a plan of 6108 spots instead of 6071, model D95 99.345 % instead of 99.370 %),
not what the plan is made for.  Its record says when, on what machine and with what software it was optimised; the
demo says so in its progress line and summary.json (``plan_origin``, ``plan_cache.shipped``).

When to run it: when tests/phantoms/test_shipped_plan.py (or ``--check``) says the shipped plan is stale (its
recipe key is not the one the current code gives the default demo: after a change of the planner's settings or
code, the beam model or the physics data, or of the phantom generator or the target), or after a change elsewhere
that changes the demo's plan (the slow test there compares the shipped plan with one optimised afresh).  Not where
only the phantom or the target differ and neither was changed: another NumPy, SciPy or CPU then made another phantom
(the message says which it was made with), and a plan made anew here would not match where it was made.  About 10 s
of CPU and 0.2 GB of memory; the result is the same bytes on the same machine and software.

Usage (from the repository root, with mcproton installed from it, e.g. ``pip install -e .``):

    python scripts/make_shipped_demo_plan.py            # writes phantoms/plans/demo_plan_5y_2mm.npz
    python scripts/make_shipped_demo_plan.py --check    # exit status 1 where the shipped plan is stale
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only say whether the shipped plan's recipe is current "
                   "(and what to do where it is not)")
    args = p.parse_args(argv)

    import numpy as np
    import scipy

    import mcproton
    from mcproton._backend.cpu import cpu_model
    from mcproton._build import code_sha256
    from mcproton.demo import DEFAULT_AGE, DEFAULT_VOXEL_MM, default_plan_inputs, shipped_plan_file
    from mcproton.planning import _plan_cache as PC

    path = shipped_plan_file()
    if not str(path).startswith(str(ROOT)):
        print(f"mcproton is imported from {mcproton.__file__}, not from this repository ({ROOT}): install it from "
              "here (pip install -e .) so that the plan is written where the repository ships it", file=sys.stderr)
        return 2
    g, ctv, planner, kwargs, settings, model = default_plan_inputs()
    if args.check:
        plan, _, why = PC.shipped_plan(path, g, ctv, settings, model, in_checkout=True)
        print(f"{path}: current" if plan is not None else why)
        return 0 if plan is not None else 1
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # a plan whose making warns is not shipped
        plan = planner(g, **kwargs)
    optimise_s = time.perf_counter() - t
    about = {"what": "the plan of the default mcproton demo (posterior-fossa boost, 5-year-old head phantom, 2 mm)",
             "demo": {"age": DEFAULT_AGE, "voxel_mm": DEFAULT_VOXEL_MM},
             "optimised": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
             "platform": f"{platform.system()} {platform.machine()}", "cpu_model": cpu_model(),
             "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
             "mcproton_version": mcproton.__version__, "code_sha256": code_sha256(),
             "libraries": PC._libraries(), "optimise_s": round(optimise_s, 2),
             "regenerate": f"python {PC.SHIPPED_SCRIPT}"}
    path.parent.mkdir(parents=True, exist_ok=True)
    key = PC.write_shipped(path, plan, g, ctv, settings, model, about)
    print(f"{path}: {sum(f.n_spots for f in plan.fields)} spots, model D95 {100 * plan.model_stats['d95_rel']:.3f} %, "
          f"recipe key {key}, {path.stat().st_size:,} bytes (optimised in {optimise_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

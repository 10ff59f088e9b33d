"""Monte Carlo verification of the craniospinal (CSI) example plan; writes craniospinal_dose.png and a summary JSON.

    python -m mcproton.phantoms.verify_craniospinal [--voxel-mm 6] [--primaries 16000000] [--threads 1] [--out DIR]
        [--figure PNG]

(from an install, e.g. the README's editable ``pip install -e .``; the folder is the package
mcproton.phantoms).  The figure goes to ``--out`` (with summary.json), else to the working folder; never into the
installed package (the packaging audit of 2026-12-07, F4: it went to the package's figures/ folder, which a
read-only install refused with a traceback after the whole run, and which ``pip uninstall`` left behind).  The
phantoms README's figure is regenerated from a checkout with ``--figure phantoms/figures/craniospinal_dose.png``.

5-year-old neuraxis phantom, ``craniospinal_plan`` (2 cranial + 2 spinal fields at 5 y, on the clinical beam model
dcpt_v5 with its range shifters RS_5CM / RS_3CM transported as slabs), one MC run of all fields (CPU by default),
target statistics for the whole CTV_CSI and for its brain and spinal-canal parts, the spinal-canal dose profile along
z (junctions) and the dose in three planes (sagittal through the spinal canal).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import numpy as np


def spine_profile(dose: np.ndarray, spine: np.ndarray, z_mm: np.ndarray, pres: float) -> dict:
    """Mean dose per axial slice of the spinal-canal CTV (relative to the prescription): min / max over the
    slices below the foramen magnum and where they are (junction check)."""
    ks = np.nonzero(spine.any(axis=(1, 2)))[0]
    prof = np.array([dose[k][spine[k]].mean() / pres for k in ks])
    return {"slice_mean_min_rel": float(prof.min()), "z_of_min_mm": float(z_mm[ks[np.argmin(prof)]]),
            "slice_mean_max_rel": float(prof.max()), "z_of_max_mm": float(z_mm[ks[np.argmax(prof)]]),
            "z_mm": [float(z_mm[k]) for k in ks], "slice_mean_rel": [round(float(p), 4) for p in prof]}


#: the keys of :func:`mcproton.dvh.dose_stats` that are doses (Gy): divided by the prescription in the *_rel tables
DOSE_KEYS = ("dmean", "d98", "d95", "d50", "d2", "dmin", "dmax", "d0.03cc")


def relative_stats(stats: dict, prescription_gy: float) -> dict:
    """``stats`` (of dose_stats) with every dose (:data:`DOSE_KEYS`) divided by ``prescription_gy``; counts, volumes
    and fractions as they are.  (Until 2026-12-06 D0.03cc stayed in Gy beside doses relative to the prescription:
    1.72 'relative' above a Dmax of 1.05.)"""
    return {k: (v / prescription_gy if k in DOSE_KEYS else v) for k, v in stats.items()}


def verify_craniospinal(voxel_mm: float = 6.0, primaries: int = 16_000_000, *, age: float = 5.0,
                        threads: int | None = 1, backend: str = "cpu", seed: int = 12345,
                        figure: str | Path | None = None,
                        progress: bool = False, plan_kw: dict | None = None) -> tuple[dict, object, object]:
    """Plan + MC; returns (summary dict, plan, DoseResult); ``figure``: the PNG of the dose in three planes (None:
    none)."""
    from mcproton.dvh import dose_stats
    from mcproton.phantoms import make_head_phantom
    from mcproton.phantoms.reference_plans import craniospinal_plan, craniospinal_target
    from mcproton.planning import verify_plan
    from mcproton.settings import RunSettings

    times = {}
    t = time.perf_counter()
    g = make_head_phantom(age, voxel_mm, region="neuraxis")
    plan = craniospinal_plan(g, **(plan_kw or {}))
    times["plan_s"] = time.perf_counter() - t
    t = time.perf_counter()
    res, st = verify_plan(plan, g, RunSettings(primaries=int(primaries), seed=seed, backend=backend,
                                                threads=threads), progress=progress)
    times["monte_carlo_s"] = time.perf_counter() - t
    pres = plan.prescription_gy
    parts = craniospinal_target(g)
    dose, unc = res.dose_gy_zyx, res.uncertainty_rel_zyx
    rel = lambda s: relative_stats(s, pres)  # noqa: E731
    summary = {
        "case": f"craniospinal, {age:g}-year-old neuraxis phantom, {voxel_mm:g} mm voxels",
        "date": _dt.date.today().isoformat(), "backend": res.backend, "device": res.device,
        "primaries": res.primaries, "protons_per_second": res.protons_per_second, "mc_wall_s": res.wall_s,
        "prescription_gy": pres, "prescription_gy_rbe": plan.prescription_gy_rbe,
        "total_protons_per_fraction": plan.total_protons, "spots": int(sum(f.n_spots for f in plan.fields)),
        "fields": plan.summary()["fields"], "model": plan.model_stats,
        "mc_over_model_mean": st["mc_over_model_mean"],
        "target_rel": rel(st), "target_gy": {k: st[k] for k in ("dmean", "d98", "d95", "d2")},
        "brain_rel": rel(dose_stats(dose, parts["brain"], g.voxel_volume_cm3, pres)),
        "spine_rel": rel(dose_stats(dose, parts["spine"], g.voxel_volume_cm3, pres)),
        "target_mean_rel_uncertainty": float(unc[plan.target_mask_zyx].mean()),
        "spine_mean_rel_uncertainty": float(unc[parts["spine"]].mean()),
        "spine_profile": spine_profile(dose, parts["spine"], g.axis_mm("z"), pres),
        "times_s": times,
        "notes": "dose = physical dose to medium per fraction, no renormalisation; *_rel = / prescription; "
                 "D95 etc. of the MC include the statistical noise (it lowers D95/D98 and raises D2)",
    }
    if figure is not None:
        from mcproton.plots import plot_dose_planes

        kb, jb, ib = (int(round(float(a.mean()))) for a in np.nonzero(parts["brain"]))
        js = int(round(float(np.nonzero(parts["spine"])[1].mean())))
        i0 = int(np.argmin(np.abs(g.axis_mm("x"))))
        organs = {"CTV_CSI": plan.target_mask_zyx}
        for nm in ("brainstem", "eye_left", "eye_right"):
            ids = [i for i, n in g.label_names.items() if n == nm]
            if ids:
                organs[nm] = np.isin(g.labels_zyx, ids)
        plot_dose_planes(res, figure, (kb, js, i0), structures=organs, reference_gy=pres,
                         body_mask=g.density_g_cm3_zyx > 0.5,
                         title=f"craniospinal plan, {age:g}-y phantom ({voxel_mm:g} mm): MC, {res.primaries:,} "
                               f"protons ({res.backend}); D95 {100 * st['d95_rel']:.1f} % of "
                               f"{pres:.3f} Gy/fraction")
        summary["figure"] = str(figure)
    return summary, plan, res


#: the figure's name in ``--out``, else in the working folder
FIGURE_NAME = "craniospinal_dose.png"


def _writable_folder(folder: Path, what: str) -> str | None:
    """``folder`` created where missing; why it cannot take ``what`` (None where it can)."""
    import os

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{what}: the folder {folder} cannot be created ({exc.strerror or exc})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{what}: the folder {folder} cannot be written by this user"
    return None


def main(argv=None) -> int:
    from .._io.cli_args import PARSER_OPTIONS, file_name, folder_name, whole_number

    # the rules of every mcproton command line (an option by its whole name, whole numbers as digits: review 26a, R9)
    p = argparse.ArgumentParser(prog="python -m mcproton.phantoms.verify_craniospinal",
                                description=__doc__.splitlines()[0], **PARSER_OPTIONS)
    p.add_argument("--voxel-mm", type=float, default=6.0)
    p.add_argument("--primaries", type=whole_number, default=16_000_000,
                   help="protons of the one Monte Carlo run of all four fields (default 16000000)")
    p.add_argument("--threads", type=whole_number, default=1)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--out", default=None, type=folder_name, help="write summary.json and the figure here")
    p.add_argument("--figure", default=None, type=file_name,
                   help=f"the figure's file (default: {FIGURE_NAME} in --out, else in the working folder)")
    a = p.parse_args(argv)
    figure = Path(a.figure) if a.figure else Path(a.out or ".") / FIGURE_NAME
    # the outputs' folders before the plan and the MC (minutes): one that cannot be written stopped the run after
    # them with a traceback, and lost the summary (the packaging audit of 2026-12-07, F4)
    for folder, what in [*([(Path(a.out), "--out")] if a.out else []), (figure.parent, "--figure")]:
        why = _writable_folder(folder, what)
        if why is not None:
            p.error(f"{why}; give another with {what}")
    s, _, _ = verify_craniospinal(a.voxel_mm, a.primaries, threads=a.threads, backend=a.backend,
                                  figure=figure, progress=True)
    txt = json.dumps(s, indent=1, default=float)
    if a.out:
        (Path(a.out) / "summary.json").write_text(txt, encoding="utf-8")
    short = {k: v for k, v in s.items() if k not in ("fields", "spine_profile")}
    print(json.dumps(short, indent=1, default=float))
    return 0 if s["target_rel"]["d95_rel"] >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())

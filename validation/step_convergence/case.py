"""The ``step_convergence`` validation case: numerical convergence: the result does not depend on the step
length.

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

from .. import metrics as M
from ..core import CaseResult, Context, Metric, pencil_idd
from ..plots import Series, overlay_with_difference


def case_step_convergence(ctx: Context) -> CaseResult:
    cr = CaseResult("step_convergence",
                    "Step-length convergence: 150 MeV pencil beam in water, default steps "
                    "(up to 5 mm, across voxels) vs 0.5 mm steps",
                    "numerical self-consistency (same physics)")
    e0 = 150.0
    n = ctx.pick(400_000, 400_000)
    runs = {}
    for label, override, off in (("default steps", None, 0), ("0.5 mm steps", {"max_step_mm": 0.5}, 1)):
        runs[label] = pencil_idd(ctx, cr.name, e0, 3e-4 * e0, n, f"{e0:g} MeV, {label}",
                                 seed_offset=650 + off, physics_override=override)
    z, d_def, _, _ = runs["default steps"]
    _, d_fine, _, _ = runs["0.5 mm steps"]
    m_def, m_fine = M.range_metrics(z, d_def), M.range_metrics(z, d_fine)
    cr.metrics.append(Metric("R80, default vs 0.5 mm steps", m_def["R80"], m_fine["R80"], 0.05, "mm", "abs"))
    cr.metrics.append(Metric("fall-off R20-R80, default vs 0.5 mm steps", m_def["falloff_80_20"],
                             m_fine["falloff_80_20"], 0.08, "mm", "abs"))
    cr.metrics.append(Metric("peak/entrance, default vs 0.5 mm steps", M.peak_to_entrance(z, d_def, 1.0),
                             M.peak_to_entrance(z, d_fine, 1.0), 0.02, "", "rel", "entrance = IDD at 1 mm"))
    plateau = (z > 2.0) & (z < 0.8 * m_fine["R80"])
    cr.metrics.append(Metric("plateau IDD (2 mm to 80 % of R80), default vs 0.5 mm steps",
                             float(d_def[plateau].mean()), float(d_fine[plateau].mean()), 0.003, "MeV cm2/g",
                             "rel"))
    cr.figures.append(overlay_with_difference(
        f"Integrated depth dose of a {e0:g} MeV pencil beam, default vs 0.5 mm maximum steps",
        [Series(z, d_def, "default (steps up to 5 mm, across voxels of one material)", "-"),
         Series(z, d_fine, "0.5 mm maximum steps", "--")],
        [Series(z, 100 * (d_def - d_fine) / d_fine.max(), "default - 0.5 mm steps (% of the maximum)", "-")],
        "depth (mm)", "IDD (MeV cm2/g per primary)", "difference (% of max)", guide=1.0,
        guide_label="+-1 % of max: guide only (scored: R80, fall-off, peak/entrance, plateau mean)",
        filename="step_convergence.png"))
    cr.notes.append("Both runs use the same physics and independent random numbers; a difference beyond the "
                    "statistical noise would be a numerical artefact of the condensed-history step.")
    return cr

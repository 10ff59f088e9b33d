"""The ``backend_agreement`` validation case: cPU vs GPU.

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

import numpy as np

from .. import metrics as M
from ..core import SKIPPED, CaseResult, Context, Metric
from ..plots import Series, overlay_with_difference


def gpu_available() -> tuple[bool, str]:
    try:
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return False, "no CUDA device"
        return True, f"{n} CUDA device(s)"
    except Exception as exc:  # ImportError, CUDARuntimeError, ...
        return False, f"no GPU ({type(exc).__name__}: {str(exc)[:120]})"


def case_backend_agreement(ctx: Context) -> CaseResult:
    from ...geometry import box_phantom
    from ...source import Beam

    cr = CaseResult("backend_agreement",
                    "CPU and GPU backends agree within statistics (chi-square across voxels)",
                    "self-consistency")
    ok, why = gpu_available()
    if not ok:
        cr.status, cr.message = SKIPPED, f"skipped: {why}"
        return cr
    geom = box_phantom("water", size_mm=(50, 50, 180), voxel_mm=(2, 2, 2), name="water 50x50x180")
    beam = Beam.pencil(150.0, position_mm=(0, 0, -1.0), direction=(0, 0, 1), energy_spread_mev=0.5,
                       sigma_mm=(3, 3))
    n = ctx.pick(20_000, 200_000)
    rc, _ = ctx.simulate(geom, beam, n, "150 MeV, cpu", cr.name, seed_offset=600, backend="cpu")
    rg, _ = ctx.simulate(geom, beam, n, "150 MeV, cuda (independent seed)", cr.name, seed_offset=601,
                         backend="cuda")
    a, b = np.asarray(rc.dose_gy_zyx), np.asarray(rg.dose_gy_zyx)
    sa = a * np.asarray(rc.uncertainty_rel_zyx)
    sb = b * np.asarray(rg.uncertainty_rel_zyx)
    mask = (a > 0.1 * a.max()) & (b > 0.1 * b.max())
    res = M.chi_square_agreement(a, sa, b, sb, mask, alpha=1e-3, batches=ctx.batches)
    cr.metrics.append(Metric("chi-square p-value (voxels >= 10 % of max)", res.p_value, None, res.alpha, "",
                             "min",
                             f"X = {res.statistic:.1f} for {res.dof} voxels; false-positive rate alpha = "
                             f"{res.alpha}"))
    cr.metrics.append(Metric("fraction of voxels with |z| > 3", res.frac_beyond_3sigma, None, 0.01, "", "max",
                             "expected 0.27 % for Gaussian z"))
    za, ia = rc.integrated_depth_dose()
    zb, ib = rg.integrated_depth_dose()
    cr.metrics.append(Metric("R80 cpu - cuda", M.distal_range(za, ia), M.distal_range(zb, ib), 0.1, "mm",
                             "abs"))
    cr.figures.append(overlay_with_difference(
        "IDD cpu vs cuda", [Series(za, ia, "cpu", "-"), Series(zb, ib, "cuda", "--")],
        [Series(za, 100 * (ia - ib) / ib.max(), "(cpu - cuda)/max (%)", "-")], "depth (mm)", "IDD", "%",
        guide=1.0,
        guide_label="+-1 % of max: guide only (scored: chi-square over voxels, R80)", filename="backend_agreement.png"))
    cr.notes.append(f"{why}. Two independent seeds; z_i = (a_i - b_i)/sqrt(s_a^2 + s_b^2) from the batch "
                    "uncertainties; sum z_i^2 scaled by (nu-2)/nu (nu = 2(batches-1)) against chi-square(n); "
                    "fail if p < alpha = 1e-3.")
    return cr

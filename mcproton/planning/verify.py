"""Monte Carlo verification of a plan (:func:`verify_plan`): the analytical model is only the optimiser's."""
from __future__ import annotations

from ..geometry import VoxelGeometry
from .plan import Plan


def verify_plan(plan: Plan, geometry: VoxelGeometry, settings=None, progress=False, normalise: bool = False):
    """Monte Carlo dose of the plan (one run of all fields).  Returns (DoseResult, target stats dict); with
    ``normalise=True`` the dose (and total protons) is rescaled so that the target mean dose equals the
    prescription (plan normalisation) and the factor is reported as ``normalisation_factor``; ``normalise`` takes
    True or False only (text such as "false" is refused: it would read as true and rescale the plan's weights)."""
    import dataclasses

    from ..dvh import dose_stats
    from ..run import simulate
    from ..settings import _switch

    normalise = _switch("verify_plan normalise", normalise)

    res = simulate(geometry, plan.beam(), settings, progress=progress)
    st = dose_stats(res.dose_gy_zyx, plan.target_mask_zyx, geometry.voxel_volume_cm3, plan.prescription_gy)
    out = {"mc_over_model_mean": st["dmean"] / plan.prescription_gy, "normalisation_factor": 1.0}
    if normalise and st["dmean"] > 0:
        f = plan.prescription_gy / st["dmean"]
        res = dataclasses.replace(res, dose_gy_zyx=res.dose_gy_zyx * f,
                                  dose_to_water_gy_zyx=res.dose_to_water_gy_zyx * f,
                                  normalisation=f"Gy for {plan.total_protons * f:.6g} protons (plan "
                                                f"normalised to the target mean, factor {f:.4f})")
        for fl in plan.fields:
            fl.weights = fl.weights * f
        st = dose_stats(res.dose_gy_zyx, plan.target_mask_zyx, geometry.voxel_volume_cm3,
                        plan.prescription_gy)
        out["normalisation_factor"] = f
    out.update(st)
    out["d95_rel"] = st["d95"] / plan.prescription_gy
    return res, out

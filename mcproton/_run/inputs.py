"""Input checks run before any transport (``mcproton run``): each problem gives one ConfigError naming the key
and the fix.  Complements config.validate_config (keys, types, NaN/inf), the settings' range checks and
config.check_beam_hits."""
from __future__ import annotations

from typing import Any

import numpy as np


def check_inputs(cfg: dict[str, Any], settings: Any, geometry: Any, beams: list[Any]) -> None:
    from .._physics.tables import E_MAX_MEV
    from ..config import ConfigError

    ph = cfg.get("phantom", {})
    if ph.get("type", "water") in ("water", "box") and isinstance(ph.get("size_mm"), list):
        vox = ph.get("voxel_mm", [2.0, 2.0, 1.0])
        vox = [float(vox)] * 3 if isinstance(vox, (int, float)) else [float(v) for v in vox]
        for ax, s, v in zip("xyz", ph["size_mm"], vox):
            if v > s:
                raise ConfigError(f"phantom.voxel_mm {ax} = {v:g} mm is larger than phantom.size_mm {ax} = {s:g} mm; "
                                  "give voxels no larger than the phantom")
    rho = geometry.density_g_cm3_zyx
    if not np.isfinite(rho).all():
        raise ConfigError("the phantom's density has NaN or infinite values; check the CT series and "
                          "phantom.calibration")
    if (rho < 0).any():
        raise ConfigError("the phantom has negative densities; check phantom.density_g_cm3 / the HU calibration")
    if rho.max(initial=0.0) < 1e-6:  # MCP_VACUUM_DENSITY (kernels/transport.cu): every voxel is vacuum
        raise ConfigError("the phantom's density is zero everywhere (below 1e-6 g/cm3, transported as vacuum), so "
                          "no dose would be deposited; check phantom.density_g_cm3 / the HU calibration")
    where = "beam" if "beam" in cfg else "plan"
    cut = settings.physics.e_cut_mev
    for beam in beams:
        e_hi = beam.max_energy_mev
        if e_hi >= E_MAX_MEV:
            raise ConfigError(f"{where}: energy + 5 sigma of the energy spread reaches {e_hi:.1f} MeV, beyond the "
                              f"physics tables ({E_MAX_MEV:g} MeV); lower beam.energy_mev or beam.energy_spread_mev")
        for j, s in enumerate(beam.spots):
            if s.weight > 0 and s.energy_mev <= cut:
                name = "beam.energy_mev" if len(beam.spots) == 1 and where == "beam" else \
                    f"spot {j} of {where} {beam.name!r}"
                raise ConfigError(f"{name} = {s.energy_mev:g} MeV is at or below the cut-off physics.e_cut_mev = "
                                  f"{cut:g} MeV, so no proton would be transported; raise the energy (therapy "
                                  "protons have 50-250 MeV) or lower physics.e_cut_mev")

"""Input checks run before any transport (``mcproton run``): each problem gives one ConfigError naming the key
and the fix.  Complements config.validate_config (keys, types, NaN/inf), the settings' range checks and
config.check_beam_hits."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: Host memory of a run (CLI path), bytes: a base, per voxel the tallies, the running beam's sums, the sum of the
#: beams and the output buffers (65), and per beam and voxel what stays until the beams are added: its result
#: arrays and its compacted sums (34).  Measured 2026-11-26 on a 512 x 512 x 200 grid (52 M voxels), pencil beams,
#: run_job + sum_results + write_result_hdf5: peak RSS 5.47 / 8.97 GB for 1 / 3 beams (12.88 GB for 3 before
#: finished beams were compacted and the beams added one by one); the estimate gives 5.5 / 9.0 GB.
HOST_BYTES_BASE = 0.3e9
HOST_BYTES_PER_VOXEL = 65
HOST_BYTES_PER_VOXEL_AND_BEAM = 34


def host_memory_estimate(n_vox: int, n_beams: int = 1) -> float:
    """Bytes of host memory a run of ``n_beams`` beams on ``n_vox`` voxels needs at its peak (an estimate)."""
    return HOST_BYTES_BASE + n_vox * (HOST_BYTES_PER_VOXEL + HOST_BYTES_PER_VOXEL_AND_BEAM * max(1, n_beams))


def available_memory() -> tuple[float, float] | None:
    """(MemAvailable, SwapFree) in bytes from /proc/meminfo; None where it cannot be read (not Linux)."""
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                k, v = line.split(":", 1)
                info[k] = float(v.split()[0]) * 1024.0
        return info["MemAvailable"], info.get("SwapFree", 0.0)
    except (OSError, KeyError, ValueError):
        return None


def check_memory(n_vox: int, n_beams: int, shape_zyx: tuple[int, int, int], ct: bool) -> None:
    """Refuse a run whose grid cannot fit in memory (it would be killed after the transport, losing it), and warn
    when it would use most of it."""
    from ..config import ConfigError

    mem = available_memory()
    if mem is None:
        return
    avail, swap = mem
    need = host_memory_estimate(n_vox, n_beams)
    nz, ny, nx = shape_zyx
    fix = ("use coarser voxels (phantom.dose_voxel_mm for a CT: blocks of whole CT voxels)" if ct
           else "use coarser voxels (phantom.voxel_mm)") + " or free memory"
    what = (f"the dose grid of {nx} x {ny} x {nz} = {n_vox / 1e6:.1f} M voxels ({n_beams} beam"
            f"{'s' if n_beams > 1 else ''}) needs about {need / 1e9:.1f} GB of memory")
    if need > avail + swap:
        raise ConfigError(f"{what}, but only {avail / 1e9:.1f} GB are available ({swap / 1e9:.1f} GB of swap): {fix}")
    if need > 0.8 * avail:
        sys.stderr.write(f"mcproton: warning: {what} of the {avail / 1e9:.1f} GB available; the run may swap: "
                         f"{fix}\n")


def check_patient_position(cfg: dict[str, Any], geometry: Any, beams: list[Any]) -> None:
    """Refuse a plan whose setup position (PatientSetupSequence PatientPosition) differs from the CT's
    PatientPosition: the plan's gantry angles are then turned about the wrong patient axes (a prone plan on a
    supine CT puts every beam on the opposite side of the anatomy).  Warn when the CT does not say its position."""
    from ..config import ConfigError

    if cfg.get("phantom", {}).get("type") != "ct":  # a slab_ct phantom is written for its plan
        return
    ct_pos = str(getattr(geometry, "patient_position", "") or "").strip().upper()
    plan_pos = {str((getattr(b, "meta", None) or {}).get("patient_position") or "").strip().upper(): b.name
                for b in beams}
    plan_pos.pop("", None)
    if not plan_pos or cfg.get("plan", {}).get("allow_position_mismatch", False):
        return
    if not ct_pos:
        sys.stderr.write(f"mcproton: warning: the CT series has no PatientPosition, so the plan's setup position "
                         f"{', '.join(sorted(plan_pos))} cannot be checked against it\n")
        return
    for pos, name in sorted(plan_pos.items()):
        if pos != ct_pos:
            raise ConfigError(f"plan beam {name!r} is set up {pos} (PatientSetupSequence PatientPosition) but the CT "
                              f"was acquired {ct_pos}: the gantry angles would be applied to a patient lying otherwise "
                              "than in the images, so a beam can enter from the wrong side; use the CT the plan "
                              "was made on, or set plan.allow_position_mismatch = true if the plan's position is right "
                              "and the CT's PatientPosition is known to be wrong")


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
    check_memory(int(geometry.material_index_zyx.size), len(beams), geometry.shape_zyx, ph.get("type") == "ct")
    out = cfg.get("output", {})
    if out.get("dose_to", "medium") not in ("medium", "water"):
        raise ConfigError(f'output.dose_to must be "medium" or "water"; got {out["dose_to"]!r}')
    if "rbe" in out and not 0.5 <= float(out["rbe"]) <= 2.0:
        raise ConfigError(f"output.rbe = {out['rbe']} is not a plausible constant RBE; give 1.1 (the clinical "
                          "convention for protons) or a value in 0.5-2, or leave it out for physical dose")
    # a patient CT only: a slab_ct phantom is built for its plan and has a frame of its own
    ct_for = (getattr(geometry, "frame_of_reference_uid", "") or "") if ph.get("type") == "ct" else ""
    if ct_for and not cfg.get("plan", {}).get("allow_other_frame", False):
        for beam in beams:
            plan_for = (getattr(beam, "meta", None) or {}).get("frame_of_reference_uid") or ""
            if plan_for and plan_for != ct_for:
                raise ConfigError(f"plan beam {beam.name!r} refers to FrameOfReferenceUID {plan_for} but the CT's is "
                                  f"{ct_for}: the plan was made on another CT, and its isocentre coordinates would "
                                  "put the dose in the wrong place; use the plan's CT, or set "
                                  "plan.allow_other_frame = true if the two frames are known to coincide")
    check_patient_position(cfg, geometry, beams)
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

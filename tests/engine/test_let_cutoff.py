"""The LETd must not depend on the cut-off energy, which leaves the dose unchanged (review 4 F1, 2026-12-06).

A proton that falls below physics.e_cut_mev deposits its residual energy in one place; that deposit was scored
with LET = S_el(E_res), while the energy it stands for would have been deposited over the peak of the stopping
power (dose-averaged: (1/E) integral_0^E S_el dE', 59 against 41 keV/um at 0.5 MeV in water).  The LETd at the
default cut (0.5 MeV) was then 6.6 % low at the Bragg peak and 9-11 % on the distal fall-off of a 150 MeV beam
against e_cut = 0.1 MeV.  The residual is now scored with the table column "let_end" (transport.cu
deposit_local_proton, lose_energy).
"""
from __future__ import annotations

import numpy as np

from mcproton.geometry import box_phantom
from mcproton.run import simulate
from mcproton.settings import PhysicsSettings, RunSettings
from mcproton.source import Beam


def central_depth_profiles(e_cut_mev: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dose and LETd (keV/um) along z of a 70 MeV pencil beam in water: 0.5 mm slabs, one voxel wide (40 mm)."""
    g = box_phantom("water", (40, 40, 60), (40, 40, 0.5))
    r = simulate(g, Beam.pencil(70.0, position_mm=(0, 0, -1)),
                 RunSettings(primaries=2000, seed=seed, backend="cpu", batches=2,
                             physics=PhysicsSettings(e_cut_mev=e_cut_mev)), progress=False)
    return r.dose_gy_zyx[:, 0, 0], r.let_d_kev_um_zyx[:, 0, 0]


def test_letd_at_the_bragg_peak_does_not_depend_on_the_cut_off():
    """Dose-weighted mean LETd from the Bragg peak to the distal 20 % dose, default cut (0.5 MeV) against 0.1
    MeV (converged), same seed, both weighted with the 0.1 MeV run's dose: within 2 %.
    Measured over seeds 1-8 (2000 primaries): -0.02 to -0.15 % now; -9.7 to -11.1 % before the fix.  The two
    runs share their histories until a track first falls below 0.5 MeV, so the ratio is steadier than either
    LETd: its seed-to-seed sd is 0.04 % now (0.7 % before), and the 2 % tolerance lies ~50 sd from the
    measured mean now and ~12 sd from the old one: no false alarm, and the old bias cannot pass.  ~1 s."""
    d_ref, l_ref = central_depth_profiles(0.1, seed=3)
    _, l_def = central_depth_profiles(0.5, seed=3)
    ip = int(np.argmax(d_ref))
    i20 = ip + int(np.argmax(d_ref[ip:] < 0.2 * d_ref[ip]))
    sel = slice(ip, i20 + 1)
    w = d_ref[sel] / d_ref[sel].sum()
    ratio = float((w * l_def[sel]).sum() / (w * l_ref[sel]).sum())
    assert abs(ratio - 1) < 0.02, \
        f"LETd at the Bragg peak with e_cut 0.5 MeV / with 0.1 MeV = {ratio:.4f} (the residual's LET is off)"

"""Thin steps (air, very low densities): the energy loss of a step whose mass thickness is a tiny fraction of the
residual range is m S at the midpoint energy (kernels/transport.cu MCP_THIN_STEP_RANGE_FRACTION), not a float32
difference of two nearly equal ranges.  Transport audit 2026-12-05, F2: the dose in air at 250 MeV was off by up to
4 % per voxel, and below 1e-5 g/cm3 it was 0 or up to 54x the true dose; the energy ledger did not show it.

The case has an exact answer: pure CSDA (no straggling, nuclear events or scattering), a pencil beam along a
column of 1 x 1 cm voxels of low-density water, so every voxel's dose per primary is the fluence (1 / cm2) times the
mass stopping power at the beam's energy (the energy hardly changes in 10 cm of such a medium).  Deterministic on
the CPU (fixed seed); the tolerance (0.5 %, spread 0.3 %) is far below the old errors (+17 % to +52 % at 1e-4
g/cm3, 250 MeV) and far above float32 rounding of m S (1e-7)."""
from __future__ import annotations

import numpy as np
import pytest

import mcproton as mcp
from mcproton._physics.stopping import electronic_mass_stopping_power
from mcproton.materials import get_material

GY_PER_MEV_CM2_PER_G = 1.602176634e-10   # 1 MeV/g = 1.602e-13 J / 1e-3 kg


@pytest.mark.parametrize("energy", [150.0, 250.0])
@pytest.mark.parametrize("rho", [1e-5, 1e-4, 1.2e-3])
def test_dose_of_thin_steps_is_fluence_times_stopping_power(energy, rho):
    g = mcp.box_phantom("water", (10, 10, 100), (10, 10, 10), density_g_cm3=rho)
    phys = mcp.PhysicsSettings(straggling=False, nuclear=False, msc=False)
    r = mcp.simulate(g, mcp.Beam.pencil(energy, position_mm=(0, 0, -10)),
                     mcp.RunSettings(primaries=2000, batches=10, seed=1, backend="cpu", threads=1, physics=phys))
    expected = float(electronic_mass_stopping_power(get_material("water"), np.array([energy]))[0]) \
        * GY_PER_MEV_CM2_PER_G
    per_voxel = r.dose_gy_zyx[:, 0, 0] / expected
    assert per_voxel.mean() == pytest.approx(1.0, abs=0.005), per_voxel
    assert per_voxel.max() - per_voxel.min() < 0.003, per_voxel

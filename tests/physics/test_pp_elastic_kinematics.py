"""Elastic p-p scattering kinematics of the kernel (physics/kinematics.h, through the mcp_probe_pp entry point)
against an independent calculation: the Lorentz boost of a centre-of-mass scattering into the laboratory."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._backend import get_backend

M = 938.272088  # proton rest energy, MeV (CODATA 2018)


def boost_to_lab(T: float, cos_cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kinetic energy, lab polar cosine) of the proton scattered at cos_cm in the centre of mass."""
    p = np.sqrt(T * (T + 2 * M))
    e_tot = T + 2 * M
    beta = p / e_tot
    gamma = 1 / np.sqrt(1 - beta**2)
    e_cm = np.sqrt(e_tot**2 - p**2) / 2           # each proton's energy in the CM
    p_cm = np.sqrt(e_cm**2 - M**2)
    pz = gamma * (p_cm * cos_cm + beta * e_cm)
    pt = p_cm * np.sqrt(1 - cos_cm**2)
    e_lab = gamma * (e_cm + beta * p_cm * cos_cm)
    return e_lab - M, pz / np.hypot(pz, pt)


def kernel_cos(backend: str, T: float, t_out: np.ndarray) -> np.ndarray:
    b = get_backend(backend)
    inp = np.stack([np.full_like(t_out, T), t_out], axis=1).astype(np.float32).reshape(-1)
    out = b.zeros(len(t_out), np.float32)
    b.launch("mcp_probe_pp", len(t_out), b.asarray(inp), out, len(t_out))
    return b.to_host(out).astype(np.float64)


@pytest.mark.parametrize("T", [20.0, 100.0, 230.0])
def test_lab_angles_match_the_lorentz_boost(backend, T):
    cos_cm = np.linspace(-0.999, 0.999, 401)
    t_lab, cos_lab = boost_to_lab(T, cos_cm)
    # the energy sharing the kernel uses, T (1 + cos_cm) / 2, is exact
    assert np.allclose(t_lab, T * (1 + cos_cm) / 2, rtol=1e-9, atol=1e-9)
    got = kernel_cos(backend, T, t_lab)
    # float32 evaluation: 1e-5 in the cosine, far below the error of the non-relativistic sqrt(t/T) (below)
    assert np.max(np.abs(got - cos_lab)) < 1e-5
    assert np.max(np.abs(np.sqrt(t_lab / T) - cos_lab)) > 20 * 1e-5 * (T / 20)


def test_the_two_protons_open_less_than_90_degrees(backend):
    """Relativistically the opening angle of the two protons is below 90 degrees (exactly 90 classically)."""
    T = 200.0
    t1 = np.linspace(5.0, 195.0, 50)
    c1, c2 = kernel_cos(backend, T, t1), kernel_cos(backend, T, T - t1)
    opening = np.arccos(c1) + np.arccos(c2)
    assert np.all(opening < np.pi / 2) and np.all(opening > np.pi / 2 - 0.1)

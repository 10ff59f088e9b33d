"""The kernel's table lookups, physics functions and source sampling, each through its probe entry point
(kernels/probes.cu), against the Python side or the formulas, on every backend."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._kernels.layout import TALLY_SCALE
from mcproton.geometry import box_phantom
from mcproton.run import Simulation
from mcproton.settings import RunSettings
from mcproton.source import Beam
from mcproton.validation import reference as R


def _sim(backend, beam=None, material="water"):
    g = box_phantom(material, (40.0, 40.0, 40.0), (2.0, 2.0, 2.0))
    beam = beam or Beam.pencil(100.0)
    return Simulation(g, beam, RunSettings(backend=backend, primaries=1000, batches=2))


@pytest.mark.parametrize("material", ["water", "bone_cortical_icrp"])
def test_range_lookup_and_its_inverse_match_the_python_tables(backend, material):
    """CSDA range R(E) in the kernel (power-law bins) equals PhysicsTables.csda_range_g_cm2, and the energy after
    a mass thickness dx, E(R(E) - dx), equals the Python inverse: rel. 2e-6 / 1e-5 (float32 arithmetic);
    the stopping power equals the table column interpolated in ln E."""
    sim = _sim(backend, material=material)
    b, t = sim.backend, sim.tables
    e = np.geomspace(1.0, 250.0, 400).astype(np.float32)
    r_py = t.csda_range_g_cm2(0, e.astype(np.float64))
    dx = (0.3 * r_py).astype(np.float32)
    out = b.zeros(3 * len(e), np.float32)
    b.launch("mcp_probe_energy_loss", len(e), sim.params_dev, b.asarray(e), b.asarray(np.zeros(len(e), np.int32)),
             b.asarray(dx), out, len(e))
    o = b.to_host(out).reshape(-1, 3).astype(np.float64)
    assert np.allclose(o[:, 1], r_py, rtol=2e-6)
    fine = np.geomspace(0.5, 260.0, 400_000)
    e_after = np.interp(r_py - dx, t.csda_range_g_cm2(0, fine), fine)
    assert np.allclose(o[:, 0], e_after, rtol=1e-5)
    lnt = (np.log(e.astype(np.float64)) - t.log_e_min) / t.dlog_e
    s_py = np.interp(lnt, np.arange(t.n_e), t.column("stop")[0].astype(np.float64))
    assert np.allclose(o[:, 2], s_py, rtol=1e-5)


def test_straggling_and_scattering_functions_match_their_formulas(backend):
    """Bohr variance with the relativistic factor (PDG), Gottschalk's T_dM (validation/reference.py, written
    independently in NumPy) and pv, at 5-250 MeV: rel. 1e-4 (float32, fast-math log10 on the GPU)."""
    sim = _sim(backend)
    b = sim.backend
    T = np.geomspace(5.0, 250.0, 60)
    t1 = np.full_like(T, 250.0)
    za, dx, xs = 0.5551, 0.1, 46.88
    inp = np.stack([T, np.full_like(T, za), np.full_like(T, dx), np.full_like(T, xs), t1], axis=1)
    out = b.zeros(3 * len(T), np.float32)
    b.launch("mcp_probe_physics", len(T), b.asarray(inp.astype(np.float32).reshape(-1)), out, len(T))
    o = b.to_host(out).reshape(-1, 3).astype(np.float64)
    M, me, K = 938.272088, 0.51099895, 0.307075
    g = 1 + T / M
    b2 = 1 - 1 / g**2
    assert np.allclose(o[:, 0], K * me * za * dx * (1 - b2 / 2) / (1 - b2), rtol=1e-4)
    assert np.allclose(o[:, 2], R.pv_mev(T), rtol=1e-5)
    ok = T < 240   # T_dM diverges as pv -> p1v1 (the kernel clamps the log there)
    assert np.allclose(o[ok, 1], R.scattering_power_dm(T[ok], 250.0, xs), rtol=2e-4)


def test_source_sampling_moments(backend):
    """A Gaussian pencil beam with energy spread, size, divergence and position-angle correlation: the sampled
    moments match the spot's parameters.  20 000 samples: sd of a standard deviation estimate 0.5 %, of a
    correlation 0.007; tolerances 3 % and 0.04 (> 5 sd)."""
    beam = Beam.pencil(150.0, position_mm=(1.0, -2.0, -10.0), energy_spread_mev=1.5, sigma_mm=(4.0, 2.0),
                       divergence_rad=(0.004, 0.002), correlation=(0.5, 0.0))
    sim = _sim(backend, beam)
    b = sim.backend
    n = 20_000
    out = b.zeros(7 * n, np.float32)
    b.launch("mcp_probe_source", n, sim.params_dev, out, n)
    o = b.to_host(out).reshape(n, 7).astype(np.float64)
    x, y, u, v, w, e = o[:, 0], o[:, 1], o[:, 3], o[:, 4], o[:, 5], o[:, 6]
    corner = sim.geometry.lower_corner_mm / 10.0
    assert np.mean(x) + corner[0] == pytest.approx(0.1, abs=0.01)
    assert np.mean(y) + corner[1] == pytest.approx(-0.2, abs=0.01)
    assert np.std(x) == pytest.approx(0.4, rel=0.03) and np.std(y) == pytest.approx(0.2, rel=0.03)
    assert np.std(e) == pytest.approx(1.5, rel=0.03) and np.mean(e) == pytest.approx(150.0, abs=0.05)
    assert np.allclose(u * u + v * v + w * w, 1.0, atol=1e-5)
    assert np.std(u / w) == pytest.approx(0.004, rel=0.03) and np.std(v / w) == pytest.approx(0.002, rel=0.03)
    assert np.corrcoef(x, u / w)[0, 1] == pytest.approx(0.5, abs=0.04)
    assert abs(np.corrcoef(y, v / w)[0, 1]) < 0.04


WALK_MAX = 64   # MCP_PROBE_WALK_MAX in kernels/probes.cu


def brute_force_walk(origin, direction, length, voxel, shape_xyz, step=2e-5):
    """Voxels along a ray found by sampling it every `step` cm: (linear indices in order, exit distances)."""
    t = np.arange(0.0, length, step)
    pts = origin[None, :] + t[:, None] * direction[None, :]
    idx = np.floor(pts / voxel).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(shape_xyz)), axis=1)
    idx, t = idx[inside], t[inside]
    nx, ny, _ = shape_xyz
    lin = (idx[:, 2] * ny + idx[:, 1]) * nx + idx[:, 0]
    change = np.flatnonzero(np.diff(lin) != 0)
    return np.append(lin[change], lin[-1]), t[change + 1]


def test_voxel_walk_follows_oblique_rays(backend):
    """The DDA walk that shares a step's energy among voxels: for 200 random oblique rays through a grid of
    anisotropic voxels it visits the same voxels, in the same order, as a ray sampled every 0.2 um, and its exit
    distances agree within 0.5 um (the sampling step plus float rounding)."""
    g = box_phantom("water", (30.0, 20.0, 25.0), (2.0, 1.0, 2.5))
    sim = Simulation(g, Beam.pencil(100.0), RunSettings(backend=backend, primaries=1000, batches=2))
    b = sim.backend
    rng = np.random.default_rng(11)
    n = 200
    voxel = np.array(g.voxel_size_mm) / 10.0
    nz, ny, nx = g.shape_zyx
    origin = rng.uniform(0.05, 0.95, (n, 3)) * np.array([nx, ny, nz]) * voxel
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    length = np.full(n, 0.8)
    inp = np.concatenate([origin, d, length[:, None]], axis=1).astype(np.float32)
    vox = b.zeros(WALK_MAX * n, np.int64)
    tex = b.zeros(WALK_MAX * n, np.float32)
    b.launch("mcp_probe_walk", n, sim.params_dev, b.asarray(inp.reshape(-1)), vox, tex, n)
    vox = b.to_host(vox).reshape(n, WALK_MAX)
    tex = b.to_host(tex).reshape(n, WALK_MAX).astype(np.float64)
    for i in range(n):
        o, u = inp[i, :3].astype(np.float64), inp[i, 3:6].astype(np.float64)
        k = vox[i] >= 0
        got_v, got_t = vox[i][k], tex[i][k]
        # the walk ends with the voxel containing the ray's end (or the last one before the grid's edge)
        end = min(float(length[i]), float(got_t[-1]))
        ref_v, ref_t = brute_force_walk(o, u, end - 1e-6, voxel, (nx, ny, nz))
        assert np.array_equal(got_v, ref_v), (i, got_v, ref_v)
        assert np.allclose(got_t[:-1], ref_t, atol=5e-5), (i, got_t, ref_t)


def _fragment_run(backend, material: str, energy: float, mass: float, z2: float, n: int = 400):
    """n fragments born at the centre of a 100 mm cube of `material` (2 mm voxels), through mcp_probe_fragment:
    (energy per voxel (z, y, x), energy out of the grid per fragment, voxel-centre coordinates in cm from the
    birth point, the fragment's expected range in cm)."""
    g = box_phantom(material, (100.0, 100.0, 100.0), 2.0)
    sim = Simulation(g, Beam.pencil(100.0), RunSettings(backend=backend, primaries=10, batches=2))
    b = sim.backend
    centre = np.array([5.0, 5.0, 5.0]) + 0.013   # cm from the corner, off the voxel faces
    inp = np.tile(np.array([*centre, energy, mass, z2], np.float32), n)
    out = b.zeros(n, np.float32)
    b.launch("mcp_probe_fragment", n, sim.params_dev, 5, b.asarray(inp), out, n)
    edep = b.to_host(sim.tally["edep"]).sum(axis=0)[: sim.n_vox].reshape(g.shape_zyx) / TALLY_SCALE
    nz, ny, nx = g.shape_zyx
    zz, yy, xx = np.meshgrid(*(0.2 * (np.arange(k) + 0.5) for k in (nz, ny, nx)), indexing="ij")
    dist = np.sqrt((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (zz - centre[2]) ** 2)
    r_mass = mass / z2 * float(sim.tables.csda_range_g_cm2(0, energy / mass))
    return edep, b.to_host(out), dist, r_mass / g.density_g_cm3_zyx.flat[0]


def test_fragments_spread_over_their_range_in_air(backend):
    """A 5 MeV alpha in air (range 3.5 cm): its energy lies along straight isotropic tracks, uniformly per mass
    thickness, so the energy-weighted mean distance from the birth point is R/2 (the 2 mm voxels blur it by
    well under 1 mm; 400 tracks: statistical sd ~0.5 mm), all energy stays in the grid, and no voxel holds more
    than a few per cent of it.  A 1.5 MeV deuteron (range 2 R_p(0.75 MeV)) spreads the same way."""
    edep, out, dist, rng = _fragment_run(backend, "air", 5.0, 4.0, 4.0)
    assert 3.0 < rng < 4.2, rng
    assert np.isclose(edep.sum(), 400 * 5.0, rtol=1e-5) and np.all(out == 0)
    mean_d = float((edep * dist).sum() / edep.sum())
    assert abs(mean_d - rng / 2) < 0.15, (mean_d, rng)
    assert edep.max() < 0.05 * edep.sum()
    edep_d, out_d, dist_d, rng_d = _fragment_run(backend, "air", 1.5, 2.0, 1.0)
    assert 2.0 < rng_d < 4.0 and np.all(out_d == 0), rng_d
    assert abs(float((edep_d * dist_d).sum() / edep_d.sum()) - rng_d / 2) < 0.15


def test_fragments_stay_local_in_water_and_leave_the_grid_in_air(backend):
    """In water the same alpha's range (37 um) is far below half a voxel: all its energy in the birth voxel.  A
    60 MeV recoil-like fragment (M 14, Z 7) in air runs out of the 5 cm to the grid's faces for most directions:
    what leaves is returned, and deposited + returned = the fragments' energy."""
    edep, out, dist, rng = _fragment_run(backend, "water", 5.0, 4.0, 4.0)
    assert rng < 0.01 and np.isclose(edep.max(), edep.sum()) and np.isclose(edep.sum(), 2000.0, rtol=1e-6)
    edep, out, dist, rng = _fragment_run(backend, "air", 60.0, 4.0, 4.0, n=200)
    assert rng > 10.0
    assert out.sum() > 0.3 * 200 * 60.0
    assert np.isclose(edep.sum() + out.sum(), 200 * 60.0, rtol=1e-5)

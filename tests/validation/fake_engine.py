"""A fake, analytical stand-in for mcproton.run.simulate used to test the validation pipeline without the engine.

Depth dose: Bortfeld's analytical curve on the water-equivalent depth (PSTAR stopping-power ratios), lateral
profile: Gaussian with the Fermi-Eyges sigma, 0.3 % Gaussian noise per voxel, an exactly balanced ledger.
Also provides a fake material database and a fake stopping-power function (PSTAR/ICRU 90 values) so that the
cases can run before mcproton.materials / mcproton._physics.stopping exist.
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def load_validation():
    """Import ``mcproton.validation`` (the editable install maps the source tree's validation/ folder)."""
    import mcproton.validation.metrics  # noqa: F401
    return sys.modules["mcproton.validation"]


DENSITY = {"water": 1.0, "bone_compact_icru": 1.85, "bone_cortical_icrp": 1.92, "adipose_tissue_icrp": 0.95,
           "muscle_skeletal_icrp": 1.04, "muscle_striated_icru": 1.04, "lung": 0.26, "pmma": 1.19,
           "air": 0.00120479, "graphite": 1.7, "a_150": 1.127, "polyethylene": 0.94, "aluminium": 2.699}


def fake_get_material(name):
    from mcproton.materials import Material
    if not isinstance(name, str):
        return name
    if name not in DENSITY:
        raise KeyError(f"unknown material {name!r}")
    return Material(name, DENSITY[name])


def fake_stopping(material, energy_mev, water_model="icru90"):
    from mcproton.validation import reference as R
    name = material if isinstance(material, str) else material.name
    tab = R.water_table(water_model) if name == "water" else R.pstar(name)
    return tab.electronic(np.asarray(energy_mev, dtype=float))


def install_fake_modules(monkeypatch):
    """Provide get_material and _physics.stopping when the real ones do not exist yet."""
    import mcproton.materials as mm
    if not hasattr(mm, "get_material"):
        monkeypatch.setattr(mm, "get_material", fake_get_material, raising=False)
    try:
        import mcproton._physics.stopping  # noqa: F401
    except ImportError:
        mod = types.ModuleType("mcproton._physics.stopping")
        mod.electronic_mass_stopping_power = fake_stopping
        monkeypatch.setitem(sys.modules, "mcproton._physics.stopping", mod)


@dataclass
class FakeResult:
    dose_gy_zyx: np.ndarray
    uncertainty_rel_zyx: np.ndarray
    idd: np.ndarray
    z_mm: np.ndarray
    geometry: object
    primaries: int
    ledger: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    backend: str = "cpu"
    device: str = "fake analytical engine"
    wall_s: float = 0.01
    protons_per_second: float = 1e6
    mean_rel_uncertainty_50: float = 0.003

    @property
    def dose_to_water_gy_zyx(self):
        return self.dose_gy_zyx

    @property
    def edep_mev_zyx(self):   # the energy deposit (the fake's dose up to a constant: fine for profiles)
        return self.dose_gy_zyx

    def integrated_depth_dose(self):
        return self.z_mm, self.idd


def fake_simulate(geometry, beam, settings, progress=False):
    from mcproton.validation import reference as R
    spot = beam.spots[0]
    e0, se = float(spot.energy_mev), float(spot.energy_spread_mev)
    water = R.icru90_water()
    z = geometry.axis_mm("z")
    dz = geometry.voxel_size_mm[2]
    mats = [m.name for m in geometry.materials]
    rho = geometry.density_g_cm3_zyx[:, 0, 0].astype(float)
    mi = geometry.material_index_zyx[:, 0, 0]
    ratio = np.array([1.0 if mats[i] == "water" else float(R.pstar(mats[i]).total(80.0) / water.total(80.0))
                      for i in mi])
    wet_edges = np.concatenate([[0.0], np.cumsum(rho * ratio * dz)])
    wet = 0.5 * (wet_edges[1:] + wet_edges[:-1])
    r0 = float(water.csda_range(e0)) * 10.0
    alpha, p = 0.0022, 1.77
    s_mono = 0.012 * (r0 / 10) ** 0.935 * 10
    s = np.sqrt(s_mono ** 2 + (alpha * p * e0 ** (p - 1) * se * 10) ** 2)
    idd_w = R.bortfeld_curve(wet, r0, s, 0.8, 0.1)
    idd = idd_w * rho * ratio           # energy per unit physical depth / density of water-equivalent curve
    idd = idd / np.where(rho > 0, rho, 1.0)
    rng = np.random.default_rng(settings.seed)
    idd = idd * (1 + 0.003 * rng.standard_normal(idd.shape))
    nz, ny, nx = geometry.shape_zyx
    x, y = geometry.axis_mm("x"), geometry.axis_mm("y")
    sig = R.sigma_fermi_eyges(e0, np.clip(wet, 1.0, r0 * 0.99), water)
    sig = np.sqrt(sig ** 2 + float(spot.sigma_mm[0]) ** 2 + 0.05 ** 2)
    dx, dy = geometry.voxel_size_mm[0], geometry.voxel_size_mm[1]
    from scipy.special import erf

    def frac(c, d, sg):
        return 0.5 * (erf((c[None, :] + d / 2) / (np.sqrt(2) * sg[:, None])) -
                      erf((c[None, :] - d / 2) / (np.sqrt(2) * sg[:, None])))
    fx, fy = frac(x, dx, sig), frac(y, dy, sig)
    dose = idd[:, None, None] * fy[:, :, None] * fx[:, None, :]
    unc = np.full(dose.shape, 0.003)
    inc = e0 * settings.primaries
    dep = 0.9 * inc
    ledger = {"incident_mev": inc, "deposited_mev": dep, "escaped_mev": 0.06 * inc, "neutral_mev": 0.04 * inc,
              "imbalance_rel": 0.0}
    prov = {"version": "0.0-fake", "kernel_hash": "fake", "compile_options": "", "backend": "cpu",
            "device": "fake", "seed": settings.seed, "primaries": settings.primaries,
            "physics": vars(settings.physics)}
    return FakeResult(dose, unc, idd, z, geometry, settings.primaries, ledger, prov)

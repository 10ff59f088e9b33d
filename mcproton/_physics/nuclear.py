"""Proton nuclear interaction data per material: nonelastic reactions (ICRU 63, below), elastic scattering on
hydrogen (p-p, end of file) and nuclear elastic scattering on heavier nuclei (Barashenkov, end of file).

Source: ``data/nuclear/icru63_nonelastic_p_elements.csv`` (ICRU Report 63 (2000)-layout evaluations as
distributed with MCsquare, e0404/MCsquare @ 211eefe, Apache-2.0; see the file header): for C, N, O, Al, Si, P,
Ca, Fe, Cu, W, Pb, the nonelastic cross section sigma (barn) and, per nonelastic event, the secondary proton,
alpha and deuteron multiplicities and the fraction of the incident energy given to recoil nuclei, against
proton energy up to 250 MeV.

Rules (documented choices):

* Energy interpolation is linear in E. Below an element's first tabulated energy (its reaction threshold
  region, 3-7 MeV) the cross section is 0; above the last tabulated energy (250 MeV) all quantities are held
  constant.
* Hydrogen has no nonelastic channel below the pion-production threshold (~280 MeV): it contributes 0 to
  sigma.
* Elements without data take the data of the element with data nearest in Z (ties -> the lower Z), see
  :data:`SUBSTITUTES`; e.g. F -> O, Na, Mg -> Al, S, Cl -> P, Ar, K, Ti -> Ca, Zn -> Cu, I -> W. The
  substitute's microscopic cross section is scaled by (A/A_sub)^(2/3) (geometric-cross-section scaling, sigma
  ~ r0^2 A^(2/3)); multiplicities and recoil fraction are taken unchanged. Li, Be, B (and He) take carbon's
  data.
* Material averages of multiplicities / recoil fraction are weighted by each element's share of the
  macroscopic cross section at that energy; they are 0 where the material's cross section is 0.

The macroscopic mass cross section is  sigma/rho = sum_i w_i N_A sigma_i(E) / A_i  [cm2/g], 1 barn = 1e-24
cm2, N_A = 6.02214076e23 /mol (SI 2019 exact).
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from ..materials import ELEMENTS, Material, element, get_material

_NUC_FILE = Path(__file__).resolve().parents[1] / "data" / "nuclear" / "icru63_nonelastic_p_elements.csv"

AVOGADRO = 6.02214076e23   # /mol, exact (SI 2019)
BARN_CM2 = 1e-24           # cm2

#: output keys of nonelastic_tables
KEYS = ("sigma_cm2_g", "mult_p", "mult_alpha", "mult_d", "frac_recoil")
_COLS = {"sigma": "sigma_nonelastic_barn", "mult_p": "multiplicity_proton",
         "mult_alpha": "multiplicity_alpha",
         "mult_d": "multiplicity_deuteron", "frac_recoil": "energy_fraction_recoils"}


@lru_cache(maxsize=1)
def _element_data() -> dict[str, dict[str, np.ndarray]]:
    """symbol -> {"energy": MeV, "sigma": barn, "mult_p", "mult_alpha", "mult_d", "frac_recoil"} arrays."""
    with open(_NUC_FILE, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(ln for ln in fh if ln.strip() and not ln.startswith("#")))
    z_to_sym = {e.Z: s for s, e in ELEMENTS.items()}
    data: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        sym = z_to_sym[int(r["Z"])]
        d = data.setdefault(sym, {k: [] for k in ["energy", *_COLS]})
        d["energy"].append(float(r["energy_MeV"]))
        for k, col in _COLS.items():
            d[k].append(float(r[col]))
    out = {}
    for sym, d in data.items():
        arr = {k: np.asarray(v, dtype=float) for k, v in d.items()}
        order = np.argsort(arr["energy"], kind="stable")
        arr = {k: v[order] for k, v in arr.items()}
        if np.any(np.diff(arr["energy"]) <= 0):
            raise ValueError(f"{_NUC_FILE.name}: repeated energies for {sym}")
        out[sym] = arr
    return out


def elements_with_data() -> list[str]:
    """Symbols of the elements that have nonelastic data in the packaged file (sorted by Z)."""
    return sorted(_element_data(), key=lambda s: ELEMENTS[s].Z)


def substitute_element(symbol: str) -> str | None:
    """The element whose data ``symbol`` uses: itself if it has data, None for hydrogen (no nonelastic
    channel), else the element with data nearest in Z (ties -> lower Z)."""
    if symbol == "H":
        return None
    data = _element_data()
    if symbol in data:
        return symbol
    z = ELEMENTS[symbol].Z
    return min(data, key=lambda s: (abs(ELEMENTS[s].Z - z), ELEMENTS[s].Z))


def _substitutes() -> dict[str, str]:
    return {s: substitute_element(s) for s in ELEMENTS if s != "H" and substitute_element(s) != s}


#: element without data -> element whose data it uses (cross section scaled by (A/A_sub)^(2/3))
SUBSTITUTES: Mapping[str, str] = _substitutes()


def _interp(e: np.ndarray, e_tab: np.ndarray, y_tab: np.ndarray) -> np.ndarray:
    """Linear in E; 0 below the first tabulated energy; constant above the last."""
    y = np.interp(e, e_tab, y_tab)        # np.interp holds the end values constant
    return np.where(e < e_tab[0], 0.0, y)


def element_nonelastic(symbol: str, energy_mev) -> dict[str, np.ndarray]:
    """Microscopic data of one element: {"sigma_barn", "mult_p", "mult_alpha", "mult_d", "frac_recoil"} at
    ``energy_mev``, with the substitution and A^(2/3) scaling rules of this module (all zero for hydrogen)."""
    e = np.asarray(energy_mev, dtype=float)
    if symbol not in ELEMENTS:
        raise KeyError(f"unknown element {symbol!r}")
    sub = substitute_element(symbol)
    if sub is None:
        z = np.zeros_like(e)
        return {"sigma_barn": z, "mult_p": z.copy(), "mult_alpha": z.copy(), "mult_d": z.copy(),
                "frac_recoil": z.copy()}
    d = _element_data()[sub]
    scale = (ELEMENTS[symbol].atomic_mass_g_mol / ELEMENTS[sub].atomic_mass_g_mol) ** (2.0 / 3.0)
    out = {"sigma_barn": scale * _interp(e, d["energy"], d["sigma"])}
    below = e < d["energy"][0]
    for k in ("mult_p", "mult_alpha", "mult_d", "frac_recoil"):
        out[k] = np.where(below, 0.0, np.interp(e, d["energy"], d[k]))
    return out


def nonelastic_tables(material: Material | str, energy_mev: np.ndarray) -> dict[str, np.ndarray]:
    """Nonelastic nuclear data of ``material`` at ``energy_mev`` (MeV).

    Returns a dict of arrays shaped like ``energy_mev``:

    * ``"sigma_cm2_g"``: macroscopic nonelastic mass cross section sum_i w_i N_A sigma_i(E) / A_i (cm2/g);
      multiply by the density (g/cm3) for the linear attenuation coefficient (1/cm).
    * ``"mult_p"``, ``"mult_alpha"``, ``"mult_d"``: secondary proton/alpha/deuteron multiplicity per
      nonelastic event;
    * ``"frac_recoil"``: fraction of the incident energy deposited locally by recoiling nuclei;

    the last four averaged over the elements with weights w_i N_A sigma_i(E)/A_i (0 where sigma is 0).
    """
    material = get_material(material) if isinstance(material, str) else material
    e = np.asarray(energy_mev, dtype=float)
    if np.any(~np.isfinite(e)) or np.any(e < 0):
        raise ValueError("energy_mev must be finite and >= 0")
    sigma = np.zeros_like(e)
    acc = {k: np.zeros_like(e) for k in ("mult_p", "mult_alpha", "mult_d", "frac_recoil")}
    for sym, w in material.mass_fractions.items():
        if w <= 0:
            continue
        d = element_nonelastic(sym, e)
        part = w * AVOGADRO * d["sigma_barn"] * BARN_CM2 / ELEMENTS[sym].atomic_mass_g_mol   # cm2/g
        sigma += part
        for k in acc:
            acc[k] += part * d[k]
    safe = np.where(sigma > 0, sigma, 1.0)
    out = {"sigma_cm2_g": sigma}
    for k, v in acc.items():
        out[k] = np.where(sigma > 0, v / safe, 0.0)
    return out


__all__ = ["nonelastic_tables", "element_nonelastic", "elements_with_data", "substitute_element",
           "SUBSTITUTES", "element_elastic_mb", "elastic_mass_cross_section", "elastic_target_mass_number",
           "KEYS", "AVOGADRO", "BARN_CM2"]


# --- proton-proton elastic scattering on the hydrogen of the material

def _pp_table() -> tuple[np.ndarray, np.ndarray]:
    rows = []
    with open(Path(__file__).resolve().parent.parent / "data" / "nuclear" / "pp_elastic.csv", encoding="utf-8") as fh:
        for line in fh:
            t = line.strip()
            if not t or t.startswith("#") or t[0].isalpha():
                continue
            a, b = t.split(",")[:2]
            rows.append((float(a), float(b)))
    arr = np.array(rows)
    return arr[:, 0], arr[:, 1]


def pp_elastic_mass_cross_section(material: Material | str, energy_mev) -> np.ndarray:
    """Macroscopic mass cross section (cm2/g) of elastic scattering on the material's hydrogen nuclei:
    w_H N_A / A_H sigma_pp(E), with sigma_pp from data/nuclear/pp_elastic.csv (interpolated log-log, constant
    outside the table)."""
    m = get_material(material) if isinstance(material, str) else material
    w_h = float(m.mass_fractions.get("H", 0.0))
    e = np.asarray(energy_mev, dtype=float)
    if w_h <= 0:
        return np.zeros_like(e)
    et, st = _pp_table()
    sig_mb = np.exp(np.interp(np.log(np.clip(e, et[0], et[-1])), np.log(et), np.log(st)))
    a_h = element("H").atomic_mass_g_mol
    return w_h * AVOGADRO / a_h * sig_mb * 1e-27


# --- proton-nucleus (Z >= 2) nuclear elastic scattering

_BAR_FILE = Path(__file__).resolve().parents[1] / "data" / "nuclear" / "barashenkov_proton_nucleus.csv"

#: Lowest energy of the elastic tables (MeV).  Below it (residual range < 2.6 mm in water) nuclear elastic
#: scattering is not simulated: a typical 0.3 rad deflection there shortens the track's depth by ~0.1 mm at most.
ELASTIC_E_MIN_MEV = 14.0


@lru_cache(maxsize=1)
def _elastic_element_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """symbol -> (energy MeV, proton nuclear elastic cross section mb = total - inelastic) from Barashenkov."""
    with open(_BAR_FILE, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(ln for ln in fh if ln.strip() and not ln.startswith("#")))
    acc: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        el = max(float(r["sigma_total_mb"]) - float(r["sigma_inelastic_mb"]), 0.0)
        acc.setdefault(r["element"], []).append((float(r["energy_MeV"]), el))
    out = {}
    for sym, pts in acc.items():
        if sym not in ELEMENTS:
            raise ValueError(f"{_BAR_FILE.name}: unknown element {sym!r}")
        arr = np.asarray(sorted(pts))
        if np.any(np.diff(arr[:, 0]) <= 0):
            raise ValueError(f"{_BAR_FILE.name}: repeated energies for {sym}")
        out[sym] = (arr[:, 0], arr[:, 1])
    return out


def element_elastic_mb(symbol: str, energy_mev) -> np.ndarray:
    """Proton nuclear elastic cross section (mb) of one element (Z >= 2) at ``energy_mev``: Barashenkov's
    total - inelastic, linear in E, 0 below ELASTIC_E_MIN_MEV, constant above the table.  Elements without a
    table are interpolated between the neighbours in Z with the sigma ~ A^(2/3) scaling (weights linear in A;
    the rule Geant4 applies to these tables); below the lightest / above the heaviest tabulated element the
    nearest one is scaled by (A/A_ref)^(2/3).  Hydrogen: 0 (p-p scattering is its own channel)."""
    e = np.asarray(energy_mev, dtype=float)
    if symbol not in ELEMENTS:
        raise KeyError(f"unknown element {symbol!r}")
    if symbol == "H":
        return np.zeros_like(e)
    data = _elastic_element_data()
    el = ELEMENTS[symbol]

    def one(sym: str) -> np.ndarray:
        et, st = data[sym]
        y = np.interp(e, et, st)
        return np.where(e < ELASTIC_E_MIN_MEV, 0.0, y)

    if symbol in data:
        return one(symbol)
    tab = sorted(data, key=lambda s: ELEMENTS[s].Z)
    lower = [s for s in tab if ELEMENTS[s].Z < el.Z]
    upper = [s for s in tab if ELEMENTS[s].Z > el.Z]
    a = el.atomic_mass_g_mol

    def scaled(sym: str) -> np.ndarray:
        return one(sym) * (a / ELEMENTS[sym].atomic_mass_g_mol) ** (2.0 / 3.0)

    if not lower:
        return scaled(upper[0])
    if not upper:
        return scaled(lower[-1])
    s1, s2 = lower[-1], upper[0]
    a1, a2 = ELEMENTS[s1].atomic_mass_g_mol, ELEMENTS[s2].atomic_mass_g_mol
    return (scaled(s1) * (a2 - a) + scaled(s2) * (a - a1)) / (a2 - a1)


def elastic_mass_cross_section(material: Material | str, energy_mev) -> np.ndarray:
    """Macroscopic mass cross section (cm2/g) of proton nuclear elastic scattering on the material's nuclei
    heavier than hydrogen: sum_i w_i N_A / A_i sigma_el,i(E)."""
    m = get_material(material) if isinstance(material, str) else material
    e = np.asarray(energy_mev, dtype=float)
    out = np.zeros_like(e)
    for sym, w in m.mass_fractions.items():
        if w > 0 and sym != "H":
            out += w * AVOGADRO / ELEMENTS[sym].atomic_mass_g_mol * element_elastic_mb(sym, e) * 1e-27
    return out


def elastic_target_mass_number(material: Material | str, energy_mev: float = 100.0) -> float:
    """Effective mass number of the material's elastic-scattering targets: the mean of A_i weighted by each
    element's share of the elastic cross section at ``energy_mev`` (0 if the material has no nucleus heavier
    than hydrogen).  The kernel samples the momentum transfer for this one target (nuclear.h)."""
    m = get_material(material) if isinstance(material, str) else material
    num = den = 0.0
    for sym, w in m.mass_fractions.items():
        if w > 0 and sym != "H":
            a = ELEMENTS[sym].atomic_mass_g_mol
            part = w / a * float(element_elastic_mb(sym, energy_mev))
            num += part * a
            den += part
    return num / den if den > 0 else 0.0

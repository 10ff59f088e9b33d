"""Build the per-material kernel tables (kernels/params.h) from the physics data layer.

For each material, on a grid uniform in ln(E):
  CSDA range R(E) = integral_0^E dE'/S_tot(E') (g/cm2, electronic + nuclear stopping; below the first
  grid point S ~ E^(1/2), see _csda_range()),
  the electronic mass stopping power, the water/medium mass stopping-power ratio, the nonelastic mass cross
  section and the nonelastic product multiplicities (ICRU 63), the track-end LET (the mean electronic stopping
  power over the last E of a track, see track_end_let()), plus an index table on a uniform ln(R) grid for the
  exact inverse-range lookup.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# the column lists of kernels/params.h (MCP_ENERGY_COLUMNS, MCP_MATERIAL_COLUMNS), read by the contract parser
from .._kernels.layout import ENERGY_COLUMNS as COL
from .._kernels.layout import MATERIAL_COLUMNS as MAT
from .._kernels.layout import N_ENERGY_COLUMNS, N_MATERIAL_COLUMNS
from ..materials import Material, get_material
from . import nuclear, scattering, stopping

E_MIN_MEV = 0.01     # lowest table energy (below every allowed cut-off)
E_MAX_MEV = 400.0    # highest table energy (above every allowed beam energy)
N_E = 1024           # ln-grid step 0.0104
N_R = 1024


@dataclass
class PhysicsTables:
    energy_table: np.ndarray      # float32 [n_mat, n_e, N_ENERGY_COLUMNS] (columns: COL)
    range_index: np.ndarray       # int32 [n_mat, n_r]
    material_props: np.ndarray    # float32 [n_mat, 4]
    log_e_min: float
    dlog_e: float
    log_r_min: float
    dlog_r: float
    energies_mev: np.ndarray      # float64 [n_e]
    materials: list[Material]
    water_model: str
    meta: dict = field(default_factory=dict)

    @property
    def n_e(self) -> int:
        return self.energy_table.shape[1]

    @property
    def n_r(self) -> int:
        return self.range_index.shape[1]

    def column(self, name: str) -> np.ndarray:
        return self.energy_table[:, :, COL[name]]

    def csda_range_g_cm2(self, mat: int, energy_mev: float | np.ndarray) -> np.ndarray:
        """CSDA range by the same interpolation as the kernel (power-law stopping power within each bin)."""
        t = (np.log(energy_mev) - self.log_e_min) / self.dlog_e
        return range_in_bins(t, self.energy_table[mat, :, COL["range"]].astype(np.float64),
                             self.energy_table[mat, :, COL["range_b"]].astype(np.float64))


#: the majorant covers the energies down to this fraction of E: the largest allowed max_eloss_fraction (0.5)
#: plus a margin for straggling and for the table nodes
MAJORANT_LOW_FRACTION = 0.45


def majorant(e: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Column "hard_sigma_max": at node i the largest hard-event cross section at the nodes from
    MAJORANT_LOW_FRACTION * E_(i-1) up to E_(i+1).  Interpolated linearly between two nodes it still bounds the
    (linearly interpolated) cross section at every energy a proton can reach within one step from any E in
    [E_(i-1), E_(i+1)], so the kernel can sample the next hard event with it and accept it with probability
    sigma(E) / majorant (the null-collision method): exact, although sigma changes along the step."""
    n = len(e)
    lo = np.searchsorted(e, MAJORANT_LOW_FRACTION * e[np.maximum(np.arange(n) - 1, 0)], side="right") - 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(np.arange(n) + 2, n)
    # max(sigma[lo:hi]) for every node from a table of the maxima over 2^k consecutive nodes: two overlapping
    # windows of 2^k cover [lo, hi), and a maximum does not round, so the same values as the slices' max()
    k = np.floor(np.log2(hi - lo)).astype(int)
    levels = [np.asarray(sigma)]
    while (2 << len(levels) - 1) <= int((hi - lo).max()):
        prev, w = levels[-1], 1 << len(levels) - 1
        levels.append(np.maximum(prev[:-w], prev[w:]))
    out = np.empty_like(sigma)
    for j, lev in enumerate(levels):
        sel = k == j
        if sel.any():
            out[sel] = np.maximum(lev[lo[sel]], lev[hi[sel] - (1 << j)])
    return out


def _expm1_over_x(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    safe = np.where(np.abs(x) > 1e-12, x, 1.0)
    return np.where(np.abs(x) > 1e-12, np.expm1(safe) / safe, 1.0)


def range_in_bins(t: np.ndarray, r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """R at fractional grid position t (clamped to the table): within bin i the total stopping power is the
    power law through its end values, S = S_i (E/E_i)^(-k_i), whose integral is
        R(E_i e^(f dlnE)) = R_i + (R_(i+1) - R_i) f h(b_i f) / h(b_i),  h(x) = (e^x - 1)/x,
    with b_i = (1 + k_i) dlnE (column "range_b").  The kernel evaluates the same formula (material_tables.h)."""
    t = np.clip(np.asarray(t, np.float64), 0.0, len(r) - 1.0)
    i = np.minimum(np.floor(t).astype(int), len(r) - 2)
    f = t - i
    return r[i] + (r[i + 1] - r[i]) * f * _expm1_over_x(b[i] * f) / _expm1_over_x(b[i])


#: largest |b| accepted: the kernel's series for h(x) and log1p(x)/x are accurate to 1e-7 below it
RANGE_B_MAX = 0.05


def _csda_range(e: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, b): the CSDA range on the (log) grid e for total stopping power s, integrated exactly for a
    stopping power that is a power law between grid points (S = S_i (E/E_i)^(-k_i), k_i from the two end
    values), and b_i = (1 + k_i) dlnE of each bin (the last row repeats the one before).  Below e[0] S is
    taken to scale as E^(1/2) (velocity-proportional stopping at low energy), giving R(e0) = 2 e0 / S(e0).

    Why a power law and not R linear in ln E: with R linear in ln E the stopping power implied by the range
    table (dE/dR) is proportional to E inside each bin, a sawtooth of +-0.9 % around the true S at therapeutic
    energies (S ~ E^-0.8); short steps then deposit a dose with a +-0.9 % ripple of ~3 mm period at 150 MeV.
    The power law makes the implied S continuous and equal to the table's S at every node."""
    dl = np.diff(np.log(e))
    b = dl - np.log(s[1:] / s[:-1])
    if np.any(np.abs(b) > RANGE_B_MAX):
        raise ValueError("stopping power changes too fast between table energies for the range interpolation "
                         f"(|b| up to {np.abs(b).max():.3f} > {RANGE_B_MAX}); check the stopping-power data")
    r = np.empty_like(e)
    r[0] = 2.0 * e[0] / s[0]
    r[1:] = r[0] + np.cumsum(e[:-1] * dl / s[:-1] * _expm1_over_x(b))
    return r, np.append(b, b[-1])


#: sub-intervals of ln(E) between the stopping-power data's lowest energy and the table's (track_end_let())
N_LOW_SUBGRID = 64


def _power_law_integrals(e: np.ndarray, s: np.ndarray) -> np.ndarray:
    """integral of S dE over each interval [e_i, e_(i+1)] for S the power law through the end values
    (S = S_i (E/E_i)^(-k_i)): S_i E_i dlnE h(dlnE + ln(S_(i+1)/S_i)), h(x) = (e^x - 1)/x."""
    dl = np.diff(np.log(e))
    return s[:-1] * e[:-1] * dl * _expm1_over_x(dl + np.log(s[1:] / s[:-1]))


def track_end_let(e: np.ndarray, s: np.ndarray, s_low: np.ndarray, e_low: np.ndarray) -> np.ndarray:
    """Column "let_end": L_end(E) = (1/E) integral_0^E S_el(E') dE' (MeV cm2/g) at the grid energies e, for the
    electronic mass stopping power s there.

    Why: a proton that falls below the cut-off (physics.e_cut_mev, 0.05-10 MeV) deposits its residual energy E
    in one place.  Had it been transported to rest, every dE' of it would have been scored with LET S_el(E'), so
    the dose-averaged LET of that energy is this mean, not S_el(E): at 0.5 MeV in water 59 keV/um against 41
    (S_el peaks at ~0.08 MeV).  The kernel scores the residual with 0.1 rho L_end(E) keV/um, so that the LETd
    does not depend on the cut-off (transport.cu deposit_local_proton, lose_energy).

    The integral: between grid energies S_el is the power law through the node values (as the range table
    assumes, _csda_range()); from the stopping-power data's lowest energy e_low[0] (1 keV: the ICRU 49 and
    ICRU 90 tables begin there) up to e[0] the same, on the sub-grid e_low with the data's own values s_low
    (the stopping-power model, not an extrapolation); below e_low[0], S_el ~ E^(1/2) (electronic stopping
    proportional to the velocity, which the data follow at their low end: water's S_el at 1, 1.5 and 2 keV is
    133.7, 163.8 and 189.1 MeV cm2/g, exponent 0.50; ICRU Report 49 sec. 2), giving (2/3) e_low[0] S(e_low[0]).
    The part below 10 keV is ~1 % of the integral at 0.5 MeV."""
    below = 2.0 / 3.0 * e_low[0] * s_low[0] + _power_law_integrals(e_low, s_low).sum()
    cumulative = below + np.concatenate([[0.0], np.cumsum(_power_law_integrals(e, s))])
    return cumulative / e


def build_tables(materials: Sequence[Material | str], water_model: str = "icru90",
                 e_cut_mev: float = 0.5, nuclear_elastic: bool = True,
                 ivalue_set: str = stopping.DEFAULT_IVALUE_SET) -> PhysicsTables:
    """Tables for the given materials (order = material index in the geometry).  ``nuclear_elastic=False``
    leaves the nuclear elastic cross section at 0 (the channel is then never chosen)."""
    mats = [get_material(m) if isinstance(m, str) else m for m in materials]
    e = np.exp(np.linspace(np.log(E_MIN_MEV), np.log(E_MAX_MEV), N_E))
    water = get_material("water")
    s_w = stopping.electronic_mass_stopping_power(water, e, water_model=water_model)
    table = np.zeros((len(mats), N_E, N_ENERGY_COLUMNS), np.float64)
    props = np.zeros((len(mats), N_MATERIAL_COLUMNS), np.float64)
    i_values = {}
    for k, m in enumerate(mats):
        s = np.asarray(stopping.electronic_mass_stopping_power(m, e, water_model=water_model,
                                                               ivalue_set=ivalue_set), np.float64)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"stopping power of material {m.name!r} is not positive and finite on the grid")
        # CSDA range from the total (electronic + nuclear) stopping power, as ICRU 49/90 define it; the
        # nuclear-stopping energy is deposited locally like the electronic loss.
        s_nuc = stopping.nuclear_mass_stopping_power(m, e, water_model=water_model)
        r, rb = _csda_range(e, s + s_nuc)
        e_low = np.exp(np.linspace(np.log(stopping.E_MIN_MEV), np.log(E_MIN_MEV), N_LOW_SUBGRID + 1))
        s_low = np.asarray(stopping.electronic_mass_stopping_power(m, e_low, water_model=water_model,
                                                                   ivalue_set=ivalue_set), np.float64)
        nuc = nuclear.nonelastic_tables(m, e)
        table[k, :, COL["range"]] = r
        table[k, :, COL["range_b"]] = rb
        table[k, :, COL["stop"]] = s
        table[k, :, COL["let_end"]] = track_end_let(e, s, s_low, e_low)
        table[k, :, COL["spr_w"]] = s_w / s
        table[k, :, COL["nuc_sigma"]] = nuc["sigma_cm2_g"]
        table[k, :, COL["mult_p"]] = nuc["mult_p"]
        table[k, :, COL["frac_recoil"]] = nuc["frac_recoil"]
        table[k, :, COL["mult_alpha"]] = nuc["mult_alpha"]
        table[k, :, COL["mult_d"]] = nuc["mult_d"]
        table[k, :, COL["pp_sigma"]] = nuclear.pp_elastic_mass_cross_section(m, e)
        if nuclear_elastic:
            table[k, :, COL["el_sigma"]] = nuclear.elastic_mass_cross_section(m, e)
        table[k, :, COL["hard_sigma"]] = (table[k, :, COL["nuc_sigma"]] + table[k, :, COL["pp_sigma"]]
                                          + table[k, :, COL["el_sigma"]])
        table[k, :, COL["hard_sigma_max"]] = majorant(e, table[k, :, COL["hard_sigma"]])
        props[k, MAT["xs"]] = scattering.scattering_length_g_cm2(m)
        props[k, MAT["z_over_a"]] = scattering.z_over_a(m)
        t = (np.log(e_cut_mev) - np.log(E_MIN_MEV)) / (np.log(E_MAX_MEV / E_MIN_MEV) / (N_E - 1))
        props[k, MAT["range_cut"]] = range_in_bins(t, r, rb)
        props[k, MAT["el_a"]] = nuclear.elastic_target_mass_number(m)
        i_values[m.name] = float(stopping.water_model_i_value_ev(m, water_model, ivalue_set))
    table32 = table.astype(np.float32)
    # Ranges must be strictly increasing in float32 for the inverse lookup.
    rr = table32[:, :, COL["range"]]
    if np.any(np.diff(rr, axis=1) <= 0):
        raise ValueError("CSDA range table is not strictly increasing in float32; check the stopping powers")
    log_r_min = float(np.log(rr[:, 0].min()))
    log_r_max = float(np.log(rr[:, -1].max()))
    r_grid = np.exp(np.linspace(log_r_min, log_r_max, N_R))
    idx = np.empty((len(mats), N_R), np.int32)
    for k in range(len(mats)):
        i = np.searchsorted(rr[k].astype(np.float64), r_grid, side="right") - 1
        idx[k] = np.clip(i, 0, N_E - 2)
    dlog_e = float(np.log(E_MAX_MEV / E_MIN_MEV) / (N_E - 1))
    return PhysicsTables(
        energy_table=np.ascontiguousarray(table32), range_index=idx,
        material_props=props.astype(np.float32), log_e_min=float(np.log(E_MIN_MEV)), dlog_e=dlog_e,
        log_r_min=log_r_min, dlog_r=(log_r_max - log_r_min) / (N_R - 1), energies_mev=e, materials=mats,
        water_model=water_model,
        meta={"water_model": water_model, "ivalue_set": ivalue_set, "i_values_ev": i_values, "e_min_mev": E_MIN_MEV,
              "e_max_mev": E_MAX_MEV, "n_e": N_E, "n_r": N_R,
              "scattering_length_g_cm2": {m.name: float(props[k, MAT["xs"]]) for k, m in enumerate(mats)}})

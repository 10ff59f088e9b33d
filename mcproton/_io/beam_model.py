"""Treatment-machine beam models for pencil-beam scanning.

A beam model gives, per nominal energy, the phase space of a spot at a reference plane located
``plane_upstream_of_isocentre_mm`` upstream of the isocentre along the beam axis: mean kinetic energy,
Gaussian energy spread (1 sigma, MeV), protons per MU, and one or more Gaussian components with weight, spot
sigma x/y (mm), divergence x/y (rad) and position-angle correlation x/y.  x and y are the IEC 61217 gantry
X and Y axes (the axes of ``ScanSpotPositionMap``).  It also gives the virtual source-axis distances (the
distances from the scanning magnets' virtual sources to the isocentre, x and y) and the range shifters of
the machine (ID, material, water-equivalent thickness).  Parameters are interpolated linearly in nominal
energy.

File formats (docs/beam_model.md describes both, key by key, with a template and the commissioning steps)
------------
* mcproton TOML (``*.toml``) naming a CSV table (``,``-separated; ``#`` comment lines allowed) and mapping its
  columns; unknown keys are refused::

      name = "my_machine"
      table = "my_machine.csv"
      plane_upstream_of_isocentre_mm = 500.0
      virtual_source_axis_distances_mm = [2000.0, 2560.0]
      energy_spread_unit = "MeV"                  # or "percent_of_nominal"; required
      [columns]
      nominal_energy = "E_nominal_MeV"
      mean_energy = "E_mean_MeV"
      energy_spread = "E_sigma_MeV"
      protons_per_mu = "protons_per_MU"
      [[component]]                               # one per Gaussian; each may be a column or a number
      weight = 1.0
      sigma_x = "sigma_x_mm"
      sigma_y = "sigma_y_mm"
      divergence_x = "div_x_rad"
      divergence_y = "div_y_rad"
      correlation_x = "corr_x"
      correlation_y = "corr_y"

* MCsquare beam data library (BDL) text files (``--UPenn beam model (double gaussian)--``): "Nozzle exit to
  Isocenter distance" (= the reference plane), "SMX/SMY to Isocenter distance" (virtual sources), optional
  "Range Shifter parameters" (``RS_ID = ...``, ``RS_material``, ``RS_density``, ``RS_WET``) and "Beam
  parameters" (``N energies``, a header line, N rows; rows after the N-th are ignored with a warning, as MCsquare
  ignores them).  The 18 columns are read by position, as MCsquare and OpenTPS read them, and the header must name
  them in MCsquare's order (``BDL_COLUMNS``; a single Gaussian: the first 11).  Its EnergySpread is in percent of
  the nominal energy and is converted to MeV here.

Values that cannot be right (mean energy not increasing with the nominal energy, or more than 10 % from it; an
isolated jump of protons/MU) are refused; values outside what machines have (spot sigma, energy spread, protons/MU,
energies far apart or above the nuclear data) are warned about (:meth:`BeamModel._check_plausible`).

Range shifters are transported as slabs (mcproton/_io/rtplan.py): a model must give each one's material (a
name of ``mcproton.materials``; MCsquare's RS_material is a material name or number of its own list, so a
number is refused with a message) and WET > 0; the physical thickness is ``physical_thickness_mm`` or WET divided
by the material's stopping-power ratio to water at ``RS_SPR_ENERGY_MEV`` (:meth:`RangeShifter.thickness_mm`).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ParamSpec, Sequence

import numpy as np

from ..source import MAX_SPREAD_SIGMAS
from .csv_table import read_csv_table
from .errors import BeamModelError, McprotonWarning, did_you_mean, recording_warnings, said_in_this_call, warn
from .text_file import TABLE_ADVICE, binary_kind, is_number, refuse_utf16

P = ParamSpec("P")

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "beam_models"
BUILTIN = {
    "dcpt_v2": DATA_DIR / "dcpt" / "dcpt_v2.toml",
    "dcpt_v5": DATA_DIR / "dcpt" / "dcpt_v5.toml",
    "mcsquare_upenn_iba_dn": DATA_DIR / "mcsquare_upenn_iba_dn" / "mcsquare_upenn_iba_dn.toml",
}
_ENERGY_TOL_MEV = 0.05

# Plausibility of a model's values (BeamModel._check_plausible).  The shipped models (DCPT v2 and v5, MCsquare's IBA
# dedicated nozzle, OpenTPS's BDL in tests/data) span: mean - nominal -0.14..+1.38 MeV (at most 2.0 %, DCPT v2 at 70
# MeV), energy spread <= 1.8 % of the energy, dominant-component spot sigma 1.8-5.6 mm at the plane, protons/MU
# 2.0e6-1.5e8 (per vendor MU definition), neighbouring protons/MU within x 1.05; each threshold below leaves a margin
# of 2 or more over them.
#: highest energy accepted at all (MeV): the physics tables end at 400 MeV, a spot's 5-sigma spread included
MAX_ENERGY_MEV = 350.0
#: the nuclear data (mcproton/_physics/nuclear.py) end here and are held constant above: a warning
NUCLEAR_DATA_MAX_MEV = 250.0
#: mean energy more than 10 % from the nominal: refused (5 x the shipped 2 %; a 15 % offset, a wrong column or a
#: range read as an energy, moved the Bragg peak by 21 mm at 100 MeV in an audit)
MEAN_ENERGY_REFUSE_REL = 0.10
#: ... more than max(3 MeV, 3 %): warned (the shipped models' largest is 1.38 MeV, 2.0 %, at 70 MeV)
MEAN_ENERGY_WARN_MEV, MEAN_ENERGY_WARN_REL = 3.0, 0.03
#: energy spread (1 sigma) above a fifth of the mean energy (source.MAX_SPREAD_SIGMAS): refused, as Spot refuses it;
#: above 5 % of the mean energy: warned (shipped <= 1.8 %; degraded cyclotron beams stay
#: below ~2 %; catches a FWHM of a wide beam, keV read as MeV, a swapped column)
SPREAD_WARN_REL = 0.05
#: spot sigma at the plane outside 1-20 mm (every component above 1 mm; the heaviest below 20 mm, a halo component
#: may be wider: MCsquare's is 9-39 mm): warned.  Shipped: 1.8-5.6 mm; sigma in cm gives 0.2-0.6 mm
SIGMA_MIN_MM, SIGMA_MAX_MM = 1.0, 20.0
#: protons/MU: an isolated value x 2 (or / 2) against both neighbours is refused (no physics makes a spike; a typo x 10
#: at one energy gave x 10 dose there and x 5.6 by interpolation 5 MeV away), a step x 2 between energies closer than
#: 20 % of the energy warned (protons/MU goes about as E^0.8: x 1.2 at most over such a step)
PPMU_JUMP, PPMU_CLOSE_REL = 2.0, 0.2
#: protons/MU outside 1e5-1e9: warned (shipped 2.0e6-1.5e8 across two vendors' MU; catches x / 1000 slips)
PPMU_MIN, PPMU_MAX = 1e5, 1e9
#: a plan energy interpolated between model energies more than 25 MeV apart: warned once per gap (sampling every
#: 10 MeV reproduces a 0.1 MeV table within 0.5 % in spread and sigma; 70 and 240 MeV alone gave a spread 34 % low
#: at 115 MeV)
SPARSE_GAP_MEV = 25.0
#: protons_per_mu given as one number for a model spanning more than this (MeV): warned.  A monitor chamber's MU
#: scales with the stopping power in air, so protons/MU rises with the energy (x 2.3 from 70 to 230 MeV in the shipped
#: models, about E^0.8: +8 % over 10 MeV at 100 MeV); a constant 3.5e6 gave +72 % dose at 70 MeV (audit 15 "bdl" F4)
PPMU_CONSTANT_SPAN_MEV = 10.0


@dataclass(frozen=True)
class SpotComponent:
    """One Gaussian component of a spot at the beam-model plane."""

    weight: float
    sigma_mm: tuple[float, float]
    divergence_rad: tuple[float, float]
    correlation: tuple[float, float]


@dataclass(frozen=True)
class BeamModelEntry:
    """Beam-model parameters at one nominal energy."""

    nominal_energy_mev: float
    mean_energy_mev: float
    energy_spread_mev: float
    protons_per_mu: float
    components: tuple[SpotComponent, ...]


#: the columns of an MCsquare BDL's "Beam parameters" table in MCsquare's order.  MCsquare (``read_UPenn_BDL`` in
#: src/data_beam_model.c) and OpenTPS (``readBDL``: ``BDL_table[:, 11]`` is Weight2) read the values by POSITION and
#: never look at the header's names, so mcproton does too, and checks the header against this list (without case):
#: a header that names another order (x and y blocks swapped) or misspells a name is refused, as the file's author
#: meant something else than what MCsquare reads.  Before, the names were read: a misspelt ``Weigth2`` silently
#: dropped the halo (+4 % dose in a 4 x 4 cm field, -55 % outside it; audit 15 "bdl" F1).
BDL_COLUMNS = ("NominalEnergy", "MeanEnergy", "EnergySpread", "ProtonsMU", "Weight1", "SpotSize1x", "Divergence1x",
               "Correlation1x", "SpotSize1y", "Divergence1y", "Correlation1y", "Weight2", "SpotSize2x",
               "Divergence2x", "Correlation2x", "SpotSize2y", "Divergence2y", "Correlation2y")
#: a single-Gaussian table: the first 11 of BDL_COLUMNS (mcproton reads it; MCsquare needs all 18, with Weight2 = 0)
BDL_SINGLE_GAUSSIAN_COLUMNS = 11
#: the keys of a BDL's "Range Shifter parameters" block (MCsquare stops reading the block at any other key)
BDL_RS_KEYS = ("RS_ID", "RS_type", "RS_material", "RS_density", "RS_WET")

#: energy (MeV) at which a range shifter's WET is converted into a physical thickness (the stopping-power ratio
#: of plastics to water changes by < 0.5 % between 70 and 230 MeV: Bethe, mcproton/_physics/stopping.py)
RS_SPR_ENERGY_MEV = 100.0
#: a range shifter given both ``physical_thickness_mm`` and ``wet_mm`` whose thickness x stopping-power ratio differs
#: from the WET by more than this (mm) is refused: the slab transported has the thickness, so the WET declared (and
#: compared with the plan's) would not be the one transported (40 mm of polycarbonate declared as 34.3 mm WET pulled
#: the range back by 11.7 mm more, audit 15 "bdl" F2).  1 mm: the plan-vs-model WET tolerance (rtplan.py)
RS_WET_TOL_MM = 1.0


@dataclass(frozen=True)
class RangeShifter:
    """A range shifter of a machine: ``wet_mm`` is its water-equivalent thickness (mm), ``material`` a name of
    ``mcproton.materials`` ("" = unknown: such a shifter cannot be transported), ``density_g_cm3`` its density
    (None: the material's nominal one), ``physical_thickness_mm`` (None: from the WET, :meth:`thickness_mm`),
    ``isocenter_distance_mm`` the distance from the isocentre to its downstream face (None: the plan must give
    it)."""

    id: str
    wet_mm: float
    material: str = ""
    physical_thickness_mm: float | None = None
    density_g_cm3: float | None = None
    isocenter_distance_mm: float | None = None

    def __post_init__(self) -> None:
        for name in ("wet_mm", "physical_thickness_mm", "density_g_cm3"):
            v = getattr(self, name)
            if v is None and name != "wet_mm":
                continue
            try:
                ok = math.isfinite(float(v)) and float(v) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise BeamModelError(f"range shifter {self.id!r}: {name} = {v!r} must be a positive number (a WET "
                                     "<= 0 would make the beam deeper, not shallower); correct the beam model")
        d = self.isocenter_distance_mm
        if d is not None and not (math.isfinite(float(d)) and float(d) >= 0):
            raise BeamModelError(f"range shifter {self.id!r}: isocenter_distance_mm = {d!r} must be >= 0")
        if self.material:
            from ..materials import UnknownMaterialError, get_material

            try:
                get_material(self.material)
            except UnknownMaterialError as exc:
                raise BeamModelError(f"range shifter {self.id!r}: {exc}") from None
            if self.physical_thickness_mm is not None:
                spr = self.stopping_power_ratio()
                wet = float(self.physical_thickness_mm) * spr
                if abs(wet - float(self.wet_mm)) > RS_WET_TOL_MM:
                    raise BeamModelError(
                        f"range shifter {self.id!r}: physical_thickness_mm = {self.physical_thickness_mm:g} mm of "
                        f"{self.material} at {self.density:g} g/cm3 (stopping-power ratio to water {spr:.3f} at "
                        f"{RS_SPR_ENERGY_MEV:g} MeV) is {wet:.1f} mm WET, but wet_mm = {self.wet_mm:g} mm (more than "
                        f"{RS_WET_TOL_MM:g} mm apart): the slab transported has the thickness, so its WET would not be "
                        "the one declared and compared with the plan's; correct the thickness, material or density, "
                        "or leave physical_thickness_mm out (the thickness then follows from the WET)")

    @property
    def density(self) -> float:
        """Density (g/cm3): the model's, else the material's nominal density."""
        from ..materials import get_material

        return float(self.density_g_cm3) if self.density_g_cm3 else get_material(self.material).density_g_cm3

    def stopping_power_ratio(self, water_model: str = "icru90") -> float:
        """Linear stopping-power ratio to water at RS_SPR_ENERGY_MEV (the material at this density)."""
        return shifter_stopping_power_ratio(self.material, self.density, water_model)

    def thickness_mm(self, water_model: str = "icru90") -> float:
        """Physical thickness (mm): the model's, else WET / stopping-power ratio."""
        if self.physical_thickness_mm:
            return float(self.physical_thickness_mm)
        return float(self.wet_mm) / self.stopping_power_ratio(water_model)

    def transported_wet_mm(self, water_model: str = "icru90") -> float:
        """The WET (mm) of the slab transported: thickness x stopping-power ratio (``wet_mm`` within RS_WET_TOL_MM
        when ``physical_thickness_mm`` is given; ``wet_mm`` itself otherwise)."""
        return self.thickness_mm(water_model) * self.stopping_power_ratio(water_model)


def shifter_stopping_power_ratio(material: object, density_g_cm3: float, water_model: str = "icru90") -> float:
    """Linear stopping-power ratio to water at RS_SPR_ENERGY_MEV of a range shifter's ``material`` (a name or a
    Material) at ``density_g_cm3``: what converts its WET into its thickness and back (RangeShifter, and the input
    check of layers that stop in their shifter, mcproton/_run/inputs.py shifter_wet_mm)."""
    from .._physics.stopping import electronic_mass_stopping_power
    from ..materials import get_material

    e = np.array([RS_SPR_ENERGY_MEV])
    water = get_material("water")
    s_m = electronic_mass_stopping_power(get_material(material), e, water_model=water_model)
    s_w = electronic_mass_stopping_power(water, e, water_model=water_model)
    return float(density_g_cm3 * s_m[0] / (water.density_g_cm3 * s_w[0]))


#: the quantities of a beam model checked for NaN and inf (BeamModel._check_finite), in the order of a row: each by its
#: name in ``BeamModel.columns`` and its attribute
_FINITE_CHECKED = (("nominal_energy", "nominal_energy_mev"), ("mean_energy", "mean_energy_mev"),
                   ("energy_spread", "energy_spread_mev"), ("protons_per_mu", "protons_per_mu"),
                   ("weight", "comp_weight"), ("sigma_x", "comp_sigma_x_mm"), ("sigma_y", "comp_sigma_y_mm"),
                   ("divergence_x", "comp_div_x_rad"), ("divergence_y", "comp_div_y_rad"),
                   ("correlation_x", "comp_corr_x"), ("correlation_y", "comp_corr_y"))


@dataclass
class BeamModel:
    """Per-energy tables of a machine; see the module docstring.

    ``comp_*`` arrays have shape (n_energies, n_components).
    """

    name: str
    nominal_energy_mev: np.ndarray
    mean_energy_mev: np.ndarray
    energy_spread_mev: np.ndarray
    protons_per_mu: np.ndarray
    comp_weight: np.ndarray
    comp_sigma_x_mm: np.ndarray
    comp_sigma_y_mm: np.ndarray
    comp_div_x_rad: np.ndarray
    comp_div_y_rad: np.ndarray
    comp_corr_x: np.ndarray
    comp_corr_y: np.ndarray
    plane_upstream_of_isocentre_mm: float
    virtual_source_axis_distances_mm: tuple[float, float] | None = None
    range_shifters: dict[str, RangeShifter] = field(default_factory=dict)
    source: str = ""
    # the TreatmentMachineNames the model is for (() : not stated, no check); a plan for another machine is refused
    machines: tuple[str, ...] = ()
    # where it came from, for messages and the run's provenance: the resolved model file and its SHA-256 (a TOML
    # model's table too); "" where the model was made in memory
    path: str = ""
    sha256: str = ""
    table_path: str = ""
    table_sha256: str = ""
    #: the file's name of each quantity (nominal_energy, mean_energy, energy_spread, protons_per_mu, sigma_x, ...),
    #: named in the messages about its values
    columns: dict[str, str] = field(default_factory=dict)
    #: where each row (in the file's order) is, e.g. "line 12 of my_machine.csv" (default "row N")
    row_names: tuple[str, ...] = ()
    #: the ScanSpotTuneIDs (300A,0390) of the plans the model is for (() : not stated, any tune is taken): a plan
    #: layer of another tune, whose spots have another size, is refused (``plan_to_beams``, :meth:`covers_tune`)
    spot_tune_ids: tuple[str, ...] = ()
    #: what :meth:`at` has warned about already (each once per model; above the nuclear data once per model outside a
    #: run, check or ``plan_to_beams`` call, once per call in one)
    _warned: set = field(default_factory=set, repr=False, compare=False)
    #: the mcproton warnings issued while the model was read (:func:`load_beam_model`, :func:`load_bdl`,
    #: :func:`parse_bdl`) and checked (a value outside every machine known), each once: ``plan_to_beams`` keeps them
    #: in its beams' ``meta["warnings"]``, from which ``simulate`` keeps them in its result
    made_with_warnings: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.machines, str) or not all(isinstance(m, str) and m.strip() for m in self.machines):
            raise BeamModelError(f"beam model {self.name!r}: machines must be a list of treatment machine names "
                                 f"(TreatmentMachineName of the plans it models); got {self.machines!r}")
        self.machines = tuple(m.strip() for m in self.machines)
        if isinstance(self.spot_tune_ids, str) or not all(isinstance(t, str) and t.strip()
                                                          for t in self.spot_tune_ids):
            raise BeamModelError(f"beam model {self.name!r}: spot_tune_ids must be a list of the ScanSpotTuneIDs of "
                                 f'the plans it models, e.g. spot_tune_ids = ["4.0"]; got {self.spot_tune_ids!r}')
        self.spot_tune_ids = tuple(t.strip() for t in self.spot_tune_ids)
        self._check_finite()
        e = np.asarray(self.nominal_energy_mev, float)
        order = np.argsort(e)
        e = e[order]
        n = e.size
        if n == 0:
            raise BeamModelError(f"beam model {self.name!r} has no energies")
        if np.any(np.diff(e) <= 0):
            raise BeamModelError(f"beam model {self.name!r}: nominal energies must be unique "
                                 f"(duplicate near {e[np.argmin(np.diff(e))]} MeV)")
        self.nominal_energy_mev = e
        for nm in ("mean_energy_mev", "energy_spread_mev", "protons_per_mu"):
            a = np.asarray(getattr(self, nm), float)
            if a.shape != (n,):
                raise BeamModelError(f"beam model {self.name!r}: {nm} has {a.size} values for {n} energies")
            setattr(self, nm, a[order])
        for nm in ("comp_weight", "comp_sigma_x_mm", "comp_sigma_y_mm", "comp_div_x_rad", "comp_div_y_rad",
                   "comp_corr_x", "comp_corr_y"):
            a = np.asarray(getattr(self, nm), float)
            if a.ndim == 1:
                a = a[:, None]
            if a.shape[0] != n:
                raise BeamModelError(f"beam model {self.name!r}: {nm} has {a.shape[0]} rows for {n} energies")
            setattr(self, nm, a[order])
        for q, a in (("nominal_energy", e), ("mean_energy", self.mean_energy_mev)):
            bad = np.flatnonzero((a <= 0) | (a > MAX_ENERGY_MEV))
            if bad.size:
                k = int(bad[0])
                at = f" at nominal energy {e[k]:g} MeV" if q == "mean_energy" else ""
                raise BeamModelError(f"{self._where()}: {self._col(q)} = {a[k]:g} MeV{at} "
                                     f"({self._row_name(int(order[k]))}) is outside (0, {MAX_ENERGY_MEV:g}] MeV: "
                                     "energies are kinetic energies in MeV (not GeV, not ranges); correct the table")
        if np.any(self.energy_spread_mev < 0) or np.any(self.protons_per_mu <= 0):
            raise BeamModelError(f"beam model {self.name!r}: energy spread must be >= 0 and protons/MU > 0")
        if np.any(self.comp_weight < 0) or np.any(self.comp_weight.sum(axis=1) <= 0):
            raise BeamModelError(f"beam model {self.name!r}: component weights must be >= 0 with a positive sum")
        for k in ("comp_sigma_x_mm", "comp_sigma_y_mm", "comp_div_x_rad", "comp_div_y_rad"):
            if np.any(getattr(self, k) < 0):
                raise BeamModelError(f"beam model {self.name!r}: {k} must be >= 0")
        if np.any(np.abs(self.comp_corr_x) > 1) or np.any(np.abs(self.comp_corr_y) > 1):
            raise BeamModelError(f"beam model {self.name!r}: correlations must lie in [-1, 1]")
        z = float(self.plane_upstream_of_isocentre_mm)
        if not np.isfinite(z) or z < 0 or z > 5000:
            raise BeamModelError(f"beam model {self.name!r}: plane_upstream_of_isocentre_mm = {z} must be 0..5000 mm")
        self.plane_upstream_of_isocentre_mm = z
        if self.virtual_source_axis_distances_mm is not None:
            v = tuple(float(x) for x in self.virtual_source_axis_distances_mm)
            if len(v) != 2 or not all(np.isfinite(x) and x > z for x in v):
                raise BeamModelError(f"beam model {self.name!r}: virtual source-axis distances {v} must be two "
                                     f"numbers larger than the plane distance {z} mm")
            self.virtual_source_axis_distances_mm = v  # type: ignore[assignment]
        with recording_warnings() as said:
            self._check_plausible(order)
        self.made_with_warnings = list(dict.fromkeys([*self.made_with_warnings, *said]))

    def _check_finite(self) -> None:
        """Refuse a NaN or infinite value, naming the first in the file's order: its row (the file's line), its
        column (or quantity, and component) and the row's nominal energy; before any other check, which it would
        mislead (a NaN nominal energy was reported as mean energies not increasing with it, and any other NaN as
        "contains NaN/inf values" with no place: the edges audit of 2026-12-07, F5).  Arrays of another length are
        left to the shape checks."""
        e = np.asarray(self.nominal_energy_mev, float).ravel()
        n = e.size
        first: tuple[int, int, int, str, float] | None = None   # (row, quantity's place, component, name, value)
        for place, (q, attr) in enumerate(_FINITE_CHECKED):
            a = np.asarray(getattr(self, attr), float)
            a = a.reshape(n, -1) if a.ndim in (1, 2) and a.shape[0] == n and a.size else None
            if a is None:
                continue
            bad = np.argwhere(~np.isfinite(a))
            if bad.size and (first is None or (int(bad[0][0]), place) < first[:2]):
                i, c = (int(x) for x in bad[0])
                first = (i, place, c if a.shape[1] > 1 else -1, q, float(a[i, c]))
        if first is None:
            return
        i, _, c, q, v = first
        if c < 0:
            what = self._col(q)
        else:   # an MCsquare BDL names each component's column ("SpotSize1x/SpotSize2x")
            names = self.columns.get(q, "").split("/")
            what = f"{q} of component {c + 1}" + (f" (column {names[c]!r})" if c < len(names) and names[c] else "")
        at = f" at nominal energy {e[i]:g} MeV" if q != "nominal_energy" and np.isfinite(e[i]) else ""
        raise BeamModelError(f"{self._where()}: {what} = {v:g}{at} ({self._row_name(i)}) is NaN or infinite: every "
                             "value of a beam model must be a finite number; correct the table")

    def _where(self) -> str:
        return f"beam model {self.name!r}" + (f" ({self.path})" if self.path else "")

    def _row_name(self, i: int) -> str:
        return self.row_names[i] if i < len(self.row_names) else f"row {i + 1}"

    def _col(self, quantity: str) -> str:
        c = self.columns.get(quantity)
        return f"{quantity} (column {c!r})" if c else quantity

    def _check_plausible(self, order: np.ndarray) -> None:
        """Refuse what cannot be a machine's beam and warn about what is outside every machine we know: unit slips
        and typos that would otherwise give a plausible but wrong dose (the thresholds and their reasons are at
        the constants above).  ``order``: the file's row of each (sorted) energy, for the messages."""
        e, m, where = self.nominal_energy_mev, self.mean_energy_mev, self._where()

        def row(k: int) -> str:
            return f"nominal energy {e[k]:g} MeV ({self._row_name(int(order[k]))})"

        for k in np.flatnonzero(np.diff(m) <= 0):
            raise BeamModelError(f"{where}: {self._col('mean_energy')} does not increase with the nominal energy: "
                                 f"{m[k]:g} MeV at {row(k)} but {m[k + 1]:g} MeV at {row(k + 1)}; rows swapped or a "
                                 "typo: correct the table")
        off = np.abs(m - e) / e
        for k in np.flatnonzero(off > MEAN_ENERGY_REFUSE_REL)[:1]:
            raise BeamModelError(f"{where}: {self._col('mean_energy')} = {m[k]:g} MeV at {row(k)} differs from the "
                                 f"nominal energy by {100 * off[k]:.1f} % (more than {100 * MEAN_ENERGY_REFUSE_REL:g} "
                                 "%): a wrong column, a range instead of an energy, or another unit; the mean energy "
                                 "is the kinetic energy (MeV) at the model's plane for the plan's nominal energy")
        warn_off = np.abs(m - e) > np.maximum(MEAN_ENERGY_WARN_MEV, MEAN_ENERGY_WARN_REL * e)
        if warn_off.any():
            k = int(np.argmax(np.where(warn_off, off, -1)))
            warn(f"{where}: {self._col('mean_energy')} differs from the nominal energy by more than "
                 f"max({MEAN_ENERGY_WARN_MEV:g} MeV, {100 * MEAN_ENERGY_WARN_REL:g} %) at {int(warn_off.sum())} "
                 f"energies (most: {m[k]:g} MeV at {row(k)}); commissioned machines stay within ~2 %: check the "
                 "column and its unit", McprotonWarning)
        frac = self.energy_spread_mev / m
        for k in np.flatnonzero(self.energy_spread_mev * MAX_SPREAD_SIGMAS > m)[:1]:
            raise BeamModelError(f"{where}: {self._col('energy_spread')} = {self.energy_spread_mev[k]:.3g} MeV is "
                                 f"{100 * frac[k]:.1f} % of the mean energy {m[k]:.4g} MeV at {row(k)}, more than a "
                                 f"fifth of it (a spot's limit, sigma <= E / {MAX_SPREAD_SIGMAS:g}: sampled energies "
                                 "below 0 MeV would be clamped to 0, so the spectrum simulated would not be the "
                                 "model's): it must be 1 sigma in MeV, or in percent of the nominal energy with "
                                 'energy_spread_unit = "percent_of_nominal"; not a FWHM')
        if (frac > SPREAD_WARN_REL).any():
            k = int(np.argmax(frac))
            warn(f"{where}: {self._col('energy_spread')} is {self.energy_spread_mev[k]:.3g} MeV = {100 * frac[k]:.1f} "
                 f"% of the mean energy at {row(k)} (above {100 * SPREAD_WARN_REL:g} %, beyond therapy machines): "
                 "it must be 1 sigma in MeV, or in percent of the nominal energy with energy_spread_unit = "
                 '"percent_of_nominal"; not a FWHM', McprotonWarning)
        w = self.comp_weight
        dominant = np.argmax(w, axis=1)
        for ax in "xy":
            s = getattr(self, f"comp_sigma_{ax}_mm")
            low = np.where(w > 0, s, np.inf).min(axis=1)
            main = s[np.arange(len(e)), dominant]
            for bad, what in ((low < SIGMA_MIN_MM, f"below {SIGMA_MIN_MM:g} mm"),
                              (main > SIGMA_MAX_MM, f"above {SIGMA_MAX_MM:g} mm")):
                if bad.any():
                    k = int(np.flatnonzero(bad)[0])
                    v = low[k] if what.startswith("below") else main[k]
                    warn(f"{where}: spot sigma {self._col(f'sigma_{ax}')} = {v:.3g} mm at {row(k)} ({int(bad.sum())} "
                         f"energies {what} at the model plane; therapy spots have 1.5-10 mm): give 1 sigma in mm (not "
                         "cm, not a FWHM)", McprotonWarning)
        p = self.protons_per_mu
        for k in range(1, len(e) - 1):   # a spike: both neighbours a factor 2 away, the same way
            r1, r2 = p[k] / p[k - 1], p[k] / p[k + 1]
            if min(r1, r2) >= PPMU_JUMP or max(r1, r2) <= 1 / PPMU_JUMP:
                raise BeamModelError(f"{where}: {self._col('protons_per_mu')} = {p[k]:.4g} at {row(k)} is "
                                     f"{r1:.3g} x its neighbour at {e[k - 1]:g} MeV ({p[k - 1]:.4g}) and {r2:.3g} x "
                                     f"the one at {e[k + 1]:g} MeV ({p[k + 1]:.4g}): protons/MU varies smoothly with "
                                     "the energy, so this is a typo; correct the table")
        for k in range(len(e) - 1):      # a step between close energies (the end rows among them)
            r = p[k + 1] / p[k]
            if (r >= PPMU_JUMP or r <= 1 / PPMU_JUMP) and e[k + 1] - e[k] <= PPMU_CLOSE_REL * e[k]:
                warn(f"{where}: {self._col('protons_per_mu')} jumps by x {r:.3g} from {row(k)} ({p[k]:.4g}) to "
                     f"{e[k + 1]:g} MeV ({p[k + 1]:.4g}); protons/MU varies smoothly with the energy (x 1.2 at most "
                     "over this step): check the table", McprotonWarning)
                break
        out = (p < PPMU_MIN) | (p > PPMU_MAX)
        if out.any():
            k = int(np.flatnonzero(out)[0])
            warn(f"{where}: {self._col('protons_per_mu')} = {p[k]:.3g} at {row(k)} ({int(out.sum())} energies "
                 f"outside {PPMU_MIN:.0e}-{PPMU_MAX:.0e}, where therapy machines' monitor units lie): the column must "
                 "be protons per MU (not per 1000 MU, not nC or Gy per MU); check its units", McprotonWarning)

    def covers_machine(self, machine: str) -> bool:
        """Whether a beam planned for treatment machine ``machine`` (its TreatmentMachineName) may use this model:
        yes when the model names no machines or the plan gives no name (``plan_to_beams`` then warns that the plan
        could not be checked); else the name must be one of ``machines`` (case and surrounding blanks ignored)."""
        m = (machine or "").strip().upper()
        return not self.machines or not m or m in {x.upper() for x in self.machines}

    def covers_tune(self, tune_id: str) -> bool:
        """Whether a layer of spot tune ``tune_id`` (its ScanSpotTuneID, a machine-specific label) may use this model:
        yes when the model declares no ``spot_tune_ids`` or the plan gives no tune; else it must be one of them,
        compared without case or surrounding blanks, and as numbers where both are numbers ("4" is "4.0")."""
        t = (tune_id or "").strip()
        return not self.spot_tune_ids or not t or any(_same_label(t, x) for x in self.spot_tune_ids)

    def spot_fwhm_mm(self, nominal_energy_mev: float, z_mm: float = 0.0) -> tuple[float, float]:
        """The full width at half maximum (x, y; mm) of the model's spot in air ``z_mm`` downstream of the isocentre
        (0: at the isocentre, where a plan's ScanningSpotSize (300A,0398) gives it): the profile through the spot's
        centre of all its Gaussian components, each drifted from the model's plane (:func:`drift_sigma_mm`).  For one
        component it is 2 sqrt(2 ln 2) sigma = 2.355 sigma."""
        entry = self.at(nominal_energy_mev)
        d = float(z_mm) + float(self.plane_upstream_of_isocentre_mm)
        out = []
        for k in (0, 1):
            sig = np.array([drift_sigma_mm(c.sigma_mm[k], c.divergence_rad[k], c.correlation[k], d)
                            for c in entry.components])
            other = np.array([drift_sigma_mm(c.sigma_mm[1 - k], c.divergence_rad[1 - k], c.correlation[1 - k], d)
                              for c in entry.components])
            # the 2-D density along the axis through the centre: each component's peak is w / (2 pi sx sy)
            amp = np.array([c.weight for c in entry.components]) / (sig * other)
            out.append(_fwhm_of_gaussians(amp, sig))
        return out[0], out[1]

    @property
    def energy_range_mev(self) -> tuple[float, float]:
        return float(self.nominal_energy_mev[0]), float(self.nominal_energy_mev[-1])

    def _gap_index(self, e: float) -> int | None:
        """k when nominal energy ``e`` lies strictly between the model's energies k-1 and k, more than
        :data:`SPARSE_GAP_MEV` apart (interpolated across a gap); None otherwise (or outside the model)."""
        E = self.nominal_energy_mev
        k = int(np.searchsorted(E, e))
        return k if 0 < k < E.size and E[k] - E[k - 1] > SPARSE_GAP_MEV and E[k - 1] < e < E[k] else None

    def warn_energy_gaps(self, layers: Sequence[tuple[str, float, float]]) -> None:
        """Warn once per gap of the model (energies more than :data:`SPARSE_GAP_MEV` apart) of the plan's layers
        inside it: ``layers`` holds (beam label, nominal energy MeV, MU) of every layer of the plan.  The warning
        says how many layers of which beams, their energy range and share of the MU, and :meth:`at` then says no
        more of that gap: it named only the first energy met, so a field whose 13 layers all lay in the gap read as
        a one-layer nit (audit 18b F9).  Once per call, not per model: a model reused for another plan_to_beams (the
        next robustness scenario) says it again, and that call's beams keep it (their ``meta["warnings"]``)."""
        total = sum(float(mu) for _, _, mu in layers) or 1.0
        gaps: dict[int, list[tuple[str, float, float]]] = {}
        for beam, e, mu in layers:
            k = self._gap_index(float(e)) if np.isfinite(e) else None
            if k is not None:
                gaps.setdefault(k, []).append((beam, float(e), float(mu)))
        E = self.nominal_energy_mev
        for k, rows in sorted(gaps.items()):
            # each call (each plan_to_beams): a model reused for a second plan, or for the same plan's next robustness
            # scenario, says it again, so that every call's beams keep it (meta["warnings"]); at() says no more of it
            self._warned.add(("gap", k))
            beams = list(dict.fromkeys(b for b, _, _ in rows))
            es = [e for _, e, _ in rows]
            span = f"{min(es):g}-{max(es):g} MeV" if min(es) != max(es) else f"{es[0]:g} MeV"
            share = 100 * sum(mu for _, _, mu in rows) / total
            warn(f"{self._where()}: {len(rows)} layer(s) of beam(s) {', '.join(beams)} ({span}, {share:.0f} % of the "
                 f"MU) lie between the model's energies {E[k - 1]:g} and {E[k]:g} MeV, {E[k] - E[k - 1]:g} MeV apart "
                 f"(more than {SPARSE_GAP_MEV:g} MeV), and are interpolated linearly: the spot size, energy spread and "
                 "protons/MU in between are guesses; tabulate the model every 5-10 MeV", McprotonWarning)

    def at(self, nominal_energy_mev: float) -> BeamModelEntry:
        """Parameters at a nominal energy (linear interpolation between tabulated energies)."""
        e = float(nominal_energy_mev)
        lo, hi = self.energy_range_mev
        if not np.isfinite(e) or e < lo - _ENERGY_TOL_MEV or e > hi + _ENERGY_TOL_MEV:
            raise BeamModelError(f"nominal energy {e} MeV is outside beam model {self.name!r} "
                                 f"({lo:g}-{hi:g} MeV); use a beam model of the plan's machine")
        e = min(max(e, lo), hi)
        E = self.nominal_energy_mev
        k = self._gap_index(e)
        if k is not None and ("gap", k) not in self._warned:
            self._warned.add(("gap", k))
            warn(f"{self._where()}: nominal energy {e:g} MeV is interpolated linearly between the model's energies "
                 f"{E[k - 1]:g} and {E[k]:g} MeV, {E[k] - E[k - 1]:g} MeV apart (more than {SPARSE_GAP_MEV:g} MeV): "
                 "the spot size, energy spread and protons/MU in between are guesses; tabulate the model every 5-10 "
                 "MeV",
                 McprotonWarning)

        def ip(a):
            a = np.asarray(a)
            if a.ndim == 1:
                return float(np.interp(e, E, a))
            return np.array([np.interp(e, E, a[:, k]) for k in range(a.shape[1])])

        w = ip(self.comp_weight)
        sx, sy = ip(self.comp_sigma_x_mm), ip(self.comp_sigma_y_mm)
        dx, dy = ip(self.comp_div_x_rad), ip(self.comp_div_y_rad)
        cx, cy = ip(self.comp_corr_x), ip(self.comp_corr_y)
        comps = tuple(SpotComponent(float(w[k]), (float(sx[k]), float(sy[k])), (float(dx[k]), float(dy[k])),
                                    (float(np.clip(cx[k], -1, 1)), float(np.clip(cy[k], -1, 1))))
                      for k in range(w.size) if w[k] > 0)
        mean = ip(self.mean_energy_mev)
        # once per run, check or plan_to_beams call (its record: the beams' meta["warnings"], the report), as the gap
        # warning; once per model outside one (in-process audit 25, F2: a model reused for a second plan or check
        # said it for the first only, and nothing else says it for a plan's beams)
        head = f"{self._where()}: the mean energy at nominal energy "
        if mean > NUCLEAR_DATA_MAX_MEV and not said_in_this_call(head, self._warned, "above_nuclear", at_start=True):
            warn_above_nuclear_data(f"{head}{e:g} MeV", mean)
        return BeamModelEntry(e, mean, ip(self.energy_spread_mev), ip(self.protons_per_mu), comps)

    def provenance(self) -> dict[str, str]:
        """What a run records of the model: its name, the resolved path and SHA-256 of its file (and of its table,
        for a TOML model); empty strings for a model made in memory."""
        out = {"name": self.name, "path": self.path, "sha256": self.sha256}
        if self.table_path:
            out.update(table=self.table_path, table_sha256=self.table_sha256)
        return out

    def protons_per_mu_at(self, nominal_energy_mev: float) -> float:
        return self.at(nominal_energy_mev).protons_per_mu

    def range_shifter(self, rs_id: str) -> RangeShifter:
        if rs_id not in self.range_shifters:
            raise BeamModelError(f"range shifter {rs_id!r} is not in beam model {self.name!r} "
                                 f"(known: {sorted(self.range_shifters) or 'none'}); add it to the model file")
        return self.range_shifters[rs_id]


def drift_sigma_mm(sigma_mm, divergence_rad, correlation, d_mm):
    """The sigma (mm) of one Gaussian component of a spot ``d_mm`` downstream of the beam model's plane, in vacuum:
    sigma(d)^2 = sigma^2 + 2 rho sigma theta d + theta^2 d^2, from its sigma, divergence theta (rad) and
    position-angle correlation rho at the plane.  It is the second moment of x + theta d for a Gaussian phase space
    (the drift of the beam's emittance ellipse, as MCsquare's beam data library defines its SpotSize, Divergence and
    Correlation: Souris, Lee and Sterpin, Med. Phys. 43 (2016) 1700), and what the transport does: each proton
    starts from this phase space at the plane and flies straight until it enters the grid (mcproton/source.py).
    Works element-wise on arrays (``d_mm`` may be one)."""
    s, t, r = sigma_mm, divergence_rad, correlation
    return np.sqrt(s * s + 2 * r * s * t * np.asarray(d_mm, float) + t * t * np.asarray(d_mm, float) ** 2)


def _fwhm_of_gaussians(amp: np.ndarray, sigma: np.ndarray) -> float:
    """The full width at half maximum of sum_k amp_k exp(-x^2 / (2 sigma_k^2)) (a sum of centred Gaussians falls
    monotonically from x = 0, so its half maximum is one root, found by bisection)."""
    amp, sigma = np.asarray(amp, float), np.asarray(sigma, float)
    if amp.size == 1:
        return float(2.0 * math.sqrt(2.0 * math.log(2.0)) * sigma[0])
    half = 0.5 * float(amp.sum())
    lo, hi = 0.0, float(sigma.max()) * 3.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(np.sum(amp * np.exp(-0.5 * (mid / sigma) ** 2))) > half:
            lo = mid
        else:
            hi = mid
    return 2.0 * 0.5 * (lo + hi)


def _same_label(a: str, b: str) -> bool:
    """Whether two machine labels (spot tune IDs) are the same: equal without case and blanks, or equal numbers."""
    a, b = a.strip(), b.strip()
    if a.upper() == b.upper():
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def warn_above_nuclear_data(what: str, energy_mev: float) -> None:
    """Warn that ``what`` = ``energy_mev`` lies above the nuclear data (how often: the callers; a model's energies
    once per run, check or plan_to_beams call, :meth:`BeamModel.at`)."""
    warn(f"{what} = {energy_mev:g} MeV is above {NUCLEAR_DATA_MAX_MEV:g} MeV, where mcproton's nuclear data end: the "
         f"nuclear cross sections and secondary yields are held at their {NUCLEAR_DATA_MAX_MEV:g} MeV values "
         "(mcproton/_physics/nuclear.py), so this dose is not validated above it", McprotonWarning)


# ------------------------------------------------------------------------------------------ loading
def _keeping_warnings(read: Callable[P, BeamModel]) -> Callable[P, BeamModel]:
    """Decorator of a beam-model reader: the mcproton warnings issued while it reads the model are kept in the model's
    ``made_with_warnings`` (after those of its own checks)."""
    import functools

    @functools.wraps(read)
    def reader(*args: P.args, **kwargs: P.kwargs) -> BeamModel:
        with recording_warnings() as said:
            model = read(*args, **kwargs)
        model.made_with_warnings = list(dict.fromkeys([*model.made_with_warnings, *said]))
        return model

    return reader


#: where a beam-model TOML's user sees one whole (the installed package holds no docs/: the error-message audit 27,
#: F10): the built-in model's own files, installed with mcproton
MODEL_EXAMPLE = f"the built-in models' TOML files, installed with mcproton, are examples: {BUILTIN['dcpt_v5']}"


class NoSuchBeamModel(BeamModelError):
    """A beam model named that is neither a built-in model nor a file (the config names the key and where it looked:
    :func:`no_such_model_text`)."""


def no_such_model_text(key: str, looked_for: Path, note: str = "") -> str:
    """Why the beam model ``key`` cannot be found (no built-in of that name, with the closest one, and no file at
    ``looked_for``, ``note`` saying how a relative path was taken) and what to give (the error-message audit 27, F6:
    "'dcpt_v6' is neither a built-in model (...) nor a file" named neither where it looked nor the key)."""
    from .cli_args import BEAM_MODEL_ADVICE

    return (f"no built-in model of that name{did_you_mean(key.lower(), list(BUILTIN))}, and no such file: looked for "
            f"the file {looked_for}{note}; {BEAM_MODEL_ADVICE}")


def refuse_unknown_beam_model(name_or_path: str | Path) -> None:
    """Refuse, without reading it, a beam model :func:`load_beam_model` would not find (:class:`NoSuchBeamModel`):
    a command that writes something before it loads the model refuses a misspelt name first."""
    key = str(name_or_path)
    if key.strip() and key.lower() not in BUILTIN and key.lower() != "dcpt" and not Path(key).exists():
        raise NoSuchBeamModel(f"beam model {key!r}: {no_such_model_text(key, Path(key).absolute())}")


@_keeping_warnings
def load_beam_model(name_or_path: str | Path) -> BeamModel:
    """A built-in model (``dcpt_v2``, ``dcpt_v5``, ``mcsquare_upenn_iba_dn``), a TOML model or a BDL file; the empty
    text is refused as such (it was taken as the current folder: review 26a, R2)."""
    if isinstance(name_or_path, str) and not name_or_path.strip():
        from .cli_args import BEAM_MODEL_ADVICE

        raise BeamModelError(f"the beam model is empty ({name_or_path!r}): {BEAM_MODEL_ADVICE}")
    key = str(name_or_path)
    if key.lower() in BUILTIN:
        return _load_toml(BUILTIN[key.lower()])
    if key.lower() == "dcpt":
        raise BeamModelError("the DCPT model has two versions: 'dcpt_v2' (valid until July 2024, plane 500 mm "
                             "upstream) and 'dcpt_v5' (from August 2024, plane 600 mm); choose one")
    refuse_unknown_beam_model(key)
    p = Path(name_or_path)
    if p.is_dir():
        raise BeamModelError(f"{p} is a folder; give the beam-model file (.toml or MCsquare BDL .txt)")
    if p.suffix.lower() == ".toml":
        return _load_toml(p)
    raw = p.read_bytes()[:4096]
    kind = binary_kind(raw)   # an RT Plan given as the beam model (plan.beam_model for plan.rtplan), a dose result
    if kind:
        what = {"a DICOM file": "a DICOM file (an RT Plan?)", "an HDF5 file": "an HDF5 file (a dose result?)"}
        raise BeamModelError(f"{p}: unknown beam-model format: {what.get(kind, kind)}, not a beam model; give a "
                             ".toml model or an MCsquare BDL text file")
    refuse_utf16(raw, p, BeamModelError, TABLE_ADVICE)   # "unknown beam-model format" said nothing of the cause
    head = raw.decode("utf-8", errors="replace")
    if "Isocenter distance" in head or "Beam parameters" in head or "beam model" in head.lower():
        return load_bdl(p)
    raise BeamModelError(f"{p}: unknown beam-model format; give a .toml model or an MCsquare BDL text file")


def _sha256(path: Path) -> str:
    from .file_hash import sha256_file

    return sha256_file(path)


def _read_table(path: Path) -> tuple[list[dict[str, str]], list[int]]:
    """The rows of a beam-model CSV table and the line number of each (for the messages)."""
    if not path.exists():
        raise BeamModelError(f"beam-model table {path} does not exist")
    return read_csv_table(path, BeamModelError)


#: the keys of a TOML beam model: top level, [columns] (all required), [[component]] (all required),
#: [[range_shifter]] (id and wet_mm required); docs/beam_model.md
TOML_KEYS = ("name", "source", "table", "select", "machines", "spot_tune_ids", "plane_upstream_of_isocentre_mm",
             "virtual_source_axis_distances_mm", "energy_spread_unit", "columns", "component", "range_shifter")
COLUMN_KEYS = ("nominal_energy", "mean_energy", "energy_spread", "protons_per_mu")
COMPONENT_KEYS = ("weight", "sigma_x", "sigma_y", "divergence_x", "divergence_y", "correlation_x", "correlation_y")
RANGE_SHIFTER_KEYS = ("id", "wet_mm", "material", "density_g_cm3", "physical_thickness_mm", "isocenter_distance_mm")
SPREAD_UNITS = ("MeV", "percent_of_nominal")


def _refuse_unknown(path: Path, where: str, keys, known: tuple[str, ...]) -> None:
    """A BeamModelError for the first key of ``keys`` not in ``known``, with a did-you-mean: a misspelt key read as
    absent changes the model silently (energy_spread_units for energy_spread_unit read a percent spread as MeV)."""
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise BeamModelError(f"{path}: unknown key {unknown[0]!r} in {where}{did_you_mean(unknown[0], known)}; the "
                             f"keys of {where}: {', '.join(known)} ({MODEL_EXAMPLE})")


def _load_toml(path: Path) -> BeamModel:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    from .text_file import read_utf8

    path = path.resolve()
    try:   # UTF-8 without a byte-order mark; not UTF-8: refused naming the line and byte
        cfg = tomllib.loads(read_utf8(path, BeamModelError))
    except BeamModelError:
        raise
    except (OSError, ValueError) as exc:
        raise BeamModelError(f"{path}: cannot parse TOML ({exc})") from exc
    _refuse_unknown(path, "the top level", cfg, TOML_KEYS)
    for req in ("table", "columns", "component", "plane_upstream_of_isocentre_mm"):
        if req not in cfg:
            raise BeamModelError(f"{path}: missing key {req!r}; a TOML beam model has table, columns, component and "
                                 f"plane_upstream_of_isocentre_mm ({MODEL_EXAMPLE})")
    c, comps = cfg["columns"], cfg["component"]
    if not isinstance(c, dict):
        raise BeamModelError(f"{path}: columns must be a table: [columns] with {', '.join(COLUMN_KEYS)}")
    if not isinstance(comps, list) or not comps or not all(isinstance(cp, dict) for cp in comps):
        raise BeamModelError(f"{path}: give each Gaussian component of the spot as a [[component]] table")
    _refuse_unknown(path, "[columns]", c, COLUMN_KEYS)
    for i, cp in enumerate(comps, 1):
        _refuse_unknown(path, f"[[component]] {i}", cp, COMPONENT_KEYS)
    for where, have, need in [("[columns]", c, COLUMN_KEYS)] + [(f"[[component]] {i}", cp, COMPONENT_KEYS)
                                                                 for i, cp in enumerate(comps, 1)]:
        miss = [k for k in need if k not in have]
        if miss:
            raise BeamModelError(f"{path}: {where} lacks {', '.join(miss)}: give the column name of each (or a "
                                 f"number that holds for every energy); {where} needs {', '.join(need)}")
    table = path.parent / str(cfg["table"])
    rows, lines = _read_table(table)
    select = cfg.get("select", {})
    if not isinstance(select, dict):
        raise BeamModelError(f"{path}: select must be a table of column = value, e.g. select = {{ version = \"v2\" }}")
    for k, v in select.items():
        if k not in rows[0]:
            raise BeamModelError(f"{path}: select column {k!r} is not in {table}{did_you_mean(k, rows[0])}")
        keep = [i for i, r in enumerate(rows) if r.get(k) == str(v)]
        rows, lines = [rows[i] for i in keep], [lines[i] for i in keep]
    if not rows:
        raise BeamModelError(f"{path}: no rows of {cfg['table']} match select = {cfg.get('select')}")

    def col(spec, what):
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return np.full(len(rows), float(spec))
        if not isinstance(spec, str):
            raise BeamModelError(f"{path}: {what} = {spec!r} must be a column name of {table.name} or a number")
        if spec not in rows[0]:
            raise BeamModelError(f"{path}: column {spec!r} ({what}) is not in {table}"
                                 f"{did_you_mean(spec, rows[0])}; its columns: {', '.join(rows[0])}")
        out = np.empty(len(rows))
        for i, r in enumerate(rows):
            try:
                out[i] = float(r[spec])
            except ValueError:
                raise BeamModelError(f"{table}: line {lines[i]}, column {spec!r} ({what}): {r[spec]!r} is not a "
                                     "number (the decimal point must be '.')") from None
        return out

    names = {q: c[q] for q in COLUMN_KEYS if isinstance(c[q], str)}
    if len(comps) == 1:
        names.update({k: comps[0][k] for k in COMPONENT_KEYS if isinstance(comps[0][k], str)})
    e_nom = col(c["nominal_energy"], "nominal_energy")
    spread = col(c["energy_spread"], "energy_spread")
    unit = cfg.get("energy_spread_unit")
    if unit is None and (isinstance(c["energy_spread"], str) or c["energy_spread"] != 0):
        raise BeamModelError(
            f"{path}: energy_spread_unit is missing: say in which unit {names.get('energy_spread', 'energy_spread')!r} "
            'gives the 1-sigma energy spread: energy_spread_unit = "MeV", or "percent_of_nominal" (as an MCsquare '
            "BDL); there is no default, as a percent spread read as MeV changes the distal fall-off without a word")
    if unit == "percent_of_nominal":
        spread = spread / 100.0 * e_nom
    elif unit not in (None, "MeV"):
        raise BeamModelError(f"{path}: energy_spread_unit must be 'MeV' or 'percent_of_nominal'; got {unit!r}"
                             f"{did_you_mean(str(unit), SPREAD_UNITS)}")
    ppmu = c["protons_per_mu"]
    if not isinstance(ppmu, str) and np.ptp(e_nom) > PPMU_CONSTANT_SPAN_MEV:
        warn(f"{path}: [columns] protons_per_mu = {ppmu!r} is one number for {e_nom.min():g}-{e_nom.max():g} MeV, "
             "but protons per MU rise with the energy (a monitor chamber's MU scales with the stopping power in air: "
             f"x 2.3 from 70 to 230 MeV in the shipped models), so the dose per MU is wrong at most energies; give "
             "the measured column (mcproton commission --dose-per-mu compares it with reference-field doses per "
             "MU).  Plans in protons "
             "(PrimaryDosimeterUnit NP) do not use it", McprotonWarning)
    arr = {k: np.stack([col(cp[k], f"[[component]] {i}.{k}") for i, cp in enumerate(comps, 1)], axis=1)
           for k in COMPONENT_KEYS}
    rs = {}
    for r in cfg.get("range_shifter", []):
        _refuse_unknown(path, "[[range_shifter]]", r, RANGE_SHIFTER_KEYS)
        try:
            rs[str(r["id"])] = RangeShifter(str(r["id"]), float(r["wet_mm"]), str(r.get("material", "")),
                                            r.get("physical_thickness_mm"), r.get("density_g_cm3"),
                                            r.get("isocenter_distance_mm"))
        except BeamModelError as exc:
            raise BeamModelError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise BeamModelError(f"{path}: range_shifter entries need id and wet_mm ({exc})") from exc
    vsad = cfg.get("virtual_source_axis_distances_mm")
    machines = cfg.get("machines", [])
    if not isinstance(machines, list):
        raise BeamModelError(f"{path}: machines must be a list of treatment machine names, e.g. machines = "
                             f'["TR1", "TR2"]; got {machines!r}')
    tunes = cfg.get("spot_tune_ids", [])
    if not isinstance(tunes, list):
        raise BeamModelError(f"{path}: spot_tune_ids must be a list of the plans' ScanSpotTuneIDs, e.g. "
                             f'spot_tune_ids = ["4.0"]; got {tunes!r}')
    try:
        return BeamModel(cfg.get("name", path.stem), e_nom, col(c["mean_energy"], "mean_energy"), spread,
                         col(c["protons_per_mu"], "protons_per_mu"), arr["weight"], arr["sigma_x"], arr["sigma_y"],
                         arr["divergence_x"], arr["divergence_y"], arr["correlation_x"], arr["correlation_y"],
                         float(cfg["plane_upstream_of_isocentre_mm"]), tuple(vsad) if vsad else None, rs,
                         cfg.get("source", ""), tuple(machines), path=str(path), sha256=_sha256(path),
                         table_path=str(table.resolve()), table_sha256=_sha256(table), columns=names,
                         row_names=tuple(f"line {n} of {table.name}" for n in lines), spot_tune_ids=tuple(tunes))
    except BeamModelError as exc:
        msg = str(exc)
        raise BeamModelError(msg if str(path) in msg else f"{path}: {msg}") from None


@_keeping_warnings
def load_bdl(path: str | Path) -> BeamModel:
    """Parse an MCsquare beam data library (BDL) text file (single or double Gaussian).  Read as UTF-8 with a
    leading byte-order mark dropped (as a Windows editor's "UTF-8 with BOM" writes it: it stood before the first
    section's name, which was then "missing": locale audit 2026-12-07, F9); bytes that are not UTF-8 (a Windows-1252
    comment) are replaced (the numbers and section names read are ASCII); a UTF-16 file is refused."""
    p = Path(path).resolve()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise BeamModelError(f"cannot read BDL file {p}: {exc}") from exc
    import hashlib

    refuse_utf16(raw, p, BeamModelError, TABLE_ADVICE)
    return parse_bdl(raw.decode("utf-8-sig", errors="replace"), name=p.stem, source=str(p),
                     sha256=hashlib.sha256(raw).hexdigest())


def _bdl_rs_material(value: str) -> str:
    """The mcproton material of a BDL's RS_material: a name (``PMMA``, ``Lexan``), or a number of MCsquare's material
    library (``64`` = PMMA, ``66`` = Lexan; names from data/ct_calibration/mcsquare_materials.csv).  "" when
    mcproton has no such material: a plan that puts that shifter IN is then refused with a message."""
    from ..materials import UnknownMaterialError, get_material

    v = str(value).strip()
    if v.isdigit():
        table = DATA_DIR.parent / "ct_calibration" / "mcsquare_materials.csv"
        rows = [ln for ln in table.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
        names = {r["id"]: r["name"] for r in csv.DictReader(rows)}
        v = names.get(v, "")
    if not v:
        return ""
    try:
        return get_material(v).name
    except UnknownMaterialError:
        return ""


@_keeping_warnings
def parse_bdl(text: str, *, name: str = "bdl", source: str = "", sha256: str = "") -> BeamModel:
    """Parse the text of an MCsquare BDL (see :func:`load_bdl`; ``source``: its file, ``sha256``: the file's).

    "Beam parameters" announces N energies: as MCsquare (``read_UPenn_BDL`` reads N rows and skips the rest of the
    file), the N rows after the header are the model; more rows are ignored with a warning naming them (OpenTPS's
    Python reader, ``readBDL``, reads every row instead, so the two disagree about such a file); fewer are refused.
    The columns are read by position and the header checked against MCsquare's (:func:`_bdl_table`).  MCsquare
    skips exactly two lines after "N energies" (a blank line and the header): another layout is warned about."""
    lines = [ln.split("#", 1)[0].rstrip() if not ln.lstrip().startswith("--") else "" for ln in text.splitlines()]
    n = len(lines)
    values: dict[str, float] = {}
    rs_list: list[dict[str, str]] = []
    table_header: list[str] | None = None
    table_rows: list[list[str]] = []
    i = 0

    def next_value(j: int, what: str) -> tuple[float, int]:
        j += 1
        while j < n and not lines[j].strip():
            j += 1
        if j >= n:
            raise BeamModelError(f"{source or name}: missing value after {what!r}")
        try:
            return float(lines[j].split()[0]), j
        except ValueError:
            raise BeamModelError(f"{source or name}: {lines[j].strip()!r} is not a number ({what})") from None

    while i < n:
        s = lines[i].strip()
        low = s.lower()
        if low in ("nozzle exit to isocenter distance", "smx to isocenter distance", "smy to isocenter distance"):
            values[low], i = next_value(i, s)
        elif low == "range shifter parameters":
            i += 1
            while i < n and ("=" in lines[i] or not lines[i].strip()):
                if "=" in lines[i]:
                    k, v = (t.strip() for t in lines[i].split("=", 1))
                    if k == "RS_ID" or not rs_list:
                        rs_list.append({})
                    rs_list[-1][k] = v
                    if k not in BDL_RS_KEYS:   # MCsquare stops reading the block here: its later keys are lost
                        warn(f"{source or name}: unknown key {k!r} in 'Range Shifter parameters'"
                             f"{did_you_mean(k, BDL_RS_KEYS)}; it is ignored, and MCsquare stops reading the "
                             f"range shifter at it; the keys are {', '.join(BDL_RS_KEYS)}", McprotonWarning)
                i += 1
            continue
        elif low == "beam parameters":
            j = i + 1
            while j < n and not lines[j].strip():
                j += 1
            try:
                n_e = int(lines[j].split()[0])
            except (IndexError, ValueError):
                raise BeamModelError(f"{source or name}: expected 'N energies' after 'Beam parameters'") from None
            if n_e <= 0 or n_e > 100000:
                raise BeamModelError(f"{source or name}: absurd number of energies {n_e}")
            j_count = j
            j += 1
            while j < n and not lines[j].strip():
                j += 1
            table_header = lines[j].split() if j < n else []
            # MCsquare skips exactly two lines after "N energies" (meant for a blank line and the header) and then
            # reads N lines: with another number of lines before the header it reads other rows than these
            mcsquare_rows = j == j_count + 2
            if not mcsquare_rows:
                between = (f"the header of 'Beam parameters' follows {lines[j_count].strip()!r} directly"
                           if j == j_count + 1 else f"{j - j_count - 1} lines lie between {lines[j_count].strip()!r} "
                           "and the header of 'Beam parameters'")
                warn(f"{source or name}: {between}; MCsquare skips exactly two lines after 'N energies' (one blank "
                     "line and the header) and then reads N lines, so it would read this table from another line than "
                     "mcproton, which reads the N rows after the header: write exactly one blank line between "
                     "'N energies' and the header", McprotonWarning)
            j += 1
            while j < n and len(table_rows) < n_e:
                if lines[j].strip():
                    table_rows.append(lines[j].split())
                j += 1
            if len(table_rows) != n_e:
                raise BeamModelError(f"{source or name}: 'Beam parameters' announces {n_e} energies but "
                                     f"{len(table_rows)} rows follow; the file is truncated")
            extra = []
            while j < n and (not lines[j].strip() or is_number(lines[j].split()[0])):
                if lines[j].strip():
                    extra.append(lines[j].split()[0])
                j += 1
            if extra:
                n_all = n_e + len(extra)
                warn(f"{source or name}: 'Beam parameters' announces {n_e} energies but {n_all} rows follow; the "
                     f"{len(extra)} row(s) after the {n_e}th (nominal energies {', '.join(extra)} MeV) are IGNORED"
                     + (", as MCsquare ignores them" if mcsquare_rows else "") + " (OpenTPS's own reader takes "
                     f"them): if they belong to the model, write {n_all} energies", McprotonWarning)
            i = j
            continue
        i += 1
    for k in ("nozzle exit to isocenter distance", "smx to isocenter distance", "smy to isocenter distance"):
        if k not in values:
            raise BeamModelError(f"{source or name}: missing section {k!r}; not an MCsquare BDL file?")
    if table_header is None:
        raise BeamModelError(f"{source or name}: missing 'Beam parameters' table")
    tab, ncomp = _bdl_table(table_header, table_rows, source or name)
    colv = {h: tab[:, k] for k, h in enumerate(BDL_COLUMNS[:tab.shape[1]])}

    def stack(base, axis):
        return np.stack([colv[f"{base}{k + 1}{axis}"] for k in range(ncomp)], axis=1)

    weights = np.stack([colv[f"Weight{k + 1}"] for k in range(ncomp)], axis=1)
    e_nom = colv["NominalEnergy"]
    rs = {}
    for r in rs_list:
        if "RS_ID" not in r or "RS_WET" not in r:
            raise BeamModelError(f"{source or name}: range shifter entries need RS_ID and RS_WET; got {r}")
        mat = _bdl_rs_material(r.get("RS_material", ""))
        if not mat:   # loads (a plan that puts it IN is refused, naming it); say so before any plan
            given = (f"RS_material = {r['RS_material']!r} is not a material mcproton has" if "RS_material" in r
                     else "it has no RS_material")
            warn(f"{source or name}: range shifter {r['RS_ID']!r}: {given} (mcproton's names: mcproton.materials; "
                 "MCsquare's numbers 64 = PMMA, 66 = Lexan); a plan that puts it IN is refused: give a material "
                 "mcproton has, e.g. RS_material = PMMA", McprotonWarning)
        try:
            rs[r["RS_ID"]] = RangeShifter(r["RS_ID"], float(r["RS_WET"]), mat,
                                          None, float(r["RS_density"]) if "RS_density" in r else None)
        except BeamModelError as exc:
            raise BeamModelError(f"{source or name}: {exc}") from None
        except ValueError as exc:
            raise BeamModelError(f"{source or name}: bad range-shifter value ({exc})") from exc
    cols = {"nominal_energy": "NominalEnergy", "mean_energy": "MeanEnergy", "energy_spread": "EnergySpread",
            "protons_per_mu": "ProtonsMU"}
    cols.update({f"{q}_{a}": "/".join(f"{c}{k + 1}{a}" for k in range(ncomp)) for a in "xy"
                 for q, c in (("sigma", "SpotSize"), ("divergence", "Divergence"), ("correlation", "Correlation"))})
    cols["weight"] = "/".join(f"Weight{k + 1}" for k in range(ncomp))
    return BeamModel(name, e_nom, colv["MeanEnergy"], colv["EnergySpread"] / 100.0 * e_nom, colv["ProtonsMU"],
                     weights, stack("SpotSize", "x"), stack("SpotSize", "y"), stack("Divergence", "x"),
                     stack("Divergence", "y"), stack("Correlation", "x"), stack("Correlation", "y"),
                     values["nozzle exit to isocenter distance"],
                     (values["smx to isocenter distance"], values["smy to isocenter distance"]), rs,
                     source or "MCsquare BDL", path=source, sha256=sha256, columns=cols,
                     row_names=tuple(f"row {k + 1} of 'Beam parameters'" for k in range(len(tab))))


def _bdl_table(header: list[str], rows: list[list[str]], where: str) -> tuple[np.ndarray, int]:
    """The values of a BDL's "Beam parameters" table read by position, as MCsquare and OpenTPS read them (the first
    18 columns of each row, in the order of BDL_COLUMNS; a single Gaussian: the first 11), and the number of
    Gaussian components (2 or 1).  The header must name these columns in this order (compared without case): a name
    that differs, is missing or is repeated is refused, naming the column, since the file then means something
    else than what MCsquare reads.  Columns after the 18th are ignored with a warning, as MCsquare ignores them."""
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        k = next(k for k, r in enumerate(rows) if len(r) != len(rows[0]))
        raise BeamModelError(f"{where}: row {k + 1} of 'Beam parameters' has {len(rows[k])} values, row 1 has "
                             f"{len(rows[0])}; every row must have the same columns (MCsquare's "
                             f"{len(BDL_COLUMNS)}: {' '.join(BDL_COLUMNS)})")
    width = widths.pop()
    if width != len(header):
        raise BeamModelError(f"{where}: the header of 'Beam parameters' names {len(header)} columns but its rows "
                             f"have {width} values; the header and every row must have MCsquare's "
                             f"{len(BDL_COLUMNS)} columns: {' '.join(BDL_COLUMNS)}")
    if width >= len(BDL_COLUMNS):
        used, ncomp = len(BDL_COLUMNS), 2
    elif width == BDL_SINGLE_GAUSSIAN_COLUMNS:
        used, ncomp = BDL_SINGLE_GAUSSIAN_COLUMNS, 1
    else:
        raise BeamModelError(f"{where}: the rows of 'Beam parameters' have {width} values; MCsquare reads "
                             f"{len(BDL_COLUMNS)} by position ({' '.join(BDL_COLUMNS)}), and mcproton also reads a "
                             f"single Gaussian as the first {BDL_SINGLE_GAUSSIAN_COLUMNS} of them (up to "
                             f"Correlation1y, with Weight1); give the columns in this order")
    seen: dict[str, int] = {}
    for k, h in enumerate(header):
        if h.lower() in seen:
            raise BeamModelError(f"{where}: the header of 'Beam parameters' names {h!r} twice (columns "
                                 f"{seen[h.lower()] + 1} and {k + 1}); MCsquare reads the columns by position, in "
                                 f"the order {' '.join(BDL_COLUMNS[:used])}: correct the header (and check that the "
                                 "values are in that order)")
        seen[h.lower()] = k
    lower = [c.lower() for c in BDL_COLUMNS]
    for k in range(used):
        if header[k].lower() != lower[k]:
            other = (f" (MCsquare's column {lower.index(header[k].lower()) + 1})" if header[k].lower() in lower
                     else did_you_mean(header[k], BDL_COLUMNS[k:k + 1]))
            raise BeamModelError(
                f"{where}: column {k + 1} of the 'Beam parameters' header is {header[k]!r}{other}, where MCsquare's "
                f"BDL has {BDL_COLUMNS[k]!r}.  MCsquare and OpenTPS read the columns by position, not by name, so "
                f"they read column {k + 1} as {BDL_COLUMNS[k]}: give the header and the values in MCsquare's order "
                f"({' '.join(BDL_COLUMNS[:used])}); if only the name is misspelt, correct it")
    if width > used:
        warn(f"{where}: the column(s) of 'Beam parameters' after the {used}th ({', '.join(header[used:])}) are "
             "IGNORED, as MCsquare ignores them", McprotonWarning)
    try:
        tab = np.array([[float(x) for x in r[:used]] for r in rows])
    except ValueError as exc:
        raise BeamModelError(f"{where}: non-numeric beam-parameter value ({exc})") from exc
    return tab, ncomp

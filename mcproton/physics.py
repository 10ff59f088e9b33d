"""Public physics data layer: the stopping powers, I-values and per-material tables that the engine uses.

The planner (:mod:`mcproton.planning`), the validation (:mod:`mcproton.validation`) and research scripts
import these names from here; the implementation lives in the private ``mcproton._physics`` package and may be
reorganised without notice. Units: energies in MeV, mass stopping powers in MeV cm2/g, CSDA ranges in g/cm2,
I-values in eV. The models, their data and sources are described in docs/physics.md and in the docstrings of
each function.

* :func:`electronic_mass_stopping_power` (material, energy_mev, water_model, ivalue_set) -> MeV cm2/g:
  water from ICRU Report 90 (``"icru90"``, I = 78 eV) or ICRU Report 49 / NIST PSTAR (``"pstar"``, I = 75 eV);
  other materials that water table times the Bethe ratio material/water.
* :func:`nuclear_mass_stopping_power` (material, energy_mev, water_model) -> MeV cm2/g.
* :func:`mean_excitation_energy_ev` (material, ivalue_set) -> eV: the material's own I-value, else Bragg
  additivity with an elemental set of :data:`IVALUE_SETS` (default :data:`DEFAULT_IVALUE_SET`).
* :func:`water_stopping_table` (water_model) -> (energy MeV, electronic mass stopping power MeV cm2/g) of the
  evaluated water table itself; :data:`WATER_MODELS` names the tables and their I-values.
* :func:`build_tables` (materials, water_model, ...) -> :class:`PhysicsTables`, the per-material kernel
  tables on a ln(E) grid from :data:`E_MIN_MEV` to :data:`E_MAX_MEV` (MeV); e.g.
  ``build_tables(["water"]).csda_range_g_cm2(0, energy_mev)`` is the engine's CSDA range of water (g/cm2).

A material is a :class:`mcproton.materials.Material` or a name known to
:func:`mcproton.materials.get_material`.
"""
from __future__ import annotations

from ._physics.stopping import (DEFAULT_IVALUE_SET, IVALUE_SETS, WATER_MODELS,
                                electronic_mass_stopping_power, mean_excitation_energy_ev,
                                nuclear_mass_stopping_power, water_stopping_table)
from ._physics.tables import E_MAX_MEV, E_MIN_MEV, PhysicsTables, build_tables

__all__ = ["electronic_mass_stopping_power", "nuclear_mass_stopping_power", "mean_excitation_energy_ev",
           "water_stopping_table", "IVALUE_SETS", "DEFAULT_IVALUE_SET", "WATER_MODELS",
           "build_tables", "PhysicsTables", "E_MIN_MEV", "E_MAX_MEV"]

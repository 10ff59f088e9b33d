"""Materials: elemental composition, density and mean excitation energy.

(Skeleton: the material database and ``get_material`` are being written; see mcproton/data/materials/.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Material:
    """A material for transport.

    Parameters
    ----------
    name : unique name (e.g. ``"water"``, ``"bone_compact_icru"``).
    density_g_cm3 : nominal mass density (g/cm3); voxels may override it.
    mass_fractions : element symbol -> mass fraction (sums to 1).
    i_value_ev : mean excitation energy (eV); None -> Bragg additivity from the elements.
    source : citation of composition, density and I-value.
    """

    name: str
    density_g_cm3: float
    mass_fractions: Mapping[str, float] = field(default_factory=dict)
    i_value_ev: float | None = None
    source: str = ""

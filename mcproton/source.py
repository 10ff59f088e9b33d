"""Proton sources: Gaussian pencil beams and weighted lists of spots.

A spot is defined at a *source plane*: the point ``position_mm`` on the spot's central ray, the unit
``direction``, and the beam-frame transverse axes ``axis_x`` (given) and ``axis_y = direction x axis_x``.
In each transverse axis the phase space is a correlated Gaussian (position sigma, angular sigma
(divergence) and their correlation, as in beam models fitted at a plane upstream of isocentre).
Protons travel in vacuum from the source plane to the voxel grid.  A spot may carry a range shifter
(:class:`RangeShifterSlab`): a homogeneous slab perpendicular to its central ray between the source plane and
the grid, through which the kernel transports each proton with the full physics (kernels/transport.cu
``traverse_shifter``) before the flight to the grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ._kernels.layout import SPOT_DTYPE  # struct Spot, parsed from kernels/source/spot.h (re-exported here)
from .materials import Material, get_material


def _unit(v: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    n = np.linalg.norm(a) if a.shape == (3,) else 0.0
    if a.shape != (3,) or not np.all(np.isfinite(a)) or n == 0:
        raise ValueError(f"{what} must be a non-zero finite 3-vector; got {v}")
    return a / n


@dataclass(frozen=True)
class RangeShifterSlab:
    """A range shifter in a spot's beam line: a homogeneous slab perpendicular to the spot's central ray.

    Parameters
    ----------
    material : material name (``mcproton.materials``) or :class:`Material`.
    thickness_mm : physical thickness along the central ray (mm).
    density_g_cm3 : density of the slab (g/cm3); its mass thickness is thickness x density.
    upstream_face_mm : distance from the spot's source-plane point, along its central ray, to the slab's
        upstream face (mm, >= 0: the slab lies downstream of the source plane).
    id : the shifter's name (plan RangeShifterID), for provenance.
    wet_mm : its water-equivalent thickness (mm) as the plan or beam model gives it, for provenance.
    """

    material: str | Material
    thickness_mm: float
    density_g_cm3: float
    upstream_face_mm: float
    id: str = ""
    wet_mm: float | None = None

    def __post_init__(self) -> None:
        get_material(self.material)   # an unknown name fails here, with the close matches
        for name in ("thickness_mm", "density_g_cm3"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"range shifter {self.id or ''!s} {name} must be positive and finite; got "
                                 f"{getattr(self, name)}".replace("  ", " "))
        f = float(self.upstream_face_mm)
        if not np.isfinite(f) or f < 0:
            raise ValueError(f"range shifter {self.id or ''!s} upstream_face_mm = {self.upstream_face_mm}: the "
                             "slab must lie downstream of the source plane (>= 0 mm)".replace("  ", " "))

    @property
    def material_name(self) -> str:
        return get_material(self.material).name

    @property
    def mass_thickness_g_cm2(self) -> float:
        return float(self.thickness_mm) / 10.0 * float(self.density_g_cm3)


def default_axis_x(direction: np.ndarray) -> np.ndarray:
    """A transverse x axis for a beam direction: +x projected perpendicular to it (or +y if parallel)."""
    ref = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    ax = ref - direction * np.dot(ref, direction)
    return ax / np.linalg.norm(ax)


@dataclass
class Spot:
    """One Gaussian pencil beam.

    Parameters
    ----------
    energy_mev : mean kinetic energy (MeV).
    position_mm : (x, y, z) of the spot's central ray at the source plane (mm).
    direction : unit vector of the central ray.
    energy_spread_mev : Gaussian sigma of the kinetic energy (MeV).
    sigma_mm : (sigma_x, sigma_y) spot size at the source plane (mm).
    divergence_rad : (sigma_theta_x, sigma_theta_y) angular spread (rad).
    correlation : (rho_x, rho_y) position-angle correlation (-1..1).
    weight : relative or absolute number of protons of this spot.
    axis_x : beam-frame x axis (perpendicular to ``direction``); chosen automatically if None.
    range_shifter : a :class:`RangeShifterSlab` in the spot's beam line, or None.
    """

    energy_mev: float
    position_mm: Sequence[float] = (0.0, 0.0, -1.0)
    direction: Sequence[float] = (0.0, 0.0, 1.0)
    energy_spread_mev: float = 0.0
    sigma_mm: Sequence[float] = (0.0, 0.0)
    divergence_rad: Sequence[float] = (0.0, 0.0)
    correlation: Sequence[float] = (0.0, 0.0)
    weight: float = 1.0
    axis_x: Sequence[float] | None = None
    range_shifter: RangeShifterSlab | None = None

    def __post_init__(self) -> None:
        e = float(self.energy_mev)
        if not np.isfinite(e) or e <= 0:
            raise ValueError(f"spot energy_mev must be positive; got {self.energy_mev}")
        if e > 350.0:
            raise ValueError(f"spot energy {e} MeV is above 350 MeV, outside the physics tables "
                             "(therapy protons are 50-250 MeV)")
        if not np.isfinite(self.energy_spread_mev) or self.energy_spread_mev < 0:
            raise ValueError(f"energy_spread_mev must be >= 0; got {self.energy_spread_mev}")
        for name in ("sigma_mm", "divergence_rad", "correlation", "position_mm"):
            a = np.asarray(getattr(self, name), dtype=float)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"spot {name} contains NaN or inf: {getattr(self, name)}")
        if np.any(np.asarray(self.sigma_mm, dtype=float) < 0) or np.any(np.asarray(self.divergence_rad) < 0):
            raise ValueError("spot sigma_mm and divergence_rad must be >= 0")
        if np.any(np.abs(np.asarray(self.correlation, dtype=float)) > 1):
            raise ValueError(f"spot correlation must lie in [-1, 1]; got {self.correlation}")
        if not np.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"spot weight must be finite and >= 0; got {self.weight}")
        d = _unit(self.direction, "spot direction")
        self.direction = tuple(d)
        if self.axis_x is None:
            ax = default_axis_x(d)
        else:
            ax = _unit(self.axis_x, "spot axis_x")
            ax = ax - d * np.dot(ax, d)
            if np.linalg.norm(ax) < 1e-6:
                raise ValueError("spot axis_x is parallel to the direction; give a transverse axis")
            ax /= np.linalg.norm(ax)
        self.axis_x = tuple(ax)


@dataclass
class Beam:
    """A list of weighted spots.  ``total_protons`` (if set) gives absolute dose in Gy; otherwise the dose
    is in Gy per primary proton."""

    spots: list[Spot]
    total_protons: float | None = None
    name: str = "beam"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.spots) == 0:
            raise ValueError("a beam needs at least one spot")
        w = np.array([s.weight for s in self.spots], dtype=float)
        if w.sum() <= 0:
            raise ValueError("the spot weights of the beam sum to zero; give at least one positive weight")
        if self.total_protons is not None and (not np.isfinite(self.total_protons) or self.total_protons <= 0):
            raise ValueError(f"total_protons must be positive; got {self.total_protons}")

    @classmethod
    def pencil(cls, energy_mev: float, **kw) -> "Beam":
        """A single pencil beam; keyword arguments are those of :class:`Spot`."""
        total = kw.pop("total_protons", None)
        return cls([Spot(energy_mev, **kw)], total_protons=total, name=f"pencil {energy_mev:g} MeV")

    @property
    def max_energy_mev(self) -> float:
        return max(s.energy_mev + 5 * s.energy_spread_mev for s in self.spots)

    def shifter_materials(self) -> list[Material]:
        """The materials of the spots' range shifters (each once, in order of first use)."""
        out: dict[str, Material] = {}
        for s in self.spots:
            if s.range_shifter is not None:
                m = get_material(s.range_shifter.material)
                out.setdefault(m.name, m)
        return list(out.values())

    def run_materials(self, materials: Sequence[Material]) -> list[Material]:
        """The material list of a run's tables: the geometry's ``materials`` (indices unchanged) followed by the
        range-shifter materials they lack."""
        names = {m.name for m in materials}
        return list(materials) + [m for m in self.shifter_materials() if m.name not in names]

    def spot_array(self, material_names: Sequence[str] | None = None) -> np.ndarray:
        """The kernel's spot records.  ``material_names``: the run's material list (its order is the index of
        the tables; Simulation passes ``run_materials``).  Without it a range shifter's ``rs_material`` indexes
        the beam's own :meth:`shifter_materials` (enough for a fingerprint of the beam, e.g. the checkpoint's
        beams_hash, but not for a run)."""
        if material_names is None:
            material_names = [m.name for m in self.shifter_materials()]
        a = np.zeros(len(self.spots), SPOT_DTYPE)
        for i, s in enumerate(self.spots):
            d = np.asarray(s.direction)
            ax = np.asarray(s.axis_x)
            a[i]["pos_cm"] = np.asarray(s.position_mm) / 10.0
            a[i]["dir"] = d
            a[i]["axis_x"] = ax
            a[i]["axis_y"] = np.cross(d, ax)
            a[i]["energy_mev"] = s.energy_mev
            a[i]["energy_sigma_mev"] = s.energy_spread_mev
            a[i]["sigma_cm"] = np.asarray(s.sigma_mm, dtype=float) / 10.0
            a[i]["div_rad"] = s.divergence_rad
            a[i]["corr"] = s.correlation
            rs = s.range_shifter
            if rs is not None:
                name = rs.material_name
                if name not in material_names:
                    raise ValueError(f"range shifter material {name!r} is not in the run's material list "
                                     f"{list(material_names)}; build the tables with Beam.run_materials")
                a[i]["rs_thickness_cm"] = rs.thickness_mm / 10.0
                a[i]["rs_density"] = rs.density_g_cm3
                a[i]["rs_face_cm"] = rs.upstream_face_mm / 10.0
                a[i]["rs_material"] = list(material_names).index(name)
        return a

    def spot_cdf(self) -> np.ndarray:
        """Cumulative spot-selection probability (float64 -> float32 for the kernel), last entry exactly 1."""
        w = np.array([s.weight for s in self.spots], dtype=np.float64)
        c = np.cumsum(w) / w.sum()
        c[-1] = 1.0
        return c.astype(np.float32)

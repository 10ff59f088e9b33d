"""A plan and its fields (spots with weights) and their conversion to the engine's beam,
:class:`mcproton.source.Beam` (:meth:`FieldSpots.spots`, :meth:`FieldSpots.beam`, :meth:`Plan.beam`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..source import Beam, Spot
from .machine import FieldMachine

RBE = 1.1   # constant proton RBE relative to photons (ICRU Report 78, 2007): Gy(RBE) = 1.1 x Gy


@dataclass
class FieldSpots:
    """The spots of one field in its beam frame: lateral (u, v) in mm at the isocentre plane, energy.

    With a ``machine`` (:class:`FieldMachine`) ``energy_mev`` is the beam model's mean energy at the nozzle of
    each spot's ``nominal_energy_mev``, the spots start at the model's plane with its phase space on the ray
    from the virtual sources, and carry the machine's range shifter; without one they are generic Gaussian
    pencil beams (``sigma_air_mm``, ``energy_spread_rel``) on parallel rays."""

    name: str
    direction: np.ndarray
    isocentre_mm: np.ndarray
    axis_x: np.ndarray
    u_mm: np.ndarray
    v_mm: np.ndarray
    energy_mev: np.ndarray
    weights: np.ndarray
    sigma_air_mm: float
    energy_spread_rel: float
    source_distance_mm: float
    nominal_energy_mev: np.ndarray | None = None
    machine: FieldMachine | None = None

    @property
    def axis_y(self) -> np.ndarray:
        return np.cross(self.direction, self.axis_x)

    @property
    def n_spots(self) -> int:
        return int(self.u_mm.size)

    @property
    def n_layers(self) -> int:
        return int(np.unique(np.round(self.energy_mev, 3)).size)

    def spots(self) -> list[Spot]:
        ax, ay, d = self.axis_x, self.axis_y, self.direction
        if self.machine is not None:
            return self._machine_spots()
        out = []
        for u, v, e, w in zip(self.u_mm, self.v_mm, self.energy_mev, self.weights):
            pos = self.isocentre_mm + u * ax + v * ay - self.source_distance_mm * d
            out.append(Spot(float(e), position_mm=tuple(pos), direction=tuple(d), axis_x=tuple(ax),
                            energy_spread_mev=float(self.energy_spread_rel * e),
                            sigma_mm=(self.sigma_air_mm, self.sigma_air_mm), weight=float(w)))
        return out

    def _machine_spots(self) -> list[Spot]:
        """Spots as the beam model gives them (as ``plan_to_beams`` places a plan's spots): at the model's
        plane ``L`` upstream of the isocentre on the ray from the virtual sources through (u, v) at the
        isocentre plane, the model's energy, spread and phase space per component, the shifter as a slab."""
        from ..source import RangeShifterSlab

        m = self.machine
        ax, ay, d = self.axis_x, self.axis_y, self.direction
        L = m.plane_mm
        vx, vy = m.vsad_mm
        out = []
        layers: dict[float, tuple] = {}   # per nominal energy (a layer): the model's entry and its weight sum
        for u, v, e_nom, w in zip(self.u_mm, self.v_mm, self.nominal_energy_mev, self.weights):
            e_nom = float(e_nom)
            if e_nom not in layers:
                ent = m.model.at(e_nom)
                layers[e_nom] = (ent, sum(c.weight for c in ent.components))
            ent, wsum = layers[e_nom]
            dvec = u / vx * ax + v / vy * ay + d
            dvec = dvec / np.linalg.norm(dvec)
            pos = self.isocentre_mm + u * (1 - L / vx) * ax + v * (1 - L / vy) * ay - L * d
            slab = None
            if m.shifter is not None:
                face = (L - m.shifter_distance_mm - m.thickness_mm) / float(np.dot(dvec, d))
                slab = RangeShifterSlab(m.shifter.material, m.thickness_mm, m.shifter.density, face,
                                        id=m.shifter.id, wet_mm=float(m.shifter.wet_mm))
            axs = ax - dvec * np.dot(ax, dvec)
            for c in ent.components:
                out.append(Spot(float(ent.mean_energy_mev), position_mm=tuple(pos), direction=tuple(dvec),
                                axis_x=tuple(axs), energy_spread_mev=float(ent.energy_spread_mev),
                                sigma_mm=c.sigma_mm, divergence_rad=c.divergence_rad,
                                correlation=c.correlation,
                                weight=float(w * c.weight / wsum), range_shifter=slab))
        return out

    def subset(self, keep: np.ndarray) -> "FieldSpots":
        """The field with only the spots ``keep`` (boolean mask)."""
        import dataclasses

        return dataclasses.replace(self, u_mm=self.u_mm[keep], v_mm=self.v_mm[keep],
                                   energy_mev=self.energy_mev[keep], weights=self.weights[keep],
                                   nominal_energy_mev=None if self.nominal_energy_mev is None
                                   else self.nominal_energy_mev[keep])

    def beam(self) -> Beam:
        sub = self.subset(self.weights > 0)
        return Beam(sub.spots(), total_protons=float(self.weights.sum()), name=self.name)

    def describe(self) -> dict:
        e = self.nominal_energy_mev if self.nominal_energy_mev is not None else self.energy_mev
        out = {"name": self.name, "direction": [round(float(c), 4) for c in self.direction],
               "isocentre_mm": [round(float(c), 2) for c in self.isocentre_mm],
               "spots": int((self.weights > 0).sum()), "layers": self.n_layers,
               "energy_mev": [round(float(e.min()), 2), round(float(e.max()), 2)],
               "protons": float(self.weights.sum())}
        if self.machine is not None:
            out["energy"] = "nominal (beam model)"
            out["machine"] = self.machine.describe()
            sig = [self.machine.sigma_iso_mm(x) for x in (e.min(), e.max())]
            out["spot_sigma_at_isocentre_in_air_mm"] = {f"{x:.1f} MeV": [round(a, 2), round(b, 2)]
                                                        for x, (a, b) in zip((e.min(), e.max()), sig)}
        return out


@dataclass
class Plan:
    """An optimised PBS plan: fields with absolute spot weights (protons per fraction)."""

    name: str
    target_name: str
    target_mask_zyx: np.ndarray
    fields: list[FieldSpots]
    prescription_gy: float                      # physical dose per fraction
    prescription_gy_rbe: float
    model_stats: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def total_protons(self) -> float:
        return float(sum(f.weights.sum() for f in self.fields))

    def beam(self) -> Beam:
        """All fields as one Beam (spot weights = protons, ``total_protons`` = their sum), so one Monte Carlo
        run gives the plan dose per fraction."""
        spots = [s for f in self.fields for s in f.spots() if s.weight > 0]
        return Beam(spots, total_protons=self.total_protons, name=self.name)

    def beams(self) -> list[Beam]:
        return [f.beam() for f in self.fields]

    def summary(self) -> dict:
        return {"name": self.name, "target": self.target_name,
                "prescription_gy_rbe": self.prescription_gy_rbe, "prescription_gy": self.prescription_gy,
                "rbe": RBE, "total_protons": self.total_protons,
                "fields": [f.describe() for f in self.fields],
                "model": self.model_stats}

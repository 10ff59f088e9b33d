"""A plan and its fields (spots with weights) and their conversion to the engine's beam,
:class:`mcproton.source.Beam` (:meth:`FieldSpots.spots`, :meth:`FieldSpots.beam`, :meth:`Plan.beam`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..source import Beam, Spot, make_spots
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
        """The engine's spots of the field (one per spot, or per spot and beam-model component with a machine),
        made as whole arrays (:func:`mcproton.source.make_spots`: the same Spot objects, bit for bit, as one by
        one)."""
        if self.machine is not None:
            return self._machine_spots()
        ax, ay, d = self.axis_x, self.axis_y, self.direction
        n = self.n_spots
        u, v, e = self.u_mm[:, None], self.v_mm[:, None], self.energy_mev
        pos = self.isocentre_mm + u * ax + v * ay - self.source_distance_mm * d
        sig = (self.sigma_air_mm, self.sigma_air_mm)
        return make_spots([float(x) for x in e], pos, np.broadcast_to(d, (n, 3)), np.broadcast_to(ax, (n, 3)),
                          energy_spread_mev=[float(self.energy_spread_rel * x) for x in e], sigma_mm=[sig] * n,
                          divergence_rad=[(0.0, 0.0)] * n, correlation=[(0.0, 0.0)] * n,
                          weight=[float(w) for w in self.weights])

    def _machine_spots(self) -> list[Spot]:
        """Spots as the beam model gives them (as ``plan_to_beams`` places a plan's spots): at the model's
        plane ``L`` upstream of the isocentre on the ray from the virtual sources through (u, v) at the
        isocentre plane, the model's energy, spread and phase space per component, the shifter as a slab.
        Ray directions, positions, shifter faces and transverse axes as arrays over the spots: the arithmetic of
        one spot at a time, element by element (dot products and norms row by row as NumPy's dot,
        ``mcproton.source._rowdot``), so the same numbers bit for bit."""
        from ..source import RangeShifterSlab, _rowdot, _unit_rows

        m = self.machine
        ax, ay, d = self.axis_x, self.axis_y, self.direction
        L = m.plane_mm
        vx, vy = m.vsad_mm
        u, v = self.u_mm, self.v_mm
        if u.size == 0:
            return []
        dvec = _unit_rows((u / vx)[:, None] * ax + (v / vy)[:, None] * ay + d)
        pos = self.isocentre_mm + (u * (1 - L / vx))[:, None] * ax + (v * (1 - L / vy))[:, None] * ay - L * d
        axs = ax - dvec * _rowdot(dvec, ax)[:, None]
        slabs: list = [None] * len(u)
        if m.shifter is not None:
            face = (L - m.shifter_distance_mm - m.thickness_mm) / _rowdot(dvec, d)
            slab = RangeShifterSlab(m.shifter.material, m.thickness_mm, m.shifter.density, float(face[0]),
                                    id=m.shifter.id, wet_mm=float(m.shifter.wet_mm))
            slabs = slab.at_faces(face)
        rows, cols = [], []   # per engine spot: the field's spot and (energy, spread, sigma, divergence, rho, w)
        layers: dict[float, tuple] = {}   # per nominal energy (a layer): the model's entry and its weight sum
        for i, (e_nom, w) in enumerate(zip(self.nominal_energy_mev, self.weights)):
            e_nom = float(e_nom)
            if e_nom not in layers:
                ent = m.model.at(e_nom)
                layers[e_nom] = (ent, sum(c.weight for c in ent.components))
            ent, wsum = layers[e_nom]
            for c in ent.components:
                rows.append(i)
                cols.append((float(ent.mean_energy_mev), float(ent.energy_spread_mev), c.sigma_mm, c.divergence_rad,
                             c.correlation, float(w * c.weight / wsum)))
        if not rows:
            return []
        r = np.asarray(rows, dtype=np.intp)
        e, es, sig, div, cor, wt = (list(x) for x in zip(*cols))
        return make_spots(e, pos[r], dvec[r], axs[r], energy_spread_mev=es, sigma_mm=sig, divergence_rad=div,
                          correlation=cor, weight=wt, range_shifter=[slabs[i] for i in rows])

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

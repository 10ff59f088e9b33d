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

import itertools
import operator
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ._kernels.layout import SPOT_DTYPE  # struct Spot, parsed from kernels/source/spot.h (re-exported here)
from .materials import Material, get_material
from .settings import _real


def _numbers(v: Any) -> np.ndarray | None:
    """``v`` as a float array where it holds numbers only (ints, floats, NumPy numbers, of any shape); None for text,
    None, bools, objects or a ragged sequence (refused by the caller, with the shape it needs: before, ("3", "3")
    was read as numbers and stored as text)."""
    try:
        raw = np.asarray(v)
    except (TypeError, ValueError):
        return None
    return raw.astype(float) if raw.dtype.kind in "iuf" else None


#: A vector whose largest component lies outside [1 / _UNIT_SAFE, _UNIT_SAFE] is scaled by it before its norm is
#: taken: the sum of the squares would overflow (1e300: the norm inf, the direction (0, 0, 0)) or lose digits in
#: subnormals (1e-160: 6e-6 off unit), and a vector of 1e-300 read as zero (the edges audit of 2026-12-07, F5).
#: Within it the norm is taken as it always was, so that every ordinary vector gives bitwise the same unit vector.
_UNIT_SAFE = 1e150


def _unit(v: Sequence[float], what: str) -> np.ndarray:
    a = _numbers(v)
    if a is None:
        raise ValueError(f"{what} must be a non-zero finite 3-vector of numbers; got {v!r}")
    if a.shape != (3,) or not np.all(np.isfinite(a)) or not np.any(a):
        raise ValueError(f"{what} must be a non-zero finite 3-vector; got {v}")
    big = float(np.max(np.abs(a)))
    if not 1.0 / _UNIT_SAFE <= big <= _UNIT_SAFE:
        a = a / big
    return a / np.linalg.norm(a)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (N, 3) float64 arrays (``b`` may be one 3-vector), each bit for bit
    ``np.dot(a[i], b[i])``: ``np.vecdot`` (NumPy >= 2) and a stacked (1 x 3) @ (3 x 1) ``matmul`` call NumPy's
    dot loop (BLAS ddot) per row, whereas a sum of the products rounds differently where BLAS fuses the
    multiply-adds (a third of random vectors on an AVX2 CPU)."""
    vecdot = getattr(np, "vecdot", None)
    if vecdot is not None:
        return vecdot(a, b)
    b = np.broadcast_to(b, a.shape)
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Each row of ``a`` divided by its norm: row ``i`` bit for bit ``a[i] / np.linalg.norm(a[i])`` (the norm of a
    real vector is ``sqrt(x.dot(x))``)."""
    return a / np.sqrt(_rowdot(a, a))[:, None]


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

    def at_faces(self, faces_mm: Sequence[float]) -> list["RangeShifterSlab"]:
        """Copies of this slab with each upstream face in ``faces_mm`` (mm): equal to
        ``dataclasses.replace(self, upstream_face_mm=float(f))`` one by one, with the checks of ``__post_init__``
        made once (material, thickness, density: this slab's) and on the faces as one array (a planned field's
        spots each have their own face on one shifter)."""
        import dataclasses

        f = np.asarray(faces_mm, dtype=float)
        if f.ndim != 1 or not np.all(np.isfinite(f) & (f >= 0)):
            return [dataclasses.replace(self, upstream_face_mm=float(x)) for x in faces_mm]   # raises the error
        out = []
        new, state = object.__new__, self.__dict__
        for x in f.tolist():
            slab = new(RangeShifterSlab)
            slab.__dict__.update(state)
            slab.__dict__["upstream_face_mm"] = x   # frozen: set as dataclasses' __init__ does, past __setattr__
            out.append(slab)
        return out

    @property
    def mass_thickness_g_cm2(self) -> float:
        return float(self.thickness_mm) / 10.0 * float(self.density_g_cm3)


def default_axis_x(direction: np.ndarray) -> np.ndarray:
    """A transverse x axis for a beam direction: +x projected perpendicular to it (or +y if parallel)."""
    ref = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    ax = ref - direction * np.dot(ref, direction)
    return ax / np.linalg.norm(ax)


#: An energy spread (Gaussian sigma) may be at most energy / MAX_SPREAD_SIGMAS: the kernel clamps sampled energies
#: below 0 MeV to 0 (kernels/source/sample.h), so the Gaussian must not reach 0 within this many sigmas (5 sigma: a
#: fraction 2.9e-7 below 0); the same number of sigmas as the check of the tables' upper end (Beam.max_energy_mev).
MAX_SPREAD_SIGMAS = 5.0


@dataclass
class Spot:
    """One Gaussian pencil beam.

    Parameters
    ----------
    energy_mev : mean kinetic energy (MeV).
    position_mm : (x, y, z) of the spot's central ray at the source plane (mm).
    direction : direction of the central ray; any non-zero length, divided by its norm here (``direction`` then
        holds the unit vector), so (0, 1, 1) is the ray at 45 degrees between +y and +z.
    energy_spread_mev : Gaussian sigma of the kinetic energy (MeV); at most energy_mev / 5 (the sampled energies
        are clamped at 0 MeV, so a Gaussian reaching 0 within 5 sigma is refused).
    sigma_mm : (sigma_x, sigma_y) spot size at the source plane (mm).
    divergence_rad : (sigma_theta_x, sigma_theta_y) angular spread (rad).
    correlation : (rho_x, rho_y) position-angle correlation (-1..1).
    weight : the spot's share of the beam's protons, relative to the other spots' weights (>= 0): the weights
        are normalised to the probability of sampling each spot, so only their ratios matter.  The dose is per
        primary proton unless the :class:`Beam` gives ``total_protons`` (then the weights share those protons);
        an absolute number of protons per spot (as a plan's MU give) becomes absolute dose only through
        ``Beam(spots, total_protons=sum of the weights)``, as ``plan_to_beams`` does.
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
        # the scalars are kept as Python floats (a NumPy scalar or 0-d array is taken; text, None, a list refused)
        e = self.energy_mev = _real("spot energy_mev", self.energy_mev, "the mean kinetic energy in MeV")
        if not np.isfinite(e) or e <= 0:
            raise ValueError(f"spot energy_mev must be positive; got {self.energy_mev}")
        if e > 350.0:
            raise ValueError(f"spot energy {e} MeV is above 350 MeV, outside the physics tables "
                             "(therapy protons are 50-250 MeV)")
        self.energy_spread_mev = _real("spot energy_spread_mev", self.energy_spread_mev,
                                       "the Gaussian sigma of the energy in MeV (0 for none)")
        self.weight = _real("spot weight", self.weight, "the spot's relative share of the protons (>= 0)")
        if not np.isfinite(self.energy_spread_mev) or self.energy_spread_mev < 0:
            raise ValueError(f"energy_spread_mev must be >= 0; got {self.energy_spread_mev}")
        if self.energy_spread_mev * MAX_SPREAD_SIGMAS > e:
            raise ValueError(f"energy_spread_mev = {float(self.energy_spread_mev):g} MeV is more than a fifth of "
                             f"energy_mev = {e:g} MeV: the Gaussian energy spectrum reaches 0 MeV within "
                             f"{MAX_SPREAD_SIGMAS:g} sigma, and the sampled energies below 0 are clamped to 0 MeV, so "
                             "the spectrum simulated would not be the one given; give the Gaussian sigma in MeV (a "
                             "therapy beam's is about 1 % of its energy; not a percentage, not a FWHM)")
        for name, n in (("sigma_mm", 2), ("divergence_rad", 2), ("correlation", 2), ("position_mm", 3)):
            a = _numbers(getattr(self, name))
            if a is None or a.shape != (n,):
                what = "(x, y, z) in mm" if n == 3 else "(x, y) in the beam frame"
                raise ValueError(f"spot {name} must be {n} numbers {what}; got {getattr(self, name)!r}")
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


def make_spots(energy_mev: Sequence[float], position_mm: Any, direction: Any, axis_x: Any, *,
               energy_spread_mev: Sequence[float], sigma_mm: Sequence, divergence_rad: Sequence,
               correlation: Sequence, weight: Sequence[float],
               range_shifter: Sequence[RangeShifterSlab | None] | None = None) -> list[Spot]:
    """``[Spot(energy_mev[i], position_mm=tuple(position_mm[i]), direction=tuple(direction[i]), ...)]`` for many
    spots at once: the same Spot objects bit for bit (the same attribute values and types), with the checks and
    the normalisation of ``direction`` and ``axis_x`` of ``Spot.__post_init__`` done on whole arrays (row-wise
    norms and dot products as NumPy computes them for one vector) instead of some 40 NumPy calls per spot.
    ``position_mm``, ``direction``, ``axis_x``: (N, 3) arrays; the others: one value per spot.  If any spot fails a
    check, the spots are made one by one, so that Spot raises its own error."""
    n = len(energy_mev)
    rs = list(range_shifter) if range_shifter is not None else [None] * n
    pos = np.asarray(position_mm, dtype=float)
    d0 = np.asarray(direction, dtype=float)
    a0 = np.asarray(axis_x, dtype=float)

    def one_by_one() -> list[Spot]:
        return [Spot(energy_mev[i], position_mm=tuple(pos[i]), direction=tuple(d0[i]), axis_x=tuple(a0[i]),
                     energy_spread_mev=energy_spread_mev[i], sigma_mm=sigma_mm[i], divergence_rad=divergence_rad[i],
                     correlation=correlation[i], weight=weight[i], range_shifter=rs[i]) for i in range(n)]

    given = [_numbers(c) for c in (energy_mev, energy_spread_mev, sigma_mm, divergence_rad, correlation, weight)]
    cols = [c for c in given if c is not None]
    if len(cols) < len(given) or _numbers(position_mm) is None:   # ragged or not numbers: Spot says what is wrong
        return one_by_one()
    e, es, sig, div, cor, w = cols
    shapes_ok = (pos.shape == d0.shape == a0.shape == (n, 3) and e.shape == es.shape == w.shape == (n,)
                 and sig.shape == div.shape == cor.shape == (n, 2) and len(rs) == n)
    if not shapes_ok or n == 0:
        return one_by_one()
    with np.errstate(all="ignore"):
        ok = bool(np.all(np.isfinite(e) & (e > 0) & (e <= 350.0) & np.isfinite(es) & (es >= 0)
                         & (es * MAX_SPREAD_SIGMAS <= e) & np.isfinite(w) & (w >= 0))
                  and np.all(np.isfinite(sig) & np.isfinite(div) & np.isfinite(cor) & (sig >= 0) & (div >= 0)
                             & (np.abs(cor) <= 1))
                  and np.all(np.isfinite(pos)) and np.all(np.isfinite(d0)) and np.all(np.isfinite(a0)))
        if ok:   # Spot.__post_init__ on every row: _unit(direction), _unit(axis_x) made transverse and unit
            nd, na = np.sqrt(_rowdot(d0, d0)), np.sqrt(_rowdot(a0, a0))
            ok = bool(np.all(nd != 0) and np.all(na != 0))
        if ok:
            d = d0 / nd[:, None]
            ax = a0 / na[:, None]
            ax = ax - d * _rowdot(ax, d)[:, None]
            nt = np.sqrt(_rowdot(ax, ax))
            ok = bool(np.all(nt >= 1e-6))
    if not ok:
        return one_by_one()
    ax /= nt[:, None]
    new = object.__new__
    out = []
    e_f, es_f, w_f = e.tolist(), es.tolist(), w.tolist()   # Python floats, as Spot keeps them
    for i, (p, di, ai) in enumerate(zip(map(tuple, pos), map(tuple, d), map(tuple, ax))):
        s = new(Spot)
        s.__dict__.update(energy_mev=e_f[i], position_mm=p, direction=di, energy_spread_mev=es_f[i],
                          sigma_mm=sigma_mm[i], divergence_rad=divergence_rad[i], correlation=correlation[i],
                          weight=w_f[i], axis_x=ai, range_shifter=rs[i])
        out.append(s)
    return out


_DOUBLE_OR_INT = frozenset({float, int, np.float64, np.int64, np.int32})


def _double_or_int(values) -> bool:
    """Whether every value is a double or an integer: what ``x / 10.0`` computes in float64 either way."""
    return {type(x) for x in values} <= _DOUBLE_OR_INT


def _material_key(material: str | Material) -> Any:
    return material if isinstance(material, str) else id(material)


def _shifter_material_names(spots: Sequence[Spot]) -> tuple[list[int], dict[Any, Material]]:
    """The indices of the spots with a range shifter, and each distinct shifter material (by name, or by object
    for a :class:`Material`) resolved once with get_material, in order of first use."""
    idx, mats = [], {}
    for i, s in enumerate(spots):
        rs = s.range_shifter
        if rs is not None:
            idx.append(i)
            key = _material_key(rs.material)
            if key not in mats:
                mats[key] = get_material(rs.material)
    return idx, mats


_SPOT_ATTRS = operator.attrgetter("position_mm", "direction", "axis_x", "energy_mev", "energy_spread_mev",
                                  "sigma_mm", "divergence_rad", "correlation")


def _spot_records(spots: Sequence[Spot]) -> np.ndarray | None:
    """The kernel's records of the spots without the range-shifter fields, built column by column: bit for bit
    :meth:`Beam._spot_array_one_by_one`'s values (the same float64 arithmetic per element, then the cast to
    float32; ``np.cross`` of (N, 3) arrays is its product of 3-vectors row by row).  None when an attribute is not
    of the shape a spot's record needs (then the records are filled spot by spot, which broadcasts or fails)."""
    n = len(spots)
    try:
        cols = list(zip(*map(_SPOT_ATTRS, spots)))
        if not _double_or_int(x for p in cols[0] for x in p):   # float32 / 10.0 would be a float32 division
            return None
        pos, d, ax = (np.array(c, dtype=float) for c in cols[:3])
        e, es = np.array(cols[3], dtype=float), np.array(cols[4], dtype=float)
        sig, div, cor = (np.array(c, dtype=float) for c in cols[5:8])
    except (TypeError, ValueError):
        return None
    if not (pos.shape == d.shape == ax.shape == (n, 3) and e.shape == es.shape == (n,)
            and sig.shape == div.shape == cor.shape == (n, 2)):
        return None
    a = np.zeros(n, SPOT_DTYPE)
    a["pos_cm"] = pos / 10.0
    a["dir"] = d
    a["axis_x"] = ax
    a["axis_y"] = np.cross(d, ax)
    a["energy_mev"] = e
    a["energy_sigma_mev"] = es
    a["sigma_cm"] = sig / 10.0
    a["div_rad"] = div
    a["corr"] = cor
    return a


@dataclass
class Beam:
    """A list of weighted spots.  ``total_protons`` (if set) gives absolute dose in Gy; otherwise the dose
    is in Gy per primary proton."""

    spots: list[Spot]
    total_protons: float | None = None
    name: str = "beam"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.spots, Spot):
            raise ValueError("Beam(spots) takes a list of Spots; give [spot] for one spot (or Beam.pencil)")
        if not isinstance(self.spots, list):   # a tuple, a generator, an array of Spots: kept as a list
            if isinstance(self.spots, (str, bytes, dict)) or not hasattr(self.spots, "__iter__"):
                raise ValueError(f"Beam(spots) takes a list of Spots; got a {type(self.spots).__name__}")
            self.spots = list(self.spots)
        if len(self.spots) == 0:
            raise ValueError("a beam needs at least one spot")
        bad = next((s for s in self.spots if not isinstance(s, Spot)), None)
        if bad is not None:
            raise ValueError(f"Beam(spots): every spot must be a mcproton.source.Spot; got a {type(bad).__name__}")
        w = np.array([s.weight for s in self.spots], dtype=float)
        if not np.any(w > 0):
            raise ValueError("the spot weights of the beam sum to zero; give at least one positive weight")
        with np.errstate(over="ignore"):
            total = float(w.sum())
        if not np.isfinite(total):   # spot_cdf sums exactly, but the checks before a run share weight in float64
            raise ValueError(f"the spot weights of the beam sum to more than the largest float64 (1.8e308; the "
                             f"largest weight is {float(w.max()):.3g}), so the shares of the weight that the checks "
                             "before a run compute (spots aimed off the grid, protons stopped in a range shifter) "
                             "would be NaN and say nothing: only the weights' ratios count, so divide them all by "
                             "one factor (e.g. their maximum)")
        if self.total_protons is not None:
            self.total_protons = _real("beam total_protons", self.total_protons,
                                       "the number of protons the beam delivers (e.g. 1e9), or None for dose per "
                                       "primary")
            if not np.isfinite(self.total_protons) or self.total_protons <= 0:
                raise ValueError(f"total_protons must be positive; got {self.total_protons}")

    @classmethod
    def pencil(cls, energy_mev: float, **kw) -> "Beam":
        """A single pencil beam; keyword arguments are those of :class:`Spot`, and ``total_protons`` (of
        :class:`Beam`)."""
        total = kw.pop("total_protons", None)
        spot = Spot(energy_mev, **kw)
        return cls([spot], total_protons=total, name=f"pencil {spot.energy_mev:g} MeV")

    @property
    def max_energy_mev(self) -> float:
        return max(s.energy_mev + 5 * s.energy_spread_mev for s in self.spots)

    def shifter_materials(self) -> list[Material]:
        """The materials of the spots' range shifters (each once, in order of first use)."""
        out: dict[str, Material] = {}
        for m in _shifter_material_names(self.spots)[1].values():
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
        a = _spot_records(self.spots)
        if a is None:
            return self._spot_array_one_by_one(material_names)
        slabs, mats = _shifter_material_names(self.spots)
        if slabs:
            names = list(material_names)
            index = {}
            for key, m in mats.items():
                if m.name not in names:
                    raise ValueError(f"range shifter material {m.name!r} is not in the run's material list "
                                     f"{names}; build the tables with Beam.run_materials")
                index[key] = names.index(m.name)
            i = np.fromiter(slabs, dtype=np.intp, count=len(slabs))
            rs: list[RangeShifterSlab] = [self.spots[j].range_shifter for j in slabs]   # type: ignore[misc]
            if not _double_or_int(x for r in rs for x in (r.thickness_mm, r.upstream_face_mm)):
                return self._spot_array_one_by_one(material_names)
            a["rs_thickness_cm"][i] = np.array([r.thickness_mm for r in rs], dtype=np.float64) / 10.0
            a["rs_density"][i] = np.array([r.density_g_cm3 for r in rs], dtype=np.float64)
            a["rs_face_cm"][i] = np.array([r.upstream_face_mm for r in rs], dtype=np.float64) / 10.0
            a["rs_material"][i] = [index[_material_key(r.material)] for r in rs]
        return a

    def _spot_array_one_by_one(self, material_names: Sequence[str]) -> np.ndarray:
        """:meth:`spot_array` spot by spot (spots whose attributes are not all arrays of one shape; the reference
        of the vectorised records in the tests)."""
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
        """Cumulative spot-selection table for the kernel (``kernels/source/sample.h`` select_spot): uint64 entries
        ``floor(2^63 x (w_0 + ... + w_j) / sum(w))``, the last (from the last spot with a positive weight on)
        exactly 2^63.

        The kernel picks the first spot whose entry exceeds a key k uniform on [0, 2^63), so spot j is drawn with
        probability ``(cdf[j] - cdf[j-1]) / 2^63``: its planned share ``w_j / sum(w)`` to within 2^-63 of the beam
        (a relative 1.1e-10 for a spot of 1e-9 of its beam), and never when its weight is 0.  The sums are exact:
        each float64 weight is an integer times a power of 2, added as Python integers (a float64 or float32 sum
        would round each entry by up to half an ulp of the running total, 1e-16 or 6e-8 of the beam: the old
        float32 table, searched with the kernel's 24-bit uniform, sampled a spot of 1e-7 of its beam 19 % too
        often, and spots near 5e-8 never or up to 2.6 times too often)."""
        w = np.array([s.weight for s in self.spots], dtype=np.float64)
        mant, exp = np.frexp(w)                                  # w = mant x 2^exp, 0.5 <= mant < 1 (or 0)
        m = (mant * 2.0**53).astype(np.int64)                    # exact: 53-bit integer mantissas
        e = exp.astype(np.int64) - 53
        e0 = int(e[w > 0].min())
        shift = np.where(w > 0, e - e0, 0)
        parts = [mi << si for mi, si in zip(m.tolist(), shift.tolist())]     # the weights / 2^e0, as integers
        total = sum(parts)                                       # > 0: Beam refuses weights summing to 0
        return np.array([(c << 63) // total for c in itertools.accumulate(parts)], dtype=np.uint64)

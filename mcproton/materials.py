"""Materials: elemental composition, density and mean excitation energy.

The material database lives in ``mcproton/data/materials/materials.csv`` and the element table in
``mcproton/data/materials/elements.csv``; both files carry their sources in ``#`` header lines.

>>> get_material("water").i_value_ev
78.0
>>> get_material("Lucite").name
'pmma'
"""
from __future__ import annotations

import csv
import difflib
import math
import numbers
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

_DATA_DIR = Path(__file__).resolve().parent / "data" / "materials"


@dataclass(frozen=True)
class Material:
    """A material for transport.

    Parameters
    ----------
    name : unique name (e.g. ``"water"``, ``"bone_compact_icru"``).
    density_g_cm3 : nominal mass density (g/cm3); voxels may override it.
    mass_fractions : element symbol (or name: ``"h"``, ``"calcium"``) -> mass fraction, each >= 0, summing to 1
        within ``FRACTION_SUM_TOL``; the fractions kept are divided by their sum (so that stopping, scattering and
        the nuclear cross sections all see the same fractions summing to 1), keyed by symbol.  A sum further from
        1 is refused (fractions in percent, an element left out), as the database and the file readers refuse it.
        Empty: a material known by name only (the composition is not needed).
    i_value_ev : mean excitation energy (eV); None -> Bragg additivity from the elements.
    source : citation of composition, density and I-value.
    """

    name: str
    density_g_cm3: float
    mass_fractions: Mapping[str, float] = field(default_factory=dict)
    i_value_ev: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.mass_fractions:
            return
        where = f"material {self.name!r}"
        comp = _checked_fractions(self.mass_fractions, where)
        total = math.fsum(comp.values())
        if abs(total - 1.0) > _SUM_ROUNDING:
            comp = {k: v / total for k, v in comp.items()}
        elif list(comp) == list(self.mass_fractions):
            return   # already fractions of 1 by symbol (the readers' and the database's): kept bit for bit
        object.__setattr__(self, "mass_fractions", comp)


#: Mass fractions must sum to 1 within this (the material database rounds them to 6 decimals); they are then divided
#: by their sum.  A sum further away is refused: fractions in percent, or an element left out (a dose error: the
#: nuclear cross sections and nuclear stopping scale with the fractions as given; stopping and scattering would not).
FRACTION_SUM_TOL = 1e-4
#: a sum within this of 1 is 1 to rounding (fractions divided by their sum already): Material keeps them as given
_SUM_ROUNDING = 1e-12


def _checked_fractions(fractions: Mapping[str, float], where: str) -> dict[str, float]:
    """The fractions by element symbol, after the checks every composition passes: known elements, each once,
    finite and >= 0, a sum within FRACTION_SUM_TOL of 1 (ValueError naming the sum and the fix otherwise).  Not
    divided by their sum: the caller does that."""
    comp: dict[str, float] = {}
    for key, w in fractions.items():
        try:
            sym = element(key).symbol
        except KeyError as exc:
            raise ValueError(f"{where}: {exc.args[0]}") from None
        if sym in comp:
            raise ValueError(f"{where}: element {sym} listed twice")
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{where}: the mass fraction of {sym} must be a finite number >= 0; got {w!r}")
        comp[sym] = float(w)
    total = math.fsum(comp.values())
    if abs(total - 1.0) > FRACTION_SUM_TOL:
        if 95.0 <= total <= 105.0:
            fix = "fractions in percent? divide them by 100"
        elif 0.9 <= total < 1.0:
            fix = "an element left out? add it, or divide the fractions by their sum if the rest is negligible"
        else:
            fix = "give each element's share of the mass, 0 to 1"
        raise ValueError(f"{where}: mass fractions must be >= 0 and sum to 1 (within {FRACTION_SUM_TOL:g}); they sum "
                         f"to {total:.6g}: {fix}")
    return comp


# ----------------------------------------------------------------------------------------------------------
# Elements
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Element:
    """One chemical element (see ``data/materials/elements.csv`` for sources).

    symbol, Z, name; atomic_mass_g_mol: standard atomic weight (g/mol, NIST/IUPAC);
    i_elemental_ev: I-value of the pure element (ICRU 37/49, eV);
    i_bragg_ev: I-value of the element bound in a condensed compound, for Bragg additivity
    (ICRU 37 Table 5.1, eV).
    """

    symbol: str
    Z: int
    name: str
    atomic_mass_g_mol: float
    i_elemental_ev: float
    i_bragg_ev: float


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    return list(csv.DictReader(lines))


def _load_elements() -> dict[str, Element]:
    out: dict[str, Element] = {}
    for r in _read_csv_rows(_DATA_DIR / "elements.csv"):
        out[r["symbol"]] = Element(r["symbol"], int(r["Z"]), r["name"], float(r["atomic_mass_g_mol"]),
                                   float(r["i_elemental_ev"]), float(r["i_bragg_ev"]))
    return out


#: symbol -> Element (Z, atomic mass in g/mol, I-values in eV). Sources in data/materials/elements.csv.
ELEMENTS: Mapping[str, Element] = _load_elements()
_ELEMENTS_LOWER = {s.lower(): s for s in ELEMENTS}
_ELEMENTS_BY_NAME = {e.name: e.symbol for e in ELEMENTS.values()}
_ELEMENTS_BY_NAME["aluminum"] = "Al"
_ELEMENTS_BY_NAME["sulphur"] = "S"


def element(symbol: str) -> Element:
    """The element with this symbol (``"Ca"``; case-insensitive; English names such as ``"calcium"``
    work too)."""
    key = str(symbol).strip()
    sym = key if key in ELEMENTS else (_ELEMENTS_LOWER.get(key.lower()) or _ELEMENTS_BY_NAME.get(key.lower()))
    if sym is None:
        raise KeyError(f"unknown element {symbol!r}; known symbols: {', '.join(ELEMENTS)}")
    return ELEMENTS[sym]


# ----------------------------------------------------------------------------------------------------------
# Material database
# ----------------------------------------------------------------------------------------------------------

class UnknownMaterialError(KeyError, ValueError):
    """Raised by :func:`get_material` for a name that is neither a material nor an alias."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def _normalise_key(name: str) -> str:
    """Lower case; spaces, '-', '.', '/' -> '_'; collapse repeats ("A-150", "a 150", "a_150": one key)."""
    s = str(name).strip().lower()
    for ch in " -./()":
        s = s.replace(ch, "_")
    while "__" in s:
        s = s.replace("__", "_")
    return s.strip("_")


def _parse_composition(text: str, where: str) -> dict[str, float]:
    comp: dict[str, float] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        sym, _, w = part.partition(":")
        sym = element(sym).symbol
        if sym in comp:
            raise ValueError(f"{where}: element {sym} listed twice")
        comp[sym] = float(w)
    if not comp:
        raise ValueError(f"{where}: empty composition")
    total = math.fsum(_checked_fractions(comp, where).values())
    # renormalise exactly (the file rounds to 6 decimals)
    return {k: v / total for k, v in comp.items()}


class _ReadOnlyFractions(dict):
    """The mass fractions of a database material: a dict that cannot be changed.  :func:`get_material` hands out
    the same :class:`Material` at every call (the geometry's override step tells materials apart by identity), so a
    change in place (``get_material("water").mass_fractions["H"] = 0.2``) would have changed water for the rest of
    the process (the long-lived-process audit, F1: the same pattern as the shared calibration).  Pickles and reads
    as a dict."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a database material's mass fractions are read-only (shared by every get_material call); "
                        "make a changed copy: dataclasses.replace(material, mass_fractions={...})")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return (_ReadOnlyFractions, (dict(self),))


@lru_cache(maxsize=1)
def _database() -> tuple[dict[str, Material], dict[str, str]]:
    """(name -> Material, normalised alias/name -> name)."""
    path = _DATA_DIR / "materials.csv"
    mats: dict[str, Material] = {}
    keys: dict[str, str] = {}
    for r in _read_csv_rows(path):
        name = r["name"].strip()
        where = f"{path.name}: material {name!r}"
        i_txt = (r.get("i_value_ev") or "").strip()
        mat = Material(name=name, density_g_cm3=float(r["density_g_cm3"]),
                       mass_fractions=_ReadOnlyFractions(_parse_composition(r["composition"], where)),
                       i_value_ev=float(i_txt) if i_txt else None, source=r.get("source", "").strip())
        if name in mats:
            raise ValueError(f"{where}: duplicate name")
        mats[name] = mat
        for key in [name] + [a for a in (r.get("aliases") or "").split(";") if a.strip()]:
            k = _normalise_key(key)
            if k in keys and keys[k] != name:
                raise ValueError(f"{where}: alias {key!r} already used by {keys[k]!r}")
            keys[k] = name
    return mats, keys


def list_materials() -> list[str]:
    """Names of all materials in the database (canonical names, not aliases), in file order."""
    return list(_database()[0])


def material_aliases() -> dict[str, str]:
    """Normalised alias -> canonical material name (canonical names map to themselves)."""
    return dict(_database()[1])


def get_material(name: str | Material) -> Material:
    """The database material called ``name``.

    Case-insensitive; aliases such as ``"lucite"``, ``"cortical_bone"`` or ``"G4_WATER"`` work, and ``-`` or
    spaces count as ``_``. The material is shared by every call, so its mass fractions are read-only (a changed
    copy: ``dataclasses.replace(m, mass_fractions={...})``); a :class:`Material` passed in is returned as is.
    Unknown names raise
    :class:`UnknownMaterialError` (a ``KeyError`` and a ``ValueError``) naming the closest matches and listing
    the available materials.
    """
    if isinstance(name, Material):
        return name
    mats, keys = _database()
    k = _normalise_key(name)
    if k in keys:
        return mats[keys[k]]
    close = difflib.get_close_matches(k, list(keys), n=8, cutoff=0.5)
    # canonical names, closest first, no repeats
    suggestions = list(dict.fromkeys(keys[c] for c in close))[:3]
    hint = ("did you mean " + " or ".join(repr(c) for c in suggestions) + "? ") if suggestions else ""
    raise UnknownMaterialError(f"unknown material {name!r}; {hint}available materials: {', '.join(mats)}")


__all__ = ["Material", "Element", "ELEMENTS", "element", "get_material", "list_materials", "material_aliases",
           "UnknownMaterialError"]

"""Material overrides of an RT Structure Set's ROIs, as planning systems store them, and their application to a
geometry made from a patient's CT.

A planning system computes the dose with the CT numbers of some ROIs replaced: a bolus or a couch added to the
image, dental fillings, metal implants or contrast set to a material, a phantom's body set to water.  It exports the
replacement in the RT Struct (PS3.3 C.8.8.8, RTROIObservationsSequence > ROIPhysicalPropertiesSequence).  A voxel's
material and density come from, in this order of precedence:

* ``REL_MASS_DENSITY`` with the material's elemental composition (``ROIElementalCompositionSequence``, mass
  fractions by atomic number; RayStation writes both): that composition at that density.  A composition that is
  a library material's (within the rounding of an export, :data:`LIBRARY_MATCH_L1`) is that material (its
  published I-value); any other is a material of its own, made from the fractions given as the calibration
  reader makes hu_materials.csv's rows (I-value by Bragg additivity), so a steel rod is steel, not the nearest
  tissue at steel's density (audit 2026-12-05: a tissue's stopping power per gram at 8 g/cm3 gave the rod an SPR
  45 % too high);
* ``REL_STOP_RATIO``: the stopping-power ratio to water itself, the quantity a proton planning system overrides.
  The voxel takes the composition given (else the material the ROI is named after, else water) at the density
  that gives that SPR at :data:`~mcproton._io.hu_calibration.SPR_REFERENCE_MEV` with mcproton's stopping powers in
  the run's water model and I-values (``physics``), as a ``hu_spr.csv`` calibration does
  (:func:`~mcproton._io.hu_calibration.spr_per_density`);
* ``REL_ELEC_DENSITY`` with a composition: that composition at the mass density of that electron density;
* ``REL_MASS_DENSITY`` alone: the material the ROI is named after where the density fits it and it is no gas
  (:func:`material_by_name`: ``"titanium"``, or the one library material
  a whole word of its name names: ``"Titanium rod"``, ``"Steel screw"``, ``"Gold fiducial"``,
  :func:`material_named_in`; the library holds the common implant and fiducial metals: 316L steel, CoCrMo,
  Ti-6Al-4V, titanium, gold, platinum, tantalum), else water, at that density;
* ``REL_ELEC_DENSITY`` alone: the material the ROI is named after, as for ``REL_MASS_DENSITY``, at the mass density
  of that electron density (as with a composition), else water at a mass density equal to it (water's stopping
  power per electron).

Without a composition or a material by name, water's stopping power per electron (or per gram) is assumed.  That
holds for soft tissue (within 3.5 %) and, per electron, for bone (2-5 %), but not for metal, whose I-value is 3-10
times water's: above :data:`RED_WATER_MAX` (:data:`MASS_DENSITY_WATER_MAX`) such an override is warned about, with
the overestimate of the SPR of the library's materials of that density (:func:`dense_library_materials`: titanium's
41 % at 4.5 g/cm3, gold's 99 % at 19.3) and their names.  A ``REL_STOP_RATIO`` applied as water sets the range right,
but above :data:`SPR_WATER_MAX` (no soft tissue or bone) the scattering and the dose to medium in the ROI are
water's: warned about too.  A composition summing to
about 100 is in per cent and is normalised; one summing neither to about 1 nor to about 100, or holding an element
the physics tables lack (mercury of an amalgam), is refused, naming the ROI.

Other properties (REL_ELEC_DENSITY, EFFECTIVE_Z, EFF_Z_PER_A, MEAN_EXCI_ENERGY) follow from a composition and a
density, and RayStation writes them with these.  Where no composition is applied they say something the override
does not hold (an ROI with only EFFECTIVE_Z, a composition without a density, a term mcproton does not know): each
such ROI and property is named once in a warning (:func:`apply_overrides`), since the planning system may have
computed with it.

A Monte Carlo check that ignored the overrides would recompute another patient than the planning system did, so
:func:`apply_overrides` puts them into the geometry: the EXTERNAL ROI first, the others after it (an ROI inside the
External wins, as in the planning systems), each at the geometry's voxels whose centre lies inside (the rasteriser
of :mod:`mcproton._io.rtstruct`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Sequence

import numpy as np


#: Properties (ROIPhysicalProperty defined terms, PS3.3 C.8.8.8.1) a planning system writes beside a density and a
#: composition, which follow from them (RayStation's plan03: REL_ELEC_DENSITY, EFFECTIVE_Z, EFF_Z_PER_A and
#: MEAN_EXCI_ENERGY 70.21 eV, what Bragg additivity of mcproton's I-values gives its composition, 70.21 eV): not
#: named as unapplied where a composition is applied (a REL_STOP_RATIO beside them is compared, warn_material)
DERIVED_PROPERTIES = ("REL_MASS_DENSITY", "REL_ELEC_DENSITY", "REL_STOP_RATIO", "EFFECTIVE_Z",
                      "EFFECTIVE_ATOMIC_NUMBER", "EFF_Z_PER_A", "MEAN_EXCI_ENERGY", "ELEM_FRACTION")

#: Properties not named as unapplied where an override without a composition is applied: the densities (the one
#: applied, and a mass density beside an electron density, which adds Z/A only) and an empty ELEM_FRACTION item
_DENSITIES = ("REL_MASS_DENSITY", "REL_ELEC_DENSITY", "ELEM_FRACTION")

#: Largest L1 distance (sum of |difference| of the mass fractions) at which an override's composition is taken as
#: the library material's: an export rounds the fractions (RayStation's plan03 writes Gammex 457 solid water to 3
#: decimals, L1 0.003 from the library's), while two different materials differ by more (the nearest tissues to one
#: another, ICRP muscle and blood, by 0.03).  Within it the library material keeps its published I-value (water
#: 78 eV, Bragg additivity gives 75); beyond it the composition given is used as it is.
LIBRARY_MATCH_L1 = 0.01

#: Relative electron density above which "water at the RED" (no composition) is warned about.  Water's stopping
#: power per electron gives the SPR of soft tissue within 3 % and of bone within 2-5 % (cortical bone ICRP,
#: RED 1.78 at 1.92 g/cm3, +4.6 %; mcproton's stopping powers, tests/io/test_roi_overrides.py checks these
#: figures), the densest tissue but teeth.  Above 2.0 lie dentine, enamel and metal, where it does not hold:
#: aluminium +11 %, titanium +16 %, 316L steel +20 % (their I-values 166-284 eV against water's 78 eV).
RED_WATER_MAX = 2.0

#: Mass density (g/cm3) above which "water at that density" (REL_MASS_DENSITY without a composition or a library
#: material by the ROI's name) is warned about.  Water's stopping power per gram gives the SPR of soft tissue
#: within 3.5 % (adipose -3.2 %, muscle +0.5 %) and of plastics up to 1.2 g/cm3 within 5 % (PMMA +2 %,
#: polycarbonate +4.5 %), but bone's 7-13 % too high (B-100 bone-equivalent plastic 1.45 g/cm3 +7 %, ICRP cortical
#: bone 1.92 g/cm3 +13 %), aluminium's 28 % and titanium's 41 %: the warning begins below the least dense of these.
MASS_DENSITY_WATER_MAX = 1.4

#: Chemical symbols by atomic number (index Z - 1), to name an element the physics tables do not hold
_SYMBOLS = ("H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr "
            "Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W "
            "Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr").split()


def _symbol(z: int) -> str:
    return _SYMBOLS[z - 1] if 1 <= z <= len(_SYMBOLS) else f"Z = {z}"


#: (overrides, properties not applied) of the files read before, by rtstruct.file_key and the stopping powers
#: (:func:`_stopping`: a REL_STOP_RATIO's density depends on them) (a check asks for them up to three times, and a
#: clinical structure set takes ~0.5 s to parse)
_CACHE: dict[tuple, tuple[list[dict], list[tuple[str, list[str]]]]] = {}


def _stopping(physics: Any = None) -> tuple[str, str]:
    """(water_model, ivalue_set) of a run's physics (:func:`~mcproton._io.hu_calibration.stopping_settings`, the
    default I-value set by its name), as an override ROI keeps them (its "stopping")."""
    from .._physics.stopping import DEFAULT_IVALUE_SET
    from .hu_calibration import stopping_settings

    water_model, ivalue_set = stopping_settings(physics)
    return water_model, ivalue_set or DEFAULT_IVALUE_SET


def _read_cached(struct_path: str | Path, physics: Any = None) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    from .rtstruct import file_key

    stopping = _stopping(physics)
    key = file_key(struct_path)
    key = None if key is None else (key, stopping)
    if key is not None and key in _CACHE:
        return _CACHE[key]
    found = _read_roi_overrides(struct_path, stopping)
    if key is not None:
        while len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = found
    return found


def roi_overrides(struct_path: str | Path, physics: Any = None) -> list[dict]:
    """The ROIs with a material override, External first: {"name", "number" (its ROI number, which a plan's
    ReferencedBolusSequence names), "type", "property" (the one that sets the
    density: "REL_MASS_DENSITY", "REL_STOP_RATIO" or "REL_ELEC_DENSITY", see the module's order), "value" (its
    value: a density or an SPR relative to water), "density_g_cm3" (the voxels' mass density), "composition"
    ({atomic number: mass fraction}, normalised to 1; {} where none is applied), "spr_given" (a REL_STOP_RATIO
    beside a REL_MASS_DENSITY and a composition, else None), "stopping" ((water_model, ivalue_set) of ``physics``,
    in which every SPR of the ROI is relative to water: :func:`_spr_per_g`)}.  ``physics``: the run's (the
    ``[physics]`` table of ``mcproton run``'s config, a :class:`~mcproton.settings.PhysicsSettings`, or None for the
    defaults), as :meth:`~mcproton._io.hu_calibration.HUCalibration.load_for_physics` reads a HU -> SPR table: a
    REL_STOP_RATIO's density gives that SPR in the run's water (before 2026-12-07 in ICRU 90 water whatever the
    physics: a PMMA ROI of REL_STOP_RATIO 1.165 was transported at 1.159 under pstar; ctcal audit F5).  A file read
    before (same path, modification time and size) with the same stopping powers is not parsed again; each call
    returns its own copies (callers add to them)."""
    return [dict(r, composition=dict(r["composition"])) for r in _read_cached(struct_path, physics)[0]]


def unapplied_properties(struct_path: str | Path) -> list[tuple[str, list[str]]]:
    """[(ROI name, ["PROPERTY value", ...])] of the ROI physical properties that no override applies (see the
    module): an ROI with only EFFECTIVE_Z, a composition without a density, a term mcproton does not know, or an
    effective Z beside a density without a composition."""
    return [(nm, list(p)) for nm, p in _read_cached(struct_path)[1]]


def _composition(struct_path: Any, name: str, items: list[tuple[int, float]]) -> dict[int, float]:
    """The ROI's elemental composition {Z: mass fraction}, normalised to 1: refused (ValueError) with an element the
    physics tables lack, a negative or repeated fraction, or a sum neither about 1 nor about 100 (per cent, as the
    calibration reader takes hu_materials.csv's rows)."""
    from ..materials import ELEMENTS

    known = {el.Z for el in ELEMENTS.values()}
    where = f"{struct_path}: ROI {name!r}: its elemental composition (ROIElementalCompositionSequence)"
    comp: dict[int, float] = {}
    for z, w in items:
        if z not in known:
            raise ValueError(
                f"{where} holds {_symbol(z)} (atomic number {z}), which mcproton's physics tables do not hold "
                f"(elements: {', '.join(ELEMENTS)}), so its stopping power cannot be computed: override the ROI "
                "with REL_STOP_RATIO (its stopping-power ratio to water) or a composition of these elements, or "
                'leave the overrides out (plan.struct_overrides = "ignore", --struct-overrides ignore) knowing '
                "that the CT's numbers are used there")
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"{where} gives {_symbol(z)} the mass fraction {w}; fractions are >= 0: the structure "
                             "set is damaged, export it again")
        if z in comp:
            raise ValueError(f"{where} lists {_symbol(z)} twice: the structure set is damaged, export it again")
        comp[z] = w
    s = math.fsum(comp.values())
    if not (0.95 <= s <= 1.05 or 95 <= s <= 105):
        raise ValueError(f"{where}: the mass fractions sum to {s:g}; they must sum to 1 (or 100 %): the structure "
                         "set is damaged, export it again")
    return {z: w / s for z, w in comp.items() if w > 0}


def _by_z(material: Any) -> dict[int, float]:
    """A material's mass fractions by atomic number."""
    from ..materials import ELEMENTS

    out: dict[int, float] = {}
    for sym, w in material.mass_fractions.items():
        out[ELEMENTS[sym].Z] = out.get(ELEMENTS[sym].Z, 0.0) + w
    return out


def _z_over_a(comp: dict[int, float]) -> float:
    """Electrons per nucleon mass (mol/g) of a composition {Z: mass fraction}."""
    from ..materials import ELEMENTS

    a = {el.Z: el.atomic_mass_g_mol for el in ELEMENTS.values()}
    return math.fsum(w * z / a[z] for z, w in comp.items())


def _read_roi_overrides(struct_path: str | Path,
                        stopping: tuple[str, str]) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    from .dicom_common import read_dicom_header
    from .rtstruct import read_rtstruct

    # the names read_rtstruct gives (a duplicate name made unique, an empty one "ROI_<n>"): the masks are looked up
    # by them, so the ROI's own number must lead to its own contours, never to another ROI of the same name
    names = {num: nm for nm, num in read_rtstruct(struct_path).roi_numbers.items()}
    # read_rtstruct read it (and refused it if not DICOM or damaged); its observations only, as every reader reads
    # a file (a raw data set too), the contours not parsed again
    ds = read_dicom_header(struct_path, specific_tags=["RTROIObservationsSequence"])
    out, unapplied = [], []
    for o in ds.get("RTROIObservationsSequence", []) or []:
        name = names.get(int(o.ReferencedROINumber), "?")
        given: dict[str, Any] = {}   # property -> its value as written (the first of a repeated one)
        items: list[tuple[int, float]] = []
        for pp in o.get("ROIPhysicalPropertiesSequence", []) or []:
            prop = str(pp.get("ROIPhysicalProperty", "") or "").strip().upper()
            given.setdefault(prop, pp.get("ROIPhysicalPropertyValue"))
            for el in pp.get("ROIElementalCompositionSequence", []) or []:
                items.append((int(el.ROIElementalCompositionAtomicNumber),
                              float(el.ROIElementalCompositionAtomicMassFraction)))

        def value(prop: str) -> float:
            v = given[prop]
            try:
                x = float(v)
            except (TypeError, ValueError):
                x = math.nan
            if not (math.isfinite(x) and 0 <= x <= 25):
                what = "a stopping-power ratio to water" if prop == "REL_STOP_RATIO" else "a density relative to water"
                raise ValueError(f"{struct_path}: ROI {name!r}: override {prop} {v} is not {what} (0-25); the "
                                 "structure set is damaged, export it again")
            return x

        prop = ("REL_MASS_DENSITY" if "REL_MASS_DENSITY" in given and items else
                "REL_STOP_RATIO" if "REL_STOP_RATIO" in given else
                next((p for p in ("REL_ELEC_DENSITY", "REL_MASS_DENSITY") if p in given), None))
        if prop is None:   # nothing that sets a density: every property given is one not applied
            if given:
                unapplied.append((name, [_said(p, v, items) for p, v in given.items()]))
            continue
        v = value(prop)
        comp = _composition(struct_path, name, items) if items else {}
        r = {"name": name, "number": int(o.ReferencedROINumber), "type": str(o.get("RTROIInterpretedType", "") or ""),
             "property": prop, "value": v,
             "density_g_cm3": v, "composition": comp, "spr_given": None, "stopping": stopping}
        if prop == "REL_STOP_RATIO":
            r["density_g_cm3"] = v / _spr_per_g(nearest_material(r)[0], r)
        elif prop == "REL_ELEC_DENSITY" and comp:
            from ..materials import get_material

            r["density_g_cm3"] = v * _z_over_a(_by_z(get_material("water"))) / _z_over_a(comp)
        elif prop == "REL_ELEC_DENSITY":   # the material of the ROI's name at the mass density of that RED, else water
            r["density_g_cm3"] = _density_as(r, nearest_material(r)[0])
        elif prop == "REL_MASS_DENSITY" and comp and "REL_STOP_RATIO" in given:
            r["spr_given"] = value("REL_STOP_RATIO")
        if prop == "REL_STOP_RATIO" and "REL_MASS_DENSITY" in given:   # not applied: no composition (warn_material)
            r["mass_density_given"] = value("REL_MASS_DENSITY")
        # what the ROI says beyond the material applied: with a composition, terms mcproton does not know; without
        # one, also what tells the material apart from water (EFFECTIVE_Z, MEAN_EXCI_ENERGY)
        known = DERIVED_PROPERTIES if comp else (prop, *_DENSITIES)
        left = [_said(p, x, items) for p, x in given.items() if p not in known]
        if left:
            unapplied.append((name, left))
        out.append(r)
    out.sort(key=lambda r: r["type"].upper() != "EXTERNAL")
    return out, unapplied


def _said(prop: str, v: Any, items: list[tuple[int, float]]) -> str:
    """A property as a warning names it: "EFFECTIVE_Z 22", or ELEM_FRACTION with its composition."""
    if prop == "ELEM_FRACTION" and items:
        return "ELEM_FRACTION (" + ", ".join(f"{_symbol(z)} {w:g}" for z, w in items) + ") without a density"
    if v in (None, ""):
        return prop or "(an empty ROIPhysicalProperty)"
    try:
        v = f"{float(v):g}"
    except (TypeError, ValueError):
        pass
    return f"{prop or '(an empty ROIPhysicalProperty)'} {v}"


def nearest_material(roi: dict):
    """The material of an override ROI (:func:`roi_overrides`) and how it was chosen: (material, words).

    With a composition: the library material of that composition (L1 distance of the mass fractions at most
    :data:`LIBRARY_MATCH_L1`: the same material, rounded by the export), else a material made from the composition
    given (named ``rtstruct:<ROI>``, I-value by Bragg additivity, as hu_materials.csv's rows); its density is the
    ROI's.  Without one: the library material the ROI is named after where the density it would have as that
    material fits it and it is no gas (:func:`material_by_name`), else water (for REL_ELEC_DENSITY, water at a mass
    density equal to the RED; a named material at the mass density of that RED: metal audit 2026-12-06, F3, "Titanium
    rod" with REL_ELEC_DENSITY 3.74 was water at 3.74 g/cm3, SPR 16 % too high, titanium at 4.52 g/cm3 now)."""
    from ..materials import ELEMENTS, Material, get_material, list_materials

    comp = roi["composition"]
    if comp:
        total = math.fsum(comp.values())   # (normalised by the reader already; a dict made by hand may not be)
        comp = {z: w / total for z, w in comp.items()}
        best, best_d = None, math.inf
        for name in list_materials():
            if name == "air":
                continue
            m = get_material(name)
            mz = _by_z(m)
            d = math.fsum(abs(mz.get(k, 0.0) - comp.get(k, 0.0)) for k in set(mz) | set(comp))
            if d < best_d:
                best, best_d = m, d
        if best is not None and best_d <= LIBRARY_MATCH_L1:
            return best, f"its composition, the library's (L1 {best_d:.3f})"
        from .._physics.stopping import mean_excitation_energy_ev

        sym = {el.Z: s for s, el in ELEMENTS.items()}
        m = Material(f"rtstruct:{roi['name']}", float(roi.get("density_g_cm3", 1.0)),
                     {sym[z]: w for z, w in sorted(comp.items())}, None,
                     f"ROI {roi['name']!r}'s ROIElementalCompositionSequence (RT Struct)")
        top = ", ".join(f"{sym[z]} {w:.3g}" for z, w in sorted(comp.items(), key=lambda t: -t[1])[:4])
        # the nearest library material is named only where it is alike (L1 <= 0.5: a tissue or plastic export with
        # other fractions); above, as a metal against tissues (L1 ~2), it would only raise the question why it
        nearest = (f"; nearest library material {best.name} at L1 {best_d:.3f}" if best is not None and best_d <= 0.5
                   else "")
        return m, (f"the composition given ({top}{', ...' if len(comp) > 4 else ''}; I-value "
                   f"{mean_excitation_energy_ev(m):.0f} eV by Bragg additivity{nearest})")
    named, word, refused = material_by_name(roi)
    if named is not None:
        if word is None:
            return named, "by name"
        return named, f"by name: the word {word!r} of the ROI's name, no composition given"
    water = ("water at the relative electron density" if roi.get("property") == "REL_ELEC_DENSITY" else "water")
    if refused:
        return get_material("water"), f"{water} (no composition given; {refused})"
    return get_material("water"), f"{water} (no composition given)"


#: Factor of a library material's nominal density within which an override's density (REL_MASS_DENSITY, or the
#: density a REL_STOP_RATIO gives that material) must lie for the ROI to take the material its name names
#: (:func:`material_by_name`).  It spans the densities a thing so named has in a patient or a phantom: bone from
#: trabecular 1.18 (ICRU 46) to cortical 1.92 g/cm3 about the library's 1.85 (1.16-2.96), lung 0.17-0.39 about 0.26
#: (0.163-0.416), graphites 1.6-2.26 about 1.7, titanium and its alloys 4.4-4.5 about 4.54 (2.84-7.3).  (It was
#: 1.5, whose 1.23 and 0.173 g/cm3 refused trabecular bone and the lightest lung: review C 2026-12-06, F2.)  It
#: refuses the overrides that give an ROI named after what it covers another material (review A 2026-12-06, F1):
#: "Titanium artefact" set to water (1.0 g/cm3, 0.22 of titanium's density) became titanium at 1.0 g/cm3 (SPR
#: 0.71), "Lung_L" set to water lung.  A tissue or plastic of about 1 g/cm3 named (adipose, muscle, PMMA) is taken:
#: at 1.0 g/cm3 its stopping power per gram differs from water's by at most 3.5 %, that of the material named.
NAME_DENSITY_FACTOR = 1.6

#: Nominal density (g/cm3) below which a library material is a gas (air, 0.0012): never taken from an ROI's name.
#: An ROI named after air that a structure set gives a density is a cavity the planning system filled with water
#: or tissue (a rectal balloon, bowel gas, contrast, a sinus): "Rectal air" set to 1.0 g/cm3 became air at 1.0
#: g/cm3, SPR 0.888, and the range behind a 32 mm cavity 4 mm too deep (review A 2026-12-06, F1).
NAME_GAS_MAX_G_CM3 = 0.01


def material_by_name(roi: dict) -> tuple[Any, str | None, str | None]:
    """The library material an override ROI without a composition takes from its name (:func:`nearest_material`):
    (material, word, None), ``word`` None where the whole name is the material's name or alias ("titanium", "Ti"),
    else the word of the name that names it (:func:`material_named_in`); (None, None, why not) where the name names
    one but it is not taken: a gas (:data:`NAME_GAS_MAX_G_CM3`), or a density given that is not within a factor
    :data:`NAME_DENSITY_FACTOR` of the material's nominal density (for REL_STOP_RATIO, the density that gives that
    SPR with the material's stopping power; for REL_ELEC_DENSITY, the mass density of that RED with its electrons per
    gram: :func:`_density_as`); (None, None, None) where it names none (or several)."""
    from ..materials import UnknownMaterialError, get_material

    try:
        named, word = get_material(str(roi["name"]).lower()), None
    except UnknownMaterialError:
        named, word, _ = material_named_in(roi["name"])
    if named is None:
        return None, None, None
    said = f"the word {word!r} of its name" if word is not None else "its name"
    if named.density_g_cm3 < NAME_GAS_MAX_G_CM3:
        return None, None, (f"{said} names {named.name}, a gas, which is never taken from a name: an ROI given a "
                            "density is a cavity filled with something else (a rectal balloon, bowel gas, contrast)")
    rho = _density_as(roi, named)
    if not named.density_g_cm3 / NAME_DENSITY_FACTOR <= rho <= named.density_g_cm3 * NAME_DENSITY_FACTOR:
        return None, None, (f"{said} names {named.name}, not taken: {rho:.3g} g/cm3 is not within a factor "
                            f"{NAME_DENSITY_FACTOR:g} of {named.name}'s {named.density_g_cm3:.3g} g/cm3, so the name "
                            "says what the ROI covers (an artefact, a cavity), not what it was set to")
    return named, word, None


def _density_as(roi: dict, material: Any) -> float:
    """The density an override ROI without a composition would have as ``material``: its REL_MASS_DENSITY, the
    density that gives its REL_STOP_RATIO with the material's stopping power per gram, or the mass density of its
    REL_ELEC_DENSITY with the material's electrons per gram (water's: the RED itself)."""
    from ..materials import get_material

    v = float(roi.get("value", roi["density_g_cm3"]))
    if roi.get("property") == "REL_STOP_RATIO":
        return v / _spr_per_g(material, roi)
    water = get_material("water")
    if roi.get("property") == "REL_ELEC_DENSITY" and material is not water:
        return v * _z_over_a(_by_z(water)) / _z_over_a(_by_z(material))
    return v


#: The shortest word of an ROI's name that :func:`material_named_in` looks up as a library material: shorter words
#: are element symbols and abbreviations ("C" is graphite, "Ti" titanium, but "PT", "CT", "L" are not meant so);
#: only the whole name may be one ("Ti", :func:`nearest_material`).
NAME_WORD_MIN_LETTERS = 3


def material_named_in(roi_name: str) -> tuple[Any, str | None, list[str]]:
    """The library material named by a whole word of ``roi_name`` (words: runs of letters and digits, at least
    :data:`NAME_WORD_MIN_LETTERS` long; a material's name or alias, ``titanium`` in "Titanium rod", ``lung`` in
    "Lung_L"), where exactly one material is named: (material, word, [its name]); where none or several are,
    (None, None, [the materials named]).  An override without a composition takes it (highZ audit 2026-12-06, F4:
    "Titanium rod" with REL_MASS_DENSITY 4.54 became water at 4.54 g/cm3, SPR 4.54 against titanium's 3.23, the
    range behind a 4 mm plate 5.5 mm short); two materials named ("Titanium in PMMA") are not guessed between."""
    import re

    from ..materials import UnknownMaterialError, get_material

    found: dict[str, tuple[Any, str]] = {}
    for w in re.findall(r"[a-z0-9]+", str(roi_name).lower()):
        if len(w) < NAME_WORD_MIN_LETTERS or w.isdigit():
            continue
        try:
            m = get_material(w)
        except UnknownMaterialError:
            continue
        found.setdefault(m.name, (m, w))
    if len(found) == 1:
        (m, w), = found.values()
        return m, w, [m.name]
    return None, None, sorted(found)


def _writable_arrays(geometry: Any) -> tuple[np.ndarray, np.ndarray]:
    """The geometry's material index (uint8) and density (float32) arrays, to be changed in place: on a CT's own
    voxels they are 1 + 4 bytes per voxel (262 MB for 512 x 512 x 200), which a copy would double.  Copied once
    (and the copies put into the geometry) only where they cannot be written as they are: read-only, of another
    type, not C-contiguous, or a view of an array that may be another's."""
    def own(a: Any, dtype: type) -> np.ndarray:
        if (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
                and a.flags.owndata):
            return a
        return np.array(a, dtype=dtype, order="C")

    geometry.material_index_zyx = own(geometry.material_index_zyx, np.uint8)
    geometry.density_g_cm3_zyx = own(geometry.density_g_cm3_zyx, np.float32)
    return geometry.material_index_zyx, geometry.density_g_cm3_zyx


#: number of bits set in each byte value (the voxels of a mask packed 8 to a byte by np.packbits)
_BITS_IN_BYTE = np.array([bin(v).count("1") for v in range(256)], np.uint8)


def spr_of(roi: dict, material: Any) -> float:
    """The stopping-power ratio to water that an override ROI's voxels get at
    :data:`~mcproton._io.hu_calibration.SPR_REFERENCE_MEV` (their density x the material's SPR per density, in the
    ROI's stopping powers: :func:`_spr_per_g`)."""
    return float(roi["density_g_cm3"]) * _spr_per_g(material, roi)


def override_note(roi: dict, material: Any, why: str, n: int, unit: str = "voxels") -> str:
    """The note that says what an override ROI's ``n`` voxels (``unit``) were given."""
    from .hu_calibration import SPR_REFERENCE_MEV

    how = {"REL_STOP_RATIO": "the density that gives this stopping-power ratio; ",
           "REL_ELEC_DENSITY": ("the mass density of that electron density; "
                                if roi["composition"] or material.name != "water" else "")
           }.get(roi["property"], "")
    given = ("" if roi.get("spr_given") is None else f"; the structure set's REL_STOP_RATIO {roi['spr_given']:g}")
    value = roi.get("value", roi["density_g_cm3"])
    stopping = tuple(roi.get("stopping") or _stopping(None))
    water = ("" if stopping == _stopping(None) else
             f" relative to the run's water (water_model {stopping[0]}, ivalue_set {stopping[1]})")
    return (f"ROI {roi['name']!r} ({roi['type'] or 'no type'}): {roi['property']} {value:g} -> {material.name} at "
            f"{roi['density_g_cm3']:g} g/cm3 ({how}{why}; stopping-power ratio "
            f"{spr_of(roi, material):.3f} at {SPR_REFERENCE_MEV:g} MeV{water}{given}), {n} {unit}"
            + ("" if n else " (no voxel: contours outside the grid, or none)"))


#: Relative difference between a REL_STOP_RATIO the structure set gives beside a density and a composition and the
#: SPR mcproton's stopping powers give that material, above which it is warned about: I-values and stopping-power
#: models of planning systems differ by up to ~1.5 % in tissue (ICRU 49 against ICRU 90 water, Bragg additivity
#: rules), so a larger difference says that the two properties describe different materials
SPR_GIVEN_TOLERANCE = 0.02


def warn_material(struct_path: Any, roi: dict, material: Any) -> None:
    """Warn (McprotonRuntimeWarning: kept in the run's summary and the check's report) where an applied override
    assumes water's stopping power per electron or per gram above the tissue range (:data:`RED_WATER_MAX`,
    :data:`MASS_DENSITY_WATER_MAX`), or water's scattering at a stopping-power ratio no tissue has
    (:data:`SPR_WATER_MAX`), or where its composition's SPR differs from the REL_STOP_RATIO given; say (McprotonWarning)
    which library material a word of the ROI's name made it, or why the name was not taken."""
    from .errors import McprotonRuntimeWarning, McprotonWarning, warn
    from .hu_calibration import SPR_REFERENCE_MEV

    spr = spr_of(roi, material)
    prop, v = roi["property"], float(roi.get("value", roi["density_g_cm3"]))
    where = f"{struct_path}: ROI {roi['name']!r}"
    water = material.name == "water" and not roi["composition"]
    if water and prop == "REL_ELEC_DENSITY" and v > RED_WATER_MAX or (
            water and prop == "REL_MASS_DENSITY" and v > MASS_DENSITY_WATER_MAX):
        alike = dense_library_materials(roi)
        if prop == "REL_ELEC_DENSITY":
            per, beyond = "electron", (f"above a relative electron density of {RED_WATER_MAX:g} (denser than "
                                       "cortical bone) lie teeth and metal")
            at = f"at a relative electron density of {v:g}"
        else:
            per, beyond = "gram", f"above {MASS_DENSITY_WATER_MAX:g} g/cm3 lie bone, teeth and metal"
            at = f"at {v:g} g/cm3"
        # by how much, for the library's materials of this density (metal audit 2026-12-06, F3: a fixed "bone's by
        # 7-13 %, titanium's by 41 %" was said of gold at 19.3 g/cm3 too, whose SPR water overstates by 99 %)
        over = (f" ({at}: " + ", ".join(f"{m.name}'s by {100 * (spr / (rho * _spr_per_g(m, roi)) - 1):.0f} %"
                                        for m, rho in alike[:4]) + ")") if alike else ""
        name_hint = ""
        if material_by_name(roi)[2] is None:   # (a name refused: said below)
            name_hint = _names_hint(roi, [m for m, _ in alike[:4]])
        warn(f"{where}: {prop} {v:g} without an elemental composition is taken as water at {roi['density_g_cm3']:g} "
             f"g/cm3, i.e. water's stopping power per {per}: stopping-power ratio {spr:.3g} at "
             f"{SPR_REFERENCE_MEV:g} MeV.  That holds for soft tissue, but {beyond}, whose stopping power per {per} "
             f"is lower (their I-value is higher), so their SPR is overestimated{over} and the dose behind the ROI "
             "stops short; give the ROI its elemental composition (ROIElementalCompositionSequence with "
             f"REL_MASS_DENSITY) or its REL_STOP_RATIO in the planning system's export{name_hint}",
             McprotonRuntimeWarning)
    if not roi["composition"]:
        named, word, refused = material_by_name(roi)
        as_ = (f" ({material.name}'s mass density at that electron density)" if prop == "REL_ELEC_DENSITY" else "")
        if named is material and word is not None:
            warn(f"{where}: {prop} {v:g} without an elemental composition: the ROI's name holds the word {word!r}, "
                 f"the library material {material.name}, and only that one, and {roi['density_g_cm3']:.3g} g/cm3"
                 f"{as_} lies within a factor {NAME_DENSITY_FACTOR:g} of {material.name}'s "
                 f"{material.density_g_cm3:.3g} g/cm3, so the ROI is {material.name} at {roi['density_g_cm3']:g} g/cm3 "
                 f"(stopping-power ratio {spr:.3f} at {SPR_REFERENCE_MEV:g} MeV); if it is another material, give "
                 "its elemental composition (ROIElementalCompositionSequence)", McprotonWarning)
        elif refused and material.name == "water":
            warn(f"{where}: {prop} {v:g} without an elemental composition: {refused}; the ROI is water at "
                 f"{roi['density_g_cm3']:.3g} g/cm3 (stopping-power ratio {spr:.3f} at {SPR_REFERENCE_MEV:g} MeV), "
                 "as a planning system computes a density without a composition; if it is another material, give "
                 "its elemental composition (ROIElementalCompositionSequence)", McprotonWarning)
    rho_given = roi.get("mass_density_given")
    if rho_given and not roi["composition"] and abs(roi["density_g_cm3"] / rho_given - 1) > SPR_GIVEN_TOLERANCE:
        _warn_mass_density_unused(where, roi, material, spr, rho_given)
    elif water and prop == "REL_STOP_RATIO" and v > SPR_WATER_MAX:   # (the one above says it where it applies)
        _warn_spr_as_water(where, roi, v)
    given = roi.get("spr_given")
    if given is not None and given > 0 and abs(spr / given - 1) > SPR_GIVEN_TOLERANCE:
        d = 100 * (spr / given - 1)
        warn(f"{where}: the material of its REL_MASS_DENSITY {v:g} and elemental composition ({material.name}, "
             f"applied) has the stopping-power ratio {spr:.3f} at {SPR_REFERENCE_MEV:g} MeV, {abs(d):.1f} % "
             f"{'below' if d < 0 else 'above'} the REL_STOP_RATIO {given:g} the ROI also gives: the two describe "
             "different materials; check the override in the planning system", McprotonRuntimeWarning)


def _spr_per_g(material: Any, roi: dict) -> float:
    """The material's stopping-power ratio to water per g/cm3 at SPR_REFERENCE_MEV, with the stopping powers (water
    model and I-values) of the run the override ROI ``roi`` was read for (its "stopping": :func:`roi_overrides`;
    the defaults for a dict made without it): every SPR of an override goes through here."""
    from .hu_calibration import SPR_REFERENCE_MEV, spr_per_density

    water_model, ivalue_set = roi.get("stopping") or _stopping(None)
    return spr_per_density(material, SPR_REFERENCE_MEV, water_model, ivalue_set)


def dense_library_materials(roi: dict) -> list[tuple[Any, float]]:
    """The library materials denser than tissue (nominal density above :data:`MASS_DENSITY_WATER_MAX`: bone, teeth,
    metal) that an override ROI without a composition could be, as the name rule would take them: no gas, and the
    density it would have as that material (:func:`_density_as`: its REL_MASS_DENSITY, or the mass density of its
    REL_ELEC_DENSITY or of its REL_STOP_RATIO as that material) within :data:`NAME_DENSITY_FACTOR` of the material's
    nominal one.  [(material, that density)], the nearest to its nominal density first: what a warning of water at
    such a density compares with ("Screw" at 7.9 g/cm3: stainless_steel_316l and cocrmo, "Fiducial" at 19.3:
    gold, platinum and tantalum), and which names it suggests."""
    from ..materials import get_material, list_materials

    out = []
    for name in list_materials():
        m = get_material(name)
        if m.density_g_cm3 <= MASS_DENSITY_WATER_MAX or not m.mass_fractions:
            continue
        rho = _density_as(roi, m)
        if m.density_g_cm3 / NAME_DENSITY_FACTOR <= rho <= m.density_g_cm3 * NAME_DENSITY_FACTOR:
            out.append((m, rho))
    return sorted(out, key=lambda t: abs(math.log(t[1] / t[0].density_g_cm3)))


def _name_word(material: Any) -> str | None:
    """A word that names ``material`` in an ROI's name (:func:`material_named_in`): its name, else its first alias,
    that is one word of at least NAME_WORD_MIN_LETTERS letters and digits; None where none is (the material is then
    named only by a whole ROI name that is its name or an alias)."""
    import re

    from ..materials import material_aliases

    for key, name in material_aliases().items():   # (its name first, then its aliases, in the file's order)
        if name == material.name and re.fullmatch(r"[a-z0-9]+", key) and len(key) >= NAME_WORD_MIN_LETTERS \
                and not key.isdigit():
            return key
    return None


def _names_hint(roi: dict, alike: Sequence[Any]) -> str:
    """What the warning of water at a density above tissue's adds about the ROI's name (it named no library material
    that was taken): the materials it names where it names several; else the library materials of this density
    (:func:`dense_library_materials`), each with a word that names it, and those of them that a word of the name
    misspells (:func:`_misspelt`).  Never a tissue for a metal's density: metal audit 2026-12-06, F3, "Steel screw" at
    7.9 g/cm3 was told to name the ROI after a library material (the library held no steel) and asked "did you mean
    'muscle_striated_icru'" (get_material's suggestion for the whole name)."""
    _, _, several = material_named_in(roi["name"])
    if len(several) > 1:
        return (", or name the ROI after one library material; its name names "
                f"{' and '.join(several)}, and none is chosen between them")
    if not alike:
        return ""
    said = ", ".join(f"{m.name} ({w!r})" if (w := _name_word(m)) else f"{m.name} (as the whole name)" for m in alike)
    hint = (", or name the ROI after the library material it is (its name or an alias, as the whole name or as a "
            f"whole word of it: 'Steel screw', 'Titanium rod'); of this density the library holds {said}")
    near = _misspelt(roi["name"], alike)
    return hint + (f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else "")


#: Similarity (difflib's ratio) from which a word of an ROI's name counts as a misspelt name or alias of a library
#: material (:func:`_misspelt`): "Stel" for steel (0.89), "Titanum" for titanium (0.93), not "Rod" for gold (0.57)
MISSPELT_MIN_RATIO = 0.75


def _misspelt(roi_name: str, alike: Sequence[Any]) -> list[str]:
    """The materials of ``alike`` whose name or alias the ROI's name, or a word of it (NAME_WORD_MIN_LETTERS letters
    or more), misspells (difflib ratio at least MISSPELT_MIN_RATIO)."""
    import difflib
    import re

    from ..materials import _normalise_key, material_aliases

    names = {m.name for m in alike}
    keys = {k: n for k, n in material_aliases().items() if n in names}
    words = [_normalise_key(roi_name)] + [w for w in re.findall(r"[a-z0-9]+", str(roi_name).lower())
                                          if len(w) >= NAME_WORD_MIN_LETTERS and not w.isdigit()]
    out = [keys[k] for w in words for k in difflib.get_close_matches(w, list(keys), n=3, cutoff=MISSPELT_MIN_RATIO)]
    return list(dict.fromkeys(out))


#: Stopping-power ratio above which an override applied as water (REL_STOP_RATIO without a composition or a library
#: material by the ROI's name) is warned about: the range behind it follows the SPR, but its multiple scattering and
#: the dose to medium in it are water's at a density no tissue has.  The densest bone's SPR is 1.7 (the library's
#: compact and cortical bones at 1.85-1.92 g/cm3: 1.67-1.73 with mcproton's stopping powers, tests/io/
#: test_roi_overrides.py); above 2.0 lie tooth enamel and metal (aluminium 2.1, titanium 3.2, 316L steel 5.6, gold
#: 9.7): metal audit 2026-12-06, F4 ("Rod" with REL_STOP_RATIO 3.23, titanium's, was water at 3.23 g/cm3 without a
#: word: the lateral spread of a pencil beam behind the 10 mm rod 5 % narrower than behind titanium).
SPR_WATER_MAX = 2.0


def _warn_spr_as_water(where: str, roi: dict, v: float) -> None:
    """:func:`warn_material`: REL_STOP_RATIO above SPR_WATER_MAX applied as water (no composition, no material by
    name): the range is right, the scattering and dose to medium in the ROI are water's."""
    from .errors import McprotonRuntimeWarning, warn

    alike = dense_library_materials(roi)
    rho = roi["density_g_cm3"]
    like = ("; at this stopping-power ratio the library's " + ", ".join(f"{m.name} would be {r:.3g} g/cm3"
                                                                       for m, r in alike[:4]) if alike else "")
    warn(f"{where}: REL_STOP_RATIO {v:g} without an elemental composition is taken as water at {rho:.3g} g/cm3, the "
         "density that gives this stopping-power ratio.  The range behind the ROI follows the stopping-power ratio, "
         f"but above {SPR_WATER_MAX:g} lie no soft tissue or bone, only tooth enamel and metal: the multiple "
         f"scattering and the dose to medium in the ROI are those of water at {rho:.3g} g/cm3, not of the denser "
         "material of higher Z (its scattering stronger, the lateral spread behind it wider, its dose to medium "
         f"lower){like}; give the ROI its elemental composition (ROIElementalCompositionSequence with "
         "REL_MASS_DENSITY), or name it after the library material it is (its name or an alias, as the whole name or "
         "as a whole word of it: 'Titanium rod')", McprotonRuntimeWarning)


def _warn_mass_density_unused(where: str, roi: dict, material: Any, spr: float, rho_given: float) -> None:
    """:func:`warn_material`: REL_STOP_RATIO and REL_MASS_DENSITY without a composition.  The SPR sets the density
    (of the material named, else water), so the mass density given is not used, and where the two disagree (SPR per
    g/cm3 not the material's) the ROI is not that material: the range behind it is right, but the multiple
    scattering and the dose to medium in it are the material's at another density (highZ audit 2026-12-06, F3: a
    titanium rod, 4.54 g/cm3 and SPR 3.23, as water at 3.23 g/cm3: scattering angle 0.53 of titanium's, dose to
    medium +40 %, D_w/D_m 1.00 against 1.41).  The library materials whose SPR per g/cm3 is the ROI's and whose
    density the mass density given fits (within NAME_DENSITY_FACTOR, as the name rule: 316L steel's SPR per gram is
    titanium's within 2 %, its density not) are named, not taken: two properties do not make a composition."""
    from .errors import McprotonRuntimeWarning, warn
    from ..materials import get_material, list_materials

    ratio = float(roi["value"]) / rho_given
    alike = [n for n in list_materials() if n != "air"
             and abs(_spr_per_g(get_material(n), roi) / ratio - 1) <= SPR_GIVEN_TOLERANCE
             and 1 / NAME_DENSITY_FACTOR <= rho_given / get_material(n).density_g_cm3 <= NAME_DENSITY_FACTOR]
    like = (f"; of the library materials {', '.join(alike)} {'has' if len(alike) == 1 else 'have'} that stopping "
            f"power per gram (within {100 * SPR_GIVEN_TOLERANCE:g} %)" if alike else "")
    warn(f"{where}: REL_STOP_RATIO {roi['value']:g} and REL_MASS_DENSITY {rho_given:g} without an elemental "
         f"composition: applied as {material.name} at {roi['density_g_cm3']:.3g} g/cm3, the density that gives this "
         f"stopping-power ratio, so the REL_MASS_DENSITY {rho_given:g} is not used.  The range behind the ROI "
         f"follows the stopping-power ratio, but the multiple scattering and the dose to medium in it are "
         f"{material.name}'s at {roi['density_g_cm3']:.3g} g/cm3, not those of a material of {rho_given:g} g/cm3 "
         f"whose stopping power per gram is {ratio:.3f} of water's{like}; give the ROI its elemental composition "
         "(ROIElementalCompositionSequence with REL_MASS_DENSITY), or name it after the library material (a whole "
         "word of its name: 'Titanium rod')", McprotonRuntimeWarning)


def warn_unapplied(struct_path: Any) -> None:
    """One warning naming every ROI physical property that no override applies (:func:`unapplied_properties`)."""
    left = unapplied_properties(struct_path)
    if not left:
        return
    from .errors import McprotonRuntimeWarning, warn

    warn(f"{struct_path}: ROI physical properties (ROIPhysicalPropertiesSequence) that mcproton does not apply: "
         + "; ".join(f"ROI {nm!r}: {', '.join(p)}" for nm, p in left)
         + ".  A voxel's material is set by REL_MASS_DENSITY (with its ROIElementalCompositionSequence), "
         "REL_STOP_RATIO or REL_ELEC_DENSITY only, so these ROIs keep the CT's numbers (or another override's "
         "material); if the planning system computed with these properties, the dose differs there: export the "
         "override as REL_STOP_RATIO or as REL_MASS_DENSITY with the composition", McprotonRuntimeWarning)


def apply_overrides(geometry: Any, struct_path: str | Path, struct: Any = None, physics: Any = None) -> list[str]:
    """:func:`_apply_overrides` (``physics``: the run's, in whose water a REL_STOP_RATIO is taken,
    :func:`roi_overrides`; None: the defaults), and what was warned about on the way added to the geometry's
    ``made_with_warnings``, which :func:`mcproton.simulate` keeps in its result's provenance warnings, as ``mcproton
    run`` keeps them in its summary (review A 2026-12-06, F6: "water at 4.54 g/cm3 ... SPR overestimated" reached
    the user's console only).  The CT-coverage warnings
    :meth:`~mcproton._io.hu_calibration.HUCalibration.to_geometry` kept there are judged again on what the overrides
    left (:func:`~mcproton._io.hu_calibration.rejudge_coverage`: an overridden rod is not metal given bone; review A,
    F2)."""
    from .errors import recording_warnings
    from .hu_calibration import rejudge_coverage

    from ..geometry import calibration_intact, calibration_stamped

    intact = calibration_intact(geometry)   # the calibration's arrays before: a recorded change keeps them its own
    with recording_warnings() as said:
        notes = _apply_overrides(geometry, struct_path, struct, physics)
    geometry.calibration = calibration_stamped(getattr(geometry, "calibration", None), geometry, intact)
    if any(r.get("voxels") for r in geometry.struct_overrides or []):
        rejudge_coverage(geometry)
    kept = list(getattr(geometry, "made_with_warnings", None) or [])
    geometry.made_with_warnings = list(dict.fromkeys(kept + said))
    return notes


def _apply_overrides(geometry: Any, struct_path: str | Path, struct: Any = None, physics: Any = None) -> list[str]:
    """Put the structure set's material overrides (:func:`roi_overrides`) into ``geometry`` (in place): each
    override ROI's voxels take its material (:func:`nearest_material`) at its density, the External first.
    ``struct``: the structure set already read (:func:`~mcproton._io.rtstruct.read_rtstruct`), else it is read.
    Returns one note per ROI (what was set, and on how many voxels); [] when no ROI has an override.  The same,
    as records a run's outputs keep (:func:`override_record`, the note among them), go to
    ``geometry.struct_overrides`` (``[]`` when none).

    The geometry's own arrays are written (:func:`_writable_arrays`), and the ROIs' masks made one at a time and
    not kept (:func:`~mcproton._io.rtstruct.mask_unkept`): on a CT's own voxels the step holds the geometry, one
    mask and one bit per voxel for each override ROI that a later one may overlap (for the notes), whatever the
    number of ROIs (a 512 x 512 x 200 CT with five override ROIs: the geometry step peaked at 1.31 GB, now at the
    0.63-0.67 GB of its full-resolution geometry with no ROI at all; BENCHMARKS.md)."""
    from .rtstruct import mask_unkept, read_rtstruct

    warn_unapplied(struct_path)
    rois = roi_overrides(struct_path, physics)
    geometry.struct_overrides = []
    if not rois:
        return []
    s = struct if struct is not None else read_rtstruct(struct_path)
    mats = list(geometry.materials)
    chosen = [nearest_material(r) for r in rois]
    new = {id(m) for m, _ in chosen if not any(x is m for x in mats)}
    if len(mats) + len(new) <= 255:
        mi, rho = _writable_arrays(geometry)
    else:   # the 255 materials may be exceeded: refused below with the geometry as it was (copies written)
        mi, rho = np.array(geometry.material_index_zyx), np.array(geometry.density_g_cm3_zyx)
    notes: list[str] = []
    records: list[dict] = []
    # overlapping override ROIs (not the External, which the others lie in): the later one in the file wins, and
    # the note of the earlier one says so; their masks are kept packed, a bit per voxel, to find the overlaps
    packed: dict[int, np.ndarray] = {}
    overlaps_possible = sum(r["type"].upper() != "EXTERNAL" for r in rois) > 1
    any_set = False
    for i, (r, (m, why)) in enumerate(zip(rois, chosen)):
        mask = mask_unkept(s, geometry, r["name"])
        n = 0 if mask is None else int(np.count_nonzero(mask))
        notes.append(override_note(r, m, why, n))
        records.append(override_record(r, m, why, n))
        if mask is None or not n:
            del mask   # freed before the next ROI's is made
            continue
        warn_material(struct_path, r, m)
        k = next((j for j, x in enumerate(mats) if x is m), None)
        if k is None:
            if len(mats) >= 255:
                raise ValueError(f"{struct_path}: the overrides need more than 255 materials in the geometry")
            mats.append(m)
            k = len(mats) - 1
        mi[mask] = k
        rho[mask] = r["density_g_cm3"]
        any_set = True
        if overlaps_possible and r["type"].upper() != "EXTERNAL":
            packed[i] = np.packbits(mask, axis=None)
        del mask
    for i, r in enumerate(rois):
        if i not in packed:
            continue
        later = [j for j in range(i + 1, len(rois)) if j in packed and np.any(packed[i] & packed[j])]
        if later:
            union = np.bitwise_or.reduce([packed[j] for j in later]) if len(later) > 1 else packed[later[0]]
            lost = int(_BITS_IN_BYTE[packed[i] & union].sum(dtype=np.int64))
            notes[i] += (f"; {lost} of them overlap the later override ROI(s) "
                         f"{', '.join(repr(rois[j]['name']) for j in later)}, "
                         "whose material they take (the later one in the structure set wins)")
    geometry.materials = mats
    geometry.struct_overrides = [dict(rec, note=n) for rec, n in zip(records, notes)]
    geometry.material_index_zyx = np.ascontiguousarray(mi, dtype=np.uint8)   # the same arrays where written in place
    geometry.density_g_cm3_zyx = np.ascontiguousarray(rho, dtype=np.float32)
    if any_set:
        geometry.tissue_heterogeneity = ("IMAGE", "ROI_OVERRIDE")   # what an RT Dose of it says it was computed with
    return notes


def override_record(roi: dict, material: Any, how: str, voxels: int) -> dict:
    """What a run's summary and HDF5 provenance keep of one applied override (``struct_overrides_applied``, README
    "Output (HDF5)"): the ROI, the property and its value as the structure set gives them, the material and density
    put into its voxels, how the material was chosen (:func:`nearest_material`) and on how many voxels of the grid
    it was set, and the stopping-power ratio to water that gives them at 100 MeV (the note, added by
    :func:`apply_overrides`, says the same in words).  ``material`` None: an override not applied (material and
    density None)."""
    rec = {"roi": roi["name"], "roi_type": roi["type"], "property": roi["property"],
           "value": roi.get("value", roi["density_g_cm3"]), "material": None, "density_g_cm3": None}
    if material is not None:
        rec.update(material=material.name, density_g_cm3=roi["density_g_cm3"],
                   spr_100mev=round(float(spr_of(roi, material)), 4))
    return {**rec, "how": how, "voxels": int(voxels)}


#: RTROIInterpretedType of the ROIs that planning systems count as part of the patient model although they lie
#: outside the External: the couch and immobilisation (SUPPORT, FIXATION) and a bolus (BOLUS) (PS3.3 C.8.8.8).
KEPT_OUTSIDE_EXTERNAL = ("SUPPORT", "FIXATION", "BOLUS")


def outside_external(geometry: Any, struct: Any, also_keep: Sequence[str] = (), *, wanted: str | None = None,
                     strict: bool = False, remedy: str = "set output.body_outline to the ROI's name",
                     external_seen: Callable[[str, np.ndarray], Any] | None = None
                     ) -> tuple[np.ndarray, str, list[str]] | None:
    """The voxels of ``geometry`` outside the structure set's External (its body ROI, chosen as the body outline
    chooses it: :func:`mcproton.body.choose_body_roi`, with ``wanted``, ``strict`` and ``remedy``; no warning of
    several EXTERNAL ROIs here, the body outline gives it), its SUPPORT / FIXATION / BOLUS ROIs
    (``KEPT_OUTSIDE_EXTERNAL``) and the ROIs named in ``also_keep`` (those whose material override was applied:
    the planning system put that material there): (mask, the External's name, the kept ROIs' names); None without
    a body ROI with contours.  ValueError where ``strict`` refuses several EXTERNAL ROIs.  ``external_seen``: called
    with the External's name and its own mask (not to be changed; before the kept ROIs are added), e.g. to warn of the
    slices it has no contour on (:func:`mcproton.body.warn_body_slices_missing`)."""
    from ..body import external_roi_name
    from .rtstruct import mask_unkept

    ext = external_roi_name(struct, wanted, say=False, strict=strict, remedy=remedy)
    if ext is None:
        return None
    kept = [nm for nm, t in struct.roi_types.items()
            if (t.upper() in KEPT_OUTSIDE_EXTERNAL or nm in also_keep) and nm != ext and struct.contours.get(nm)]
    inside = np.zeros(tuple(int(n) for n in geometry.shape_zyx), bool)
    for nm in [ext] + kept:   # one mask at a time, not kept with the structure set (a byte per voxel each)
        mask = mask_unkept(struct, geometry, nm)
        if mask is not None:   # (every one has contours)
            if nm == ext and external_seen is not None:
                external_seen(ext, mask)
            inside |= mask
        del mask   # freed before the next is made
    return np.logical_not(inside, out=inside), ext, kept


def set_outside_to_air(geometry: Any, mask: np.ndarray) -> int:
    """Air (its nominal density) in the voxels of ``mask`` (in place); the number of voxels that held more than
    air-like material."""
    from ..materials import get_material

    air = get_material("air")
    mats = list(geometry.materials)
    k = next((i for i, m in enumerate(mats) if m.name == "air"), None)
    if k is None:
        if len(mats) >= 255:   # VoxelGeometry's limit (a uint8 index); appending would leave the geometry invalid
            raise ValueError("air outside the External needs a material more than the 255 a geometry may hold")
        mats.append(air)
        k = len(mats) - 1
    from .._run.inputs import AIR_LIKE_G_CM3   # what counts as air on a beam's way, the run's rule

    from ..geometry import calibration_intact, calibration_stamped

    intact = calibration_intact(geometry)   # the calibration's arrays before: a recorded change keeps them its own
    mi, rho = _writable_arrays(geometry)   # written in place: no copy of a CT's own voxels
    # counted slice by slice: no whole-grid temporary
    n = sum(int(np.count_nonzero(mask[z] & (rho[z] > AIR_LIKE_G_CM3))) for z in range(rho.shape[0]))
    mi[mask] = k
    rho[mask] = air.density_g_cm3
    geometry.materials = mats
    geometry.tissue_heterogeneity = ("IMAGE", "ROI_OVERRIDE")
    geometry.calibration = calibration_stamped(getattr(geometry, "calibration", None), geometry, intact)
    return n


#: Mass thickness (g/cm2) of CT material outside the External along a beam's central axis, before the isocentre,
#: above which `mcproton check` and `mcproton run` name the beam (0.1 g/cm2: 1 mm of water, the order of the range
#: levels).
OUTSIDE_EXTERNAL_NOTE_G_CM2 = 0.1


def outside_external_density(ct_grid: Any, struct: Any, factors: Sequence[int],
                             density_of: Callable[[slice], np.ndarray], also_keep: Sequence[str] = (), *,
                             wanted: str | None = None) -> np.ndarray | None:
    """The CT's material outside the External on the grid of blocks of ``factors`` = (fx, fy, fz) CT voxels (as
    :func:`mcproton.geometry.resample_blocks` makes it): per block, the mean over its CT voxels (those it holds: fewer
    in the last block of an axis that is not a whole number of blocks, as the block's own density) of the density of
    those outside the External (:func:`outside_external` on ``ct_grid``, the CT's own voxels:
    anything with ``origin_mm``, ``voxel_size_mm`` and ``shape_zyx``) and denser than air (AIR_LIKE_G_CM3), 0 for the
    others; float32.  ``density_of(z_slice)``: the CT voxels' density of those slices (the geometry on the CT's
    voxels after the structure set's overrides, or the calibration's density of the HU).  None without an External.

    The outside-External note (:func:`outside_external_beam_notes`) traces it on a dose grid coarser than the CT: a
    block straddling the skin holds the block-averaged tissue while its centre may lie outside the External, which
    counted as "CT material outside the External" on a phantom with nothing but air there (audit 18, F2: 2.1 mm on
    a 4 mm grid), and a block mask either counts the skin or, leaving out the skin's rim, loses up to a block of a
    couch lying against it.  Computed in slabs of whole blocks of slices: beyond the result, only the External's mask
    on the CT's voxels (a byte each) and one slab's temporaries."""
    found = outside_external(ct_grid, struct, also_keep, wanted=wanted)
    return None if found is None else outside_density_on_blocks(found[0], factors, density_of)


def outside_density_on_blocks(mask: np.ndarray, factors: Sequence[int],
                              density_of: Callable[[slice], np.ndarray]) -> np.ndarray:
    """:func:`outside_external_density` of the CT voxels in ``mask`` (z, y, x: those outside the External)."""
    from ..geometry import block_factors, block_mean
    from .._run.inputs import AIR_LIKE_G_CM3

    f = block_factors(factors)
    fz = f[2]
    nz = mask.shape[0]
    out = []
    step = max(1, int(4e6 // max(1, mask[0].size * fz))) * fz   # ~4 M CT voxels a slab (_RESAMPLE_SLAB_VOXELS)
    for z0 in range(0, nz, step):
        s = slice(z0, min(nz, z0 + step))
        rho = np.asarray(density_of(s), np.float32)
        rho = np.where(mask[s] & (rho > AIR_LIKE_G_CM3), rho, np.float32(0.0))
        out.append(block_mean(rho, f).astype(np.float32))
    return np.concatenate(out)


def outside_external_beam_notes(geometry: Any, found: tuple[np.ndarray, str, list[str]],
                                beams: Sequence[tuple[str, Any, Any]], remedy: str) -> list[str]:
    """CT material kept outside the External (``found``: what :func:`outside_external` gave) on the beams' way: one
    note per beam whose central axis crosses more than OUTSIDE_EXTERNAL_NOTE_G_CM2 of it before the isocentre (a
    couch, a head rest: transported, where a planning system that computes inside the External and its support ROIs
    leaves it out).  ``beams``: (label, isocentre in mm, direction source -> isocentre) per beam, in the patient
    frame; ``remedy``: how the caller's user puts air there (the check's option, the run's config key).

    On a grid of blocks of the CT the geometry's ``outside_external_g_cm3_zyx`` is traced where it is set (the mass
    of only the CT voxels outside the External, per block: :func:`outside_external_density`), so that neither the
    skin's partial blocks nor less than the whole of a couch against the skin count; else the geometry's own
    voxels in ``found``'s mask (the CT's own grid)."""
    from .._run.inputs import material_upstream_g_cm2

    mask, ext, kept = found
    also = f" and the {', '.join(repr(k) for k in kept)} ROI(s)" if kept else ""
    dens = getattr(geometry, "outside_external_g_cm3_zyx", None)
    if dens is not None and tuple(dens.shape) != tuple(geometry.shape_zyx):
        dens = None   # not this grid's (a geometry cut or padded since)
    notes = []
    for label, iso, direction in beams:
        g = float((material_upstream_g_cm2(geometry, [iso], [direction], where=mask) if dens is None else
                   material_upstream_g_cm2(geometry, [iso], [direction], density=dens, min_density=0.0))[0])
        if g > OUTSIDE_EXTERNAL_NOTE_G_CM2:
            notes.append(f"{label}: its central axis crosses {10 * g:.1f} mm (water-equivalent by mass) of CT "
                         f"material outside the External {ext!r}{also} before the isocentre (a couch, a head rest or "
                         "a mask in the image): transported here; a planning system that computes inside the External "
                         "and its support ROIs only leaves it out, which moves this beam's range by about as much "
                         f"(then {remedy})")
    return notes

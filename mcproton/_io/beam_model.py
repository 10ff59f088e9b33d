"""Treatment-machine beam models for pencil-beam scanning.

A beam model gives, per nominal energy, the phase space of a spot at a reference plane located
``plane_upstream_of_isocentre_mm`` upstream of the isocentre along the beam axis: mean kinetic energy,
Gaussian energy spread (1 sigma, MeV), protons per MU, and one or more Gaussian components with weight, spot
sigma x/y (mm), divergence x/y (rad) and position-angle correlation x/y.  x and y are the IEC 61217 gantry
X and Y axes (the axes of ``ScanSpotPositionMap``).  It also gives the virtual source-axis distances (the
distances from the scanning magnets' virtual sources to the isocentre, x and y) and the range shifters of
the machine (ID, material, water-equivalent thickness).  Parameters are interpolated linearly in nominal
energy.

File formats
------------
* mcproton TOML (``*.toml``) naming a CSV table (``#`` comment lines allowed) and mapping its columns::

      name = "dcpt_v2"
      table = "dcpt_beam_model_full.csv"
      select = { model_version = "v2" }          # optional row filter
      plane_upstream_of_isocentre_mm = 500.0
      virtual_source_axis_distances_mm = [2000.0, 2560.0]
      energy_spread_unit = "MeV"                  # or "percent_of_nominal"
      [columns]
      nominal_energy = "E_nominal_MeV"
      mean_energy = "E_real_MeV"
      energy_spread = "E_real_sigma_MeV"
      protons_per_mu = "protons_per_MU"
      [[component]]                               # one per Gaussian; weight may be a column or a number
      weight = 1.0
      sigma_x = "sigma_x_mm"  ;  sigma_y = "sigma_y_mm"
      divergence_x = "sigma_xprime_rad"  ;  divergence_y = "sigma_yprime_rad"
      correlation_x = "corr_x_xprime"  ;  correlation_y = "corr_y_yprime"
      [[range_shifter]]
      id = "RS_40"  ;  material = "PMMA"  ;  wet_mm = 40.0
      density_g_cm3 = 1.19                        # optional: default the material's nominal density
      physical_thickness_mm = 34.4                # optional: default wet_mm / (its stopping-power ratio)
      isocenter_distance_mm = 300.0               # optional: isocentre to its downstream face, used when the
                                                  # plan has no IsocenterToRangeShifterDistance

* MCsquare beam data library (BDL) text files (``--UPenn beam model (double gaussian)--``): "Nozzle exit to
  Isocenter distance" (= the reference plane), "SMX/SMY to Isocenter distance" (virtual sources), optional
  "Range Shifter parameters" (``RS_ID = ...``, ``RS_material``, ``RS_density``, ``RS_WET``) and "Beam
  parameters" (``N energies``, a header line, N rows).  Its EnergySpread is in percent of the nominal energy
  and is converted to MeV here.

Range shifters are transported as slabs (mcproton/_io/rtplan.py): a model must give each one's material (a
name of ``mcproton.materials``; MCsquare's RS_material is a material name or number of its own list, so a
number is refused with a message) and WET > 0; the physical thickness is ``physical_thickness_mm`` or WET divided
by the material's stopping-power ratio to water at ``RS_SPR_ENERGY_MEV`` (:meth:`RangeShifter.thickness_mm`).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BeamModelError

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "beam_models"
BUILTIN = {
    "dcpt_v2": DATA_DIR / "dcpt" / "dcpt_v2.toml",
    "dcpt_v5": DATA_DIR / "dcpt" / "dcpt_v5.toml",
    "mcsquare_upenn_iba_dn": DATA_DIR / "mcsquare_upenn_iba_dn" / "mcsquare_upenn_iba_dn.toml",
}
_ENERGY_TOL_MEV = 0.05


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


#: energy (MeV) at which a range shifter's WET is converted into a physical thickness (the stopping-power ratio
#: of plastics to water changes by < 0.5 % between 70 and 230 MeV: Bethe, mcproton/_physics/stopping.py)
RS_SPR_ENERGY_MEV = 100.0


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

    @property
    def density(self) -> float:
        """Density (g/cm3): the model's, else the material's nominal density."""
        from ..materials import get_material

        return float(self.density_g_cm3) if self.density_g_cm3 else get_material(self.material).density_g_cm3

    def stopping_power_ratio(self, water_model: str = "icru90") -> float:
        """Linear stopping-power ratio to water at RS_SPR_ENERGY_MEV (the material at this density)."""
        from .._physics.stopping import electronic_mass_stopping_power
        from ..materials import get_material

        e = np.array([RS_SPR_ENERGY_MEV])
        s_m = electronic_mass_stopping_power(get_material(self.material), e, water_model=water_model)
        s_w = electronic_mass_stopping_power(get_material("water"), e, water_model=water_model)
        return float(self.density * s_m[0] / (get_material("water").density_g_cm3 * s_w[0]))

    def thickness_mm(self, water_model: str = "icru90") -> float:
        """Physical thickness (mm): the model's, else WET / stopping-power ratio."""
        if self.physical_thickness_mm:
            return float(self.physical_thickness_mm)
        return float(self.wet_mm) / self.stopping_power_ratio(water_model)


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

    def __post_init__(self) -> None:
        if isinstance(self.machines, str) or not all(isinstance(m, str) and m.strip() for m in self.machines):
            raise BeamModelError(f"beam model {self.name!r}: machines must be a list of treatment machine names "
                                 f"(TreatmentMachineName of the plans it models); got {self.machines!r}")
        self.machines = tuple(m.strip() for m in self.machines)
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
        allv = np.concatenate([np.ravel(getattr(self, k)) for k in (
            "mean_energy_mev", "energy_spread_mev", "protons_per_mu", "comp_weight", "comp_sigma_x_mm",
            "comp_sigma_y_mm", "comp_div_x_rad", "comp_div_y_rad", "comp_corr_x", "comp_corr_y")])
        if not np.all(np.isfinite(allv)):
            raise BeamModelError(f"beam model {self.name!r} contains NaN/inf values; check the table")
        if np.any(e <= 0) or np.any(self.mean_energy_mev <= 0) or np.any(self.mean_energy_mev > 350):
            raise BeamModelError(f"beam model {self.name!r}: energies must lie in (0, 350] MeV")
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

    def covers_machine(self, machine: str) -> bool:
        """Whether a beam planned for treatment machine ``machine`` (its TreatmentMachineName) may use this model:
        yes when the model names no machines or the plan gives no name (``plan_to_beams`` then warns that the plan
        could not be checked); else the name must be one of ``machines`` (case and surrounding blanks ignored)."""
        m = (machine or "").strip().upper()
        return not self.machines or not m or m in {x.upper() for x in self.machines}

    @property
    def energy_range_mev(self) -> tuple[float, float]:
        return float(self.nominal_energy_mev[0]), float(self.nominal_energy_mev[-1])

    def at(self, nominal_energy_mev: float) -> BeamModelEntry:
        """Parameters at a nominal energy (linear interpolation between tabulated energies)."""
        e = float(nominal_energy_mev)
        lo, hi = self.energy_range_mev
        if not np.isfinite(e) or e < lo - _ENERGY_TOL_MEV or e > hi + _ENERGY_TOL_MEV:
            raise BeamModelError(f"nominal energy {e} MeV is outside beam model {self.name!r} "
                                 f"({lo:g}-{hi:g} MeV); use a beam model of the plan's machine")
        e = min(max(e, lo), hi)
        E = self.nominal_energy_mev

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
        return BeamModelEntry(e, ip(self.mean_energy_mev), ip(self.energy_spread_mev), ip(self.protons_per_mu),
                              comps)

    def protons_per_mu_at(self, nominal_energy_mev: float) -> float:
        return self.at(nominal_energy_mev).protons_per_mu

    def range_shifter(self, rs_id: str) -> RangeShifter:
        if rs_id not in self.range_shifters:
            raise BeamModelError(f"range shifter {rs_id!r} is not in beam model {self.name!r} "
                                 f"(known: {sorted(self.range_shifters) or 'none'}); add it to the model file")
        return self.range_shifters[rs_id]


# ------------------------------------------------------------------------------------------ loading
def load_beam_model(name_or_path: str | Path) -> BeamModel:
    """A built-in model (``dcpt_v2``, ``dcpt_v5``, ``mcsquare_upenn_iba_dn``), a TOML model or a BDL file."""
    key = str(name_or_path)
    if key.lower() in BUILTIN:
        return _load_toml(BUILTIN[key.lower()])
    if key.lower() == "dcpt":
        raise BeamModelError("the DCPT model has two versions: 'dcpt_v2' (valid until July 2024, plane 500 mm "
                             "upstream) and 'dcpt_v5' (from August 2024, plane 600 mm); choose one")
    p = Path(name_or_path)
    if not p.exists():
        raise BeamModelError(f"beam model {key!r} is neither a built-in model ({', '.join(BUILTIN)}) nor a file")
    if p.is_dir():
        raise BeamModelError(f"{p} is a folder; give the beam-model file (.toml or MCsquare BDL .txt)")
    if p.suffix.lower() == ".toml":
        return _load_toml(p)
    head = p.read_bytes()[:4096].decode("utf-8", errors="replace")
    if "Isocenter distance" in head or "Beam parameters" in head or "beam model" in head.lower():
        return load_bdl(p)
    raise BeamModelError(f"{p}: unknown beam-model format; give a .toml model or an MCsquare BDL text file")


def _read_table(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise BeamModelError(f"beam-model table {path} does not exist")
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) < 2:
        raise BeamModelError(f"{path}: no data rows")
    return [{(k or "").strip(): (v or "").strip() for k, v in r.items()}
            for r in csv.DictReader(io.StringIO("\n".join(lines)))]


def _load_toml(path: Path) -> BeamModel:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BeamModelError(f"{path}: cannot parse TOML ({exc})") from exc
    for req in ("table", "columns", "component", "plane_upstream_of_isocentre_mm"):
        if req not in cfg:
            raise BeamModelError(f"{path}: missing key {req!r}")
    rows = _read_table(path.parent / cfg["table"])
    for k, v in cfg.get("select", {}).items():
        rows = [r for r in rows if r.get(k) == str(v)]
    if not rows:
        raise BeamModelError(f"{path}: no rows of {cfg['table']} match select = {cfg.get('select')}")

    def col(spec, what):
        if isinstance(spec, (int, float)):
            return np.full(len(rows), float(spec))
        if spec not in rows[0]:
            raise BeamModelError(f"{path}: column {spec!r} ({what}) is not in {cfg['table']}")
        try:
            return np.array([float(r[spec]) for r in rows])
        except ValueError as exc:
            raise BeamModelError(f"{path}: non-numeric value in column {spec!r}: {exc}") from exc

    c = cfg["columns"]
    e_nom = col(c["nominal_energy"], "nominal_energy")
    spread = col(c["energy_spread"], "energy_spread")
    unit = cfg.get("energy_spread_unit", "MeV")
    if unit == "percent_of_nominal":
        spread = spread / 100.0 * e_nom
    elif unit != "MeV":
        raise BeamModelError(f"{path}: energy_spread_unit must be 'MeV' or 'percent_of_nominal'; got {unit!r}")
    comps = cfg["component"]
    arr = {k: np.stack([col(cp[k], k) for cp in comps], axis=1)
           for k in ("weight", "sigma_x", "sigma_y", "divergence_x", "divergence_y", "correlation_x", "correlation_y")}
    rs = {}
    for r in cfg.get("range_shifter", []):
        unknown = set(r) - {"id", "wet_mm", "material", "physical_thickness_mm", "density_g_cm3",
                            "isocenter_distance_mm"}
        if unknown:
            raise BeamModelError(f"{path}: [[range_shifter]] keys {sorted(unknown)} are unknown (known: id, wet_mm, "
                                 "material, density_g_cm3, physical_thickness_mm, isocenter_distance_mm)")
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
    try:
        return BeamModel(cfg.get("name", path.stem), e_nom, col(c["mean_energy"], "mean_energy"), spread,
                         col(c["protons_per_mu"], "protons_per_mu"), arr["weight"], arr["sigma_x"], arr["sigma_y"],
                         arr["divergence_x"], arr["divergence_y"], arr["correlation_x"], arr["correlation_y"],
                         float(cfg["plane_upstream_of_isocentre_mm"]), tuple(vsad) if vsad else None, rs,
                         cfg.get("source", ""), tuple(machines))
    except BeamModelError as exc:
        raise BeamModelError(f"{path}: {exc}") from None


def load_bdl(path: str | Path) -> BeamModel:
    """Parse an MCsquare beam data library (BDL) text file (single or double Gaussian)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BeamModelError(f"cannot read BDL file {p}: {exc}") from exc
    return parse_bdl(text, name=p.stem, source=str(p))


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


def parse_bdl(text: str, *, name: str = "bdl", source: str = "") -> BeamModel:
    """Parse the text of an MCsquare BDL (see :func:`load_bdl`)."""
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
            j += 1
            while j < n and not lines[j].strip():
                j += 1
            table_header = lines[j].split() if j < n else []
            j += 1
            while j < n and len(table_rows) < n_e:
                if lines[j].strip():
                    table_rows.append(lines[j].split())
                j += 1
            if len(table_rows) != n_e:
                raise BeamModelError(f"{source or name}: 'Beam parameters' announces {n_e} energies but "
                                     f"{len(table_rows)} rows follow; the file is truncated")
            i = j
            continue
        i += 1
    for k in ("nozzle exit to isocenter distance", "smx to isocenter distance", "smy to isocenter distance"):
        if k not in values:
            raise BeamModelError(f"{source or name}: missing section {k!r}; not an MCsquare BDL file?")
    if table_header is None:
        raise BeamModelError(f"{source or name}: missing 'Beam parameters' table")
    need = ["NominalEnergy", "MeanEnergy", "EnergySpread", "ProtonsMU", "SpotSize1x", "Divergence1x",
            "Correlation1x", "SpotSize1y", "Divergence1y", "Correlation1y"]
    miss = [c for c in need if c not in table_header]
    if miss:
        raise BeamModelError(f"{source or name}: beam-parameter header lacks columns {miss}")
    try:
        tab = np.array([[float(x) for x in r] for r in table_rows])
    except ValueError as exc:
        raise BeamModelError(f"{source or name}: non-numeric beam-parameter value ({exc})") from exc
    if tab.ndim != 2 or tab.shape[1] != len(table_header):
        raise BeamModelError(f"{source or name}: beam-parameter rows must have {len(table_header)} columns")
    colv = {h: tab[:, k] for k, h in enumerate(table_header)}
    two = all(f"{c}2{a}" in colv for c in ("SpotSize", "Divergence", "Correlation") for a in "xy") and "Weight2" in colv
    ncomp = 2 if two else 1
    w1 = colv.get("Weight1", np.ones(len(tab)))

    def stack(base, axis):
        return np.stack([colv[f"{base}{k + 1}{axis}"] for k in range(ncomp)], axis=1)

    weights = np.stack([w1, colv["Weight2"]], axis=1) if two else w1[:, None]
    e_nom = colv["NominalEnergy"]
    rs = {}
    for r in rs_list:
        if "RS_ID" not in r or "RS_WET" not in r:
            raise BeamModelError(f"{source or name}: range shifter entries need RS_ID and RS_WET; got {r}")
        mat = _bdl_rs_material(r.get("RS_material", ""))
        try:
            rs[r["RS_ID"]] = RangeShifter(r["RS_ID"], float(r["RS_WET"]), mat,
                                          None, float(r["RS_density"]) if "RS_density" in r else None)
        except BeamModelError as exc:
            raise BeamModelError(f"{source or name}: {exc}") from None
        except ValueError as exc:
            raise BeamModelError(f"{source or name}: bad range-shifter value ({exc})") from exc
    return BeamModel(name, e_nom, colv["MeanEnergy"], colv["EnergySpread"] / 100.0 * e_nom, colv["ProtonsMU"],
                     weights, stack("SpotSize", "x"), stack("SpotSize", "y"), stack("Divergence", "x"),
                     stack("Divergence", "y"), stack("Correlation", "x"), stack("Correlation", "y"),
                     values["nozzle exit to isocenter distance"],
                     (values["smx to isocenter distance"], values["smy to isocenter distance"]), rs,
                     source or "MCsquare BDL")

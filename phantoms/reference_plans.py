"""The two reference plans on the paediatric phantoms: a posterior-fossa (medulloblastoma) boost and a
craniospinal (CSI) field arrangement, with their targets from the phantom's labels and landmarks.

They are planned with :mod:`mcproton.planning` (on the DCPT beam model by default); verify them with the Monte
Carlo (:func:`mcproton.planning.verify_plan`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..geometry import VoxelGeometry
from ..planning import DEFAULT_BEAM_MODEL, DEFAULT_RS_AIR_GAP_MM, Plan, gantry_direction, optimise_plan
from ..planning.optimiser import ITERATIONS
from .generator import INTRACRANIAL


def _label_mask(geometry: VoxelGeometry, names) -> np.ndarray:
    ids = [i for i, nm in geometry.label_names.items() if nm in set(names)]
    return np.isin(geometry.labels_zyx, ids)


def _grid_xyz(geometry: VoxelGeometry):
    """Voxel-centre coordinates Z, Y, X (mm) as broadcastable (nz, 1, 1), (1, ny, 1), (1, 1, nx) arrays: the
    same values per voxel as full meshgrids, without building three grid-sized copies."""
    z, y, x = (geometry.axis_mm(a) for a in "zyx")
    return np.meshgrid(z, y, x, indexing="ij", sparse=True)


#: the boost CTV: the tumour bed + 1.5 cm, kept within the posterior fossa (COG ACNS0331's tumour-bed boost;
#: Merchant et al., IJROBP 2008;70:782 used 2 cm)
PF_BOOST_MARGIN_MM = 15.0
#: the tumour bed of a medulloblastoma (it grows from the vermis / roof of the fourth ventricle and fills the
#: ventricle): the phantom's fourth ventricle grown by this much in every semi-axis, its centre moved this much
#: posteriorly into the vermis (assumption)
TUMOUR_BED_GROWTH_MM = 4.0
#: CSF in front of the brainstem (prepontine cistern) still inside the posterior fossa; the clivus lies in front
PREPONTINE_MM = 3.0


def tumour_bed(geometry: VoxelGeometry) -> np.ndarray:
    """Medulloblastoma tumour bed: the fourth ventricle and the vermis behind it (``TUMOUR_BED_GROWTH_MM``), within
    the cranial cavity."""
    d = geometry.meta["design"]
    c = np.asarray(d["v4_c"], float) + np.array([0.0, TUMOUR_BED_GROWTH_MM, 0.0])
    s = np.asarray(d["v4_s"], float) + TUMOUR_BED_GROWTH_MM
    Z, Y, X = _grid_xyz(geometry)
    ell = ((X - c[0]) / s[0]) ** 2 + ((Y - c[1]) / s[1]) ** 2 + ((Z - c[2]) / s[2]) ** 2 <= 1.0
    return ell & _label_mask(geometry, INTRACRANIAL)


def posterior_fossa_compartment(geometry: VoxelGeometry) -> np.ndarray:
    """The cranial cavity below the tentorium: its contents (parenchyma, ventricles, CSF) below the plane of the
    head circumference (z = 0, under which the generator builds the posterior fossa; the tentorium is taken as that
    plane) and behind the clivus (``PREPONTINE_MM`` in front of the brainstem)."""
    d = geometry.meta["design"]
    y_clivus = d["bs_c"][1] - d["bs_s"][1] - PREPONTINE_MM
    Z, Y, X = _grid_xyz(geometry)
    return (Z < 0) & (Y >= y_clivus) & _label_mask(geometry, INTRACRANIAL)


def posterior_fossa_target(geometry: VoxelGeometry, margin_mm: float = PF_BOOST_MARGIN_MM,
                           bed: np.ndarray | None = None) -> np.ndarray:
    """Posterior-fossa (medulloblastoma tumour-bed) boost CTV: the tumour bed (default :func:`tumour_bed`: the
    fourth ventricle and the vermis) + ``margin_mm`` (1.5 cm), confined to the posterior fossa
    (:func:`posterior_fossa_compartment`).  As in a clinical plan it takes the whole fourth ventricle and the dorsal
    brainstem (the ventricle's floor) and stops at the tentorium and the skull: 2 mm voxels, 1 y 59 mL,
    5 y 68 mL, 10 y 70 mL, 15 y 70 mL (40-50 % of the cerebellum, a third of the brainstem)."""
    from scipy.ndimage import distance_transform_edt

    bed = tumour_bed(geometry) if bed is None else np.asarray(bed, bool)
    if not bed.any():
        raise ValueError("the tumour bed is empty: no fourth ventricle on this grid (voxels too large?)")
    v = np.asarray(geometry.voxel_size_mm, float)[::-1]                  # (z, y, x)
    lo = np.array([k.min() for k in np.nonzero(bed)])
    hi = np.array([k.max() for k in np.nonzero(bed)])
    pad = np.ceil(margin_mm / v).astype(int) + 1
    sl = tuple(slice(max(int(a - p), 0), int(b + p) + 1) for a, b, p in zip(lo, hi, pad))
    near = np.zeros(geometry.shape_zyx, bool)
    near[sl] = distance_transform_edt(~bed[sl], sampling=v) <= margin_mm
    return near & posterior_fossa_compartment(geometry)


def craniospinal_target(geometry: VoxelGeometry) -> dict[str, np.ndarray]:
    """CSI CTV parts: ``brain`` (whole cranial cavity contents) and ``spine`` (thecal sac: spinal-canal CSF +
    cord), and their union ``csi``."""
    brain = _label_mask(geometry, INTRACRANIAL + ("optic_nerve_left", "optic_nerve_right"))
    spine = _label_mask(geometry, ("spinal_canal_csf", "spinal_cord"))
    return {"brain": brain, "spine": spine, "csi": brain | spine}


def _machine_spec(beam_model, range_shifter, rs_air_gap_mm) -> dict:
    if beam_model is None:
        return {}
    from .._io.beam_model import BeamModel, load_beam_model

    if not isinstance(beam_model, BeamModel):
        beam_model = load_beam_model(beam_model)          # once for all fields
    return {"beam_model": beam_model, "range_shifter": range_shifter, "rs_air_gap_mm": rs_air_gap_mm}


def posterior_fossa_plan(geometry: VoxelGeometry, *, prescription_gy_rbe: float = 1.8,
                         gantry_deg: Sequence[float] = (180.0, 140.0, 220.0), sigma_air_mm: float = 4.0,
                         layer_spacing_mm: float = 4.0, target: np.ndarray | None = None,
                         iterations: int = ITERATIONS, max_points: int = 6000, beam_model=DEFAULT_BEAM_MODEL,
                         range_shifter: str | None = "auto",
                         rs_air_gap_mm: float = DEFAULT_RS_AIR_GAP_MM) -> Plan:
    """Posterior-fossa (medulloblastoma tumour-bed) boost: PA + two posterior-oblique fields (IEC gantry 180, 140,
    220 deg by default), spots optimised to a uniform dose of ``prescription_gy_rbe`` / 1.1 Gy per fraction.

    On the clinical machine ``beam_model`` (default the shipped DCPT ProBeam model v5: 70-244 MeV, its spot
    sizes) with a range shifter where the target lies shallower than the lowest energy's range
    (:func:`field_machine`); ``beam_model=None``: generic pencil beams of ``sigma_air_mm`` from 50 MeV."""
    tgt = posterior_fossa_target(geometry) if target is None else np.asarray(target, bool)
    names = {180.0: "PA G180", 140.0: "LPO G140", 220.0: "RPO G220"}
    machine = _machine_spec(beam_model, range_shifter, rs_air_gap_mm)      # the beam model loaded once
    specs = [{"name": names.get(float(g), f"G{g:g}"), "direction": gantry_direction(g),
              "sigma_air_mm": sigma_air_mm, "layer_spacing_mm": layer_spacing_mm, **machine} for g in gantry_deg]
    return optimise_plan("posterior-fossa boost", geometry, tgt, specs,
                         prescription_gy_rbe=prescription_gy_rbe,
                         target_name="CTV_PF", iterations=iterations, max_points=max_points)


def craniospinal_plan(geometry: VoxelGeometry, *, prescription_gy_rbe: float = 1.8,
                      cranial_gantry_deg: Sequence[float] = (150.0, 210.0), sigma_air_mm: float = 8.0,
                      spot_spacing_mm: float = 6.0, layer_spacing_mm: float = 6.0,
                      max_spine_field_mm: float = 300.0,
                      overlap_mm: float = 50.0, iterations: int = ITERATIONS, max_points: int = 5000,
                      spine_layer_spacing_mm: float | None = None, voxel_average_samples: int = 5,
                      keep_spine_points: bool = True, beam_model=DEFAULT_BEAM_MODEL,
                      range_shifter: str | None = "auto", rs_air_gap_mm: float = DEFAULT_RS_AIR_GAP_MM,
                      lateral_margin_mm: float | None = 10.0) -> Plan:
    """Craniospinal irradiation (spots on a 6 mm grid, 6 mm layers): two posterior-oblique cranial fields (IEC
    gantry 150/210 deg) on the whole brain and one or more posterior (gantry 180) spinal fields on the thecal
    sac (split into fields of at most ``max_spine_field_mm`` with ``overlap_mm`` overlap; the joint
    optimisation of all spots feathers the junctions).  Needs a phantom with region="neuraxis" (or "head_neck"
    for the cervical part).  On the clinical machine ``beam_model`` (default dcpt_v5: 70-244 MeV, spot sigma
    4-7 mm at the isocentre) with a range shifter on the fields whose target starts shallower than the lowest
    energy's range (the spinal fields of a child: the thecal sac lies 2-4 cm deep); ``beam_model=None``:
    generic 8 mm spots from 50 MeV. ``lateral_margin_mm``: spots this far beyond the target's beam's-eye-view
    outline (10 mm: behind RS_5CM the low-energy spots are 9 mm sigma wide; with a margin of one smallest
    sigma, 4.4 mm, the field edges were cold: MC D95 94.6 % instead of 95.7 %)."""
    parts = craniospinal_target(geometry)
    if not parts["spine"].any():
        raise ValueError("the phantom has no spinal canal: use make_head_phantom(..., region='neuraxis')")
    common = {"sigma_air_mm": sigma_air_mm, "spot_spacing_mm": spot_spacing_mm,
              "layer_spacing_mm": layer_spacing_mm,
              "lateral_margin_mm": lateral_margin_mm,
              **_machine_spec(beam_model, range_shifter, rs_air_gap_mm)}
    specs = [{"name": f"cranial G{g:g}", "direction": gantry_direction(g), "target_mask": parts["brain"],
              **common}
             for g in cranial_gantry_deg]
    z = geometry.axis_mm("z")
    kz = np.nonzero(parts["spine"].any(axis=(1, 2)))[0]
    z_lo, z_hi = z[kz.min()], z[kz.max()]
    # the top spinal field reaches into the cranial cavity by the overlap (junction region)
    z_hi = min(z_hi + overlap_mm, z[np.nonzero(parts["brain"].any(axis=(1, 2)))[0].min()] + overlap_mm)
    n = max(1, int(np.ceil((z_hi - z_lo - overlap_mm) / (max_spine_field_mm - overlap_mm))))
    length = (z_hi - z_lo + (n - 1) * overlap_mm) / n
    Z = z[:, None, None]
    for m in range(n):
        top = z_hi - m * (length - overlap_mm)
        band = (Z <= top) & (Z >= top - length)
        specs.append({"name": f"spine {m + 1} G180", "direction": gantry_direction(180.0),
                      "target_mask": parts["csi"] & band,
                      **{**common, "layer_spacing_mm": spine_layer_spacing_mm or layer_spacing_mm}})
    return optimise_plan("craniospinal", geometry, parts["csi"], specs,
                         prescription_gy_rbe=prescription_gy_rbe,
                         target_name="CTV_CSI", iterations=iterations, max_points=max_points,
                         keep_points_mask=parts["spine"] if keep_spine_points else None,
                         voxel_average_samples=voxel_average_samples)

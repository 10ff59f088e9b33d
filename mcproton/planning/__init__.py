"""Treatment planning for pencil-beam scanning: spots and energy layers per field, spot weights optimised
on a dose model, and the plan as the engine's :class:`mcproton.source.Beam` for a Monte Carlo verification.

Modules: :mod:`~mcproton.planning.raytrace` (RSP, water-equivalent depth, beam frame),
:mod:`~mcproton.planning.kernel` (analytical pencil-beam model in water), :mod:`~mcproton.planning.machine`
(beam model and range shifter), :mod:`~mcproton.planning.spots` (spots and layers of a field),
:mod:`~mcproton.planning.dose_model` (dose-influence matrix; the seam for other dose models),
:mod:`~mcproton.planning.optimiser` (spot weights), :mod:`~mcproton.planning.plan` (plan -> Beam),
:mod:`~mcproton.planning.verify` (Monte Carlo check).  Example plans on the paediatric phantoms:
:mod:`mcproton.phantoms.reference_plans`.

Pipeline (all in the phantom frame, mm, arrays (z, y, x)):

1. **Target**: a voxel mask on the geometry's grid (from a DICOM RT Structure Set:
   :func:`mcproton.dicom.load_rtstruct_masks`; the reference plans of :mod:`mcproton.phantoms.reference_plans` take
   it from the phantom's label map: ``posterior_fossa_target``, the medulloblastoma tumour bed (fourth
   ventricle and vermis) + 1.5 cm confined to the posterior fossa; ``craniospinal_target``, whole brain + thecal
   sac).
2. **Water-equivalent depth** of every target point along each beam: the relative stopping power (RSP) of
   each voxel is its density times the ratio of electronic mass stopping powers medium/water at 100 MeV
   (:func:`mcproton.physics.electronic_mass_stopping_power`), integrated along the ray from the
   grid boundary (trilinear sampling, 1 mm steps; parallel beams, no source divergence).
3. **Spots**: energy layers whose water CSDA range (ICRU 90 tables of the engine,
   :func:`mcproton.physics.build_tables`) steps by ``layer_spacing_mm`` WET from the shallowest to
   the deepest target point (+ 1 mm), on a lateral grid of spacing ``0.8 x spot sigma`` covering the target's
   beam's-eye-view projection + margin; per lateral position only the layers whose range falls within the
   local target depth (+- half a layer) are kept.
4. **Dose-influence matrix** on the target points from an analytical pencil-beam kernel: Bortfeld's (1997)
   Bragg curve (parabolic-cylinder form, epsilon = 0) at the point's WET times a lateral Gaussian whose
   sigma combines the spot size in air and multiple Coulomb scattering (Preston-Koehler depth shape: the
   Fermi-Eyges spread for a scattering power inversely proportional to the residual range; sigma at the end of
   range = 0.0294 R^0.896 cm, R in g/cm2, an assumption without a found source: :func:`kernel.mcs_sigma_mm`), in Gy
   per proton (dose to medium).
5. **Weights** (protons per spot) by non-negative least squares to a uniform prescription with an
   L-BFGS-B (SciPy's bound-constrained quasi-Newton method; 120 iterations by default, then 60 for a refit);
   spots below 0.2 % of the mean weight are dropped before the refit.

On a clinical machine (a field spec's ``beam_model``, e.g. the shipped DCPT model ``dcpt_v5``,
:data:`DEFAULT_BEAM_MODEL`, the default of the reference plans of :mod:`mcproton.phantoms.reference_plans` only:
:func:`optimise_plan` and :func:`generate_field_spots` without one use generic Gaussian pencil beams from 50 MeV, which
have no monitor units and cannot be written as an RT Ion Plan; :class:`FieldMachine`) the
energies are the machine's nominal energies (70-244 MeV), the spots carry its phase space, and a field whose
target starts shallower than the lowest energy's range gets one of its range shifters; the kernel then takes
the residual range behind the shifter, its nuclear losses, the in-air spot variance at each depth (emittance +
generalised Highland in the slab) and the halo behind it (:class:`LayerOptics`).

Directions are LPS vectors: :func:`gantry_direction` gives an IEC gantry angle's for the CT's ``patient_position``
(default HFS), so that :func:`mcproton.dicom.write_rtplan` writes the angle asked for.  Targets beyond the reach of a
field's energies are warned of, or refused where no layer reaches them (:func:`generate_field_spots`).

The analytical model is only the optimiser's model: verify every plan with the Monte Carlo
(:func:`verify_plan`), which also reports how close the model's absolute dose was.
"""
from .dose_model import ANALYTICAL_KERNEL, DoseModel, influence_matrix, voxel_depth_offsets
from .kernel import MEV_PER_G_TO_GY, bortfeld_idd, energy_for_range_mm, mcs_sigma_mm, water_range_mm
from .machine import (DEFAULT_BEAM_MODEL, DEFAULT_RS_AIR_GAP_MM, HALO_K_MEV2_CM2_G, HALO_THETA_RAD,
                      FieldMachine, LayerOptics, field_machine)
from .optimiser import optimise_plan, optimise_weights
from .plan import RBE, FieldSpots, Plan
from .raytrace import (gantry_direction, mass_stopping_ratio, relative_stopping_power, skin_distance_mm,
                       voxel_centres_mm, water_equivalent_depth)
from .spots import generate_field_spots
from .verify import verify_plan

__all__ = ["optimise_plan", "optimise_weights", "verify_plan", "Plan", "FieldSpots", "RBE",
           "generate_field_spots", "influence_matrix", "voxel_depth_offsets", "DoseModel",
           "ANALYTICAL_KERNEL",
           "FieldMachine", "LayerOptics", "field_machine", "DEFAULT_BEAM_MODEL", "DEFAULT_RS_AIR_GAP_MM",
           "HALO_K_MEV2_CM2_G", "HALO_THETA_RAD", "water_range_mm", "energy_for_range_mm", "bortfeld_idd",
           "mcs_sigma_mm", "MEV_PER_G_TO_GY", "relative_stopping_power", "mass_stopping_ratio",
           "voxel_centres_mm", "water_equivalent_depth", "gantry_direction", "skin_distance_mm"]

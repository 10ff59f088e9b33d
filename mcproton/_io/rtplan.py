"""DICOM RT Ion Plan import (pencil-beam scanning) and conversion to :class:`mcproton.source.Beam`.

Plan reading
------------
Each ion beam's control points are walked in order; attributes absent from a control point (energy, gantry
and couch angles, isocentre, range-shifter settings...) are inherited from the previous one, as PS3.3
allows.  Every control point whose ``ScanSpotMetersetWeights`` are not all zero is one energy layer (Eclipse
and RayStation write each layer as a pair of control points whose second one repeats the spot map with zero
weights).  The MU of a spot is ``BeamMeterset * w / FinalCumulativeMetersetWeight`` with ``BeamMeterset``
from FractionGroupSequence[0].ReferencedBeamSequence (per fraction).  ``NumberOfPaintings`` is recorded
only: the weights of a control point are the total over all paintings.  A later control point may repeat the
beam's IsocenterPosition (within 0.01 mm) but not change it: an isocentre that moves during a beam is refused, as
are changing gantry and couch angles.  ScanMode MODULATED_SPEC is read only with ModulatedScanModeType STATIONARY
(or none); LINEAR and LEAPING (dose delivered while the spot moves, PS3.3 C.8.8.25.8) are refused, and with
ScanMode MODULATED (where the type does not belong) too.  Angles are compared modulo 360 deg (0 and 360 are one
angle); a gantry, couch or table-top eccentric angle outside 0-360 deg (1e20, or 1800 for 180.0) is refused, not
reduced; a gantry or couch angle or the IsocenterPosition missing from the first control point is refused (given
later or not at all: a plan without PatientSupportAngle is damaged, and couch 0 would turn a couch-kicked beam), as
are a SnoutPosition or a shifter's IsocenterToRangeShifterDistance (while IN) that change during a beam and
NumberOfPaintings 0.  Beams whose TreatmentDeliveryType is not TREATMENT or CONTINUATION (set-up and verification
fields) are left out before any other check, with a warning, and never add to the dose.

Beam modifiers that mcproton does not transport are refused (their dose would be computed without them): blocks,
compensators, range modulators, wedges, a lateral spreading device other than a scanning MAGNET, and a beam-limiting
device (MLC, jaws, aperture) placed in a control point (unless ``ignore_beam_limiting_devices``).  A bolus
(ReferencedBolusSequence) is warned about by :func:`warn_unmodelled_boli` unless the structure set's material
override of its ROI is applied.  RangeShifterSetting is read as IN or OUT in any case, or 1 or 0; other text is
refused.

Geometry (IEC 61217 -> DICOM patient LPS)
-----------------------------------------
IEC fixed system f (IEC 61217): Xf to the right of an observer at the foot of the couch facing the gantry,
Yf horizontal towards the gantry, Zf up.  Gantry system g: rotated from f by the gantry angle theta about Yf
(right-handed, i.e. clockwise as seen from the isocentre looking at the gantry).  At theta = 0 the beam
comes from above: the virtual source sits at +Zg and the central axis points along -Zg.  Spot positions
(ScanSpotPositionMap X, Y) are coordinates along Xg, Yg in the isocentre plane (PS3.3 Table C.8.8.25-1: "projected
onto the machine isocentric plane in the IEC GANTRY coordinate system"), so the BeamLimitingDeviceAngle
(collimator angle: IEC BEAM LIMITING DEVICE with respect to IEC GANTRY) does not turn them.  The patient support
system s is rotated from f by the couch angle phi about Zf (right-handed: counter-clockwise seen from
above).  The table-top eccentric system e is rotated from s by TableTopEccentricAngle about its own vertical axis
(PS3.3 C.8.8.14: "orientation of IEC TABLE TOP ECCENTRIC coordinate system with respect to IEC PATIENT SUPPORT
coordinate system", the same sense), so the table top, and the patient on it, is turned in the room by the sum of the
two angles; where the eccentric axis lies only moves the patient, which the isocentre's set-up takes back.  The
patient is fixed to the table top (pitch and roll must be 0, modulo 360 deg).  A TableTopEccentricAngle that no
control point gives is 0, without a word: none of the planning systems whose plans are in tests/data/dicom (Eclipse,
RayStation, OpenTPS) writes it, they turn the couch with PatientSupportAngle alone.  A TableTopPitchAngle or
TableTopRollAngle missing from the first control point (1C there; OpenTPS leaves both out) is 0 with a warning.

The patient's LPS axes (DICOM PS3.3 C.7.6.2.1.1: x to the patient's left, y posterior, z towards the head)
in table-top coordinates follow from PatientPosition (PS3.3 C.7.3.1.1.2, used by the RT Patient Setup module
C.8.8.12): head first = head towards the gantry (+Ys), feet first = feet towards it; supine = face up,
prone = face down; decubitus left/right = the patient's left/right side down (in the gravity direction, -Zs).
With L, P, S the LPS unit vectors written in (Xs, Ys, Zs):

    HFS   L = +Xs  P = -Zs  S = +Ys        FFS   L = -Xs  P = -Zs  S = -Ys
    HFP   L = -Xs  P = +Zs  S = +Ys        FFP   L = +Xs  P = +Zs  S = -Ys
    HFDL  L = -Zs  P = -Xs  S = +Ys        FFDL  L = -Zs  P = +Xs  S = -Ys
    HFDR  L = +Zs  P = +Xs  S = +Ys        FFDR  L = +Zs  P = -Xs  S = -Ys

Derivation: for HFS, S = +Ys (head towards the gantry) and P = -Zs (face up), so L = P x S = +Xs (the
LPS frame is right-handed): a supine patient's left is on the right of the observer at the foot of the couch.
Every other position is HFS turned about the patient's own S axis (right-handed, by 90 deg: HFDL, 180 deg:
HFP, 270 deg: HFDR), after, for feet first, a 180 deg turn about the vertical Zs (HFS -> FFS).  Hence, at
couch 0: gantry 0 travels +y (anterior beam) for HFS, -y for HFP, +x (from the patient's right, which is up)
for HFDL and -x for HFDR; gantry 90 travels -x (from the patient's left) for HFS and +y for HFDL.  Each
matrix is a proper rotation (orthonormal, det +1); tests/io/test_patient_positions.py checks these relations
and the geometry against a RayStation dose of a real plan.  The other DICOM positions (LFP, LFS, RFP, RFS,
AFDR, AFDL, PFDR, PFDL: a side other than head or feet towards the gantry) and an empty PatientPosition are
refused.  A vector v_f in the fixed system is v_LPS = A^T R_z(phi)^T v_f with A the LPS -> table matrix above.

Spots
-----
A spot at isocentre-plane position (X, Y) lies on the ray from the virtual sources: with SAD_x, SAD_y the
virtual source-axis distances and L the beam-model plane distance upstream of the isocentre, its position
at the plane is (X (1 - L/SAD_x), Y (1 - L/SAD_y), L) and its direction (X/SAD_x, Y/SAD_y, -1) (normalised)
in gantry coordinates (Xg, Yg, Zg), translated to the isocentre.  The spot's transverse x axis is Xg
(made perpendicular to the direction), matching the beam model's x.

Range shifters
--------------
A layer whose range shifter is IN carries it as a slab in the beam line of each of its spots
(:class:`mcproton.source.RangeShifterSlab`), transported by the kernel with the full physics (energy loss and
straggling, multiple scattering with lateral displacement, nuclear interactions; kernels/transport.cu
``traverse_shifter``), followed by the straight flight across the air gap, which turns the added angular spread
into spot width.  The beam model says what the shifter is (``[[range_shifter]]`` of a TOML model, ``RS_*`` of
an MCsquare BDL): its material (required), density (default: the material's) and physical thickness (default:
its WET divided by the material's stopping-power ratio to water at 100 MeV).  Its WET is the model's, else the
plan's RangeShifterWaterEquivalentThickness (a difference of more than 1 mm between the two is warned about).
Its position: IsocenterToRangeShifterDistance of the control point (DICOM: isocentre to the shifter's
downstream face), else the model's ``isocenter_distance_mm``.  A later RangeShifterSettingsSequence IN item that
leaves out the distance or the WET (Type 3) keeps the value the beam's last IN item stated (it does not say the
shifter moved; an OUT item's values are not carried: they do not place an inserted slab); a distance stated
differently later, or stated only from a later control point on while the first layers take the model's, is refused
(one slab position per beam).  An ANALOG shifter (RangeShifterType) whose plan WET
differs from the model's by more than 1 mm is refused: the model's slab has one thickness, an analog shifter's
changes from layer to layer.  The slab is perpendicular to each spot's central
ray (a tilt of < 3 degrees for spots within 10 cm of the axis: < 0.15 % in thickness), with its upstream face at
(L - D - t) / cos(angle to the beam axis) from the spot's point on the beam-model plane (L upstream of the
isocentre, D the isocentre distance, t the thickness).  Refused with a message: a shifter the model does not
describe with a material, a WET <= 0, no position, a slab upstream of the beam-model plane, two shifters IN in
one layer.

``range_shifter_model="energy_only"`` (config ``plan.range_shifter_model``; default ``"transport"``) keeps the
old approximation as an explicit opt-in, recorded in the provenance: the WET only lowers the mean energy with
the Bragg-Kleeman rule for water, R = alpha E^p with alpha = 0.0022 cm MeV^-p, p = 1.77 (Bortfeld 1997, Med Phys
24:2024): E_out = ((R(E_in) - WET) / alpha)^(1/p), and the energy spread is scaled by the dR/dE ratio
(sigma_E_out = sigma_E_in (E_out/E_in)^(1-p)); scattering, straggling and nuclear losses in the shifter are
ignored (behind 74 mm WET 300 mm from the isocentre the spot is then ~30 % too narrow).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .dicom_common import (
    INVALID_PLAN_UID_SAID, RT_ION_PLAN_STORAGE, RT_PLAN_STORAGE, attribute_name, is_valid_uid, number_values,
    replacement_plan_uid,
)
from .errors import BeamModelError, DicomInputError, McprotonRuntimeWarning, McprotonWarning, recording_warnings, warn
from .plan_checks import check_plan, is_zero_mu_beam


# Bragg-Kleeman parameters for water (Bortfeld 1997; see mcproton reference bortfeld1997_parameters_water.csv)
BK_ALPHA_CM = 0.0022
BK_P = 1.77

# The LPS unit vectors L, P, S of a patient lying in each DICOM PatientPosition, in IEC 61217 table-top
# coordinates (Xs, Ys, Zs); see the module docstring for the definitions and the derivation.
_LPS_IN_TABLE = {
    "HFS": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "HFP": ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    "HFDL": ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
    "HFDR": ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    "FFS": ((-1, 0, 0), (0, 0, -1), (0, -1, 0)),
    "FFP": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    "FFDL": ((0, 0, -1), (1, 0, 0), (0, -1, 0)),
    "FFDR": ((0, 0, 1), (-1, 0, 0), (0, -1, 0)),
}
#: p_table = A @ p_LPS: the columns of A are L, P, S in table coordinates
_A_LPS_TO_TABLE = {k: np.array(v, dtype=float).T for k, v in _LPS_IN_TABLE.items()}
PATIENT_POSITIONS = tuple(_LPS_IN_TABLE)


def beams_by_position(beams) -> dict[str, list[str]]:
    """Beam names grouped by their set-up PatientPosition, from (name, position) pairs (upper case; beams without
    a position left out).  More than one group is a plan that cannot match one CT: :func:`mixed_positions`."""
    out: dict[str, list[str]] = {}
    for name, pos in beams:
        out.setdefault(str(pos or "").strip().upper(), []).append(str(name))
    out.pop("", None)
    return out


def mixed_positions(by_position: dict[str, list[str]], how: str = "") -> str:
    """Why a plan whose beams are set up in several positions (:func:`beams_by_position`) is refused by mcproton run
    and mcproton check; ``how`` says where the positions came from."""
    each = "; ".join(f"{', '.join(names)}: {pos}" for pos, names in sorted(by_position.items()))
    return (f"the plan's beams are set up in different patient positions ({each}){how}, but one CT shows the "
            "patient lying one way: one of them is wrong; check the plan's PatientSetupSequence")


@dataclass
class EnergyLayer:
    """One energy layer (a control point with non-zero spot weights)."""

    nominal_energy_mev: float
    spot_xy_mm: np.ndarray            # (n, 2) X, Y at the isocentre plane, IEC gantry coordinates
    spot_weights: np.ndarray          # (n,) ScanSpotMetersetWeights (plan units)
    spot_mu: np.ndarray               # (n,) MU (or particles if PrimaryDosimeterUnit == NP) per fraction
    number_of_paintings: int = 1
    scan_spot_tune_id: str = ""
    #: ScanningSpotSize (300A,0398): the spot's FWHM in air at the isocentre (x, y; mm) as the planning system states
    #: it (Type 3: None where the plan leaves it out); compared with the beam model's (plan_to_beams)
    scanning_spot_size_mm: tuple[float, float] | None = None
    #: per shifter {'id', 'setting', 'type', 'wet_mm', 'distance_mm', 'distance_cp'}: a WET or distance that this
    #: control point's IN item leaves out (Type 3) is the one the beam's last IN item stated ('distance_cp': where
    #: the distance was stated; None: nowhere); an OUT item's are its own
    range_shifter_settings: list[dict] = field(default_factory=list)
    control_point_index: int = 0


@dataclass
class IonBeam:
    number: int
    name: str
    machine: str
    radiation_type: str
    scan_mode: str
    primary_dosimeter_unit: str
    beam_meterset: float
    final_cumulative_meterset_weight: float
    gantry_angle_deg: float
    #: PatientSupportAngle (300A,0122), as the plan states it
    couch_angle_deg: float
    isocenter_mm: np.ndarray
    patient_position: str
    virtual_source_axis_distances_mm: tuple[float, float] | None
    snout_id: str = ""
    snout_position_mm: float | None = None
    range_shifter_ids: dict[int, str] = field(default_factory=dict)
    layers: list[EnergyLayer] = field(default_factory=list)
    treatment_delivery_type: str = "TREATMENT"
    #: TableTopEccentricAngle (300A,0125); 0 where the plan leaves it out
    table_top_eccentric_angle_deg: float = 0.0
    #: the ROI numbers of the boli the beam uses (ReferencedBolusSequence; None: not named); see
    #: :func:`warn_unmodelled_boli`
    bolus_roi_numbers: list = field(default_factory=list)

    @property
    def table_top_angle_deg(self) -> float:
        """The table top's rotation in the room (IEC TABLE TOP ECCENTRIC in IEC FIXED): the patient support angle plus
        the table-top eccentric angle (module docstring, Geometry).  The geometry uses this, not the support angle
        alone: a plan that turns the table top with its eccentric rotation was run as if the top were not turned
        (a helper's audit, 2026-12-05: the beam entered from the patient's left instead of from the feet)."""
        return float(self.couch_angle_deg + self.table_top_eccentric_angle_deg)

    @property
    def total_meterset(self) -> float:
        """The beam's meterset per fraction (the sum of its spots'), in its PrimaryDosimeterUnit: MU, or protons for
        NP (:data:`METERSET_UNITS`)."""
        return float(sum(l.spot_mu.sum() for l in self.layers))

    @property
    def total_mu(self) -> float | None:
        """The beam's MU per fraction; None for an NP beam, whose meterset counts protons (:attr:`total_meterset`).
        Before audit 27 (spotsem F2) an NP beam's protons were given here, and the check's report showed them as
        "MU"."""
        return self.total_meterset if self.primary_dosimeter_unit == "MU" else None

    @property
    def n_spots(self) -> int:
        return int(sum(len(l.spot_mu) for l in self.layers))


@dataclass
class RTIonPlan:
    sop_instance_uid: str
    frame_of_reference_uid: str
    label: str
    patient_name: str
    patient_id: str
    number_of_fractions: int | None
    beams: list[IonBeam]
    study_instance_uid: str = ""
    path: str = ""
    sop_instance_uid_valid: bool = True
    """False when the plan's SOPInstanceUID is not a valid instance UID (OpenTPS writes the SOP Class UID
    there): an RT Dose must not reference it (see dicom_common.is_valid_uid)."""
    notes: list[str] = field(default_factory=list)
    """What the reading supplied that the file does not say (a PatientPosition given by the user)."""
    skipped_beams: list[str] = field(default_factory=list)
    """Why each beam left out of the plan was left out (set-up and verification fields: not computed)."""
    skipped_beam_numbers: dict[int, str] = field(default_factory=dict)
    """The BeamNumbers of those beams, each with what it is ("delivers 0 MU", "is a set-up beam
    (TreatmentDeliveryType SETUP)"): a per-beam RT Dose naming one is not a dose the check computes
    (mcproton/_check/inputs.py, audit 26 F4)."""
    referenced_structure_sets: tuple[str, ...] = ()
    """The SOPInstanceUIDs of the RT Structure Sets the plan names (ReferencedStructureSetSequence): where the plan
    gives no FrameOfReferenceUID, ``mcproton run`` links it to the CT through the one of them given as plan.rtstruct
    (mcproton/_run/inputs.py :func:`~mcproton._run.inputs.plan_frame_unlinked`)."""
    warnings: list[str] = field(default_factory=list)
    """The mcproton warnings :func:`load_rtplan` issued while reading the plan (each message once):
    :func:`plan_to_beams` keeps them in each beam's ``meta["warnings"]``, from which :func:`mcproton.simulate` keeps
    them in its result, as ``mcproton run`` keeps them in its HDF5."""


#: what a beam's meterset counts, by PrimaryDosimeterUnit (300A,00B3): MU, or protons for NP (PS3.3 C.8.8.25); the
#: check's report labels a beam's meterset so (:func:`meterset_text`)
METERSET_UNITS = {"MU": "MU", "NP": "protons (NP)"}


def meterset_text(value: float | None, unit: str | None) -> str:
    """A beam's meterset with its unit (``unit``: its PrimaryDosimeterUnit, MU where not known): "5199.4 MU",
    "2.53 MU", "1.142e+11 protons (NP)"; "n/a" for None."""
    if value is None:
        return "n/a"
    v, unit = float(value), unit or "MU"
    number = f"{v:.4g}" if unit == "NP" else f"{v:.1f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{number} {METERSET_UNITS.get(unit, unit)}"


#: the largest BeamMeterset (300A,0086) read (MU or protons per fraction): a clinical beam holds up to ~1e5 MU or
#: ~1e11 protons; above, the value is damaged
BEAM_METERSET_MAX = 1e13


def _e(msg: str) -> DicomInputError:
    return DicomInputError(msg)


def _f(item, kw: str, where: str, default=None, *, required: bool = True):
    v = item.get(kw, None)
    if v is None or v == "":
        if default is not None or not required:
            return default
        raise _e(f"{where}: required attribute {kw} is missing or empty; the plan is incomplete")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise _e(f"{where}: {kw} = {v!r} is not a number; {_REDO}") from None
    if not np.isfinite(x):
        raise _e(f"{where}: {kw} is not finite ({v!r}); {_REDO}")
    return x


#: what to do with a plan whose numbers cannot be read
_REDO = "the plan file is damaged: export the plan again from the planning system"


#: the largest table-top pitch or roll or gantry pitch (deg, after reduction to -180..180) taken for 0: 1e-3 deg
#: tilts a 300 mm range by 0.005 mm
_TILT_TOL_DEG = 1e-3


def signed_angle_deg(deg: float) -> float:
    """``deg`` as the equivalent angle in [-180, 180): 360 -> 0, 359.5 -> -0.5."""
    return (float(deg) + 180.0) % 360.0 - 180.0


def _refuse_tilt(deg: float, kw: str, where: str) -> None:
    """Refuse a table-top pitch or roll or a gantry pitch (``kw``, read in ``where``) other than 0 modulo 360 deg:
    the dose would be computed for a patient lying flat on an untilted couch.  360 (and -360) is 0 and accepted
    (before 2026-12-05 it was refused as "not 0", CSI audit F7); the message gives a value outside -180..180 also as
    its signed equivalent (359.5 = -0.5 deg)."""
    signed = signed_angle_deg(deg)
    if abs(signed) <= _TILT_TOL_DEG:
        return
    same = "" if signed == float(deg) else f" (= {signed:+g} deg)"
    raise _e(f"{where}: {attribute_name(kw)} is {float(deg):g} deg{same}; table-top pitch and roll and gantry pitch "
             "are not supported (only 0, or 360): the dose would be computed for an untilted couch and gantry; "
             "plan without them or export the plan with 0")


#: the range of GantryAngle, PatientSupportAngle and TableTopEccentricAngle (deg): PS3.3 C.8.8.25 defines them
#: as the IEC 61217 rotations, 0 <= angle < 360; exactly 360 is accepted as 0 (written by some exporters)
ANGLE_RANGE_DEG = (0.0, 360.0)


def _refuse_out_of_range_angle(deg: float, kw: str, where: str) -> None:
    """Refuse a gantry, couch or table-top eccentric angle outside 0-360 deg (the hostile-inputs audit of
    2026-12-06, F2: GantryAngle 1e300 or 1e20 was reduced modulo 360 to an arbitrary direction, and 1800, a typo of
    180.0, read as 0: the opposite beam).  A value outside the range is a damaged or mistyped plan, not an angle to
    reduce; a decimal point lost (1800 for 180.0) is offered as the likely intent."""
    lo, hi = ANGLE_RANGE_DEG
    if lo <= deg <= hi:
        return
    hint = ""
    if hi < abs(deg) < 1e7:   # a decimal point lost: 1800 -> 180, 2700.5 -> 270.05
        v = abs(deg)
        while v > hi:
            v /= 10.0
        hint = f" (a typo of {'-' if deg < 0 else ''}{v:g}?)"
    raise _e(f"{where}: {attribute_name(kw)} is {deg:g} deg{hint}, outside {lo:g}-{hi:g} deg (PS3.3 C.8.8.25: the "
             "IEC 61217 angles lie in [0, 360)); an angle outside it is not reduced modulo 360, it would aim the "
             "beam from a direction nobody planned: check the beam's angles in the planning system and export the "
             "plan again")


def _floats(v, kw: str, where: str) -> np.ndarray:
    """The values of a numeric attribute; the message names the value at fault ("value 2 of 18 is 'nan'")."""
    if v is None:
        raise _e(f"{where}: {kw} is missing")
    if isinstance(v, (bytes, bytearray)):
        a = np.frombuffer(bytes(v[: len(v) // 4 * 4]), dtype="<f4").astype(float)
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise _e(f"{where}: {attribute_name(kw)} value {bad[0] + 1} of {a.size} is {a[bad[0]]}, which is not "
                     f"finite (NaN or infinity); {_REDO}")
        return a
    return np.array(number_values(v if hasattr(v, "__len__") and not isinstance(v, str) else [v], kw, where, _REDO),
                    dtype=float)


def _int(v, kw: str, where: str) -> int:
    """A whole number (IS) that is given (the caller's default replaces an absent one); a value such as 'nan' or
    '1.5' is refused with the attribute named (before: 'malformed RT Ion Plan (ValueError: invalid literal ...)')."""
    x = number_values([v], kw, where, _REDO)[0]
    if not x.is_integer():
        raise _e(f"{where}: {attribute_name(kw)} is {str(v).strip()!r}, not a whole number; {_REDO}")
    return int(x)


#: IsocenterPosition values of one beam closer than this (mm, per coordinate) are the same isocentre (a repeat)
_ISO_TOL_MM = 0.01


def _check_modulated_scan_mode_type(b, scan: str, where: str) -> None:
    """A MODULATED_SPEC beam's ModulatedScanModeType (300A,0309) must be STATIONARY (or absent): the weights are
    transported as stationary spots, while for LINEAR the beam delivers each weight moving from the previous spot
    position to this one and for LEAPING part of it on the way (PS3.3 C.8.8.25.8), which would be a wrong dose."""
    kind = str(b.get("ModulatedScanModeType", "") or "").strip().upper()
    if kind in ("", "STATIONARY"):
        return
    if scan == "MODULATED":   # the type belongs to MODULATED_SPEC (Type 1C): which of the two is meant is unknown
        raise _e(f"{where}: ScanMode MODULATED with ModulatedScanModeType (300A,0309) {kind!r}, which belongs to "
                 "ScanMode MODULATED_SPEC: the plan contradicts itself (stationary spots, or dose delivered while "
                 "the spot moves?); mcproton models stationary spots only: check the plan in the planning system and "
                 "export it again")
    if scan != "MODULATED_SPEC":
        return
    raise _e(f"{where}: ScanMode MODULATED_SPEC with ModulatedScanModeType (300A,0309) {kind!r}: only STATIONARY "
             "spots are modelled (the beam is off while it moves); line scanning (LINEAR) and LEAPING deliver dose "
             "between the spot positions, which mcproton does not compute")


def load_rtplan(path_or_dataset, *, patient_position: str | None = None,
                ignore_beam_limiting_devices: bool = False) -> RTIonPlan:
    """Read a DICOM RT Ion Plan (PBS) from a file path or a pydicom Dataset.

    ``patient_position``: the PatientPosition (HFS, HFP, ...) of the plan's patient setups that have none
    (OpenTPS writes it empty, which is refused otherwise): the user's word for what the file leaves out.  A plan
    without a PatientSetupSequence gets one setup per number its beams refer to.  A setup that has a position
    keeps it; one that says another position is refused.  The plan's ``notes`` say it was given.  (Whether it
    agrees with the CT's is checked later: mcproton run and mcproton check refuse a plan set up otherwise than
    its CT, and ``simulate`` warns.)

    ``ignore_beam_limiting_devices``: compute a beam whose control points place an MLC, jaws or an aperture as if
    the device were open (with a warning), instead of refusing it (config ``plan.ignore_beam_limiting_devices``).
    Beams whose TreatmentDeliveryType is not TREATMENT or CONTINUATION (set-up and verification fields) are left
    out of the plan (``skipped_beams`` says why for each; one that carries spot weights is also warned about).
    ``ignore_beam_limiting_devices`` takes True or False only: text such as "false" is refused (it would read as
    true and compute an MLC-shaped beam as open).

    The table-top translations (TableTopLateralPosition, TableTopLongitudinalPosition, TableTopVerticalPosition)
    are not read: each beam's IsocenterPosition in the patient frame defines its geometry (docs/patient_workflow.md),
    and nothing checks the couch shifts against the differences of the beams' isocentres."""
    import copy

    import pydicom

    from ..settings import _switch
    from .dicom_common import assume_input_charset, not_dicom_text, read_dicom_file

    ignore_beam_limiting_devices = _switch("load_rtplan ignore_beam_limiting_devices", ignore_beam_limiting_devices)

    if isinstance(path_or_dataset, pydicom.Dataset):
        ds, src = path_or_dataset, "<dataset>"
    else:
        src = str(path_or_dataset)
        if not Path(src).is_file():
            raise _e(f"RT plan file {src} does not exist")
        # strict: a file that ends early is an error (pydicom alone would read a shorter plan); a file without
        # the preamble and file meta header is read as a raw data set, as the RT Struct reader does
        ds = read_dicom_file(src)
        if ds is None:
            raise _e(not_dicom_text(src, "RT Ion Plan"))
        assume_input_charset(ds, src)   # said: no SpecificCharacterSet but non-ASCII names (read as UTF-8/Latin-1)
    given_note = ""
    if patient_position is not None:
        ds, given_note = _given_position(copy.deepcopy(ds) if isinstance(path_or_dataset, pydicom.Dataset) else ds,
                                         patient_position, src)
    try:
        with recording_warnings() as said:   # kept with the plan, for its beams' results (RTIonPlan.warnings)
            plan = _parse_plan(ds, src, ignore_beam_limiting_devices=ignore_beam_limiting_devices)
        plan.warnings = list(dict.fromkeys(said))
        if given_note:
            plan.notes.append(given_note)
        return plan
    except (DicomInputError, Warning):   # a warning turned into an error by the caller's filter is not the plan's fault
        raise
    except Exception as exc:  # malformed nested data: report instead of crashing with an obscure error
        raise _e(f"{src}: malformed RT Ion Plan ({type(exc).__name__}: {exc})") from exc


def _given_position(ds, position: str, src: str):
    """``ds`` with ``position`` in every patient setup whose PatientPosition is empty, and the note saying so."""
    pos = str(position).strip().upper()
    if pos not in PATIENT_POSITIONS:
        raise _e(f"patient position {position!r} is not one mcproton places beams for ({', '.join(PATIENT_POSITIONS)})")
    filled = []
    if not ds.get("PatientSetupSequence", None):   # none at all: one setup per number the beams refer to (or 1)
        from pydicom.dataset import Dataset

        refs = sorted({str(b.get("ReferencedPatientSetupNumber", "") or "").strip()
                       for b in ds.get("IonBeamSequence", None) or []} - {""},
                      key=lambda r: (not r.isdigit(), int(r) if r.isdigit() else 0, r)) or ["1"]
        items = []
        for r in refs:
            item = Dataset()
            item.PatientSetupNumber, item.PatientPosition = r, pos
            items.append(item)
        ds.PatientSetupSequence = items
        return ds, (f"PatientPosition {pos} as given, in patient setup(s) {', '.join(refs)} added: the plan has no "
                    "PatientSetupSequence")
    for s in ds.get("PatientSetupSequence", None) or []:
        has = str(s.get("PatientPosition", "") or "").strip().upper()
        num = s.get("PatientSetupNumber", "?")
        if not has:
            s.PatientPosition = pos
            filled.append(str(num))
        elif has != pos:
            raise _e(f"{src}: patient setup {num} says PatientPosition {has}, but the patient position given is "
                     f"{pos}: the plan's own position is used where it has one; leave the given one out")
    note = (f"PatientPosition {pos} as given, for patient setup(s) {', '.join(filled)} that have none in the plan"
            if filled else "")
    return ds, note


#: Beam modifiers that mcproton does not transport (PS3.3 C.8.8.25, RT Ion Beams Module): (count attribute, its
#: sequence, what it is).  A range shifter is transported (a slab); these are refused, not left out: an aperture
#: sharpens the penumbra of low-energy spots, a compensator or a ridge filter changes the range spot by spot, a wedge
#: changes it across the field
_UNMODELLED_MODIFIERS = (
    ("NumberOfBlocks", "IonBlockSequence", "block (aperture)"),
    ("NumberOfCompensators", "IonRangeCompensatorSequence", "range compensator"),
    ("NumberOfRangeModulators", "RangeModulatorSequence", "range modulator (ridge filter)"),
    ("NumberOfWedges", "IonWedgeSequence", "wedge"),
)

#: TreatmentDeliveryType (300A,00CE) values of beams that deliver the plan's dose; the others (SETUP, VERIFICATION,
#: OPEN_PORTFILM, TRTMT_PORTFILM) are left out of the dose (PS3.3 C.8.8.25; plan_checks._TREATMENT_TYPES likewise)
_TREATMENT_DELIVERY_TYPES = ("TREATMENT", "CONTINUATION", "")


def _check_no_beam_modifiers(b, where: str, *, ignore_beam_limiting_devices: bool = False) -> None:
    """Refuse a beam with an aperture, a range compensator, a range modulator or a wedge (NumberOfBlocks, ... > 0,
    or items in their sequences), with a beam-limiting device placed in its control points (an MLC, jaws, an
    adaptive aperture) or with a lateral spreading device other than a scanning magnet (a scatterer): mcproton
    transports range shifters only, and leaving the others out gives a plausible but wrong dose (before 2026-12-05
    they were not read at all: helpers' audits).  ``ignore_beam_limiting_devices`` (config
    ``plan.ignore_beam_limiting_devices``): compute a beam with a beam-limiting device as if it were open, with a
    warning, for a device known not to touch the beam."""
    for count, seq, what in _UNMODELLED_MODIFIERS:
        try:
            n = int(b.get(count, 0) or 0)
        except (TypeError, ValueError):
            n = 0
        n = max(n, len(b.get(seq, []) or []))
        if n > 0:
            raise _e(f"{where}: {count} is {n}: the beam has a {what}, which mcproton does not model (range "
                     "shifters only), so its dose would be computed without it; check this plan with a dose engine "
                     f"that models a {what}")
    for k, d in enumerate(b.get("LateralSpreadingDeviceSequence", None) or []):
        kind = str(d.get("LateralSpreadingDeviceType", "") or "").strip().upper()
        if kind != "MAGNET":
            raise _e(f"{where}: lateral spreading device {k + 1} ({str(d.get('LateralSpreadingDeviceID', '') or '')!r}"
                     f") is {kind or 'of no type'!r} ({attribute_name('LateralSpreadingDeviceType')}), not a scanning "
                     "MAGNET: a scatterer widens every spot, which mcproton does not model (the spots have the beam "
                     "model's size), so its dose would be computed without it; check this plan with a dose engine "
                     "that models a scatterer, or correct the device type if the beam is scanned by magnets only")
    _check_beam_limiting_devices(b, where, ignore_beam_limiting_devices)


def _check_beam_limiting_devices(b, where: str, ignore: bool) -> None:
    """Refuse a beam whose control points place a beam-limiting device (BeamLimitingDevicePositionSequence: an MLC,
    jaws, a Mevion adaptive aperture): it cuts the penumbra of the low-energy spots, which mcproton does not model.
    Whether positions leave a device open cannot be told from the plan alone (the plane they are given in, the
    collimator angle, the spots' size and halo), so any placed device is refused unless ``ignore``.  A device that
    IonBeamLimitingDeviceSequence lists but no control point places (PS3.3 requires its positions in the first) is
    taken as not in the beam, with a warning."""
    devices = [str(d.get("RTBeamLimitingDeviceType", "") or "?")
               for d in b.get("IonBeamLimitingDeviceSequence", None) or []]
    placed = [(ci, p) for ci, cp in enumerate(b.get("IonControlPointSequence", None) or [])
              for p in cp.get("BeamLimitingDevicePositionSequence", None) or []]
    if not placed:
        if devices:
            warn(f"{where}: {attribute_name('IonBeamLimitingDeviceSequence')} lists {', '.join(devices)}, but no "
                 f"control point gives its positions ({attribute_name('BeamLimitingDevicePositionSequence')}, "
                 "required in the first control point): the device is taken as not in the beam; if it shapes the "
                 "field, the dose is computed without it: check the plan in the planning system", McprotonWarning)
        return
    ci, pos = placed[0]
    kinds = sorted({str(p.get("RTBeamLimitingDeviceType", "") or "?") for _, p in placed})
    try:
        v = [float(x) for x in (pos.get("LeafJawPositions", None) or [])]
        span = f", its positions from {min(v):g} to {max(v):g} mm" if v else ""
    except (TypeError, ValueError):
        span = ""
    what = (f"a beam-limiting device ({', '.join(kinds)}: an MLC, jaws or an adaptive aperture) placed in control "
            f"point {ci} ({attribute_name('BeamLimitingDevicePositionSequence')}{span})")
    if ignore:
        warn(f"{where}: {what} is ignored (plan.ignore_beam_limiting_devices = true, or check's "
             "--ignore-beam-limiting-devices): the dose is computed as if the device were fully open; it is wrong "
             "wherever the device cuts the beam", McprotonWarning)
        return
    raise _e(f"{where}: the beam has {what}, which mcproton does not model (where it reaches the spots, it cuts "
             "the penumbra of the low-energy ones), so its dose would be computed without it; check this plan with a "
             "dose engine that models the device; if the device is known to be fully open (it touches no spot), set "
             "plan.ignore_beam_limiting_devices = true (mcproton run) or give --ignore-beam-limiting-devices "
             "(mcproton check) to compute the beam without it")


def _bolus_roi_numbers(b, where: str) -> list[int | None]:
    """The ROI numbers of the boli a beam uses (ReferencedBolusSequence > ReferencedROINumber; None where the plan
    says NumberOfBoli > 0 without naming the ROI)."""
    refs = []
    for rb in b.get("ReferencedBolusSequence", None) or []:
        v = rb.get("ReferencedROINumber", None)
        refs.append(_int(v, "ReferencedROINumber", f"{where} ReferencedBolusSequence") if v not in (None, "") else None)
    try:
        n = int(b.get("NumberOfBoli", 0) or 0)
    except (TypeError, ValueError):
        n = 0
    return refs + [None] * max(n - len(refs), 0)


def _roi_names(structure_set: str) -> dict[int, str]:
    """ROI number -> the ROI's name as the DVHs and the check's report give it (rtstruct.read_rtstruct, whose
    reading the run and the check keep); {} where it cannot be read: the name is only shown in a message, and a
    damaged file is refused with its own message where it is used."""
    if not structure_set:
        return {}
    from .rtstruct import read_rtstruct

    try:
        return {n: nm for nm, n in read_rtstruct(structure_set).roi_numbers.items()}
    except (OSError, ValueError):
        return {}


def warn_boli_of_structure_set(plan: "RTIonPlan", structure_set: str | None, overrides_applied: bool) -> list[str]:
    """:func:`warn_unmodelled_boli` with the ROI numbers whose override the RT Struct ``structure_set`` applies
    (``overrides_applied``; None where it does not, or there is none): what `mcproton run` and `mcproton check` warn.
    A damaged override warns nothing here: it is refused with its own message where it is applied."""
    if not any(b.bolus_roi_numbers for b in plan.beams):
        return []
    numbers = None
    if structure_set and overrides_applied:
        from .roi_overrides import roi_overrides

        try:
            numbers = {r["number"] for r in roi_overrides(structure_set)}
        except ValueError:
            return []
    return warn_unmodelled_boli(plan, numbers, structure_set=structure_set or "")


def warn_unmodelled_boli(plan: "RTIonPlan", overridden_roi_numbers=None, *, structure_set: str = "") -> list[str]:
    """Warn about each bolus the plan's beams use (ReferencedBolusSequence) whose ROI is not among
    ``overridden_roi_numbers``, the ROI numbers whose material override (of the RT Struct ``structure_set``) is
    applied to the CT; None: no structure set's overrides are applied.  A bolus is in the dose only through such an
    override or when it lay on the patient at the CT scan (then it is in the CT's numbers, which the plan cannot
    tell): it is warned about, naming the ROI and what to do, rather than refused.  Returns the messages."""
    said = []
    have = set(overridden_roi_numbers or ())
    names = _roi_names(structure_set) if any(n is not None and n not in have for b in plan.beams
                                             for n in b.bolus_roi_numbers) else {}
    for b in plan.beams:
        for n in b.bolus_roi_numbers:
            if n is not None and n in have:
                continue
            named = f" {names[n]!r}" if n in names else ""   # the structure set's name for it (verification N4)
            roi = (f"ROI number {n}{named}" if n is not None else
                   f"its ROI not named: {attribute_name('NumberOfBoli')} > 0")
            why = ("no RT Struct's material overrides are applied" if overridden_roi_numbers is None else
                   f"the RT Struct {structure_set or ''} applied gives {'that ROI' if n is not None else 'it'} no "
                   "material override (ROIPhysicalPropertiesSequence)")
            msg = (f"{plan.path} beam {b.number} ({b.name}): the plan uses a bolus "
                   f"({attribute_name('ReferencedBolusSequence')}, {roi}), but {why}: its dose is computed without the "
                   "bolus unless the bolus lay on the patient at the CT scan; give the structure set with the bolus "
                   "ROI and its material override (mcproton run: plan.rtstruct with plan.struct_overrides = "
                   "\"apply\"; mcproton check: the RT Struct in the folder or --struct, --struct-overrides apply)")
            warn(msg, McprotonWarning)
            said.append(msg)
    return said


def _angle_key(deg: float) -> float:
    """An angle as compared between control points: in -180..180, to 0.001 deg (0, 360 and -0 are one angle)."""
    r = round(signed_angle_deg(deg), 3) + 0.0
    return -180.0 if r == 180.0 else r


def _refuse_moving(first_seen: dict, key, ci: int, value: float, where: str, what: str) -> None:
    """Refuse a position (SnoutPosition, a shifter's IsocenterToRangeShifterDistance while IN: ``key``) that a later
    control point of the beam states with another value than the first one did (more than _ISO_TOL_MM): as for a
    moving isocentre, the slab would stay at one place for every layer (the snout's position is not read for the
    dose) and either value would be wrong for some of them.  ``first_seen`` keeps (control point, value) by key."""
    if key not in first_seen:
        first_seen[key] = (ci, value)
        return
    c0, v0 = first_seen[key]
    if abs(value - v0) > _ISO_TOL_MM:
        kw = key if isinstance(key, str) else key[0]
        raise _e(f"{where}: {attribute_name(kw)} of {what} changes between control points {c0} ({v0:g} mm) and {ci} "
                 f"({value:g} mm); a snout or range shifter that moves during a beam is not supported (mcproton places "
                 "one shifter position for all the beam's layers): check the plan in the planning system and export "
                 "it again")


#: RangeShifterSetting (300A,0362) values (upper case) read as IN and as OUT; the attribute is "machine specific"
#: free text, so anything else (RETRACTED, NONE, INSERTED, 2) is refused rather than guessed (before 2026-12-05 any
#: value but OUT, 0 or empty was read as IN: a helper's audit)
_SHIFTER_IN = ("IN", "1")
_SHIFTER_OUT = ("OUT", "0", "")


def _shifter_setting(value, rs_id: str, where: str) -> str:
    """A RangeShifterSetting as "IN" or "OUT": IN or OUT in any case, or the numbers 1 and 0 (also as 1.0, 0.0)."""
    text = str(value if value is not None else "").strip().upper()
    try:
        text = str(int(float(text))) if float(text) in (0.0, 1.0) else text
    except ValueError:
        pass
    if text in _SHIFTER_IN:
        return "IN"
    if text in _SHIFTER_OUT:
        return "OUT"
    raise _e(f"{where}: {attribute_name('RangeShifterSetting')} of range shifter {rs_id!r} is {str(value)!r}, neither "
             "IN nor OUT (nor 1 or 0), so whether the shifter is in the beam is unknown (its WET would move every "
             "layer's range): export the plan with IN or OUT, or set it so, e.g. with DCMTK's dcmodify")


def _shifter_settings(rss, ref: int, rs_id: str, rs_type: str, stated: dict, ci: int, where: str) -> dict:
    """A shifter's state from RangeShifterSettingsSequence item ``rss`` of control point ``ci``: its setting and, for
    the Type 3 RangeShifterWaterEquivalentThickness (300A,0366) and IsocenterToRangeShifterDistance (300A,0364), the
    value the item states, else (an IN item) the one the beam's last IN item stated (``stated``, by shifter number,
    updated here; ``distance_cp``: the control point that stated the distance).  A later control point gives the
    sequence only where the setting changes or to repeat it (PS3.3 C.8.8.25), and an item that leaves a Type 3 value
    out does not say the shifter moved.  Before audit 27 (spotsem F1) such an item dropped the plan's distance, and
    the later layers took the beam model's isocenter_distance_mm: one beam's slab at two places, without a word.

    Only IN items' values are carried: what an OUT item states says nothing about where an inserted slab sits or what
    its WET is (a planning system may write a placeholder there, e.g. 0 mm, which carried would put the slab's face
    at the isocentre, inside the patient: the review of audit 27's merges, R2).  An IN item that leaves the distance
    out where only OUT items stated one takes the beam model's distance, or is refused without one (as before the
    carrying).  One that leaves it out after an OUT item stated another distance than the last IN item is refused:
    where the shifter sits then is unknown."""
    setting = _shifter_setting(rss.get("RangeShifterSetting", ""), rs_id, where)
    wet = rss.get("RangeShifterWaterEquivalentThickness", None)
    dist = rss.get("IsocenterToRangeShifterDistance", None)
    wet_mm = float(wet) if wet not in (None, "") else None
    dist_mm = float(dist) if dist not in (None, "") else None
    known = stated.setdefault(ref, {"wet_mm": None, "distance_mm": None, "distance_cp": None, "out": None})
    if setting == "OUT":   # its own values only (not used for a dose), kept aside for the check below
        if dist_mm is not None:
            known["out"] = (ci, dist_mm)
        return {"id": rs_id, "setting": setting, "type": rs_type, "wet_mm": wet_mm, "distance_mm": dist_mm,
                "distance_cp": None if dist_mm is None else ci}
    if wet_mm is not None:
        known["wet_mm"] = wet_mm
    if dist_mm is not None:
        known["distance_mm"], known["distance_cp"] = dist_mm, ci
    elif known["out"] is not None and known["distance_mm"] is not None \
            and abs(known["out"][1] - known["distance_mm"]) > _ISO_TOL_MM:
        c_out, v_out = known["out"]
        raise _e(f"{where}: range shifter {rs_id!r} is IN again without "
                 f"{attribute_name('IsocenterToRangeShifterDistance')}; its last IN item (control point "
                 f"{known['distance_cp']}) states {known['distance_mm']:g} mm, but control point {c_out}'s item "
                 f"states {v_out:g} mm since, with the shifter OUT, so where it sits now is unknown (mcproton places "
                 "one shifter position for all the beam's layers): state the distance in this control point's "
                 "RangeShifterSettingsSequence item (check the plan in the planning system and export it again)")
    known["out"] = None
    return {"id": rs_id, "setting": setting, "type": rs_type, "wet_mm": known["wet_mm"],
            "distance_mm": known["distance_mm"], "distance_cp": known["distance_cp"]}


def _skip_non_treatment_beam(b, num: int, ttype: str, src: str, meterset: dict) -> str:
    """Leave out a beam whose TreatmentDeliveryType is not a treatment one (a set-up or verification field: Eclipse
    exports kV set-up fields so, without spots and often outside the fraction group) before any check of its scan
    mode, meterset or spots, and say so (returned; a warning too where it carries spots): it never adds to the
    dose, spots or not (before
    2026-12-05 a set-up field refused the whole plan as "passive scattering" or "no BeamMeterset", and one with
    spots was added to the dose: a helper's audit)."""
    from .plan_checks import _weights

    name = str(b.get("BeamName", "") or "")
    kind = "a set-up beam" if ttype == "SETUP" else "not a treatment beam"
    try:
        spots = any(_weights(cp) > 0 for cp in b.get("IonControlPointSequence", None) or [])
    except (TypeError, ValueError):
        spots = False
    carries = ""
    if spots:
        mu = f", BeamMeterset {meterset[num]:g}" if num in meterset else ""
        carries = (f"; it carries spot weights{mu}, which are not added to the plan's dose (a set-up or verification "
                   "field delivers none of the treatment)")
    msg = (f"{src}: beam {num} {name!r} is {kind} ({attribute_name('TreatmentDeliveryType')} {ttype}): not "
           f"computed{carries}")
    if spots:   # an oddity: a warning, kept in the run's summary and the check's report
        warn(msg, McprotonWarning)
    # without spots it is the routine kV set-up field of an Eclipse export: a note only (RTIonPlan.skipped_beams;
    # `mcproton run` prints it, the check logs it with its pairing), so that every such plan's record does not carry
    # a warning about a harmless fact (the verification audit of 2026-12-05, N3)
    return msg


def _spot_tune_and_size(cp, state: dict) -> None:
    """ScanSpotTuneID (300A,0390) and ScanningSpotSize (300A,0398) of control point ``cp`` into ``state``: each holds
    until a later control point changes it (the tune is Type 1C, "required ... if Scan Spot Tune ID changes during
    Beam", PS3.3 C.8.8.25).  A ScanningSpotSize that is not two positive numbers is dropped (Type 3, used for a
    consistency check only), so the check is not done with it."""
    if cp.get("ScanSpotTuneID", None) not in (None, ""):
        state["tune"] = str(cp.ScanSpotTuneID).strip()
    size = cp.get("ScanningSpotSize", None)
    if size not in (None, ""):
        try:
            v = np.array([float(x) for x in ([size] if isinstance(size, (int, float, str, bytes)) else size)])
        except (TypeError, ValueError):
            v = np.array([])
        ok = v.size == 2 and bool(np.all(np.isfinite(v))) and bool(np.all(v > 0))
        state["spot_size"] = (float(v[0]), float(v[1])) if ok else None


def _parse_plan(ds, src: str, *, ignore_beam_limiting_devices: bool = False) -> RTIonPlan:
    sop = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop == RT_PLAN_STORAGE or ("BeamSequence" in ds and "IonBeamSequence" not in ds):
        raise _e(f"{src}: this is a photon/electron RT Plan (RT Plan Storage), not an RT Ion Plan; mcproton "
                 "computes proton pencil-beam-scanning plans only")
    if sop and sop != RT_ION_PLAN_STORAGE:
        raise _e(f"{src}: SOP class {sop} (Modality {modality or '?'}) is not RT Ion Plan Storage "
                 f"({RT_ION_PLAN_STORAGE}); give an RT Ion Plan")
    if "IonBeamSequence" not in ds or len(ds.IonBeamSequence) == 0:
        raise _e(f"{src}: the plan has no IonBeamSequence (no ion beams)")
    geom = str(ds.get("RTPlanGeometry", "PATIENT"))
    if geom not in ("PATIENT", ""):
        raise _e(f"{src}: RTPlanGeometry {geom!r}: only PATIENT plans (isocentre in the CT frame) are supported")

    setups = {}
    for s in ds.get("PatientSetupSequence", []) or []:
        try:
            setups[int(s.get("PatientSetupNumber", 0) or 0)] = str(s.get("PatientPosition", "") or "")
        except (TypeError, ValueError):
            continue

    meterset = {}
    n_fx = None
    fgs = ds.get("FractionGroupSequence", None)
    if fgs:
        fg = fgs[0]
        try:
            n_fx = int(fg.get("NumberOfFractionsPlanned", 0) or 0) or None
        except (TypeError, ValueError):
            n_fx = None
        for rb in fg.get("ReferencedBeamSequence", []) or []:
            num = rb.get("ReferencedBeamNumber", None)
            if num is None:
                continue
            if "BeamMeterset" in rb and rb.BeamMeterset not in (None, ""):
                meterset[_int(num, "ReferencedBeamNumber", f"{src} FractionGroupSequence")] = _f(
                    rb, "BeamMeterset", f"{src} ReferencedBeam {num}")

    beams = []
    skipped: list[str] = []
    skipped_numbers: dict[int, str] = {}
    untilted: list[str] = []     # beams whose first control point leaves out the table-top pitch or roll angle
    untilted_kws: set[str] = set()
    no_vsad: list[str] = []      # beams whose VirtualSourceAxisDistances are [0, 0] (OpenTPS: no value)
    for bi, b in enumerate(ds.IonBeamSequence):
        where = f"{src} beam #{bi + 1}"
        num = int(_f(b, "BeamNumber", where, default=bi + 1))
        where = f"{src} beam {num} ({b.get('BeamName', '')})"
        ttype = str(b.get("TreatmentDeliveryType", "") or "").strip().upper()
        if ttype not in _TREATMENT_DELIVERY_TYPES:
            skipped.append(_skip_non_treatment_beam(b, num, ttype, src, meterset))
            skipped_numbers[num] = (f"is {'a set-up beam' if ttype == 'SETUP' else 'not a treatment beam'} "
                                    f"(TreatmentDeliveryType {ttype})")
            continue
        if is_zero_mu_beam(b, meterset.get(num)):   # a field left at 0 MU: it delivers nothing, left out as above
            msg = (f"{src}: beam {num} {str(b.get('BeamName', '') or '')!r} delivers 0 MU "
                   "(FinalCumulativeMetersetWeight and BeamMeterset 0, no spot weight): not computed")
            warn(msg, McprotonWarning)
            skipped.append(msg)
            skipped_numbers[num] = "delivers 0 MU"
            continue
        rad = str(b.get("RadiationType", "") or "")
        if rad != "PROTON":
            raise _e(f"{where}: RadiationType {rad!r}; only PROTON beams are supported")
        scan = str(b.get("ScanMode", "") or "")
        if scan == "UNIFORM":
            raise _e(f"{where}: ScanMode UNIFORM (uniform scanning) is not supported; only pencil-beam scanning "
                     "(MODULATED)")
        if scan in ("NONE", ""):
            raise _e(f"{where}: ScanMode {scan or 'missing'!r} (passive scattering) is not supported; only "
                     "pencil-beam scanning (MODULATED)")
        if scan not in ("MODULATED", "MODULATED_SPEC"):
            raise _e(f"{where}: unknown ScanMode {scan!r}")
        _check_modulated_scan_mode_type(b, scan, where)
        _check_no_beam_modifiers(b, where, ignore_beam_limiting_devices=ignore_beam_limiting_devices)
        boli = _bolus_roi_numbers(b, where)
        unit = str(b.get("PrimaryDosimeterUnit", "") or "").strip()
        if not unit:
            raise _e(f"{where}: PrimaryDosimeterUnit (300A,00B3), a required (Type 1) attribute of the RT Ion Beams "
                     "module, is missing or empty, so the plan does not say whether its BeamMeterset and spot "
                     "weights count MU or protons (NP); taking one for the other changes the dose about 1e6-fold "
                     "(the protons per MU).  Export the plan again, or set the unit the planning system used, e.g. "
                     f"with DCMTK: dcmodify -m \"(300a,03a2)[{bi}].(300a,00b3)=MU\" plan.dcm (or NP)")
        if unit not in ("MU", "NP"):
            raise _e(f"{where}: PrimaryDosimeterUnit {unit!r} is not MU or NP")
        fcmw = _f(b, "FinalCumulativeMetersetWeight", where)
        if fcmw <= 0:
            raise _e(f"{where}: FinalCumulativeMetersetWeight {fcmw} must be > 0")
        if num not in meterset:
            raise _e(f"{where}: the fraction group gives no {attribute_name('BeamMeterset')} for beam {num} "
                     f"(FractionGroupSequence (300A,0070), its ReferencedBeamSequence (300C,0004) item of "
                     f"ReferencedBeamNumber {num}), so the {METERSET_UNITS[unit]} per fraction that the beam's spot "
                     "weights stand for are unknown: the plan is incomplete or damaged; export it again from the "
                     "planning system")
        bm = meterset[num]
        if bm < 0 or bm > BEAM_METERSET_MAX:
            raise _e(f"{where}: {attribute_name('BeamMeterset')} of beam {num} in the fraction group is {bm:g} "
                     f"{METERSET_UNITS[unit]} per fraction (PrimaryDosimeterUnit {unit}); a beam's meterset must be "
                     f"> 0 and at most {BEAM_METERSET_MAX:.0e} (MU or protons per fraction): the plan is damaged (a "
                     "hand edit or a faulty export); export it again from the planning system")
        vsad = None
        if "VirtualSourceAxisDistances" in b and b.VirtualSourceAxisDistances is not None:
            v = _floats(b.VirtualSourceAxisDistances, "VirtualSourceAxisDistances", where)
            if v.size == 2 and np.all(v == 0):  # OpenTPS writes [0, 0] for "not given": plan_to_beams uses the model's
                no_vsad.append(f"{num}")         # said once for all beams, below (audit 18b F5)
            elif v.size != 2 or np.any(v <= 0):
                    raise _e(f"{where}: VirtualSourceAxisDistances {v.tolist()} must be two positive distances (mm)")
            else:
                vsad = (float(v[0]), float(v[1]))
        rs_ids, rs_types = {}, {}
        for r in b.get("RangeShifterSequence", []) or []:
            k = _int(r.get("RangeShifterNumber", len(rs_ids) + 1) or 0, "RangeShifterNumber", where)
            rs_ids[k] = str(r.get("RangeShifterID", ""))
            rs_types[k] = str(r.get("RangeShifterType", "") or "").strip().upper()
        snout = b.get("SnoutSequence", None)
        snout_id = str(snout[0].get("SnoutID", "")) if snout else ""
        pos = setups.get(_int(b.get("ReferencedPatientSetupNumber", 0) or 0, "ReferencedPatientSetupNumber", where), "")
        if not pos and len(setups) == 1:
            pos = next(iter(setups.values()))
        cps = b.get("IonControlPointSequence", None)
        if not cps:
            raise _e(f"{where}: no IonControlPointSequence")
        state: dict = {"energy": None, "gantry": None, "couch": None, "iso": None, "snout": None,
                       "rs": {}, "pitch": 0.0, "roll": 0.0, "gpitch": 0.0, "ecc": 0.0, "tune": "", "spot_size": None}
        #: per shifter, its WET and IsocenterToRangeShifterDistance as last stated (_shifter_settings)
        rs_stated: dict[int, dict] = {}
        layers = []
        angles_seen = set()
        iso_first: tuple[int, np.ndarray] | None = None   # (control point, IsocenterPosition) first stated
        #: (control point, value) first stated of SnoutPosition and of each shifter's IsocenterToRangeShifterDistance
        first_seen: dict = {}
        for ci, cp in enumerate(cps):
            cw = f"{where} control point {ci}"
            if cp.get("NominalBeamEnergy", None) not in (None, ""):
                state["energy"] = _f(cp, "NominalBeamEnergy", cw)
            for kw, key in (("GantryAngle", "gantry"), ("PatientSupportAngle", "couch")):
                if cp.get(kw, None) not in (None, ""):
                    if ci > 0 and state[key] is None:
                        raise _e(f"{cw}: {attribute_name(kw)} is given here but missing from the first control point "
                                 "(it is required there, PS3.3 C.8.8.25), so the angle of the control points before "
                                 f"it is unknown: the plan is damaged, export it again")
                    state[key] = _f(cp, kw, cw)
                    _refuse_out_of_range_angle(state[key], kw, cw)
            if cp.get("IsocenterPosition", None) not in (None, ""):
                if ci > 0 and iso_first is None:   # 1C in the first control point, as the angles above
                    raise _e(f"{cw}: {attribute_name('IsocenterPosition')} is given here but missing from the first "
                             "control point (it is required there, PS3.3 C.8.8.25; a later control point may only "
                             "repeat it), so the isocentre of the control points before it, and whether this one "
                             "moved it, is unknown: the plan is damaged, export it again")
                iso = _floats(cp.IsocenterPosition, "IsocenterPosition", cw)
                if iso.size != 3:
                    raise _e(f"{cw}: IsocenterPosition must have 3 values; got {iso.tolist()}")
                if iso_first is None:
                    iso_first = (ci, iso)
                elif np.max(np.abs(iso - iso_first[1])) > _ISO_TOL_MM:
                    raise _e(f"{where}: IsocenterPosition (300A,012C) changes between control points "
                             f"{iso_first[0]} {iso_first[1].tolist()} and {ci} {iso.tolist()} (mm); an isocentre that "
                             "moves during a beam is not supported (each beam has one, and either value would move all "
                             "its layers): check the plan in the planning system and export it again")
                state["iso"] = iso
            if cp.get("SnoutPosition", None) not in (None, ""):
                state["snout"] = _f(cp, "SnoutPosition", cw)
                _refuse_moving(first_seen, "SnoutPosition", ci, state["snout"], where, "the snout")
            # the table-top translations (TableTopLateral/Longitudinal/VerticalPosition) are not read: the
            # IsocenterPosition in the patient frame places the beam (load_rtplan; csi audit F5)
            for kw, key in (("TableTopPitchAngle", "pitch"), ("TableTopRollAngle", "roll"),
                            ("GantryPitchAngle", "gpitch"), ("TableTopEccentricAngle", "ecc")):
                if cp.get(kw, None) not in (None, ""):
                    state[key] = _f(cp, kw, cw)
                    if key != "ecc":
                        _refuse_tilt(state[key], kw, cw)
                    else:
                        _refuse_out_of_range_angle(state[key], kw, cw)
            for rss in cp.get("RangeShifterSettingsSequence", []) or []:
                ref = _int(rss.get("ReferencedRangeShifterNumber", 0) or 0, "ReferencedRangeShifterNumber", cw)
                rs_id = rs_ids.get(ref, str(ref))
                state["rs"][ref] = _shifter_settings(rss, ref, rs_id, rs_types.get(ref, ""), rs_stated, ci, cw)
                if state["rs"][ref]["setting"] == "IN" and state["rs"][ref]["distance_mm"] is not None:
                    # a distance carried from an earlier IN item is checked as a stated one (the same: an OUT item in
                    # between that stated another is refused by _shifter_settings)
                    _refuse_moving(first_seen, ("IsocenterToRangeShifterDistance", ref), ci,
                                   state["rs"][ref]["distance_mm"], where, f"range shifter {rs_id!r}")
            if state["gantry"] is not None:   # the same angle modulo 360 deg is the same angle (0 and 360)
                angles_seen.add(tuple(_angle_key(a) for a in (state["gantry"], state["couch"] or 0.0, state["ecc"])))
            _spot_tune_and_size(cp, state)
            w = cp.get("ScanSpotMetersetWeights", None)
            if w is None:
                continue
            w = _floats(w, "ScanSpotMetersetWeights", cw)
            if w.size == 0 or not np.any(w != 0):
                continue
            if np.any(w < 0):
                raise _e(f"{cw}: negative ScanSpotMetersetWeights")
            xy = _floats(cp.get("ScanSpotPositionMap", None), "ScanSpotPositionMap", cw)
            if xy.size != 2 * w.size:
                raise _e(f"{cw}: ScanSpotPositionMap has {xy.size} values for {w.size} spot weights (needs 2 per spot)")
            nsp = cp.get("NumberOfScanSpotPositions", None)
            n_sp = _int(nsp, "NumberOfScanSpotPositions", cw) if nsp not in (None, "") else w.size
            if n_sp != w.size:
                raise _e(f"{cw}: NumberOfScanSpotPositions {n_sp} differs from the {w.size} spot weights")
            if np.any(np.abs(xy) > 1000):
                raise _e(f"{cw}: spot positions beyond +-1000 mm at isocentre are not plausible")
            if state["energy"] is None:
                raise _e(f"{cw}: no NominalBeamEnergy in this or an earlier control point")
            if not (1.0 <= state["energy"] <= 350.0):
                raise _e(f"{cw}: NominalBeamEnergy {state['energy']} MeV is outside 1-350 MeV")
            np_v = cp.get("NumberOfPaintings", None)   # Type 1; a plan that leaves it out is read as 1, as before
            npaint = _int(np_v, "NumberOfPaintings", cw) if np_v not in (None, "") else 1
            if npaint < 1:
                raise _e(f"{cw}: {attribute_name('NumberOfPaintings')} is {npaint}; it must be >= 1 (the number of "
                         f"times the layer is scanned): {_REDO}")
            # (a setting naming no shifter of the beam is refused by check_plan, with its own message)
            active = [r["id"] for ref, r in state["rs"].items() if r["setting"] == "IN" and ref in rs_ids]
            if len(active) > 1:   # a merged beam-model entry would match neither RangeShifterID: not offered
                raise _e(f"{cw}: {len(active)} range shifters are IN at once ({', '.join(map(repr, active))}); "
                         "mcproton transports one range shifter per layer, so this beam cannot be computed: check it "
                         "with a dose engine that models stacked range shifters, or re-plan it with one shifter")
            layers.append(EnergyLayer(
                nominal_energy_mev=float(state["energy"]), spot_xy_mm=xy.reshape(-1, 2), spot_weights=w,
                spot_mu=bm * w / fcmw, number_of_paintings=npaint,
                scan_spot_tune_id=state["tune"], scanning_spot_size_mm=state["spot_size"],
                range_shifter_settings=[dict(v) for v in state["rs"].values()], control_point_index=ci))
        for kw, key in (("GantryAngle", "gantry"), ("IsocenterPosition", "iso")):
            if state[key] is None:   # 1C in the first control point (given only later: refused above)
                raise _e(f"{where}: {attribute_name(kw)} is missing from the first control point and from every "
                         "later one (it is required in the first, PS3.3 C.8.8.25), so the beam cannot be placed: "
                         "the plan is damaged (a stripped tag), export it again from the planning system")
        if state["couch"] is None:   # 1C in the first control point; every planning system here writes it
            raise _e(f"{where}: {attribute_name('PatientSupportAngle')} is missing from the first control point and "
                     "from every later one (it is required in the first, PS3.3 C.8.8.25), so the couch angle is "
                     "unknown: taking it as 0 would compute a couch-kicked (non-coplanar) beam from another "
                     "direction; the plan is damaged (a stripped tag), export it again from the planning system")
        no_tilt = [kw for kw in ("TableTopPitchAngle", "TableTopRollAngle")
                   if cps[0].get(kw, None) in (None, "")]
        if no_tilt:
            untilted.append(f"{num}")
            untilted_kws.update(no_tilt)
        if len(angles_seen) > 1:
            raise _e(f"{where}: gantry/couch/table-top eccentric angles change between control points "
                     f"{sorted(angles_seen)} (deg, as -180 to 180); arc delivery is not supported")
        if not layers:
            raise _e(f"{where}: no control point has non-zero ScanSpotMetersetWeights (empty beam)")
        beams.append(IonBeam(
            number=num, name=str(b.get("BeamName", "") or ""), machine=str(b.get("TreatmentMachineName", "") or ""),
            radiation_type=rad, scan_mode=scan, primary_dosimeter_unit=unit, beam_meterset=bm,
            final_cumulative_meterset_weight=fcmw, gantry_angle_deg=float(state["gantry"]),
            couch_angle_deg=float(state["couch"]), isocenter_mm=np.asarray(state["iso"], float),
            patient_position=pos, virtual_source_axis_distances_mm=vsad, snout_id=snout_id,
            snout_position_mm=state["snout"], range_shifter_ids=rs_ids, layers=layers,
            treatment_delivery_type=str(b.get("TreatmentDeliveryType", "TREATMENT") or "TREATMENT"),
            table_top_eccentric_angle_deg=float(state["ecc"]), bolus_roi_numbers=boli))
    if no_vsad:
        warn(f"{src}: beam(s) {', '.join(no_vsad)}: VirtualSourceAxisDistances (300A,030A) = [0, 0] (as OpenTPS "
             "writes it: no value); the beam model's virtual source-axis distances are used instead", McprotonWarning)
    if untilted:   # OpenTPS writes neither; Eclipse and RayStation write 0 (tests/data/dicom)
        warn(f"{src}: beam(s) {', '.join(untilted)}: {' and '.join(attribute_name(k) for k in sorted(untilted_kws))} "
             "missing from the first control point (required there, PS3.3 C.8.8.25; OpenTPS leaves them out): "
             "taken as 0, a flat table top; if the plan tilts the couch, export it again with the angles",
             McprotonWarning)
    if not beams:
        raise _e(f"{src}: the plan has no treatment beam that delivers dose (every beam is a set-up or verification "
                 "one (TreatmentDeliveryType) or is left at 0 MU); give the plan that holds the treatment beams")
    check_plan(ds, src)  # consistency of the whole plan (plan_checks), before any transport
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    uid_ok = is_valid_uid(sop_uid)
    if not uid_ok:
        # the RT Dose written later references a UID derived from it: said here, once (audit 18b F5: the same fact
        # was warned again on writing RD_mc.dcm; rtdose._plan_reference keeps silent when this was said)
        warn(f"{src}: {INVALID_PLAN_UID_SAID} {sop_uid!r} is not a valid instance UID (OpenTPS writes the SOP Class "
             "UID there); an RT Dose cannot reference this plan by it"
             + (f": an RT Dose mcproton writes for it references {replacement_plan_uid(sop_uid)} instead, so a "
                "planning system will not link them automatically; re-export the plan with a valid SOPInstanceUID "
                "to link them" if sop_uid else ""), McprotonWarning)
    return RTIonPlan(
        sop_instance_uid=sop_uid, frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        label=str(ds.get("RTPlanLabel", "")), patient_name=str(ds.get("PatientName", "")),
        patient_id=str(ds.get("PatientID", "")), number_of_fractions=n_fx, beams=beams,
        study_instance_uid=str(ds.get("StudyInstanceUID", "")), path=src, sop_instance_uid_valid=uid_ok,
        skipped_beams=skipped, skipped_beam_numbers=skipped_numbers,
        referenced_structure_sets=_referenced_structure_sets(ds))


def _referenced_structure_sets(ds) -> tuple[str, ...]:
    """:attr:`RTIonPlan.referenced_structure_sets` of a plan's data set."""
    return tuple(uid for r in ds.get("ReferencedStructureSetSequence", []) or []
                 if (uid := str(r.get("ReferencedSOPInstanceUID", "") or "")))


# --------------------------------------------------------------------------------------- geometry
def _rot_y(deg: float) -> np.ndarray:
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def gantry_to_lps_matrix(gantry_deg: float, couch_deg: float, patient_position: str = "HFS") -> np.ndarray:
    """3x3 matrix whose columns are the IEC gantry axes Xg, Yg, Zg expressed in the patient LPS frame.

    ``patient_position`` is a DICOM PatientPosition (HFS, HFP, HFDL, HFDR, FFS, FFP, FFDL, FFDR); see the
    module docstring (Geometry) for the convention and its sources.
    """
    pos = (patient_position or "").strip().upper()
    if pos not in _A_LPS_TO_TABLE:
        what = "an empty patient position" if not pos else f"patient position {patient_position!r}"
        raise _e(f"{what} is not supported (the IEC 61217 -> patient mapping is defined for "
                 f"{', '.join(PATIENT_POSITIONS)}); give the plan's PatientSetupSequence a PatientPosition "
                 "from this list")
    a = _A_LPS_TO_TABLE[pos]                     # LPS -> table
    g_in_f = _rot_y(gantry_deg)                  # gantry axes in fixed coordinates
    f_to_table = _rot_z(couch_deg).T             # fixed -> table
    return a.T @ f_to_table @ g_in_f


def beam_direction_lps(gantry_deg: float, couch_deg: float, patient_position: str = "HFS") -> np.ndarray:
    """Unit vector of the central beam axis (source -> isocentre) in LPS."""
    return -gantry_to_lps_matrix(gantry_deg, couch_deg, patient_position)[:, 2]


#: the words for travelling along +x, +y, +z of LPS (and, swapped, along -x, -y, -z)
_LPS_WORDS = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))


def direction_words(direction_lps) -> str:
    """Where a beam travels in the patient, in words: each LPS component of at least 0.01, largest first, as
    "from -> to" with its size below 1 ("anterior -> posterior 0.71, left -> right 0.50, superior -> inferior 0.50")."""
    d = np.asarray(direction_lps, float)
    parts = []
    for k in np.argsort(-np.round(np.abs(d), 4), kind="stable"):   # equal sizes in x, y, z order
        if abs(d[k]) >= 0.01:
            a, b = _LPS_WORDS[k] if d[k] > 0 else _LPS_WORDS[k][::-1]
            parts.append(f"{a} -> {b}" + (f" {abs(d[k]):.2f}" if abs(d[k]) < 0.9995 else ""))
    return ", ".join(parts)


def _g(v) -> str:
    return "not given" if v is None else f"{v:g}"


def beam_geometry(meta: dict | None) -> dict:
    """Where a plan's beam (``plan_to_beams``: its ``meta``) points in the room and in the patient, for the records
    of a run (its JSON summary, the HDF5 provenance's ``beam`` / ``summed_beams``, ``--check-config``): gantry,
    couch and table-top eccentric angles (deg), patient position, isocentre (mm, LPS), the central axis's direction
    in LPS and in words, and the range shifter(s) its layers carry (id, material, physical and water-equivalent
    thickness, distance from the isocentre to the downstream face, mm), and ``geometry``: all of it in one line.
    A reader checks a non-coplanar plan's couch kicks here (a beam named "Field 1" may be a vertex field).  {} for
    a beam that is not a plan's (a config's [beam] gives its direction itself)."""
    meta = meta or {}
    if "gantry_angle_deg" not in meta or "beam_direction" not in meta:
        return {}
    d = [round(float(v), 4) + 0.0 for v in meta["beam_direction"]]   # + 0.0: no -0.0
    iso = [round(float(v), 2) + 0.0 for v in meta.get("isocenter_mm", (np.nan,) * 3)]
    angles = {k: round(float(meta.get(k, 0.0)), 4) + 0.0
              for k in ("gantry_angle_deg", "couch_angle_deg", "table_top_eccentric_angle_deg")}
    shifters = [{"id": str(rid), "material": str(v.get("material", "")),
                 "thickness_mm": round(float(v.get("thickness_mm", 0.0)), 3),
                 "wet_mm": None if v.get("wet_mm") is None else round(float(v["wet_mm"]), 3),
                 "isocenter_distance_mm": (None if v.get("isocenter_distance_mm") is None
                                           else round(float(v["isocenter_distance_mm"]), 2))}
                for rid, v in (meta.get("range_shifters") or {}).items()]
    words = direction_words(d)
    rs = ("; range shifter " + ", ".join(
        f"{r['id']} ({r['material'] or 'material not given'} {r['thickness_mm']:g} mm, WET {_g(r['wet_mm'])} mm, "
        f"downstream face {_g(r['isocenter_distance_mm'])} mm from the isocentre)" for r in shifters)
        if shifters else "; no range shifter")
    line = (f"gantry {angles['gantry_angle_deg']:g}, couch {angles['couch_angle_deg']:g}, table-top eccentric "
            f"{angles['table_top_eccentric_angle_deg']:g} deg; {meta.get('patient_position') or 'HFS'}; isocentre "
            f"({', '.join(f'{v:g}' for v in iso)}) mm; direction ({', '.join(f'{v:g}' for v in d)}) LPS, {words}{rs}")
    return {**angles, "patient_position": str(meta.get("patient_position") or "HFS"), "isocenter_mm": iso,
            "direction_lps": d, "direction_words": words, "range_shifters": shifters, "geometry": line}


def _bk_range_cm(e_mev):
    return BK_ALPHA_CM * np.power(e_mev, BK_P)


def energy_after_wet(energy_mev: float, wet_mm: float) -> float:
    """Mean energy after ``wet_mm`` of water (Bragg-Kleeman, Bortfeld 1997); error if the beam stops or if
    ``wet_mm`` <= 0 (a negative WET would make the beam deeper)."""
    if not wet_mm > 0:
        raise _e(f"range-shifter WET {wet_mm} mm must be > 0")
    r = _bk_range_cm(energy_mev) - wet_mm / 10.0
    if r <= 0.05:
        raise _e(f"a {energy_mev:g} MeV beam stops in a range shifter of {wet_mm:g} mm WET")
    return float((r / BK_ALPHA_CM) ** (1.0 / BK_P))


RANGE_SHIFTER_MODELS = ("transport", "energy_only")
#: plan and beam-model WET of one shifter that differ by more than this (mm) are warned about
_RS_WET_WARN_MM = 1.0


@dataclass(frozen=True)
class _LayerShifter:
    """The range shifter IN for one layer, as the beam model and the plan describe it."""

    id: str
    wet_mm: float
    material: str
    density_g_cm3: float
    thickness_mm: float
    isocenter_distance_mm: float
    #: the WET of the slab transported (thickness x stopping-power ratio; ``wet_mm`` for "energy_only")
    transported_wet_mm: float = 0.0
    #: where ``isocenter_distance_mm`` comes from, for messages: the plan's control point or the beam model
    distance_from: str = ""


def _layer_shifter(b: IonBeam, layer: EnergyLayer, beam_model, rs_model: str,
                   water_model: str = "icru90") -> _LayerShifter | None:
    """The shifter IN for a layer (None without one).  With ``rs_model == "energy_only"`` only its WET is needed
    (material, thickness and position are then 0 or empty); with "transport" its thickness is its WET in the water
    of ``water_model`` (the run's physics.water_model, as the CT's calibration: the units audit of 2026-12-07, F4)."""
    active = [rs for rs in layer.range_shifter_settings if rs["setting"].upper() not in _SHIFTER_OUT]
    if not active:
        return None
    where = f"beam {b.number} control point {layer.control_point_index}"
    if len(active) > 1:   # a merged beam-model entry would match neither RangeShifterID: not offered
        raise _e(f"{where}: {len(active)} range shifters are IN at once ({', '.join(repr(r['id']) for r in active)}); "
                 "mcproton transports one range shifter per layer, so this beam cannot be computed: check it with a "
                 "dose engine that models stacked range shifters, or re-plan it with one shifter")
    rs = active[0]
    model = beam_model.range_shifters.get(rs["id"])
    plan_wet = rs["wet_mm"]
    if plan_wet is not None and not plan_wet > 0:
        raise _e(f"{where}: range shifter {rs['id']!r} has RangeShifterWaterEquivalentThickness {plan_wet} mm; a "
                 "WET <= 0 would make the beam deeper instead of shallower; correct the plan")
    if (model is not None and plan_wet is not None and abs(model.wet_mm - plan_wet) > _RS_WET_WARN_MM
            and rs.get("type") == "ANALOG"):
        raise _e(f"{where}: range shifter {rs['id']!r} is ANALOG ({attribute_name('RangeShifterType')}) and the plan "
                 f"sets its water-equivalent thickness to {plan_wet:g} mm here, the beam model's [[range_shifter]] "
                 f"{model.wet_mm:g} mm: an analog shifter's thickness changes from layer to layer, mcproton's is one "
                 "slab of fixed thickness, so this layer's range would be off by "
                 f"{abs(model.wet_mm - plan_wet):.3g} mm; check this plan with a dose engine that models an analog "
                 "range shifter")
    if model is not None and plan_wet is not None and abs(model.wet_mm - plan_wet) > _RS_WET_WARN_MM:
        warn(f"{where}: range shifter {rs['id']!r}: the beam model gives WET {model.wet_mm:g} mm, the plan "
             f"{plan_wet:g} mm; the beam model's is used", McprotonRuntimeWarning, stacklevel=3)
    wet = model.wet_mm if model is not None else plan_wet
    if wet is None:
        raise _e(f"beam {b.number}: range shifter {rs['id']!r} is IN but neither the beam model nor the plan gives "
                 f"its water-equivalent thickness; add [[range_shifter]] id = {rs['id']!r} with wet_mm and material "
                 f"to the beam model {beam_model.name!r}")
    if rs_model == "energy_only":
        return _LayerShifter(rs["id"], float(wet), "", 0.0, 0.0, 0.0, float(wet))
    if model is None or not model.material:
        what = "is not in" if model is None else "has no material in"
        raise _e(f"beam {b.number}: range shifter {rs['id']!r} {what} the beam model {beam_model.name!r}, so it "
                 "cannot be transported; add to the model file [[range_shifter]] with id = "
                 f"{rs['id']!r}, material (e.g. \"polycarbonate\" for Lexan, \"pmma\"), wet_mm and optionally "
                 "density_g_cm3 (a BDL: RS_ID, RS_material, RS_density, RS_WET); or set plan.range_shifter_model = "
                 "\"energy_only\" to accept the energy-only approximation (no scattering in the shifter)")
    dist = rs["distance_mm"] if rs["distance_mm"] is not None else model.isocenter_distance_mm
    came = (f"the plan's IsocenterToRangeShifterDistance (300A,0364) of control point {rs.get('distance_cp')}"
            if rs["distance_mm"] is not None else
            f"the beam model's isocenter_distance_mm ({beam_model.name!r}; the plan states none up to here)")
    if dist is None:
        snout = (f" (the plan's SnoutPosition {b.snout_position_mm:g} mm is not the shifter's position)"
                 if b.snout_position_mm is not None else "")
        raise _e(f"{where}: range shifter {rs['id']!r} has no IsocenterToRangeShifterDistance in the plan while IN "
                 f"(one stated with the shifter OUT does not place it){snout}; add isocenter_distance_mm (isocentre to "
                 "its downstream face) to its [[range_shifter]] in the beam model")
    if not dist >= 0:
        raise _e(f"{where}: IsocenterToRangeShifterDistance {dist} mm must be >= 0")
    return _LayerShifter(rs["id"], float(wet), model.material, model.density, model.thickness_mm(water_model),
                         float(dist), model.transported_wet_mm(water_model), came)


def _min_mu(min_mu, beams: Sequence[IonBeam]) -> float:
    """plan_to_beams' ``min_mu`` as a float; refused unless a finite number >= 0, and above 0 where ``beams`` (those
    asked for) hold an NP beam: its meterset counts protons, with which a threshold in MU would be compared (and
    leave out nothing)."""
    if isinstance(min_mu, bool) or not isinstance(min_mu, (int, float, np.integer, np.floating)) \
            or not np.isfinite(min_mu) or min_mu < 0:
        raise _e(f"plan_to_beams min_mu = {min_mu!r}: give the MU per spot and fraction at or below which a spot is "
                 "left out, a number >= 0 (0, the default: only spots of weight 0)")
    np_beams = [b for b in beams if b.primary_dosimeter_unit == "NP"]
    if min_mu > 0 and np_beams:
        raise _e(f"plan_to_beams min_mu = {float(min_mu):g} is MU per spot, but beam(s) {_beams_text(np_beams)} are "
                 f"NP (PrimaryDosimeterUnit (300A,00B3)): their meterset counts protons, with which a threshold in MU "
                 "cannot be compared; leave min_mu at 0 for this plan, or select its MU beams (beam_numbers)")
    return float(min_mu)


def _min_mu_dropped(b: IonBeam, min_mu: float) -> dict | None:
    """What ``min_mu`` leaves out of MU beam ``b`` (spots of weight > 0 and at most ``min_mu`` MU): None where
    nothing, else its record for the beam's ``meta["min_mu"]``, warned about with the count and the share of the
    beam's MU (audit 27, spotsem F3: the spots and their dose were dropped without a word or a record)."""
    if min_mu <= 0:
        return None
    mu = np.concatenate([np.asarray(layer.spot_mu, float) for layer in b.layers])
    cut = (mu > 0) & (mu <= min_mu)
    if not cut.any():
        return None
    total, lost = float(mu.sum()), float(mu[cut].sum())
    rec = {"min_mu": min_mu, "spots_dropped": int(cut.sum()), "spots": int((mu > 0).sum()), "mu_dropped": lost,
           "share_dropped": lost / total}
    warn(f"beam {b.number} ({b.name!r}): min_mu = {min_mu:g} leaves out {rec['spots_dropped']} of its "
         f"{rec['spots']} spots ({lost:.6g} of its {total:.6g} MU per fraction, {100 * lost / total:.3g} %): their "
         "dose is not in the result, whose protons (total_protons) are those of the spots kept (the beam's meta: "
         "total_mu the plan's MU, simulated_mu those simulated, min_mu what was left out)", McprotonWarning)
    return rec


def _refuse_two_shifter_places(b: IonBeam, layer: EnergyLayer, sh: _LayerShifter,
                               first: dict[str, tuple[EnergyLayer, _LayerShifter]]) -> None:
    """Refuse a beam whose range shifter ``sh`` would be placed elsewhere for ``layer`` than for its first layer
    (``first``: by shifter id, kept here): a plan that states IsocenterToRangeShifterDistance only from a later
    control point on, the earlier layers taking the beam model's isocenter_distance_mm.  A distance the plan states
    differently in two control points is refused when the plan is read (_refuse_moving); this is the same slab at two
    places, one of them the model's (audit 27, spotsem F1)."""
    if sh.id not in first:
        first[sh.id] = (layer, sh)
        return
    layer0, sh0 = first[sh.id]
    if abs(sh.isocenter_distance_mm - sh0.isocenter_distance_mm) <= _ISO_TOL_MM:
        return
    raise _e(f"beam {b.number} ({b.name!r}): range shifter {sh.id!r} would be placed {sh0.isocenter_distance_mm:g} mm "
             f"from the isocentre for control point {layer0.control_point_index} ({sh0.distance_from}) and "
             f"{sh.isocenter_distance_mm:g} mm for control point {layer.control_point_index} ({sh.distance_from}): a "
             "shifter that moves during a beam is not supported (one position for all the beam's layers), and one of "
             "the two is wrong for some layers; state the shifter's IsocenterToRangeShifterDistance (300A,0364) in "
             "the first control point's RangeShifterSettingsSequence (export the plan again), or make the beam "
             "model's isocenter_distance_mm the plan's")


def plan_to_beams(plan: RTIonPlan, beam_model, *, beam_numbers: Sequence[int] | None = None,
                  all_fractions: bool = False, min_mu: float = 0.0, range_shifter_model: str = "transport",
                  machine_check: bool = True, isocentre_shift_mm: Sequence[float] | None = None,
                  water_model: str = "icru90") -> list:
    """One :class:`mcproton.source.Beam` per ion beam, with spots in the patient LPS frame (mm).

    Spot weights are absolute protons (MU x protons/MU of the beam model at the layer's nominal energy; with
    PrimaryDosimeterUnit NP the meterset is already a number of protons) and ``Beam.total_protons`` is their
    sum, per fraction unless ``all_fractions``.  Beam-model components (double Gaussian) become separate
    spots sharing the ray.  ``range_shifter_model``: "transport" (a shifter IN is a slab in each spot's beam
    line) or "energy_only" (the Bragg-Kleeman energy loss alone, an explicit opt-in).  See the module docstring
    for the geometry and range-shifter treatment.  A beam planned for a treatment machine that the beam model does
    not name (its ``machines``) is refused unless ``machine_check`` is False: another machine's model gives a
    plausible but wrong dose; one without a TreatmentMachineName (Type 2: it may be empty) is computed with a warning
    that it could not be checked.

    ``min_mu``: leave out the spots of at most this many MU per fraction (of an MU beam; 0, the default, leaves out
    only spots of weight 0).  The spots left out and their dose are not in the result: each beam that loses spots is
    warned about with their count and their share of the beam's MU, and its ``meta`` records it (``min_mu``: the
    value, the spots and MU dropped and their share; ``total_mu``: the plan's MU, ``simulated_mu``: those of the
    spots kept, which ``total_protons`` counts).  Refused (> 0) for an NP beam, whose meterset counts protons: a
    threshold in MU would be compared with protons.  A finite number >= 0 only.

    ``isocentre_shift_mm`` = (dx, dy, dz): a set-up error for a robustness study, in the CT's patient frame (LPS,
    mm): every beam's isocentre moves by it (its spots, range shifters and snout with it), so the dose moves by the
    shift relative to the CT and its structures (its component along a beam moves that beam's spots only: the range
    stays tied to the patient's surface).  The beams' ``isocenter_mm`` (and the result's provenance) give the
    shifted isocentre, ``isocentre_shift_mm`` the shift.  The same as moving ``plan.beams[i].isocenter_mm``; not the
    same as moving the CT (``geometry.origin_mm``), which moves the structures with the dose.

    Each beam's ``meta["warnings"]`` holds what was warned about the plan and the beam model on the way (each message
    once): :func:`load_rtplan`'s (``plan.warnings``) and the patient position it was given (``plan.notes``), those
    made when the beam model was read (``beam_model.made_with_warnings``) and this call's own (a layer interpolated
    across a gap of the model, MU labelled NP, a spot size unlike the model's, ...), so that
    :func:`mcproton.simulate` keeps them in its result's provenance, as ``mcproton run`` keeps them in its HDF5
    (before 2026-12-06 a script's result held none of them: the Python-API audit, F7).
    ``all_fractions`` and ``machine_check`` take True or False only: text such as "false" is refused (it would read
    as true: every fraction's protons, or the machine checked where it was meant not to be).

    ``water_model`` ("icru90" or "pstar"): the water of the transport (``PhysicsSettings.water_model``), in which a
    range shifter's water-equivalent thickness becomes its physical thickness (the stopping-power ratio of its
    material to that water), as a CT's HU -> SPR calibration is taken to that water: give the run's, so that the
    slab transported is the declared WET in the water the run transports (polycarbonate: 0.5 % thicker in PSTAR
    water; ``mcproton run`` and ``mcproton check`` pass their physics.water_model; each beam's
    ``meta["range_shifters"]`` records it).
    """
    with recording_warnings() as said:
        beams = _plan_to_beams(plan, beam_model, beam_numbers=beam_numbers, all_fractions=all_fractions, min_mu=min_mu,
                               range_shifter_model=range_shifter_model, machine_check=machine_check,
                               isocentre_shift_mm=isocentre_shift_mm, water_model=water_model)
    where = plan.path or "the plan"
    kept = list(dict.fromkeys([*(getattr(plan, "warnings", None) or []),
                               *(f"{where}: {n} (load_rtplan's patient_position)" for n in plan.notes),
                               *(getattr(beam_model, "made_with_warnings", None) or []), *said]))
    for b in beams:
        b.meta["warnings"] = list(kept)
    return beams


def _plan_to_beams(plan: RTIonPlan, beam_model, *, beam_numbers: Sequence[int] | None, all_fractions: bool,
                   min_mu: float, range_shifter_model: str, machine_check: bool,
                   isocentre_shift_mm: Sequence[float] | None, water_model: str) -> list:
    """:func:`plan_to_beams`' beams (the arguments as there), without the warnings in their meta."""
    from ..settings import _switch
    from ..source import MAX_SPREAD_SIGMAS, Beam
    from ..geometry import _mm

    all_fractions = _switch("plan_to_beams all_fractions", all_fractions)
    machine_check = _switch("plan_to_beams machine_check", machine_check)

    if range_shifter_model not in RANGE_SHIFTER_MODELS:
        raise _e(f"range_shifter_model {range_shifter_model!r} is unknown; choose one of {RANGE_SHIFTER_MODELS}")
    from .._physics.stopping import WATER_MODELS

    if water_model not in WATER_MODELS:
        raise _e(f"plan_to_beams water_model {water_model!r} is unknown; choose one of {sorted(WATER_MODELS)} (the "
                 "run's physics.water_model)")
    if isinstance(beam_model, (str, Path)):
        from .beam_model import load_beam_model

        beam_model = load_beam_model(beam_model)
    shift = (np.zeros(3) if isocentre_shift_mm is None else
             _mm("plan_to_beams isocentre_shift_mm", isocentre_shift_mm, 3, "the set-up shift (dx, dy, dz) in LPS"))
    chosen = [b for b in plan.beams if beam_numbers is None or b.number in beam_numbers]   # in the plan's order
    min_mu = _min_mu(min_mu, chosen)
    out = []
    nfx = plan.number_of_fractions or 1
    if beam_numbers is not None:   # each asked-for beam must be the plan's, once: none is dropped or doubled silently
        have = [b.number for b in plan.beams]
        if any(isinstance(n, bool) or not float(n).is_integer() for n in beam_numbers):
            raise _e(f"plan.beams = {list(beam_numbers)}: give the plan's beam numbers (whole numbers, {have})")
        asked = [int(n) for n in beam_numbers]
        unknown = sorted({n for n in asked if n not in have})
        twice = sorted({n for n in asked if asked.count(n) > 1})
        if unknown or twice:
            raise _e(f"plan.beams = {asked}: " + "; ".join(
                ([f"beam(s) {unknown} are not in the plan"] if unknown else [])
                + ([f"beam(s) {twice} are named twice"] if twice else []))
                + f" (the plan's beam numbers: {have}); give each beam to simulate once")
    unnamed = [f"{b.number} ({b.name!r})" for b in chosen if not (b.machine or "").strip()]
    if machine_check and beam_model.machines and unnamed:   # covers_machine lets them pass: say it was not checked
        warn(f"beam(s) {', '.join(unnamed)} give no TreatmentMachineName (300A,00B2), so the plan could not be checked "
             f"against the machines of beam model {beam_model.name!r} ({', '.join(beam_model.machines)}); make sure it "
             "was planned for one of them: another machine's beam model gives a plausible but wrong dose",
             McprotonWarning)
    one_size, nominal_sizes = _one_spot_size(plan)
    sized: set[int] = set()   # the beams whose ScanningSpotSize was compared with the model's (_check_spot_sizes)
    # the layers in a gap of the model's energies: one warning per gap, with their count, beams and energies (at()
    # would name only the first energy met)
    beam_model.warn_energy_gaps([(str(b.number), float(layer.nominal_energy_mev), float(np.sum(layer.spot_mu)))
                                 for b in chosen for layer in b.layers])
    for b in chosen:
        if machine_check and not beam_model.covers_machine(b.machine):
            from .cli_args import OWN_BEAM_MODEL, builtin_beam_models_text

            raise _e(f"beam {b.number} ({b.name!r}) is planned for treatment machine {b.machine!r}, but beam model "
                     f"{beam_model.name!r} is of {', '.join(beam_model.machines)}: another machine's beam model "
                     "gives a plausible but wrong dose.  Give the beam model of that machine (the built-in ones: "
                     f"{builtin_beam_models_text()}; {OWN_BEAM_MODEL}); if it is the same beam line under "
                     "another name, set plan.machine_check = false (mcproton check: --no-machine-check)")
        vsad = b.virtual_source_axis_distances_mm or beam_model.virtual_source_axis_distances_mm
        if vsad is None:
            raise _e(f"beam {b.number}: no VirtualSourceAxisDistances in the plan or the beam model")
        L = beam_model.plane_upstream_of_isocentre_mm
        if min(vsad) <= L:
            raise _e(f"beam {b.number}: virtual source-axis distances {vsad} must exceed the beam-model plane "
                     f"distance {L} mm")
        m = gantry_to_lps_matrix(b.gantry_angle_deg, b.table_top_angle_deg, b.patient_position or _missing_position(b))
        zg = m[:, 2]
        iso = np.asarray(b.isocenter_mm, float) + shift
        spots = []
        shifters_used: dict[str, dict] = {}
        shifter_first: dict[str, tuple[EnergyLayer, _LayerShifter]] = {}   # each shifter's first layer
        _check_spot_tunes(b, beam_model)
        in_air = []   # the layers without a range shifter: their ScanningSpotSize is compared with the model's
        for layer in b.layers:
            try:
                entry = beam_model.at(layer.nominal_energy_mev)
            except BeamModelError as exc:   # a plan has many beams and layers: say which one
                raise BeamModelError(f"beam {b.number} ({b.name!r}) control point {layer.control_point_index}: "
                                     f"{exc}") from None
            e_mean, e_sig = entry.mean_energy_mev, entry.energy_spread_mev
            sh = _layer_shifter(b, layer, beam_model, range_shifter_model, water_model)
            if sh is not None and range_shifter_model == "energy_only":
                try:
                    e_out = energy_after_wet(e_mean, sh.wet_mm)
                except DicomInputError as exc:   # the layer stops in the shifter: name it and the likely cause
                    raise _e(f"beam {b.number} control point {layer.control_point_index} ({layer.nominal_energy_mev:g}"
                             f" MeV): range shifter {sh.id!r}: {exc}, so the layer would deposit nothing in the "
                             "patient; the likely cause is a RangeShifterID mapped to the wrong [[range_shifter]] of "
                             "the beam model (its id and wet_mm) or the wrong beam model for this plan") from None
                e_sig = e_sig * (e_out / e_mean) ** (1.0 - BK_P)
                e_mean = e_out
            if e_sig * MAX_SPREAD_SIGMAS > e_mean:   # Spot's limit, said in the plan's and the beam model's terms
                after = (f" after range shifter {sh.id!r} (WET {sh.wet_mm:g} mm, which widens the spread)"
                         if sh is not None and range_shifter_model == "energy_only" else "")
                raise BeamModelError(
                    f"beam {b.number} ({b.name!r}) control point {layer.control_point_index} "
                    f"({layer.nominal_energy_mev:g} MeV): beam model {beam_model.name!r} gives an energy spread of "
                    f"{e_sig:.3g} MeV at the mean energy {e_mean:.4g} MeV{after}, more than a fifth of it (the limit "
                    f"is sigma <= E / {MAX_SPREAD_SIGMAS:g}: sampled energies below 0 MeV would be clamped to 0, so "
                    "the spectrum simulated would not be the model's); check the model's energy_spread column: 1 "
                    'sigma in MeV, or in percent of the nominal energy with energy_spread_unit = "percent_of_nominal"'
                    "; not a FWHM")
            face_axis_mm = None
            if sh is not None and range_shifter_model == "transport":
                face_axis_mm = L - sh.isocenter_distance_mm - sh.thickness_mm
                if face_axis_mm < 0:
                    raise _e(f"beam {b.number} control point {layer.control_point_index}: range shifter {sh.id!r} "
                             f"(downstream face {sh.isocenter_distance_mm:g} mm from the isocentre, "
                             f"{sh.thickness_mm:.1f}"
                             f" mm thick) reaches upstream of the beam model's plane ({L:g} mm from the isocentre); "
                             "the model's phase space must be given upstream of the shifter")
            if sh is None:
                in_air.append(layer)
            else:
                if face_axis_mm is not None:
                    _refuse_two_shifter_places(b, layer, sh, shifter_first)
                shifters_used.setdefault(sh.id, {**{k: getattr(sh, k) for k in (
                    "wet_mm", "transported_wet_mm", "material", "density_g_cm3", "thickness_mm",
                    "isocenter_distance_mm")}, **({"water_model": water_model}
                                                  if range_shifter_model == "transport" else {})})
            if b.primary_dosimeter_unit == "NP":
                protons = layer.spot_mu.copy()
            else:
                protons = layer.spot_mu * entry.protons_per_mu
            if all_fractions:
                protons = protons * nfx
            wsum = sum(c.weight for c in entry.components)
            spots += _layer_spots(layer.spot_xy_mm, layer.spot_mu, protons, min_mu, vsad, L, m, iso, e_mean, e_sig,
                                  entry.components, wsum, sh if face_axis_mm is not None else None, face_axis_mm)
        if not spots:
            raise _e(f"beam {b.number}: no spot with MU > {min_mu:g} (plan_to_beams min_mu): every spot would be left "
                     "out; give a smaller min_mu (0: only the spots of weight 0 are left out)")
        dropped = _min_mu_dropped(b, min_mu)
        if not nominal_sizes:
            _check_spot_sizes(b, beam_model, in_air, one_size)
        if not nominal_sizes and any(layer.scanning_spot_size_mm is not None for layer in in_air):
            sized.add(b.number)
        if b.primary_dosimeter_unit == "NP":
            _check_np_meterset(b)
        else:
            _check_mu_meterset(b)
        total = float(sum(s.weight for s in spots))
        out.append(Beam(spots, total_protons=total, name=f"{b.number}:{b.name}", meta={
            "beam_number": b.number, "gantry_angle_deg": b.gantry_angle_deg, "couch_angle_deg": b.couch_angle_deg,
            "table_top_eccentric_angle_deg": b.table_top_eccentric_angle_deg,
            "isocenter_mm": tuple(float(v) for v in iso), "beam_direction": tuple(float(v) for v in -zg),
            "patient_position": b.patient_position or "HFS", "total_mu": b.total_mu,
            "total_meterset": b.total_meterset, "meterset_unit": b.primary_dosimeter_unit,
            "plan_spots": int(sum((layer.spot_mu > min_mu).sum() for layer in b.layers)),   # the spots simulated
            # the plan's MU and those of the spots simulated (min_mu may leave some out): None for an NP beam
            "simulated_mu": None if b.total_mu is None else b.total_mu - (dropped or {}).get("mu_dropped", 0.0),
            **({"min_mu": dropped} if dropped else {}),
            "fractions": nfx if all_fractions else 1, "machine": b.machine, "beam_model": beam_model.provenance(),
            "frame_of_reference_uid": plan.frame_of_reference_uid, "plan_sop_instance_uid": plan.sop_instance_uid,
            "plan_structure_sets": list(getattr(plan, "referenced_structure_sets", ())),
            "fractions_planned": plan.number_of_fractions, "plan_beam_numbers": [x.number for x in plan.beams],
            "range_shifter_model": range_shifter_model, "range_shifters": shifters_used,
            "nominal_energies_mev": sorted({float(layer.nominal_energy_mev) for layer in b.layers}),
            **({"isocentre_shift_mm": tuple(float(v) for v in shift)} if isocentre_shift_mm is not None else {})}))
    if not out:
        raise _e(f"no beams selected (beam numbers in the plan: {[b.number for b in plan.beams]})")
    done = {"machine_check": machine_check_record(chosen, beam_model, machine_check),
            "spot_tune_check": spot_tune_check_record(chosen, beam_model, sized)}
    for beam in out:
        beam.meta.update(done)
    warn_unchecked_machine_and_tunes(chosen, beam_model, machine_check, sized)
    return out


#: A layer's ScanningSpotSize (the plan's FWHM in air at the isocentre) more than this far from the beam model's
#: (relative, in x or y) is warned about: a plan for another spot tune or machine.  Spot sizes are commissioned to
#: ~10 % (mcproton commission's spot-sigma tolerance, of the order of machine-QA tolerances); the real plans in
#: tests/data/dicom without a range shifter differ from dcpt_v5 by at most 8.5 % (plan/model 0.94-1.09: Eclipse
#: plan02 and the 10 x 10 SOBP, RayStation plans 03, 05 and 06), so 25 % leaves a margin of 3 over them, and a
#: large-spot tune (1.5-2 x the size) exceeds it.
SPOT_SIZE_TOL_REL = 0.25
#: a plan that states one ScanningSpotSize for layers whose energies span more than this (MeV) gives a tune's nominal
#: size, not each energy's (a spot's FWHM in air changes by ~10 % over 20 MeV at 80-100 MeV): not compared.  Eclipse
#: 13.7 wrote 8.80 x 8.58 mm for 80, 130, 160 and 210 MeV (RN_qa_4beams.dcm; dcpt_v5 gives 13.0 to 8.7 mm)
NOMINAL_SIZE_SPAN_MEV = 10.0
#: An NP (particles) beam with fewer protons per fraction than this, or fewer per spot on average than
#: NP_MIN_PROTONS_PER_SPOT, is warned about as MU labelled NP.  A clinical spot holds 1e6-1e8 protons and a beam
#: 1e9-1e11 (the DCPT plans in tests/data/dicom: 5e6 at least per spot, 1.2e7-6.7e8 on average, 5e9-2e11 per beam),
#: while a meterset in MU is at most ~1e5 per beam and ~200 per spot (the same plans: 6e4 and 181): the thresholds
#: lie 5-16 x above the MU and 1e4 x below the protons.
NP_MIN_PROTONS_PER_BEAM = 1e6
NP_MIN_PROTONS_PER_SPOT = 1e3
#: An MU beam with more MU per fraction than this, or more per spot on average than MU_MAX_PER_SPOT, is warned about
#: as protons labelled MU (the dose would be too high by the protons per MU, 1e6-1e8).  The MU plans in
#: tests/data/dicom hold at most 6e4 MU per beam and 181 per spot on average; a 20 Gy single fraction is ~10 x a
#: 2 Gy one; protons are 1e9-1e11 per beam and 1e6-1e8 per spot: the thresholds lie 100 x below the protons and
#: 100-500 x above the MU.  A warning only: a machine with an unusual MU definition is not refused.
MU_MAX_PER_BEAM = 1e7
MU_MAX_PER_SPOT = 1e5


def _names(values) -> str:
    return ", ".join(repr(v) for v in sorted(set(values)))


def _beams_text(beams: Sequence[IonBeam]) -> str:
    return ", ".join(f"{b.number} ({b.name!r})" for b in beams)


def machine_check_record(beams: Sequence[IonBeam], beam_model, machine_check: bool) -> str:
    """What the machine check of ``beams`` (TreatmentMachineName against the beam model's ``machines``) did, for a
    result's provenance and the check's Settings (``machine_check``): "yes: ...", "off", "not possible: ..." where
    nothing could be compared (a model that names no machines, a plan that names none), or both for a plan whose
    beams differ.  Before, a check that could compare nothing was recorded as on ("yes"; audit 24 swallow, F2)."""
    if not machine_check:
        return "off (machine_check = false: the plan's TreatmentMachineName was not compared with the beam model)"
    named = [b for b in beams if (b.machine or "").strip()]
    given = _names(b.machine.strip() for b in named)
    if not beam_model.machines:
        return (f"not possible: beam model {beam_model.name!r} names no treatment machines (`machines`)"
                + (f"; the plan's TreatmentMachineName: {given}" if named else
                   "; the plan gives no TreatmentMachineName either"))
    models = ", ".join(beam_model.machines)
    if not named:
        return (f"not possible: the plan gives no TreatmentMachineName (300A,00B2); beam model {beam_model.name!r} "
                f"is of {models}")
    yes = f"TreatmentMachineName {given} is of beam model {beam_model.name!r} ({models})"
    unnamed = [b for b in beams if not (b.machine or "").strip()]
    if unnamed:
        return f"yes for beam(s) {_beams_text(named)}: {yes}; not possible for beam(s) {_beams_text(unnamed)}: no " \
               "TreatmentMachineName"
    return f"yes: {yes}"


def spot_tune_check_record(beams: Sequence[IonBeam], beam_model, sized: set[int]) -> str:
    """What the spot-tune check of ``beams`` (each layer's ScanSpotTuneID against the beam model's
    ``spot_tune_ids``: :func:`_check_spot_tunes`) did, as :func:`machine_check_record` says the machine check's
    (``spot_tune_check``); ``sized``: the numbers of the beams whose ScanningSpotSize was compared with the model's
    spot (:func:`_check_spot_sizes`), named where the tune could not be checked."""
    layers = [layer for b in beams for layer in b.layers]
    tunes = _names(layer.scan_spot_tune_id for layer in layers if layer.scan_spot_tune_id)
    untuned = sum(not layer.scan_spot_tune_id for layer in layers)
    if not beam_model.spot_tune_ids:
        size = ("; the plan's ScanningSpotSize was compared with the model's spot instead"
                + ("" if all(b.number in sized for b in beams) else
                   f" for beam(s) {_beams_text([b for b in beams if b.number in sized])}")
                if sized else "")
        return (f"not possible: beam model {beam_model.name!r} declares no spot tunes (`spot_tune_ids`)"
                + (f"; the plan's ScanSpotTuneID: {tunes}" if tunes else
                   "; the plan gives no ScanSpotTuneID either") + size)
    declared = _names(beam_model.spot_tune_ids)
    if not tunes:
        return f"not possible: the plan gives no ScanSpotTuneID (300A,0390); beam model {beam_model.name!r} " \
               f"declares {declared}"
    yes = f"ScanSpotTuneID {tunes} is among the spot tunes of beam model {beam_model.name!r} ({declared})"
    if untuned:
        return f"yes for the layers that give a ScanSpotTuneID: {yes}; not possible for {untuned} layer(s) without one"
    return f"yes: {yes}"


def warn_unchecked_machine_and_tunes(beams: Sequence[IonBeam], beam_model, machine_check: bool,
                                     sized: set[int]) -> None:
    """One warning (a run's, a check's) where the machine check is on, the plan names its treatment machine and the
    beam model names none (``machines``: an MCsquare BDL cannot, a TOML model may leave them out), so nothing tied
    the model to the plan's machine; it also names the spot tunes not checked (no ``spot_tune_ids``) of the beams
    whose spot size was not compared with the model's either.  Before, this passed without a word, and the check's
    report said "machine check: yes" (audit 24 swallow, F2).  Not refused (such a model is allowed).  A model that
    names its machines but no spot tunes (the shipped DCPT models: their sources do not say which tune they were
    measured for) is not warned about for the tunes alone: what was checked is recorded
    (:func:`spot_tune_check_record`)."""
    named = _names(b.machine.strip() for b in beams if (b.machine or "").strip())
    if not (machine_check and not beam_model.machines and named):
        return
    msg = (f"beam model {beam_model.name!r} names no treatment machines (`machines`), so the plan's "
           f"TreatmentMachineName {named} was not checked against it")
    # a beam of several tunes is warned about as such (_check_spot_tunes)
    untuned = [b for b in beams if b.number not in sized
               and len({layer.scan_spot_tune_id for layer in b.layers if layer.scan_spot_tune_id}) == 1]
    if not beam_model.spot_tune_ids and untuned:
        tunes = _names(layer.scan_spot_tune_id for b in untuned for layer in b.layers if layer.scan_spot_tune_id)
        msg += (f"; nor was the ScanSpotTuneID {tunes} of beam(s) {_beams_text(untuned)} (the model declares no "
                "`spot_tune_ids`), nor their spot size (the plan gives no ScanningSpotSize of each energy in air to "
                "compare with the model's)")
    warn(f"{msg}: another machine's beam model gives a plausible but wrong dose; make sure the model is of the "
         "plan's machine, and give a TOML model its `machines` (and `spot_tune_ids`, as the built-in dcpt_v5.toml "
         "does; an MCsquare BDL can name neither)", McprotonWarning)


def _check_spot_tunes(b: IonBeam, beam_model) -> None:
    """Refuse a layer whose ScanSpotTuneID the beam model does not declare (``spot_tune_ids``; its spots have another
    size); with a model that declares none, warn about a beam whose layers use several tunes (the model describes
    one spot)."""
    first: dict[str, int] = {}
    for layer in b.layers:
        first.setdefault(layer.scan_spot_tune_id, layer.control_point_index)
    named = {t: ci for t, ci in first.items() if t}
    where = f"beam {b.number} ({b.name!r})"
    if beam_model.spot_tune_ids:
        declared = ", ".join(repr(t) for t in beam_model.spot_tune_ids)
        for t, ci in named.items():
            if not beam_model.covers_tune(t):
                raise _e(f"{where} control point {ci}: ScanSpotTuneID (300A,0390) {t!r} is not a spot tune of beam "
                         f"model {beam_model.name!r} (spot_tune_ids: {declared}): the spots of another tune have "
                         "another size, so the dose would be computed with the wrong spots; give the beam model of "
                         "that spot tune (or, if the model's spots are that tune's, add it to spot_tune_ids)")
        if "" in first:
            warn(f"{where} control point {first['']}: no ScanSpotTuneID (300A,0390), so the layer's spot tune could "
                 f"not be checked against beam model {beam_model.name!r} (spot_tune_ids: {declared})", McprotonWarning)
    elif len(named) > 1:
        tunes = ", ".join(f"{t!r} (from control point {ci})" for t, ci in named.items())
        warn(f"{where}: its layers use {len(named)} spot tunes, ScanSpotTuneID (300A,0390) {tunes}, but a beam model "
             f"describes one spot and {beam_model.name!r} declares no spot_tune_ids: every layer is computed with the "
             "model's spots; check that the tunes give the same spot size, else give each tune's beam model "
             "(and declare its spot_tune_ids)", McprotonWarning)


def _one_spot_size(plan: RTIonPlan) -> tuple[bool, bool]:
    """(whether the plan states one and the same ScanningSpotSize for all its layers, whether it does so for layers
    whose energies span more than NOMINAL_SIZE_SPAN_MEV: then it is a tune's nominal size, not the size at each
    energy)."""
    sized = [(layer.nominal_energy_mev, layer.scanning_spot_size_mm) for b in plan.beams for layer in b.layers
             if layer.scanning_spot_size_mm is not None]
    if not sized:
        return False, False
    e = [x[0] for x in sized]
    first = np.asarray(sized[0][1])
    one = all(np.max(np.abs(np.asarray(sz) - first)) < 1e-3 for _, sz in sized)
    return one, one and max(e) - min(e) > NOMINAL_SIZE_SPAN_MEV


def _check_spot_sizes(b: IonBeam, beam_model, layers: list[EnergyLayer], one_size: bool = False) -> None:
    """Warn when a layer's ScanningSpotSize (300A,0398: the spot's FWHM in air at the isocentre as the planning
    system states it) differs from the beam model's (:meth:`BeamModel.spot_fwhm_mm`) by more than SPOT_SIZE_TOL_REL.
    Only ``layers`` without a range shifter are compared: behind a shifter one planning system states the size with
    the shifter's scattering (Eclipse: 1.5-2.5 x the in-air size in the DCPT head plan) and another without it
    (RayStation), while mcproton transports the shifter itself."""
    off = []
    for layer in layers:
        if layer.scanning_spot_size_mm is None:
            continue
        model = beam_model.spot_fwhm_mm(layer.nominal_energy_mev)
        ratio = [p / m for p, m in zip(layer.scanning_spot_size_mm, model)]
        if max(abs(r - 1.0) for r in ratio) > SPOT_SIZE_TOL_REL:
            off.append((layer, model, ratio))
    if not off:
        return
    compared = sum(layer.scanning_spot_size_mm is not None for layer in layers)
    # one size for every layer of the plan at one energy (or a few close ones) cannot tell a size per energy from a
    # tune's nominal size, which some planning systems write (Eclipse 13.7: 8.80 x 8.58 mm at 80-210 MeV): say so
    # (the verification audit of 2026-12-05 N1: an 80 MeV field of that plan exported on its own was warned of)
    nominal = ("  The plan states one size for all its layers, which some planning systems write as the spot tune's "
               "nominal size rather than the size at each energy (Eclipse 13.7 did): if this plan's is such a "
               "nominal size, this warning does not apply" if one_size else "")
    shown = "; ".join(
        f"{layer.nominal_energy_mev:g} MeV (control point {layer.control_point_index}): plan "
        f"{layer.scanning_spot_size_mm[0]:.1f} x {layer.scanning_spot_size_mm[1]:.1f} mm, model {m[0]:.1f} x "
        f"{m[1]:.1f} mm (ratio {r[0]:.2f}, {r[1]:.2f})" for layer, m, r in off[:3]) + ("; ..." if len(off) > 3 else "")
    tunes = sorted({layer.scan_spot_tune_id for layer, _, _ in off if layer.scan_spot_tune_id})
    tune = f" (ScanSpotTuneID {', '.join(repr(t) for t in tunes)})" if tunes else ""
    warn(f"beam {b.number} ({b.name!r}): the plan's ScanningSpotSize (300A,0398; the spot's FWHM in air at the "
         f"isocentre) differs from the FWHM of beam model {beam_model.name!r} by more than "
         f"{100 * SPOT_SIZE_TOL_REL:g} % in {len(off)} of the {compared} layers compared{tune}: {shown}.  The dose is "
         "computed with the model's spots: "
         "if the plan is for another spot tune or machine, its penumbra and the dose of small targets are wrong; "
         f"give the beam model of the plan's spot tune.{nominal}", McprotonWarning)


def _check_np_meterset(b: IonBeam) -> None:
    """Warn about an NP (particles) beam whose meterset is far too small for protons: MU labelled NP (the dose would
    be too low by the beam model's protons per MU, 1e6-1e8)."""
    mu = np.concatenate([np.asarray(layer.spot_mu, float) for layer in b.layers])
    n = int((mu > 0).sum())
    total = float(mu.sum())
    per_spot = total / max(n, 1)
    if total < NP_MIN_PROTONS_PER_BEAM or per_spot < NP_MIN_PROTONS_PER_SPOT:
        warn(f"beam {b.number} ({b.name!r}): PrimaryDosimeterUnit (300A,00B3) is NP (protons), but the beam holds "
             f"{total:.3g} protons per fraction, {per_spot:.3g} per spot on average over {n} spots (a clinical beam "
             f"holds 1e9-1e11 and a spot 1e6-1e8; warned below {NP_MIN_PROTONS_PER_BEAM:.0e} per beam or "
             f"{NP_MIN_PROTONS_PER_SPOT:.0e} per spot): the meterset looks like MU labelled NP, which gives a dose "
             "too low by the protons per MU (1e6-1e8); check the plan's PrimaryDosimeterUnit and BeamMeterset",
             McprotonWarning)


def _check_mu_meterset(b: IonBeam) -> None:
    """Warn about an MU beam whose meterset is far too large for MU: protons labelled MU (the dose would be too
    high by the beam model's protons per MU, 1e6-1e8)."""
    mu = np.concatenate([np.asarray(layer.spot_mu, float) for layer in b.layers])
    n = int((mu > 0).sum())
    total = float(mu.sum())
    per_spot = total / max(n, 1)
    if total > MU_MAX_PER_BEAM or per_spot > MU_MAX_PER_SPOT:
        warn(f"beam {b.number} ({b.name!r}): PrimaryDosimeterUnit (300A,00B3) is MU, but the beam holds "
             f"{total:.3g} MU per fraction, {per_spot:.3g} per spot on average over {n} spots (a clinical beam "
             f"holds up to ~1e5 MU and a spot up to ~1e3; warned above {MU_MAX_PER_BEAM:.0e} per beam or "
             f"{MU_MAX_PER_SPOT:.0e} per spot): the meterset looks like protons labelled MU, which gives a dose "
             "too high by the protons per MU (1e6-1e8); check the plan's PrimaryDosimeterUnit and BeamMeterset",
             McprotonWarning)


def _layer_spots(spot_xy_mm, spot_mu, protons, min_mu: float, vsad, L: float, m: np.ndarray, iso: np.ndarray,
                 e_mean: float, e_sig: float, components, wsum: float, sh, face_axis_mm: float | None) -> list:
    """The engine spots of one energy layer (each beam-model component a spot on the ray, component-minor), made
    as whole arrays (:func:`mcproton.source.make_spots`) with the arithmetic of the per-spot formulas, bit for
    bit: for a spot (x, y) at the isocentre plane, the ray from the virtual source ``d = m (d_g / |d_g|)``,
    d_g = (x / VSAD_x, y / VSAD_y, -1); its point on the beam model's plane L upstream of the isocentre
    ``iso + m (x (1 - L / VSAD_x), y (1 - L / VSAD_y), L)``; the transverse x axis ``x_g - d (x_g . d)``; a range
    shifter's upstream face at ``face_axis_mm / (d . -z_g)`` along the ray.  Matrix-vector products as stacked
    ``matmul`` (NumPy's gemv per row, as ``m @ v``) and dot products as :func:`mcproton.source._rowdot` (BLAS ddot
    per row, as ``np.dot``); tests/io/test_rtplan_spots_bitwise.py checks the Spots against the per-spot code."""
    from ..source import RangeShifterSlab, _rowdot, make_spots

    xy = np.asarray(spot_xy_mm, dtype=float).reshape(-1, 2)
    mu = np.asarray(spot_mu)
    n_p = np.asarray(protons)
    keep = ~((mu <= min_mu) | (n_p <= 0))          # as "skip if mu <= min_mu or n_p <= 0", NaN included
    x, y, n_p = xy[keep, 0], xy[keep, 1], n_p[keep]
    n = x.size
    if n == 0:
        return []
    d_g = np.stack([x / vsad[0], y / vsad[1], np.full(n, -1.0)], axis=1)
    u = d_g / np.sqrt(_rowdot(d_g, d_g))[:, None]
    d = np.matmul(m, u[:, :, None])[:, :, 0]
    local = np.stack([x * (1 - L / vsad[0]), y * (1 - L / vsad[1]), np.full(n, float(L))], axis=1)
    pos = iso + np.matmul(m, local[:, :, None])[:, :, 0]
    xg, zg = m[:, 0], m[:, 2]
    ax = xg - d * _rowdot(d, xg)[:, None]
    slabs: list = [None] * n
    if face_axis_mm is not None:
        faces = face_axis_mm / _rowdot(d, -zg)
        base = RangeShifterSlab(sh.material, sh.thickness_mm, sh.density_g_cm3, float(faces[0]), id=sh.id,
                                wet_mm=sh.wet_mm)
        slabs = base.at_faces(faces)
    nc = len(components)
    r = np.repeat(np.arange(n), nc)                  # spot-major, component-minor, as the loops were
    cw = np.array([c.weight for c in components], dtype=float)
    weights = (n_p[r] * np.tile(cw, n) / wsum).tolist()
    comps = list(components) * n
    return make_spots([e_mean] * (n * nc), pos[r], d[r], ax[r], energy_spread_mev=[e_sig] * (n * nc),
                      sigma_mm=[c.sigma_mm for c in comps], divergence_rad=[c.divergence_rad for c in comps],
                      correlation=[c.correlation for c in comps], weight=weights,
                      range_shifter=[slabs[i] for i in r.tolist()])


def _missing_position(b: IonBeam) -> str:
    raise _e(f"beam {b.number}: the plan has no PatientSetupSequence/PatientPosition; cannot map IEC to LPS")

"""Procedurally generated paediatric head-and-spine phantoms by age.

Coordinate frame (patient LPS-like, head-first supine, millimetres):

* +x = patient left, +y = posterior, +z = superior;
* origin (0, 0, 0) = centre of the cranial cavity in the plane of maximum head circumference
  (the occipito-frontal plane through glabella and opisthocranion).  ``landmarks(...)`` /
  ``geometry.meta["landmarks_mm"]`` give the centres of the key structures in this frame.
* grid voxel centres fall on multiples of the voxel size, so (0, 0, 0) is a voxel centre.

All shapes are analytic (ellipsoids, half-ellipsoids, elliptic tubes, capsules) sized from the
age tables in ``data/head_anatomy_by_age.csv`` (see :mod:`.anatomy`); the few shape ratios that no
table provides are named constants below, documented as assumptions in phantoms/README.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from ..geometry import VoxelGeometry
from .anatomy import anatomy_parameters, check_age
from .tissues import get_tissue

#: the largest voxel of a phantom, mm (make_head_phantom refuses coarser ones; the demo's and the phantom's --voxel-mm)
MAX_VOXEL_MM = 10.0

# ---------------------------------------------------------------------------------------------------------
# Labels (stable ids) and the tissue of each
# ---------------------------------------------------------------------------------------------------------
LABELS: dict[int, tuple[str, str]] = {
    1: ("body", "soft_tissue"),
    2: ("skull", "skull_calvarium"),
    3: ("brain", "brain"),
    4: ("cerebellum", "brain"),
    5: ("brainstem", "brain"),
    6: ("ventricles", "csf"),
    7: ("csf", "csf"),
    8: ("eye_left", "eye"),
    9: ("eye_right", "eye"),
    10: ("lens_left", "eye_lens"),
    11: ("lens_right", "eye_lens"),
    12: ("optic_nerve_left", "brain"),
    13: ("optic_nerve_right", "brain"),
    14: ("optic_chiasm", "brain"),
    15: ("cochlea_left", "csf"),
    16: ("cochlea_right", "csf"),
    17: ("temporal_bone", "cortical_bone"),
    18: ("mastoid_air_left", "air_cells"),
    19: ("mastoid_air_right", "air_cells"),
    20: ("sinus_maxillary", "air"),
    21: ("sinus_frontal", "air"),
    22: ("sinus_sphenoid", "air"),
    23: ("sinus_ethmoid", "air_cells"),
    24: ("nasal_cavity", "air"),
    25: ("airway", "air"),
    26: ("mandible", "mandible"),
    27: ("vertebrae_cervical", "vertebra_cervical"),
    28: ("vertebrae_thoracic", "vertebra_thoracic"),
    29: ("vertebrae_lumbar", "vertebra_lumbar"),
    30: ("sacrum", "vertebra_sacrum"),
    31: ("intervertebral_disc", "cartilage"),
    32: ("spinal_canal_csf", "csf"),
    33: ("spinal_cord", "brain"),
}
LABEL_IDS = {name: i for i, (name, _) in LABELS.items()}
BRAIN_PARENCHYMA = ("brain", "cerebellum", "brainstem")
INTRACRANIAL = BRAIN_PARENCHYMA + ("ventricles", "csf", "optic_chiasm")
REGIONS = ("head", "head_neck", "neuraxis")

# ---------------------------------------------------------------------------------------------------------
# Shape constants (model assumptions; see README "Model assumptions")
# ---------------------------------------------------------------------------------------------------------
K_LOW = 0.65            # depth of the posterior fossa below the HC plane / height of the vault above it
MF_A, MF_C = 0.55, 0.50  # middle-fossa half-ellipsoid: AP semi-axis / a, depth / posterior-fossa depth
PF_Y, PF_A, PF_B = 0.45, 0.55, 0.85  # posterior fossa: centre y / a, AP semi-axis / a, lateral / b
BRAINSTEM_FRACTION = 0.022  # brainstem / brain volume (adult ~25-30 mL of ~1300 mL; assumption)
DISC_FRACTION = 0.25     # intervertebral discs / spinal column length (assumption)
# adult vertebral body (width, depth) mm, scaled by T1-S1 length / 450 mm (approximate adult morphometry)
VB_ADULT = {"cervical": (22.0, 16.0), "thoracic": (32.0, 27.0), "lumbar": (45.0, 33.0), "sacrum": (48.0, 30.0)}
SPINE_SHARES = {"cervical": 0.28, "thoracic": 0.64, "lumbar": 0.36, "sacrum": 0.22}  # of T1-S1 length
N_VERT = {"cervical": 7, "thoracic": 12, "lumbar": 5}
ANTERIOR_CHAMBER_MM = 3.3  # cornea apex to anterior lens surface (assumption, childhood ACD ~3-3.5 mm)
COCHLEA_SEMI_MM = (4.5, 4.5, 2.5)  # adult-sized at birth (Jeffery & Spoor 2004, J Anat 204:71): ~9 mm x 5 mm
# the outer table of the skull (and the bony wall of an air space under the skin) as a share of the skull thickness:
# the calvarium is outer table, diploe and inner table in roughly equal thirds (assumption)
OUTER_TABLE_FRACTION = 1.0 / 3.0


def _ramanujan(a: float, b: float) -> float:
    return float(np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b))))


# ---------------------------------------------------------------------------------------------------------
# Shape primitives on broadcast coordinate arrays
# ---------------------------------------------------------------------------------------------------------
def _ell(X, Y, Z, c, s):
    return ((X - c[0]) / s[0]) ** 2 + ((Y - c[1]) / s[1]) ** 2 + ((Z - c[2]) / s[2]) ** 2 <= 1.0


def _capsule(X, Y, Z, p0, p1, r):
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    L2 = float(d @ d)
    t = ((X - p0[0]) * d[0] + (Y - p0[1]) * d[1] + (Z - p0[2]) * d[2]) / L2
    t = np.clip(t, 0.0, 1.0)
    return (X - p0[0] - t * d[0]) ** 2 + (Y - p0[1] - t * d[1]) ** 2 + (Z - p0[2] - t * d[2]) ** 2 <= r * r


def _rot_ell(X, Y, Z, c, s, angle_z):
    """Ellipsoid rotated by angle_z (rad) about the z axis."""
    ca, sa = np.cos(angle_z), np.sin(angle_z)
    dx, dy = X - c[0], Y - c[1]
    u = ca * dx + sa * dy
    v = -sa * dx + ca * dy
    return (u / s[0]) ** 2 + (v / s[1]) ** 2 + ((Z - c[2]) / s[2]) ** 2 <= 1.0


@dataclass
class Design:
    """All dimensions (mm) and positions of one phantom, before voxelisation."""
    age_years: float
    sex: str
    published: dict[str, float]
    p: dict[str, float] = field(default_factory=dict)
    landmarks: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    vertebrae: list[dict] = field(default_factory=list)

    # the cranial-cavity shape: upper half-ellipsoid (vault) + middle-fossa and posterior-fossa
    # half-ellipsoids below the HC plane, inside the vault footprint.  ``off`` grows every semi-axis by
    # ``off`` mm (skull outer surface), ``scale`` shrinks the whole shape about the origin (pia surface).
    def cranial(self, X, Y, Z, off: float = 0.0, scale: float = 1.0):
        p = self.p
        a, b, cu, cl = (scale * p["a"], scale * p["b"], scale * p["c_up"], scale * p["c_low"])
        up = (Z >= 0) & _ell(X, Y, Z, (0, 0, 0), (b + off, a + off, cu + off))
        low = (Z < 0) & ((X / (b + off)) ** 2 + (Y / (a + off)) ** 2 <= 1.0)
        mf = _ell(X, Y, Z, (0, 0, 0), (b + off, MF_A * a + off, MF_C * cl + off))
        pf = _ell(X, Y, Z, (0, PF_Y * a, 0), (PF_B * b + off, PF_A * a + off, cl + off))
        return up | (low & (mf | pf))

    def cavity_floor_z(self, y: float, scale: float = 1.0) -> float:
        """z of the cavity floor on the midline (x = 0) at this y."""
        p = self.p
        a, cl = scale * p["a"], scale * p["c_low"]
        zs = [0.0]
        u = y / (MF_A * a)
        if abs(u) < 1:
            zs.append(-MF_C * cl * np.sqrt(1 - u * u))
        u = (y - PF_Y * a) / (PF_A * a)
        if abs(u) < 1:
            zs.append(-cl * np.sqrt(1 - u * u))
        return float(min(zs))


@lru_cache(maxsize=None)
def _cavity_volume_factor() -> float:
    """Volume of the cranial shape for a = b = c_up = 1 (numerical, 0.01 grid)."""
    d = Design(1.0, "male", {}, {"a": 1.0, "b": 1.0, "c_up": 1.0, "c_low": K_LOW})
    h = 0.01
    g = np.arange(-1.0 + h / 2, 1.0, h)
    X, Y = g[None, :, None], g[None, None, :]
    tot = 0
    for z in np.arange(-K_LOW - h / 2, 1.0, h) + h / 2:
        tot += int(np.count_nonzero(d.cranial(X, Y, np.full((1, 1, 1), z))))
    return tot * h ** 3


def design(age_years: float, sex: str = "male") -> Design:
    """Dimensions and landmark positions of the phantom for this age (no voxels)."""
    age = check_age(age_years)
    pub = anatomy_parameters(age, sex)
    d = Design(age, "male" if sex.lower().startswith("m") else "female", pub)
    p = d.p
    rho_brain = get_tissue("brain").density_g_cm3
    # --- head outline from head circumference (outer scalp ellipse in the HC plane) and cephalic index
    hc = pub["head_circumference"] * 10.0
    ci = pub["cephalic_index"]
    A = hc / _ramanujan(1.0, ci)
    B = ci * A
    t_sk, t_sc = pub["skull_thickness"], pub["scalp_thickness"]
    a, b = A - t_sk - t_sc, B - t_sk - t_sc
    # --- intracranial volume from the brain mass: parenchyma = brain_fraction_of_icv * ICV
    v_brain = pub["brain_mass"] / rho_brain * 1e3                     # mm3 of parenchyma
    v_icv = v_brain / pub["brain_fraction_of_icv"]
    v_vent = pub["ventricle_fraction_of_icv"] * v_icv
    c_up = v_icv / (a * b * _cavity_volume_factor())
    p.update(A=A, B=B, a=a, b=b, c_up=c_up, c_low=K_LOW * c_up, t_skull=t_sk, t_scalp=t_sc,
             v_brain_target_mm3=v_brain, v_icv_target_mm3=v_icv, v_vent_target_mm3=v_vent)
    s_pia = ((v_brain + v_vent) / v_icv) ** (1.0 / 3.0)   # pia surface = cavity scaled about the origin
    p["s_pia"] = s_pia
    cl = p["c_low"]
    off_out = t_sk + t_sc
    p["head_top"] = c_up + off_out
    p["head_low"] = cl + off_out
    H = pub["face_height"]
    p["face_c"] = (0.0, -0.25 * A, 0.0)
    p["face_s"] = (0.8 * B, 0.75 * A, H + 5.0)
    # --- posterior fossa: cerebellum, brainstem, fourth ventricle
    sa, sb, scl = s_pia * a, s_pia * b, s_pia * cl
    v_cb = pub["cerebellum_fraction_of_brain"] * v_brain
    cb_shape = np.array([0.68 * sb, 0.30 * sa, 0.40 * scl])
    # x1.16: the ellipsoid is clipped by the posterior-fossa pia surface and the brainstem (calibrated at 1 mm)
    cb_shape *= (1.16 * v_cb / (4 / 3 * np.pi * np.prod(cb_shape))) ** (1 / 3)
    p["cb_c"] = (0.0, 0.60 * sa, -0.52 * scl)
    p["cb_s"] = tuple(cb_shape)
    y_bs = 0.20 * a
    z_fm = d.cavity_floor_z(y_bs)
    z_bs_top = 0.10 * c_up
    h_bs = (z_bs_top - z_fm) / 2
    r_bs = np.sqrt(BRAINSTEM_FRACTION * v_brain / (4 / 3 * np.pi * 0.9 * h_bs))
    p["bs_c"] = (0.0, y_bs, (z_bs_top + z_fm) / 2)
    p["bs_s"] = (r_bs, 0.9 * r_bs, h_bs)
    # ventricles: two lateral ventricles (80 %), third + fourth (20 %) with fixed shape ratios
    lv = np.array([0.09 * sb, 0.38 * sa, 0.12 * c_up * s_pia])
    lv *= (0.4 * v_vent / (4 / 3 * np.pi * np.prod(lv))) ** (1 / 3)
    p["lv_s"] = tuple(lv)
    p["lv_c"] = [(sx * 0.13 * sb, -0.02 * sa, 0.22 * c_up * s_pia) for sx in (1, -1)]
    v3 = np.array([0.02 * sb, 0.20 * sa, 0.12 * c_up * s_pia])
    v3 *= (0.12 * v_vent / (4 / 3 * np.pi * np.prod(v3))) ** (1 / 3)
    p["v3_c"], p["v3_s"] = (0.0, 0.0, 0.05 * c_up * s_pia), tuple(v3)
    v4 = np.array([0.6, 0.35, 0.8]) * 1.0
    v4 *= (0.08 * v_vent / (4 / 3 * np.pi * np.prod(v4))) ** (1 / 3)
    p["v4_c"] = (0.0, y_bs + 0.9 * r_bs + v4[1], p["bs_c"][2] + 0.1 * h_bs)
    p["v4_s"] = tuple(v4)
    # --- eyes, lenses, optic pathway
    R = pub["eye_axial_length"] / 2
    ipd = pub["interpupillary_distance"]
    z_eye = -0.18 * H
    eyes = {}
    for side, sx in (("left", 1.0), ("right", -1.0)):
        x = sx * ipd / 2
        u = 1 - (x / B) ** 2 - (z_eye / p["head_low"]) ** 2
        y_front = -A * np.sqrt(max(u, 0.05))
        y_cornea = y_front + 2.5          # lids / soft tissue in front of the cornea (assumption)
        eyes[side] = (x, y_cornea + R, z_eye)
        p[f"lens_{side}_c"] = (x, y_cornea + ANTERIOR_CHAMBER_MM + pub["lens_thickness"] / 2, z_eye)
    p["eye_R"] = R
    p["eyes"] = eyes
    p["lens_s"] = (pub["lens_diameter"] / 2, pub["lens_thickness"] / 2, pub["lens_diameter"] / 2)
    f_lin = (v_brain / 1.33e6) ** (1 / 3)   # linear brain size relative to an adult-like 1.4 kg brain
    y_ch = -0.12 * a
    p["chiasm_s"] = (6.5 * f_lin, 4.0 * f_lin, 2.0 * f_lin)
    p["chiasm_c"] = (0.0, y_ch, d.cavity_floor_z(y_ch, s_pia) + p["chiasm_s"][2] + 0.5)
    p["on_r"] = pub["optic_nerve_diameter"] / 2      # MRI norm by age (Maresky 2018; the CSV's row)
    # --- paranasal sinuses, nasal cavity, temporal bone
    p["nasal_c"] = (0.0, eyes["left"][1] + 0.15 * A, z_eye - 0.25 * H)
    p["nasal_s"] = (0.12 * ipd, 0.28 * A, 0.18 * H)
    vmax = pub["maxillary_sinus_volume_per_side"] * 1e3
    rm = (vmax / (4 / 3 * np.pi * 0.8 * 1.1)) ** (1 / 3)
    p["max_s"] = (0.8 * rm, 1.1 * rm, rm)
    y_max = eyes["left"][1] + 0.2 * R
    # every air space lies under the skin: at least the scalp thickness of soft tissue and an outer table of bone
    # (or, for the maxillary sinus, of soft tissue: no maxilla is modelled) between it and the outside
    t_table = OUTER_TABLE_FRACTION * t_sk
    p["t_table"] = t_table
    p["air_cover"] = t_sc + t_table
    # the maxillary sinus's front wall behind the cheek: moved back by that cover
    p["max_c"] = [(sx * 0.45 * ipd, y_max + p["air_cover"], z_eye - R - rm - 1.5) for sx in (1, -1)]
    vfr = pub["frontal_sinus_volume"] * 1e3
    rf = (max(vfr, 1e-9) / (4 / 3 * np.pi * 1.4 * 0.6 * 1.2)) ** (1 / 3)
    p["fr_s"] = (1.4 * rf, 0.6 * rf, 1.2 * rf)
    # between the tables of the frontal bone: its front wall is the outer table under the scalp (the sinus and its
    # inner table displace the cranial cavity's front behind it, as the frontal sinus does the frontal lobe)
    z_fr = 0.12 * c_up
    y_skin = -A * np.sqrt(max(1 - (z_fr / p["head_top"]) ** 2, 0.05))
    p["fr_c"] = (0.0, y_skin + p["air_cover"] + p["fr_s"][1], z_fr)
    vsp = pub["sphenoid_sinus_volume"] * 1e3
    rs = (max(vsp, 1e-9) / (4 / 3 * np.pi)) ** (1 / 3)
    p["sph_s"] = (rs, rs, rs)
    y_sph = -0.10 * a
    p["sph_c"] = (0.0, y_sph, d.cavity_floor_z(y_sph) - t_sk - rs - 0.5)
    p["eth_c"] = (0.0, eyes["left"][1] + 0.1 * R, z_eye + 0.1 * R)
    p["eth_s"] = (max(ipd / 2 - R - 1.5, 2.0), 0.9 * R, 0.6 * R)
    z_ear = -0.55 * cl
    p["cochlea_c"] = [(sx * 0.55 * b, 0.0, z_ear) for sx in (1, -1)]
    p["petrous_s"] = (0.32 * b, 0.12 * b, 0.13 * cl)
    vm = pub["mastoid_air_volume_per_side"] * 1e3
    # flat laterally, long antero-posteriorly and in height: the pneumatised mastoid process behind the ear, outside
    # the cranial cavity and under the scalp (shape ratios: assumption)
    mshape = np.array([0.65, 1.3, 1.2])
    rmst = (vm / (4 / 3 * np.pi * float(np.prod(mshape)))) ** (1 / 3)
    p["mast_s"] = tuple(mshape * rmst)
    # mastoid air cells inside the mastoid process, under the scalp: the ellipsoid's lateral pole at least the
    # scalp plus an outer table inside the lower head's surface at its (y, z)
    y_m, z_m = 0.30 * a, z_ear - 0.3 * rmst
    x_skin = B * np.sqrt(max(1 - (y_m / A) ** 2 - (z_m / p["head_low"]) ** 2, 0.0))
    x_m = min(0.78 * b, x_skin - p["air_cover"] - p["mast_s"][0])
    p["mast_c"] = [(sx * x_m, y_m, z_m) for sx in (1, -1)]
    # --- spine: straight vertical neuraxis through the foramen magnum
    L = pub["spine_t1_s1_length"] * 10.0
    s_sp = L / 450.0
    r_c = pub["spinal_canal_ap_diameter"] / 2
    r_cd = pub["spinal_cord_ap_diameter"] / 2
    y_can = y_bs
    p.update(y_canal=y_can, z_fm=z_fm, r_canal=r_c, r_cord=r_cd, spine_L=L)
    z = z_fm - t_sk
    verts = []
    for reg in ("cervical", "thoracic", "lumbar"):
        seg = SPINE_SHARES[reg] * L / N_VERT[reg]
        w, dep = (v * s_sp for v in VB_ADULT[reg])
        for i in range(N_VERT[reg]):
            name = f"{reg[0].upper()}{i + 1}"
            h_body = seg * (1 - DISC_FRACTION)
            verts.append(dict(name=name, region=reg, z_top=z, z_bot=z - h_body, z_disc_bot=z - seg,
                              width=w, depth=dep, y_body=y_can - r_c - dep / 2))
            z -= seg
    Ls = SPINE_SHARES["sacrum"] * L
    w, dep = (v * s_sp for v in VB_ADULT["sacrum"])
    verts.append(dict(name="S1-S5", region="sacrum", z_top=z, z_bot=z - Ls, z_disc_bot=z - Ls, width=w,
                      depth=dep, y_body=y_can - r_c - dep / 2 + 0.3 * dep))
    d.vertebrae = verts
    vt = {v["name"]: v for v in verts}
    p["z_conus"] = vt["L1"]["z_disc_bot"]             # conus medullaris at L1/L2 (children > ~2 y)
    p["z_thecal_end"] = z - 0.4 * Ls                  # dural sac ends at ~S2
    p["z_sacrum_end"] = z - Ls
    p["z_T1_top"] = vt["T1"]["z_top"]
    # neck and torso (soft tissue)
    nc = pub["neck_circumference"] * 10.0
    nb = nc / _ramanujan(1.0, 0.9)
    p["neck_s"] = (nb, 0.9 * nb)
    p["neck_c"] = (0.0, y_can - 0.35 * 0.9 * nb)
    t_len = p["z_T1_top"] - p["z_sacrum_end"] + 0.1 * L
    area = pub["trunk_mass_fraction"] * pub["body_mass"] * 1e6 / 1.0 / t_len   # mm2 (1 g/cm3)
    tb = np.sqrt(area / (np.pi * 0.7))
    p["torso_s"] = (tb, 0.7 * tb)
    d_back = r_c + 1.3 * VB_ADULT["thoracic"][1] * s_sp
    p["torso_c"] = (0.0, y_can + d_back - 0.7 * tb)
    p["z_torso_top"] = p["z_T1_top"] + 0.02 * L
    p["z_torso_bot"] = p["z_sacrum_end"] - 0.08 * L
    cerv = [v for v in verts if v["region"] == "cervical"]
    p["y_airway"] = cerv[3]["y_body"] - cerv[3]["depth"] / 2 - 0.12 * nb - 2.0
    p["r_airway"] = 0.12 * nb
    p["z_carina"] = vt["T4"]["z_bot"]
    # --- landmarks
    lm = d.landmarks
    lm["origin_brain_centre"] = (0.0, 0.0, 0.0)
    lm["vertex"] = (0.0, 0.0, p["head_top"])
    lm["posterior_fossa"] = tuple(p["cb_c"])
    lm["cerebellum"] = tuple(p["cb_c"])
    lm["brainstem"] = tuple(p["bs_c"])
    lm["fourth_ventricle"] = tuple(p["v4_c"])
    lm["foramen_magnum"] = (0.0, y_bs, z_fm)
    lm["optic_chiasm"] = tuple(p["chiasm_c"])
    for side, i in (("left", 0), ("right", 1)):
        lm[f"eye_{side}"] = tuple(eyes[side])
        lm[f"lens_{side}"] = tuple(p[f"lens_{side}_c"])
        lm[f"cochlea_{side}"] = tuple(p["cochlea_c"][i])
    for v in verts:
        lm[f"vertebra_{v['name']}"] = (0.0, v["y_body"], (v["z_top"] + v["z_bot"]) / 2)
    lm["conus_medullaris"] = (0.0, y_can, p["z_conus"])
    lm["thecal_sac_end"] = (0.0, y_can, p["z_thecal_end"])
    return d


# ---------------------------------------------------------------------------------------------------------
# Voxelisation
# ---------------------------------------------------------------------------------------------------------
class _Painter:
    def __init__(self, lo, n, v):
        self.lo, self.n, self.v = np.asarray(lo, float), np.asarray(n, int), float(v)
        self.lab = np.zeros((n[2], n[1], n[0]), np.int16)

    def _sl(self, lo, hi, k):
        i0 = int(np.floor((lo - self.lo[k]) / self.v))
        i1 = int(np.ceil((hi - self.lo[k]) / self.v)) + 1
        return slice(max(i0, 0), min(max(i1, 0), self.n[k]))

    def paint(self, name: str, fn: Callable, bbox, where: Callable | None = None):
        sx, sy, sz = (self._sl(bbox[2 * k], bbox[2 * k + 1], k) for k in range(3))
        if sx.start >= sx.stop or sy.start >= sy.stop or sz.start >= sz.stop:
            return
        X = (self.lo[0] + self.v * np.arange(sx.start, sx.stop))[None, None, :]
        Y = (self.lo[1] + self.v * np.arange(sy.start, sy.stop))[None, :, None]
        Z = (self.lo[2] + self.v * np.arange(sz.start, sz.stop))[:, None, None]
        sub = self.lab[sz, sy, sx]
        m = fn(X, Y, Z)
        if where is not None:
            m = m & where(sub, X, Y, Z)
        sub[np.broadcast_to(m, sub.shape)] = LABEL_IDS[name]

    def paint_line(self, name: str, p0, p1):
        """The voxels of the segment p0-p1 (mm): the voxel holding each of its points sampled at a quarter voxel,
        so that consecutive voxels share a face, an edge or a corner: a thin tube (an optic nerve at 2 mm) stays
        one 26-connected piece whatever the voxel size."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        n = max(2, int(np.ceil(4 * np.linalg.norm(p1 - p0) / self.v)) + 1)
        k = np.rint((p0 + np.linspace(0.0, 1.0, n)[:, None] * (p1 - p0) - self.lo) / self.v).astype(int)
        k = k[np.all((k >= 0) & (k < self.n), axis=1)]
        self.lab[k[:, 2], k[:, 1], k[:, 0]] = LABEL_IDS[name]

    def depth_mm(self, z_lo: float, z_hi: float) -> tuple[int, np.ndarray]:
        """Distance (mm) from each voxel centre of the slab z_lo..z_hi to the nearest voxel centre outside the body
        (label 0) in that slab, and the index of the slab's first slice.  A slab that ends at least the largest
        depth asked for beyond the structures it is used for gives their depths exactly there."""
        from scipy.ndimage import distance_transform_edt

        sz = self._sl(z_lo, z_hi, 2)
        inside = self.lab[sz] != 0
        if inside.all():
            return sz.start, np.full(inside.shape, np.inf)
        return sz.start, distance_transform_edt(inside) * self.v


def _box(c, s, pad=1.0):
    return (c[0] - s[0] - pad, c[0] + s[0] + pad, c[1] - s[1] - pad, c[1] + s[1] + pad,
            c[2] - s[2] - pad, c[2] + s[2] + pad)


def make_head_phantom(age_years: float, voxel_mm: float = 2.0, *, sex: str = "male",
                      region: str = "neuraxis") -> VoxelGeometry:
    """Voxel phantom of a child's head (and spine) at ``age_years`` (0.5..18 y).

    region: "head" (head down to the chin / upper neck), "head_neck" (down to T1) or "neuraxis"
    (default: head, neck and a soft-tissue torso with the whole spine down to the sacrum, as needed for
    craniospinal irradiation).  The returned geometry carries ``.meta`` (dict) with the design parameters,
    the published values used, ``landmarks_mm`` and the coordinate-frame description.
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}; got {region!r}")
    v = float(voxel_mm)
    if not np.isfinite(v) or v <= 0 or v > MAX_VOXEL_MM:
        raise ValueError(f"voxel_mm must be in (0, {MAX_VOXEL_MM:g}] mm; got {voxel_mm}")
    d = design(age_years, sex)
    p = d.p
    A, B = p["A"], p["B"]
    tb, ta = p["torso_s"]
    yt = p["torso_c"][1]
    face_c, face_s = p["face_c"], p["face_s"]
    z_chin = face_c[2] - face_s[2]
    if region == "head":
        z_bot = min(z_chin, p["z_fm"] - 0.5 * SPINE_SHARES["cervical"] * p["spine_L"])
        xmax, ymin, ymax = B, -A, A
    elif region == "head_neck":
        z_bot = p["z_T1_top"]
        xmax, ymin, ymax = max(B, p["neck_s"][0]), -A, A
    else:
        z_bot = p["z_torso_bot"]
        xmax, ymin, ymax = max(B, tb), min(-A, yt - ta), max(A, yt + ta)
    m = 6.0 + v
    lo = np.floor(np.array([-xmax - m, ymin - m, z_bot - m]) / v) * v
    hi = np.ceil(np.array([xmax + m, ymax + m, p["head_top"] + m]) / v) * v
    n = np.round((hi - lo) / v).astype(int) + 1
    if np.prod(n) > 400_000_000:
        raise ValueError(f"grid of {n.tolist()} voxels is too large; use larger voxels")
    P = _Painter(lo, n, v)
    big = 1e4

    def inside(sub, X, Y, Z):
        return sub != 0

    def not_skull_outer(off=p["t_skull"]):
        return lambda sub, X, Y, Z: (sub != 0) & ~d.cranial(X, Y, Z, off=off)

    def not_cavity(sub, X, Y, Z):
        return (sub != 0) & ~d.cranial(X, Y, Z)

    # body: head (vault + lower head + face), neck, torso
    ho, hl = p["head_top"], p["head_low"]
    P.paint("body", lambda X, Y, Z: (Z >= 0) & _ell(X, Y, Z, (0, 0, 0), (B, A, ho)), (-B, B, -A, A, 0, ho))
    P.paint("body", lambda X, Y, Z: (Z < 0) & _ell(X, Y, Z, (0, 0, 0), (B, A, hl)), (-B, B, -A, A, -hl, 0))
    P.paint("body", lambda X, Y, Z: (Z < 0) & _ell(X, Y, Z, face_c, face_s), _box(face_c, face_s))
    nb, na = p["neck_s"]
    yn = p["neck_c"][1]
    z_neck_bot = z_bot if region == "head" else p["z_torso_top"] - 1
    P.paint("body", lambda X, Y, Z: ((X / nb) ** 2 + ((Y - yn) / na) ** 2 <= 1),
            (-nb, nb, yn - na, yn + na, z_neck_bot, 0.5 * p["z_fm"]))
    if region == "neuraxis":
        P.paint("body", lambda X, Y, Z: ((X / tb) ** 2 + ((Y - yt) / ta) ** 2 <= 1),
                (-tb, tb, yt - ta, yt + ta, p["z_torso_bot"], p["z_torso_top"]))
    # depth under the skin of the head's voxels (the air spaces are painted where they are covered)
    to = p["t_skull"]
    air_z = [c[2] - p["max_s"][2] for c in p["max_c"]] + [c[2] - p["mast_s"][2] for c in p["mast_c"]] + \
        [p["fr_c"][2] + p["fr_s"][2]]
    pad = 2 * p["air_cover"] + 2 * v
    z0_depth, depth = P.depth_mm(min(air_z) - pad, max(air_z) + pad)

    def covered(cover: float, base: Callable | None = None) -> Callable:
        """where: at least ``cover`` mm under the skin and not 6-adjacent to the outside (and ``base``)."""
        def where(sub, X, Y, Z):
            kx, ky, kz = (np.rint((C - lo[i]) / v).astype(int) for i, C in enumerate((X, Y, Z)))
            kz = kz - z0_depth
            ok = (kz >= 0) & (kz < depth.shape[0])
            dep = depth[np.clip(kz, 0, depth.shape[0] - 1), ky, kx]
            m = ok & (dep >= cover) & (dep > 1.0001 * v)
            return m & base(sub, X, Y, Z) if base is not None else m & (sub != 0)
        return where

    # skull shell, then the cranial contents
    cb = (-B, B, -A, A, -hl, ho)
    P.paint("skull", lambda X, Y, Z: d.cranial(X, Y, Z, off=to), cb)
    P.paint("csf", lambda X, Y, Z: d.cranial(X, Y, Z), cb)
    s = p["s_pia"]
    P.paint("brain", lambda X, Y, Z: d.cranial(X, Y, Z, scale=s), cb)
    pia = lambda sub, X, Y, Z: d.cranial(X, Y, Z, scale=s)  # noqa: E731
    P.paint("cerebellum", lambda X, Y, Z: _ell(X, Y, Z, p["cb_c"], p["cb_s"]), _box(p["cb_c"], p["cb_s"]), pia)
    P.paint("brainstem", lambda X, Y, Z: _ell(X, Y, Z, p["bs_c"], p["bs_s"]), _box(p["bs_c"], p["bs_s"]), pia)
    for c in p["lv_c"]:
        P.paint("ventricles", lambda X, Y, Z, c=c: _ell(X, Y, Z, c, p["lv_s"]), _box(c, p["lv_s"]))
    P.paint("ventricles", lambda X, Y, Z: _ell(X, Y, Z, p["v3_c"], p["v3_s"]), _box(p["v3_c"], p["v3_s"]))
    P.paint("ventricles", lambda X, Y, Z: _ell(X, Y, Z, p["v4_c"], p["v4_s"]), _box(p["v4_c"], p["v4_s"]))
    # temporal bone (petrous ridge + mastoid process), mastoid air cells, cochleae
    for i, side in enumerate(("left", "right")):
        sx = 1 if side == "left" else -1
        c = p["cochlea_c"][i]
        pc = (c[0] - sx * 0.35 * p["petrous_s"][0], c[1] - 0.35 * p["petrous_s"][0], c[2])
        ang = sx * np.deg2rad(45.0)
        P.paint("temporal_bone", lambda X, Y, Z, pc=pc, ang=ang: _rot_ell(X, Y, Z, pc, p["petrous_s"], ang),
                _box(pc, (p["petrous_s"][0],) * 2 + (p["petrous_s"][2],)), not_cavity)
        mc, ms = p["mast_c"][i], p["mast_s"]
        msb = tuple(x + 0.6 * to for x in ms)
        P.paint("temporal_bone", lambda X, Y, Z, mc=mc, msb=msb: _ell(X, Y, Z, mc, msb), _box(mc, msb),
                covered(p["t_scalp"], not_cavity))
        P.paint(f"mastoid_air_{side}", lambda X, Y, Z, mc=mc: _ell(X, Y, Z, mc, ms), _box(mc, ms),
                covered(p["air_cover"], not_cavity))
        P.paint(f"cochlea_{side}", lambda X, Y, Z, c=c: _ell(X, Y, Z, c, COCHLEA_SEMI_MM), _box(c, COCHLEA_SEMI_MM))
    # face: mandible, nasal cavity, sinuses
    fs = face_s

    def mandible(X, Y, Z):
        r2 = ((X - face_c[0]) / fs[0]) ** 2 + ((Y - face_c[1]) / fs[1]) ** 2 + ((Z - face_c[2]) / fs[2]) ** 2
        return (r2 <= 0.93 ** 2) & (r2 >= 0.80 ** 2) & (Z < -0.62 * fs[2]) & (Z > -0.97 * fs[2]) & \
            (Y < face_c[1] + 0.35 * fs[1])
    P.paint("mandible", mandible, _box(face_c, fs), not_skull_outer())
    P.paint("nasal_cavity", lambda X, Y, Z: _ell(X, Y, Z, p["nasal_c"], p["nasal_s"]),
            _box(p["nasal_c"], p["nasal_s"]), not_skull_outer())
    nc_back = (0.0, p["nasal_c"][1] + 0.8 * p["nasal_s"][1], p["nasal_c"][2])
    top_air = (0.0, p["y_airway"], p["nasal_c"][2] - 0.5 * p["nasal_s"][2])
    ra = p["r_airway"]
    P.paint("airway", lambda X, Y, Z: _capsule(X, Y, Z, nc_back, top_air, ra),
            (-ra - 1, ra + 1, min(nc_back[1], top_air[1]) - ra - 1, max(nc_back[1], top_air[1]) + ra + 1,
             top_air[2] - ra - 1, nc_back[2] + ra + 1), not_skull_outer())
    if region != "head":
        z_air_bot = p["z_carina"] if region == "neuraxis" else p["z_T1_top"]
        bot_air = (0.0, p["y_airway"], z_air_bot)
        P.paint("airway", lambda X, Y, Z: _capsule(X, Y, Z, top_air, bot_air, ra),
                (-ra - 1, ra + 1, top_air[1] - ra - 1, top_air[1] + ra + 1, z_air_bot - ra, top_air[2] + ra),
                inside)
    for c in p["max_c"]:
        P.paint("sinus_maxillary", lambda X, Y, Z, c=c: _ell(X, Y, Z, c, p["max_s"]), _box(c, p["max_s"]),
                covered(p["air_cover"], not_skull_outer()))
    P.paint("sinus_ethmoid", lambda X, Y, Z: _ell(X, Y, Z, p["eth_c"], p["eth_s"]), _box(p["eth_c"], p["eth_s"]),
            not_skull_outer())
    if d.published["sphenoid_sinus_volume"] > 0.05:
        P.paint("sinus_sphenoid", lambda X, Y, Z: _ell(X, Y, Z, p["sph_c"], p["sph_s"]),
                _box(p["sph_c"], p["sph_s"]), not_cavity)
    if d.published["frontal_sinus_volume"] > 0.05:
        # the sinus in a shell of bone one outer table thick, under the scalp; it takes the front of the cranial
        # cavity's CSF and brain behind it (the inner table is its posterior wall)
        frb = tuple(x + p["t_table"] for x in p["fr_s"])
        front = [LABEL_IDS[n] for n in ("body", "skull", "csf", "brain")]
        in_front = lambda sub, X, Y, Z: np.isin(sub, front)  # noqa: E731
        P.paint("skull", lambda X, Y, Z: _ell(X, Y, Z, p["fr_c"], frb), _box(p["fr_c"], frb),
                covered(p["t_scalp"], in_front))
        P.paint("sinus_frontal", lambda X, Y, Z: _ell(X, Y, Z, p["fr_c"], p["fr_s"]), _box(p["fr_c"], p["fr_s"]),
                covered(p["air_cover"], in_front))
    # optic pathway, eyes, lenses
    ch_c, ch_s = p["chiasm_c"], p["chiasm_s"]
    R = p["eye_R"]
    for side in ("left", "right"):
        e = p["eyes"][side]
        p0 = (e[0], e[1] + R - 1.0, e[2])
        p1 = (np.sign(e[0]) * 0.6 * ch_s[0], ch_c[1], ch_c[2])
        r = p["on_r"]
        P.paint(f"optic_nerve_{side}", lambda X, Y, Z, p0=p0, p1=p1, r=r: _capsule(X, Y, Z, p0, p1, r),
                (min(p0[0], p1[0]) - r - 1, max(p0[0], p1[0]) + r + 1, p0[1] - r - 1, p1[1] + r + 1,
                 min(p0[2], p1[2]) - r - 1, max(p0[2], p1[2]) + r + 1))
        P.paint_line(f"optic_nerve_{side}", p0, p1)      # its centreline: one piece on a coarse grid too
    P.paint("optic_chiasm", lambda X, Y, Z: _ell(X, Y, Z, ch_c, ch_s), _box(ch_c, ch_s))
    for side in ("left", "right"):
        e = p["eyes"][side]
        P.paint(f"eye_{side}", lambda X, Y, Z, e=e: _ell(X, Y, Z, e, (R, R, R)), _box(e, (R, R, R)))
        lc = p[f"lens_{side}_c"]
        P.paint(f"lens_{side}", lambda X, Y, Z, lc=lc: _ell(X, Y, Z, lc, p["lens_s"]), _box(lc, p["lens_s"]))
    # spine: vertebral bodies, arches, discs, canal, cord
    yc, rc, rcd = p["y_canal"], p["r_canal"], p["r_cord"]
    z_spine_lo = {"head": z_bot, "head_neck": p["z_T1_top"]}.get(region, -big)
    for vt in d.vertebrae:
        if vt["z_top"] < z_spine_lo:
            break
        reg = vt["region"]
        name = "sacrum" if reg == "sacrum" else f"vertebrae_{reg}"
        w2, d2, yb = vt["width"] / 2, vt["depth"] / 2, vt["y_body"]
        zt, zb, zd = vt["z_top"], vt["z_bot"], vt["z_disc_bot"]
        if reg == "sacrum":
            def sac(X, Y, Z, zt=zt, zb=zb, w2=w2, d2=d2, yb=yb):
                f = 0.3 + 0.7 * np.clip((Z - zb) / (zt - zb), 0, 1)      # tapers towards the tip
                return (Z <= zt) & (Z >= zb) & ((X / (w2 * f)) ** 2 + ((Y - yb) / (d2 * (0.4 + 0.6 * f))) ** 2 <= 1)
            P.paint(name, sac, (-w2, w2, yb - d2, yb + d2, zb, zt), inside)
            continue
        P.paint(name, lambda X, Y, Z, w2=w2, d2=d2, yb=yb: (X / w2) ** 2 + ((Y - yb) / d2) ** 2 <= 1,
                (-w2, w2, yb - d2, yb + d2, zb, zt), inside)
        P.paint("intervertebral_disc", lambda X, Y, Z, w2=w2, d2=d2, yb=yb: (X / w2) ** 2 + ((Y - yb) / d2) ** 2 <= 1,
                (-w2, w2, yb - d2, yb + d2, zd + 0.01, zb - 0.01), inside)
        ta_ = max(0.45 * rc, 1.5)                    # lamina thickness (assumption)
        ro = (1.35 * rc + ta_, rc + ta_)

        def arch(X, Y, Z, ro=ro):
            return ((X / ro[0]) ** 2 + ((Y - yc) / ro[1]) ** 2 <= 1)
        zarch = (zb + 0.1 * (zt - zb), zt - 0.1 * (zt - zb))
        P.paint(name, arch, (-ro[0], ro[0], yc - ro[1], yc + ro[1], *zarch), inside)
        lsp = 0.9 * vt["depth"]
        P.paint(name, lambda X, Y, Z: (np.abs(X) <= ta_ * 0.6) & (Y >= yc) & (Y <= yc + ro[1] + lsp),
                (-ta_, ta_, yc, yc + ro[1] + lsp, *zarch), inside)
    z_top_canal = p["z_fm"] + 0.5 * to
    z_can_bot = max(p["z_thecal_end"], z_spine_lo)
    P.paint("spinal_canal_csf", lambda X, Y, Z: (X / (1.35 * rc)) ** 2 + ((Y - yc) / rc) ** 2 <= 1,
            (-1.35 * rc, 1.35 * rc, yc - rc, yc + rc, z_can_bot, z_top_canal))
    z_conus = max(p["z_conus"], z_spine_lo)
    taper = 3.0 * rcd

    def cord(X, Y, Z):
        f = np.clip((Z - z_conus) / taper, 0.05, 1.0) if region == "neuraxis" else 1.0
        return (X / (1.3 * rcd * f)) ** 2 + ((Y - yc) / (rcd * f)) ** 2 <= 1
    P.paint("spinal_cord", cord, (-1.3 * rcd, 1.3 * rcd, yc - rcd, yc + rcd, z_conus, p["z_fm"] + 1.0))
    # brainstem continuity through the foramen magnum
    P.paint("brainstem", lambda X, Y, Z: _ell(X, Y, Z, p["bs_c"], p["bs_s"]) & (Z < p["z_fm"] + to),
            _box(p["bs_c"], p["bs_s"]), lambda sub, X, Y, Z: sub == LABEL_IDS["spinal_canal_csf"])

    # materials
    mat_names = ["air"] + sorted({t for _, t in LABELS.values()} - {"air"})   # air first: the outside
    mats = [get_tissue(nm) for nm in mat_names]
    lut = np.zeros(max(LABELS) + 1, np.uint8)
    for i, (_, t) in LABELS.items():
        lut[i] = mat_names.index(t)
    mi = lut[P.lab]
    rho_lut = np.array([m.density_g_cm3 for m in mats], np.float32)
    present = set(np.unique(P.lab).tolist())
    names = {i: nm for i, (nm, _) in LABELS.items() if i in present}
    geom = VoxelGeometry(mi, rho_lut[mi], mats, (v, v, v), tuple(lo), P.lab, names,
                         name=f"mcproton paediatric {region} phantom, {d.age_years:g} y {d.sex}")
    geom.meta = {  # type: ignore[attr-defined]
        "age_years": d.age_years, "sex": d.sex, "region": region, "voxel_mm": v,
        "frame": "patient LPS-like, head-first supine: +x = patient left, +y = posterior, +z = superior; "
                 "origin = centre of the cranial cavity in the plane of maximum head circumference",
        "landmarks_mm": dict(d.landmarks),
        "published": dict(d.published),
        "design": {k: val for k, val in p.items()},
        "label_tissue": {nm: t for _, (nm, t) in LABELS.items()},
        "vertebrae": [dict(x) for x in d.vertebrae],
    }
    return geom


def landmarks(age_years: float, sex: str = "male") -> dict[str, tuple[float, float, float]]:
    """Centres (x, y, z) in mm of the key structures, in the phantom frame (no voxelisation)."""
    return dict(design(age_years, sex).landmarks)

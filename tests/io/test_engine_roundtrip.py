"""End-to-end geometry of the patient workflow: a DICOM CT series and an RT Ion Plan written with pydicom,
read through the run config (phantom.type = "ct", [plan]), transported, and the dose checked against the
analytic IEC 61217 -> LPS geometry worked out by hand below (not with mcproton's own matrices):

HFS, table = fixed at couch 0: x_L = +Xf, y_P = -Zf, z_S = +Yf.  Gantry angle t rotates about Yf (right-
handed): beam direction -Zg = (-sin t, 0, -cos t)_f, Xg = (cos t, 0, -sin t)_f, Yg = Yf.  A couch angle p
rotates the table counter-clockwise seen from above: v_table = Rz(-p) v_f.

  gantry 0,   couch 0:  beam +y, spot X -> +x, spot Y -> +z
  gantry 90,  couch 0:  beam -x, spot X -> +y, spot Y -> +z
  gantry 270, couch 0:  beam +x, spot X -> -y, spot Y -> +z
  gantry 90,  couch 90: beam +z, spot X -> +y, spot Y -> +x
  gantry 0,   couch 90: beam +y, spot X -> -z, spot Y -> +x

A sign or axis error in any rotation moves the Bragg peak to the wrong end of the box or a spot's dose to
the mirrored position, and fails a test.
"""
from __future__ import annotations

import numpy as np
import pytest

from dicom_factories import make_plan, save

E_MEV = 70.0            # CSDA range in water ~40.8 mm
R_WATER_MM = 40.8
HALF = 50.0             # water box -50..50 mm on each axis
VOX = 2.5
ISO = (4.0, -6.0, 3.0)  # off-centre, so that a wrong isocentre sign is visible
SPOTS = ((25.0, 0.0), (0.0, -18.0))   # spot positions (X, Y) at the isocentre plane (mm): one along X, one along Y
WEIGHTS = (1.0, 0.5)                  # unequal MU, so that an X <-> Y swap is visible

CASES = {  # (gantry, couch): (beam axis, sign), spot X axis (axis, sign), spot Y axis (axis, sign)
    (0.0, 0.0): (("y", +1), ("x", +1), ("z", +1)),
    (90.0, 0.0): (("x", -1), ("y", +1), ("z", +1)),
    (270.0, 0.0): (("x", +1), ("y", -1), ("z", +1)),
    (90.0, 90.0): (("z", +1), ("y", +1), ("x", +1)),
    (0.0, 90.0): (("y", +1), ("z", -1), ("x", +1)),
}


def _unit(ax: str, s: int) -> np.ndarray:
    v = np.zeros(3)
    v["xyz".index(ax)] = s
    return v


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from mcproton.config import build_beams, build_geometry, check_beam_hits, load_config, run_settings
    from mcproton._io.dicom_common import PHANTOM_STUDY
    from mcproton.dicom import write_ct_series
    from mcproton.run import simulate

    d = tmp_path_factory.mktemp("roundtrip")
    n = int(round(2 * HALF / VOX))
    c0 = -HALF + VOX / 2
    for_uid = "1.2.826.0.1.3680043.8.498.1"
    write_ct_series(np.zeros((n, n, n)), (VOX, VOX, VOX), (c0, c0, c0), d / "ct",
                    study=PHANTOM_STUDY.replace(frame_of_reference_uid=for_uid))
    cal = d / "cal"
    cal.mkdir()
    (cal / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.0012\n0,1.0\n1000,2.0\n")
    (cal / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-2000,water,0.111894,0.888106\n")
    beams = [{"gantry": g, "couch": c, "iso": ISO, "layers": [(E_MEV, list(SPOTS), list(WEIGHTS))], "meterset": 10.0}
             for g, c in CASES]
    save(make_plan(beams, frame_of_reference_uid=for_uid), d / "RP.dcm")
    (d / "run.toml").write_text("""
[run]
primaries = 3000
seed = 7
batches = 4
[phantom]
type = "ct"
ct_dir = "ct"
calibration = "cal"
[plan]
rtplan = "RP.dcm"
beam_model = "dcpt_v2"
""")
    cfg = load_config(d / "run.toml")
    geometry = build_geometry(cfg)
    plan_beams = build_beams(cfg)
    check_beam_hits(geometry, plan_beams)
    settings = run_settings(cfg)
    out = {key: simulate(geometry, b, settings, beam_index=i)   # beam i: its own random stream
           for i, (key, b) in enumerate(zip(CASES, plan_beams))}
    return geometry, out


def _coords(g):
    return np.meshgrid(g.axis_mm("z"), g.axis_mm("y"), g.axis_mm("x"), indexing="ij")


@pytest.mark.parametrize("case", list(CASES), ids=[f"g{int(g)}c{int(c)}" for g, c in CASES])
def test_depth_dose_axis(results, case):
    """The Bragg peak lies ~R(70 MeV) downstream of the entrance face on the expected side."""
    g, res = results
    (ax, s), _, _ = CASES[case]
    k = "xyz".index(ax)
    dose = res[case].dose_gy_zyx
    prof = dose.sum(axis=tuple(i for i in range(3) if i != 2 - k))
    pos = g.axis_mm(ax)
    peak = pos[int(np.argmax(prof))]
    depth_of_peak = s * (peak - (-s * HALF))        # entrance face at -s*HALF
    assert depth_of_peak == pytest.approx(R_WATER_MM - 2.0, abs=5.0)
    # no dose beyond the range: the far side of the box stays cold
    far = prof[(s * pos) > (-HALF + R_WATER_MM + 8.0)]
    assert far.sum() < 0.02 * prof.sum()


@pytest.mark.parametrize("case", list(CASES), ids=[f"g{int(g)}c{int(c)}" for g, c in CASES])
def test_isocentre_and_spot_positions(results, case):
    """Each spot's dose centroid (over the slab 5..30 mm deep) sits at iso + offset along the expected axes,
    and the mirrored positions get no dose."""
    g, res = results
    (ax, s), (xa, xs), (ya, ys) = CASES[case]
    dose = res[case].dose_gy_zyx
    Z, Y, X = _coords(g)
    P = np.stack([X, Y, Z], axis=-1)
    beam = _unit(ax, s)
    iso = np.asarray(ISO)
    depth = s * P[..., "xyz".index(ax)] + HALF            # depth from the entrance face (-s*HALF on the axis)
    slab = (depth > 5.0) & (depth < 30.0)
    lat = P - (P @ beam)[..., None] * beam                 # projection on the plane through the origin
    iso_lat = iso - (iso @ beam) * beam
    total = dose[slab].sum()
    blob = []
    for (axis, sign), off in zip(((xa, xs), (ya, ys)), (SPOTS[0][0], SPOTS[1][1])):
        want = iso_lat + sign * off * _unit(axis, 1)        # divergence: < 1.5 % over the slab (SAD >= 2 m)
        mirror = iso_lat - sign * off * _unit(axis, 1)
        near = slab & (np.linalg.norm(lat - want, axis=-1) < 10.0)
        w = dose[near]
        blob.append(w.sum())
        assert w.sum() > 0.2 * total, f"spot along {axis}: too little dose near {want}"
        c = (lat[near] * w[:, None]).sum(axis=0) / w.sum()
        assert np.allclose(c, want, atol=1.5), f"spot along {axis}: centroid {c}, expected {want}"
        bad = slab & (np.linalg.norm(lat - mirror, axis=-1) < 8.0)
        assert dose[bad].sum() < 0.02 * total, f"dose at the mirrored spot position {mirror}"
    assert blob[0] / blob[1] == pytest.approx(WEIGHTS[0] / WEIGHTS[1], rel=0.2)   # the right spot in each place
    # overall lateral centroid = iso + MU-weighted mean spot offset
    c_all = (lat[slab] * dose[slab][:, None]).sum(axis=0) / total
    wx, wy = WEIGHTS[0] / sum(WEIGHTS), WEIGHTS[1] / sum(WEIGHTS)
    want_all = iso_lat + wx * SPOTS[0][0] * xs * _unit(xa, 1) + wy * SPOTS[1][1] * ys * _unit(ya, 1)
    assert np.allclose(c_all, want_all, atol=1.5)


def test_sum_results(results):
    from mcproton.run import sum_results

    g, res = results
    rs = list(res.values())
    tot = sum_results(rs)
    assert np.allclose(tot.dose_gy_zyx, np.sum([r.dose_gy_zyx for r in rs], axis=0))
    assert tot.primaries == sum(r.primaries for r in rs)
    hot = tot.dose_gy_zyx > 0.2 * tot.dose_gy_zyx.max()
    assert np.all(tot.let_d_kev_um_zyx[hot] > 0)
    hi = np.max([r.let_d_kev_um_zyx for r in rs], axis=0)
    assert np.all(tot.let_d_kev_um_zyx[hot] <= hi[hot] + 1e-9)
    # quadrature: the summed relative error is never above the largest contributing relative error
    assert np.all(tot.uncertainty_rel_zyx[hot] <= np.max([r.uncertainty_rel_zyx for r in rs], axis=0)[hot] + 1e-12)
    assert abs(tot.ledger["imbalance_rel"]) < 1e-6
    assert "sum of 5 beams" in tot.normalisation

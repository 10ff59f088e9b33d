"""The planner's host steps made cheaper without changing the plan (issue 15 item 3): the posterior-fossa
target from broadcast coordinates, the tissue-voxel centres of the skin distance computed once per geometry."""
import numpy as np

from mcproton import planning as P
from mcproton.phantoms import make_head_phantom
from mcproton.phantoms import reference_plans as RP
from mcproton.planning import raytrace as R


def test_posterior_fossa_target_is_the_full_grid_formula():
    """Broadcast (sparse) coordinates give the ellipsoid of full meshgrids voxel for voxel."""
    g = make_head_phantom(5, 4.0, region="head")
    z, y, x = (g.axis_mm(a) for a in "zyx")
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    c = np.asarray(g.meta["landmarks_mm"]["posterior_fossa"], float)
    s = np.array([22.0, 16.0, 16.0])
    ell = ((X - c[0]) / s[0]) ** 2 + ((Y - c[1]) / s[1]) ** 2 + ((Z - c[2]) / s[2]) ** 2 <= 1.0
    tgt = RP.posterior_fossa_target(g)
    assert tgt.shape == g.shape_zyx and tgt.sum() > 100
    assert np.array_equal(tgt, ell & RP._label_mask(g, RP.INTRACRANIAL))


def test_skin_distance_reuses_the_tissue_centres_and_sees_changes():
    g = make_head_phantom(5, 4.0, region="head")
    iso = np.array(g.meta["landmarks_mm"]["posterior_fossa"], float)
    d = P.gantry_direction(180.0)

    def fresh() -> float:            # the definition: every tissue voxel's centre, computed now
        ax, ay = R._beam_frame(d)
        pts = R.voxel_centres_mm(g, g.density_g_cm3_zyx >= 0.05) - iso
        u, v, s = pts @ ax, pts @ ay, pts @ d
        inside = (u >= -30) & (u <= 30) & (v >= -30) & (v <= 30)
        return float(max(0.0, -s[inside].min()))

    a = R.skin_distance_mm(g, iso, d, (-30, 30), (-30, 30))
    first = R._TISSUE_CENTRES["last"][3]
    b = R.skin_distance_mm(g, iso, d, (-30, 30), (-30, 30))
    assert R._TISSUE_CENTRES["last"][3] is first          # the second field reuses the centres
    assert a == b == fresh() > 0
    # a density changed in place (air in front of the target): the cache notices, the skin moves
    ax, ay = R._beam_frame(d)
    pts = R.voxel_centres_mm(g, np.ones(g.shape_zyx, bool)) - iso
    front = (np.abs(pts @ ax) <= 30) & (np.abs(pts @ ay) <= 30) & (pts @ d < -(a - 12.0))
    g.density_g_cm3_zyx[front.reshape(g.shape_zyx)] = 0.0
    c = R.skin_distance_mm(g, iso, d, (-30, 30), (-30, 30))
    assert R._TISSUE_CENTRES["last"][3] is not first
    assert c == fresh() < a - 8.0
    # another geometry of the same grid does not take the first one's centres
    g2 = make_head_phantom(5, 4.0, region="head")
    assert R.skin_distance_mm(g2, iso, d, (-30, 30), (-30, 30)) == a

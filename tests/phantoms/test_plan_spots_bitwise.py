"""A plan's engine spots made as whole arrays (issue 15 item 3: the demo's host steps) are the spots made one at a
time before, bit for bit: every Spot attribute (value and type), every range-shifter slab, and the kernel's spot
records.  The previous per-spot code is kept here line for line as the reference."""
import copy
import dataclasses
import struct

import numpy as np
import pytest

from mcproton import planning as P
from mcproton.phantoms import reference_plans as RP
from mcproton.source import Beam, RangeShifterSlab, Spot, _rowdot, _unit_rows, make_spots


def _old_generic_spots(f):
    """FieldSpots.spots without a machine, as before (plan.py at 18dfc5e)."""
    ax, ay, d = f.axis_x, f.axis_y, f.direction
    out = []
    for u, v, e, w in zip(f.u_mm, f.v_mm, f.energy_mev, f.weights):
        pos = f.isocentre_mm + u * ax + v * ay - f.source_distance_mm * d
        out.append(Spot(float(e), position_mm=tuple(pos), direction=tuple(d), axis_x=tuple(ax),
                        energy_spread_mev=float(f.energy_spread_rel * e),
                        sigma_mm=(f.sigma_air_mm, f.sigma_air_mm), weight=float(w)))
    return out


def _old_machine_spots(f):
    """FieldSpots._machine_spots as before (plan.py at 18dfc5e)."""
    m = f.machine
    ax, ay, d = f.axis_x, f.axis_y, f.direction
    L = m.plane_mm
    vx, vy = m.vsad_mm
    out = []
    layers = {}
    for u, v, e_nom, w in zip(f.u_mm, f.v_mm, f.nominal_energy_mev, f.weights):
        e_nom = float(e_nom)
        if e_nom not in layers:
            ent = m.model.at(e_nom)
            layers[e_nom] = (ent, sum(c.weight for c in ent.components))
        ent, wsum = layers[e_nom]
        dvec = u / vx * ax + v / vy * ay + d
        dvec = dvec / np.linalg.norm(dvec)
        pos = f.isocentre_mm + u * (1 - L / vx) * ax + v * (1 - L / vy) * ay - L * d
        slab = None
        if m.shifter is not None:
            face = (L - m.shifter_distance_mm - m.thickness_mm) / float(np.dot(dvec, d))
            slab = RangeShifterSlab(m.shifter.material, m.thickness_mm, m.shifter.density, face,
                                    id=m.shifter.id, wet_mm=float(m.shifter.wet_mm))
        axs = ax - dvec * np.dot(ax, dvec)
        for c in ent.components:
            out.append(Spot(float(ent.mean_energy_mev), position_mm=tuple(pos), direction=tuple(dvec),
                            axis_x=tuple(axs), energy_spread_mev=float(ent.energy_spread_mev),
                            sigma_mm=c.sigma_mm, divergence_rad=c.divergence_rad,
                            correlation=c.correlation,
                            weight=float(w * c.weight / wsum), range_shifter=slab))
    return out


def _canon(x):
    """A value as nested (type, bytes) leaves: equal only if every number is the same bits and type."""
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(_canon(y) for y in x))
    if isinstance(x, np.ndarray):
        return ("ndarray", str(x.dtype), x.shape, x.tobytes())
    if isinstance(x, np.generic):
        return (type(x).__name__, x.tobytes())
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    if dataclasses.is_dataclass(x):
        return (type(x).__name__, tuple((k, _canon(v)) for k, v in vars(x).items()))
    return (type(x).__name__, x)


def _same_spots(a, b):
    assert len(a) == len(b) > 0
    for i, (s, t) in enumerate(zip(a, b)):
        assert list(vars(s)) == list(vars(t)), i
        assert _canon(s) == _canon(t), f"spot {i}: {s} != {t}"


def test_rowdot_is_numpy_dot_row_by_row():
    """_rowdot must round as np.dot of one 3-vector (BLAS, fused multiply-adds on AVX2); a plain sum of products
    differs on ~1/3 of random rows on this VM, so the test fails if _rowdot were such a sum."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(20000, 3)) * rng.uniform(1e-3, 1e3, size=(20000, 1))
    b = rng.normal(size=(20000, 3))
    ref = np.array([np.dot(x, y) for x, y in zip(a, b)])
    assert _rowdot(a, b).tobytes() == ref.tobytes()
    assert _rowdot(a, b[7]).tobytes() == np.array([np.dot(x, b[7]) for x in a]).tobytes()
    assert _unit_rows(a).tobytes() == np.array([x / np.linalg.norm(x) for x in a]).tobytes()


def test_make_spots_equals_spot_by_spot_and_raises_spots_errors():
    rng = np.random.default_rng(3)
    n = 500
    pos = rng.normal(size=(n, 3)) * 300
    d = rng.normal(size=(n, 3))
    ax = rng.normal(size=(n, 3))
    slab = RangeShifterSlab("lexan", 29.9, 1.2, 10.0, id="RS")
    kw = {"energy_spread_mev": [float(x) for x in rng.uniform(0, 1, n)],
          "sigma_mm": [(float(x), float(y)) for x, y in rng.uniform(1, 9, (n, 2))],
          "divergence_rad": [(float(x), float(y)) for x, y in rng.uniform(0, 5e-3, (n, 2))],
          "correlation": [(float(x), float(y)) for x, y in rng.uniform(-1, 1, (n, 2))],
          "weight": [float(x) for x in rng.uniform(0, 1e6, n)],
          "range_shifter": slab.at_faces(rng.uniform(0, 300, n))}
    e = [float(x) for x in rng.uniform(60, 240, n)]
    ref = [Spot(e[i], position_mm=tuple(pos[i]), direction=tuple(d[i]), axis_x=tuple(ax[i]),
                **{k: v[i] for k, v in kw.items()}) for i in range(n)]
    _same_spots(make_spots(e, pos, d, ax, **kw), ref)
    ref_slabs = [dataclasses.replace(slab, upstream_face_mm=s.upstream_face_mm) for s in kw["range_shifter"]]
    assert [_canon(s) for s in ref_slabs] == [_canon(s) for s in kw["range_shifter"]]
    # a bad spot anywhere: Spot's own error
    bad_ax = ax.copy()
    bad_ax[17] = d[17] * 2.0
    with pytest.raises(ValueError, match="parallel to the direction"):
        make_spots(e, pos, d, bad_ax, **kw)
    with pytest.raises(ValueError, match="above 350 MeV"):
        make_spots(e[:-1] + [400.0], pos, d, ax, **kw)
    with pytest.raises(ValueError, match="downstream of the source plane"):
        slab.at_faces([1.0, -2.0])


def test_spot_array_column_by_column_is_the_spot_by_spot_array():
    rng = np.random.default_rng(5)
    n = 300
    slab = RangeShifterSlab("lexan", 29.9, 1.2, 10.0, id="RS")
    spots = make_spots([float(x) for x in rng.uniform(60, 240, n)], rng.normal(size=(n, 3)) * 300,
                       rng.normal(size=(n, 3)), rng.normal(size=(n, 3)),
                       energy_spread_mev=[0.5] * n, sigma_mm=[(3.0, 4.0)] * n, divergence_rad=[(1e-3, 2e-3)] * n,
                       correlation=[(0.1, -0.2)] * n, weight=[1.0] * n,
                       range_shifter=[slab if i % 3 else None for i in range(n)])
    beam = Beam(spots, total_protons=1e9)
    names = ["water", "polycarbonate"]
    assert beam.spot_array(names).tobytes() == beam._spot_array_one_by_one(names).tobytes()
    assert beam.spot_array().tobytes() == beam._spot_array_one_by_one(["polycarbonate"]).tobytes()
    assert [m.name for m in beam.shifter_materials()] == ["polycarbonate"]
    with pytest.raises(ValueError, match="not in the run's material list"):
        beam.spot_array(["water"])
    # float32 positions divide in float32 spot by spot: the one-by-one path is taken, so still the same
    beam.spots[4] = dataclasses.replace(beam.spots[4], position_mm=tuple(np.float32([1.1, 2.3, -333.7])))
    assert beam.spot_array(names).tobytes() == beam._spot_array_one_by_one(names).tobytes()


@pytest.fixture(scope="module")
def plan4(demo_plan_4mm_shared):
    return copy.deepcopy(demo_plan_4mm_shared)          # the demo plan at 4 mm (tests/conftest.py)


def test_demo_plan_spots_are_the_spot_by_spot_ones(plan4):
    """The demo plan (dcpt_v5 behind RS_3CM on all three fields) at 4 mm: every engine spot and record."""
    g, plan = plan4
    assert all(f.machine is not None and f.machine.shifter is not None for f in plan.fields)
    for f in plan.fields:
        _same_spots(f.spots(), _old_machine_spots(f))
    beam = plan.beam()
    old = Beam([s for f in plan.fields for s in _old_machine_spots(f) if s.weight > 0],
               total_protons=plan.total_protons, name=plan.name)
    _same_spots(beam.spots, old.spots)
    names = [m.name for m in beam.run_materials(g.materials)]
    assert len(beam.shifter_materials()) == 1 and beam.shifter_materials()[0].name in names
    assert beam.spot_array(names).tobytes() == old._spot_array_one_by_one(names).tobytes()
    assert beam.spot_cdf().tobytes() == old.spot_cdf().tobytes()
    assert beam.shifter_materials() == old.shifter_materials()


def test_generic_beam_spots_are_the_spot_by_spot_ones(plan4):
    g, _ = plan4
    tgt = RP.posterior_fossa_target(g)
    pts = P.voxel_centres_mm(g, tgt)
    rsp = P.relative_stopping_power(g)
    f, _ = P.generate_field_spots(g, rsp, pts, P.gantry_direction(140.0), beam_model=None)
    f.weights = np.linspace(0.0, 2.0, f.n_spots)
    assert f.machine is None and f.n_spots > 100
    _same_spots(f.spots(), _old_generic_spots(f))
    assert f.beam().spot_array().tobytes() == Beam(
        [s for s in _old_generic_spots(f) if s.weight > 0])._spot_array_one_by_one([]).tobytes()


def test_majorant_is_the_maximum_over_each_window():
    """The physics tables' majorant column (built for every run) from a table of window maxima: the same values
    as the maximum of each node's window, taken slice by slice as before."""
    from mcproton._physics import tables as T

    def by_slices(e, sigma):
        n = len(e)
        out = np.empty_like(sigma)
        lo = np.searchsorted(e, T.MAJORANT_LOW_FRACTION * e[np.maximum(np.arange(n) - 1, 0)], side="right") - 1
        for i in range(n):
            out[i] = sigma[max(lo[i], 0):min(i + 2, n)].max()
        return out

    rng = np.random.default_rng(11)
    e = np.exp(np.linspace(np.log(T.E_MIN_MEV), np.log(T.E_MAX_MEV), T.N_E))
    for _ in range(20):
        s = rng.uniform(0, 1, T.N_E) ** rng.uniform(1, 5)
        assert T.majorant(e, s).tobytes() == by_slices(e, s).tobytes()
    for n in (1, 2, 3, 5, 17, 100):
        ee, s = np.sort(rng.uniform(0.1, 300, n)), rng.uniform(0, 1, n)
        assert T.majorant(ee, s).tobytes() == by_slices(ee, s).tobytes()
    t = T.build_tables(["water", "polycarbonate"])
    col = t.energy_table[:, :, T.COL["hard_sigma_max"]]
    assert np.all(col >= t.energy_table[:, :, T.COL["hard_sigma"]]) and col.max() > 0

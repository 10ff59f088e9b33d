"""RT Ion Plan import and plan -> Beam conversion: real plans, IEC 61217 geometry, MU, range shifters."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from mcproton._io.beam_model import load_beam_model
from mcproton._io.errors import DicomInputError, McprotonWarning
from mcproton._io.rtplan import BK_ALPHA_CM, BK_P, load_rtplan, plan_to_beams
from mcproton.source import Beam

from dicom_factories import make_plan, save

DATA = Path(__file__).resolve().parent.parent / "data" / "dicom"
SX, SY = 2000.0, 2560.0          # virtual source-axis distances written by make_plan
ISO = np.array([12.0, -30.0, 45.0])
SPOTS = [(0.0, 0.0), (20.0, 0.0), (0.0, -30.0), (-15.0, 25.0)]
WEIGHTS = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def model():
    return load_beam_model("dcpt_v2")


def test_eclipse_plan02(model):
    plan = load_rtplan(DATA / "RN_plan02_mono.dcm")
    assert len(plan.beams) == 1
    b = plan.beams[0]
    assert b.patient_position == "HFS" and b.gantry_angle_deg == 0 and b.couch_angle_deg == 0
    np.testing.assert_allclose(b.isocenter_mm, [0, -80, 0])
    assert len(b.layers) == 1 and b.layers[0].nominal_energy_mev == 160.0
    assert b.n_spots == 323
    assert b.total_mu == pytest.approx(58414.5492229546, rel=1e-6)  # = BeamMeterset
    assert b.virtual_source_axis_distances_mm == (2000.0, 2560.0)
    assert b.snout_id == "S1" and b.layers[0].number_of_paintings == 1
    (beam,) = plan_to_beams(plan, model)
    assert isinstance(beam, Beam) and len(beam.spots) == 323
    ppmu = model.at(160.0).protons_per_mu
    assert beam.total_protons == pytest.approx(b.total_mu * ppmu, rel=1e-6)
    pos = np.array([s.position_mm for s in beam.spots])
    np.testing.assert_allclose(pos[:, 1], -80.0 - 500.0, atol=1e-9)   # plane 500 mm upstream (anterior)
    assert all(s.energy_mev == pytest.approx(model.at(160.0).mean_energy_mev) for s in beam.spots)


def test_raystation_plan05(model):
    plan = load_rtplan(DATA / "RP_plan05.dcm")
    b = plan.beams[0]
    assert len(b.layers) == 13
    e = [l.nominal_energy_mev for l in b.layers]
    assert e[0] == 119.5 and e[-1] == 81.7 and all(np.diff(e) < 0)
    assert b.total_mu == pytest.approx(52188.75, rel=1e-6)
    np.testing.assert_allclose(b.isocenter_mm, [0, -25, 0])
    beams = plan_to_beams(load_rtplan(DATA / "RP_plan05.dcm"), load_beam_model("dcpt_v5"))
    assert len(beams[0].spots) == b.n_spots


def _expected_axes(case):
    """Gantry axes Xg, Yg and source-side axis Zg in LPS for an HFS patient, written out by hand."""
    x, y, z = np.eye(3)
    return {
        "g0": (x, z, -y),        # beam from anterior; BEV X = patient left, BEV Y = superior
        "g90": (y, z, x),        # source at patient's left (+x), beam travels -x
        "g270": (-y, z, -x),     # source at patient's right, beam travels +x
        "g90c90": (y, x, -z),    # couch 90: beam from the feet, travels +z
        "g0c90": (-z, x, -y),    # couch 90 at gantry 0: BEV X points to the feet
    }[case]


@pytest.mark.parametrize("case,gantry,couch", [("g0", 0, 0), ("g90", 90, 0), ("g270", 270, 0),
                                                ("g90c90", 90, 90), ("g0c90", 0, 90)])
def test_geometry_round_trip(tmp_path, model, case, gantry, couch):
    ds = make_plan([{"gantry": gantry, "couch": couch, "iso": ISO, "meterset": 50.0,
                     "layers": [(150.0, SPOTS, WEIGHTS)]}])
    plan = load_rtplan(save(ds, tmp_path / "plan.dcm"))
    (beam,) = plan_to_beams(plan, model)
    xg, yg, zg = _expected_axes(case)
    L = model.plane_upstream_of_isocentre_mm
    np.testing.assert_allclose(beam.meta["beam_direction"], -zg, atol=1e-12)
    np.testing.assert_allclose(beam.meta["isocenter_mm"], ISO)
    assert len(beam.spots) == len(SPOTS)
    for s, (X, Y) in zip(beam.spots, SPOTS):
        exp_pos = ISO + X * (1 - L / SX) * xg + Y * (1 - L / SY) * yg + L * zg
        exp_dir = X / SX * xg + Y / SY * yg - zg
        exp_dir /= np.linalg.norm(exp_dir)
        np.testing.assert_allclose(s.position_mm, exp_pos, atol=1e-9)
        np.testing.assert_allclose(s.direction, exp_dir, atol=1e-12)
        # the ray reaches the spot position in the isocentre plane
        t = np.dot(ISO - np.asarray(s.position_mm), zg) / np.dot(s.direction, zg)
        np.testing.assert_allclose(np.asarray(s.position_mm) + t * np.asarray(s.direction), ISO + X * xg + Y * yg,
                                   atol=1e-9)
        assert abs(np.dot(s.axis_x, s.direction)) < 1e-12 and np.dot(s.axis_x, xg) > 0.99
    # MU per spot = BeamMeterset * w / FinalCumulativeMetersetWeight, protons = MU * protons/MU
    ppmu = model.at(150.0).protons_per_mu
    w = np.array([s.weight for s in beam.spots])
    np.testing.assert_allclose(w, 50.0 * np.array(WEIGHTS) / sum(WEIGHTS) * ppmu, rtol=1e-12)
    assert beam.total_protons == pytest.approx(50.0 * ppmu)


def test_other_patient_positions(tmp_path, model):
    for pos, expect in [("HFP", [0, -1, 0]), ("FFS", [0, 1, 0]), ("FFP", [0, -1, 0])]:
        ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]}],
                       patient_position=pos)
        (beam,) = plan_to_beams(load_rtplan(ds), model)
        np.testing.assert_allclose(beam.meta["beam_direction"], expect, atol=1e-12)
    ds = make_plan([{"gantry": 90, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]}],
                   patient_position="HFP")
    (beam,) = plan_to_beams(load_rtplan(ds), model)
    np.testing.assert_allclose(beam.meta["beam_direction"], [1, 0, 0], atol=1e-12)  # prone: source at patient's right
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]}],
                   patient_position="LFS")  # left first: no IEC 61217 mapping (decubitus: test_patient_positions.py)
    with pytest.raises(DicomInputError, match="LFS"):
        plan_to_beams(load_rtplan(ds), model)


def test_multi_beam_multi_layer_and_fractions(model):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "meterset": 10.0,
                     "layers": [(150.0, SPOTS, WEIGHTS), (140.0, SPOTS[:2], [5.0, 5.0])]},
                    {"gantry": 90, "couch": 0, "iso": ISO, "meterset": 20.0, "layers": [(120.0, SPOTS, WEIGHTS)]}],
                   n_fractions=5)
    plan = load_rtplan(ds)
    assert [len(b.layers) for b in plan.beams] == [2, 1] and plan.number_of_fractions == 5
    assert plan.beams[0].total_mu == pytest.approx(10.0)
    b1, b2 = plan_to_beams(plan, model)
    assert len(b1.spots) == 6
    (only2,) = plan_to_beams(plan, model, beam_numbers=[2], all_fractions=True)
    assert only2.total_protons == pytest.approx(5 * b2.total_protons)


def test_np_meterset_is_the_number_of_protons(model):
    """PrimaryDosimeterUnit NP: the BeamMeterset and the cumulative meterset weights count particles (PS3.3
    C.8.8.25), so a beam's protons are its meterset, whatever the beam model's protons per MU (~1e8 at 150 MeV: an
    NP plan taken as MU would be off by that factor).  No test plan had NP (mutation audit 2026-12-05, G5).  A beam
    of 2e9 protons with spot weights 1:2:3:4 over 3 fractions: 2e9 per fraction, the spots 0.2e9, 0.4e9, 0.6e9 and
    0.8e9 (summed over the beam model's components), 6e9 for all fractions."""
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "unit": "NP", "meterset": 2.0e9,
                     "layers": [(150.0, SPOTS, WEIGHTS)]}], n_fractions=3)
    (beam,) = plan_to_beams(load_rtplan(ds), model)
    assert beam.total_protons == pytest.approx(2.0e9, rel=1e-12)
    per_spot = np.array([s.weight for s in beam.spots]).reshape(len(SPOTS), -1).sum(axis=1)
    assert per_spot == pytest.approx([0.2e9, 0.4e9, 0.6e9, 0.8e9], rel=1e-12)
    (beam_all,) = plan_to_beams(load_rtplan(ds), model, all_fractions=True)
    assert beam_all.total_protons == pytest.approx(6.0e9, rel=1e-12)
    # its meterset is protons, not MU (audit 27, spotsem F2: total_mu held the protons, which the check showed as MU)
    (b,) = load_rtplan(ds).beams
    assert b.total_mu is None and b.total_meterset == pytest.approx(2.0e9, rel=1e-12)
    assert beam.meta["total_mu"] is None and beam.meta["meterset_unit"] == "NP"
    assert beam.meta["total_meterset"] == pytest.approx(2.0e9, rel=1e-12)


def _plan_1234(unit="MU", meterset=10.0):
    """One 150 MeV layer, spot weights 1:2:3:4 of ``meterset`` (MU: 1, 2, 3 and 4 MU)."""
    return load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "unit": unit, "meterset": meterset,
                                   "layers": [(150.0, SPOTS, WEIGHTS)]}]))


def test_min_mu_leaves_out_spots_with_a_warning_and_a_record(model):
    """plan_to_beams(min_mu=...) dropped spots, and their dose, without a word, while meta["total_mu"] kept the plan's
    whole MU (audit 27, spotsem F3).  Now each beam that loses spots is warned about (count, MU, share), its meta
    records what was left out and the MU simulated beside the plan's, and total_protons is the spots kept's."""
    plan = _plan_1234()
    (full,) = plan_to_beams(plan, model)
    assert "min_mu" not in full.meta and full.meta["simulated_mu"] == pytest.approx(10.0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        (beam,) = plan_to_beams(plan, model, min_mu=2.5)
    said = [str(x.message) for x in w if "min_mu" in str(x.message)]
    assert len(said) == 1 and "beam 1 ('F1'): min_mu = 2.5 leaves out 2 of its 4 spots (3 of its 10 MU per " \
                               "fraction, 30 %)" in said[0], said
    assert said[0] in beam.meta["warnings"]
    assert beam.meta["min_mu"] == {"min_mu": 2.5, "spots_dropped": 2, "spots": 4, "mu_dropped": pytest.approx(3.0),
                                   "share_dropped": pytest.approx(0.3)}
    assert beam.meta["total_mu"] == pytest.approx(10.0) and beam.meta["simulated_mu"] == pytest.approx(7.0)
    assert beam.total_protons == pytest.approx(0.7 * full.total_protons, rel=1e-12)
    assert beam.meta["plan_spots"] == 2


def test_min_mu_is_refused_for_an_np_beam_and_where_it_is_not_a_number(model):
    """An NP beam's meterset counts protons: min_mu = 20 (MU) compared with 1e8-proton spots left out nothing."""
    with pytest.raises(DicomInputError, match=r"min_mu = 20 is MU per spot, but beam\(s\) 1 \('F1'\) are NP .*"
                                              "leave min_mu at 0"):
        plan_to_beams(_plan_1234("NP", 2e9), model, min_mu=20)
    (beam,) = plan_to_beams(_plan_1234("NP", 2e9), model)   # 0 (the default) is fine
    assert beam.total_protons == pytest.approx(2e9)
    for bad in (-1.0, float("nan"), True, "5"):
        with pytest.raises(DicomInputError, match="min_mu = .*a number >= 0"):
            plan_to_beams(_plan_1234(), model, min_mu=bad)


def test_min_mu_is_kept_in_the_result(model):
    from mcproton import RunSettings, box_phantom, simulate

    geometry = box_phantom("water", (40.0, 40.0, 40.0), 4.0, origin_mm=(-18.0, -18.0, -18.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (beam,) = plan_to_beams(_plan_1234(), model, min_mu=2.5)
        res = simulate(geometry, beam, RunSettings(primaries=100, batches=2, backend="cpu", threads=1), log=None)
    assert res.provenance["beam"]["min_mu"]["spots_dropped"] == 2
    assert any("min_mu = 2.5 leaves out 2 of its 4 spots" in m for m in res.provenance["warnings"])


def test_an_mu_beams_meterset_is_its_mu(model):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "meterset": 10.0, "layers": [(150.0, SPOTS, WEIGHTS)]}])
    (beam,) = plan_to_beams(load_rtplan(ds), model)
    assert beam.meta["total_mu"] == beam.meta["total_meterset"] == pytest.approx(10.0)
    assert beam.meta["meterset_unit"] == "MU"


@pytest.mark.parametrize("unit,meterset,shown", [("MU", -5.0, "-5 MU per fraction (PrimaryDosimeterUnit MU)"),
                                                  ("NP", 2e13, "2e+13 protons (NP) per fraction "
                                                               "(PrimaryDosimeterUnit NP)")])
def test_an_implausible_beam_meterset_names_the_tag_the_limit_and_the_unit(unit, meterset, shown):
    """A BeamMeterset below 0 or above 1e13 was refused as "BeamMeterset -5.0 is not plausible", without the tag, the
    limit, the unit it was read in or what to do (audit 27, spotsem F5)."""
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "unit": unit, "meterset": meterset,
                     "layers": [(150.0, SPOTS, WEIGHTS)]}])
    with pytest.raises(DicomInputError) as exc:
        load_rtplan(ds)
    msg = str(exc.value)
    for part in ("beam 1 (F1)", "BeamMeterset (300A,0086) of beam 1 in the fraction group is " + shown,
                 "must be > 0 and at most 1e+13 (MU or protons per fraction)", "export it again"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize("unit,what", [("MU", "the MU per fraction"), ("NP", "the protons (NP) per fraction")])
def test_a_missing_beam_meterset_names_the_tag_and_what_to_do(unit, what):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "unit": unit, "meterset": 2e9 if unit == "NP" else 10.0,
                     "layers": [(150.0, SPOTS, WEIGHTS)]}])
    del ds.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset
    with pytest.raises(DicomInputError) as exc:
        load_rtplan(ds)
    msg = str(exc.value)
    for part in ("beam 1 (F1)", "gives no BeamMeterset (300A,0086) for beam 1", "ReferencedBeamSequence (300C,0004)",
                 f"so {what} that the beam's spot weights stand for are unknown", "export it again"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize("value", [None, ""])
def test_missing_dosimeter_unit_is_refused(value):
    """PrimaryDosimeterUnit (300A,00B3) is Type 1 (PS3.3 C.8.8.25): a plan without it (an anonymiser or a hand edit
    dropped it) was read as MU without a word, so an NP plan of 2e9 protons became 2e9 MU, ~1e17 protons (I/O review
    2026-12-06, F2).  Refused, saying what is missing, why it matters and how to set it."""
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "unit": "NP", "meterset": 2.0e9,
                     "layers": [(150.0, SPOTS, WEIGHTS)]}])
    if value is None:
        del ds.IonBeamSequence[0].PrimaryDosimeterUnit
    else:
        ds.IonBeamSequence[0].PrimaryDosimeterUnit = value
    with pytest.raises(DicomInputError, match=r"PrimaryDosimeterUnit \(300A,00B3\).*missing or empty.*MU or "
                                              r"protons \(NP\).*1e6-fold.*dcmodify"):
        load_rtplan(ds)


def test_protons_labelled_mu_are_warned_about(model):
    """An MU beam of 2e9 "MU" (protons labelled MU: 1e6-1e8 times the dose) is warned about; the same beam with
    2e4 MU (a clinical beam holds up to ~1e5) is not."""
    for meterset, warned in ((2.0e9, True), (2.0e4, False)):
        ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "unit": "MU", "meterset": meterset,
                         "layers": [(150.0, SPOTS, WEIGHTS)]}])
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            plan_to_beams(load_rtplan(ds), model)
        said = [str(x.message) for x in w if "looks like protons labelled MU" in str(x.message)]
        assert bool(said) == warned, (meterset, [str(x.message) for x in w])


def test_range_shifter_energy_only_is_an_explicit_opt_in(model):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                     "rs_id": "RS_40", "rs_wet": 40.0}])
    plan = load_rtplan(ds)
    assert plan.beams[0].layers[0].range_shifter_settings[0]["wet_mm"] == 40.0
    # the default (transport) needs the shifter's material from the beam model: refused, naming what to add
    with pytest.raises(DicomInputError,
                       match=r"add to the model file \[\[range_shifter\]\] with id = 'RS_40', material"):
        plan_to_beams(plan, model)
    (beam,) = plan_to_beams(plan, model, range_shifter_model="energy_only")
    assert beam.meta["range_shifter_model"] == "energy_only" and beam.spots[0].range_shifter is None
    e_in = model.at(150.0).mean_energy_mev
    r_out = BK_ALPHA_CM * e_in ** BK_P - 4.0
    assert beam.spots[0].energy_mev == pytest.approx((r_out / BK_ALPHA_CM) ** (1 / BK_P))
    assert 120.0 < beam.spots[0].energy_mev < 135.0
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], "rs_id": "RS_X"}])
    with pytest.raises(DicomInputError, match="water-equivalent"):
        plan_to_beams(load_rtplan(ds), model, range_shifter_model="energy_only")
    with pytest.raises(DicomInputError, match="range_shifter_model 'bragg' is unknown"):
        plan_to_beams(plan, model, range_shifter_model="bragg")


def test_energy_only_shifter_widens_the_energy_spread(model):
    """energy_only: a beam of mean energy E_in and spread sigma_in leaves a shifter of WET w with E_out = E(R(E_in) -
    w); to first order its spread is sigma_in x dE_out/dE_in (linear error propagation).  That derivative is
    taken here numerically from energy_after_wet (central difference, 0.01 MeV), not from the formula in
    plan_to_beams (the only test of it was a copy of that formula, mutation audit 2026-12-05, G11): with R ~ E^p,
    p = 1.77, dE_out/dE_in = (E_in / E_out)^(p - 1) > 1, the spread grows behind the shifter.  150 MeV nominal
    through 40 mm WET."""
    from mcproton._io.rtplan import energy_after_wet

    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                     "rs_id": "RS_40", "rs_wet": 40.0}])
    (beam,) = plan_to_beams(load_rtplan(ds), model, range_shifter_model="energy_only")
    e_in, s_in = model.at(150.0).mean_energy_mev, model.at(150.0).energy_spread_mev
    h = 0.01
    slope = (energy_after_wet(e_in + h, 40.0) - energy_after_wet(e_in - h, 40.0)) / (2 * h)
    assert 1.05 < slope < 1.5
    for s in beam.spots:
        assert s.energy_mev == pytest.approx(energy_after_wet(e_in, 40.0), rel=1e-12)
        assert s.energy_spread_mev == pytest.approx(s_in * slope, rel=1e-6)


def _model_with_shifter(tmp_path, extra=""):
    import shutil

    src = Path(load_beam_model.__globals__["BUILTIN"]["dcpt_v2"])
    shutil.copy(src.parent / "dcpt_beam_model_full.csv", tmp_path)
    text = src.read_text().split("[[range_shifter]]")[0]
    (tmp_path / "m.toml").write_text(text + '[[range_shifter]]\nid = "RS_40"\nmaterial = "pmma"\nwet_mm = 40.0\n'
                                     + extra)
    return load_beam_model(tmp_path / "m.toml")


def test_range_shifter_transported_as_a_slab(tmp_path):
    m = _model_with_shifter(tmp_path)
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                     "rs_id": "RS_40", "rs_wet": 40.0}])
    (beam,) = plan_to_beams(load_rtplan(ds), m)
    assert beam.meta["range_shifter_model"] == "transport"
    e_in = m.at(150.0).mean_energy_mev
    L, D = m.plane_upstream_of_isocentre_mm, 300.0          # make_plan: IsocenterToRangeShifterDistance 300 mm
    zg = -np.asarray(beam.meta["beam_direction"])
    for s in beam.spots:
        rs = s.range_shifter
        assert s.energy_mev == pytest.approx(e_in)            # the energy is lowered by the transport, not here
        assert rs.material_name == "pmma" and rs.density_g_cm3 == pytest.approx(1.19)
        assert rs.thickness_mm == pytest.approx(40.0 / 1.164, rel=0.01)   # WET / SPR(PMMA) ~ 1.164
        cos = float(np.dot(s.direction, -zg))
        assert rs.upstream_face_mm == pytest.approx((L - D - rs.thickness_mm) / cos)
    # the slab must not reach upstream of the beam-model plane
    m2 = _model_with_shifter(tmp_path, "isocenter_distance_mm = 480.0\n")
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], "rs_id": "RS_40"}])
    ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0].IsocenterToRangeShifterDistance \
        = 480.0
    with pytest.raises(DicomInputError, match="upstream of the beam model's plane"):
        plan_to_beams(load_rtplan(ds), m2)


def test_range_shifter_position_from_the_model_when_the_plan_has_none(tmp_path):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], "rs_id": "RS_40"}])
    del ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0].IsocenterToRangeShifterDistance
    with pytest.raises(DicomInputError, match="add isocenter_distance_mm"):
        plan_to_beams(load_rtplan(ds), _model_with_shifter(tmp_path))
    (beam,) = plan_to_beams(load_rtplan(ds), _model_with_shifter(tmp_path, "isocenter_distance_mm = 250.0\n"))
    rs = beam.spots[0].range_shifter
    assert rs.upstream_face_mm == pytest.approx((500.0 - 250.0 - rs.thickness_mm) / np.dot(
        beam.spots[0].direction, beam.meta["beam_direction"]))


def test_the_plans_shifter_position_wins_over_the_beam_models(tmp_path):
    """The control point's IsocenterToRangeShifterDistance (300 mm in make_plan) is where the shifter is in this
    plan (the snout moves from plan to plan); the beam model's isocenter_distance_mm (250 mm here) is the fallback
    for a plan without one (module docstring).  With the model's, the air gap between shifter and patient is wrong,
    and so is the spot size at the patient.  The only test with both gave them equal (mutation audit 2026-12-05,
    G4).  The central spot runs along the beam axis: its slab's upstream face is L - 300 mm - thickness from the
    beam-model plane (L upstream of the isocentre)."""
    m = _model_with_shifter(tmp_path, "isocenter_distance_mm = 250.0\n")
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], "rs_id": "RS_40",
                     "rs_wet": 40.0}])
    (beam,) = plan_to_beams(load_rtplan(ds), m)
    rs = beam.spots[0].range_shifter                       # SPOTS[0] = (0, 0): along the axis
    assert rs.upstream_face_mm == pytest.approx(m.plane_upstream_of_isocentre_mm - 300.0 - rs.thickness_mm)
    assert beam.meta["range_shifters"]["RS_40"]["isocenter_distance_mm"] == 300.0


def test_the_wet_transported_is_recorded(tmp_path):
    """The provenance records the WET of the slab transported (thickness x stopping-power ratio) beside the model's
    wet_mm: with physical_thickness_mm the two may differ (by at most 1 mm; more is refused when the model is read)."""
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], "rs_id": "RS_40",
                     "rs_wet": 40.0}])
    (beam,) = plan_to_beams(load_rtplan(ds), _model_with_shifter(tmp_path))
    rec = beam.meta["range_shifters"]["RS_40"]
    assert rec["wet_mm"] == 40.0 and rec["transported_wet_mm"] == pytest.approx(40.0, abs=1e-9)
    (beam,) = plan_to_beams(load_rtplan(ds), _model_with_shifter(tmp_path, "physical_thickness_mm = 34.2\n"))
    rec = beam.meta["range_shifters"]["RS_40"]
    assert rec["thickness_mm"] == 34.2 and rec["wet_mm"] == 40.0
    assert rec["transported_wet_mm"] == pytest.approx(34.2 * 1.163, abs=0.3) and rec["transported_wet_mm"] != 40.0


@pytest.mark.filterwarnings("ignore::mcproton._io.errors.McprotonWarning")
def test_a_range_shifters_wet_is_taken_in_the_runs_water(tmp_path):
    """A plan's range shifter (RS_5CM, 57 mm WET of polycarbonate) becomes the slab whose WET in the run's water
    (physics.water_model) is the declared one, as the CT's HU -> SPR calibration follows that water: before (the
    units audit of 2026-12-07, F4) it was always ICRU 90's 49.62 mm, 56.71 mm WET in a PSTAR run's water.  The
    config route (mcproton run) passes the run's physics.water_model; ICRU 90, the default, is as before."""
    from mcproton._io.beam_model import shifter_stopping_power_ratio
    from mcproton.config import build_beams

    path = DATA / "RN_headphantom_rs.dcm"
    plan = load_rtplan(path)
    number = plan.beams[0].number
    model = load_beam_model("dcpt_v5")
    thick = {}
    for wm in ("icru90", "pstar"):
        (beam,) = plan_to_beams(plan, model, beam_numbers=[number], water_model=wm)
        slab = next(s.range_shifter for s in beam.spots if s.range_shifter is not None)
        spr = shifter_stopping_power_ratio(slab.material, slab.density_g_cm3, wm)
        assert slab.thickness_mm * spr == pytest.approx(57.0, abs=0.01)
        assert beam.meta["range_shifters"]["RS_5CM"]["water_model"] == wm
        thick[wm] = slab.thickness_mm
    assert thick["icru90"] == pytest.approx(49.62, abs=0.005)            # unchanged by default
    assert thick["pstar"] - thick["icru90"] == pytest.approx(0.25, abs=0.01)
    (beam,) = plan_to_beams(plan, model, beam_numbers=[number])
    assert beam.meta["range_shifters"]["RS_5CM"]["thickness_mm"] == thick["icru90"]
    cfg = {"plan": {"rtplan": str(path), "beam_model": "dcpt_v5", "beams": [number]},
           "physics": {"water_model": "pstar"}}
    (beam,) = build_beams(cfg)
    assert beam.meta["range_shifters"]["RS_5CM"]["thickness_mm"] == thick["pstar"]
    with pytest.raises(DicomInputError, match="water_model 'icru49' is unknown"):
        plan_to_beams(plan, model, beam_numbers=[number], water_model="icru49")


@pytest.mark.parametrize("wet", [40.0, 0.0])
@pytest.mark.parametrize("setting", ["out", "Out", "OUT"])
def test_a_range_shifter_set_out_in_any_case_is_out(tmp_path, setting, wet):
    """RangeShifterSetting is a CS (upper case, PS3.5 6.2), but exports and scripts that write "out" exist: read as
    IN, every layer would be a shifter's WET (40 mm here) short, so the setting is compared in upper case (when
    the plan is read, and by the plan checks, which accept a WET of 0 for a shifter OUT only).  Nothing kept that
    (mutation audit 2026-12-05, G10): no shifter in the beam line, none in the beam's record, the energy the
    model's."""
    m = _model_with_shifter(tmp_path)
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], "rs_id": "RS_40",
                     "rs_wet": wet}])
    ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0].RangeShifterSetting = setting
    (beam,) = plan_to_beams(load_rtplan(ds), m)
    assert all(s.range_shifter is None for s in beam.spots) and not beam.meta["range_shifters"]
    e_in = m.at(150.0).mean_energy_mev
    assert all(s.energy_mev == pytest.approx(e_in) for s in beam.spots)


@pytest.mark.parametrize("wet", [0.0, -40.0])
def test_range_shifter_wet_not_positive_refused(model, wet):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                     "rs_id": "RS_X", "rs_wet": wet}])
    # refused when the plan is read (plan_checks), before plan_to_beams' own check can be reached
    for rs_model in ("transport", "energy_only"):
        with pytest.raises(DicomInputError, match=r"water-equivalent thickness must be > 0 mm|WET <= 0 would make"):
            plan_to_beams(load_rtplan(ds), model, range_shifter_model=rs_model)


def test_real_plans_with_range_shifters(model):
    """The Eclipse head-phantom plan (RS_5CM, 57 mm WET) and the RayStation plan 06 (RS_3CM, 34.3 mm): the DCPT
    models describe both shifters (polycarbonate), so their layers carry slabs at the plans' positions."""
    (b1, b2, b3) = plan_to_beams(load_rtplan(DATA / "RN_headphantom_rs.dcm"), model)
    rs = b1.spots[0].range_shifter
    assert rs.id == "RS_5CM" and rs.material_name == "polycarbonate" and rs.density_g_cm3 == pytest.approx(1.2)
    assert rs.thickness_mm == pytest.approx(49.6, abs=0.1) and rs.wet_mm == 57.0
    # beam 1: IsocenterToRangeShifterDistance 275.53 mm (downstream face); plane 500 mm upstream
    central = min(b1.spots, key=lambda s: np.linalg.norm(np.cross(s.direction, b1.meta["beam_direction"])))
    cos = float(np.dot(central.direction, b1.meta["beam_direction"]))
    assert central.range_shifter.upstream_face_mm * cos == pytest.approx(500.0 - 275.5312 - 49.62, abs=0.05)
    assert b1.meta["range_shifters"]["RS_5CM"]["material"] == "polycarbonate"
    (b,) = plan_to_beams(load_rtplan(DATA / "RP_plan06_rs.dcm"), load_beam_model("dcpt_v5"))
    rs = b.spots[0].range_shifter
    assert rs.id == "RS_3CM" and rs.thickness_mm == pytest.approx(29.86, abs=0.05)


@pytest.mark.parametrize("kw,match", [
    ({"scan_mode": "UNIFORM"}, "uniform scanning"),
    ({"scan_mode": "NONE"}, "passive scattering"),
    ({"radiation": "ION"}, "only PROTON"),
])
def test_unsupported_beams(kw, match):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], **kw}])
    with pytest.raises(DicomInputError, match=match):
        load_rtplan(ds)


def test_photon_plan_and_no_beams():
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]}])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    ds.BeamSequence = ds.IonBeamSequence
    del ds.IonBeamSequence
    with pytest.raises(DicomInputError, match="photon"):
        load_rtplan(ds)
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]}])
    del ds.IonBeamSequence
    with pytest.raises(DicomInputError, match="no IonBeamSequence"):
        load_rtplan(ds)


def test_energy_outside_beam_model(model):
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(60.0, SPOTS, WEIGHTS)]}])
    with pytest.raises(ValueError, match="outside beam model"):
        plan_to_beams(load_rtplan(ds), model)


def test_config_key_range_shifter_model(tmp_path):
    from mcproton.config import build_beams, validate_config

    ds = make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                     "rs_id": "RS_40", "rs_wet": 40.0}])
    path = save(ds, tmp_path / "rp.dcm")
    cfg = validate_config({"plan": {"rtplan": str(path), "beam_model": "dcpt_v2",
                                    "range_shifter_model": "energy_only"}})
    (beam,) = build_beams(cfg)
    assert beam.meta["range_shifter_model"] == "energy_only" and beam.spots[0].energy_mev < 135.0
    cfg["plan"]["range_shifter_model"] = "transport"
    with pytest.raises(DicomInputError, match="RS_40"):   # the DCPT models do not describe RS_40
        build_beams(cfg)


# ---------------------------------------------------------------------- the plan's treatment machine and the model
def test_a_plan_for_another_treatment_machine_is_refused(tmp_path, model):
    """The DCPT model is of TR1-TR3: a beam for 'GTR4' (another clinic's machine) would get a plausible but wrong
    dose, so it is refused, naming the beam, the machine and the model; machine_check=False (plan.machine_check /
    --no-machine-check) runs it; the name is compared without case or surrounding blanks; a plan without a machine
    name is computed with a warning that it could not be checked; a model that names no machine checks nothing."""
    from mcproton._io.beam_model import BUILTIN, parse_bdl

    from dicom_factories import bdl_text_from_csv

    assert model.machines == ("TR1", "TR2", "TR3") and load_beam_model("dcpt_v5").machines == ("TR1", "TR2", "TR3")

    def plan(machine):
        return load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]},
                                      {"gantry": 90, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                                       "machine": machine}]))

    with pytest.raises(DicomInputError, match=r"beam 2 \('F2'\) is planned for treatment machine 'GTR4', but beam "
                                              r"model 'dcpt_v2' is of TR1, TR2, TR3.*machine_check = false"):
        plan_to_beams(plan("GTR4"), model)
    ok = plan_to_beams(plan("GTR4"), model, machine_check=False)
    assert len(ok) == 2 and ok[1].meta["machine"] == "GTR4"
    assert len(plan_to_beams(plan(" tr2 "), model)) == 2
    # TreatmentMachineName is Type 2 (may be empty): computed, but said that it could not be checked (before: silent)
    with pytest.warns(McprotonWarning, match=r"^beam\(s\) 2 \('F2'\) give no TreatmentMachineName \(300A,00B2\), so "
                                             r"the plan could not be checked against the machines of beam model "
                                             r"'dcpt_v2' \(TR1, TR2, TR3\)"):
        assert len(plan_to_beams(plan(" "), model)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)   # no warning where nothing would be checked anyway
        assert len(plan_to_beams(plan(""), model, machine_check=False)) == 2
        assert len(plan_to_beams(plan(""), model, beam_numbers=[1])) == 1
    bdl = parse_bdl(bdl_text_from_csv(BUILTIN["mcsquare_upenn_iba_dn"].parent
                                      / "beam_model_mcsquare_upenn_iba_dedicated_nozzle.csv"))
    # a model that names no machines: computed, with a warning that nothing was checked (audit 24 swallow F2; before:
    # silent); test_a_model_that_names_no_machines_checks_nothing_and_says_so
    with pytest.warns(McprotonWarning, match=r"names no treatment machines .*'GTR4', 'TR1' was not checked"):
        assert bdl.machines == () and len(plan_to_beams(plan("GTR4"), bdl)) == 2


def test_a_model_that_names_no_machines_checks_nothing_and_says_so(model):
    """Audit 24 swallow F2: a beam model without ``machines`` (the bundled mcsquare_upenn_iba_dn, every MCsquare BDL)
    accepted a plan for any TreatmentMachineName without a word, and the check's report said "machine check: yes".
    Now: one warning naming the machine(s) not checked (and, for such a model, the spot tunes of beams whose spot
    size was not compared either), not a refusal; each beam's meta (hence the result's provenance and check.json's
    settings) records what was done: "not possible: ..." here, "yes: ..." where the model names the plan's machine,
    "off ..." with machine_check=False.  A plan and a model that both name no machine: recorded, not warned."""
    import copy

    iba = load_beam_model("mcsquare_upenn_iba_dn")
    assert iba.machines == () and iba.spot_tune_ids == ()
    gtr4 = load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                                   "machine": "GTR4"}]))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        (beam,) = plan_to_beams(gtr4, iba)
    ours = [str(w.message) for w in said if "names no treatment machines" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in said]   # once
    assert ours[0].startswith("beam model 'mcsquare_upenn_iba_dn' names no treatment machines (`machines`), so the "
                              "plan's TreatmentMachineName 'GTR4' was not checked against it; nor was the "
                              "ScanSpotTuneID '4.0' of beam(s) 1 ('F1')"), ours
    assert "plausible but wrong dose" in ours[0] and "`machines`" in ours[0]
    assert beam.meta["machine_check"] == ("not possible: beam model 'mcsquare_upenn_iba_dn' names no treatment "
                                          "machines (`machines`); the plan's TreatmentMachineName: 'GTR4'")
    assert beam.meta["spot_tune_check"].startswith("not possible: beam model 'mcsquare_upenn_iba_dn' declares no "
                                                   "spot tunes (`spot_tune_ids`); the plan's ScanSpotTuneID: '4.0'")
    (beam,) = plan_to_beams(gtr4, iba, machine_check=False)
    assert beam.meta["machine_check"].startswith("off")
    tr1 = load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]}]))
    (beam,) = plan_to_beams(tr1, model)
    assert beam.meta["machine_check"] == "yes: TreatmentMachineName 'TR1' is of beam model 'dcpt_v2' (TR1, TR2, TR3)"
    tuned = copy.copy(model)
    tuned.spot_tune_ids = ("4.0",)
    (beam,) = plan_to_beams(tr1, tuned)
    assert beam.meta["spot_tune_check"] == ("yes: ScanSpotTuneID '4.0' is among the spot tunes of beam model "
                                            "'dcpt_v2' ('4.0')")
    nameless = load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)],
                                       "machine": ""}]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)   # nothing either side could name: recorded only
        (beam,) = plan_to_beams(nameless, iba)
    assert beam.meta["machine_check"].startswith("not possible: beam model 'mcsquare_upenn_iba_dn' names no "
                                                 "treatment machines") and "gives no TreatmentMachineName" in \
        beam.meta["machine_check"]


def test_what_the_machine_check_did_is_kept_in_the_result(tmp_path):
    """The run's provenance (its HDF5) records what plan_to_beams could check (audit 24 swallow F2)."""
    import mcproton
    from mcproton.run import DoseResult

    gtr4 = load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": (0.0, 0.0, 0.0),
                                   "layers": [(150.0, SPOTS[:1], [1.0])], "machine": "GTR4"}]))
    with pytest.warns(McprotonWarning, match="names no treatment machines"):
        (beam,) = plan_to_beams(gtr4, "mcsquare_upenn_iba_dn")
    g = mcproton.box_phantom("water", size_mm=(40, 40, 40), voxel_mm=(4, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mcproton.simulate(g, beam, mcproton.RunSettings(primaries=200, batches=2, backend="cpu", seed=1))
    r.save(tmp_path / "r.h5")
    for res in (r, DoseResult.load(tmp_path / "r.h5")):
        assert res.provenance["machine_check"].startswith("not possible: beam model 'mcsquare_upenn_iba_dn' names no")
        assert res.provenance["spot_tune_check"].startswith("not possible: beam model 'mcsquare_upenn_iba_dn' declares")


@pytest.mark.parametrize("value, match", [('"TR1"', "machines must be a list"), ('["TR1", ""]', "machines must be"),
                                          ("[1]", "machines must be")])
def test_toml_model_machines_refused(tmp_path, value, match):
    from mcproton._io.beam_model import BUILTIN, BeamModelError

    src = BUILTIN["dcpt_v5"].parent
    text = (src / "dcpt_v5.toml").read_text().replace('machines = ["TR1", "TR2", "TR3"]', f"machines = {value}")
    (tmp_path / "m.toml").write_text(text)
    (tmp_path / "dcpt_beam_model_full.csv").write_bytes((src / "dcpt_beam_model_full.csv").read_bytes())
    with pytest.raises(BeamModelError, match=match):
        load_beam_model(tmp_path / "m.toml")


def test_config_machine_check_false_runs_the_plan(tmp_path):
    from mcproton.config import build_beams

    save(make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)], "machine": "GTR4"}]),
         tmp_path / "RP.dcm")
    cfg = {"plan": {"rtplan": str(tmp_path / "RP.dcm"), "beam_model": "dcpt_v5"}}
    with pytest.raises(DicomInputError, match="treatment machine 'GTR4'"):
        build_beams(cfg)
    cfg["plan"]["machine_check"] = False
    assert len(build_beams(cfg)) == 1


@pytest.mark.parametrize("beams, match", [([1, 3], r"beam\(s\) \[3\] are not in the plan"),
                                          ([2, 2], r"beam\(s\) \[2\] are named twice"),
                                          ([1.5], "whole numbers"), ([True], "whole numbers")])
def test_plan_beams_must_each_be_the_plans_once(model, beams, match):
    """plan.beams = [1, 3] for a two-beam plan used to run beam 1 alone without a word (a typo dropped a beam)."""
    plan = load_rtplan(make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]},
                                  {"gantry": 90, "couch": 0, "iso": ISO, "layers": [(150.0, SPOTS, WEIGHTS)]}]))
    with pytest.raises(DicomInputError, match=match):
        plan_to_beams(plan, model, beam_numbers=beams)
    assert [b.meta["beam_number"] for b in plan_to_beams(plan, model, beam_numbers=[2, 1])] == [1, 2]


# ---------------------------------------------------------------------- a beam's isocentre and scan mode
def _two_layer_plan(**kw):
    layers = [(150.0, SPOTS, WEIGHTS), (140.0, SPOTS, WEIGHTS)]
    return make_plan([{"gantry": 0, "couch": 0, "iso": ISO, "layers": layers, **kw}])


def test_isocentre_changing_between_control_points_is_refused(model):
    """IsocenterPosition stated again in control point 2, 50 mm to the left, used to move the whole beam (every layer,
    including those before it) without a word; so did an edit of control point 0 alone when every control point
    states it.  Both are refused, naming the beam and the control points; identical repeats (and differences under
    0.01 mm) are accepted."""
    ds = _two_layer_plan()
    ds.IonBeamSequence[0].IonControlPointSequence[2].IsocenterPosition = [ISO[0] + 50.0, ISO[1], ISO[2]]
    with pytest.raises(DicomInputError, match=r"beam 1 \(F1\): IsocenterPosition \(300A,012C\) changes between "
                                              r"control points 0 \[.*\] and 2 \[.*\] \(mm\); an isocentre that "
                                              "moves during a beam is not supported"):
        load_rtplan(ds)
    ds = _two_layer_plan()
    for cp in ds.IonBeamSequence[0].IonControlPointSequence:   # a TPS that writes it in every control point
        cp.IsocenterPosition = list(ISO)
    ds.IonBeamSequence[0].IonControlPointSequence[0].IsocenterPosition = [ISO[0], ISO[1] + 10.0, ISO[2]]
    with pytest.raises(DicomInputError, match="control points 0 .* and 1 "):
        load_rtplan(ds)
    ds.IonBeamSequence[0].IonControlPointSequence[0].IsocenterPosition = [ISO[0], ISO[1] + 0.005, ISO[2]]
    (b,) = load_rtplan(ds).beams
    assert np.allclose(b.isocenter_mm, ISO, atol=0.01) and len(b.layers) == 2
    (b,) = plan_to_beams(load_rtplan(ds), model)
    assert np.allclose(b.meta["isocenter_mm"], ISO, atol=0.01)


@pytest.mark.parametrize("dx", [20.0, 0.0])
def test_isocentre_missing_from_the_first_control_point_is_refused(dx):
    """IsocenterPosition is required (1C) in the first control point; a later one may only repeat it.  Removed from
    control point 0 and given in control point 2 (20 mm to the right), the plan ran with the moved isocentre, exit 0,
    without a word (re-acceptance audit of 2026-12-06, F4).  Refused as a missing gantry or couch angle is, also when
    the later value is the old one (the file cannot show that nothing moved)."""
    ds = _two_layer_plan()
    cps = ds.IonBeamSequence[0].IonControlPointSequence
    del cps[0].IsocenterPosition
    cps[2].IsocenterPosition = [ISO[0] + dx, ISO[1], ISO[2]]
    with pytest.raises(DicomInputError, match=r"beam 1 \(F1\) control point 2: IsocenterPosition \(300A,012C\) is "
                                              "given here but missing from the first control point .*: the plan is "
                                              "damaged, export it again"):
        load_rtplan(ds)


def test_isocentre_missing_from_every_control_point_is_refused():
    ds = _two_layer_plan()
    del ds.IonBeamSequence[0].IonControlPointSequence[0].IsocenterPosition
    with pytest.raises(DicomInputError, match=r"beam 1 \(F1\): IsocenterPosition \(300A,012C\) is missing from the "
                                              "first control point and from every later one .* export it again"):
        load_rtplan(ds)


@pytest.mark.parametrize("kind", ["LINEAR", "LEAPING", "MIXED"])
def test_line_and_leaping_scanning_refused(kind):
    """ScanMode MODULATED_SPEC with ModulatedScanModeType LINEAR (dose delivered while the spot moves) was computed
    as stationary spots."""
    ds = _two_layer_plan(scan_mode="MODULATED_SPEC")
    ds.IonBeamSequence[0].ModulatedScanModeType = kind
    with pytest.raises(DicomInputError, match=rf"beam 1 \(F1\): ScanMode MODULATED_SPEC with ModulatedScanModeType "
                                              rf"\(300A,0309\) '{kind}': only STATIONARY spots are modelled"):
        load_rtplan(ds)


def test_stationary_modulated_spec_accepted(model):
    ds = _two_layer_plan(scan_mode="MODULATED_SPEC")
    assert load_rtplan(ds).beams[0].scan_mode == "MODULATED_SPEC"   # no ModulatedScanModeType: as before
    ds.IonBeamSequence[0].ModulatedScanModeType = "STATIONARY"
    assert len(plan_to_beams(load_rtplan(ds), model)) == 1


@pytest.mark.parametrize("count, seq, what", [("NumberOfBlocks", "IonBlockSequence", "block (aperture)"),
                                              ("NumberOfCompensators", "IonRangeCompensatorSequence",
                                               "range compensator"),
                                              ("NumberOfRangeModulators", "RangeModulatorSequence",
                                               "range modulator (ridge filter)")])
def test_an_aperture_compensator_or_range_modulator_is_refused(tmp_path, count, seq, what):
    """Beam modifiers mcproton does not transport are refused rather than left out (before 2026-12-05 they were
    not read: an aperture or compensator in a plan was ignored without a word).  The real plans of
    tests/data/dicom all give 0 of each, and still read."""
    import re

    import pydicom
    from pydicom.dataset import Dataset

    from mcproton._io.errors import DicomInputError
    from mcproton._io.rtplan import load_rtplan

    src = DATA / "RP_plan05.dcm"
    assert load_rtplan(src).beams
    ds = pydicom.dcmread(src)
    setattr(ds.IonBeamSequence[0], count, 1)
    p = tmp_path / "RP.dcm"
    ds.save_as(p)
    with pytest.raises(DicomInputError, match=rf"{count} is 1: the beam has a {re.escape(what)}, which mcproton "
                                              "does not model"):
        load_rtplan(p)
    ds = pydicom.dcmread(src)   # the count left 0, an item in the sequence: refused too
    setattr(ds.IonBeamSequence[0], seq, [Dataset()])
    ds.save_as(p)
    with pytest.raises(DicomInputError, match=rf"{count} is 1: the beam has a {re.escape(what)}"):
        load_rtplan(p)


@pytest.mark.parametrize("kw,value,ok,shown", [
    ("TableTopPitchAngle", 360.0, True, None),
    ("TableTopRollAngle", -360.0, True, None),
    ("GantryPitchAngle", 720.0, True, None),
    ("TableTopRollAngle", 359.5, False, "TableTopRollAngle (300A,0144) is 359.5 deg (= -0.5 deg)"),
    ("TableTopPitchAngle", 1.5, False, "TableTopPitchAngle (300A,0140) is 1.5 deg;"),
    ("GantryPitchAngle", 181.0, False, "GantryPitchAngle (300A,014A) is 181 deg (= -179 deg)"),
])
def test_table_top_pitch_and_roll_are_taken_modulo_360(kw, value, ok, shown):
    """Pitch 360 or roll -360 is 0 and read (CSI audit 2026-12-05 F7: refused as "must be 0"); any other tilt is
    refused naming the beam, the control point, the attribute and its value (as the signed angle where the plan
    gives it outside -180..180)."""
    ds = make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
                     "layers": [(100.0, SPOTS, WEIGHTS)]}])
    setattr(ds.IonBeamSequence[0].IonControlPointSequence[0], kw, value)
    if ok:
        assert load_rtplan(ds).beams[0].gantry_angle_deg == 90.0
        return
    with pytest.raises(DicomInputError) as err:
        load_rtplan(ds)
    msg = str(err.value)
    assert shown in msg and "beam 1 (" in msg and "control point 0" in msg and "not supported" in msg, msg

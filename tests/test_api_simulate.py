"""``simulate`` does what ``mcproton run`` does with the same inputs, or says why not (the Python-API audit, F2, F4,
F5, F6, F9; API audit 22, F1, F2, F4): it refuses a plan of another CT or patient position and a range shifter
inside the patient unless told to go on (``allow=``, recorded and tagged OVERRIDE in the RT Dose), as
``sum_results`` refuses a plan's beams set up in different positions, warns of what ``mcproton run`` refuses after the
run, runs on settings and spots checked again (a field assigned after the object was made bypassed every check),
records what was asked and what was said in the result, and its messages can be silenced or redirected.  The Monte
Carlo runs here are a few hundred primaries on the CPU."""
from __future__ import annotations

import warnings

import numpy as np
import pytest


from mcproton import Beam, RunSettings, Spot, StudyReference, box_phantom, simulate
from mcproton._io.errors import McprotonRuntimeWarning

TINY = {"primaries": 400, "batches": 10, "backend": "cpu", "threads": 1, "seed": 3}
CT_FRAME = "1.2.826.0.1.3680043.2.1"
PLAN_UID = "1.2.826.0.1.3680043.2.2"


def _ct_box(position: str = "HFS"):
    """A water box standing in for a grid made from a DICOM CT (``geometry.study`` set, as HUCalibration.to_geometry
    sets it)."""
    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0))
    g.study = StudyReference(frame_of_reference_uid=CT_FRAME, patient_position=position)
    return g


def _plan_beam(frame: str = CT_FRAME, position: str = "HFS", energy: float = 70.0, number: int = 1) -> Beam:
    """A beam with the plan keys plan_to_beams gives it (its angles and direction: the result's provenance then
    records its position, as of a plan's beam; its plan and number: its RT Dose references the plan)."""
    b = Beam.pencil(energy, position_mm=(0, 0, -5), total_protons=1e9)
    b.meta.update(frame_of_reference_uid=frame, patient_position=position, gantry_angle_deg=0.0,
                  beam_direction=(0.0, 0.0, 1.0), beam_number=number, plan_sop_instance_uid=PLAN_UID)
    return b


def _write_rtdose(result, path):
    """write_result_rtdose of a result on a CT box, whose warning of no body outline is not the point here."""
    from mcproton import write_result_rtdose

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_result_rtdose(result, path)


def _said(rec) -> list[str]:
    return [str(w.message) for w in rec if issubclass(w.category, McprotonRuntimeWarning)]


def _simulate_recording(*args, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = simulate(*args, **kw)
    return r, rec


# --------------------------- F2 (2026-12-05), API audit 22 F1: the plan's frame and position vs the CT's, refused
def test_simulate_refuses_a_plan_made_on_another_ct():
    """Before (API audit 22, F1), simulate warned and computed the dose, and its RT Dose looked like any other."""
    from mcproton.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        simulate(_ct_box(), _plan_beam(frame="1.2.3.4.5.6.7.8.9"), TINY)
    m = str(exc.value)
    assert (f"simulate: plan beam 'pencil 70 MeV' refers to FrameOfReferenceUID 1.2.3.4.5.6.7.8.9 but the CT's is "
            f"{CT_FRAME}" in m), m
    assert "put the dose in the wrong place" in m and 'pass allow=("other_frame",) to simulate' in m, m
    assert "plan.allow_other_frame" not in m, m   # a config key means nothing to a script


def test_simulate_refuses_a_plan_set_up_in_another_patient_position():
    from mcproton.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        simulate(_ct_box("HFS"), _plan_beam(position="HFP"), TINY)
    m = str(exc.value)
    assert "set up HFP" in m and "but the CT was acquired HFS" in m and "a beam can enter from the wrong side" in m, m
    assert 'pass allow=("position_mismatch",) to simulate' in m and "plan.allow_position_mismatch" not in m, m


def test_simulate_of_a_plan_of_the_ct_or_of_a_ct_that_does_not_say_runs():
    """The same frame and position, or no CT: nothing said of either.  A CT that does not say its PatientPosition:
    mcproton run's warning (before API audit 22, F2, simulate said nothing; the beam could enter from the wrong
    side unseen)."""
    for geom, beam in ((_ct_box("HFS"), _plan_beam()),                              # the same frame and position
                       (box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0)),  # no CT at all
                        _plan_beam(frame="1.2.3", position="FFS"))):
        r, rec = _simulate_recording(geom, beam, TINY, allow=("other_frame", "position_mismatch"))
        assert not [m for m in _said(rec) if "FrameOfReferenceUID" in m or "PatientPosition" in m], _said(rec)
        assert r.provenance["overrides"] == []   # allowed, but nothing was refused: an ordinary dose ([]: recorded)
    r, rec = _simulate_recording(_ct_box(""), _plan_beam(position="HFP"), TINY)
    hits = [m for m in _said(rec) if "PatientPosition" in m]
    assert hits == ["simulate: beam 'pencil 70 MeV': the CT series has no PatientPosition, so the plan's setup "
                    "position HFP cannot be checked against it"], _said(rec)
    assert hits[0] in r.provenance["warnings"] and r.provenance["overrides"] == []


def test_a_refusal_passed_with_allow_is_recorded_and_its_rt_dose_says_override(tmp_path):
    """allow= (as mcproton run's plan.allow_* keys) runs it with a warning; the result records it (kept by save, load
    and sum_results), and write_result_rtdose tags DoseComment, SeriesDescription and ImageComments OVERRIDE, as
    an early stop is tagged INCOMPLETE: the file must not look like the nominal dose in a planning system."""
    import pydicom

    from mcproton import DoseResult, sum_results

    beam = _plan_beam(frame="1.2.3.4.5.6.7.8.9", position="HFP")
    r, rec = _simulate_recording(_ct_box("HFS"), beam, TINY, allow=("other_frame", "position_mismatch"))
    said = [m for m in _said(rec) if "simulated as given: allow=" in m]
    assert len(said) == 2 and "FrameOfReferenceUID" in said[0] and "set up HFP" in said[1], _said(rec)
    assert rec[0].filename == __file__
    assert r.provenance["overrides"] == ["other_frame", "position_mismatch"]
    assert set(said) <= set(r.provenance["warnings"])
    back = DoseResult.load(r.save(tmp_path / "r.h5"))
    assert back.provenance["overrides"] == ["other_frame", "position_mismatch"]
    second, _ = _simulate_recording(_ct_box("HFS"), _plan_beam("1.2.3.4.5.6.7.8.9", "HFP", 72.0, 2), TINY,
                                    beam_index=1, allow=("other_frame", "position_mismatch"))
    for res, name in ((r, "RD.dcm"), (back, "RD_back.dcm"), (sum_results([r, second]), "RD_sum.dcm")):
        _write_rtdose(res, tmp_path / name)
        ds = pydicom.dcmread(tmp_path / name)
        assert ds.DoseComment.startswith("OVERRIDE frame,position; "), ds.DoseComment
        assert "to medium, physical" in ds.DoseComment and len(ds.DoseComment) <= 64, ds.DoseComment
        assert ds.SeriesDescription == "mcproton dose; OVERRIDE frame,position", ds.SeriesDescription
        assert "OVERRIDE: computed past mcproton's refusal" in ds.ImageComments, ds.ImageComments
        assert "other_frame: the plan's or structure set's FrameOfReferenceUID is not the CT's" in ds.ImageComments
    _write_rtdose(simulate(_ct_box("HFS"), _plan_beam(), TINY), tmp_path / "RD_plain.dcm")
    ds = pydicom.dcmread(tmp_path / "RD_plain.dcm")
    assert "OVERRIDE" not in ds.DoseComment + ds.SeriesDescription + ds.ImageComments


@pytest.mark.parametrize("allow,words", [
    ("frame", "allow = 'frame'"), (True, "allow = True"), (("other_frame", "nope"), "('other_frame', 'nope')"),
    ({"other_frame": True}, "{'other_frame': True}"),
])
def test_an_allow_that_names_no_refusal_is_refused(allow, words):
    names = r"of 'other_frame', 'other_patient', 'position_mismatch', 'shifter_inside'"
    with pytest.raises(ValueError, match=r"simulate: allow = .*give a tuple of the refusals to pass, " + names) as exc:
        simulate(_ct_box(), _plan_beam(), TINY, allow=allow)
    assert words in str(exc.value)


def test_simulate_refuses_a_range_shifter_inside_the_patient_unless_allowed():
    """On a CT's grid as in mcproton run (the OpenTPS plan with IsocenterToRangeShifterDistance 30 instead of
    300 mm: CTV mean +35 %, API audit 22, F1); a water box keeps the warning (tests/run/test_shifter_inside.py)."""
    from mcproton.config import ConfigError
    from mcproton.source import RangeShifterSlab

    g = box_phantom("water", (60.0, 60.0, 100.0), 2.0, origin_mm=(-30, -30, -150))
    g.study = StudyReference(frame_of_reference_uid=CT_FRAME, patient_position="HFS")
    slab = RangeShifterSlab("lexan", 30.0, 1.2, 180.0, id="RS_3CM", wet_mm=34.3)   # 61 mm inside the water
    beam = Beam([Spot(energy_mev=120.0, position_mm=(0.0, 0.0, -300.0), range_shifter=slab)], name="1:F1")
    with pytest.raises(ConfigError, match=r"simulate: beam '1:F1': its range shifter 'RS_3CM' .*lies inside the "
                                          r"phantom.*refused above 0.5 g/cm2.*pass allow=\(\"shifter_inside\",\)"):
        simulate(g, beam, TINY)
    r, rec = _simulate_recording(g, beam, TINY, allow="shifter_inside")
    assert r.provenance["overrides"] == ["shifter_inside"]
    assert any("lies inside the phantom" in m and "allow='shifter_inside'" in m for m in _said(rec)), _said(rec)


def test_sum_results_refuses_beams_set_up_in_different_positions_on_a_ct(tmp_path):
    """API audit 22, F2: the OpenTPS plan with beam 0 HFS and beam 1 HFP on its CT (no PatientPosition) was
    summed without a word; mcproton run refuses such a plan (one CT shows the patient lying one way)."""
    from mcproton import sum_results
    from mcproton.config import ConfigError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the CT does not say its position: each beam warned of
        a = simulate(_ct_box(""), _plan_beam(position="HFS"), TINY)
        b = simulate(_ct_box(""), _plan_beam(position="HFP", energy=72.0, number=2), TINY, beam_index=1)
    with pytest.raises(ConfigError, match=r"sum_results: the plan's beams are set up in different patient positions "
                                          r"\(pencil 72 MeV: HFP; pencil 70 MeV: HFS\).*pass "
                                          r"allow=\(\"position_mismatch\",\) to sum_results"):
        sum_results([a, b])
    with pytest.warns(McprotonRuntimeWarning, match="summed as given") as rec:
        s = sum_results([a, b], allow=("position_mismatch",))
    assert rec[0].filename == __file__
    assert s.provenance["overrides"] == ["position_mismatch"]
    assert any("summed as given" in m for m in s.provenance["warnings"])
    assert _write_rtdose(s, tmp_path / "RD.dcm")["dose_comment"].startswith("OVERRIDE position; ")
    # one position, or beams in a water box: summed as before
    assert sum_results([a, a]).provenance["overrides"] == []
    box_a = simulate(_box(), _plan_beam(position="HFS"), TINY)
    box_b = simulate(_box(), _plan_beam(position="HFP", energy=72.0, number=2), TINY, beam_index=1)
    assert sum_results([box_a, box_b]).provenance["overrides"] == []


def test_a_slab_ct_written_for_a_plan_is_not_position_checked(tmp_path):
    """Review R2, R4 (2026-12-06): mcproton run does not check a plan's setup positions on a slab_ct phantom (it is
    written for its plan, its slabs in the plan's patient coordinates), but simulate warned of each plan beam that
    "the CT series has no PatientPosition" (false: the slab CT is written HFS) and sum_results refused a plan whose
    beams are set up in different positions on it, after the transport.  One rule now (positions_checked): neither
    warns nor refuses there, also once the results are saved and loaded; on a patient CT sum_results still refuses,
    naming mcproton run's key beside allow=."""
    from mcproton import DoseResult, slab_ct_geometry, sum_results
    from mcproton._run.inputs import positions_checked
    from mcproton.config import ConfigError

    g = slab_ct_geometry([("water", 60.0)], voxel_mm=(4, 4, 4), lateral_size_mm=(40, 40), air_mm=8.0)
    assert not positions_checked(g) and positions_checked(_ct_box(""))
    res = []
    for k, pos in enumerate(("HFS", "FFS")):
        r, rec = _simulate_recording(g, _plan_beam(frame=g.frame_of_reference_uid, position=pos, number=k + 1),
                                     TINY, beam_index=k)
        assert _said(rec) == [], _said(rec)
        assert not r.provenance.get("warnings") and r.provenance["overrides"] == []
        r.save(tmp_path / f"b{k}.h5")
        res.append(r)
    for rs in (res, [DoseResult.load(tmp_path / f"b{k}.h5") for k in range(2)]):
        with warnings.catch_warnings():
            warnings.simplefilter("error", McprotonRuntimeWarning)
            s = sum_results(rs)
        assert s.provenance["overrides"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the CT does not say its position: each beam warned of
        a = simulate(_ct_box(""), _plan_beam(position="HFS"), TINY)
        b = simulate(_ct_box(""), _plan_beam(position="FFS", number=2), TINY, beam_index=1)
    with pytest.raises(ConfigError, match=r"or set plan.allow_position_mismatch = true in mcproton run"):
        sum_results([a, b])


# ------------------------------------ API audit 22, F4: what mcproton run refuses after the run, warned of here
@pytest.mark.parametrize("make,words", [
    (lambda: (box_phantom("water", (40.0, 40.0, 100.0), (4.0, 4.0, 2.0)),
              Beam.pencil(100.0, position_mm=(0, 0, -5), sigma_mm=(100.0, 100.0))),
     r"\d+ % of the beam's incident energy missed the grid \(ledger: missed"),
    (lambda: (box_phantom("water", (40.0, 40.0, 10.0), (4.0, 4.0, 2.0)), Beam.pencil(100.0, position_mm=(0, 0, -5))),
     r"\d+ % of the beam's incident energy left the grid \(ledger: escaped"),
    (lambda: (box_phantom("water", (40.0, 40.0, 40.0), (4.0, 4.0, 2.0), density_g_cm3=0.0),
              Beam.pencil(100.0, position_mm=(0, 0, -5))),
     r"the phantom's density is zero everywhere"),
])
def test_simulate_warns_where_mcproton_run_refuses_the_finished_run(make, words):
    """Before, these returned without a word (the sigma-100 mm dose: the right depth-dose shape with 2 % of the
    dose, plausible once normalised).  A shoot-through beam can be meant: a warning, kept in the provenance."""
    import re

    g, beam = make()
    r, rec = _simulate_recording(g, beam, TINY)
    hits = [m for m in _said(rec) if re.search(words, m)]
    assert hits and all(m.startswith("simulate: ") for m in hits), _said(rec)
    assert "nothing was written" not in hits[0] and "--allow-empty" not in hits[0].split("(mcproton run")[0], hits
    assert set(hits) <= set(r.provenance["warnings"])


# -------------------------------------------- F4: settings and spots checked again, as they are when simulate runs
def _box():
    return box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0))


@pytest.mark.parametrize("mutate,words", [
    (lambda s: setattr(s.physics, "nuclear", "false"), "physics.nuclear = 'false' has the wrong type (text)"),
    (lambda s: setattr(s.physics, "msc", None), "physics.msc = None has the wrong type"),
    (lambda s: setattr(s.physics, "max_step_mm", 0.0), "physics.max_step_mm must lie in 0.01..100 mm; got 0.0"),
    (lambda s: setattr(s, "primaries", -5), "run.primaries must be a positive integer; got -5"),
    (lambda s: setattr(s, "primaries", "3000"), "run.primaries = '3000' has the wrong type (text)"),
    (lambda s: setattr(s, "seed", -1), "run.seed must be a non-negative integer below 2^63; got -1"),
    (lambda s: setattr(s, "seed", 1.5), "run.seed = 1.5 is not a whole number"),
    (lambda s: setattr(s, "threads", 0), "run.threads must be >= 1 or unset; got 0"),
    (lambda s: setattr(s, "batches", 1), "run.batches must be >= 2"),
    (lambda s: setattr(s, "target_uncertainty", 5.0), "run.target_uncertainty must be a fraction in (0, 1)"),
    (lambda s: setattr(s, "physics", "icru90"), "run physics must be a PhysicsSettings or a dict of its fields"),
])
def test_settings_changed_after_they_were_made_are_checked_by_simulate(mutate, words):
    """Before, each of these ran (nuclear physics on for "false", scattering off for None, every proton stopped in
    the first voxel for max_step_mm 0, a zero dose for -5 primaries) or ended in an OverflowError deep inside."""
    s = RunSettings(**TINY)
    mutate(s)
    with pytest.raises(ValueError) as exc:
        simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), s)
    assert words in str(exc.value)


def test_simulate_runs_and_records_the_checked_settings_and_leaves_the_callers_alone():
    s = RunSettings(**TINY)
    s.physics = {"nuclear": False}            # a dict: made PhysicsSettings, as RunSettings(physics=...) does
    s.batches = 10.0                          # a whole number as a float: the int the run uses
    r = simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), s)
    assert r.provenance["physics"]["nuclear"] is False and r.ledger["nuclear_events"] == 0
    assert s.physics == {"nuclear": False} and type(s.batches) is float   # the caller's object as it was
    p = RunSettings(**TINY)
    p.physics.nuclear = np.True_
    r = simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), p)
    assert r.provenance["physics"]["nuclear"] is True                      # a Python bool, as RunSettings keeps it
    assert type(p.physics.nuclear) is np.bool_


@pytest.mark.parametrize("field,value,words", [
    ("weight", -1.0, "spot weight must be finite and >= 0"),
    ("sigma_mm", (-3.0, -3.0), "spot sigma_mm and divergence_rad must be >= 0"),
    ("energy_mev", -50.0, "spot energy_mev must be positive"),
    ("energy_mev", 400.0, "above 350 MeV"),
    ("energy_spread_mev", 60.0, "is more than a fifth of energy_mev"),
    ("correlation", (2.0, 0.0), "spot correlation must lie in [-1, 1]"),
    ("position_mm", (0.0, 0.0), "spot position_mm must be 3 numbers"),
    ("direction", (0.0, 0.0, 0.0), "spot direction must be a non-zero finite 3-vector"),
])
def test_a_spot_changed_after_it_was_made_is_checked_by_simulate(field, value, words):
    beam = Beam([Spot(100.0, position_mm=(0, 0, -5)), Spot(100.0, position_mm=(2, 0, -5))])
    setattr(beam.spots[1], field, value)
    with pytest.raises(ValueError) as exc:
        simulate(_box(), beam, TINY)
    assert words in str(exc.value)


def test_a_beam_changed_after_it_was_made_is_checked_by_simulate():
    beam = Beam.pencil(100.0, position_mm=(0, 0, -5))
    beam.spots[0].weight = 0.0
    with pytest.raises(ValueError, match="the spot weights of the beam sum to zero"):
        simulate(_box(), beam, TINY)
    beam = Beam.pencil(100.0, position_mm=(0, 0, -5))
    beam.total_protons = -1e9
    with pytest.raises(ValueError, match="total_protons must be positive"):
        simulate(_box(), beam, TINY)


def test_a_direction_assigned_afterwards_is_normalised_for_the_run_not_in_the_callers_spot():
    """Spot divides ``direction`` by its norm; a direction (0, 0, 2) assigned afterwards is divided for the run (bitwise
    the run of the unit direction, with the same seed), while the caller's spot keeps what was assigned."""
    ref = simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), TINY)
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5))
    beam.spots[0].direction = (0.0, 0.0, 2.0)
    r = simulate(_box(), beam, TINY)
    assert np.array_equal(r.dose_gy_zyx, ref.dose_gy_zyx)
    assert beam.spots[0].direction == (0.0, 0.0, 2.0)


def test_spots_as_made_are_passed_on_unchanged():
    """The cheap path: spots that pass the checks as they are (a plan's thousands, made by make_spots) are the
    caller's own objects (no copy, bitwise the values the kernel got before), checked on whole arrays."""
    from mcproton.run import _checked_beam
    from mcproton.source import default_axis_x, make_spots

    n = 2000
    rng = np.random.default_rng(1)
    d = np.tile([0.0, 0.6, 0.8], (n, 1)) + rng.normal(0, 0.01, (n, 3))
    spots = make_spots(rng.uniform(70, 200, n), rng.normal(0, 30, (n, 3)), d,
                       np.array([default_axis_x(v / np.linalg.norm(v)) for v in d]),
                       energy_spread_mev=np.full(n, 0.5), sigma_mm=np.full((n, 2), 3.0),
                       divergence_rad=np.full((n, 2), 0.002), correlation=np.zeros((n, 2)), weight=rng.uniform(0, 2, n))
    beam = Beam(spots, total_protons=1e9)
    checked = _checked_beam(beam)
    assert checked is not beam and checked.spots is not beam.spots
    assert all(a is b for a, b in zip(checked.spots, beam.spots))


# ------------------------------------------------------------------ F5: what was asked, in the result's provenance
def test_a_simulate_result_stopped_by_its_time_limit_says_so_in_its_rt_dose_and_file(tmp_path):
    """Before, only mcproton run recorded primaries_requested: a simulate result stopped at 1 % of its primaries
    made an RT Dose that looked complete.  The time limit ends the run after its first batch (checked between
    batches; a batch is primaries / 100 with a time limit)."""
    import pydicom

    from mcproton import DoseResult, write_result_rtdose
    from mcproton._run.result import early_stop_note

    beam = Beam.pencil(70.0, position_mm=(0, 0, -5), total_protons=1e9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = simulate(_box(), beam, {**TINY, "primaries": 200_000, "batches": 100, "time_limit_s": 1e-9})
    assert r.provenance["stop_reason"] == "time_limit" and r.primaries < 200_000
    assert r.provenance["primaries_requested"] == 200_000 and "target_reached" not in r.provenance
    assert early_stop_note(r).startswith(f"stopped by the time limit: {r.primaries:,} of 200,000 primaries")
    write_result_rtdose(r, tmp_path / "RD.dcm")
    assert pydicom.dcmread(tmp_path / "RD.dcm").DoseComment.startswith("INCOMPLETE")
    back = DoseResult.load(r.save(tmp_path / "r.h5"))
    assert back.provenance["primaries_requested"] == 200_000 and early_stop_note(back) == early_stop_note(r)


def test_a_simulate_result_short_of_its_target_uncertainty_says_so():
    r = simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), {**TINY, "target_uncertainty": 1e-4})
    assert r.provenance["stop_reason"] == "primaries"
    assert (r.provenance["primaries_requested"], r.provenance["target_uncertainty"]) == (400, 1e-4)
    assert r.provenance["target_reached"] is False
    r = simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), {**TINY, "target_uncertainty": 0.9})
    assert r.provenance["target_reached"] is True and r.provenance["target_uncertainty"] == 0.9


def test_a_sum_of_simulate_results_says_what_was_asked_of_all_its_beams():
    """sum_results of two beams (400 and 800 primaries requested): the sum asked 1,200 (before: beam 1's 400, so a
    second beam stopped early went unsaid), a shared target is judged on the sum's own uncertainty, another
    target per beam is not claimed for the sum."""
    from mcproton import sum_results

    a = simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), {**TINY, "target_uncertainty": 1e-4})
    b = simulate(_box(), Beam.pencil(72.0, position_mm=(0, 0, -5)),
                 {**TINY, "primaries": 800, "target_uncertainty": 1e-4}, beam_index=1)
    s = sum_results([a, b])
    assert s.provenance["primaries_requested"] == 1200 and s.provenance["target_reached"] is False
    assert s.provenance["target_uncertainty"] == 1e-4
    c = simulate(_box(), Beam.pencil(72.0, position_mm=(0, 0, -5)), {**TINY, "target_uncertainty": 0.9},
                 beam_index=1)
    s = sum_results([a, c])
    assert s.provenance["primaries_requested"] == 800 and "target_reached" not in s.provenance


# ---------------------------------------- F6, F9: the warnings kept in the result; messages where the caller says
def test_the_warnings_of_a_simulate_are_kept_in_its_result_and_file_whatever_the_filters(tmp_path):
    from mcproton import DoseResult

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # hidden from the screen, kept in the record
        r = simulate(_box(), Beam.pencil(70.0, position_mm=(500, 0, -10)), {**TINY, "batches": 3})
    said = r.provenance["warnings"]
    assert any("every spot of beam 'pencil 70 MeV' misses the phantom" in m for m in said), said
    assert any("its statistical uncertainty comes from 3 batches only" in m for m in said), said
    assert DoseResult.load(r.save(tmp_path / "r.h5")).provenance["warnings"] == said
    quiet = simulate(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), TINY)
    assert "warnings" not in quiet.provenance


def test_the_few_batches_warning_points_at_the_callers_line():
    """Before, it was attributed to mcproton/_run/job.py: Python's default filters showed it once per process, and a
    filter on the user's module did not match it."""
    _, rec = _simulate_recording(_box(), Beam.pencil(70.0, position_mm=(0, 0, -5)), {**TINY, "batches": 3})
    few = [w for w in rec if "3 batches only" in str(w.message)]
    assert len(few) == 1 and few[0].filename == __file__, [(w.filename, str(w.message)[:80]) for w in rec]


def test_simulate_log_takes_the_stop_lines_or_silences_them(capsys):
    """Before, a simulate stopped by its time limit or target wrote its line to stderr even with progress=False."""
    settings = {**TINY, "primaries": 200_000, "batches": 100, "time_limit_s": 1e-9}
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate(_box(), beam, settings)
        assert "stopped by the time limit" in capsys.readouterr().err   # the default: stderr, as before
        simulate(_box(), beam, settings, log=None)
        assert capsys.readouterr().err == ""
        lines: list[str] = []
        simulate(_box(), beam, settings, log=lines.append)
        assert capsys.readouterr().err == "" and len(lines) == 1 and "stopped by the time limit" in lines[0], lines
    with pytest.raises(ValueError, match=r"log must be True \(stderr\), a callable f\(line\) or None"):
        simulate(_box(), beam, TINY, log="quiet")


def _memory(monkeypatch, gb: float, *, allocated_counts: bool = False) -> None:
    """This process may allocate ``gb`` GB (no swap), bounded by a named test limit (``allocated_counts``: an
    address-space limit, ``ulimit -v``)."""
    from mcproton._run import inputs

    monkeypatch.setattr(inputs, "available_memory",
                        lambda: inputs.Memory(gb * 1e9, 0.0, "the test's limit", allocated_counts))


def test_simulate_refuses_a_grid_too_large_for_memory_before_allocating(monkeypatch):
    """As ``mcproton run`` (the edges audit of 2026-12-07, F2), a grid that cannot fit is refused before the run
    starts, naming the grid, the estimate, the limit and the fix.  Before: numpy's bare MemoryError at the first
    tally, or a run killed after its transport.  What cannot fit is what the run needs however little of the grid
    gets dose (review R2): 3 bytes per voxel of scans (10^6 voxels: 3 MB, refused with 2 MB), or under an
    address-space limit (``ulimit -v``) the tallies and running sums it allocates, 104 bytes per voxel (0.1 GB,
    refused with 0.05 GB; 80 before the LETd's running sums of 2026-12-08)."""
    from mcproton._run import job

    g = box_phantom("water", (100.0, 100.0, 100.0), 1.0)
    monkeypatch.setattr(job, "run_job", lambda *a, **k: pytest.fail("simulate allocated the run"))
    for gb, allocated, least in ((0.002, False, "0.0 GB"), (0.05, True, "0.1 GB")):
        _memory(monkeypatch, gb, allocated_counts=allocated)
        with pytest.raises(ValueError) as exc:
            simulate(g, Beam.pencil(100.0, position_mm=(0, 0, -1)), TINY, log=None)
        msg = str(exc.value)
        assert msg.startswith(f"simulate: the dose grid of 100 x 100 x 100 = 1.0 M voxels needs at least {least} "
                              "of memory"), msg
        assert "up to about 0.4 GB where every voxel gets dose" in msg, msg
        assert ("the tallies and running sums it allocates" in msg) == allocated, msg
        assert f"only {gb:.1f} GB are available" in msg and "the test's limit" in msg
        assert "coarser voxels" in msg and "resample_blocks" in msg


def test_simulate_refuses_only_a_grid_that_cannot_fit_however_little_gets_dose(monkeypatch):
    """Review R2: with 2 GB, 10^9 voxels (3 GB at least) are refused, before any array of the grid is made."""
    from types import SimpleNamespace

    from mcproton.run import _check_memory

    _memory(monkeypatch, 2.0)
    huge = SimpleNamespace(material_index_zyx=np.broadcast_to(np.uint8(0), (1000, 1000, 1000)),
                           shape_zyx=(1000, 1000, 1000))
    with pytest.raises(ValueError, match=r"^simulate: the dose grid of 1000 x 1000 x 1000 = 1000.0 M voxels needs "
                                         r"at least 3.0 GB of memory \(however few of its voxels get dose; up to about "
                                         r"280.1 GB where every voxel gets dose\), but only 2.0 GB are available"):
        _check_memory(huge, RunSettings(**TINY))


def test_simulate_s_memory_check_counts_the_threads_the_run_uses(monkeypatch):
    """Review 2b, R6: simulate's memory check read ``OMP_NUM_THREADS`` with a parser of its own, which took the
    first element of ``4,abc`` (4 threads), where the run (mcproton/_cpus.py, the one parser) ignores that value
    with a warning and uses the CPUs it may run on.  Now both read it alike: the tally slots the check counts are
    the threads the CPU backend runs."""
    from types import SimpleNamespace

    import mcproton._cpus as cpus
    import mcproton._run.engine as engine
    from mcproton.run import _check_memory

    _memory(monkeypatch, 2.0)
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 3)
    seen: list[int] = []
    real = engine.cpu_tally_slots
    monkeypatch.setattr(engine, "cpu_tally_slots", lambda n, t: seen.append(t) or real(n, t))
    g = SimpleNamespace(material_index_zyx=np.zeros((10, 10, 10), np.uint8), shape_zyx=(10, 10, 10))
    cases = (("4,abc", 3), (" 4 ,1", 4), ("2", 2), ("", 3), ("0", 3), ("-1", 3))
    for value, threads in cases:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert (cpus.omp_num_threads() or cpus.usable_cpus()) == threads, value   # what the run uses
        _check_memory(g, RunSettings(**(TINY | {"threads": None})))
    assert seen == [t for _, t in cases], seen


def test_simulate_runs_a_grid_that_fits_though_mcproton_run_s_estimate_does_not(monkeypatch):
    """Review R2: simulate's check took ``mcproton run``'s estimate (0.3 GB + 99 B/voxel, with the output buffers
    and the sum of the beams: 3.0 GB for 27 M voxels) and refused, with 2 GB available (a 2 GB container), the
    audit's pencil beam on a 300 x 300 x 300 grid of 1 mm voxels, which peaks at about 0.8 GB.  It runs now, with a
    warning that a dose over the whole grid (7.7 GB since the LETd's running sums of 2026-12-08, 6.6 before) could
    not fit, and its peak stays below the 2 GB."""
    g = box_phantom("water", (300.0, 300.0, 300.0), 1.0)
    _memory(monkeypatch, 2.0)
    try:
        with open("/proc/self/clear_refs", "w") as fh:   # the peak RSS (VmHWM) from here
            fh.write("5")
        before = _status_bytes("VmRSS")
    except OSError:
        before = None
    with pytest.warns(McprotonRuntimeWarning, match=r"needs up to about 7.7 GB of memory where the dose covers the "
                                                    r"whole grid .* of the 2.0 GB available"):
        r = simulate(g, Beam.pencil(100.0, position_mm=(0, 0, -151)), TINY | {"primaries": 200}, log=None)
    assert r.primaries == 200
    if before is not None:
        assert _status_bytes("VmHWM") - before < 2e9


def _status_bytes(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        return float(fh.read().split(key + ":")[1].split()[0]) * 1024


def test_simulate_warns_of_a_grid_that_takes_most_of_the_memory(monkeypatch):
    """0.38 GB (10^6 voxels, every one with dose; 0.34 before the LETd's running sums of 2026-12-08) of 0.44 GB
    (over 80 %): the run goes on, with the warning kept in the provenance."""
    g = box_phantom("water", (100.0, 100.0, 100.0), (10.0, 10.0, 0.01))   # 10^6 voxels
    _memory(monkeypatch, 0.44)
    with pytest.warns(McprotonRuntimeWarning, match="needs up to about 0.4 GB of memory where the dose covers the "
                                                    "whole grid"):
        r = simulate(g, Beam.pencil(10.0, position_mm=(0, 0, -1)), TINY | {"primaries": 40}, log=None)
    assert any("of the 0.4 GB available" in w for w in r.provenance["warnings"])

"""``simulate`` does what ``mcproton run`` does with the same inputs, or says why not (the Python-API audit, F2, F4,
F5, F6, F9): it warns of a plan of another CT or patient position, runs on settings and spots checked again (a
field assigned after the object was made bypassed every check), records what was asked and what was said in the
result, and its messages can be silenced or redirected.  The Monte Carlo runs here are a few hundred primaries on
the CPU."""
from __future__ import annotations

import warnings


from mcproton import Beam, StudyReference, box_phantom, simulate
from mcproton._io.errors import McprotonRuntimeWarning

TINY = {"primaries": 400, "batches": 10, "backend": "cpu", "threads": 1, "seed": 3}
CT_FRAME = "1.2.826.0.1.3680043.2.1"


def _ct_box(position: str = "HFS"):
    """A water box standing in for a grid made from a DICOM CT (``geometry.study`` set, as HUCalibration.to_geometry
    sets it)."""
    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0))
    g.study = StudyReference(frame_of_reference_uid=CT_FRAME, patient_position=position)
    return g


def _plan_beam(frame: str = CT_FRAME, position: str = "HFS") -> Beam:
    """A beam with the plan keys plan_to_beams gives it."""
    b = Beam.pencil(70.0, position_mm=(0, 0, -5))
    b.meta.update(frame_of_reference_uid=frame, patient_position=position)
    return b


def _said(rec) -> list[str]:
    return [str(w.message) for w in rec if issubclass(w.category, McprotonRuntimeWarning)]


def _simulate_recording(*args, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = simulate(*args, **kw)
    return r, rec


# ------------------------------------------------------------------ F2: the plan's frame and position vs the CT's
def test_simulate_warns_of_a_plan_made_on_another_ct():
    r, rec = _simulate_recording(_ct_box(), _plan_beam(frame="1.2.3.4.5.6.7.8.9"), TINY)
    hits = [w for w in rec if "FrameOfReferenceUID" in str(w.message)]
    assert len(hits) == 1, _said(rec)
    m = str(hits[0].message)
    assert (f"plan beam 'pencil 70 MeV' refers to FrameOfReferenceUID 1.2.3.4.5.6.7.8.9 but the CT's is {CT_FRAME}"
            in m), m
    assert "put the dose in the wrong place" in m and "mcproton run refuses this; simulated as given" in m, m
    assert "allow_other_frame" not in m, m   # a config key means nothing to a script
    assert issubclass(hits[0].category, McprotonRuntimeWarning) and hits[0].filename == __file__
    assert r.primaries == TINY["primaries"]   # run as given


def test_simulate_warns_of_a_plan_set_up_in_another_patient_position():
    _, rec = _simulate_recording(_ct_box("HFS"), _plan_beam(position="HFP"), TINY)
    hits = [str(w.message) for w in rec if "set up HFP" in str(w.message)]
    assert len(hits) == 1, _said(rec)
    assert "but the CT was acquired HFS" in hits[0] and "a beam can enter from the wrong side" in hits[0], hits
    assert "mcproton run refuses this" in hits[0] and "allow_position_mismatch" not in hits[0], hits


def test_simulate_of_a_plan_of_the_ct_or_of_a_ct_that_does_not_say_says_nothing_of_frame_or_position():
    for geom, beam in ((_ct_box("HFS"), _plan_beam()),                              # the same frame and position
                       (_ct_box(""), _plan_beam(position="HFP")),                   # the CT does not say
                       (box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0)),  # no CT at all
                        _plan_beam(frame="1.2.3", position="FFS"))):
        _, rec = _simulate_recording(geom, beam, TINY)
        assert not [m for m in _said(rec) if "FrameOfReferenceUID" in m or "set up" in m], _said(rec)

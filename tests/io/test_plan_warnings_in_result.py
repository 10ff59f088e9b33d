"""The plan's and the beam model's warnings are kept with the beams of ``plan_to_beams`` (``meta["warnings"]``) and
``simulate`` keeps them in its result, as ``mcproton run`` keeps them in its HDF5 (Python-API audit 2026-12-06, F7:
VirtualSourceAxisDistances [0, 0], BDL rows ignored, layers in a gap of the model, MU labelled NP, ... were in the
HDF5 of ``mcproton run`` but in no script's result)."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from dicom_factories import make_plan, save

import mcproton
from mcproton._io.errors import recording_warnings
from mcproton.dicom import load_beam_model, load_rtplan, plan_to_beams

BDL = Path(__file__).resolve().parents[1] / "data" / "dicom" / "opentps_head" / "BDL_default_DN_RangeShifter.txt"

#: what each warning of the plan below starts or holds: (where it is said, words)
SAID = {
    "vsad": "VirtualSourceAxisDistances (300A,030A) = [0, 0]",           # load_rtplan
    "position": "PatientPosition HFS as given",                          # load_rtplan's note
    "bdl_rows": "announces 26 energies but 27 rows follow",              # the beam model's reading
    "gap": "lie between the model's energies 20 and 100 MeV",            # plan_to_beams (the model's gap)
    "np": "the meterset looks like MU labelled NP",                      # plan_to_beams
}


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """Two NP beams of 100 protons (MU labelled NP), each with a 70 MeV layer (in the BDL's 20-100 MeV gap), without
    virtual source-axis distances (as OpenTPS writes them) or a patient position (given to load_rtplan)."""
    layer = [(70.0, [(0.0, 0.0)], [1.0])]
    ds = make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "vsad": (0.0, 0.0), "unit": "NP",
                     "meterset": 100.0, "layers": layer} for g in (0.0, 90.0)])
    ds.PatientSetupSequence[0].PatientPosition = ""
    path = save(ds, tmp_path_factory.mktemp("plan") / "RP.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_rtplan(path, patient_position="HFS")


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


#: how many messages hold them: the NP warning is one per beam, and every beam keeps all the plan's warnings
ONCE = {**dict.fromkeys(SAID, 1), "np": 2}


def _holds(said: list[str], keys=tuple(SAID)) -> dict[str, int]:
    """How many of ``said`` hold each warning's words."""
    return {k: sum(SAID[k] in w for w in said) for k in keys}


def test_the_beams_and_simulate_s_result_keep_the_plan_s_and_model_s_warnings(plan):
    beams = _quiet(lambda: plan_to_beams(plan, BDL, machine_check=False))
    for b in beams:
        assert _holds(b.meta["warnings"]) == ONCE, b.meta["warnings"]
    geometry = mcproton.box_phantom("water", (40.0, 40.0, 40.0), 4.0, origin_mm=(-18.0, -18.0, -18.0))
    settings = mcproton.RunSettings(primaries=200, batches=2, backend="cpu", threads=1)
    results = _quiet(lambda: [mcproton.simulate(geometry, b, settings, beam_index=i, log=None)
                              for i, b in enumerate(beams)])
    for r in results:
        assert _holds(r.provenance.get("warnings") or []) == ONCE, r.provenance.get("warnings")
    total = mcproton.sum_results(results)   # each message once in the sum
    assert _holds(total.provenance["warnings"]) == ONCE, total.provenance["warnings"]


def test_a_beam_model_reused_for_another_scenario_still_gives_its_warnings(plan):
    """A robustness loop loads the model once and calls plan_to_beams per scenario: the beams of every scenario keep
    what was said when the model was read and the plan's layers in its gap (once per call, no longer once per
    model)."""
    model = _quiet(lambda: load_beam_model(BDL))
    assert _holds(model.made_with_warnings, ("bdl_rows",)) == {"bdl_rows": 1}, model.made_with_warnings
    for shift in (None, (3.0, 0.0, 0.0)):
        beams = _quiet(lambda: plan_to_beams(plan, model, machine_check=False, isocentre_shift_mm=shift))
        assert _holds(beams[0].meta["warnings"]) == ONCE, (shift, beams[0].meta["warnings"])


def test_each_warning_is_said_once_when_it_is_issued(plan, tmp_path):
    """plan_to_beams keeps the plan's warnings without saying them again: what a run records (mcproton run's HDF5,
    mcproton check's report) holds each once, and the command line does not print them twice."""
    path = plan.path
    with recording_warnings() as said, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = load_rtplan(path, patient_position="HFS")
        model = load_beam_model(BDL)
        plan_to_beams(p, model, machine_check=False)
    assert _holds(said, ("vsad", "bdl_rows", "gap", "np")) == {"vsad": 1, "bdl_rows": 1, "gap": 1, "np": 2}, said

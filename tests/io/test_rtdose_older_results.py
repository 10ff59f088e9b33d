"""An RT Dose written again (write_result_rtdose) from a result loaded from an older HDF5 file: what the file does not
record is not guessed (compat audit of 2026-12-06, F3).

mcproton demo and mcproton run wrote a plan's dose of one fraction (the demo: 1 of 17) before they recorded it in the
HDF5 (the beams' ``fractions`` / ``fractions_planned``: mcproton run from 2026-12-05 midday, the demo from that
evening); today's write_result_rtdose took "no plan keys" for "PLAN, the dose as simulated", so that such a file's
one-fraction dose came out as the whole course (DoseSummationType PLAN), 17 x too low for a reader that believes it.
The older files are built here as those versions wrote them (no ``study``, no fractions; the demo's root ``plan``
attribute, an RT Ion Plan's beam names "N:name")."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pydicom
import pytest

from mcproton import DoseResult, box_phantom, sum_results
from mcproton.dicom import DoseContents, StudyReference, read_rtdose, write_result_rtdose

FRAME = "1.2.826.0.1.3680043.8.498.611"
STUDY = StudyReference(patient_id="PAED-3", study_instance_uid="1.2.826.0.1.3680043.8.498.612",
                       frame_of_reference_uid=FRAME, patient_position="HFS")
#: the demo's root attribute of the time (plan.summary(), shortened): how the file shows it holds a plan's dose
DEMO_PLAN = {"name": "posterior-fossa boost", "target": "CTV_PF", "prescription_gy_rbe": 1.8,
             "prescription_gy": 1.6363636363636362, "rbe": 1.1, "total_protons": 1.61e10}


def _result(beam: dict, *, seed: int = 7, normalisation: str = "Gy for 1.61e+10 protons") -> DoseResult:
    """A small result whose provenance holds the beam record ``beam`` (as the older versions wrote it)."""
    g = box_phantom("water", (8.0, 8.0, 12.0), (4.0, 4.0, 4.0))
    shape = g.shape_zyx
    dose = np.linspace(0.1, 2.1, int(np.prod(shape))).reshape(shape)
    return DoseResult(
        dose_gy_zyx=dose, dose_to_water_gy_zyx=dose * 1.01, let_d_kev_um_zyx=np.full(shape, 2.0),
        uncertainty_rel_zyx=np.full(shape, 0.02), mean_rel_uncertainty_50=0.02, geometry=g,
        ledger={"incident": 1.0, "deposited": 1.0}, primaries=50000, wall_s=1.0, protons_per_second=5e4,
        backend="cpu", device="cpu", normalisation=normalisation,
        provenance={"seed": seed, "beam_index": 0, "beam": beam, "normalisation": normalisation})


def _older_file(result: DoseResult, path, **root) -> str:
    """``result`` written as an older mcproton wrote it: no ``study`` attribute (before 2026-12-06), and the root
    attributes ``root`` (the demo's ``plan``)."""
    import h5py

    result.save(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["study"]
        for k, v in root.items():
            f.attrs[k] = json.dumps(v)
    return str(path)


def _written(result: DoseResult, path, **kw) -> tuple[pydicom.Dataset, tuple]:
    """The RT Dose written, and the fractions it holds of those planned (its summary's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # no body outline
        entry = write_result_rtdose(result, path, **kw)
    return pydicom.dcmread(path), (entry["fractions"], entry["fractions_planned"])


def test_an_older_demo_dose_is_not_written_again_as_the_whole_course(tmp_path):
    """The auditor's case: eff5010's demo dose.h5 (one fraction of 17; its beam record name/spots/total_protons,
    "Gy for 1.61e+10 protons", the root attribute ``plan``) written again with study= (as the study refusal asks)
    gave DoseSummationType PLAN, 'MC dose, to medium, physical', the same 2.1 Gy: now refused, saying what is unknown
    and what to give; with contents= it is written as given; saved again, or summed, it stays refused; the fractions
    stated on the result (as today's demo records them) write the whole course: 17 x the dose."""
    old = _result({"name": "posterior-fossa boost", "spots": 2132, "total_protons": 1.61e10})
    path = _older_file(old, tmp_path / "dose.h5", plan=DEMO_PLAN)
    loaded = DoseResult.load(path)
    with pytest.raises(ValueError, match=r"does not record how many fractions its dose holds") as e:
        write_result_rtdose(loaded, tmp_path / "RD.dcm", study=STUDY)
    msg = str(e.value)
    assert loaded.fractions_not_stored == path
    assert path in msg and "PLAN" in msg and 'DoseContents("FRACTION_SESSION", fractions=1' in msg, msg
    assert "contents=" in msg and 'provenance["beam"]' in msg, msg
    assert not (tmp_path / "RD.dcm").exists()
    with pytest.raises(ValueError, match="does not record how many fractions"):   # the contents alone: refused too
        from mcproton.dicom import result_dose_contents

        result_dose_contents(loaded)
    # said by the caller: written as said
    ds, fx = _written(loaded, tmp_path / "RD.dcm", study=STUDY,
                  contents=DoseContents("FRACTION_SESSION", fractions=1, fractions_planned=17, n_beams=3))
    assert ds.DoseSummationType == "FRACTION_SESSION" and fx == (1, 17)
    back = read_rtdose(tmp_path / "RD.dcm").dose_gy_zyx
    assert np.abs(back - old.dose_gy_zyx).max() <= 0.5 * float(ds.DoseGridScaling) * (1 + 1e-9)
    # saved again (its study stated or not) and loaded, and summed with a result of today: still unknown
    resaved = DoseResult.load(loaded.save(tmp_path / "resaved.h5"))
    loaded.geometry.study = STUDY
    stated_study = DoseResult.load(loaded.save(tmp_path / "stated.h5"))
    today = _result({"name": "boost", "spots": 10, "total_protons": 1e9}, seed=8, normalisation="Gy for 1e+09 protons")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summed = sum_results([today, loaded])
    for r in (resaved, stated_study, summed):
        assert path in r.fractions_not_stored
        with pytest.raises(ValueError, match="does not record how many fractions its dose holds"), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")   # no body outline
            write_result_rtdose(r, tmp_path / "RD2.dcm", study=STUDY)
    assert not (tmp_path / "RD2.dcm").exists()
    # the fractions stated on the result: as mcproton run writes a plan (all planned fractions), kept through save
    stated_study.provenance["beam"].update(fractions=1, fractions_planned=17)
    again = DoseResult.load(stated_study.save(tmp_path / "fx.h5"))
    assert again.fractions_not_stored == ""
    ds, fx = _written(again, tmp_path / "RD3.dcm")
    assert ds.DoseSummationType == "PLAN" and fx == (17, 17)
    back = read_rtdose(tmp_path / "RD3.dcm").dose_gy_zyx
    assert np.abs(back - 17 * old.dose_gy_zyx).max() <= 0.5 * float(ds.DoseGridScaling) * (1 + 1e-9)


def test_the_mcnamara_rbe_of_an_older_plan_file_is_not_guessed_either(tmp_path):
    """Audit 29 bio, F1: mcnamara_of_result took such a file's dose for one fraction, without a word.  Were it the
    course of 5 fractions (plan.all_fractions = true; its 2.1 Gy per fraction here 10.5 Gy, below the 15 Gy
    warning), the RBE was that of 10.5 Gy: 5 % low at the maximum at 2 keV/um (10 % over a demo's target).  Now
    refused as write_result_rtdose refuses it, saying how to state the fractions; stated, the RBE is the dose per
    fraction's."""
    from mcproton.rbe import mcnamara_of_result, mcnamara_rbe

    old = _result({"name": "posterior-fossa boost", "spots": 2132, "total_protons": 1.61e10})
    old.dose_gy_zyx = 5 * old.dose_gy_zyx   # the course of 5 fractions
    old.dose_to_water_gy_zyx = 5 * old.dose_to_water_gy_zyx
    loaded = DoseResult.load(_older_file(old, tmp_path / "dose.h5", plan=DEMO_PLAN))
    with pytest.raises(ValueError, match=r"dose\.h5.*does not record how many fractions its dose holds") as e:
        mcnamara_of_result(loaded, 2.0)
    assert 'provenance["beam"].update(fractions=1, fractions_planned=N)' in str(e.value)
    assert "docs/" not in str(e.value)
    loaded.provenance["beam"].update(fractions=5, fractions_planned=5)
    m = mcnamara_of_result(loaded, 2.0)
    d = np.asarray(loaded.dose_gy_zyx)
    assert m.fractions == 5
    assert np.allclose(m.rbe_zyx, mcnamara_rbe(d / 5, m.let_d_kev_um_zyx, 2.0), rtol=1e-12)
    # as one fraction it would have been 5 % lower at the maximum dose (1.111 against 1.167): what the refusal prevents
    top = np.unravel_index(np.argmax(d), d.shape)
    assert mcnamara_rbe(d[top], m.let_d_kev_um_zyx[top], 2.0) < 0.96 * m.rbe_zyx[top]


def test_an_older_rt_plan_run_is_refused_too_and_a_pencil_beam_is_written_as_before(tmp_path):
    """mcproton run of an RT Ion Plan before 2026-12-05 kept only each beam's name ("1:G90", plan_to_beams'
    naming), spots and total_protons: of a plan, its fractions unknown, so refused without contents=.  A pencil
    beam's older file (an absolute dose of no plan) keeps today's behaviour: PLAN with a placeholder plan
    reference, the dose as simulated."""
    beams = [_result({"name": f"{k}:G{90 * k}", "spots": 40, "total_protons": 1e9}, seed=k,
                     normalisation="Gy for 1e+09 protons") for k in (1, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan_sum = sum_results(beams)
    for k, r in enumerate([beams[0], plan_sum]):
        loaded = DoseResult.load(_older_file(r, tmp_path / f"run{k}.h5"))
        with pytest.raises(ValueError, match=rf"run{k}.h5.*does not record how many fractions its dose holds"):
            write_result_rtdose(loaded, tmp_path / "RD.dcm", study=STUDY)
    pencil = _result({"name": "beam", "spots": 1, "total_protons": 1e9}, normalisation="Gy for 1e+09 protons")
    loaded = DoseResult.load(_older_file(pencil, tmp_path / "pencil.h5"))
    ds, fx = _written(loaded, tmp_path / "RD.dcm", study=STUDY)
    assert loaded.fractions_not_stored == ""
    assert ds.DoseSummationType == "PLAN" and "placeholder" in ds.DoseComment
    back = read_rtdose(tmp_path / "RD.dcm").dose_gy_zyx
    assert np.abs(back - pencil.dose_gy_zyx).max() <= 0.5 * float(ds.DoseGridScaling) * (1 + 1e-9)


def test_todays_demo_dose_written_again_says_its_fractions():
    """Today's demo records its one fraction of 17 in the beam record (fractions, fractions_planned) but no beam
    numbers (one Beam of the plan's fields): the contents were still "PLAN, the dose as simulated" (1 fraction
    labelled as the whole course).  Now the recorded fractions count: the plan's 17 fractions (scale 17) as
    mcproton run writes a plan, or one fraction with summation="fraction"."""
    from mcproton.dicom import result_dose_contents

    r = _result({"name": "posterior-fossa boost", "spots": 2132, "total_protons": 1.61e10, "fractions": 1,
                 "fractions_planned": 17})
    c = result_dose_contents(r)
    assert (c.summation_type, c.fractions, c.fractions_planned, c.scale) == ("PLAN", 17, 17, 17.0)
    assert c.comment().startswith("MC dose, 17 of 17 fx, to medium")
    one = result_dose_contents(r, summation="fraction")
    assert (one.summation_type, one.fractions, one.fractions_planned, one.scale) == ("FRACTION_SESSION", 1, 17, 1.0)


def test_todays_demo_dose_references_its_plan_and_beams():
    """The demo's dose.h5 records its plan and the plan's beam numbers beside the fractions since 2026-12-06
    (roundtrip audit F1): written again it references them, as the demo's rtdose.dcm ("1 of 17 fx, beams 1,2,3");
    beams that disagree on the plan are refused (before audit 26 interact, F1: written referencing none, with the
    first record's fractions for all)."""
    from mcproton.dicom import result_dose_contents

    uid = "1.2.826.0.1.3680043.8.498.1"
    r = _result({"name": "posterior-fossa boost", "fractions": 1, "fractions_planned": 17,
                 "plan_beam_numbers": [1, 2, 3], "plan_sop_instance_uid": uid})
    one = result_dose_contents(r, summation="fraction")
    assert (one.summation_type, one.beam_numbers, one.plan_sop_instance_uid) == ("FRACTION_SESSION", [1, 2, 3], uid)
    assert one.comment() == "MC dose, 1 of 17 fx, beams 1,2,3, to medium, physical"
    c = result_dose_contents(r)
    assert (c.summation_type, c.fractions, c.scale, c.beam_numbers, c.plan_sop_instance_uid) == \
        ("PLAN", 17, 17.0, [1, 2, 3], uid)
    other = dict(r.provenance["beam"], plan_sop_instance_uid="1.2.826.0.1.3680043.8.498.2")
    r.provenance = {"summed_beams": [r.provenance["beam"], other]}
    with pytest.raises(ValueError, match=r"not of one plan holding the same fractions .*plan_sop_instance_uid"):
        result_dose_contents(r)

"""An RT Dose says what it holds (issue 12 item 4): by default the plan dose for all NumberOfFractionsPlanned
fractions (DoseSummationType PLAN, as planning systems export it); one fraction (FRACTION_SESSION) or one beam
(BEAM / BEAM_SESSION with ReferencedFractionGroupSequence / ReferencedBeamSequence inside the
ReferencedRTPlanSequence, as RayStation writes its beam doses) when asked; DoseComment and the JSON summary say
fractions, beams, medium/water, physical/RBE; an invalid plan UID never reaches the file; dciodvfy 0 errors."""
from __future__ import annotations

import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from dicom_factories import PHANTOM_PATIENT, make_plan, save

DCIODVFY = shutil.which("dciodvfy")


def _dciodvfy_errors(path) -> list[str]:
    if DCIODVFY is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


def _case(tmp_path, n_fractions: int = 5):
    """A 16^3 water CT (5 mm) and a two-beam plan (gantry 90 and 270) of ``n_fractions`` fractions."""
    from mcproton._io.dicom_common import PHANTOM_STUDY
    from mcproton.dicom import write_ct_series

    frame = "1.2.826.0.1.3680043.8.498.1201"
    write_ct_series(np.zeros((16, 16, 16)), (5.0, 5.0, 5.0), (-37.5, -37.5, -37.5), tmp_path / "ct",
                    study=PHANTOM_STUDY.replace(frame_of_reference_uid=frame))
    plan = make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
                       "meterset": 5.0} for g in (90.0, 270.0)], frame_of_reference_uid=frame,
                     n_fractions=n_fractions, **PHANTOM_PATIENT)
    save(plan, tmp_path / "RP.dcm")
    (tmp_path / "run.toml").write_text('[run]\nprimaries = 600\nbatches = 2\nbackend = "cpu"\n\n[phantom]\n'
                                       'type = "ct"\nct_dir = "ct"\n\n[plan]\nrtplan = "RP.dcm"\n'
                                       'beam_model = "dcpt_v2"\n\n[output]\nplot = false\n')
    return tmp_path / "run.toml", plan


def _run(tmp_path, cfg, capsys, *sets):
    from mcproton.cli import main

    args = ["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(tmp_path / "RD.dcm"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_five_fraction_plan_dose_holds_all_fractions_and_per_beam_files(tmp_path, capsys):
    """Default: 5 x the simulated per-fraction dose, PLAN; output.rtdose_per_beam: one BEAM file per beam with
    its ReferencedBeamNumber, adding up to the plan dose.  (Before: the RT Dose held one fraction, labelled PLAN.)"""
    from mcproton._io.hdf5 import read_dose_hdf5
    from mcproton.dicom import read_rtdose

    cfg, plan = _case(tmp_path, 5)
    s = _run(tmp_path, cfg, capsys, "output.rtdose_per_beam=true")
    per_fraction = read_dose_hdf5(tmp_path / "o.h5")["dose"]            # the HDF5 holds what was simulated
    assert s["hdf5_fractions"] == 1 and "1 of 5 fractions" in s["hdf5_dose"]
    import h5py

    with h5py.File(tmp_path / "o.h5") as f:   # the file says so itself (before 2026-12-05: only in a JSON string)
        assert (f.attrs["fractions"], f.attrs["fractions_planned"]) == (1, 5)
        note = "1 of 5 planned fractions (one fraction)"
        assert f["dose"].attrs["fractions_note"] == note == f["dose_to_water"].attrs["fractions_note"]
        # what the LETd is (rbe audit 2026-12-06 F5: before, only {'axes', 'unit'})
        let = f["let_d"].attrs
        assert "dose-averaged" in let["quantity"] and "of protons" in let["quantity"]
        assert "in the voxel medium" in let["let"] and "unrestricted" in let["let"] and "e_cut" in let["particles"]
        assert "10 %" in let["recommended_dose_threshold"]
        # where its own uncertainty is (the let_d_uncertainty dataset since 2026-12-08, written beside it; before,
        # "none computed") and how much noisier than the dose it is (statistics audit 2026-12-06, F4; the figures:
        # 2026-12-07 F1, tests/run/test_letd_noise_documented.py)
        assert "let_d_uncertainty dataset" in let["uncertainty"] and "let_d_uncertainty" in f
        assert "2.9-3.1 x at the 95th percentile" in let["uncertainty"]
    from mcproton.rbe import mcnamara_of_result   # the RBE reads the fractions from the file (rbe audit F3)

    assert mcnamara_of_result(tmp_path / "o.h5", 2.0).fractions == 1
    from mcproton._io.rtstruct import write_dvh_hdf5

    write_dvh_hdf5(tmp_path / "o.h5", per_fraction, {"all": per_fraction >= 0}, 0.125)
    with h5py.File(tmp_path / "o.h5") as f:
        assert note in f["dvh"].attrs["definition"]
    rd = read_rtdose(tmp_path / "RD.dcm")
    assert rd.dose_summation_type == "PLAN" and rd.referenced_fraction_group_number is None
    assert rd.referenced_plan_sop_instance_uid == plan.SOPInstanceUID
    # 16-bit storage: exact to half a DoseGridScaling step
    assert np.allclose(rd.dose_gy_zyx, 5 * per_fraction, rtol=0, atol=0.51 * rd.dose_grid_scaling)
    assert "5 of 5 fx" in rd.dose_comment and "to medium" in rd.dose_comment and "physical" in rd.dose_comment
    c = s["rtdose_contents"]
    assert (c["dose_summation_type"], c["fractions"], c["fractions_planned"], c["beams"]) == ("PLAN", 5, 5, [1, 2])
    assert c["dose_to"] == "medium" and c["dose_type"] == "PHYSICAL" and c["scale_from_simulated_dose"] == 5

    beams = [read_rtdose(tmp_path / f"RD_beam{b}.dcm") for b in (1, 2)]
    for b, d in zip((1, 2), beams):
        assert d.dose_summation_type == "BEAM" and d.referenced_beam_numbers == [b]
        assert d.referenced_fraction_group_number == 1 and d.referenced_plan_sop_instance_uid == plan.SOPInstanceUID
        assert f"beam {b}" in d.dose_comment and "5 of 5 fx" in d.dose_comment
        assert d.dose_gy_zyx.max() > 0
    # gantry 90 enters from +x, gantry 270 from -x: the two beam doses differ and add up to the plan dose
    assert beams[0].dose_gy_zyx[:, :, -1].sum() > beams[0].dose_gy_zyx[:, :, 0].sum()
    assert beams[1].dose_gy_zyx[:, :, 0].sum() > beams[1].dose_gy_zyx[:, :, -1].sum()
    tol = 0.51 * (rd.dose_grid_scaling + beams[0].dose_grid_scaling + beams[1].dose_grid_scaling)
    assert np.allclose(beams[0].dose_gy_zyx + beams[1].dose_gy_zyx, rd.dose_gy_zyx, rtol=0, atol=tol)
    series = {pydicom.dcmread(tmp_path / f"RD_beam{b}.dcm").SeriesInstanceUID for b in (1, 2)}
    assert len(series) == 1 and pydicom.dcmread(tmp_path / "RD.dcm").SeriesInstanceUID not in series
    for f in ("RD.dcm", "RD_beam1.dcm", "RD_beam2.dcm"):
        assert _dciodvfy_errors(tmp_path / f) == [], f
    # the build that wrote them (General Equipment's SoftwareVersions; compat audit 2026-12-06, F6: none before, and
    # the version alone is 0.1.0 whatever the build)
    from mcproton._build import check_build_identity

    b = check_build_identity()
    for f in ("RD.dcm", "RD_beam1.dcm", "RD_beam2.dcm"):
        sv = list(pydicom.dcmread(tmp_path / f, stop_before_pixels=True).SoftwareVersions)
        assert sv == [f"mcproton {b['version']}", f"kernel {b['kernel_hash'][:16]}",
                      f"physics data {b['physics_files_sha256'][:16]}", f"code {b['code_sha256'][:16]}"], f
        assert all(len(v) <= 64 and "\\" not in v for v in sv), sv   # LO: 64 characters, no backslash


def test_one_fraction_is_fraction_session_and_beam_session(tmp_path, capsys):
    """output.dose_summation = "fraction": the per-fraction dose as simulated, FRACTION_SESSION (PS3.3: one
    session of a fraction group; FRACTION would be the whole group) and BEAM_SESSION per beam; RBE and water
    in the comment."""
    from mcproton.dicom import read_rtdose

    cfg, _ = _case(tmp_path, 5)
    s = _run(tmp_path, cfg, capsys, 'output.dose_summation="fraction"', "output.rtdose_per_beam=true",
             'output.dose_to="water"', "output.rbe=1.1")
    rd = read_rtdose(tmp_path / "RD.dcm")
    assert rd.dose_summation_type == "FRACTION_SESSION" and rd.referenced_fraction_group_number == 1
    assert rd.referenced_beam_numbers == [] and rd.dose_type == "EFFECTIVE"
    assert "1 of 5 fx" in rd.dose_comment and "to water" in rd.dose_comment and "RBE 1.1" in rd.dose_comment
    # the whole factor from the simulated dose, the RBE included (audit 24 "docs" F2: it was 1, the fractions' only)
    assert s["rtdose_contents"]["scale_from_simulated_dose"] == 1.1 and s["rtdose_contents"]["unit"] == "Gy(RBE)"
    b2 = read_rtdose(tmp_path / "RD_beam2.dcm")
    assert b2.dose_summation_type == "BEAM_SESSION" and b2.referenced_beam_numbers == [2]
    for f in ("RD.dcm", "RD_beam2.dcm"):
        assert _dciodvfy_errors(tmp_path / f) == [], f


@pytest.mark.parametrize("summation, factor", [("plan", 5 * 1.1), ("fraction", 1.1)])
def test_scale_from_simulated_dose_is_the_files_values_over_the_simulated_dose(tmp_path, capsys, summation, factor):
    """``scale_from_simulated_dose`` is the whole factor from the simulated dose (physical, per simulated fraction)
    to the file: the fractions x the RBE.  It left the RBE out (audit 24 "docs" F2): 5 (or 1) for a file holding
    5.5 (or 1.1) x the simulated dose, so a script dividing the RT Dose by it got a dose 10 % high.  The key changed
    meaning, so the run summary's schema_version went from 1 to 2 (the review of 2026-12-07, F7: a script written
    against 1 could not tell)."""
    from mcproton._io.hdf5 import read_dose_hdf5
    from mcproton.dicom import read_rtdose

    cfg, _ = _case(tmp_path, 5)
    s = _run(tmp_path, cfg, capsys, "output.rbe=1.1", f'output.dose_summation="{summation}"')
    c = s["rtdose_contents"]
    assert s["schema_version"] == 2
    assert (c["rbe"], c["unit"], c["dose_type"]) == (1.1, "Gy(RBE)", "EFFECTIVE")
    assert c["scale_from_simulated_dose"] == pytest.approx(factor, rel=1e-15)
    assert c["max_dose"] == pytest.approx(s["max_dose_gy"] * c["scale_from_simulated_dose"], rel=1e-12)
    simulated = read_dose_hdf5(tmp_path / "o.h5")["dose"]   # physical, per simulated fraction
    rd = read_rtdose(tmp_path / "RD.dcm")
    assert np.allclose(rd.dose_gy_zyx, c["scale_from_simulated_dose"] * simulated, rtol=0,
                       atol=0.51 * rd.dose_grid_scaling)


def test_bad_output_options_are_refused_before_the_transport(tmp_path, capsys):
    from mcproton.cli import main

    cfg, _ = _case(tmp_path, 5)
    out = tmp_path / "x.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", 'output.dose_summation="beams"']) == 2
    assert "output.dose_summation" in capsys.readouterr().err and not out.exists()
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "output.rtdose_per_beam=true"]) == 2
    assert "--rtdose" in capsys.readouterr().err and not out.exists()
    box = tmp_path / "box.toml"
    box.write_text('[run]\nprimaries = 100\n[beam]\nenergy_mev = 70\n[output]\nplot = false\nrtdose_per_beam = true\n')
    assert main(["run", str(box), "--out", str(out), "--rtdose", str(tmp_path / "RD.dcm"), "--quiet"]) == 2
    assert "RT Ion Plan" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("sets, said", [
    (["output.rbe=1.1"], ["output.rbe = 1.1 weights the RT Dose (Gy(RBE), DoseType EFFECTIVE; the HDF5 holds "
                          "physical dose"]),
    (['output.dose_to="water"'], ["output.dose_to = 'water' sets the dose the RT Dose holds"]),
    (['output.dose_summation="fraction"'], ["output.dose_summation = 'fraction' sets the fractions the RT Dose "
                                            "holds"]),
    (["output.rbe=1.1", 'output.dose_to="water"', 'output.dose_summation="fraction"'],
     ["output.rbe = 1.1", "output.dose_to = 'water'", "output.dose_summation = 'fraction'"]),
])
def test_the_rt_doses_keys_are_refused_where_no_rt_dose_is_written(tmp_path, capsys, sets, said):
    """Audit 27 "dead options", F3: output.rbe, output.dose_to and output.dose_summation shape only the RT Dose (here:
    no plan.rtstruct, no figure); a run that writes none refuses them before the transport, as it refuses
    output.rtdose_per_beam, naming each and what to do.  Before 2026-12-07 they were taken and the outputs were
    bitwise the default ones, without a word.  The same keys with an RT Dose run."""
    from mcproton.cli import main

    cfg, _ = _case(tmp_path, 5)
    out = tmp_path / "x.h5"
    args = ["run", str(cfg), "--out", str(out), "--quiet", *(a for s in sets for a in ("--set", s))]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert all(words in err for words in said), err
    n = "it" if len(sets) == 1 else "them"
    assert (f"no RT Dose is written, so {'it does' if n == 'it' else 'they do'} nothing: give --rtdose (or "
            f"output.rtdose) too, or leave {n} out") in err and not out.exists()
    assert main(args + ["--rtdose", str(tmp_path / "RD.dcm"), "--check-config"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("sets", [
    ['output.dose_to="medium"', 'output.dose_summation="plan"', "output.rtdose_per_beam=false"],   # the defaults
    ["output.rbe=1.0", "output.plot=true"],   # the figure's isodoses weigh the plan's prescription with it
])
def test_the_rt_doses_keys_that_change_nothing_else_only_are_refused(tmp_path, capsys, sets):
    """Not refused without an RT Dose: a key set to its default (it asks for nothing the run does not do), and
    output.rbe where the run compares a plan's prescription with another RBE than the clinical 1.1 (the figure of
    output.plot, the prescription check with plan.rtstruct); output.dose_to with plan.rtstruct sets the DVHs'
    dose (tests/io/test_rtstruct.py)."""
    from mcproton.cli import main

    cfg, _ = _case(tmp_path, 5)
    assert main(["run", str(cfg), "--check-config", *(a for s in sets for a in ("--set", s))]) == 0, \
        capsys.readouterr().err
    capsys.readouterr()


def _beam(number, fractions=1, planned=5, plan_beams=(1, 2, 3), uid="1.2.3.4"):
    return SimpleNamespace(meta={"beam_number": number, "fractions": fractions, "fractions_planned": planned,
                                 "plan_beam_numbers": list(plan_beams), "plan_sop_instance_uid": uid})


@pytest.mark.parametrize("beams, kw, want", [
    ([_beam(1), _beam(2), _beam(3)], {}, ("PLAN", 5, 5.0, [1, 2, 3])),
    ([_beam(1), _beam(3)], {}, ("BEAM", 5, 5.0, [1, 3])),                     # plan.beams = [1, 3]
    ([_beam(1), _beam(2), _beam(3)], {"summation": "fraction"}, ("FRACTION_SESSION", 1, 1.0, [1, 2, 3])),
    ([_beam(2)], {"summation": "fraction"}, ("BEAM_SESSION", 1, 1.0, [2])),
    ([_beam(1, 5), _beam(2, 5), _beam(3, 5)], {}, ("PLAN", 5, 1.0, [1, 2, 3])),          # plan.all_fractions
    ([_beam(1, 5), _beam(2, 5), _beam(3, 5)], {"summation": "fraction"}, ("FRACTION_SESSION", 1, 0.2, [1, 2, 3])),
    ([_beam(1), _beam(2), _beam(3)], {"beam_index": 1}, ("BEAM", 5, 5.0, [2])),
    ([SimpleNamespace(meta={})], {}, ("PLAN", None, 1.0, [])),                          # a [beam] config
    # all 5 fractions simulated, NumberOfFractionsPlanned not recorded (an RT Ion Plan whose Type 2 attribute is
    # empty): the plan dose is the dose simulated, 5 fractions, not 1/5 of it labelled "1 fx" (mutation audit 32, W14)
    ([_beam(1, 5, None), _beam(2, 5, None), _beam(3, 5, None)], {}, ("PLAN", 5, 1.0, [1, 2, 3])),
])
def test_dose_contents(beams, kw, want):
    from mcproton._io.rtdose import dose_contents

    c = dose_contents(beams, **kw)
    assert (c.summation_type, c.fractions, c.scale, c.beam_numbers) == want
    assert len(c.comment()) <= 64


@pytest.mark.parametrize("rbe", [11, 0.11, 0, 0.0, -1, float("nan"), float("inf"), True, "1.1", [1.1]])
def test_an_implausible_rbe_is_refused_when_the_contents_are_made(rbe):
    """The Python-API audit of 2026-12-06, F5: ``dose_contents``/``result_dose_contents`` took any RBE, so
    ``write_result_rtdose`` wrote a dose x11 or x0.11 labelled EFFECTIVE, and RBE 0 the physical dose labelled
    EFFECTIVE "RBE 0" (the factor took 0 as 1); ``mcproton run`` refuses ``output.rbe = 11`` with this message."""
    from mcproton._io.rtdose import DoseContents, dose_contents, result_dose_contents

    want = (rf"^rbe = {__import__('re').escape(repr(rbe))} is not a plausible constant RBE; give 1.1 \(the clinical "
            r"convention for protons\) or a value in 0.5-2(, as a number without quotes)?, or None for physical dose$")
    with pytest.raises(ValueError, match=want):
        dose_contents([_beam(1), _beam(2), _beam(3)], rbe=rbe)
    with pytest.raises(ValueError, match=want):
        dose_contents([SimpleNamespace(meta={})], rbe=rbe)          # beams without a plan too
    with pytest.raises(ValueError, match=want):
        result_dose_contents(SimpleNamespace(provenance={}), rbe=rbe)
    with pytest.raises(ValueError, match=want):
        DoseContents("PLAN", rbe=rbe)


@pytest.mark.parametrize("rbe", [0.5, 1, 1.1, 2.0, np.float32(1.1)])
def test_a_plausible_rbe_is_kept_as_a_float(rbe):
    from mcproton._io.rtdose import dose_contents

    c = dose_contents([_beam(1), _beam(2), _beam(3)], rbe=rbe)
    assert type(c.rbe) is float and c.rbe == float(rbe) and c.dose_type == "EFFECTIVE"
    assert dose_contents([_beam(1)]).rbe is None and dose_contents([_beam(1)]).dose_type == "PHYSICAL"


@pytest.mark.parametrize("dose_to", ["Water", "MEDIUM", "tissue", None])
def test_dose_to_other_than_medium_or_water_is_refused_when_the_contents_are_made(dose_to):
    """F5: ``dose_contents(dose_to="Water")`` was accepted and refused only when the file was written."""
    from mcproton._io.rtdose import dose_contents, result_dose_contents

    want = rf'^dose_to must be "medium" or "water"; got {__import__("re").escape(repr(dose_to))}$'
    with pytest.raises(ValueError, match=want):
        dose_contents([_beam(1), _beam(2), _beam(3)], dose_to=dose_to)
    with pytest.raises(ValueError, match=want):
        result_dose_contents(SimpleNamespace(provenance={}), dose_to=dose_to)


def test_contents_changed_after_they_were_made_are_checked_when_written(tmp_path):
    """An RBE assigned to the contents after they were made (``c.rbe = 0``) is refused by write_result_rtdose, not
    written as the physical dose labelled EFFECTIVE "RBE 0"; a plausible one multiplies the dose."""
    from mcproton import Beam, RunSettings, box_phantom, simulate
    from mcproton._io.rtdose import dose_contents, read_rtdose, write_result_rtdose

    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 4.0))
    res = simulate(g, Beam.pencil(70.0, position_mm=(0, 0, -5), total_protons=1e9),
                   RunSettings(primaries=300, seed=1, backend="cpu", threads=1), log=None)
    c = dose_contents([SimpleNamespace(meta={})])
    c.rbe = 0
    with pytest.raises(ValueError, match=r"^contents.rbe = 0 is not a plausible constant RBE"):
        write_result_rtdose(res, tmp_path / "RD0.dcm", contents=c)
    c.rbe, c.dose_to = 1.1, "Water"
    with pytest.raises(ValueError, match=r"""^contents.dose_to must be "medium" or "water"; got 'Water'$"""):
        write_result_rtdose(res, tmp_path / "RDw.dcm", contents=c)
    assert not list(tmp_path.glob("RD*.dcm"))
    c.dose_to = "medium"
    write_result_rtdose(res, tmp_path / "RD.dcm", contents=c)
    rd = read_rtdose(tmp_path / "RD.dcm")
    assert rd.dose_type == "EFFECTIVE" and "RBE 1.1" in rd.dose_comment
    assert np.allclose(rd.dose_gy_zyx, 1.1 * res.dose_gy_zyx, rtol=0, atol=0.51 * rd.dose_grid_scaling)


def test_long_beam_list_comment_fits_the_lo_limit():
    from mcproton._io.rtdose import dose_contents

    nums = list(range(101, 121))
    c = dose_contents([_beam(n, plan_beams=nums + [1]) for n in nums], dose_to="water", rbe=1.1)
    assert c.summation_type == "BEAM" and "20 beams" in c.comment() and len(c.comment()) <= 64


@pytest.mark.parametrize("bad", ["1.2.840.10008.5.1.4.1.1.481.8",        # OpenTPS: the SOP Class UID
                                 "1.2.03.4", "1.2.x.4", "1." + "2" * 70])
def test_invalid_plan_uid_is_replaced_by_a_valid_reference(tmp_path, bad):
    from mcproton._io.rtdose import is_valid_uid, read_rtdose, write_rtdose
    from mcproton.dicom import StudyReference

    paths = []
    for k in range(2):
        p = tmp_path / f"RD{k}.dcm"
        with pytest.warns(RuntimeWarning, match="SOP Instance UID"):
            write_rtdose(np.ones((2, 3, 4)), (1, 1, 1), (0, 0, 0), p,
                         study=StudyReference(frame_of_reference_uid="1.2.3", plan_sop_instance_uid=bad))
        paths.append(p)
    refs = [read_rtdose(p).referenced_plan_sop_instance_uid for p in paths]
    assert refs[0] == refs[1] and refs[0] != bad and is_valid_uid(refs[0])   # the same plan -> the same reference
    assert "invalid plan UID" in read_rtdose(paths[0]).dose_comment
    assert _dciodvfy_errors(paths[0]) == []


def test_uid_check():
    from mcproton._io.rtdose import is_valid_uid

    assert is_valid_uid("1.2.752.243.1.1.20250523160113465.2000.31856") and is_valid_uid("0.1.0")
    for bad in ("", None, "1.02", ".1", "1..2", "1.2.", "1.2a", "1" * 65):
        assert not is_valid_uid(bad), bad


@pytest.mark.parametrize("st, beams", [("PLAN", None), ("FRACTION", None), ("FRACTION_SESSION", None),
                                       ("BEAM", [1, 3]), ("BEAM_SESSION", 2)])
def test_every_summation_type_is_valid_dicom(tmp_path, st, beams):
    from mcproton._io.rtdose import read_rtdose, write_rtdose
    from mcproton.dicom import StudyReference

    p = write_rtdose(np.ones((2, 3, 4)), (1, 1, 1), (0, 0, 0), tmp_path / "RD.dcm",
                     study=StudyReference(frame_of_reference_uid="1.2.3", plan_sop_instance_uid="1.2.3.4"),
                     summation_type=st, referenced_beam_number=beams,
                     referenced_fraction_group_number=2)
    d = read_rtdose(p)
    assert d.dose_summation_type == st and d.referenced_fraction_group_number == (None if st == "PLAN" else 2)
    assert d.referenced_beam_numbers == ([] if beams is None else [1, 3] if st == "BEAM" else [2])
    assert _dciodvfy_errors(p) == []


DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "dicom"


def test_a_plans_result_written_without_contents_holds_what_mcproton_run_writes(tmp_path):
    """Audit W1/M2: ``write_result_rtdose(res, path)`` of a 5-fraction plan's summed result wrote one fraction's
    dose labelled PLAN with a placeholder plan reference, and its summary said 1 beam, no plan.  Now its default is
    dose_contents(beams) of the beams the result was simulated from (their plan keys kept in the provenance), also
    after save / load: PLAN, 5 x the simulated dose, the plan referenced; a single beam's result: BEAM.  The real
    Eclipse plan RN_headphantom_rs.dcm (3 beams, range shifter, 5 fractions), 600 primaries per beam."""
    from mcproton import Beam, DoseResult, RunSettings, box_phantom, simulate, sum_results
    from mcproton.dicom import dose_contents, load_beam_model, load_rtplan, plan_to_beams, read_rtdose, \
        write_result_rtdose

    plan = load_rtplan(DATA / "RN_headphantom_rs.dcm")
    beams = plan_to_beams(plan, load_beam_model("dcpt_v2"))
    assert plan.number_of_fractions == 5 and len(beams) == 3
    iso = np.asarray(beams[0].meta["isocenter_mm"])
    g = box_phantom("water", (240.0, 240.0, 240.0), (8.0, 8.0, 8.0), origin_mm=tuple(iso - 120.0 + 4.0))
    s = RunSettings(primaries=600, seed=2, backend="cpu", threads=2, batches=2)
    results = [simulate(g, b, s, beam_index=i) for i, b in enumerate(beams)]
    tot = sum_results(results)
    want = dose_contents(beams)
    assert (want.summation_type, want.fractions, want.scale) == ("PLAN", 5, 5.0)
    numbers = [b.meta["beam_number"] for b in beams]

    def written(res, name):
        entry = write_result_rtdose(res, tmp_path / name)
        return entry, read_rtdose(tmp_path / name), pydicom.dcmread(tmp_path / name, stop_before_pixels=True)

    loaded = DoseResult.load(tot.save(tmp_path / "tot.h5"))
    for res, name in ((tot, "RD.dcm"), (loaded, "RD_loaded.dcm")):
        entry, rd, ds = written(res, name)
        assert rd.dose_summation_type == "PLAN" and rd.dose_comment == want.comment(), name
        assert rd.referenced_plan_sop_instance_uid == plan.sop_instance_uid, name
        assert np.allclose(rd.dose_gy_zyx, 5 * tot.dose_gy_zyx, rtol=0, atol=0.51 * rd.dose_grid_scaling), name
        # the summary says what was written
        assert (entry["dose_summation_type"], entry["fractions"], entry["fractions_planned"], entry["beams"],
                entry["scale_from_simulated_dose"]) == ("PLAN", 5, 5, sorted(numbers), 5.0), name
        assert entry["plan_sop_instance_uid"] == entry["referenced_plan_sop_instance_uid"] == plan.sop_instance_uid
        assert entry["dose_comment"] == str(ds.DoseComment)
        assert (entry["study_instance_uid"], entry["frame_of_reference_uid"]) == (ds.StudyInstanceUID,
                                                                                  ds.FrameOfReferenceUID)
    one = dose_contents(beams[1:2])
    entry, rd, _ = written(results[1], "RD_beam.dcm")
    assert (one.summation_type, rd.dose_summation_type, rd.referenced_beam_numbers) == ("BEAM", "BEAM", [numbers[1]])
    assert entry["scale_from_simulated_dose"] == one.scale == 5.0 and rd.dose_comment == one.comment()

    # beams without a plan: PLAN as simulated with a placeholder reference, as before, and the summary counts the
    # beams summed (before: 1) and names no plan
    pencils = [simulate(g, Beam.pencil(100.0, position_mm=tuple(iso + [dx, 0, -130]), total_protons=1e9), s,
                        beam_index=i) for i, dx in enumerate((0.0, 20.0))]
    entry, rd, _ = written(sum_results(pencils), "RD_pencils.dcm")
    assert rd.dose_summation_type == "PLAN" and "placeholder" in rd.dose_comment and "2 beams" in rd.dose_comment
    assert entry["beams"] == 2 and entry["plan_sop_instance_uid"] is None
    assert entry["referenced_plan_sop_instance_uid"] == rd.referenced_plan_sop_instance_uid
    assert np.allclose(rd.dose_gy_zyx, sum_results(pencils).dose_gy_zyx, rtol=0, atol=0.51 * rd.dose_grid_scaling)


def test_a_run_without_a_body_outline_on_a_ct_writes_its_rt_doses_without_a_false_warning(tmp_path, capsys,
                                                                                            recwarn):
    """output.body_outline = "none" on a CT: the RT Doses (the plan's and each beam's) hold the dose everywhere, as
    asked; write_result_rtdose's warning for a script's result without an outline is not given (a review of
    2026-12-05: it was, once per beam file), and the provenance says why there is none."""
    import h5py

    cfg, _ = _case(tmp_path, 2)
    s = _run(tmp_path, cfg, capsys, "output.rtdose_per_beam=true", 'output.body_outline="none"')
    said = [str(w.message) for w in recwarn] + [capsys.readouterr().err]
    assert not [m for m in said if "no body outline" in m] and len(s["rtdose_beams"]) == 2
    with h5py.File(tmp_path / "o.h5") as f:
        assert 'none (output.body_outline = "none")' in f["provenance"].attrs["body_outline"]


def test_a_tagged_dose_comment_keeps_water_or_medium_and_the_rbe():
    """An INCOMPLETE / TARGET UNC NOT REACHED tag in front of the DoseComment cut its end, "to medium, physical",
    which mcproton check reads back (a review of 2026-12-05): the comment now gives up the beam list, "MC dose",
    the beams and the fractions first, in that order."""
    from mcproton._io.rtdose import DoseContents

    c = DoseContents("FRACTION_SESSION", 1, 17, [1, 2, 3], 3, "medium", None, 1.0, "")
    assert c.comment() == "MC dose, 1 of 17 fx, beams 1,2,3, to medium, physical"
    for tag in ("INCOMPLETE 12.3 %", "INCOMPLETE 0.123 %", "TARGET UNC NOT REACHED"):   # the tags written
        text = f"{tag}; {c.comment(64 - len(tag) - 2)}"
        assert len(text) <= 64 and text.endswith(", to medium, physical"), text
    assert c.comment(64 - 19) == "1 of 17 fx, 3 beams, to medium, physical"
    assert c.comment(30) == "to medium, physical"
    rbe = DoseContents("PLAN", 30, 30, list(range(1, 13)), 12, "water", 1.1, 1.0, "")
    assert rbe.comment(64 - 24) == "30 of 30 fx, 12 beams, to water, RBE 1.1"


#: the tags of write_result_rtdose's DoseComment, as (what sets them in the provenance, their key words)
_EARLY = {"none": ({}, []),
          "INCOMPLETE 30 %": ({"primaries_requested": 1000, "stop_reason": "time_limit"}, ["INCOMPLETE"]),
          "INCOMPLETE 0.123 %": ({"primaries_requested": 243_902, "stop_reason": "time_limit"}, ["INCOMPLETE"]),
          "TARGET UNC NOT REACHED": ({"stop_reason": "target_uncertainty", "target_uncertainty": 1e-4,
                                      "target_reached": False}, ["TARGET UNC NOT REACHED"])}
_OVERRIDES = ([], ["position_mismatch"], ["other_frame", "position_mismatch", "shifter_inside"])
_PLANS = {"valid plan": "1.2.826.0.1.3680043.8.498.4242", "no plan": None,
          "invalid plan UID": "1.2.840.10008.5.1.4.1.1.481.8"}   # OpenTPS's: the RT Ion Plan Storage class UID
_LABELS = {"medium, physical": ("medium", None), "water, RBE 1.1": ("water", 1.1)}   # their label: "to " + key


@pytest.fixture(scope="module")
def small_result():
    import warnings

    from mcproton import Beam, StudyReference, box_phantom, simulate

    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0))
    g.study = StudyReference(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.4243", patient_position="HFS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate(g, Beam.pencil(70.0, position_mm=(0, 0, -5), total_protons=1e9),
                        {"primaries": 300, "batches": 10, "backend": "cpu", "threads": 1}, log=None)


@pytest.mark.parametrize("plan", list(_PLANS))
@pytest.mark.parametrize("label", list(_LABELS))
def test_every_tag_beside_a_plan_note_keeps_its_key_word_and_the_dose_label(tmp_path, small_result, plan, label):
    """The review of 2026-12-06, R3: with OVERRIDE and another tag beside the plan reference's note (no plan: a
    placeholder; an invalid plan UID: replaced), the DoseComment's "to medium, physical" was cut to "to m" and OVERRIDE
    to "OVERR" (INCOMPLETE + SCENARIO + the placeholder: "to m" before any override; INCOMPLETE alone beside it:
    "to medium, ph"), so mcproton check no longer read it as dose to medium, and a SCENARIO's note in the
    SeriesDescription was cut to "s".  Now, for every combination of tags, plan reference and dose label: the
    DoseComment ends with the label and holds each tag's key word, never a word cut off; the SeriesDescription holds
    each key word too; the note is in the DoseComment where it fits, else in ImageComments (always there); and
    mcproton check reads the label back from the file."""
    import copy
    import itertools
    import warnings

    from mcproton._check.api import dose_to_statement
    from mcproton._io.rtdose import DoseContents, write_result_rtdose

    dose_to, rbe = _LABELS[label]
    uid = _PLANS[plan]
    contents = (DoseContents("BEAM", 30, 30, list(range(1, 13)), 12, dose_to, rbe, 30.0, uid) if uid else
                DoseContents("PLAN", n_beams=2, dose_to=dose_to, rbe=rbe))   # the longest comments of each
    note = {"valid plan": "", "no plan": "no RT Plan: placeholder plan ref",
            "invalid plan UID": "invalid plan UID replaced"}[plan]
    label_text = f"to {label}"
    for k, ((early, (prov_early, early_words)), scenario, overrides) in enumerate(
            itertools.product(_EARLY.items(), (False, True), _OVERRIDES)):
        r = copy.copy(small_result)
        r.provenance = {**small_result.provenance, **prov_early, "overrides": overrides}
        if scenario:
            r.provenance["beam"] = {**(r.provenance.get("beam") or {}), "isocentre_shift_mm": [3.0, 0.0, -2.5]}
        words = early_words + ["SCENARIO"] * scenario + ["OVERRIDE"] * bool(overrides)
        path = tmp_path / f"rd{k}.dcm"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the replaced plan UID's warning; the result has no body outline
            write_result_rtdose(r, path, contents=copy.deepcopy(contents))
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        dc, sd, ic = str(ds.DoseComment), str(ds.SeriesDescription), str(ds.get("ImageComments", ""))
        case = f"{early}, scenario {scenario}, overrides {overrides}, {plan}, {label}: {dc!r} / {sd!r}"
        assert len(dc) <= 64 and len(sd) <= 64, case
        body = dc.removesuffix(f"; {note}") if note else dc
        assert body.endswith(label_text) and label_text not in body[:-len(label_text)], case
        tags = body[:-len(label_text)].split("; ")[0] if words else ""
        assert all(w in tags for w in words) and all(w.lower() in sd.lower() for w in words), case
        assert "OVERR" not in dc.replace("OVERRIDE", "") and "INCOMPL" not in dc.replace("INCOMPLETE", ""), case
        if early.startswith("INCOMPLETE"):   # the percentage, where the DoseComment has no room for it
            assert early in sd, case
        assert (note in ic) and (not note or dc.endswith(f"; {note}") or note not in dc), case
        if not words and note:   # no tag: the note always fits beside the label
            assert dc.endswith(f"; {note}"), case
        if not words:
            assert sd == "mcproton dose", case
        assert dose_to_statement([path])[0] == dose_to, case


def test_tags_fit_the_longest_dose_label_and_a_long_series_description():
    """The fitting of R3 on its limits: the longest key words ("TARGET UNC NOT REACHED SCENARIO OVERRIDE") beside
    the longest label (an RBE of 6 significant digits, "to medium, RBE 1.23457") and either plan note fill the 64
    characters exactly; a long series description given by the caller gives way to the tags at a word boundary."""
    from mcproton._io.rtdose import DoseContents, _tagged_comment, _tagged_description

    forms = [["TARGET UNC NOT REACHED"], ["SCENARIO"], ["OVERRIDE frame,position,shifter", "OVERRIDE"]]
    for note in ("", "no RT Plan: placeholder plan ref", "invalid plan UID replaced"):
        for c in (DoseContents("PLAN", dose_to="medium", rbe=1.234567),
                  DoseContents("FRACTION_SESSION", 1, 17, [1, 2, 3], 3, "water", 0.5, 1.0, "")):
            text, kept = _tagged_comment(c, forms, note)
            assert not kept and text == f"TARGET UNC NOT REACHED SCENARIO OVERRIDE; {c.label()}", text
    sd = _tagged_description("mcproton beam dose of the spinal field, upper", [
        (" ", ["INCOMPLETE 0.123 %", "INCOMPLETE"]), (" ", ["scenario iso +3,+0,-2.5 mm, cal. modified", "scenario"]),
        ("; ", ["OVERRIDE frame,position,shifter", "OVERRIDE"])])
    assert sd == "mcproton beam dose of the spinal INCOMPLETE scenario; OVERRIDE", sd


@pytest.mark.parametrize("hu, outline, why", [(0, "none", 'none (output.body_outline = "none")'),
                                              (-500, "auto", "none found (no CT voxel above -400 HU)")])
def test_a_ct_run_without_a_body_outline_keeps_its_warnings(tmp_path, capsys, hu, outline, why):
    """A CT run without a body outline (output.body_outline = "none", or a CT with no voxel above -400 HU) keeps the
    warnings it gave (here: 2 batches only) in the JSON summary and the HDF5 provenance, and the summary says why
    there is no outline (the dose-to-water audit of 2026-12-06, F2: the outline text replaced the warnings, which
    were stored as its single characters, and the summary's body_outline was missing)."""
    import h5py

    from mcproton._io.dicom_common import PHANTOM_STUDY
    from mcproton.dicom import write_ct_series

    cfg, _ = _case(tmp_path, 1)
    shutil.rmtree(tmp_path / "ct")
    write_ct_series(np.full((16, 16, 16), hu), (5.0, 5.0, 5.0), (-37.5, -37.5, -37.5), tmp_path / "ct",
                    study=PHANTOM_STUDY.replace(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1201"))
    s = _run(tmp_path, cfg, capsys, f'output.body_outline="{outline}"')
    assert s["body_outline"] == f"{why}: the dose everywhere, air included", s.get("body_outline")
    assert s["warnings"] and all(len(w) > 20 for w in s["warnings"]), s["warnings"]
    assert any("2 batches only" in w for w in s["warnings"]), s["warnings"]
    with h5py.File(tmp_path / "o.h5") as f:
        assert json.loads(f["provenance"].attrs["warnings"]) == s["warnings"]
        assert f["provenance"].attrs["body_outline"] == s["body_outline"]


def test_a_ct_runs_rt_dose_to_medium_by_default_is_said_and_recorded(tmp_path, capsys):
    """The dose-to-water audit of 2026-12-06 (F3, F4): a CT run's RT Dose is dose to medium by default (the CT
    calibration's bin materials: HU 0 is not water in schneider2000), while the planning systems and mcproton check
    use dose to water.  Said on the console and in the summary where not asked for, not where output.dose_to is
    given; the HDF5 records which dose its RT Dose holds, and its dose datasets say what they are."""
    import h5py

    cfg, _ = _case(tmp_path, 1)
    s = _run(tmp_path, cfg, capsys)
    assert "dose to medium" in s["rtdose_note"] and 'output.dose_to = "water"' in s["rtdose_note"]
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["provenance"].attrs["rtdose_dose"].startswith("dose to medium, physical (output.dose_to default")
        assert "dose to the voxel medium" in f["dose"].attrs["description"]
        assert "s_w/s_m" in f["dose_to_water"].attrs["description"]
    from mcproton.cli import main

    args = ["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(tmp_path / "RD.dcm"), "--quiet",
            "--set", 'output.dose_to="water"', "--set", "output.rbe=1.1"]
    assert main(args) == 0
    out = capsys.readouterr()
    s = json.loads(out.out)
    assert "rtdose_note" not in s and "RT Dose holds dose to medium" not in out.err
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["provenance"].attrs["rtdose_dose"].startswith("dose to water, RBE-weighted (constant RBE 1.1)")


def test_the_dose_to_medium_note_names_the_run_s_own_calibration(tmp_path, capsys):
    """Journey audit 28, F5: a run with another calibration (the DCPT head phantom's dcpt_spr_brain) was told "the
    dose to the CT calibration's bin materials (schneider2000: HU 0 ... is an adipose/soft-tissue mixture ...)", a
    fixed text read as its own calibration's; now the note names the run's calibration and gives schneider2000's
    figures as schneider2000's."""
    cfg, _ = _case(tmp_path, 1)
    s = _run(tmp_path, cfg, capsys, 'phantom.calibration="mcsquare_default"')
    note = s["rtdose_note"]
    assert "run's CT calibration, 'mcsquare_default' (e.g. in the default schneider2000 HU 0" in note, note
    assert "(schneider2000:" not in note, note
    s = _run(tmp_path, cfg, capsys)
    assert "run's CT calibration, 'schneider2000' (in schneider2000 HU 0, water or CSF" in s["rtdose_note"]


def test_the_hdf5_dose_description_names_the_run_s_own_calibration(tmp_path, capsys):
    """Journey audit 33, F4: the HDF5's ``dose`` said "each voxel's material of the CT calibration's bin
    (schneider2000: HU 0 is an adipose/soft-tissue mixture, not water)" in a run with mcsquare_default (the OpenTPS
    head CT), a fixed text read as the run's own curve, as the RT Dose note was before journey audit 28, F5; now it
    names the run's calibration, and schneider2000's HU 0 as schneider2000's."""
    import h5py

    cfg, _ = _case(tmp_path, 1)
    _run(tmp_path, cfg, capsys, 'phantom.calibration="mcsquare_default"')
    with h5py.File(tmp_path / "o.h5") as f:
        text = f["dose"].attrs["description"]
    assert "the run's CT calibration, 'mcsquare_default'" in text, text
    assert "(schneider2000:" not in text and "in the default schneider2000 HU 0" in text, text
    _run(tmp_path, cfg, capsys)
    with h5py.File(tmp_path / "o.h5") as f:
        text = f["dose"].attrs["description"]
    assert "the run's CT calibration, 'schneider2000' (in schneider2000 HU 0 is" in text, text


def test_an_unreadable_source_file_does_not_lose_the_rt_dose(tmp_path, monkeypatch):
    """The RT Dose's SoftwareVersions hash every source file of mcproton (code_sha256); one that cannot be read made
    every RT Dose write fail, for mcproton run after the whole MC (run review of 2026-12-06, F5).  Now the file is
    written, saying the build is unknown."""
    from mcproton import _build
    from mcproton.dicom import write_result_rtdose
    from mcproton.geometry import box_phantom
    from mcproton.run import simulate
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    def unreadable() -> str:
        raise PermissionError("[Errno 13] Permission denied: 'mcproton/_check/compare.py'")

    monkeypatch.setattr(_build, "code_sha256", unreadable)
    said = _build.software_versions()
    assert said[0].startswith("mcproton ") and "build unknown" in said[1]
    g = box_phantom("water", (20.0, 20.0, 30.0), (4.0, 4.0, 3.0))
    r = simulate(g, Beam.pencil(60.0, position_mm=(0, 0, -5), total_protons=1e9),
                 RunSettings(primaries=2000, seed=3, backend="cpu", threads=1, batches=10))
    # the result records its build less the code, and why (audit 25 provenance, F5: the code is recorded)
    assert "PermissionError" in r.provenance["build"]["code_sha256_unknown"] and r.provenance["build"]["kernel_hash"]
    write_result_rtdose(r, tmp_path / "RD.dcm")
    assert "build unknown" in str(pydicom.dcmread(tmp_path / "RD.dcm").SoftwareVersions)

"""``mcproton check`` of a plan that OpenTPS 2.0.0 wrote, against the dose its MCsquare computed
(tests/data/dicom/opentps_head, made by scripts/make_opentps_case.py; see its README): what OpenTPS writes is read
as a user meets it, refused where it is ambiguous, and the two Monte Carlo codes agree.

The files are OpenTPS's writers' output, byte for byte: the RT Struct says Modality RTDOSE, the plan "RT Ion Plan
IOD" and a SOP Class UID as its SOP Instance UID, PatientPosition is empty, and the dose, physical dose to water
from MCsquare, says DoseType EFFECTIVE."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom" / "opentps_head"
BDL = DATA / "BDL_default_DN_RangeShifter.txt"

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR CS", "ignore:.*VirtualSourceAxisDistances",
                                        "ignore:.*SOPInstanceUID", "ignore:.*SOP Instance UID")


@pytest.fixture(scope="module")
def as_written(tmp_path_factory):
    """The folder as OpenTPS wrote it."""
    d = tmp_path_factory.mktemp("opentps")
    with tarfile.open(DATA / "opentps_head.tar.gz") as tf:
        tf.extractall(d, filter="data")
    return d


@pytest.fixture(scope="module")
def with_position(as_written, tmp_path_factory):
    """The folder after the user did what the refusal of the empty PatientPosition says, by editing the plan (HFS:
    the position of the phantom mcproton wrote; OpenTPS's CT says none)."""
    d = tmp_path_factory.mktemp("opentps_hfs")
    shutil.copytree(as_written, d, dirs_exist_ok=True)
    ds = pydicom.dcmread(d / "RP.dcm")
    ds.PatientSetupSequence[0].PatientPosition = "HFS"
    ds.save_as(d / "RP.dcm")
    return d


def test_the_files_are_as_opentps_writes_them(as_written):
    rs = pydicom.dcmread(as_written / "RS.dcm", stop_before_pixels=True)
    rp = pydicom.dcmread(as_written / "RP.dcm", stop_before_pixels=True)
    rd = pydicom.dcmread(as_written / "RD.dcm", stop_before_pixels=True)
    assert rs.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3" and rs.Modality == "RTDOSE"
    assert rp.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8" and rp.Modality == "RT Ion Plan IOD"
    assert rp.SOPInstanceUID == rp.SOPClassUID
    assert rp.PatientSetupSequence[0].PatientPosition == ""
    assert (rd.Manufacturer, rd.ManufacturerModelName, rd.DoseType) == ("OpenMCsquare", "OpenTPS", "EFFECTIVE")
    case = json.loads((DATA / "opentps_case.json").read_text())
    assert case["opentps_core"] == "2.0.0" and case["range_shifter"] == [None, "RS_Block"]


def test_empty_patient_position_is_refused_with_the_remedy(as_written):
    from mcproton._io.errors import InputDataError

    from mcproton._check.inputs import gather

    with pytest.raises(InputDataError, match=r"PatientPosition \(0018,5100\) of patient setup 0 is empty "
                                             r"\(OpenTPS writes it so\).*--patient-position HFS "
                                             r"\(mcproton check\).*dcmodify"):
        gather(folder=as_written)


def test_opentps_effective_label_is_refused_until_the_user_says_what_the_dose_is(with_position):
    from mcproton._check.inputs import CheckInputError, gather

    with pytest.raises(CheckInputError, match=r"RD.dcm: DoseType EFFECTIVE, written by OpenTPS.*10 % apart.*"
                                              r"--dose-type physical"):
        gather(folder=with_position)
    inp = gather(folder=with_position, dose_type="PHYSICAL")
    assert Path(inp.plan_path).name == "RP.dcm" and Path(inp.total.path).name == "RD.dcm"
    assert Path(inp.struct_path).name == "RS.dcm" and inp.dose_type == "PHYSICAL"
    pairing = "\n".join(inp.pairing)
    assert "RS.dcm: Modality 'RTDOSE' but SOP class RT Structure Set Storage" in pairing
    assert "RP.dcm: Modality 'RT Ion Plan IOD' but SOP class RT Ion Plan Storage" in pairing
    assert "dose type: PHYSICAL as given" in pairing and "the RT Dose says EFFECTIVE" in pairing
    # what the user gives wins over the file in both directions: EFFECTIVE is accepted too, with no refusal
    assert gather(folder=with_position, dose_type="EFFECTIVE").dose_type == "EFFECTIVE"


def test_dose_type_given_for_an_opentps_dose_is_no_warning(with_position):
    """--dose-type physical is what an OpenTPS dose needs (its writer labels every dose EFFECTIVE): said in the
    pairing, not warned of as another system's DoseType given over is (journey audit 28, F3b:
    tests/check/test_check_aptg.py)."""
    import warnings

    from mcproton._check.inputs import DOSE_TYPE_GIVEN_OVER, gather

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        gather(folder=with_position, dose_type="PHYSICAL")
    assert not [w for w in said if str(w.message).startswith(DOSE_TYPE_GIVEN_OVER)]


def test_the_plan_s_structure_set_missing_is_refused_before_the_mc(with_position, tmp_path):
    """Journey audit 28, F1: the OpenTPS case exported without its RS.dcm, which the plan names
    (ReferencedStructureSetSequence): before, the check ran without structures and said PASS from 7 rows, the target
    D95/Dmean rows gone without a word.  Now refused before the MC, naming the structure set, the rows it takes and
    both ways out (--struct, --allow-no-struct); in a batch, the patient's folder."""
    from mcproton._check.api import check
    from mcproton._check.inputs import BatchPatient, CheckInputError, checking_batch_patient

    d = tmp_path / "nors"
    shutil.copytree(with_position, d)
    (d / "RS.dcm").unlink()
    # (the UID OpenTPS's plan names is not its RS.dcm's own: with RS.dcm there, it is taken by its frame, said so)
    uid = str(pydicom.dcmread(d / "RP.dcm", stop_before_pixels=True)
              .ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID)
    kw = dict(folder=d, beam_model=BDL, dose_type="PHYSICAL", progress=False, log=lambda m: None)
    with pytest.raises(CheckInputError) as exc:
        check(**kw)
    msg = str(exc.value)
    assert f"the plan names structure set {uid} (its ReferencedStructureSetSequence), but no RT Struct was given or " \
           "found" in msg, msg
    assert "no target rows (D95, Dmean)" in msg and "give --struct RS.dcm" in msg and "--allow-no-struct" in msg, msg
    with checking_batch_patient(BatchPatient(d)), pytest.raises(CheckInputError) as exc:
        check(**kw)
    assert f"put the plan's structure set into {d}, or check without structures: --allow-no-struct" in str(exc.value)
    assert exc.value.single_options == ("--struct",)


@pytest.fixture(scope="module")
def checked(with_position):
    from mcproton._check.api import check

    return check(folder=with_position, beam_model=BDL, calibration="mcsquare_default", dose_type="PHYSICAL",
                 primaries=100_000, target_uncertainty=None, seed=7, backend="cpu", progress=False,
                 gamma_points=2000, gamma_workers=1, report=False, log=lambda m: None)


def test_mcproton_and_mcsquare_agree_on_the_opentps_plan(checked):
    """mcproton's dose of the OpenTPS plan (its BDL and MCsquare's default scanner, the same CT numbers) against
    MCsquare's, with 10^5 primaries per beam (the documented run, at 1 %: docs/check.md).  The integral ratio over
    the body's voxels above 10 % has a statistical spread of a few tenths of a percent at this size; 3 % fails a
    dose mislabelled by the RBE (1.10), a range shifter left out or the other BDL's MU calibration.  The median
    distal R80 difference is the range agreement (+0.5 mm at 1 %); 1.5 mm leaves room for the noise of 10^5
    primaries and fails a range error of the range shifter's WET by 2 mm or more.  Fixed seed: the CPU result is
    the same in every run, so the false-positive rate is that of the tolerances against other seeds: the integral
    sits > 10 standard deviations inside 3 %."""
    res = checked
    ratio = res.dose_difference["integral_ratio_mc_tps"]
    assert 0.97 < ratio < 1.03, ratio
    for b, r in res.ranges.items():
        assert abs(r["median_mm"]) < 1.5, (b, r)
    # MCsquare scored dose in the air in front of the head, out to the grid's faces: named as such
    assert res.dose_difference["tps_dose_in_air_at_grid_edge"] is True
    assert any("in air out to the edge of the dose grid" in n for n in res.diagnostics), res.diagnostics
    assert np.isfinite(res.gamma["2%/2mm"]["pass_rate"])
    assert res.mc.provenance["physics"]["ivalue_set"] == "icru37"          # the default, recorded


def test_the_check_keeps_the_warnings_it_gave_in_its_report(checked):
    """What mcproton warned about while checking (here: OpenTPS's VirtualSourceAxisDistances [0, 0] and its SOP
    Class UID as the plan's instance UID) is in the result, its JSON and its summary, whatever the warning filters
    showed (this module ignores these warnings), each message once: a physicist signs the report, not the console
    (before, only the console had them)."""
    said = checked.warnings
    # once for both beams ("beam(s) 0, 1: ...", since 2026-12-06: the messages audit's F5; before, one per beam)
    assert [w for w in said if "VirtualSourceAxisDistances" in w and "beam(s) 0, 1" in w] == [
        w for w in said if "VirtualSourceAxisDistances" in w], said
    assert sum("VirtualSourceAxisDistances" in w for w in said) == 1, said
    assert any("is not a valid instance UID" in w for w in said), said
    assert len(said) == len(set(said))
    assert checked.to_dict()["warnings"] == said
    assert "  warning (during the check): " in checked.summary()


def test_physics_settings_reach_the_mc_and_a_reused_mc_of_others_is_refused(checked, with_position):
    """``physics=`` (as [physics] of mcproton run) sets the check's MC; a reused MC dose computed with other
    physics is refused rather than compared as if it were the one asked for."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    kw = dict(folder=with_position, beam_model=BDL, calibration="mcsquare_default", dose_type="PHYSICAL",
              progress=False, gamma_points=500, gamma_workers=1, report=False, log=lambda m: None)
    with pytest.raises(CheckInputError, match=r"reused MC dose \(mc=\) was computed with physics .*'icru37'"):
        check(mc=checked.mc, physics={"ivalue_set": "elemental"}, **kw)
    assert check(mc=checked.mc, physics={"ivalue_set": "icru37"}, **kw).mc is checked.mc
    res = check(primaries=2000, target_uncertainty=None, seed=1, backend="cpu",
                physics={"ivalue_set": "elemental"}, **kw)
    assert res.mc.provenance["physics"]["ivalue_set"] == "elemental"


def test_patient_position_given_instead_of_editing_the_plan(as_written):
    """--patient-position (check) / plan.patient_position (run) supply what OpenTPS leaves empty, named in the
    pairing; a plan that has a position keeps it, and one that says another is refused."""
    from mcproton._check.inputs import gather
    from mcproton._io.errors import InputDataError
    from mcproton._io.rtplan import load_rtplan

    inp = gather(folder=as_written, dose_type="PHYSICAL", patient_position="HFS")
    assert [b.patient_position for b in inp.plan.beams] == ["HFS", "HFS"]
    assert any("PatientPosition HFS as given, for patient setup(s) 0 that have none" in line
               and "--patient-position" in line for line in inp.pairing), inp.pairing
    real = Path(__file__).resolve().parents[1] / "data" / "dicom" / "RP_plan05.dcm"   # RayStation: HFS
    assert load_rtplan(real, patient_position="HFS").notes == []
    with pytest.raises(InputDataError, match="patient setup 1 says PatientPosition HFS, but the patient position "
                                             "given is HFP"):
        load_rtplan(real, patient_position="HFP")
    with pytest.raises(InputDataError, match="patient position 'XYZ' is not one mcproton places beams for"):
        load_rtplan(as_written / "RP.dcm", patient_position="XYZ")


def test_run_config_patient_position(as_written):
    from mcproton.config import build_beams

    cfg = {"plan": {"rtplan": str(as_written / "RP.dcm"), "beam_model": str(BDL), "patient_position": "HFS"}}
    with pytest.warns(UserWarning, match=r"RP.dcm: PatientPosition HFS as given.*\(plan.patient_position\)"):
        beams = build_beams(cfg)
    assert len(beams) == 2


def test_report_header_says_the_dose_type_was_given(checked):
    from mcproton._check.report import _identification

    assert "RD.dcm (PLAN, EFFECTIVE in the file, compared as PHYSICAL as given)" in _identification(checked)


def test_a_position_against_the_ct_is_refused_and_an_unchecked_one_named(as_written, checked, tmp_path):
    """The check compares the plan's set-up with the CT's PatientPosition, as mcproton run does: HFP given for a
    CT that says HFS is refused before the transport (it ran and failed with MC/TPS 0.06, blaming the beam
    model); where the CT says none (OpenTPS's), the report names the position as unchecked."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    d = tmp_path / "ct_hfs"
    shutil.copytree(as_written, d)
    for f in (d / "ct").glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.PatientPosition = "HFS"
        ds.save_as(f)
    kw = dict(folder=d, beam_model=BDL, calibration="mcsquare_default", dose_type="PHYSICAL", primaries=1000,
              target_uncertainty=None, backend="cpu", progress=False, report=False, log=lambda m: None)
    with pytest.raises(CheckInputError, match=r"beam\(s\) PA, RPO_RS are set up HFP \(the plan's, or "
                                              r"--patient-position's where the plan has none\), but the CT was "
                                              r"acquired HFS.*--patient-position"):
        check(patient_position="hfp", out=tmp_path / "not_made", **kw)
    assert not (tmp_path / "not_made").exists()          # refused before any output (and before the CT is read)
    # the plan's own position against the CT's, and beams in two positions: refused without any option given
    rp = pydicom.dcmread(d / "RP.dcm")
    rp.PatientSetupSequence[0].PatientPosition = "HFP"
    rp.save_as(d / "RP.dcm")
    with pytest.raises(CheckInputError, match=r"beam\(s\) PA, RPO_RS are set up HFP, but the CT was acquired HFS"):
        check(**kw)
    second = pydicom.Dataset()
    second.PatientSetupNumber, second.PatientPosition = "1", "HFS"
    rp.PatientSetupSequence.append(second)
    rp.IonBeamSequence[1].ReferencedPatientSetupNumber = "1"
    rp.IonBeamSequence[0].ReferencedPatientSetupNumber = "0"
    rp.save_as(d / "RP.dcm")
    with pytest.raises(CheckInputError, match=r"set up in different patient positions \(PA: HFP; RPO_RS: HFS\)"):
        check(**kw)
    assert checked.diagnostics[0].startswith("the CT does not say its PatientPosition, so the plan's set-up HFS "
                                             "could not be checked"), checked.diagnostics


def test_api_arguments_are_checked_before_the_inputs_are_read(tmp_path):
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    # a folder that does not exist: each argument is refused before the inputs are looked at
    kw = dict(folder=tmp_path / "no_such_folder", beam_model=BDL, progress=False, report=False)
    with pytest.raises(CheckInputError, match='dose_type must be "PHYSICAL" or "EFFECTIVE"'):
        check(dose_type="phys", **kw)
    with pytest.raises(CheckInputError, match=r"physics = \{'typo': 1\}: .*typo"):
        check(physics={"typo": 1}, **kw)
    f = tmp_path / "afile"
    f.write_text("x")
    for bad in (f, f / "below", tmp_path / "dangling", tmp_path / "dangling" / "sub"):
        if bad.name == "dangling" and not bad.is_symlink():
            bad.symlink_to(tmp_path / "nothing")
        with pytest.raises(CheckInputError, match="is a file, a broken link or under a file; the check writes a "):
            check(out=bad, **kw)
    with pytest.raises(CheckInputError, match="no_such_folder is not a folder"):   # then the inputs
        check(out=tmp_path / "o", **kw)


def test_cli_dose_type_in_any_case():
    from mcproton.cli import build_parser

    args = build_parser().parse_args(["check", "x", "--beam-model", "m", "--out", "o", "--dose-type", "PHYSICAL"])
    assert args.dose_type == "physical"


def test_command_line_warnings_are_one_mcproton_line(as_written, tmp_path):
    """On the command line mcproton's warnings read "mcproton: warning: ...", not Python's "file:line:
    UserWarning:" with the source line after it."""
    import subprocess
    import sys

    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""[run]
primaries = 2000
backend = "cpu"
[phantom]
type = "ct"
ct_dir = "{as_written / 'ct'}"
calibration = "mcsquare_default"
[plan]
rtplan = "{as_written / 'RP.dcm'}"
beam_model = "{BDL}"
patient_position = "HFS"
[output]
plot = false
""")
    proc = subprocess.run([sys.executable, "-m", "mcproton.cli", "run", str(cfg), "--out", str(tmp_path / "d.h5"),
                           "--quiet", "--no-checkpoint"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mcproton: warning: " in proc.stderr and "PatientPosition HFS as given" in proc.stderr
    assert "UserWarning" not in proc.stderr and "warnings.warn(" not in proc.stderr, proc.stderr
    # the run keeps them too: in its summary and beside the dose in the HDF5's provenance
    import json

    import h5py

    kept = json.loads(proc.stdout)["warnings"]
    assert any("PatientPosition HFS as given" in w for w in kept) and any("VirtualSource" in w for w in kept), kept
    with h5py.File(tmp_path / "d.h5") as f:
        assert json.loads(f["provenance"].attrs["warnings"]) == kept


def test_opentps_structure_set_given_as_the_dose_is_refused(as_written):
    """Its Modality says RTDOSE, its SOP class RT Structure Set: --dose RS.dcm is refused by the reader, not read
    as a dose without pixels."""
    from mcproton._io.errors import DicomInputError
    from mcproton._io.rtdose import read_rtdose

    with pytest.raises(DicomInputError, match=r"RS.dcm is an RT Structure Set \(SOP class "
                                              r"1.2.840.10008.5.1.4.1.1.481.3, Modality RTDOSE\), not an RT Dose"):
        read_rtdose(as_written / "RS.dcm")
    assert read_rtdose(as_written / "RD.dcm").dose_gy_zyx.max() > 1.5


def test_ct_slices_that_disagree_or_say_nothing_on_the_position(as_written, tmp_path):
    """The set-up is checked against the position the CT's slices state: a slice without one does not switch the
    check off, and slices that disagree are refused (one series shows the patient lying one way)."""
    from mcproton._check.inputs import CheckInputError, gather

    d = tmp_path / "ct_mixed"
    shutil.copytree(as_written, d)
    slices = sorted((d / "ct").glob("*.dcm"))
    for f in slices[1:]:                                  # the first slice says nothing
        ds = pydicom.dcmread(f)
        ds.PatientPosition = "HFS"
        ds.save_as(f)
    with pytest.raises(CheckInputError, match="set up HFP .*but the CT was acquired HFS"):
        gather(folder=d, dose_type="PHYSICAL", patient_position="HFP")
    ds = pydicom.dcmread(slices[-1])
    ds.PatientPosition = "HFP"
    ds.save_as(slices[-1])
    with pytest.raises(CheckInputError, match=r"the slices of the CT series .* disagree on PatientPosition "
                                              r"\(HFP, HFS\)"):
        gather(folder=d, dose_type="PHYSICAL", patient_position="HFS")


def test_beams_in_two_positions_are_refused_without_a_ct_and_by_run():
    """A phantom built from the structure set (no CT) cannot show the patient two ways either; mcproton run names
    every beam of each position."""
    from types import SimpleNamespace as NS

    from mcproton import StudyReference
    from mcproton._check.inputs import CheckInputError, patient_position_notes
    from mcproton._run.inputs import check_patient_position
    from mcproton.config import ConfigError

    plan = NS(beams=[NS(name="F1", patient_position="HFS"), NS(name="F2", patient_position="HFS"),
                     NS(name="F3", patient_position="HFP")], notes=[])
    with pytest.raises(CheckInputError, match=r"different patient positions \(F3: HFP; F1, F2: HFS\)"):
        patient_position_notes(plan, "", has_ct=False)
    assert patient_position_notes(NS(beams=plan.beams[:2], notes=[]), "", has_ct=False) == []
    beams = [NS(name=f"{i}:{b.name}", meta={"patient_position": b.patient_position})
             for i, b in enumerate(plan.beams, 1)]
    cfg = {"phantom": {"type": "ct"}, "plan": {}}
    with pytest.raises(ConfigError, match=r"different patient positions \(3:F3: HFP; 1:F1, 2:F2: HFS\)"):
        check_patient_position(cfg, NS(patient_position="HFS", study=StudyReference(patient_position="HFS")), beams)
    with pytest.raises(ConfigError, match=r"plan beam\(s\) '1:F1', '2:F2' are set up HFS .*acquired HFP"):
        check_patient_position(cfg, NS(patient_position="HFP", study=StudyReference(patient_position="HFP")),
                               beams[:2])


def test_rd_mc_states_its_uncertainty_and_check_json_records_what_was_written(checked, with_position, tmp_path):
    """Audit 25 provenance, F3, F4: the plan's SOP Instance UID is a SOP Class UID (OpenTPS), so RD_mc.dcm references
    a replacement and says so.  Before, write_rtdose cut the DoseComment to fit that note: the file lost its
    statistical uncertainty ("mcproton check MC to water, physical; invalid plan UID replaced"), had no
    ImageComments, and check.json recorded the comment asked for, with the uncertainty, not the one written; nor did
    it record the file's UIDs.  Now the DoseComment keeps the uncertainty (and the note, where both fit), the
    ImageComments state it in full, and check.json records what the file says and is, read back from it."""
    from mcproton._check.api import check
    from mcproton._io.file_hash import sha256_file
    from mcproton._io.rtdose import stated_uncertainty

    out = tmp_path / "out"
    check(folder=with_position, beam_model=BDL, calibration="mcsquare_default", dose_type="PHYSICAL",
          mc=checked.mc, out=out, report=False, progress=False, gamma_points=500, gamma_workers=1,
          log=lambda m: None)
    js = json.loads((out / "check.json").read_text())
    unc = 100 * checked.mc.mean_rel_uncertainty_50
    for key, entry in js["mc_rtdose"].items():
        rd = pydicom.dcmread(out / entry["file"], stop_before_pixels=True)
        assert entry["dose_comment"] == rd.DoseComment and len(rd.DoseComment) <= 64, (entry, rd.DoseComment)
        assert entry["image_comments"] == rd.ImageComments
        assert "invalid plan UID replaced" in rd.ImageComments
        if key == "plan":
            assert f"{unc:.2f}% 1sd" in rd.DoseComment, rd.DoseComment
            assert stated_uncertainty(rd)[0] == pytest.approx(unc, rel=1e-3), rd.ImageComments
            assert f"{checked.mc.primaries:,} primaries (all beams), seed 7" in rd.ImageComments
        assert "% 1sd" in rd.DoseComment and "uncertainty above 50 % of the maximum" in rd.ImageComments
        assert entry["sop_instance_uid"] == rd.SOPInstanceUID and entry["series_instance_uid"] == rd.SeriesInstanceUID
        assert entry["referenced_plan_sop_instance_uid"] == rd.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
        assert entry["sha256"] == sha256_file(out / entry["file"])

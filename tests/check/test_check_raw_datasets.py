"""DICOM files stored as a raw data set (no 128-byte preamble, no file meta: Implicit VR Little Endian, as some
storage SCPs, research tools and older systems write) are read the same way by every reader (audit 27 encodings,
F1): ``mcproton run`` read a raw RT Ion Plan, but ``check`` stopped on it with pydicom's InvalidDicomError ("Use
force=True", an internal error, in ``--batch`` too: the survey did not see the plan), a raw RT Dose was refused
with that same advice, and a slab_ct run of a raw plan put its RT Dose in a new frame of reference without a word.
Every header read now goes through ``mcproton._io.dicom_common.read_dicom_header``.  No transport except the one
slab run of 200 primaries."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_pairing import CLEAN, _paired, make_patient

from mcproton._io.errors import DicomInputError

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"


def as_raw(src: Path, dst: Path | None = None) -> Path:
    """``src`` rewritten (in place, or to ``dst``) as a raw data set: no preamble, no file meta, Implicit VR LE."""
    ds = pydicom.dcmread(src)
    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    dst = dst or src
    ds.save_as(dst, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert dst.read_bytes()[128:132] != b"DICM" and dst.read_bytes()[:2] == b"\x08\x00"
    return dst


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """The same patient three times: as exported (Part 10), with its plan raw, and with its plan and every RT Dose
    raw."""
    d = tmp_path_factory.mktemp("raw")
    make_patient(d / "part10")
    for raw, names in (("raw_plan", ("RP.dcm",)), ("raw", ("RP.dcm", "RD_plan.dcm", "RD_beam1.dcm", "RD_beam2.dcm"))):
        shutil.copytree(d / "part10", d / raw)
        for name in names:
            as_raw(d / raw / name)
    return d


@pytest.fixture
def folders(patient):
    return patient / "part10", patient / "raw"


def test_a_raw_rt_dose_reads_as_the_exported_one(folders):
    from mcproton._io.rtdose import read_rtdose

    a, b = (read_rtdose(f / "RD_plan.dcm") for f in folders)
    assert np.array_equal(a.dose_gy_zyx, b.dose_gy_zyx)
    assert (tuple(a.origin_mm), tuple(a.voxel_size_mm), a.frame_of_reference_uid,
            a.referenced_plan_sop_instance_uid) == (tuple(b.origin_mm), tuple(b.voxel_size_mm),
                                                    b.frame_of_reference_uid, b.referenced_plan_sop_instance_uid)


def test_an_rt_dose_that_is_not_dicom_is_refused_saying_what_to_give(tmp_path):
    from mcproton._io.rtdose import read_rtdose

    p = tmp_path / "RD.dcm"
    p.write_bytes(b"\x10\x00" + bytes(300))   # neither 'DICM' at 128 nor a data set at its start
    with pytest.raises(DicomInputError) as exc:
        read_rtdose(p)
    assert "force" not in str(exc.value) and "give the RT Dose exported by the planning system" in str(exc.value)


@pytest.mark.parametrize("raw", ["raw_plan", "raw"])
def test_the_check_pairs_a_raw_plan_and_raw_doses_as_the_exported_ones(patient, raw):
    """The check's own reads of the plan (its fraction groups, the structure set it names, its prescription) and of
    the doses (their study, what they say the dose is to, the record) read the raw files: before, the first of them
    raised pydicom's InvalidDicomError (the raw plan: in _plan_fraction_groups, an internal error of the check)."""
    from mcproton._check.api import dose_to_statement
    from mcproton._check.inputs import gather
    from mcproton._check.mc_rtdose import tps_study
    from mcproton._check.prescription import plan_dose_references
    from mcproton._check.record import dicom_input

    folders = patient / "part10", patient / raw
    a, b = (gather(folder=f) for f in folders)
    assert _paired(a) == _paired(b) == CLEAN
    facts = [(x.plan.sop_instance_uid, x.frame_of_reference_uid, x.dose_type, x.fractions, x.all_fractions,
              [line.replace(str(f), "FOLDER") for line in x.pairing], x.patient_warnings)
             for x, f in zip((a, b), folders)]
    assert facts[0] == facts[1]
    assert np.array_equal(a.total.dose_gy_zyx, b.total.dose_gy_zyx)
    assert a.total.sop_instance_uid == b.total.sop_instance_uid != ""
    assert plan_dose_references(b.plan_path) == plan_dose_references(a.plan_path)
    ra, rb = (dicom_input("plan", f / "RP.dcm") for f in folders)
    assert ra["sop_instance_uid"] == rb["sop_instance_uid"] == a.plan.sop_instance_uid
    assert tps_study(b.total.path, "1.2.3") == tps_study(a.total.path, "1.2.3")
    assert dose_to_statement([b.total.path]) == dose_to_statement([a.total.path])


def test_the_batch_survey_finds_a_raw_plan_and_its_raw_dose(folders):
    from mcproton._check.batch import _contents

    c = _contents(folders[1])
    assert c.pairs() and [p.name for p in c.plans.values()] == ["RP.dcm"]


def test_a_slab_phantom_for_a_raw_plan_writes_its_rt_dose_in_the_plans_frame(tmp_path):
    """phantom.type = "slab_ct" built for a raw plan: its CT and RT Dose in the plan's FrameOfReferenceUID, as for
    the plan exported (before: a new frame, without a word)."""
    from mcproton.cli import main

    plan = as_raw(DATA / "RN_plan02_mono.dcm", tmp_path / "RP_raw.dcm")
    frame = pydicom.dcmread(DATA / "RN_plan02_mono.dcm", stop_before_pixels=True).FrameOfReferenceUID
    cfg = tmp_path / "slab.toml"
    cfg.write_text(f"""
[run]
primaries = 200
batches = 2
threads = 1
backend = "cpu"
[phantom]
type = "slab_ct"
depth_axis = "+y"
surface_mm = [0.0, -102.5, 0.0]
lateral_size_mm = [100.0, 100.0]
voxel_mm = [5.0, 2.0, 5.0]
layers = [{{ material = "water", thickness_mm = 200.0 }}]
[plan]
rtplan = "{plan}"
beam_model = "dcpt_v2"
[output]
plot = false
""")
    rd = tmp_path / "RD.dcm"
    assert main(["run", str(cfg), "--out", str(tmp_path / "r.h5"), "--rtdose", str(rd), "--quiet"]) == 0
    assert pydicom.dcmread(rd, stop_before_pixels=True).FrameOfReferenceUID == frame

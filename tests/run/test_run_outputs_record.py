"""What `mcproton run`'s outputs record for a pipeline that files them (the integrator audit of 2026-12-06): every
warning of the run in the HDF5 (F2), and the run's identity in its JSON summary (F10).  A 80 mm water CT (5 mm
voxels) with an RT Struct and a one-beam plan, 1000 primaries: seconds on a CPU."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import PHANTOM_PATIENT, make_plan, save  # noqa: E402

PRESCRIPTION_WARNING = "the mean dose in 'target' is 0.5 times the prescription (a test's stand-in)"


def _case(tmp_path: Path, *, other_frame: bool = False) -> Path:
    """The CT, an RT Struct (a body half of the box and a one-voxel ROI: fewer than 30 voxels, a DVH warning), the
    plan and the config; ``other_frame``: the structure set refers to another frame of reference (a warning of the
    DVH step, with plan.allow_other_frame)."""
    import pydicom

    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct, write_rtstruct

    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, tmp_path / "ct")
    xs = g.origin_mm[0] + 5.0 * np.arange(16)
    small = np.zeros(g.shape_zyx, bool)
    small[8, 8, 6] = True
    write_rtstruct({"body": np.broadcast_to(xs < 0, g.shape_zyx).copy(), "small": small}, g, ct,
                   tmp_path / "RS.dcm")
    if other_frame:
        ds = pydicom.dcmread(tmp_path / "RS.dcm")
        other = "1.2.826.0.1.3680043.8.498.777"
        ds.FrameOfReferenceUID = other
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = other
        for roi in ds.StructureSetROISequence:
            roi.ReferencedFrameOfReferenceUID = other
        ds.save_as(tmp_path / "RS.dcm")
    save(make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(90.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}], frame_of_reference_uid=ct.frame_of_reference_uid,
                     **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nprimaries = 1000\nbatches = 2\nbackend = "cpu"\nthreads = 1\nseed = 11\n[phantom]\n'
                   'type = "ct"\nct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n'
                   'rtstruct = "RS.dcm"\n'
                   f'allow_other_frame = {"true" if other_frame else "false"}\n[output]\nplot = false\n')
    return cfg


def _hdf5_warnings(path: Path) -> list[str] | None:
    import h5py

    with h5py.File(path, "r") as f:
        w = f["provenance"].attrs.get("warnings")
    return None if w is None else json.loads(w)


def test_the_hdf5_holds_every_warning_of_the_run(tmp_path, capsys, monkeypatch):
    """F2: the warnings of the DVH step (a structure set of another frame of reference, a ROI of one voxel), the
    prescription warning and a warning issued while the RT Dose is written are in the HDF5's provenance attribute
    ``warnings``, equal to the summary's.  Before, the attribute was written before the DVHs were computed and the
    prescription checked, so the HDF5 held none of them (here: no attribute at all)."""
    import mcproton._io.rtdose as rtdose
    import mcproton._run.inputs as inputs
    from mcproton._io.errors import McprotonRuntimeWarning, warn
    from mcproton.cli import main

    cfg = _case(tmp_path, other_frame=True)
    monkeypatch.setattr(inputs, "prescription_check", lambda cfg, result: PRESCRIPTION_WARNING)
    real = rtdose.write_run_rtdoses

    def warning_rtdose(*a, **k):
        warn("a warning of the RT Dose writer (a test's stand-in)", McprotonRuntimeWarning)
        return real(*a, **k)

    monkeypatch.setattr(rtdose, "write_run_rtdoses", warning_rtdose)
    out = tmp_path / "o.h5"
    with pytest.warns(RuntimeWarning):
        assert main(["run", str(cfg), "--out", str(out), "--rtdose", str(tmp_path / "RD.dcm"), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    said = summary["warnings"]
    for text in ("refers to frame of reference", "'small' (1)", PRESCRIPTION_WARNING, "RT Dose writer"):
        assert any(text in w for w in said), (text, said)
    assert _hdf5_warnings(out) == said


def test_an_hdf5_without_late_warnings_is_written_once(tmp_path, capsys, monkeypatch):
    """The HDF5 is written again only where a warning came after it was written: here none did (the DVH and
    prescription warnings are in the file as first written)."""
    import mcproton._io.atomic as atomic
    import mcproton._run.inputs as inputs
    from mcproton.cli import main

    cfg = _case(tmp_path)
    monkeypatch.setattr(inputs, "prescription_check", lambda cfg, result: PRESCRIPTION_WARNING)
    written: list[str] = []
    real = atomic.write_bytes_atomic

    def counting(path, data, *a, **k):
        written.append(Path(path).name)
        return real(path, data, *a, **k)

    monkeypatch.setattr(atomic, "write_bytes_atomic", counting)
    out = tmp_path / "o.h5"
    with pytest.warns(RuntimeWarning):
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    said = json.loads(capsys.readouterr().out)["warnings"]
    assert any(PRESCRIPTION_WARNING in w for w in said) and any("'small' (1)" in w for w in said), said
    assert _hdf5_warnings(out) == said and written.count("o.h5") == 1, written


def test_the_run_summary_says_who_computed_it_from_what_when_and_where(tmp_path, capsys, monkeypatch):
    """F10: the summary names mcproton's build (version, kernel and physics files' SHA-256), the seed, the start and
    end, the working folder its relative paths are relative to, the config's absolute path, the input files'
    SHA-256 and the written RT Dose's own SOP Instance and Series Instance UIDs (as read from the file).  Before,
    it had none of them."""
    import pydicom

    from mcproton import __version__
    from mcproton._build import check_build_identity
    from mcproton.cli import main

    cfg = _case(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(RuntimeWarning):   # the ROI of one voxel
        assert main(["run", "run.toml", "--out", "o.h5", "--rtdose", "RD.dcm", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    # the build with the code's SHA-256 (audit 25 provenance, F5), as the RT Dose's SoftwareVersions names it
    assert s["mcproton_version"] == __version__ and s["build"] == check_build_identity() and s["seed"] == 11
    assert s["run_started"] <= s["run_finished"] and s["run_started"][:4].isdigit() and "T" in s["run_started"]
    assert s["working_directory"] == str(tmp_path) and s["config"] == str(cfg) and s["output"] == "o.h5"
    assert s["input_files_sha256"] and all(len(h) == 64 for h in s["input_files_sha256"].values())
    assert any(k.endswith("RP.dcm") for k in s["input_files_sha256"]), s["input_files_sha256"]
    ds = pydicom.dcmread(Path(s["working_directory"]) / s["rtdose"], stop_before_pixels=True)
    assert s["rtdose_contents"]["sop_instance_uid"] == ds.SOPInstanceUID
    assert s["rtdose_contents"]["series_instance_uid"] == ds.SeriesInstanceUID
    # the HDF5 names its RT Dose too, where the summary is lost (audit 25 provenance, F10), and which input is the
    # config (F1)
    prov = _provenance(tmp_path / "o.h5")
    assert prov["rtdose_uids"] == {"sop_instance_uid": ds.SOPInstanceUID, "series_instance_uid": ds.SeriesInstanceUID,
                                   "study_instance_uid": ds.StudyInstanceUID}
    assert prov["config"] == str(cfg) and prov["config"] in prov["run_identity"]["input_files_sha256"]
    assert "; seed 11;" in ds.ImageComments, ds.ImageComments   # the RT Dose names its run's seed too


def _provenance(path: Path) -> dict:
    import h5py

    from mcproton._io.hdf5 import _py

    with h5py.File(path, "r") as f:
        return {k: _py(v) for k, v in f["provenance"].attrs.items()}


def test_a_run_with_set_options_is_rebuilt_from_its_record_alone(tmp_path, capsys, monkeypatch):
    """Audit 25 provenance, F1: neither the summary nor the HDF5 held a --set option, and both named the unchanged
    config file and its SHA-256 as what the run computed from: a run with --set beam.energy_mev=70 was recorded as
    the file's 90 MeV run.  Now both record the command line (``invocation``), the config file with its own SHA-256
    (``config_file_sha256``), the ``set_options``, and the config that ran with its SHA-256 (``config_effective``,
    ``config_effective_sha256``): the run made again from them alone is bitwise the same.  Also recorded (F5, F7,
    F8): the build with the code's SHA-256, run.batch_size as set, and the kernel build that ran."""
    import hashlib
    import shlex

    from run_helpers import write_cfg

    from mcproton._backend import get_backend
    from mcproton._build import check_build_identity
    from mcproton._io.file_hash import sha256_file
    from mcproton.cli import COMMAND_RECORD_KEYS, effective_config_text, main
    from mcproton.config import load_config

    write_cfg(tmp_path / "run.toml", 2000)   # 90 MeV
    monkeypatch.chdir(tmp_path)
    argv = ["run", "run.toml", "--out", "o.h5", "--quiet", "--set", "beam.energy_mev=70",
            "--set", "run.batch_size=300"]
    assert main(argv) == 0
    s = json.loads(capsys.readouterr().out)
    prov = _provenance(tmp_path / "o.h5")
    assert s["invocation"] == shlex.join(["mcproton", *argv]) and s["working_directory"] == str(tmp_path)
    assert s["set_options"] == ["beam.energy_mev=70", "run.batch_size=300"]
    assert s["config"] == str(tmp_path / "run.toml") and s["config_file_sha256"] == sha256_file(tmp_path / "run.toml")
    assert s["config_effective"]["beam"]["energy_mev"] == 70 and s["config_effective"]["run"]["batch_size"] == 300
    text = effective_config_text(load_config(s["config"], s["set_options"]))
    assert s["config_effective_sha256"] == hashlib.sha256(text.encode()).hexdigest() != s["config_file_sha256"]
    assert {k: prov[k] for k in COMMAND_RECORD_KEYS} == {k: s[k] for k in COMMAND_RECORD_KEYS}
    assert prov["build"] == s["build"] == check_build_identity()                                # F5
    assert prov["batch_size"] == s["batch_size"] == 300 and prov["batches"] == s["batches"] == 7   # F7
    assert prov["kernel_build"] == s["kernel_build"]                                             # F8
    assert prov["kernel_build"]["kernel_key"] == get_backend("cpu", 1).build_identity()["kernel_key"]
    assert prov["resumed"] is False and len(prov["segments"]) == 1
    # made again from the HDF5's record alone, its config file gone (review 2b, R5: the test ran the recorded config
    # file again, with its --set options, never config_effective): config_effective written back as TOML
    # (mcproton.config.config_toml) and run in another folder, without the summary, is bitwise the same run
    from mcproton.config import config_toml

    (tmp_path / "run.toml").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (elsewhere / "rebuilt.toml").write_text(config_toml(prov["config_effective"]), encoding="utf-8")
    assert main(["run", "rebuilt.toml", "--out", "again.h5", "--quiet"]) == 0
    capsys.readouterr()
    again = _provenance(elsewhere / "again.h5")
    assert again["config_effective"] == prov["config_effective"] and again["set_options"] == []
    assert again["config_effective_sha256"] == prov["config_effective_sha256"]
    import h5py

    with h5py.File(tmp_path / "o.h5", "r") as a, h5py.File(elsewhere / "again.h5", "r") as b:
        for k in ("dose", "dose_to_water", "uncertainty", "let_d"):
            assert np.array_equal(a[k][()], b[k][()]), k


def test_a_config_is_written_back_as_toml_that_reads_as_the_same_config():
    """Review 2b, R5: :func:`mcproton.config.config_toml` writes a config (an output's ``config_effective``) as TOML
    that reads back as the same values and types: integers and floats apart, inf, text with quotes, backslashes,
    control characters and non-ASCII, lists of lists and of tables (a beam's spots), keys that are not bare words;
    the keys mcproton keeps for itself are left out, and a value TOML cannot hold is refused naming its key."""
    import math
    import tomllib

    from mcproton.config import config_toml

    cfg = {"run": {"primaries": 1000, "seed": 7, "time_limit_s": 1e9, "target_uncertainty": 0.01, "x": math.inf},
           "beam": {"energy_mev": 100, "sigma_mm": [3.0, 3.0],
                    "spots": [{"x": 0.0, "y": 1.5, "w": 1}, {"x": -2, "y": 0.0, "w": 2.5}]},
           "output": {"rtdose": 'a "quoted" \\ path\nline\x7f\x01 é 😀', "plot": False},
           "phantom": {"a.b c": [], "nested": {"k": [1, [2, 3]], "s": ""}, "tiny": 1e-300, "neg": -0.0},
           "_base_dir": "/somewhere"}
    back = tomllib.loads(config_toml(cfg))
    assert back == {k: v for k, v in cfg.items() if k != "_base_dir"}
    assert isinstance(back["beam"]["energy_mev"], int) and isinstance(back["run"]["time_limit_s"], float)
    with pytest.raises(ValueError, match=r"config key beam.spots\[0\].w: None \(NoneType\) cannot be written as TOML"):
        config_toml({"beam": {"spots": [{"w": None}]}})


def test_the_summary_leaves_a_large_effective_config_to_the_hdf5(tmp_path, capsys, monkeypatch):
    """Review 2b, R5: the summary printed the whole effective config, 228 kB of JSON for a beam of 3000 inline spots
    (the summary grew from 2.6 kB to 521 kB).  Above ``SUMMARY_CONFIG_MAX`` characters it is left to the HDF5, which
    holds it in full: the summary says so and where, and keeps its SHA-256; the "already complete" summary of a
    --resume the same.  (400 inline spots, 1000 primaries.)"""
    from mcproton.cli import SUMMARY_CONFIG_MAX, main

    spots = ",\n".join(f"{{energy_mev = {80.0 + k % 20:.1f}, position_mm = [{-5.0 + k % 10:.2f}, "
                       f"{-5.0 + k // 40:.2f}, -10.0], weight = {1.0 + k / 1000:.3f}}}" for k in range(400))
    (tmp_path / "spots.toml").write_text(
        '[run]\nprimaries = 1000\nseed = 5\nbackend = "cpu"\nbatches = 10\nthreads = 1\n[phantom]\ntype = "water"\n'
        'size_mm = [40.0, 40.0, 100.0]\nvoxel_mm = [4.0, 4.0, 2.0]\n[beam]\nenergy_spread_mev = 0.5\n'
        'direction = [0.0, 0.0, 1.0]\nsigma_mm = [3.0, 3.0]\ntotal_protons = 1e9\n'
        f"spots = [\n{spots}\n]\n[output]\nplot = false\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--resume"]):
        assert main(["run", "spots.toml", "--out", "o.h5", "--quiet", *extra]) == 0
        s = json.loads(capsys.readouterr().out)
        assert s.get("already_complete", False) == bool(extra), s
        prov = _provenance(tmp_path / "o.h5")
        assert len(json.dumps(prov["config_effective"])) > SUMMARY_CONFIG_MAX
        assert len(prov["config_effective"]["beam"]["spots"]) == 400
        assert "config_effective" not in s and s["config_effective_sha256"] == prov["config_effective_sha256"]
        assert "the HDF5 o.h5 holds it (provenance attribute config_effective" in s["config_effective_omitted"], s
        assert len(json.dumps(s)) < 20_000

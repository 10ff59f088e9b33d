"""``mcproton run CONFIG --out X --resume`` on a job whose output is already complete (a job array requeued whole
after some tasks were killed) reran its whole transport and replaced the output (the cluster audit, F10).  Now,
where every output is mcproton's and the HDF5's provenance holds this run's identity (config, inputs, version,
seed, primaries, outputs) and a run that did what was asked, it says "already complete" and exits 0 without
transporting.  Anything else runs as before."""
from __future__ import annotations

import json

import h5py
import pytest
from run_helpers import no_transport

from mcproton.cli import RUN_IDENTITY_KEY, main

PRIMARIES = 2000


@pytest.fixture
def finished(small_cfg, tmp_path, capsys):
    """A config and the output of its finished run (no checkpoint left)."""
    cfg = small_cfg(PRIMARIES)
    out = tmp_path / "out" / "w.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert out.is_file() and not (tmp_path / "out" / "w.ckpt.h5").exists()
    return cfg, out


def test_resume_of_a_complete_output_does_nothing(finished, monkeypatch, capsys):
    cfg, out = finished
    before = out.read_bytes()
    no_transport(monkeypatch)   # any transport fails the test
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    cap = capsys.readouterr()
    assert f"already complete: {out} (same config and inputs); nothing to do" in cap.err, cap.err
    said = json.loads(cap.out)   # with the run's identity (mcproton_version, build, seed, ...: integrator audit F10)
    assert {k: said[k] for k in ("schema_version", "output", "already_complete")} == {
        "schema_version": 2, "output": str(out), "already_complete": True}, said
    assert said["mcproton_version"] and said["build"]["kernel_hash"] and "working_directory" in said, said
    assert out.read_bytes() == before


def test_resume_of_a_complete_output_reports_the_build_that_computed_it(finished, monkeypatch, capsys):
    """Review 2b, R3: a resume across a pure Python change is "already complete" (the run identity compares the
    version, kernel and physics data, not the code), and its summary gave the installed code's ``build`` as the
    run's, though the output was computed by the code its HDF5 records.  Now ``build`` is the output's, and
    ``build_now`` the installed one."""
    import mcproton._build as build
    from mcproton import DoseResult

    cfg, out = finished
    computed = DoseResult.load(out).provenance["build"]
    monkeypatch.setattr(build, "code_sha256", lambda: "0" * 64)   # another install's Python, the same kernel
    no_transport(monkeypatch)
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["already_complete"] and said["build"] == computed and computed["code_sha256"] != "0" * 64, said
    assert said["build_now"] == {**computed, "code_sha256": "0" * 64}, said


@pytest.mark.parametrize("change", [["--set", "run.seed=7"], ["--set", "run.primaries=2400"],
                                    ["--set", "beam.energy_mev=95.0"], ["--set", "phantom.voxel_mm=[4.0,4.0,4.0]"]])
def test_resume_with_another_config_or_input_runs_again(finished, capsys, change):
    cfg, out = finished
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume", *change]) == 0
    cap = capsys.readouterr()
    assert "already complete" not in cap.err and "starting from the beginning" in cap.err, cap.err
    assert "already_complete" not in json.loads(cap.out)


def test_an_output_without_the_run_identity_or_incomplete_runs_again(finished, capsys):
    """An output of an mcproton from before (no run_identity), or one of fewer primaries than asked (a run stopped
    by its time limit with --no-checkpoint), is not taken for complete."""
    cfg, out = finished
    with h5py.File(out, "r+") as f:
        f["provenance"].attrs["primaries"] = PRIMARIES // 2
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    assert "already complete" not in capsys.readouterr().err
    with h5py.File(out, "r+") as f:
        assert RUN_IDENTITY_KEY in f["provenance"].attrs   # the rerun wrote its identity again
        del f["provenance"].attrs[RUN_IDENTITY_KEY]
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    assert "already complete" not in capsys.readouterr().err


def test_without_resume_a_complete_output_is_replaced_as_before(finished, capsys):
    cfg, out = finished
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "already complete" not in cap.err and "replacing the existing output" in cap.err, cap.err


def test_resume_after_the_structure_set_changed_runs_again(tmp_path, monkeypatch, capsys):
    """New-features audit 2026-12-06, F2: the run identity held the config's text and the geometry, not the input
    files' contents: an RT Struct re-contoured in place (the External moved: another body outline and DVHs, the
    same geometry) was "already complete", the HDF5 keeping the old outline.  Now every input file's SHA-256 is in
    it; a file left as it was still finds the output complete.  (80 mm water CT, 5 mm voxels, 1000 primaries.)"""
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    from dicom_factories import PHANTOM_PATIENT, make_plan, save

    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct, write_rtstruct

    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, tmp_path / "ct")
    xs = g.origin_mm[0] + 5.0 * np.arange(16)
    write_rtstruct({"body": np.broadcast_to(xs < 0, g.shape_zyx).copy()}, g, ct, tmp_path / "RS.dcm")
    save(make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(90.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}], frame_of_reference_uid=ct.frame_of_reference_uid,
                     **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nprimaries = 1000\nbatches = 2\nbackend = "cpu"\nthreads = 1\n[phantom]\ntype = "ct"\n'
                   'ct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\nrtstruct = "RS.dcm"\n'
                   '[output]\nplot = false\n')
    out = tmp_path / "o.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        no_transport(m)
        assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
        assert "already complete" in capsys.readouterr().err, "the same files: complete"
    # the External re-contoured: the downstream half and 10 mm more (the CT, the plan and the config as they were)
    write_rtstruct({"body": np.broadcast_to(xs < 10, g.shape_zyx).copy()}, g, ct, tmp_path / "RS.dcm")
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "already complete" not in err, err

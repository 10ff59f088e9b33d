"""Each beam of an RT Ion Plan runs on the random stream of its place in the plan (roundtrip audit of 2026-12-06,
F3): ``mcproton run`` with ``plan.beams = [2]`` is, bitwise on the CPU, beam 2 of the run of the whole plan, and the
runs of two identical beams of a plan are independent.  Before, the beams of ``plan.beams`` took streams 0, 1, ...
in their order: every one-beam run was on stream 0 (two identical beams gave bitwise the same dose, and a per-beam
run was not the plan run's beam).  A checkpoint of such a run (the old numbering) is refused, not continued."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from run_helpers import read_h5

from mcproton._run.checkpoint import checkpoint_path


@pytest.fixture
def twin_plan(tmp_path):
    """A 16^3 water CT (5 mm) and a plan of three one-spot beams, 1 and 2 identical (gantry 90), 3 at gantry 270;
    3000 primaries a beam in batches of 300, on the CPU, one thread."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    from dicom_factories import PHANTOM_PATIENT, make_plan, save

    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct

    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, tmp_path / "ct")
    twin = {"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
            "meterset": 5.0}
    save(make_plan([twin, dict(twin), dict(twin, gantry=270.0)], frame_of_reference_uid=ct.frame_of_reference_uid,
                   n_fractions=5, **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nprimaries = 3000\nbatch_size = 300\nseed = 11\nbackend = "cpu"\nthreads = 1\n'
                   '[phantom]\ntype = "ct"\nct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n'
                   '[output]\nplot = false\n')
    return cfg


def _run(cfg: Path, out: Path, *sets: str, rtdose: Path | None = None, resume: bool = False) -> int:
    from mcproton.cli import main

    args = ["run", str(cfg), "--out", str(out), "--quiet"] + (["--rtdose", str(rtdose)] if rtdose else [])
    for s in sets:
        args += ["--set", s]
    return main(args + (["--resume"] if resume else []))


def test_a_run_of_some_beams_is_the_plan_run_s_beams(twin_plan, tmp_path, capsys):
    """plan.beams = [2]: beam 2 of the whole plan's run, bitwise (its per-beam RT Dose: the same pixels and
    scaling), on stream 1, recorded in the provenance; plan.beams = [1], the identical beam 1, another dose; and the
    two runs add up as independent ones (sum_results: no warning that they share their random numbers)."""
    from mcproton import DoseResult, sum_results

    assert _run(twin_plan, tmp_path / "all.h5", "output.rtdose_per_beam=true", rtdose=tmp_path / "all.dcm") == 0
    assert _run(twin_plan, tmp_path / "b2.h5", "plan.beams=[2]", rtdose=tmp_path / "b2.dcm") == 0
    assert _run(twin_plan, tmp_path / "b1.h5", "plan.beams=[1]") == 0
    assert _run(twin_plan, tmp_path / "b3.h5", "plan.beams=[1, 3]") == 0
    capsys.readouterr()
    whole, alone = pydicom.dcmread(tmp_path / "all_beam2.dcm"), pydicom.dcmread(tmp_path / "b2.dcm")
    assert whole.DoseSummationType == alone.DoseSummationType == "BEAM"
    assert whole.DoseGridScaling == alone.DoseGridScaling and whole.PixelData == alone.PixelData
    b1, b2, b13 = (read_h5(tmp_path / f"{n}.h5") for n in ("b1", "b2", "b3"))
    assert (b1["provenance"]["beam_index"], b2["provenance"]["beam_index"]) == (0, 1)
    assert list(b13["provenance"]["summed_beam_indices"]) == [0, 2]   # beam 3 on its own stream 2 (before: 1)
    assert not np.array_equal(b1["dose"], b2["dose"])           # identical beams, other histories
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*share their random numbers.*")
        sum_results([DoseResult.load(tmp_path / "b1.h5"), DoseResult.load(tmp_path / "b2.h5")])


def test_a_run_of_some_beams_resumes_bitwise_and_an_old_numbering_checkpoint_is_refused(twin_plan, tmp_path,
                                                                                         capsys, monkeypatch):
    """A plan.beams = [2] run stopped by its time limit and resumed is the uninterrupted run, bitwise (the
    checkpoint records the stream); a checkpoint of that run on the old numbering (stream 0) is refused by
    --resume, saying so, rather than continued on another stream."""
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    assert _run(twin_plan, tmp_path / "ref.h5", "plan.beams=[2]") == 0
    # stopped by the time limit on a ticking clock (one fake second per perf_counter call: the same stop on any
    # machine), then resumed without a limit
    import time

    now = [0.0]

    def tick() -> float:
        now[0] += 1.0
        return now[0]

    out = tmp_path / "cut.h5"
    with monkeypatch.context() as m:
        m.setattr(time, "perf_counter", tick)
        assert _run(twin_plan, out, "plan.beams=[2]", "run.time_limit_s=4") == 0
    first = read_h5(out)
    assert first["provenance"]["stop_reason"] == "time_limit" and 0 < first["provenance"]["primaries"] < 3000
    with h5py.File(checkpoint_path(out), "r") as f:   # the stream the checkpoint's beam ran on
        assert json.loads(f.attrs["fingerprint"])["first_beam_index"] == "1"
    assert _run(twin_plan, out, "plan.beams=[2]", resume=True) == 0
    assert not checkpoint_path(out).exists()
    assert np.array_equal(read_h5(out)["dose"], read_h5(tmp_path / "ref.h5")["dose"])   # bitwise
    # the old numbering: the beam on stream 0, as mcproton run ran plan.beams before 2026-12-06
    old = tmp_path / "old.h5"
    c = load_config(twin_plan, ["plan.beams=[2]"])
    run_job(c, run_settings(c), build_geometry(c), build_beams(c), old, progress=False, log=lambda m: None)
    assert checkpoint_path(old).exists()
    capsys.readouterr()
    assert _run(twin_plan, old, "plan.beams=[2]", resume=True) == 2
    err = capsys.readouterr().err
    assert "another first beam index (random stream)" in err and "place in the plan" in err, err
    assert not old.exists() and checkpoint_path(old).exists()


def test_plan_beam_streams_and_job_streams():
    """The streams of a plan's beams are their places in the plan; beams of no plan, of two plans or with a place
    twice keep 0, 1, ...; JobOptions.beam_streams is checked; the fingerprint records what is not 0, 1, ..."""
    from types import SimpleNamespace

    from mcproton._run.checkpoint import fingerprint
    from mcproton._run.job import JobOptions, job_streams, plan_beam_streams
    from mcproton.geometry import box_phantom
    from mcproton.settings import RunSettings
    from mcproton.source import Beam

    def beam(n, plan=(2, 5, 7)):
        return SimpleNamespace(meta={"beam_number": n, "plan_beam_numbers": list(plan)})

    assert plan_beam_streams([beam(2), beam(5), beam(7)]) == [0, 1, 2]
    assert plan_beam_streams([beam(5)]) == [1] and plan_beam_streams([beam(2), beam(7)]) == [0, 2]
    assert plan_beam_streams([SimpleNamespace(meta={})]) is None                      # a [beam] config
    assert plan_beam_streams([beam(2), beam(5, plan=(5, 6))]) is None                 # two plans
    assert plan_beam_streams([beam(2, plan=(2, 2))]) is None                          # a number twice
    assert job_streams(JobOptions(), 3) == [0, 1, 2] and job_streams(JobOptions(first_beam_index=4), 2) == [4, 5]
    assert job_streams(JobOptions(beam_streams=[0, 2]), 2) == [0, 2]
    for bad in ([0, 0], [1], [-1, 2], [True, 2], [0.5, 2]):
        with pytest.raises(ValueError, match="one distinct stream"):
            job_streams(JobOptions(beam_streams=bad), 2)
    with pytest.raises(ValueError, match="not both"):
        job_streams(JobOptions(beam_streams=[0, 1], first_beam_index=1), 2)
    g = box_phantom("water", (8.0, 8.0, 8.0), (4.0, 4.0, 4.0))
    b = [Beam.pencil(70.0), Beam.pencil(80.0)]
    s = RunSettings(primaries=100, seed=1, backend="cpu")

    def keys(**kw):
        fp = fingerprint(None, s, "cpu", g, b, **kw)
        return {k: fp[k] for k in ("first_beam_index", "beam_streams") if k in fp}

    assert keys() == {} == keys(streams=[0, 1])                  # as before the streams were recorded
    assert keys(first_beam_index=2) == {"first_beam_index": "2"} == keys(streams=[2, 3])
    assert keys(streams=[0, 2]) == {"beam_streams": "0,2"}


def test_a_python_resume_with_other_streams_is_told_to_keep_them_not_the_plan_beams_history():
    """The stream mismatch of a checkpoint: the history of mcproton run's plan.beams (before 2026-12-06 on streams
    0, 1, ...) is told only of an mcproton run checkpoint on those streams; a Python job resumed with another
    first_beam_index is told to resume with the same streams (run review of 2026-12-06, F4: it got the history)."""
    from mcproton._run.checkpoint import _difference

    base = {"format": "1", "config_hash": "none", "seed": "1"}
    py = _difference({**base, "first_beam_index": "1"}, {**base, "first_beam_index": "2"})
    assert "resume with the same random streams" in py and "plan.beams" not in py
    run = {**base, "config_hash": "abc"}
    old = _difference(run, {**run, "first_beam_index": "1"})
    assert "plan.beams" in old and "place in the plan" in old
    assert "plan.beams" not in _difference({**run, "beam_streams": "0,2"}, {**run, "beam_streams": "1,2"})

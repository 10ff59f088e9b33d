"""A checkpoint records the transport kernel build that ran its histories (the environment audit of 2026-12-06, F2).

A job checkpointed on one node and requeued to a node with another compiler (or another CPU: the kernel is built
with -march=native) resumed without a word: its dose was neither build's uninterrupted dose, and its provenance named
only the second compiler, while the README promises a bitwise-identical resume.  Such a resume now goes on (the dose
is statistically valid) with a warning that it is not bitwise, and the output's provenance records both builds and
the history each took over at (``kernel_builds``); a checkpoint of an older mcproton, without the record, is resumed
with a note that this cannot be verified; one written with other physics data is refused.  The other build is made
by changing what the CPU backend reports as its build (a second compiler is not on every test machine).
"""
from __future__ import annotations

import json
import os
import signal
import warnings

import h5py
import numpy as np
import pytest

from mcproton._backend import cpu
from mcproton._run.checkpoint import BUILDS_ATTR, CheckpointError, checkpoint_path, read_builds
from mcproton._run.job import RunInterrupted, run_job
from mcproton.geometry import box_phantom
from mcproton.settings import RunSettings
from mcproton.source import Beam

#: batches of 1000 of 6000 primaries; the run is stopped after the 3rd batch
SETTINGS = RunSettings(primaries=6000, seed=5, backend="cpu", threads=1, batch_size=1000, checkpoint_interval_s=0)


def _interrupted(tmp_path):
    g = box_phantom("water", (30.0, 30.0, 60.0), (3.0, 3.0, 2.0))
    beams = [Beam.pencil(70.0, position_mm=(0.0, 0.0, -1.0), sigma_mm=(3.0, 3.0))]
    out = tmp_path / "job.h5"
    sent = []

    def progress(done, rate):
        sent.append(done)
        if len(sent) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted):
        run_job(None, SETTINGS, g, beams, out, progress=progress, log=lambda m: None)
    return g, beams, out


def _resume(g, beams, out):
    said: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = run_job(None, SETTINGS, g, beams, out, resume=True, progress=False, log=said.append)
    return res[0], said, [str(w.message) for w in rec]


def test_the_checkpoint_records_the_kernel_build_and_the_same_build_resumes_quietly(tmp_path):
    g, beams, out = _interrupted(tmp_path)
    builds = read_builds(checkpoint_path(out))
    assert builds is not None and len(builds) == 1, builds
    k = builds[0]["kernel"]
    assert k["backend"] == "cpu" and k["compiler"] and k["kernel_key"] and k["cpu_model"]
    assert k["mcproton"]["physics_files_sha256"] and builds[0]["from_histories"] == [0]
    res, said, warned = _resume(g, beams, out)
    assert res.primaries == SETTINGS.primaries
    assert "kernel_builds" not in res.provenance   # one build ran it all: nothing to say
    assert not [w for w in warned if "build" in w] and not [m for m in said if "build" in m], (warned, said)


def test_a_resume_by_another_build_warns_and_records_both(tmp_path, monkeypatch):
    g, beams, out = _interrupted(tmp_path)
    done = read_builds(checkpoint_path(out))
    at = int(h5py.File(checkpoint_path(out), "r")["beam_000"].attrs["next_history"])
    own = cpu.CpuBackend.build_identity

    def other(self):   # as on a node with clang, or another CPU
        return {**own(self), "compiler": "Debian clang version 14.0.6", "kernel_key": "0123456789abcdef01234567"}

    monkeypatch.setattr(cpu.CpuBackend, "build_identity", other)
    res, _, warned = _resume(g, beams, out)
    assert res.primaries == SETTINGS.primaries
    msg = [w for w in warned if "another build of the transport kernel" in w]
    assert msg and "not bitwise identical" in msg[0] and "statistically valid" in msg[0], warned
    assert "clang" in msg[0] and done[0]["kernel"]["compiler"] in msg[0]
    kb = res.provenance["kernel_builds"]
    assert [b["kernel"]["compiler"] for b in kb] == [done[0]["kernel"]["compiler"], "Debian clang version 14.0.6"]
    assert kb[0]["from_histories"] == [0] and kb[1]["from_histories"] == [at] and 0 < at < SETTINGS.primaries


def test_a_checkpoint_without_the_record_cannot_be_verified_and_says_so(tmp_path):
    g, beams, out = _interrupted(tmp_path)
    with h5py.File(checkpoint_path(out), "r+") as f:   # as an older mcproton wrote it
        del f.attrs[BUILDS_ATTR]
    res, said, _ = _resume(g, beams, out)
    note = [m for m in said if "does not record the transport kernel build" in m]
    assert note and "cannot be verified" in note[0], said
    kb = res.provenance["kernel_builds"]
    assert kb[0]["kernel"] is None and kb[1]["kernel"]["compiler"], kb


def test_a_checkpoint_of_other_physics_data_is_refused(tmp_path, monkeypatch):
    g, beams, out = _interrupted(tmp_path)
    ckpt = checkpoint_path(out)
    with h5py.File(ckpt, "r+") as f:
        builds = json.loads(f.attrs[BUILDS_ATTR])
        builds[0]["kernel"]["mcproton"]["physics_files_sha256"] = "0" * 64
        f.attrs[BUILDS_ATTR] = json.dumps(builds)
    with pytest.raises(CheckpointError, match="other physics data"):
        run_job(None, SETTINGS, g, beams, out, resume=True, progress=False, log=lambda m: None)
    assert ckpt.exists()


def test_the_kernel_builds_reach_the_hdf5_provenance(tmp_path, monkeypatch):
    from mcproton._io.hdf5 import read_dose_hdf5, write_result_hdf5

    g, beams, out = _interrupted(tmp_path)
    own = cpu.CpuBackend.build_identity
    monkeypatch.setattr(cpu.CpuBackend, "build_identity", lambda self: {**own(self), "kernel_key": "x" * 24})
    res, _, _ = _resume(g, beams, out)
    write_result_hdf5(res, out)
    back = read_dose_hdf5(out)["provenance"]["kernel_builds"]
    back = json.loads(back) if isinstance(back, str) else back
    assert len(back) == 2 and back[1]["kernel"]["kernel_key"] == "x" * 24
    assert np.isfinite(res.dose_gy_zyx).all()

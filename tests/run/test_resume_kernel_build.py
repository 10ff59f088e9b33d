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


def test_a_cuda_build_is_recorded_by_what_changes_its_bits_and_warned_about_in_its_terms(monkeypatch):
    """Review 2 of 2026-12-06, F6: the CUDA backend's build record was its device text: the GPU's index, SM count,
    driver and block size.  A job resumed on GPU 1 of an identical node, or after a driver update, was warned about
    as another build, with CPU advice (-ffast-math, "the same compiler and CPU").  The record is now NVRTC's version,
    the options and the compute capability (the dose does not depend on which thread runs which history); another
    of those is warned about in CUDA's terms.  Fake CuPy (tests/fake_cupy.py) with two identical GPUs."""
    from pathlib import Path

    from fake_cupy import install_fake_cupy

    from mcproton._backend import get_backend
    from mcproton._run.checkpoint import BeamState, kernel_build
    from mcproton._run.engine import Accumulator
    from mcproton._run.job import _kernel_takes_over
    from mcproton.errors import McprotonRuntimeWarning

    fake = install_fake_cupy(monkeypatch)
    fake.n_devices = 2
    try:
        from mcproton._backend.cuda import CudaBackend

        monkeypatch.setenv("MCPROTON_CUDA_BLOCK", "256")
        b1 = CudaBackend(1)
        monkeypatch.delenv("MCPROTON_CUDA_BLOCK")
        b0 = CudaBackend(0)
        assert kernel_build(b0) == kernel_build(b1)   # another GPU of the same kind, another block size
        assert kernel_build(b0)["compute_capability"] == "9.0" and "target" not in kernel_build(b0)
        builds = [{"kernel": kernel_build(b0), "from_histories": [0]}]
        logs: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _kernel_takes_over(builds, b1, [BeamState(Accumulator(8))], Path("ck.h5"), 1, logs.append)
        assert not [w for w in caught if issubclass(w.category, McprotonRuntimeWarning)] and len(builds) == 1
        monkeypatch.setenv("MCPROTON_CUDA_MAXREG", "128")   # other options: another build
        other = CudaBackend(1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _kernel_takes_over(builds, other, [BeamState(Accumulator(8))], Path("ck.h5"), 1, logs.append)
        said = [str(w.message) for w in caught if issubclass(w.category, McprotonRuntimeWarning)]
        assert len(said) == 1 and len(builds) == 2, said
        assert "compute capability 9.0" in said[0] and "NVRTC" in said[0], said[0]
        assert "-ffast-math" not in said[0] and "compiler and CPU" not in said[0], said[0]
    finally:
        get_backend.cache_clear()


def test_a_checkpoint_part_without_its_build_cannot_be_verified_and_says_so(tmp_path):
    """Audit 26 interact, F3: an ``mcproton run --workers`` before 2026-12-07 recorded no kernel build: its
    checkpoint's builds were [] and its part's ``kernel_build`` None, and a resume without Dask recorded the local
    build alone, as if it had run every history, without a word.  Such a part is an unknown build now: the resume
    says that it cannot be verified and records ``kernel_builds``."""
    from mcproton._run.checkpoint import SEGMENTS_ATTR

    g, beams, out = _interrupted(tmp_path)
    with h5py.File(checkpoint_path(out), "r+") as f:   # as a --workers run wrote it
        f.attrs[BUILDS_ATTR] = "[]"
        parts = json.loads(f.attrs[SEGMENTS_ATTR])
        parts[0]["kernel_build"] = None
        f.attrs[SEGMENTS_ATTR] = json.dumps(parts)
    res, said, _ = _resume(g, beams, out)
    note = [m for m in said if "does not record the transport kernel build" in m]
    assert note and "cannot be verified" in note[0] and "--workers" in note[0], said
    kb = res.provenance["kernel_builds"]
    assert [b["kernel"] is None for b in kb] == [True, False] and kb[0]["from_histories"] == [0], kb
    assert res.provenance["kernel_build"] == kb[1]["kernel"]
    assert res.provenance["segments"][0]["kernel_build"] is None


def test_a_part_without_its_build_is_placed_in_time():
    """The unknown build of a part that records none goes between the builds before and after it."""
    from mcproton._run.checkpoint import with_unrecorded_builds

    a, b = {"compiler": "a"}, {"compiler": "b"}
    builds = [{"kernel": a, "from_histories": [0, 0]}, {"kernel": b, "from_histories": [900, 400]}]
    parts = [{"from_histories": [0, 0], "to_histories": [900, 0], "kernel_build": a},
             {"from_histories": [900, 0], "to_histories": [900, 400], "kernel_build": None},
             {"from_histories": [900, 400], "to_histories": [900, 500], "kernel_build": b},
             {"from_histories": [900, 500], "to_histories": [900, 500], "kernel_build": None}]   # ran nothing
    got = with_unrecorded_builds(builds, parts)
    assert [x["kernel"] for x in got] == [a, None, b] and got[1]["from_histories"] == [900, 0]
    assert with_unrecorded_builds(got, parts) == got   # once

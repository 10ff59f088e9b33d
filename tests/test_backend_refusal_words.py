"""A CUDA backend asked for where it cannot run, and a GPU too small for the smallest batch, are refused with the way
out of the command that was run (the error-message audit 27, F1 and F11d): every caller said "or use --backend cpu",
an option that ``mcproton run`` does not have (its backend is the config key run.backend), and the GPU's
out-of-memory refusal named run's "coarser grid" and ``--set run.backend`` also to ``mcproton check``, which has
neither.  CuPy is made unimportable here (``sys.modules["cupy"] = None``), as on a machine without it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "check"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "run"))
from run_helpers import write_cfg  # noqa: E402
from synthetic_head import write_case  # noqa: E402

from fakes import log_lines  # noqa: E402   (tests/fakes.py)

from mcproton.cli import main  # noqa: E402


@pytest.fixture
def no_cupy(monkeypatch):
    """No CuPy on this machine (whatever is installed), and no backend kept from an earlier test."""
    import mcproton._backend as backends

    monkeypatch.setitem(sys.modules, "cupy", None)
    backends.get_backend.cache_clear()
    yield
    backends.get_backend.cache_clear()


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("head"), shape_zyx=(24, 64, 64), pixel_mm=2.0, slice_mm=2.5)


def _error_line(capsys) -> str:
    lines = [ln for ln in log_lines(capsys.readouterr().err) if ln.startswith("mcproton: error")]
    assert len(lines) == 1, lines
    return lines[0]


def test_run_is_told_its_config_key(no_cupy, tmp_path, capsys):
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    rc = main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--set", 'run.backend="cuda"'])
    msg = _error_line(capsys)
    assert rc == 3, msg
    assert "backend 'cuda' requested but unavailable" in msg and 'run.backend = "cpu" in the config' in msg, msg
    assert '--set run.backend="cpu"' in msg and "--backend" not in msg, msg
    assert not (tmp_path / "o.h5").exists()


def test_check_is_told_its_option(no_cupy, head, tmp_path, capsys):
    rc = main(["check", "--plan", str(head["plan"]), "--dose", str(head["dose"]), "--ct", str(head["ct"]),
               "--beam-model", "dcpt_v5", "--backend", "cuda", "--primaries", "1000", "--out", str(tmp_path / "c"),
               "--quiet"])
    msg = _error_line(capsys)
    assert rc == 3, msg
    assert "backend 'cuda' requested but unavailable" in msg and "--backend cpu" in msg, msg
    assert "run.backend" not in msg and "RunSettings" not in msg, msg


def test_commission_is_told_its_option_before_any_work(no_cupy, tmp_path, capsys, monkeypatch):
    import mcproton.commission as commission

    def no_reading(*a, **k):
        raise AssertionError("a measurement was read before the refusal")

    monkeypatch.setattr(commission, "read_idd_csv", no_reading)
    rc = main(["commission", "--beam-model", "dcpt_v5", "--idd", str(tmp_path / "idd.csv"), "--backend", "cuda",
               "--out", str(tmp_path / "c")])
    msg = _error_line(capsys)
    assert rc == 3, msg
    assert "--backend cpu" in msg and "run.backend" not in msg and "RunSettings" not in msg, msg


def test_simulate_is_told_the_settings(no_cupy):
    from mcproton import Beam, RunSettings, box_phantom, simulate
    from mcproton.errors import BackendUnavailableError

    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 4.0))
    with pytest.raises(BackendUnavailableError) as err:
        simulate(g, Beam.pencil(70.0, position_mm=(0.0, 0.0, -1.0)), RunSettings(primaries=100, backend="cuda"),
                 progress=False)
    msg = str(err.value)
    assert 'RunSettings(backend="cpu")' in msg and "--backend" not in msg and "run.backend" not in msg, msg


@pytest.fixture
def gpu_out_of_memory(monkeypatch):
    """Every batch fails as a GPU out of memory does, down to the smallest batch."""
    from mcproton._run import streaming

    def oom(*a, **k):
        raise RuntimeError("cudaErrorMemoryAllocation: out of memory")

    monkeypatch.setattr(streaming, "run_batch", oom)


def test_a_gpu_too_small_is_told_in_the_run_s_words(gpu_out_of_memory, tmp_path, capsys):
    cfg = write_cfg(tmp_path / "job.toml", 1000)
    main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--no-checkpoint"])
    msg = [ln for ln in log_lines(capsys.readouterr().err) if "even for a batch of" in ln]
    assert msg and 'run.backend = "cpu"' in msg[0] and "phantom.voxel_mm" in msg[0], msg


def test_a_gpu_too_small_is_told_in_the_check_s_words(gpu_out_of_memory, head, tmp_path):
    import mcproton._check.api as api

    with pytest.raises(RuntimeError) as err:
        api.check(plan=head["plan"], dose=head["dose"], ct=head["ct"], beam_model="dcpt_v5", primaries=1000,
                  backend="cpu", threads=1, out=tmp_path / "c", report=False, progress=False, log=lambda m: None)
    msg = str(err.value)
    assert "even for a batch of" in msg and "--backend cpu" in msg, msg
    assert "--set" not in msg and "run.backend" not in msg and "coarser grid" not in msg, msg


@pytest.mark.parametrize("name, found, backend, asked", [
    ("auto", True, "cuda", 1), ("auto", False, "cpu", 1), ("cuda", True, "cuda", 1), ("cpu", True, "cpu", 0),
])
def test_whether_cuda_is_available_is_asked_once_per_call(monkeypatch, name, found, backend, asked):
    """get_backend asks CuPy for its devices once per call: "auto" that found a GPU no longer asks again before it
    makes the cuda backend (the re-read of 2026-12-07, a 3: two getDeviceCount calls); "cuda" asks, for its refusal
    in the caller's words."""
    import mcproton._backend as backends

    calls: list[int] = []

    def available():
        calls.append(1)
        return (True, "1 CUDA device(s)") if found else (False, "CuPy not importable")

    monkeypatch.setattr(backends, "cuda_available", available)
    monkeypatch.setattr(backends, "_get_backend", lambda n, threads, gpu: n)
    assert backends.get_backend(name) == backend
    assert len(calls) == asked


def test_cuda_asked_for_and_unavailable_is_refused_with_the_reason(monkeypatch):
    import mcproton._backend as backends
    from mcproton._io.errors import BackendUnavailableError

    monkeypatch.setattr(backends, "cuda_available", lambda: (False, "no CUDA device"))
    with pytest.raises(BackendUnavailableError, match=r"backend 'cuda' requested but unavailable: no CUDA device\. "
                                                      r".*run on the CPU: --backend cpu$"):
        backends.get_backend("cuda", cpu_choice=backends.CPU_BY_OPTION)

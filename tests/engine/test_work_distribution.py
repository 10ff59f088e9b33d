"""The persistent transport loop's work distribution (kernels/transport.cu mcp_transport, next_track; portability.h
WorkCursor): every history of a launch is transported exactly once whoever takes it, and a launch that did not run
all its primaries fails loudly instead of returning a partial dose (engine.Simulation._launch_transport)."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton.geometry import box_phantom
from mcproton.run import Simulation
from mcproton.settings import RunSettings
from mcproton.source import Beam


def _sim(threads: int) -> Simulation:
    g = box_phantom("water", (40, 40, 60), 2.0)
    beam = Beam.pencil(100.0, position_mm=(0, 0, -1), sigma_mm=(3, 3))
    return Simulation(g, beam, RunSettings(primaries=600, seed=11, backend="cpu", batches=2, threads=threads))


def test_any_split_and_thread_count_gives_the_same_tallies():
    """Histories [0, 600) in one launch, on 1 or 2 threads, and as three uneven launches: the same integers (the
    dynamic fetch hands each thread other histories every time; an index lost or run twice would show)."""
    one = _sim(1).run_histories(0, 600)
    two = _sim(2)
    whole = two.run_histories(0, 600)
    parts = [two.run_histories(a, n) for a, n in ((0, 1), (1, 250), (251, 349))]
    for k in ("edep", "edep_water", "edep_proton", "let_num", "ledger"):
        assert np.array_equal(one[k], whole[k]), k
        assert np.array_equal(whole[k], sum(p[k] for p in parts)), k


@pytest.mark.parametrize("sparse", [False, True])
def test_a_launch_that_misses_primaries_fails_loudly(monkeypatch, sparse):
    """A fault of the work distribution (simulated: the launch is handed one history fewer) is refused with the
    count, never summed as a dose of fewer protons."""
    sim = _sim(2)
    b = sim.backend
    real = b.launch

    def short(name, n_items, *args):
        if name == "mcp_transport":
            params, first, n = args
            return real(name, n_items - 1, params, first, n - 1)
        return real(name, n_items, *args)

    monkeypatch.setattr(b, "launch", short)
    with pytest.raises(RuntimeError, match="ran 99 of the 100 primaries"):
        (sim.run_histories_sparse if sparse else sim.run_histories)(0, 100)


def test_the_refill_threshold_loop_transports_the_same_histories(monkeypatch, tmp_path):
    """The loop form of MCP_REFILL_MIN_IDLE > 1 (a GPU measuring knob) on the CPU, where a thread is its own warp:
    the same histories, steps and events exactly (integers), and the same dose up to the rounding that -ffast-math
    may change with the loop's form (compiled into a private kernel cache)."""
    import mcproton._backend.cpu as cpu
    from mcproton._backend import get_backend

    ref = _sim(2).run_histories(0, 300)
    monkeypatch.setenv("MCPROTON_CACHE_DIR", str(tmp_path))
    opts = cpu.CPU_COMPILE_OPTIONS + ("-DMCP_REFILL_MIN_IDLE=8",)
    monkeypatch.setattr(cpu, "CPU_COMPILE_OPTIONS", opts)
    monkeypatch.setattr(cpu, "CPU_OPTIONS", opts + ("&&",) + cpu.CPU_LINK_OPTIONS)
    get_backend.cache_clear()
    try:
        out = _sim(2).run_histories(0, 300)
    finally:
        get_backend.cache_clear()
    assert list(tmp_path.rglob("*.so")), "the knob's build was not compiled into the private cache"
    from mcproton._kernels.layout import LEDGER

    for k in ("primaries", "steps", "nuclear_events", "secondaries", "pp_elastic", "nuclear_elastic", "errors"):
        assert out["ledger"][LEDGER[k]] == ref["ledger"][LEDGER[k]], k
    assert np.array_equal(out["edep"] > 0, ref["edep"] > 0)
    # rounding moves a little energy between neighbouring voxels of a step (2e-4 of one voxel's at most, measured),
    # and nothing in total
    assert np.allclose(out["edep"], ref["edep"], rtol=2e-3, atol=64)   # fixed point: 2^-24 MeV units
    assert abs(out["edep"].sum() / ref["edep"].sum() - 1) < 1e-8

"""The one driver (mcproton/_run/job.py run_job): simulate() goes through it, per-beam simulate calls get the
random streams of the job's beams, sum_results adds independent beams' errors in quadrature, JobOptions,
phase times."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from mcproton._run.job import JobOptions, run_job
from mcproton.geometry import box_phantom
from mcproton.run import simulate, sum_results
from mcproton.settings import RunSettings
from mcproton.source import Beam

ARRAYS = ("dose_gy_zyx", "dose_to_water_gy_zyx", "let_d_kev_um_zyx", "uncertainty_rel_zyx", "edep_mev_zyx")


def _case(primaries=2000, seed=31, **kw):
    g = box_phantom("water", (30.0, 30.0, 60.0), (3.0, 3.0, 2.0))
    beams = [Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(3.0, 3.0), total_protons=1e9),
             Beam.pencil(60.0, position_mm=(3.0, 0, -5), sigma_mm=(2.0, 2.0), total_protons=2e9)]
    return g, beams, RunSettings(primaries=primaries, seed=seed, backend="cpu", threads=1, batches=10, **kw)


def _same(a, b):
    for k in ARRAYS:
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k
    assert a.primaries == b.primaries and a.ledger == b.ledger


def test_run_job_over_two_beams_equals_simulate_per_beam_summed_bitwise():
    """The job's beam i and simulate(..., beam_index=i) are one and the same run (CPU: bitwise), so that a
    plan simulated beam by beam and summed is the plan run by ``mcproton run``."""
    g, beams, s = _case()
    job = run_job(None, s, g, beams, None, JobOptions(checkpoint=False, progress=False, log=lambda m: None))
    per_beam = [simulate(g, b, s, beam_index=i) for i, b in enumerate(beams)]
    for j, p in zip(job, per_beam):
        _same(j, p)
    _same(sum_results(job), sum_results(per_beam))
    assert [r.provenance["beam_index"] for r in per_beam] == [0, 1]


def test_beam_indices_are_independent_random_streams():
    g, beams, s = _case(1000)
    r0, r0b, r1 = (simulate(g, beams[0], s, beam_index=i) for i in (0, 0, 1))
    _same(r0, r0b)                                             # one stream: the same random numbers
    assert not np.array_equal(r0.dose_gy_zyx, r1.dose_gy_zyx)  # another stream: other random numbers
    # the same physics: the dose integrals agree within their statistics (5 % at 1000 primaries)
    assert r1.dose_gy_zyx.sum() == pytest.approx(r0.dose_gy_zyx.sum(), rel=0.05)
    with pytest.raises(ValueError, match="beam_index"):
        simulate(g, beams[0], s, beam_index=-1)


def test_sum_results_uncertainty_is_calibrated_for_independent_beams():
    """Six sums of two runs of one beam on independent streams (0+1, 2+3, ...): the spread of the summed dose
    over the six is what sum_results' uncertainty says.  Figure: the voxels' sample variance over the sums
    divided by their mean reported variance, summed over the voxels >= 10 % of the maximum (~270).  Expected
    1; over 12 seeds it lay in [0.71, 1.12] (sd 0.11), the test allows [0.5, 1.6] (CPU: deterministic for its
    seed).  Fails at 0 with one random stream for every simulate call (the old behaviour: six identical sums),
    at ~2 with correlated pairs added in quadrature."""
    g, beams, s = _case(1000, seed=5)
    sums = [sum_results([simulate(g, beams[0], s, beam_index=i) for i in (2 * k, 2 * k + 1)])
            for k in range(6)]
    d = np.array([x.dose_gy_zyx for x in sums])
    var = np.array([(x.uncertainty_rel_zyx * x.dose_gy_zyx) ** 2 for x in sums]).mean(axis=0)
    hi = d.mean(axis=0) >= 0.1 * d.mean(axis=0).max()
    ratio = float(d.var(axis=0, ddof=1)[hi].sum() / var[hi].sum())
    assert 0.5 < ratio < 1.6, ratio
    # quadrature: the summed relative error of two equal independent runs is ~1/sqrt(2) of each one's
    one = simulate(g, beams[0], s, beam_index=20)
    assert sums[0].mean_rel_uncertainty_50 == pytest.approx(one.mean_rel_uncertainty_50 / np.sqrt(2), rel=0.2)


def test_sum_results_of_one_random_stream_adds_errors_linearly_with_a_warning():
    """Two results of the same seed and beam index share their random numbers: their errors are correlated
    (here fully: the same beam), so quadrature would understate the uncertainty by sqrt(2); they add
    linearly."""
    g, beams, s = _case(1000)
    r = simulate(g, beams[0], s)
    with pytest.warns(RuntimeWarning, match="share their random numbers.*beam_index"):
        tot = sum_results([r, simulate(g, beams[0], s)])
    assert np.allclose(tot.uncertainty_rel_zyx, r.uncertainty_rel_zyx, rtol=1e-12, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # independent streams: no warning
        sum_results([r, simulate(g, beams[0], s, beam_index=1)])


def test_job_options_and_keyword_overrides_are_the_same_run():
    g, beams, s = _case(600)
    quiet = JobOptions(checkpoint=False, progress=False, log=lambda m: None)
    a = run_job(None, s, g, beams[:1], None, quiet)[0]
    b = run_job(None, s, g, beams[:1], None, checkpoint=False, progress=False, log=lambda m: None)[0]
    c = run_job(None, s, g, beams[:1], None, quiet, first_beam_index=1)[0]
    _same(a, b)
    _same(c, simulate(g, beams[0], s, beam_index=1))
    with pytest.raises(TypeError):
        run_job(None, s, g, beams[:1], None, quiet, no_such_option=1)


def test_results_record_the_wall_time_of_their_phases():
    g, beams, s = _case(600)
    r = [simulate(g, b, s, beam_index=i) for i, b in enumerate(beams)]
    for x in r:
        ph = x.provenance["phase_s"]
        assert set(ph) == {"setup", "transport", "finish"} and all(v >= 0 for v in ph.values())
        assert ph["transport"] == x.wall_s
    tot = sum_results(r)
    setup = sum(x.provenance["phase_s"]["setup"] for x in r)
    assert tot.provenance["phase_s"]["setup"] == pytest.approx(setup)


def test_simulate_keeps_the_gpu_tallies_on_the_device(monkeypatch):
    """On the (emulated) GPU, simulate sums the batches on the device (DeviceAccumulator) like mcproton run:
    no host copy of the tallies per batch; the dose is bitwise the CPU's."""
    from fake_cupy import install_fake_cupy

    from mcproton._backend import get_backend
    from mcproton._run.engine import Simulation

    g, beams, s = _case(800)
    ref = simulate(g, beams[0], s)
    install_fake_cupy(monkeypatch)
    seen = []
    real = Simulation.run_histories

    def spy(self, first, n, on_device=False):
        seen.append(on_device)
        return real(self, first, n, on_device)

    monkeypatch.setattr(Simulation, "run_histories", spy)
    try:
        gpu = simulate(g, beams[0], RunSettings(primaries=800, seed=31, backend="cuda", batches=10))
    finally:
        get_backend.cache_clear()
    assert seen and all(seen), seen
    assert gpu.backend == "cuda" and np.array_equal(gpu.dose_gy_zyx, ref.dose_gy_zyx)


def test_a_per_primary_sum_keeps_dose_and_deposited_energy_in_one_convention():
    """Audit W3: two per-primary beams summed: the dose and the deposited energy both add, so the energy the dose
    implies (dose x mass) per deposited MeV is the same for the sum as for one beam (before: twice), and the IDD
    of the sum is the sum of the IDDs (before: their mean).  Exact up to rounding (rtol 1e-9)."""
    from mcproton._run.result import MEV_PER_G_TO_GY

    g = box_phantom("water", (30.0, 30.0, 60.0), (3.0, 3.0, 2.0))
    s = RunSettings(primaries=1000, seed=5, backend="cpu", threads=1, batches=2)
    r1, r2 = (simulate(g, Beam.pencil(e, position_mm=(0, 0, -5)), s, beam_index=i)
              for i, e in enumerate((70.0, 60.0)))
    tot = sum_results([r1, r2])
    assert tot.normalisation == "Gy per primary (sum over beams)"
    mass_g = g.density_g_cm3_zyx.astype(np.float64) * g.voxel_volume_cm3

    def mev_per_edep(r):
        return float((r.dose_gy_zyx * mass_g).sum() / MEV_PER_G_TO_GY / r.edep_mev_zyx.sum())

    assert mev_per_edep(tot) == pytest.approx(mev_per_edep(r1), rel=1e-9) == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(tot.integrated_depth_dose()[1],
                               r1.integrated_depth_dose()[1] + r2.integrated_depth_dose()[1], rtol=1e-9)

"""Scale limits of a long run (the scale audit 19): the energy ledger is exact at any run size and a checkpoint keeps
it exactly (F2); a voxel's 64-bit tally limit is checked before a batch is added, said after the first batch, and
ends the run cleanly with the dose so far (F4); one launch of the kernel is capped so that its own 64-bit sums cannot
wrap (F2/F4).  Runs of 10^9-10^11 primaries are not transported:
one real batch, scaled or repeated, is given to the real host code (Accumulator.add, finish, the checkpoint), which is
the arithmetic of a run of many batches."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from mcproton._kernels.layout import LEDGER, TALLY_SCALE
from mcproton._run import engine
from mcproton._run.checkpoint import BeamState, _sha, load_checkpoint, save_checkpoint
from mcproton._run.engine import TALLY_SUM_LIMIT, Accumulator, DeviceAccumulator, TallyLimitError
from mcproton._run.inputs import check_result
from mcproton._run.result import finish
from mcproton.geometry import box_phantom
from mcproton.run import Simulation, simulate
from mcproton.settings import MAX_BATCH_SIZE, RunSettings
from mcproton.source import Beam

#: the ledger's int64 limit in its units (2^-24 MeV): 5.5e11 MeV
INT64 = 2**63


@pytest.fixture(scope="module")
def water_230():
    """A 230 MeV pencil beam in a water box of 1 cm voxels, and one real batch of 200 of its primaries."""
    geom = box_phantom("water", size_mm=(100, 100, 400), voxel_mm=(10, 10, 10))
    beam = Beam.pencil(230.0, position_mm=(0, 0, -10), sigma_mm=(3, 3))
    sim = Simulation(geom, beam, RunSettings(primaries=1000, seed=1, threads=1, backend="cpu"))
    return sim, sim.run_histories(0, 200)


def _scaled(batch: dict, factor: int) -> dict:
    """The batch as if it held ``factor`` times its primaries (every tally and ledger entry times ``factor``)."""
    return {k: np.asarray(v, np.int64) * factor for k, v in batch.items()}


# Scaled 2^21 times, one batch is 4.2e8 primaries at 230 MeV: 10 of them (4.2e9 primaries, 9.7e11 MeV) pass the
# int64 ledger (5.5e11 MeV) while the hottest voxel (a few % of the energy) stays far below its own limit.
FACTOR, K = 2**21, 10


def _big_run(sim, batch) -> Accumulator:
    acc = Accumulator(sim.n_vox)
    big = _scaled(batch, FACTOR)
    for _ in range(K):
        acc.add(big, 200 * FACTOR)
    return acc


def test_the_ledger_is_exact_past_the_int64_limit_and_the_run_is_accepted(water_230):
    """4.2e9 primaries at 230 MeV: incident and deposited energy exact (the int64 sums wrapped to -4e11 MeV and the
    finished run was refused, '616 % of the beam's incident energy left the grid')."""
    sim, batch = water_230
    acc = _big_run(sim, batch)
    incident = int(batch["ledger"][LEDGER["incident"]]) * FACTOR * K
    deposited = int(batch["edep"].sum()) * FACTOR * K
    assert incident > INT64 and deposited > INT64   # the case: both past int64
    assert acc.ledger[LEDGER["incident"]] == incident
    assert acc.ledger[LEDGER["primaries"]] == 200 * FACTOR * K
    r = finish(sim, acc, 1.0)
    assert r.ledger["incident"] == pytest.approx(incident / TALLY_SCALE, rel=1e-15)
    assert r.ledger["deposited"] == pytest.approx(deposited / TALLY_SCALE, rel=1e-15)
    assert r.ledger["primaries"] == 200 * FACTOR * K
    # the energy balance of the scaled run is the batch's own
    one = finish(sim, _one(sim, batch), 1.0)
    assert r.ledger["imbalance_rel"] == pytest.approx(one.ledger["imbalance_rel"], abs=1e-12)
    assert r.ledger["escaped"] / r.ledger["incident"] == pytest.approx(one.ledger["escaped"] / one.ledger["incident"])
    check_result(r)   # accepted: the beam did not leave the grid


def _one(sim, batch) -> Accumulator:
    acc = Accumulator(sim.n_vox)
    acc.add(batch, 200)
    return acc


def test_exact_sum_of_int64_arrays():
    """finish's deposited energy: the exact sum, where NumPy's int64 sum wraps."""
    a = np.full(1000, 2**62 - 1, np.int64)
    a[::7] = -(2**62)
    assert engine.exact_sum(a) == sum(int(v) for v in a)
    assert engine.exact_sum(np.zeros(0, np.int64)) == 0
    assert engine.exact_sum(np.arange(-5, 6)) == 0


def test_a_checkpoint_stores_and_restores_a_ledger_past_int64(water_230, tmp_path):
    """Two int64 words per entry where the ledger does not fit in int64 (it was stored as int64: wrapped); a ledger
    that fits is stored as before (one int64 dataset, the same checksum), so that a checkpoint written before reads."""
    sim, batch = water_230
    fp = {"format": "1", "n_beams": "1", "seed": "1"}
    big = _big_run(sim, batch)
    path = tmp_path / "big.ckpt.h5"
    save_checkpoint(path, fp, [BeamState(big, 200 * FACTOR * K)])
    with h5py.File(path) as f:
        assert set(f["beam_000"]) >= {"ledger", "ledger_hi"}
    back = load_checkpoint(path, fp, sim.n_vox)[0].acc
    assert list(back.ledger) == list(big.ledger) and back.ledger[LEDGER["incident"]] > INT64
    assert all(np.array_equal(back.sums[k], big.sums[k]) for k in big.sums)
    # a ledger that fits: the layout and checksum of a checkpoint written before the ledger was exact
    small = _one(sim, batch)
    path = tmp_path / "small.ckpt.h5"
    st = BeamState(small, 200)
    save_checkpoint(path, fp, [st])
    with h5py.File(path) as f:
        g = f["beam_000"]
        assert "ledger_hi" not in g and g["ledger"].dtype == np.int64
        assert np.array_equal(g["ledger"][()], np.asarray(batch["ledger"], np.int64))
        stored = {k: g[k][()] for k in g if k != "ledger"}
        old = _sha(*[stored[k] for k in sorted(stored)], np.asarray(g["ledger"][()], np.int64), 1, 200, 200, False,
                   "", 0, repr(1.0), 200)
        assert g.attrs["checksum"] == old
    assert list(load_checkpoint(path, fp, sim.n_vox)[0].acc.ledger) == [int(v) for v in batch["ledger"]]


def test_one_launch_is_capped(water_230):
    """run.batch_size above 2^25 is refused with the reason (it was not capped, and one launch's int64 sums could
    wrap in the kernel unseen); a launch of more histories is refused before the kernel runs."""
    assert RunSettings(batch_size=MAX_BATCH_SIZE).batch_size == MAX_BATCH_SIZE == 2**25
    with pytest.raises(ValueError, match=r"run.batch_size = 33,554,433 .*2\^25 histories.*64-bit"):
        RunSettings(batch_size=MAX_BATCH_SIZE + 1)
    sim, _ = water_230
    with pytest.raises(ValueError, match="64-bit"):
        sim.run_histories(0, MAX_BATCH_SIZE + 1)
    # the cap keeps one launch 20 times below 2^62 at the tables' highest energy, 400 MeV
    assert MAX_BATCH_SIZE * 400 * TALLY_SCALE * 20 < TALLY_SUM_LIMIT


def test_a_launch_stays_in_its_beams_history_range(water_230):
    """A beam's histories are its 2^40 indices (Simulation.history_offset = beam_index << 40): a launch past them is
    refused before the kernel runs, not run as the next beam's histories (overflow audit 29, F4: beam 0's history
    2^40 + 5 was beam 1's history 5, the same random numbers, without a word), nor a negative first history."""
    sim, _ = water_230
    assert int(sim.run_histories(2**40 - 10, 10)["ledger"][LEDGER["primaries"]]) == 10   # the range's last ones
    for first, n in ((2**40 - 10, 11), (2**40 + 5, 50), (-3, 10)):
        with pytest.raises(ValueError, match=r"outside the beam's range of histories \[0, 2\^40\).*run.seed"):
            sim.run_histories(first, n)
    with pytest.raises(ValueError, match=r"at most 2\^40 - 1 .*different run.seed"):
        RunSettings(primaries=2**40)


def _near_limit(n_vox: int, tally: str = "edep") -> Accumulator:
    rng = np.random.default_rng(5)
    acc = Accumulator(n_vox)
    for k in acc.sums:
        acc.sums[k][:] = rng.integers(0, 1000, n_vox)
    acc.sums[tally][40] = TALLY_SUM_LIMIT - 10
    acc.sum_x[:] = 1.0
    acc.ledger[:] = 3
    acc.batches, acc.primaries = 4, 4000
    return acc


def _snapshot(acc) -> dict:
    return {**{k: np.array(v) for k, v in acc.sums.items()}, "sum_x": np.array(acc.sum_x),
            "sum_x2": np.array(acc.sum_x2), "ledger": list(acc.ledger), "n": (acc.batches, acc.primaries)}


def _same_state(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("form", ["dense", "sparse rows", "sparse voxels"])
@pytest.mark.parametrize("tally", ["edep", "let_num"])
def test_a_batch_past_the_tally_limit_is_refused_before_anything_is_added(form, tally):
    """The voxel limit is checked before the batch is added, every tally first: a refused batch leaves the sums,
    the ledger and the counts as they were (before, the check came after each tally's +=, so a batch refused at
    let_num had its edep added already).  A batch up to the limit itself is added."""
    n_vox = 5 * 32 + 7
    vox = np.arange(32, 4 * 32)            # blocks 1..3
    blocks = np.array([1, 2, 3])

    def batch(value: int) -> dict:
        b = {k: np.ones(n_vox, np.int64) for k in engine.TALLIES}
        b[tally][40] = value
        b["ledger"] = np.full(16, 7, np.int64)
        if form == "dense":
            return b
        out = {k: v[vox] for k, v in b.items() if k != "ledger"}
        out.update(ledger=b["ledger"], voxels=vox, **({"blocks": blocks} if form == "sparse rows" else {}))
        return out

    acc = _near_limit(n_vox, tally)
    before = _snapshot(acc)
    with pytest.raises(TallyLimitError, match="64-bit tally.*nothing of it was added.*fewer primaries"):
        acc.add(batch(11), 1000)
    assert _same_state(_snapshot(acc), before)
    assert isinstance(TallyLimitError("x"), OverflowError)   # as the error was before
    acc.add(batch(10), 1000)                                 # to the limit itself: added
    assert acc.sums[tally][40] == TALLY_SUM_LIMIT and acc.batches == 5 and acc.ledger[0] == 10


def test_the_device_sums_refuse_a_batch_past_the_limit_before_adding(install_fake_cupy_fixture):
    """DeviceAccumulator (the GPU's running sums; the CuPy stand-in): the same check before any tally is added."""
    xp = install_fake_cupy_fixture
    n_vox = 100
    acc = _near_limit(n_vox, "let_num")
    dev = DeviceAccumulator(acc, xp)

    def host_sums() -> dict:
        h = dev.host()
        return _snapshot(h if isinstance(h, Accumulator) else h.dense())

    before = host_sums()
    b = {k: xp.asarray(np.ones(n_vox, np.int64)) for k in engine.TALLIES}
    b["let_num"] = xp.asarray(np.where(np.arange(n_vox) == 40, 11, 1).astype(np.int64))
    with pytest.raises(TallyLimitError):
        dev.add({**b, "ledger": np.full(16, 7, np.int64)}, 1000)
    assert _same_state(host_sums(), before)
    b["let_num"] = xp.asarray(np.where(np.arange(n_vox) == 40, 10, 1).astype(np.int64))
    dev.add({**b, "ledger": np.full(16, 7, np.int64)}, 1000)
    assert dev.batches == 5 and dev.ledger[0] == 10


@pytest.fixture
def install_fake_cupy_fixture(monkeypatch):
    from fake_cupy import install_fake_cupy

    from mcproton._backend import get_backend

    yield install_fake_cupy(monkeypatch)
    get_backend.cache_clear()


def test_a_run_that_meets_the_tally_limit_is_told_early_and_stops_cleanly(monkeypatch):
    """The limit lowered to 2.5 batches' worth of the hottest voxel: the first batch's warning names the primaries at
    which the run will stop and what to do; the run stops before the batch that would pass it, with the dose of the
    batches before (stop reason "tally_limit", said in the result) instead of an OverflowError that lost the run."""
    geom = box_phantom("water", size_mm=(40, 40, 60), voxel_mm=(40, 40, 2))
    beam = Beam.pencil(70.0, position_mm=(0, 0, -10), sigma_mm=(3, 3))
    settings = RunSettings(primaries=5000, batch_size=500, seed=3, threads=1, backend="cpu")
    probe = Simulation(geom, beam, settings).run_histories(0, 500)
    top = max(int(probe[k].max()) for k in engine.TALLIES)
    monkeypatch.setattr(engine, "TALLY_SUM_LIMIT", int(2.5 * top))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        r = simulate(geom, beam, settings, log=None)
    texts = [str(w.message) for w in said]
    early = [t for t in texts if "at the rate of the first batch" in t]
    assert len(early) == 1 and "before the 5,000 asked" in early[0] and "fewer primaries per beam" in early[0]
    stop = [t for t in texts if "its next batch would have taken" in t]
    assert len(stop) == 1 and "smaller voxels" in stop[0]
    assert r.provenance["stop_reason"] == "tally_limit"
    assert 500 <= r.primaries < 5000 and r.primaries % 500 == 0
    assert r.ledger["primaries"] == r.primaries
    assert np.isfinite(np.asarray(r.dose_gy_zyx)).all() and np.asarray(r.dose_gy_zyx).max() > 0
    from mcproton._run.result import early_stop_note

    assert "64-bit limit of a voxel's tally" in early_stop_note(r)


class _CountingMax(np.ndarray):
    """A tally whose full scans (``max``) are counted."""
    scans = 0

    def max(self, *args, **kwargs):
        type(self).scans += 1
        return super().max(*args, **kwargs)


def test_the_limit_check_does_not_scan_the_sums_every_batch_far_from_the_limit():
    """Review 5 of 2026-12-06, F6: the check before each dense batch took the largest of every running sum (a scan of
    the grid per tally per batch, 12 ms of 140 ms on 4 M voxels).  Now a bound (the exact largest sum where last
    taken, plus each batch's largest value) is read, and the sums scanned only where it nears the limit: once for
    the first batch, not for the nine after it."""
    n_vox = 1000
    acc = Accumulator(n_vox)
    acc.sums = {k: np.zeros(n_vox, np.int64).view(_CountingMax) for k in engine.TALLIES}
    batch = {k: np.arange(n_vox, dtype=np.int64) for k in engine.TALLIES}
    batch["ledger"] = np.ones(16, np.int64)
    _CountingMax.scans = 0
    for _ in range(10):
        acc.add(batch, 100)
    assert _CountingMax.scans == len(engine.TALLIES), _CountingMax.scans   # the first batch's only
    assert all(int(np.asarray(v)[-1]) == 10 * (n_vox - 1) for v in acc.sums.values())


@pytest.mark.parametrize("form", ["dense", "sparse voxels"])
def test_a_loose_bound_never_lets_a_sum_pass_the_limit(monkeypatch, form):
    """Batches whose largest values fall on other voxels each time make the bound loose (the sum of the batches'
    largest values, far above the largest sum): every batch is still added exactly while each sum stays within the
    limit, and the first that would take one past it is refused (a brute-force reference of the exact sums)."""
    limit = 8_000
    monkeypatch.setattr(engine, "TALLY_SUM_LIMIT", limit)
    n_vox = 64
    rng = np.random.default_rng(11)
    acc, ref = Accumulator(n_vox), np.zeros(n_vox, np.int64)
    vox = np.arange(n_vox)
    added = refused = 0
    for _ in range(2000):
        b = np.zeros(n_vox, np.int64)
        b[rng.integers(0, n_vox)] = rng.integers(500, 1500)   # one hot voxel, another each batch
        batch = {k: b.copy() for k in engine.TALLIES}
        if form == "sparse voxels":
            batch = {**{k: v[vox] for k, v in batch.items()}, "voxels": vox}
        batch["ledger"] = np.zeros(16, np.int64)
        if (ref + b).max() > limit:
            with pytest.raises(TallyLimitError):
                acc.add(batch, 10)
            refused += 1
            break
        acc.add(batch, 10)
        ref += b
        added += 1
        assert all(np.array_equal(v, ref) for v in acc.sums.values())
    assert refused == 1 and added > 40   # far past the batches at which the loose bound reached the limit


def test_the_let_bound_stated_beside_the_batch_cap_is_its_arithmetic():
    """Review A 2026-12-06, F7: the comment above MAX_BATCH_SIZE said the LET numerator (2^-16 MeV x MeV cm2/g, 400
    MeV a primary) stays below 2^62 up to 5400 MeV cm2/g; 2^62 / (400 x 2^25 x 2^16) is 5243, 3 % less."""
    import re
    from pathlib import Path

    import mcproton.settings as settings_module

    text = Path(settings_module.__file__).read_text()
    said = re.search(r"stopping power of a launch is below .*?= (\d+) MeV cm2/g", text, re.S)
    assert said, "the LET bound is no longer stated beside MAX_BATCH_SIZE"
    assert int(said.group(1)) == round(2**62 / (400 * MAX_BATCH_SIZE * 2**16)) == 5243

"""Spot selection (kernels/source/sample.h select_spot, mcproton/source.py Beam.spot_cdf): exact to 2^-63 of the beam.

Before (audits 29 F1 / 30): a float32 CDF searched with the kernel's 24-bit float uniform quantised every spot's
probability to ~6e-8 of its beam: a spot of 1e-7 was sampled 19 % too often, spots near 5e-8 never or up to 2.6
times too often, 13,135 of a 20,000-spot beam with a 10^4 weight range were off by > 0.1 % (worst 159 %), and the
real plans in tests/data by up to 0.86 % (RN_plan01_2022).  Now the table holds floor(2^63 x cumulative weight /
total) as uint64, computed with exact integers, and the kernel compares a 63-bit key: the source stream's first
word (its top 32 bits) and the first word of the history's spot stream, track id 0xFFFFFFFD (its low 31 bits).
Every test here is deterministic (no false-positive rate): the table is checked with exact rationals, the kernel bit
for bit against its emulation.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mcproton.geometry import box_phantom
from mcproton.run import Simulation
from mcproton.settings import RunSettings
from mcproton.source import Beam, Spot

TWO63 = 2**63
STREAM_SOURCE, STREAM_SPOT = 0xFFFFFFFF, 0xFFFFFFFD     # kernels/random/rng.h, kernels/source/sample.h


def _kernel_uniform(k: np.ndarray) -> np.ndarray:
    """The kernel's mcp_u32_to_uniform for top-24-bit values k, in float32 arithmetic as the kernel does it."""
    return (k.astype(np.float32) + np.float32(0.5)) * np.float32(5.9604644775390625e-08)


def test_the_kernel_uniform_reaches_exactly_one():
    """Why the spot key is not that uniform: u == 1 once in 2^24 draws, and a 2^-24 (2^-23 above 0.5) grid."""
    top = _kernel_uniform(np.array([2**24 - 1, 2**24 - 2, 0]))
    assert top[0] == np.float32(1.0) and top[1] < 1.0 and top[2] > 0.0


def _shares(cdf: np.ndarray) -> list[Fraction]:
    c = [0] + [int(x) for x in cdf]
    return [Fraction(b - a, TWO63) for a, b in zip(c, c[1:])]


def _exact_relative_errors(beam: Beam) -> list[float]:
    w = [Fraction(s.weight) for s in beam.spots]
    total = sum(w)
    return [float(abs(p / (x / total) - 1)) if x else float(p) for p, x in zip(_shares(beam.spot_cdf()), w)]


def test_a_spot_of_1e_7_gets_its_share_and_zero_weight_spots_none():
    """A spot of 1e-7 of its beam beside one of 1 - 1e-7 and zero-weight spots before, between and after: its
    probability (cdf[j] - cdf[j-1]) / 2^63 is its share to 1e-9 relative (the table's bound: 2^-63 / 1e-7 = 1e-12;
    before: +19 %), the zero-weight spots' exactly 0, and the last positive spot's entry 2^63, so no key
    (k < 2^63) passes it to a trailing zero-weight spot."""
    beam = Beam([Spot(90.0, weight=0.0), Spot(100.0, weight=1e-7), Spot(110.0, weight=0.0),
                 Spot(120.0, weight=1.0 - 1e-7), Spot(130.0, weight=0.0), Spot(140.0, weight=0.0)])
    cdf = beam.spot_cdf()
    assert cdf.dtype == np.uint64
    assert [int(x) for x in cdf[3:]] == [TWO63] * 3
    err = _exact_relative_errors(beam)
    assert err[1] < 1e-9 and err[3] < 1e-15
    assert err[0] == err[2] == err[4] == err[5] == 0.0         # zero weight: probability exactly 0
    assert int(cdf[0]) == 0 and cdf[1] == cdf[2]


def test_a_20000_spot_beam_with_a_10_4_weight_range_and_a_1e_9_spot_is_exact():
    """The brief's large paediatric beam: 20,000 spots, weights log-uniform over 10^4, plus one spot of 1e-9 of the
    beam and zero-weight spots: every spot's probability is its share to 1e-9 relative (bound 2^-63 / 1e-9 =
    1.1e-10; before: worst 159 %, 428 spots never sampled)."""
    rng = np.random.default_rng(30)
    w = 10.0 ** rng.uniform(0.0, 4.0, 20_000)
    w[rng.random(w.size) < 0.01] = 0.0
    w[123] = 1e-9 * w.sum()
    beam = Beam([Spot(100.0 + 1e-4 * i, weight=float(x)) for i, x in enumerate(w)])
    err = _exact_relative_errors(beam)
    assert max(err) < 1e-9
    assert int(beam.spot_cdf()[-1]) == TWO63



@pytest.mark.parametrize("weights", [[1.0], [0.0, 0.0, 1e-300, 0.0], [0.0, 5e-324, 0.0],
                                     [1e300, 1e-300, 5e-324, 0.0, 1e300], [0.1, 0.2, 0.3, 1 / 3, 0.0],
                                     [1e308, 0.0, 7e307]])
def test_the_table_is_exact_for_extreme_weights(weights):
    """Review a of audit 30: every entry is floor(2^63 x cumulative / total) computed with exact rationals, for
    weights from the smallest denormal to 1e308 (a 2^2100 range in one beam), a single spot, all but one zero,
    weights that are not exact decimals; the last entry is exactly 2^63 (never 2^64: it would wrap to 0 in uint64)
    and a zero-weight spot's entry equals the one before it."""
    beam = Beam([Spot(100.0, weight=x) for x in weights])
    cdf = beam.spot_cdf()
    assert cdf.dtype == np.uint64 and int(cdf[-1]) == TWO63
    total, acc, prev = sum(Fraction(x) for x in weights), Fraction(0), 0
    for j, x in enumerate(weights):
        acc += Fraction(x)
        assert int(cdf[j]) == acc * TWO63 // total, j
        assert x > 0 or int(cdf[j]) == prev, j
        prev = int(cdf[j])


def test_weights_summing_beyond_float64_are_refused_with_what_to_do():
    """Review a of audit 30, R1: weights summing above 1.8e308 were accepted (the table is exact) while the checks
    before a run share the weight in float64: inf / inf = NaN, and the warning of spots aimed off the grid (its
    share compared with NaN) said nothing.  Now the beam is refused, saying to scale the weights; 1e308 alone is a
    beam like any other."""
    with pytest.raises(ValueError, match="largest float64.*divide them all by one factor"):
        Beam([Spot(100.0, weight=1e308), Spot(120.0, weight=1.5e308)])
    assert int(Beam([Spot(100.0, weight=1e308), Spot(120.0, weight=0.0)]).spot_cdf()[0]) == TWO63

def _first_words(sim: Simulation, n: int, stream: int) -> np.ndarray:
    """The first 32-bit word of histories 0..n-1's stream ``stream`` (track id), through the kernel's Philox probe
    (tests/kernels/test_philox.py checks it against the Random123 vectors and a NumPy Philox)."""
    b, seed = sim.backend, sim.settings.seed
    h = np.arange(n, dtype=np.uint64)
    inp = np.stack([np.zeros(n, np.uint64), np.full(n, stream, np.uint64), h & np.uint64(0xFFFFFFFF),
                    h >> np.uint64(32), np.full(n, seed & 0xFFFFFFFF, np.uint64), np.full(n, seed >> 32, np.uint64)],
                   axis=1)
    out = b.zeros(4 * n, np.uint32)
    b.launch("mcp_probe_philox", n, b.asarray(inp.astype(np.uint32).reshape(-1)), out, n)
    return b.to_host(out).reshape(n, 4)[:, 0].astype(np.uint64)


def test_the_kernel_splits_two_histories_the_24_bit_uniform_could_not(backend):
    """Through the compiled kernel (mcp_probe_source, on every backend): two histories whose source words share
    their top 24 bits (the old uniform: the same value, so the old kernel gave them the same spot, whatever the
    weights) fall on either side of a spot boundary placed between their 63-bit keys; and every one of 2^17
    histories gets the spot the Python emulation (first entry > key) gives, zero-weight spots none."""
    n = 2**17
    energies = [100.0, 110.0, 120.0, 130.0]
    sim0 = Simulation(box_phantom("water", (40.0, 40.0, 40.0), (2.0, 2.0, 2.0)), Beam.pencil(100.0),
                      RunSettings(backend=backend, primaries=1000, batches=2))
    hi = _first_words(sim0, n, STREAM_SOURCE)
    key = (hi << np.uint64(31)) | (_first_words(sim0, n, STREAM_SPOT) >> np.uint64(1))
    order = np.argsort(key, kind="stable")
    top = (hi >> np.uint64(8))[order]
    same = np.flatnonzero(top[1:] == top[:-1])              # ~512 adjacent pairs with one old uniform
    gaps = key[order][same + 1] - key[order][same]
    i = int(same[np.argmax(gaps)])                          # the pair with the widest gap between its keys
    h1, h2 = int(order[i]), int(order[i + 1])
    k1, k2 = int(key[h1]), int(key[h2])
    assert k2 - k1 > 2**20
    share = Fraction(k1 + k2, 2 * TWO63)                    # the boundary halfway between the two keys
    w0 = float(share)
    beam = Beam([Spot(e, weight=x) for e, x in zip(energies, [w0, 0.0, 1.0 - w0, 0.0])])
    sim = Simulation(sim0.geometry, beam, RunSettings(backend=backend, primaries=1000, batches=2))
    b = sim.backend
    out = b.zeros(7 * n, np.float32)
    b.launch("mcp_probe_source", n, sim.params_dev, out, n)
    spot = np.searchsorted(energies, b.to_host(out).reshape(n, 7)[:, 6].astype(np.float64) - 1.0)
    assert spot[h1] == 0 and spot[h2] == 2                  # before: the same spot for both
    cdf = beam.spot_cdf()
    assert k1 < int(cdf[0]) <= k2
    expect = np.searchsorted(cdf, key, side="right")
    assert np.array_equal(spot, expect)
    assert not np.isin(spot, [1, 3]).any()


def _old_float32_table(beam: Beam) -> np.ndarray:
    """Beam.spot_cdf before this change (float32, entries from the last positive weight on just above 1)."""
    w = np.array([s.weight for s in beam.spots], dtype=np.float64)
    c = (np.cumsum(w) / w.sum()).astype(np.float32)
    c[int(np.flatnonzero(w > 0)[-1]):] = np.nextafter(np.float32(1.0), np.float32(2.0))
    return c


def test_a_checkpoint_of_the_float32_table_is_refused(tmp_path):
    """A checkpoint written with the old table (its beams hash holds spot_cdf) is refused on resume, naming the beam,
    not resumed into a dose of two samplings (its kernel hash differs too: refused as another transport kernel)."""
    from mcproton._run import checkpoint as ck
    from mcproton.run import Accumulator

    g = box_phantom("water", (40.0, 40.0, 40.0), (2.0, 2.0, 2.0))
    beam = Beam([Spot(100.0, weight=1.0), Spot(120.0, weight=2.0)], total_protons=3e9)
    fp = ck.fingerprint(None, RunSettings(backend="cpu", primaries=1000), "cpu", g, [beam])
    old = {**fp, "beams_hash": ck._sha(beam.spot_array(), _old_float32_table(beam), beam.total_protons)}
    assert old["beams_hash"] != fp["beams_hash"]
    p = tmp_path / "c.ckpt.h5"
    acc = Accumulator(g.material_index_zyx.size)
    acc.batches, acc.primaries = 1, 10
    ck.save_checkpoint(p, old, [ck.BeamState(acc, next_history=10)])
    with pytest.raises(ck.CheckpointError, match="another beam"):
        ck.load_checkpoint(p, fp, g.material_index_zyx.size)
    ck.save_checkpoint(p, {**old, "kernel_hash": "0" * 64}, [ck.BeamState(acc, next_history=10)])
    with pytest.raises(ck.CheckpointError, match="another transport kernel"):
        ck.load_checkpoint(p, fp, g.material_index_zyx.size)
    ck.save_checkpoint(p, fp, [ck.BeamState(acc, next_history=10)])
    assert ck.load_checkpoint(p, fp, g.material_index_zyx.size)[0].next_history == 10

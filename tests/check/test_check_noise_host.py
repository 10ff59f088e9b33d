"""noisy_like_mc reads the voxels it adds noise to only (2026-12-06, host time): the same realisation bit for bit as
its previous form, kept here line for line, on random grids with NaN and infinite uncertainties, float32 and
float64 inputs, a mask or none, and ``mc`` given or not."""
import numpy as np
import pytest

from mcproton._check.compare import noisy_like_mc


def _noisy_reference(ref, rel_unc, rng, where=None, *, mc=None):
    """noisy_like_mc as it was before this change (mcproton/_check/compare.py at 0e24556)."""
    out = np.array(ref, dtype=np.float64, copy=True)
    sd = np.nan_to_num(np.asarray(rel_unc, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    scale = out if mc is None else np.asarray(mc, dtype=np.float64)
    if where is None:
        out += rng.standard_normal(out.shape) * scale * sd
    else:
        i = np.flatnonzero(where)
        out.flat[i] += rng.standard_normal(i.size) * scale.flat[i] * sd.flat[i]
    return np.clip(out, 0.0, None, out=out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("with_mc", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_noisy_like_mc_is_the_previous_one_bit_for_bit(dtype, masked, with_mc, seed):
    gen = np.random.default_rng(seed)
    shape = (7, 9, 11)
    ref = (gen.random(shape) * 2).astype(dtype)
    mc = (ref * gen.normal(1.0, 0.05, shape)).astype(dtype)
    unc = (gen.random(shape) * 0.1).astype(dtype)
    unc.flat[gen.choice(unc.size, 20, replace=False)] = [np.nan, np.inf, -np.inf, 0.5] * 5
    where = gen.random(shape) < 0.4 if masked else None
    kw = {"mc": mc} if with_mc else {}
    got = noisy_like_mc(ref, unc, np.random.default_rng([seed, 1]), where, **kw)
    want = _noisy_reference(ref, unc, np.random.default_rng([seed, 1]), where, **kw)
    assert got.dtype == want.dtype == np.float64
    assert got.tobytes() == want.tobytes()
    assert not np.array_equal(got, ref.astype(np.float64))   # noise was added
    if masked:
        assert np.array_equal(got[~where], np.clip(ref[~where].astype(np.float64), 0, None))


def test_noisy_like_mc_mask_of_a_transposed_grid():
    """A non-contiguous grid (a transposed view) is read in the mask's C order, as before."""
    gen = np.random.default_rng(5)
    ref, unc, mc = (gen.random((6, 5, 4)).transpose(2, 0, 1) for _ in range(3))
    where = gen.random(ref.shape) < 0.5
    got = noisy_like_mc(ref, unc, np.random.default_rng(9), where, mc=mc)
    assert got.tobytes() == _noisy_reference(ref, unc, np.random.default_rng(9), where, mc=mc).tobytes()

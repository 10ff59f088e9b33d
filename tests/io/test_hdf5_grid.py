"""The HDF5 grid writer (mcproton/_io/hdf5.py write_grid): chunks compressed in threads and written with the
standard gzip (+ shuffle) filters, all-zero chunks not stored.  What h5py reads back must be bitwise the array
written, for every dtype and grid shape the writer meets (edge chunks, -0.0, NaN, a grid smaller than a chunk)."""
from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from mcproton._io.hdf5 import GRID_CHUNK, write_grid


def _roundtrip(arr, **kw):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        write_grid(f, "x", arr, **kw)
    with h5py.File(buf, "r") as f:
        d = f["x"]
        n = d.id.get_num_chunks() if d.chunks else None
        return d[()], d.compression, d.compression_opts, d.shuffle, d.chunks, n


def _sparse(shape, dtype, seed=1):
    rng = np.random.default_rng(seed)
    a = np.zeros(shape, dtype)
    a[2:5, 3:9, 1:70] = rng.random(a[2:5, 3:9, 1:70].shape) * 100 + 1   # one corner: most chunks all 0
    return a


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int16, bool])
@pytest.mark.parametrize("shape", [(17, 130, 71), (3, 5, 7), (8, 64, 64)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_bitwise_roundtrip(dtype, shape, shuffle):
    a = _sparse(shape, np.float64).astype(dtype)
    b, comp, level, shuf, chunks, _ = _roundtrip(a, shuffle=shuffle)
    assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes()
    assert comp == "gzip" and level == 1   # a standard filter every HDF5 reader has
    assert chunks == tuple(min(c, n) for c, n in zip(GRID_CHUNK, shape))
    assert shuf == (shuffle and np.dtype(dtype).itemsize > 1)


def test_zero_chunks_not_stored_and_negative_zero_kept():
    a = _sparse((20, 128, 128), np.float64)
    b, *_, n_stored = _roundtrip(a)
    assert b.tobytes() == a.tobytes()
    assert n_stored == 2    # chunks (0, 0, 0) and (0, 0, 64): z 2..4, y 3..8, x 1..69
    a[12, 100, 100] = -0.0   # equal to 0 but not the fill value's bytes: must be stored
    a[19, 127, 127] = np.nan
    b, *_, n_stored = _roundtrip(a)
    assert b.tobytes() == a.tobytes() and np.signbit(b[12, 100, 100]) and n_stored == 4


def test_all_zero_and_empty_and_not_3d():
    b, *_, n_stored = _roundtrip(np.zeros((9, 70, 65), np.float32))
    assert n_stored == 0 and b.dtype == np.float32 and not b.any() and b.shape == (9, 70, 65)
    assert _roundtrip(np.zeros((0, 4, 4)))[0].shape == (0, 4, 4)
    v = np.arange(1000.0)
    assert _roundtrip(v)[0].tobytes() == v.tobytes()


def test_non_contiguous_input():
    a = _sparse((10, 40, 80), np.float64)[:, ::2, 1:]
    assert _roundtrip(a)[0].tobytes() == np.ascontiguousarray(a).tobytes()


def test_provenance_strings_round_trip_as_the_same_strings(tmp_path):
    """I/O review 2026-12-06 (minor): a provenance string "none" read back as None, and one starting with "[" or "{"
    as the JSON it spelt ("[1, 2]" as a list).  Every string now reads back as itself; None, dicts and lists as
    before."""
    import h5py

    from mcproton._io.hdf5 import _attr, _py

    values = {"none_text": "none", "list_text": "[1, 2]", "dict_text": '{"a": 1}', "quoted": '"q"', "bad": "[x",
              "plain": "water", "empty": "", "nothing": None, "a_list": [1, "two"], "a_dict": {"k": [1.5, None]},
              "numbers": [1.0, 2.0], "n": 3}
    with h5py.File(tmp_path / "a.h5", "w") as f:
        for k, v in values.items():
            f.attrs[k] = _attr(v)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        back = {k: _py(f.attrs[k]) for k in values}
    assert back == values

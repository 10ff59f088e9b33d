"""A CT run's dose grid is sized from the CT series' headers before its pixels are read (the scale audit of
2026-12-07, F3: a 1024 x 1024 x 800 CT at its own resolution was refused as needing 140 GB only after 35 s and
6.9 GB of reading and converting it).  The estimate uses the build's own block arithmetic (config._ct_dose_blocks,
geometry.blocked_shape): it equals the grid built for several phantom.dose_voxel_mm; the header pass says its
warnings once (the build's reading says them).  The available memory is monkeypatched instead of making large
files."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mcproton._io.ct import write_ct_series
from mcproton._io.errors import recording_warnings
from mcproton._run import inputs
from mcproton.cli import main
from mcproton.config import build_geometry, load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_ct_memory import _count_pixel_reads  # noqa: E402  (how many files the pixel pass read)

VOXEL_MM = (0.9765625, 0.9765625, 1.5)

CFG = """\
[run]
primaries = 100
backend = "cpu"
threads = 1

[phantom]
type = "ct"
ct_dir = "ct"
{extra}

[beam]
energy_mev = 100.0
position_mm = [0.0, 0.0, -100.0]
direction = [0.0, 0.0, 1.0]
sigma_mm = [3.0, 3.0]

[output]
plot = false
"""


def _ct(tmp_path, shape=(13, 27, 31)):
    """A CT of ``shape`` (z, y, x) voxels of VOXEL_MM: water in air, centred on the origin (none of its dimensions a
    multiple of the blocks below)."""
    hu = np.full(shape, -1000, np.int16)
    nz, ny, nx = shape
    hu[:, ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4] = 0
    origin = [-(n - 1) * v / 2 for n, v in zip((nx, ny, nz), VOXEL_MM)]
    write_ct_series(hu, VOXEL_MM, origin, tmp_path / "ct")


def _cfg(tmp_path, extra: str = ""):
    path = tmp_path / "run.toml"
    path.write_text(CFG.format(extra=extra))
    return path


def test_a_ct_grid_too_large_for_the_memory_is_refused_before_a_pixel_is_read(tmp_path, monkeypatch, capsys):
    """Memory for reading the CT (its own check, mcproton/_io/ct.py) but not for the run's grid: refused from the
    headers, no pixel read, naming the grid (of the dose_voxel_mm blocks where given) and phantom.dose_voxel_mm.
    Before: the CT was read and converted, then refused by the same check after the build."""
    _ct(tmp_path, (64, 128, 128))
    least = inputs.host_memory_least(64 * 128 * 128)   # 1 M voxels x 80 B (ulimit -v: allocated)
    monkeypatch.setattr(inputs, "available_memory", lambda: inputs.Memory(0.9 * least, 0.0, "the test's limit", True))
    calls = _count_pixel_reads(monkeypatch)
    assert main(["run", str(_cfg(tmp_path)), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert calls[0] == 0, f"{calls[0]} CT files read with their pixels before the refusal"
    assert "the dose grid of 128 x 128 x 64 = 1.0 M voxels (one beam; each further beam adds up to 0.1 GB) needs at " \
           "least 0.1 GB of memory (the tallies and running sums it allocates; up to about 0.4 GB where every voxel " \
           "gets dose)" in err and "bounded by the test's limit" in err, err
    assert "phantom.dose_voxel_mm" in err, err
    # blocks of 2 x 2 x 1 CT voxels: a grid of 64 x 64 x 64 voxels fits in the same memory, and the CT is read; it
    # takes more than 80 % of it: warned once, after the build (with the beams counted), not before it too
    with recording_warnings() as said:
        assert main(["run", str(_cfg(tmp_path, "dose_voxel_mm = [1.953125, 1.953125, 1.5]")), "--check-config"]) == 0
    assert calls[0] == 64
    near = [w for w in said if "where the dose covers the whole grid" in w]
    assert len(near) == 1 and "64 x 64 x 64 = 0.3 M voxels (1 beam)" in near[0], said


@pytest.mark.parametrize("dose_voxel_mm", [None, [1.953125, 1.953125, 1.5], [2.9296875, 1.953125, 3.0],
                                           [3.90625, 3.90625, 4.5], [1.0, 1.0, 1.5]])
def test_the_grid_from_the_headers_is_the_grid_built(tmp_path, dose_voxel_mm):
    """The estimate equals the built geometry's shape: the CT's own grid, and blocks of 2 x 2 x 1, 3 x 2 x 2,
    4 x 4 x 3 and 1 x 1 x 1 (1 mm: the nearest whole CT voxels) on a CT whose sides are no multiple of them."""
    _ct(tmp_path)
    extra = "" if dose_voxel_mm is None else f"dose_voxel_mm = {dose_voxel_mm}"
    cfg = load_config(_cfg(tmp_path, extra))
    got = inputs._ct_grid_shape(cfg)
    built = build_geometry(cfg).shape_zyx
    assert got == tuple(built), (got, built)
    assert got != (13, 27, 31) or dose_voxel_mm in (None, [1.0, 1.0, 1.5])


def test_no_estimate_where_the_headers_cannot_say(tmp_path):
    """No CT folder, or dose voxels the build refuses: no estimate (None), and the build refuses with its own
    message."""
    from mcproton.config import ConfigError

    cfg = load_config(_cfg(tmp_path))
    assert inputs._ct_grid_shape(cfg) is None
    inputs.check_before_build(cfg)   # nothing to say yet
    with pytest.raises(ConfigError, match="the CT folder .* does not exist"):
        build_geometry(cfg)
    _ct(tmp_path)
    cfg = load_config(_cfg(tmp_path, "dose_voxel_mm = 1000.0"))
    assert inputs._ct_grid_shape(cfg) is None
    with pytest.raises(ConfigError, match="phantom.dose_voxel_mm x = 1000 mm is larger than the CT itself"):
        build_geometry(cfg)


def test_the_header_pass_says_its_warnings_once(tmp_path):
    """A file beside the slices that may have been one (no suffix, not DICOM) is warned about once: by the build's
    reading, not by the headers read before it too."""
    _ct(tmp_path)
    (tmp_path / "ct" / "IMG0099").write_text("not a slice")
    cfg = load_config(_cfg(tmp_path))
    with recording_warnings() as said:
        inputs.check_before_build(cfg)
        assert said == []
        build_geometry(cfg)
    assert sum("IMG0099" in w for w in said) == 1, said


def _count_reads(monkeypatch) -> dict[tuple[str, bool], int]:
    """How often each CT file is read, by (file name, with its pixels)."""
    from collections import Counter

    from mcproton._io import ct as ct_module

    counts: Counter = Counter()
    read = ct_module._read

    def counted(path, *, pixels):
        counts[(Path(path).name, pixels)] += 1
        return read(path, pixels=pixels)

    monkeypatch.setattr(ct_module, "_read", counted)
    return counts


def test_a_run_reads_each_slices_header_once(tmp_path, monkeypatch, capsys):
    """A whole run (the grid sized from the headers, then the CT read and the dose written) reads each slice's header
    once and its pixels once: the reading uses the header pass made to size the grid (the review of 2026-12-07, F6:
    every header was read twice, the pass that is slow on a network share), and says that pass's warnings once."""
    _ct(tmp_path)
    (tmp_path / "ct" / "IMG0099").write_text("not a slice")
    counts = _count_reads(monkeypatch)
    with recording_warnings() as said:
        assert main(["run", str(_cfg(tmp_path)), "--out", str(tmp_path / "o.h5"), "--quiet", "--no-checkpoint",
                     "--allow-empty"]) == 0   # the beam leaves this thin CT
    slices = sorted(p.name for p in (tmp_path / "ct").glob("*.dcm"))
    assert len(slices) == 13
    assert {n: counts[(n, False)] for n in slices} == {n: 1 for n in slices}, counts
    assert {n: counts[(n, True)] for n in slices} == {n: 1 for n in slices}, counts
    assert sum("IMG0099" in w for w in said) == 1, said


def test_a_slice_changed_after_the_header_pass_is_read_again(tmp_path, monkeypatch):
    """The header pass is used only for the same files as they were: a slice rewritten (or a file added) between
    the grid's estimate and the reading makes the reading read every header again, so that it reads what is there."""
    import os

    from mcproton._io.ct import ct_series_grid, load_ct_series

    _ct(tmp_path)
    folder = tmp_path / "ct"
    counts = _count_reads(monkeypatch)
    ct_series_grid(folder)
    load_ct_series(folder)
    first = sorted(folder.glob("*.dcm"))[0]
    assert counts[(first.name, False)] == 1, counts
    ct_series_grid(folder)
    st = first.stat()
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))   # rewritten: another modification time
    load_ct_series(folder)
    assert counts[(first.name, False)] == 3, counts
    ct_series_grid(folder)
    (folder / "notes.txt").write_text("added")
    load_ct_series(folder)
    assert counts[(first.name, False)] == 5, counts

"""The HDF5 dataset ``dose_raw`` (the dose before the body outline) says its unit and dtype truly (audit 26
h5schema, F3): it said "Gy" for a dose per primary, beside a ``dose`` in "Gy per primary", and its description
"dose = dose_raw inside body_mask" was not true to the bit (``dose`` float64, ``dose_raw`` float32).  Monte Carlo:
300 primaries on a 20 x 20 x 40 mm water box."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from mcproton import Beam, RunSettings, box_phantom, simulate
from mcproton.body import BodyOutline, apply_body_outline


@pytest.mark.parametrize("total_protons, unit", [(None, "Gy per primary"), (1e9, "Gy")])
def test_dose_raw_has_the_dose_unit_and_its_description_holds(tmp_path, total_protons, unit):
    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 4.0))
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(3, 3), total_protons=total_protons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = simulate(g, beam, RunSettings(primaries=300, batches=3, backend="cpu", threads=1, seed=5), log=None)
    body = np.zeros(g.shape_zyx, bool)
    body[:, 1:-1, 1:-1] = True
    apply_body_outline(r, BodyOutline(body, "test outline", "auto"))
    r.save(tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        dose, raw = f["dose"], f["dose_raw"]
        assert raw.attrs["unit"] == dose.attrs["unit"] == unit
        assert dose.dtype == np.float64 and raw.dtype == np.float32
        assert "float32" in raw.attrs["description"]
        m = f["body_mask"][()].astype(bool)
        d, dr = dose[()], raw[()]
    # what the description says, to the bit
    assert d[m].any() and np.array_equal(d[m].astype(np.float32), dr[m]) and not d[~m].any() and dr[~m].any()

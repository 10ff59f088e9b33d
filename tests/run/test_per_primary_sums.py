"""A sum of per-primary results ("Gy per primary (sum over beams)") is a dose per primary wherever mcproton tells
the two apart (audit 26 h5schema, F2): every check compared the text with "Gy per primary", so such a sum was saved
with dose unit "Gy", written as an RT Dose in Gy (1e-8 "Gy"), given a McNamara RBE of 1.4-2.9 (its low-dose limit),
and a sum of two such sums was labelled "Gy (sum of 2 beams: ...)".  Now one predicate
(:func:`mcproton.run.is_per_primary`) decides it.  Monte Carlo: 300 primaries on a 20 x 20 x 40 mm water box."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from mcproton import Beam, DoseResult, RunSettings, box_phantom, simulate, sum_results, write_result_rtdose
from mcproton.rbe import mcnamara_of_result
from mcproton.run import is_per_primary

TINY = {"primaries": 300, "batches": 3, "backend": "cpu", "threads": 1}


@pytest.fixture(scope="module")
def parts():
    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 4.0))
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(2, 2))   # no total_protons: Gy per primary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [simulate(g, beam, RunSettings(**TINY, seed=s), log=None) for s in (1, 2)]


def test_a_per_primary_sum_is_labelled_and_refused_like_a_per_primary_part(parts, tmp_path):
    a, b = parts
    assert a.normalisation == "Gy per primary" and is_per_primary(a)
    s = sum_results([a, b])
    assert s.normalisation == "Gy per primary (sum over beams)" and is_per_primary(s)
    s.save(tmp_path / "sum.h5")
    with h5py.File(tmp_path / "sum.h5", "r") as f:
        assert f["dose"].attrs["unit"] == f["dose_to_water"].attrs["unit"] == "Gy per primary"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = DoseResult.load(tmp_path / "sum.h5")
    for r in (s, loaded):
        with pytest.raises(ValueError, match=r"Gy per primary proton \(Gy per primary \(sum over beams\).*RT Dose "
                                             r"holds Gy"), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # no body outline
            write_result_rtdose(r, tmp_path / "RD.dcm")
        with pytest.raises(ValueError, match="Gy per primary proton.*the RBE needs"):
            mcnamara_of_result(r, 2.0)
    assert not (tmp_path / "RD.dcm").exists()
    # sums of sums, and a sum with a part: still per primary, the dose the sum of the parts'
    for summed in (sum_results([s, s]), sum_results([s, a])):
        assert summed.normalisation == "Gy per primary (sum over beams)"
    np.testing.assert_array_equal(sum_results([s, a]).dose_gy_zyx, s.dose_gy_zyx + a.dose_gy_zyx)


def test_a_per_primary_sum_and_an_absolute_dose_are_refused_for_the_right_reason(parts):
    a, b = parts
    s = sum_results([a, b])
    absolute = sum_results([a, b])
    absolute.normalisation = "Gy for 1e+09 protons"
    with pytest.raises(ValueError, match=r"cannot add a per-primary dose \(result 1 \(Gy per primary \(sum over "
                                         r"beams\)\)\) to an absolute dose"):
        sum_results([s, absolute])


def test_an_older_sum_of_per_primary_sums_is_per_primary():
    """The label sum_results gave a sum of two per-primary sums before the fix: still a dose per primary."""
    assert is_per_primary("Gy (sum of 2 beams: Gy per primary (sum over beams); Gy per primary (sum over beams))")
    assert not is_per_primary("Gy for 1e+09 protons (1 of 30 planned fractions; physical dose, no RBE)")
    assert not is_per_primary("Gy (sum of 2 beams: Gy for 1e+09 protons; Gy for 2e+09 protons)")

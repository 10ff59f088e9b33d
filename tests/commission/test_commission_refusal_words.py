"""mcproton commission's refusals of a measured IDD file name the line and the value at fault, and --threads 0 is
refused as mcproton demo refuses it (the error-message audit 27, F7 and F8): "100 MeV has two points at one depth"
and "a negative depth or IDD" said neither in a curve of 90 points, and --threads 0 ran on every CPU."""
from __future__ import annotations

import pytest

from mcproton.commission import CommissionInputError, commission, read_idd_csv


def _idd(path, rows):
    path.write_text("nominal_energy_mev,depth_mm,idd\n" + "".join(f"100,{z},{d}\n" for z, d in rows))
    return path


def _curve():
    return [(float(z), 1.0 if z < 70 else 0.05) for z in range(0, 90, 5)]   # line k + 2 holds point k


def test_a_negative_idd_names_its_line_and_value(tmp_path):
    rows = _curve()
    rows[5] = (rows[5][0], -0.1)
    with pytest.raises(CommissionInputError, match=r"100 MeV: line 7: idd = -0.1 is negative; an IDD is >= 0"):
        read_idd_csv(_idd(tmp_path / "idd.csv", rows))


def test_a_negative_depth_names_its_line_and_value(tmp_path):
    rows = _curve()
    rows[0] = (-2.0, 1.0)
    with pytest.raises(CommissionInputError, match=r"100 MeV: line 2: depth_mm = -2 is negative"):
        read_idd_csv(_idd(tmp_path / "idd.csv", rows))


def test_two_points_at_one_depth_name_the_depth_and_both_lines(tmp_path):
    rows = _curve()
    rows.insert(3, rows[2])   # depth 10 mm on lines 4 and 5
    with pytest.raises(CommissionInputError, match=r"100 MeV has two points at depth 10 mm \(lines 4 and 5\); keep "
                                                   r"one"):
        read_idd_csv(_idd(tmp_path / "idd.csv", rows))


@pytest.mark.parametrize("threads", [0, -1, True, 2.0])
def test_threads_below_one_are_refused_before_anything_is_read(threads, tmp_path):
    with pytest.raises(CommissionInputError, match=r"threads \(--threads\) = .*: give a whole number >= 1, or leave it "
                                                   r"out"):
        commission("dcpt_v5", idd=tmp_path / "no_such.csv", threads=threads)

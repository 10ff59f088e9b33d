"""DVH figures whose levels every other test left untested (mutation audit 32, "mutation2"): V95 at 95 % of the
prescription (not 90 %), the +-5 % band, a NaN refused when the sorted doses are handed in, and an absolute volume
or voxel volume of 0 or less refused, and the DVH curve's
``bins`` equal steps from 0 to the maximum.  Each dose here has values between the levels a wrong constant would use."""
import numpy as np
import pytest

from mcproton.dvh import cumulative_dvh, dose_at_volume_cm3, dose_stats, stats_of_doses


def test_v95_and_the_5_percent_band_are_at_their_levels():
    """Prescription 2 Gy: 1.84 Gy (92 %) is below 95 % and outside +-5 %, 2.16 Gy (108 %) above 95 % and outside
    +-5 %, 1.92, 2.0 and 2.08 Gy inside both.  V95 = 4/5 and within_5pct = 3/5 exactly; at 90 % or +-10 % both
    would read 5/5 (mutants D7, D8 survived every test: the uniform doses tested read 1.0 either way)."""
    dose = np.array([1.84, 1.92, 2.0, 2.08, 2.16]).reshape(1, 1, 5)
    st = dose_stats(dose, np.ones(dose.shape, bool), prescription_gy=2.0)
    assert st["v95"] == pytest.approx(4 / 5, abs=1e-12)
    assert st["within_5pct"] == pytest.approx(3 / 5, abs=1e-12)


def test_a_nan_is_refused_with_the_sorted_doses_handed_in():
    """stats_of_doses with ``sorted_doses`` (the check's and the HDF5 DVH's one-sort path) looks for NaN at the end of
    the ascending sort, where np.sort puts it; looked for at the start (mutant D16) a NaN among finite doses passed,
    counted as the hottest voxel: 1..99 Gy and one NaN read D2 = 99 Gy (98 Gy without it) and Dmax NaN, silently."""
    d = np.append(np.arange(1.0, 100.0), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        stats_of_doses(d, sorted_doses=np.sort(d))
    with pytest.raises(ValueError, match="NaN"):
        stats_of_doses(d)


@pytest.mark.parametrize("volume_cm3, voxel_cm3", [(0.0, 0.001), (-0.03, 0.001), (0.03, 0.0), (0.03, -0.001)])
def test_an_absolute_volume_or_voxel_volume_of_zero_or_less_is_refused(volume_cm3, voxel_cm3):
    """D_V cc of a volume or voxel volume <= 0 has no meaning; without the refusal (mutant D24) the rank was clamped
    to 1 and the maximum voxel came back as D0cc, or as D0.03cc of a 'negative' voxel."""
    dose = np.arange(1.0, 101.0).reshape(1, 10, 10)
    with pytest.raises(ValueError, match="must be > 0"):
        dose_at_volume_cm3(dose, np.ones(dose.shape, bool), volume_cm3, voxel_cm3)


def test_a_number_of_bins_gives_that_many_equal_steps_from_0_to_the_maximum():
    """cumulative_dvh(bins=4) of doses 1..8 Gy: the levels 0, 2, 4, 6, 8 Gy (bins + 1 of them, the last the maximum)
    and the fractions 1, 7/8, 5/8, 3/8, 1/8.  With ``bins`` levels (mutant D18) the steps were 8/3 Gy and the figure's
    curves (the check report's DVH, plot_dvh) were sampled on other levels than said."""
    dose = np.arange(1.0, 9.0).reshape(1, 2, 4)
    lv, fr = cumulative_dvh(dose, np.ones(dose.shape, bool), bins=4)
    assert lv.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert fr.tolist() == [1.0, 7 / 8, 5 / 8, 3 / 8, 1 / 8]

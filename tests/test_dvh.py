"""DVH statistics on synthetic doses with known answers."""
import numpy as np
import pytest

from mcproton.dvh import cumulative_dvh, dose_at_volume, dose_stats, dvh_table, plot_dvh, volume_at_dose


def _ramp():
    dose = np.arange(1, 101, dtype=float).reshape(1, 10, 10)   # 1..100 Gy, one voxel each
    return dose, np.ones_like(dose, bool)


def test_dose_at_volume_known_values():
    dose, mask = _ramp()
    assert dose_at_volume(dose, mask, 95) == 6.0     # 95 voxels receive >= 6 Gy
    assert dose_at_volume(dose, mask, 2) == 99.0     # the hottest 2 voxels receive >= 99 Gy
    assert dose_at_volume(dose, mask, 50) == 51.0
    assert dose_at_volume(dose, mask, 100) == 1.0
    assert volume_at_dose(dose, mask, 91.0) == pytest.approx(0.10)


def test_uniform_dose_and_mask_selection():
    dose = np.zeros((4, 5, 6))
    mask = np.zeros(dose.shape, bool)
    mask[1:3, 1:4, 2:5] = True
    dose[mask] = 2.0
    dose[~mask] = 50.0                       # outside the mask: must not matter
    st = dose_stats(dose, mask, voxel_volume_cm3=0.008, prescription_gy=2.0)
    assert st["voxels"] == 18 and st["volume_cm3"] == pytest.approx(0.144)
    for k in ("dmean", "dmin", "dmax", "d95", "d2", "d98", "d50"):
        assert st[k] == pytest.approx(2.0)
    assert st["within_5pct"] == 1.0 and st["v95"] == 1.0 and st["homogeneity_index"] == 0.0


def test_cumulative_dvh_is_monotone_and_exact_on_two_levels():
    dose = np.array([1.0] * 30 + [3.0] * 70).reshape(1, 1, 100)
    mask = np.ones_like(dose, bool)
    lv, fr = cumulative_dvh(dose, mask, bins=[0.0, 1.0, 2.0, 3.0, 3.5])
    assert fr.tolist() == pytest.approx([1.0, 1.0, 0.7, 0.7, 0.0])
    lv, fr = cumulative_dvh(dose, mask, bins=50)
    assert np.all(np.diff(fr) <= 0) and fr[0] == 1.0


def test_empty_mask_and_errors(tmp_path):
    dose, mask = _ramp()
    empty = np.zeros_like(mask)
    assert np.isnan(dose_at_volume(dose, empty, 95))
    assert np.isnan(dose_stats(dose, empty)["dmean"])
    with pytest.raises(ValueError):
        dose_at_volume(dose, mask, 0)
    with pytest.raises(ValueError):
        dose_at_volume(dose, mask[:, :5], 95)
    t = dvh_table(dose, {"all": mask, "none": empty}, 1.0, {"all": 50.0})
    assert t["all"]["d95"] == 6.0 and "within_5pct" in t["all"]
    p = plot_dvh(dose, {"all": mask, "none": empty}, tmp_path / "dvh.png", prescription_gy=50.0)
    assert p.exists() and p.stat().st_size > 1000

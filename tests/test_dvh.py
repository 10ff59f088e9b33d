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


def test_homogeneity_index_is_d2_minus_d98_over_d50():
    """ICRU 83's homogeneity index (D2 - D98) / D50.  On a skewed dose (the squares 1, 4, ..., 10000 Gy, one voxel
    each) the median and the mean differ by 30 %, so dividing by Dmean is seen (every other test had D50 == Dmean,
    or HI 0: mutation audit 2026-12-05, 053).  Squaring keeps the ranks of test_dose_at_volume_known_values' ramp:
    D2 = 99^2, D98 = 3^2, D50 = 51^2 Gy (mean 3383.5 Gy), so HI = (9801 - 9) / 2601."""
    dose = np.arange(1, 101, dtype=float).reshape(1, 10, 10) ** 2
    st = dose_stats(dose, np.ones(dose.shape, bool), prescription_gy=2601.0)   # HI comes with a prescription
    assert (st["d2"], st["d98"], st["d50"], st["dmean"]) == (9801.0, 9.0, 2601.0, 3383.5)
    assert st["homogeneity_index"] == pytest.approx((9801 - 9) / 2601, rel=1e-12)


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


def test_the_absolute_volumes_need_the_voxel_volume():
    """Audit 2026-12-05 F12: without the voxel volume dose_stats assumed 1 cm3 per voxel: 100 voxels of 2 x 2 x 1 mm
    were "100 cm3" and D0.03cc the maximum (100 Gy instead of 93 Gy)."""
    dose, mask = _ramp()
    st = dose_stats(dose, mask)
    assert "volume_cm3" not in st and "d0.03cc" not in st and st["voxels"] == 100 and st["d2"] == 99.0
    with pytest.raises(KeyError, match=r"'d0.03cc' needs the voxel volume: give dose_stats\(\.\.\., voxel_volume"):
        st["d0.03cc"]
    st = dose_stats(dose, mask, voxel_volume_cm3=0.004)          # 2 x 2 x 1 mm
    assert st["volume_cm3"] == pytest.approx(0.4) and st["d0.03cc"] == 93.0   # ceil(0.03 / 0.004) = 8th hottest
    assert "d0.03cc" not in dvh_table(dose, {"all": mask})["all"]
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="voxel_volume_cm3 must be a positive number of cm3"):
            dose_stats(dose, mask, voxel_volume_cm3=bad)
    with pytest.raises(ValueError, match=r"voxel_volume_cm3 = '0.004' has the wrong type \(text\)"):
        dose_stats(dose, mask, voxel_volume_cm3="0.004")


def test_a_dose_with_nan_in_the_mask_is_refused():
    """Before, the NaN voxel was ranked the hottest (D2% of 1..100 Gy read 100 Gy) while Dmax was NaN."""
    from mcproton.dvh import dose_at_volume_cm3

    dose, mask = _ramp()
    dose[0, 0, 0] = np.nan
    for f in (lambda: dose_stats(dose, mask, 0.004), lambda: dose_at_volume(dose, mask, 2),
              lambda: volume_at_dose(dose, mask, 50.0), lambda: cumulative_dvh(dose, mask),
              lambda: dose_at_volume_cm3(dose, mask, 0.03, 0.004)):
        with pytest.raises(ValueError, match=r"the dose has 1 NaN voxel\(s\) of the 100 in the mask"):
            f()
    outside = mask.copy()
    outside[0, 0, 0] = False                       # NaN outside the mask does not matter
    assert dose_at_volume(dose, outside, 2) == 99.0


def test_plot_dvh_curves_differ_in_style_and_empty_masks_are_named(tmp_path, monkeypatch):
    """Figures audit 16 F5/F9: DVH curves differ in line style and marker, not only in colour (the demo's two
    cochleae were green and red, the same for a deuteranope); an empty mask is named in the legend as such."""
    from mcproton.plots import _Figures

    dose, mask = _ramp()
    half = mask.copy()
    half.flat[::2] = False
    figs = []
    monkeypatch.setattr(_Figures, "close", staticmethod(lambda fig=None: figs.append(fig)))
    plot_dvh(dose, {"all": mask, "half": half, "none": np.zeros_like(mask)}, tmp_path / "dvh.png")
    ax = figs[0].axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in ("all", "half")]
    assert len({(ln.get_linestyle(), ln.get_marker()) for ln in lines}) == 2
    assert all(ln.get_marker() not in ("None", "", None) for ln in lines)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["all", "half", "none (no voxels)"]


def test_the_check_documents_the_rank_convention_it_uses():
    """docs/check.md states what D_v and V95/V100 are (audit 25 dvhgeo, F4: only this module's docstring did: voxel
    ranks, no interpolation, so a planning system's interpolated D50 of a gradient reads up to half a voxel's dose
    step apart), and the numbers it quotes are this module's: the 1..100 Gy ramp and a 40 mm box of 2 mm voxels in
    a gradient of 0.01 Gy/mm about 2 Gy."""
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "check.md").read_text().split())
    for said in ("D_v (D98, D95, D50, D2) is the dose of the voxel of rank ceil(v/100 x N) among the structure's N "
                 "voxels, hottest first, with no interpolation between voxels",
                 "for doses 1, 2, ..., 100 Gy in 100 voxels, D98 = 3 Gy, D95 = 6 Gy, D50 = 51 Gy and D2 = 99 Gy",
                 "V95 and V100 are the fractions of the structure's voxels with a dose at or above 95 and 100 % of "
                 "the prescription",
                 "D50 2.01 Gy here, 2.00 Gy interpolated, +0.5 %",
                 "the MC - TPS differences are not affected, as both sides take the same rule"):
        assert said in text, said
    from mcproton._check.compare import structure_stats

    dose, mask = _ramp()
    st = dose_stats(dose, mask)
    assert (st["d98"], st["d95"], st["d50"], st["d2"]) == (3.0, 6.0, 51.0, 99.0)
    c = -19.0 + 2.0 * np.arange(20)   # voxel centres of the box, x -20..20 mm
    box = 2.0 + 0.01 * np.broadcast_to(c[None, None, :], (20, 20, 20))
    row = structure_stats(box, box, {"PTV": np.ones(box.shape, bool)}, {"PTV": "PTV"}, 0.008, 2.0)["PTV"]["metrics"]
    assert round(row["D50"]["tps_gy"], 6) == 2.01 and round(row["D50"]["tps_gy"] / 2.0 - 1, 3) == 0.005
    # the voxels at or above 2.0 and 1.9 Gy: 10 and 15 of the 20 columns, no interpolation
    assert row["V100"]["tps"] == 0.5 and row["V95"]["tps"] == 0.75


def test_plot_dvh_legend_hides_no_curve(tmp_path, monkeypatch):
    """Figures audit 29, F4: the legend sat in the lower-left corner, where every low-dose OAR's cumulative DVH falls
    (the demo's spinal cord, 0-0.35 Gy at 0-30 %, ran under it).  Now it is beside the axes, and the figure (legend
    and all) stays inside the saved PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from mcproton.plots import _Figures

    dose, mask = _ramp()
    low = mask.copy()
    low.flat[::3] = False
    figs = []
    monkeypatch.setattr(_Figures, "close", staticmethod(lambda fig=None: figs.append(fig)))
    plot_dvh(dose * np.where(low, 0.05, 1.0), {f"organ {n}": mask if n == 0 else low for n in range(6)},
             tmp_path / "dvh.png", prescription_gy=50.0)
    fig = figs[0]
    r = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    legend, inside = ax.get_legend().get_window_extent(r), ax.get_window_extent(r)
    assert legend.x0 >= inside.x1 or legend.y0 >= inside.y1, (legend, inside)   # beside the axes, not over them
    assert legend.x1 <= fig.bbox.x1 and legend.y0 >= fig.bbox.y0, (legend, fig.bbox)

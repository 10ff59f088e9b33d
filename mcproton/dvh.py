"""Dose-volume histograms and dose statistics per structure.

Conventions (as in ICRU 83 / most TPSs, without interpolation between voxels).  This module is mcproton's one
implementation of them: the HDF5 DVH group (mcproton/_io/rtstruct.py), ``mcproton check`` and the body dose
summary call it.

* every voxel of a mask has the same volume (the grid's voxel volume);
* ``D_v%`` (e.g. D95, D2%) is the highest dose ``d`` such that at least ``v`` % of the structure's volume
  receives a dose ``>= d``, i.e. the minimum dose to the hottest ``v`` % of the volume (ICRU Report 83,
  "Prescribing, recording, and reporting intensity-modulated photon-beam therapy", J ICRU 10(1), 2010,
  section 3.7: D_V is the absorbed dose received by at least the volume V; D2% the near-maximum, D98% the
  near-minimum dose): with the doses sorted in descending order it is the dose of voxel number
  ``ceil(v/100 * N)`` (1-based), so for doses 1, 2, ..., 100 Gy D95 = 6 Gy and D2% = 99 Gy (a percentile
  with interpolation, ``np.percentile(d, 98)``, gives 98.02 Gy instead);
* ``D_V cc`` (e.g. D0.03cc, a near-maximum) is the same for an absolute volume: the dose of voxel number
  ``ceil(V / voxel volume)``;
* the cumulative DVH ``V(d)`` is the fraction (0..1) of the volume with a dose ``>= d``;
* the absolute volumes (``volume_cm3``, D0.03cc) need the voxel volume (``VoxelGeometry.voxel_volume_cm3``): a
  count of voxels is not a volume, so without it they are left out (before, 1 cm3 per voxel was assumed: 100
  voxels of 2 x 2 x 1 mm were "100 cm3" and D0.03cc the maximum);
* a dose with NaN in the mask is refused: NaN has no rank (sorted, it would be the hottest voxel).
"""
from __future__ import annotations

from math import ceil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


#: A structure of fewer voxels than this on the dose grid is flagged (``few_voxels``) in the check (the report's
#: table and a note) and in ``mcproton run``'s HDF5 DVH (an attribute of ``dvh/<ROI>`` and a console warning; infant
#: audit 2026-12-06, F3): its metrics are of these few voxels, each in or out by its centre (no partial volume).
#: Below 50 voxels D2 is the maximum voxel (ICRU 83 rank ceil(0.02 N) = 1), a single noisy MC voxel; and for a
#: cochlea or lens (0.06-0.2 cm3, 2-10 voxels on a 2-3 mm grid) centre-in rasterisation read Dmax 10-30 % and D2
#: 7-27 % below the exact partial-volume value in a 5 Gy/mm penumbra (structure audit 2026-12-05, F6: 200 positions
#: per grid).  30 voxels (0.24 cm3 at 2 mm, 0.81 cm3 at 3 mm) holds those organs and a chiasm on a 3 mm grid, not
#: a brainstem.
SMALL_STRUCTURE_VOXELS = 30

#: The mask volume of a structure (its voxels, each in or out by its centre) over its contour volume (polygon areas x
#: slice thickness, what a planning system calls the structure's volume) outside this range is noted by ``mcproton run``
#: and ``mcproton check``: its DVH is of a different volume than the one planned (a lens on a 4 mm grid: 0.47, its
#: mask one voxel; infant audit 2026-12-06, F3).  0.8-1.25: a factor 1.25 either way.
MASK_CONTOUR_RATIO_RANGE = (0.8, 1.25)


def _doses(dose: np.ndarray, mask: np.ndarray) -> np.ndarray:
    d = np.asarray(dose, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if d.shape != m.shape:
        raise ValueError(f"dose shape {d.shape} differs from mask shape {m.shape}")
    out = d[m]
    _refuse_nan(out)
    return out


def _refuse_nan(d: np.ndarray, sorted_doses: np.ndarray | None = None) -> None:
    """Refuse a structure's doses with NaN (``sorted_doses``, ascending, has them last): every statistic here ranks
    the doses, and NaN would be ranked the hottest (D2% of 1..100 Gy with one NaN read 100 Gy) while Dmax is NaN."""
    has_nan = (bool(sorted_doses.size) and bool(np.isnan(sorted_doses[-1]))) if sorted_doses is not None \
        else bool(np.isnan(d).any())
    if has_nan:
        n = int(np.count_nonzero(np.isnan(d)))
        raise ValueError(f"the dose has {n} NaN voxel(s) of the {d.size} in the mask: a DVH ranks the doses and NaN "
                         "has none (it would count as the hottest); replace them (np.nan_to_num) or leave them out "
                         "of the mask")


def _voxel_volume(voxel_volume_cm3: float | None) -> float | None:
    """The voxel volume (cm3) as a positive float, or None (not given)."""
    if voxel_volume_cm3 is None:
        return None
    from .settings import _real

    v = _real("voxel_volume_cm3", voxel_volume_cm3, "the volume of one voxel in cm3 (geometry.voxel_volume_cm3)")
    if not (v > 0 and np.isfinite(v)):
        raise ValueError(f"voxel_volume_cm3 must be a positive number of cm3; got {voxel_volume_cm3}")
    return v


#: the statistics that need the voxel volume (left out without it)
CM3_KEYS = ("volume_cm3", "d0.03cc")


class DoseStats(dict):
    """The dict of :func:`dose_stats`: a key left out for want of the voxel volume says so when asked for."""

    def __missing__(self, key: str) -> float:
        if key in CM3_KEYS:
            raise KeyError(f"{key!r} needs the voxel volume: give dose_stats(..., voxel_volume_cm3=..., e.g. "
                           "geometry.voxel_volume_cm3); without it the absolute volumes are left out")
        raise KeyError(key)


def _check_cm3(volume_cm3: float, voxel_volume_cm3: float) -> None:
    if not volume_cm3 > 0 or not voxel_volume_cm3 > 0:
        raise ValueError(f"volume_cm3 and voxel_volume_cm3 must be > 0; got {volume_cm3}, {voxel_volume_cm3}")


def _rank_percent(size: int, volume_percent: float) -> int:
    """The 1-based rank, in descending order, of the voxel that gives D_v for ``volume_percent`` (in (0, 100])."""
    return max(1, ceil(volume_percent / 100.0 * size - 1e-9))


def _rank_cm3(size: int, volume_cm3: float, voxel_volume_cm3: float) -> int:
    """The 1-based rank, in descending order, of the voxel that gives D_V for ``volume_cm3``."""
    _check_cm3(volume_cm3, voxel_volume_cm3)
    return min(size, max(1, ceil(volume_cm3 / voxel_volume_cm3 - 1e-9)))


def _nth_largest(d: np.ndarray, n: int, s: np.ndarray | None = None) -> float:
    """The ``n``-th largest of the doses ``d`` (``s``: ``d`` sorted ascending, if at hand): the same value
    either way (np.partition and np.sort order the same values, NaN last)."""
    if s is not None:
        return float(s[s.size - n])
    return float(np.partition(d, d.size - n)[d.size - n])


def dose_at_volume(dose: np.ndarray, mask: np.ndarray, volume_percent: float) -> float:
    """D_v: the highest dose received by at least ``volume_percent`` % of the masked volume (NaN if empty)."""
    if not 0 < volume_percent <= 100:
        raise ValueError(f"volume_percent must lie in (0, 100]; got {volume_percent}")
    d = _doses(dose, mask)
    if d.size == 0:
        return float("nan")
    return _nth_largest(d, _rank_percent(d.size, volume_percent))


def dose_at_volume_cm3(dose: np.ndarray, mask: np.ndarray, volume_cm3: float, voxel_volume_cm3: float) -> float:
    """D_V for an absolute volume (e.g. D0.03cc, a near-maximum): the highest dose received by at least
    ``volume_cm3`` of the masked voxels (the dose of voxel number ceil(volume / voxel volume) in descending
    order; the whole structure if it is smaller).  NaN if the mask is empty."""
    _check_cm3(volume_cm3, voxel_volume_cm3)
    d = _doses(dose, mask)
    if d.size == 0:
        return float("nan")
    return _nth_largest(d, _rank_cm3(d.size, volume_cm3, voxel_volume_cm3))


def volume_at_dose(dose: np.ndarray, mask: np.ndarray, dose_gy: float) -> float:
    """V_d: fraction (0..1) of the masked volume receiving at least ``dose_gy``."""
    d = _doses(dose, mask)
    return float((d >= dose_gy).mean()) if d.size else float("nan")


def cumulative_dvh(dose: np.ndarray, mask: np.ndarray, bins: int | Sequence[float] = 200,
                   d_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(dose levels in Gy, fraction of the volume with dose >= level).  ``bins`` is a number of equal steps
    from 0 to ``d_max`` (default: the maximum dose in the mask) or explicit levels."""
    d = _doses(dose, mask)
    if np.isscalar(bins):
        top = float(d_max if d_max is not None else (d.max() if d.size else 1.0)) or 1.0
        # np.isscalar's TypeGuard (numpy stubs) admits complex and memoryview, which int() rejects
        levels = np.linspace(0.0, top, int(bins) + 1)  # type: ignore[arg-type]
    else:
        levels = np.asarray(bins, dtype=np.float64)
    if d.size == 0:
        return levels, np.full(levels.shape, np.nan)
    return levels, cumulative_of_sorted(np.sort(d), levels)


def cumulative_of_sorted(s: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The cumulative DVH (fraction of the volume with dose >= level) at ``levels`` of the structure whose
    doses, sorted ascending, are ``s`` (not empty)."""
    return 1.0 - np.searchsorted(s, levels, side="left") / s.size


def dose_stats(dose: np.ndarray, mask: np.ndarray, voxel_volume_cm3: float | None = None,
               prescription_gy: float | None = None) -> dict[str, float]:
    """The voxel count, Dmean, Dmin, Dmax, D98, D95, D50 and D2% of one structure (Gy); with ``voxel_volume_cm3``
    (the grid's voxel volume in cm3, ``geometry.voxel_volume_cm3``) also its volume ``volume_cm3`` and the
    near-maximum D0.03cc, left out without it (asking for them then says so).  With ``prescription_gy``: also V95
    (fraction >= 95 % of it) and the fraction of voxels within +-5 % of it.  A dose with NaN in the mask is
    refused."""
    return stats_of_doses(_doses(dose, mask), voxel_volume_cm3, prescription_gy)


def stats_of_doses(d: np.ndarray, voxel_volume_cm3: float | None = None, prescription_gy: float | None = None,
                   sorted_doses: np.ndarray | None = None) -> dict[str, float]:
    """:func:`dose_stats` of the structure's doses ``d`` (float64, in the mask's C order, as ``dose[mask]``);
    ``sorted_doses``, ``np.sort(d)`` if at hand, spares the partitions (the same numbers)."""
    vv = _voxel_volume(voxel_volume_cm3)
    _refuse_nan(d, sorted_doses)
    out = DoseStats(voxels=int(d.size))
    if vv is not None:
        out["volume_cm3"] = float(d.size * vv)
    if d.size == 0:
        out.update({k: float("nan") for k in ("dmean", "dmin", "dmax", "d98", "d95", "d50", "d2")})
        if vv is not None:
            out["d0.03cc"] = float("nan")
        return out
    s = sorted_doses

    def dv(v: float) -> float:
        return _nth_largest(d, _rank_percent(d.size, v), s)

    out.update({"dmean": float(d.mean()), "dmin": float(d.min()), "dmax": float(d.max()),
                "d98": dv(98), "d95": dv(95), "d50": dv(50), "d2": dv(2)})
    if vv is not None:
        out["d0.03cc"] = _nth_largest(d, _rank_cm3(d.size, 0.03, vv), s)
    if prescription_gy:
        p = float(prescription_gy)
        out["v95"] = float((d >= 0.95 * p).mean())
        out["within_5pct"] = float((np.abs(d - p) <= 0.05 * p).mean())
        out["homogeneity_index"] = (out["d2"] - out["d98"]) / out["d50"] if out["d50"] > 0 else float("nan")
    return out


def dvh_table(dose: np.ndarray, masks: Mapping[str, np.ndarray], voxel_volume_cm3: float | None = None,
              prescription_gy: Mapping[str, float] | None = None) -> dict[str, dict[str, float]]:
    """``dose_stats`` for every named mask (``voxel_volume_cm3``: as there, needed for the absolute volumes)."""
    pres = prescription_gy or {}
    return {nm: dose_stats(dose, m, voxel_volume_cm3, pres.get(nm)) for nm, m in masks.items()}


def plot_dvh(dose: np.ndarray, masks: Mapping[str, np.ndarray], path: str | Path, *,
             prescription_gy: float | None = None, title: str | None = None, bins: int = 300,
             dose_label: str = "dose (Gy)") -> Path:
    """Cumulative DVHs of the named masks in one figure (PNG).  Each curve has its own colour, line style and
    marker (mcproton.plots.structure_style, as the plane figures' outlines): a reader with red/green colour-vision
    deficiency, or a greyscale printout, tells them apart (figures audit 16 F5).  A mask without voxels is named in
    the legend as such instead of left out."""
    from .plots import _plt, missing_glyphs_said_once, mpl_text, structure_style

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.2, 4.5), dpi=110)   # 7 in of axes, the legend beside them
    top = max((float(np.asarray(dose)[np.asarray(m, bool)].max()) for m in masks.values() if np.any(m)),
              default=1.0) * 1.05
    for n, (nm, m) in enumerate(masks.items()):
        st = structure_style(n)
        shown = mpl_text(nm)   # an ROI name, drawn as it is (never mathtext)
        if not np.any(m):   # in the legend, without a curve
            ax.plot([], [], lw=1.6, color=st["color"], linestyle=st["linestyle"], label=f"{shown} (no voxels)")
            continue
        lv, fr = cumulative_dvh(dose, m, bins=bins, d_max=top)
        ax.plot(lv, 100 * fr, lw=1.6, label=shown, markevery=max(1, bins // 12), markersize=4, **st)
    if prescription_gy:
        ax.axvline(prescription_gy, color="0.4", ls="--", lw=0.8)
        ax.text(prescription_gy, 3, f" prescription {prescription_gy:.3g} Gy", color="0.3", fontsize=8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, 102)
    ax.set_xlabel(dose_label)
    ax.set_ylabel("volume (%)")
    ax.grid(alpha=0.3)
    # beside the axes: in the lower-left corner it hid the low-dose OARs' curves, which all fall there (the demo's
    # spinal cord; figures audit 29, F4)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    path = Path(path)
    with missing_glyphs_said_once(fig):   # a name's character the font lacks: one warning, not one per character
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return path

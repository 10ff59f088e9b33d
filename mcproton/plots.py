"""Figures people would rather look at than read: depth-dose curves and dose over the anatomy."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path, **kw) -> Path:
    """Save ``fig`` atomically (a temporary file renamed into place: a full disk leaves no partial PNG) and close
    it; the format follows the file name's suffix (default PNG)."""
    from ._io.atomic import atomic_write

    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, **kw))
    finally:
        plt.close(fig)


def _argmax_zyx(a: np.ndarray) -> tuple[int, int, int]:
    """The (z, y, x) index of the (first) maximum of the 3-D array ``a``."""
    z, y, x = (int(v) for v in np.unravel_index(int(np.argmax(a)), a.shape))
    return z, y, x


def plot_depth_dose(result, path: str | Path, title: str | None = None) -> Path:
    """Integrated depth-dose (MeV cm2/g per primary) versus depth along z, with R80 marked."""
    plt = _plt()
    z, idd = result.integrated_depth_dose("z")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(z, idd, lw=1.5, color="C0", label="mcproton")
    i = int(np.argmax(idd))
    tail = np.nonzero(idd[i:] < 0.8 * idd[i])[0]
    if tail.size:
        j = i + tail[0]
        r80 = float(np.interp(0.8 * idd[i], [idd[j], idd[j - 1]], [z[j], z[j - 1]]))
        ax.axvline(r80, color="0.5", ls="--", lw=0.8)
        ax.text(r80, 0.82 * idd[i], f" R80 = {r80:.2f} mm", color="0.3", fontsize=8)
    ax.set_xlabel("depth in phantom (mm)")
    ax.set_ylabel("integrated depth dose (MeV cm$^2$ g$^{-1}$ per proton)")
    from ._run.result import early_stop_note

    early = early_stop_note(result)
    ax.set_title(title or f"{result.provenance.get('beam', {}).get('name', '')} - {result.primaries:,} protons, "
                 f"{result.backend}" + (f"\n{early.upper()}" if early else ""), fontsize=None if not early else 9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_dose_planes(result, path: str | Path, centre_zyx: tuple[int, int, int] | None = None,
                     title: str | None = None, *, structures: dict | None = None,
                     isodose_gy: Sequence[float] | None = None, reference_gy: float | None = None,
                     body_mask=None) -> Path:
    """Dose over the density (anatomy) in three orthogonal planes through ``centre_zyx`` (default: Dmax).

    structures : {name: boolean (z, y, x) mask} drawn as outlines (e.g. target, brainstem, cochleae).
    isodose_gy : dose levels (Gy) drawn as isodose lines; with ``reference_gy`` (e.g. the prescription) the
        default levels are 30, 50, 80, 95 and 107 % of it, and the colour scale ends at 110 % of it.
    body_mask : voxels where the dose is shown (default: all); e.g. density > 0.5 g/cm3 hides the
        dose-to-air spikes outside the patient.
    """
    dose = np.asarray(result.dose_gy_zyx)
    body = None if body_mask is None else np.asarray(body_mask, bool)
    if centre_zyx is None or not reference_gy:   # the whole grid only for its maximum
        whole = dose if body is None else np.where(body, dose, 0.0)
        if centre_zyx is None:
            centre_zyx = _argmax_zyx(whole)
        top = float(whole.max())
        del whole
    dmax = float(reference_gy * 1.1) if reference_gy else (top or 1.0)
    levels = list(isodose_gy) if isodose_gy is not None else (
        [f * reference_gy for f in (0.3, 0.5, 0.8, 0.95, 1.07)] if reference_gy else [])

    def fmt(lv: float) -> str:
        return f"{100 * lv / reference_gy:.0f}%" if reference_gy else f"{lv:.2g}"

    def plane(sl):   # the dose (0 outside the body) and the voxels shown, of one plane only
        d = dose[sl] if body is None else np.where(body[sl], dose[sl], 0.0)
        return d, d >= 0.05 * dmax

    return _plot_planes(result, plane, path, centre_zyx, title, structures, dmax, levels, fmt,
                        f"physical dose to medium ({result.normalisation})")


def plot_let_planes(result, path: str | Path, centre_zyx: tuple[int, int, int] | None = None,
                    title: str | None = None, *, structures: dict | None = None, reference_gy: float | None = None,
                    min_dose_fraction: float = 0.1, body_mask=None, vmax: float | None = None) -> Path:
    """Dose-averaged LET of protons (keV/um) over the anatomy in three planes through ``centre_zyx``, shown
    where the dose is at least ``min_dose_fraction`` of ``reference_gy`` (default: of the maximum dose): the
    LETd of nearly undosed voxels is noisy and clinically irrelevant.  Colour scale up to ``vmax`` (default:
    the 99th percentile of the shown voxels)."""
    dose = np.asarray(result.dose_gy_zyx)
    let = np.asarray(result.let_d_kev_um_zyx)
    shown = _let_shown(dose, reference_gy, min_dose_fraction, body_mask)
    if centre_zyx is None:
        centre_zyx = _argmax_zyx(dose)
    top = vmax if vmax is not None else (float(np.percentile(let[shown], 99)) if shown.any() else 1.0)
    return _plot_planes(result, lambda sl: (let[sl], shown[sl]), path, centre_zyx, title, structures,
                        max(top, 1e-6), [], str,
                        f"LETd of protons (keV/um), where dose >= {100 * min_dose_fraction:.0f} % of "
                        f"{'the reference' if reference_gy else 'Dmax'}")


def _let_shown(dose: np.ndarray, reference_gy, min_dose_fraction: float, body_mask) -> np.ndarray:
    ref = float(reference_gy) if reference_gy else float(dose.max()) or 1.0
    shown = dose >= min_dose_fraction * ref
    if body_mask is not None:
        shown &= np.asarray(body_mask, bool)
    return shown


def let_colour_top(result, reference_gy: float | None = None, min_dose_fraction: float = 0.1,
                   body_mask=None) -> float:
    """The default ``vmax`` of :func:`plot_let_planes` (the 99th percentile of the LETd of the voxels it shows),
    for a caller that draws the planes from the planes' values alone."""
    shown = _let_shown(np.asarray(result.dose_gy_zyx), reference_gy, min_dose_fraction, body_mask)
    let = np.asarray(result.let_d_kev_um_zyx)
    return float(np.percentile(let[shown], 99)) if shown.any() else 1.0


def plane_slices(centre_zyx: tuple[int, int, int]) -> list[tuple]:
    """The axial, coronal and sagittal planes through ``centre_zyx`` as index tuples of a (z, y, x) array, in the
    order :func:`plot_dose_planes` and :func:`plot_let_planes` draw them."""
    k, j, i = centre_zyx
    return [(k, slice(None), slice(None)), (slice(None), j, slice(None)), (slice(None), slice(None), i)]


def _plot_planes(result, plane, path, centre_zyx, title, structures, vmax, levels, level_fmt,
                 colorbar_label) -> Path:
    """Values over the density in three orthogonal planes through ``centre_zyx``; ``plane(index)`` gives the
    values and the voxels shown of one plane (computed per plane, not over the whole grid); ``levels`` drawn
    as labelled contour lines."""
    plt = _plt()
    g = result.geometry
    rho = g.density_g_cm3_zyx
    k, j, i = centre_zyx
    x, y, z = g.axis_mm("x"), g.axis_mm("y"), g.axis_mm("z")
    sl = plane_slices(centre_zyx)
    planes = [("axial (z = %.0f mm)" % z[k], (x, y), (x[0], x[-1], y[-1], y[0]),
               "x (mm, +left)", "y (mm, +posterior)"),
              ("coronal (y = %.0f mm)" % y[j], (x, z), (x[0], x[-1], z[0], z[-1]),
               "x (mm, +left)", "z (mm, +superior)"),
              ("sagittal (x = %.0f mm)" % x[i], (y, z), (y[0], y[-1], z[0], z[-1]),
               "y (mm, +posterior)", "z (mm, +superior)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), dpi=100)
    im = None
    handles = {}
    for n, (ax, (name, (h, v), ext, xl, yl)) in enumerate(zip(axes, planes)):
        origin = "upper" if n == 0 else "lower"
        (d, shown), r = plane(sl[n]), rho[sl[n]]
        ax.imshow(r, cmap="gray", extent=ext, origin=origin, vmin=0, vmax=2.0, aspect="equal")
        m = np.ma.masked_where(~np.asarray(shown), d)
        im = ax.imshow(m, cmap="jet", alpha=0.45, extent=ext, origin=origin, vmin=0, vmax=vmax, aspect="equal")
        if levels and d.max() > min(levels):
            cs = ax.contour(h, v, d, levels=sorted(levels), colors="white", linewidths=0.7)
            ax.clabel(cs, cs.levels, fmt={lv: level_fmt(lv) for lv in cs.levels}, fontsize=6, inline=True)
        for c, (nm, mask) in enumerate((structures or {}).items()):
            ms = np.asarray(mask, bool)[sl[n]]
            if ms.any():
                ax.contour(h, v, ms.astype(float), levels=[0.5], colors=[f"C{c}"], linewidths=1.1)
                handles[nm] = f"C{c}"
        ax.set_title(name)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    if handles:
        from matplotlib.lines import Line2D

        fig.legend([Line2D([0], [0], color=c, lw=1.5) for c in handles.values()], list(handles),
                   loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.colorbar(im, ax=axes, shrink=0.8, label=colorbar_label)
    if title is None:   # a run stopped early, or short of its target uncertainty, says so (as plot_depth_dose)
        from ._run.result import early_stop_note

        title = (early_stop_note(result) or "").upper() or None
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path, bbox_inches="tight")

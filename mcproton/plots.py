"""Figures people would rather look at than read: depth-dose curves and dose over the anatomy."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    ax.set_title(title or f"{result.provenance.get('beam', {}).get('name', '')} - {result.primaries:,} protons, "
                 f"{result.backend}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_dose_planes(result, path: str | Path, centre_zyx: tuple[int, int, int] | None = None,
                     title: str | None = None) -> Path:
    """Dose over the density (anatomy) in three orthogonal planes through ``centre_zyx`` (default: Dmax)."""
    plt = _plt()
    g = result.geometry
    dose = result.dose_gy_zyx
    rho = g.density_g_cm3_zyx
    if centre_zyx is None:
        centre_zyx = tuple(int(v) for v in np.unravel_index(int(np.argmax(dose)), dose.shape))
    k, j, i = centre_zyx
    x, y, z = g.axis_mm("x"), g.axis_mm("y"), g.axis_mm("z")
    planes = [("axial (z = %.0f mm)" % z[k], dose[k], rho[k], (x[0], x[-1], y[-1], y[0]), "x (mm)", "y (mm)"),
              ("coronal (y = %.0f mm)" % y[j], dose[:, j, :], rho[:, j, :], (x[0], x[-1], z[0], z[-1]), "x (mm)", "z (mm)"),
              ("sagittal (x = %.0f mm)" % x[i], dose[:, :, i], rho[:, :, i], (y[0], y[-1], z[0], z[-1]), "y (mm)", "z (mm)")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8), dpi=100)
    dmax = float(dose.max()) or 1.0
    for ax, (name, d, r, ext, xl, yl) in zip(axes, planes):
        origin = "upper" if name.startswith("axial") else "lower"
        ax.imshow(r, cmap="gray", extent=ext, origin=origin, vmin=0, vmax=2.0, aspect="equal")
        m = np.ma.masked_less(d, 0.05 * dmax)
        im = ax.imshow(m, cmap="jet", alpha=0.5, extent=ext, origin=origin, vmin=0, vmax=dmax, aspect="equal")
        ax.set_title(name)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    fig.colorbar(im, ax=axes, shrink=0.8, label=f"dose ({result.normalisation})")
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path

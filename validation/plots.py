"""Figures of the report: an overlay panel (simulated and reference) above a difference panel."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .core import Figure


@dataclass
class Series:
    x: Sequence[float]
    y: Sequence[float]
    label: str = ""
    style: str = "-"          # matplotlib format string
    kw: dict = field(default_factory=dict)


def overlay_with_difference(title: str, top: list[Series], bottom: list[Series], xlabel: str,
                            ylabel_top: str, ylabel_bottom: str, band: float | None = None,
                            logx: bool = False, logy: bool = False, filename: str = "") -> Figure:
    """Two stacked panels sharing x; ``band`` draws the +-tolerance band on the difference panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.5, 5.8), sharex=True,
                                   gridspec_kw={"height_ratios": [2.2, 1]})
    for s in top:
        ax1.plot(np.asarray(s.x), np.asarray(s.y), s.style, label=s.label, **s.kw)
    for s in bottom:
        ax2.plot(np.asarray(s.x), np.asarray(s.y), s.style, label=s.label, **s.kw)
    if band is not None:
        ax2.axhspan(-band, band, color="tab:green", alpha=0.12, lw=0, label="tolerance")
    ax2.axhline(0, color="k", lw=0.6)
    ax1.set_title(title, fontsize=10)
    ax1.set_ylabel(ylabel_top)
    ax2.set_ylabel(ylabel_bottom)
    ax2.set_xlabel(xlabel)
    if logx:
        ax1.set_xscale("log")
    if logy:
        ax1.set_yscale("log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return Figure(title, buf.getvalue(), filename)

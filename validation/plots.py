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


#: the legend of a ``band``: a tolerance that each plotted point of the difference panel must meet
POINTWISE_LABEL = "tolerance (each point)"


def overlay_with_difference(title: str, top: list[Series], bottom: list[Series], xlabel: str,
                            ylabel_top: str, ylabel_bottom: str, band: float | None = None,
                            logx: bool = False, logy: bool = False, filename: str = "",
                            guide: float | None = None, guide_label: str = "",
                            band_label: str = POINTWISE_LABEL, credit: str = "") -> Figure:
    """Two stacked panels sharing x.

    ``band`` draws the +-tolerance band on the difference panel: only where the tolerance applies to each plotted
    point of that panel (e.g. each slab's range shift, each depth's sigma).  Where the criterion is not pointwise (a
    gamma index, a dose at one depth, a chi-square, a range read off the curve) give ``guide`` instead: dotted
    +-``guide`` lines with ``guide_label``, which must say what they are (e.g. "+-1 %: the gamma dose criterion,
    not a pointwise tolerance").

    ``credit`` (sources.figure_credit): the source of the third-party data the figure plots, printed under the
    panels, so that a figure copied out of the report keeps its attribution (CC BY 4.0 asks for it)."""
    if guide is not None and not guide_label:
        raise ValueError("a guide line needs a label saying what it is (it is not a pointwise tolerance)")
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
        ax2.axhspan(-band, band, color="tab:green", alpha=0.12, lw=0, label=band_label)
    if guide is not None:
        ax2.axhline(guide, color="0.45", lw=0.8, ls=":", label=guide_label)
        ax2.axhline(-guide, color="0.45", lw=0.8, ls=":")
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
    if credit:
        import textwrap

        lines = textwrap.wrap(credit, 140)
        fig.tight_layout(rect=(0, 0.012 + 0.022 * len(lines), 1, 1))
        fig.text(0.01, 0.008, "\n".join(lines), fontsize=6.5, color="0.3", ha="left", va="bottom")
    else:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return Figure(title, buf.getvalue(), filename, band=band, guide=guide, guide_label=guide_label, credit=credit)

"""The report of ``mcproton check``: one self-contained HTML page (figures embedded as PNG) and the JSON."""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from .._io.console import printable_lines
from ..plots import high_dose_centre, missing_glyphs, missing_glyphs_said_once, mpl_text, quiet_glyph_warnings, \
    say_missing_glyphs, voxel_edges_extent
from .level_text import drop_zero_sign
from .levels import FRAME, ActionLevels

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _html(text: object) -> str:
    """``text`` for an HTML page: its control characters but line breaks and tabs escaped as ``\\x1b`` (an HTML
    document may not hold C0 or C1 controls; a DICOM PatientName or ROI name may: the 29th audit's untrusted
    inputs, F6), then ``&``, ``<``, ``>`` and quotes as HTML's character references."""
    return html.escape(printable_lines(text))


#: The resolution of the report's PNG figures (dots per inch; CheckResult.save_figures' default): drawn at their
#: printed width (FIGURE_WIDTH_IN), 150 dpi keeps 7 pt text legible on paper (90 dpi before audit 13, F8).
REPORT_DPI = 150

#: The width the report's figures are drawn at (inches): an A4 page less 12 mm margins is 186 mm (7.32 in), so a
#: figure prints at its own size and its text at the size it is drawn at.  Before audit 13 (F8) the planes figure
#: was 18.5 in wide and printed at 0.42 of its size: 6 pt tick labels became 2.5 pt.
FIGURE_WIDTH_IN = 7.2

#: The smallest text of a figure (points, at the printed size): below about 7 pt a laser printout is hard to read
#: (audit 13, F8).  TITLE_PT for the panel titles, SUPTITLE_PT for a figure's own title.
MIN_FONT_PT = 7.0
TITLE_PT = 8.0
SUPTITLE_PT = 9.0

#: The colour maps, chosen so that a greyscale printout keeps what they show (audit 13, F9: jet printed 0 and the
#: maximum dose both black, RdBu_r -5 % and +5 % alike, RdYlGn_r gamma 0 and 1.5 alike).  The doses: viridis,
#: whose lightness rises with the dose.  MC - TPS (and the distal R80 difference): cividis, dark blue below zero
#: through grey to light yellow above it, its lightness rising monotonically, so that darker reads "MC below the
#: TPS" in grey too.  The MC's uncertainty: magma (monotonic, unlike the doses' map in hue).  The gamma: a grey ramp
#: up to 1 and one saturated red above it (gamma_cmap), darker than any passing grey.
DOSE_CMAP = "viridis"
DIFFERENCE_CMAP = "cividis"
UNCERTAINTY_CMAP = "magma"
#: the passing gammas' grey ramp (grey levels at gamma 0 and 1) and the colour above 1 (luminance 0.32)
GAMMA_GREYS = (0.92, 0.55)
GAMMA_FAIL_RGB = (0.84, 0.10, 0.10)

#: The DVH's markers, one per structure (with its colour and a direct label), so that its curves are told apart
#: in a greyscale printout too; TPS solid, MC dashed.  Twenty, as many as the figure draws (DVH_FIGURE_MAX): ten
#: filled ones for the first ten structures, then ten of another form (open strokes, thin diamond, pentagon, hexagon)
#: for the next ten, whose colours repeat the first ten's: before 2026-12-06 the 11th structure had the 1st's blue
#: and a hexagon that at 4 pt looked like its circle (figures audit 16 F8).
DVH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">",
               "+", "x", "1", "2", "3", "4", "|", "d", "p", "h")

#: The DVH's line widths (points): a target's TPS and MC curves heavier than the others', so it stands out from
#: an OAR of the same colour (figures audit 16 F8)
DVH_LW_TARGET = 2.4
DVH_LW = 1.4

#: The volumes (%) at which the DVH figure tries, in this order, to write a structure's name beside its TPS curve
#: (where the curve crosses them), taking the first place where the name overlaps no name written before and stays
#: inside the axes; a structure with no such place is named in the legend only.  Before 2026-12-06 the volume was
#: 90 - 10 (n mod 8) for the n-th structure, whatever was there: the low-dose OARs, whose curves all fall at ~0 Gy,
#: printed their names on top of each other (figures audit 16 F8).
DVH_LABEL_VOLUMES = (50, 70, 30, 90, 10, 60, 40, 80, 20, 95, 5)


def gamma_cmap():
    """The 2-D gamma maps' colour map, for vmin 0, vmax 1: GAMMA_GREYS from gamma 0 to 1, GAMMA_FAIL_RGB above
    (its "over" colour; the colour bar's extension)."""
    from matplotlib.colors import LinearSegmentedColormap

    lo, hi = GAMMA_GREYS
    return LinearSegmentedColormap.from_list("gamma_pass_grey", [(lo, lo, lo), (hi, hi, hi)],
                                             N=256).with_extremes(over=GAMMA_FAIL_RGB)


def _new_figure(figsize: tuple[float, float], layout: str | None = None) -> Figure:
    """A figure outside pyplot's registry: no global state (nothing to close; it is freed once unreferenced), so
    scripts that check many plans do not accumulate open figures.  Saving picks the Agg canvas by format.
    ``layout``: matplotlib's layout engine, set before the colour bars are added (constrained layout needs that)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout=layout)


def _panel_title(ax, text: str) -> None:
    """The title of a map or ray-histogram panel (TITLE_PT) at matplotlib's default place (1.0 axes height plus
    the default pad), given explicitly: matplotlib then draws it there without first laying out the panel's y tick
    labels once more to look for an axis offset text under the title (these panels' mm and count axes have none).
    The same picture, one tick layout pass fewer per panel."""
    ax.set_title(text, fontsize=TITLE_PT, y=1.0)


def _axis_labels(ax, xlabel: str, ylabel: str) -> None:
    """A panel's axis labels and tick labels at MIN_FONT_PT."""
    ax.set_xlabel(xlabel, fontsize=MIN_FONT_PT)
    ax.set_ylabel(ylabel, fontsize=MIN_FONT_PT)
    ax.tick_params(labelsize=MIN_FONT_PT)


def _colour_bar(fig, im, ax, **kw):
    """A panel's colour bar (its ticks at MIN_FONT_PT; its unit is in the panel's title), in an inset beside the
    panel: it follows the panel's image (aspect "equal" shrinks it) without a layout engine (constrained layout
    cost ~0.15 CPU s per figure; MAPS_LAYOUT sets the margins for MIN_FONT_PT at FIGURE_WIDTH_IN instead)."""
    cb = fig.colorbar(im, cax=ax.inset_axes((1.04, 0.0, 0.05, 1.0)), **kw)
    cb.ax.tick_params(labelsize=MIN_FONT_PT)
    return cb


def _png(fig: Figure, glyphs: dict[str, str] | None = None) -> str:
    """The report's encoding of a figure: PNG at REPORT_DPI, base64 (for a data: URI).  A character of a name that
    the font lacks: one warning, not one per figure (plots.missing_glyphs_said_once); with ``glyphs`` (a figure
    worker's) those characters are added to it instead, for the check to say (FigureWorkers.render)."""
    buf = io.BytesIO()
    if glyphs is not None:
        quiet_glyph_warnings()
        try:
            fig.savefig(buf, format="png", dpi=REPORT_DPI)
        finally:
            glyphs.update((ch, f) for ch, f in missing_glyphs(fig).items() if ch not in glyphs)
    else:
        with missing_glyphs_said_once(fig):
            fig.savefig(buf, format="png", dpi=REPORT_DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


#: Without a target, the planes of the maps cut the TPS dose's high-dose region: the body voxels of at least this
#: fraction of its maximum (plots.near_max).  Before 2026-12-06 they went through the TPS maximum, which in a
#: craniospinal plan without a typed target is a hot voxel of the lateral brain fields: the sagittal plane lay
#: 22.5 mm off the spinal canal and the coronal one in front of the brain, so no map showed the spinal fields
#: (csi audit F4).  Half the maximum takes in every field that gives the prescription, on whatever isocentre.
CENTRE_HIGH_DOSE_LEVEL = 0.5


def _first_target(res) -> str | None:
    """The first target structure with voxels on the grid (the maps' centre), None without one."""
    for nm, row in res.structures.items():
        m = res.masks.get(nm)
        if row["kind"] == "target" and m is not None and m.any():
            return nm
    return None


def _centre(res) -> tuple[int, int, int]:
    """The plot centre: the centroid of the first target; without one, the TPS dose's high-dose region (the
    dose-weighted centroid of the body voxels at >= CENTRE_HIGH_DOSE_LEVEL of its maximum, the sagittal plane
    through their median x): _centre_words says which."""
    nm = _first_target(res)
    if nm is not None:
        return tuple(int(np.rint(v)) for v in np.argwhere(res.masks[nm]).mean(axis=0))  # type: ignore[return-value]
    body = res.body_zyx if res.body_zyx is not None and res.body_zyx.any() else None
    return high_dose_centre(res.tps_gy_zyx, body, level=CENTRE_HIGH_DOSE_LEVEL, median_axes=(2,))


def _centre_words(res) -> str:
    """What the planes of the maps go through (_centre): "the target", else "the high-dose region"."""
    return "the target" if _first_target(res) is not None else "the high-dose region"


def _dose(res) -> dict[str, str]:
    """What the compared doses are (compute.describe_dose: unit, quantity, fractions, label)."""
    from .compute import mc_dose_description

    return mc_dose_description(res.inputs, res.mc)


#: the top of the colour scale of the MC's statistical uncertainty map (1 sd, % of the TPS maximum): three times the
#: default 1 % target, so that a map at the target is mid-scale and a noisier region stands out
UNCERTAINTY_MAP_MAX_PCT = 3.0

#: The margins and spacing (figure fractions) of the 2 x 3 map figures at FIGURE_WIDTH_IN: room between panels for
#: a colour bar with its ticks and label and the next panel's y labels, all at MIN_FONT_PT.
MAPS_LAYOUT = {"left": 0.075, "right": 0.94, "bottom": 0.09, "top": 0.9, "wspace": 0.7, "hspace": 0.4}

#: The planes of the dose maps, one figure each (named so), in the report's order.
PLANES = ("axial", "coronal", "sagittal")

#: What the maps' encodings mean, in the sixth panel of each plane's figure (a greyscale printout needs it).
MAPS_KEY = ("How to read these maps:", "white line: the body outline;", "  structures: legend below",
            "radiological view: the patient's", "  right on the viewer's left",
            "MC - TPS: darker = MC below", "  the TPS, lighter = above it,", "  grey = equal",
            "gamma: grey = pass (<= 1),", "  red = fail (> 1)",
            "blank: outside the body, or", "  below 10 % of the TPS", "  maximum")


#: The maps' axis labels: DICOM patient axes with the direction each grows in, as mcproton.plots' figures (before
#: 2026-12-06 a bare "x (mm)", and which side is the patient's left was written nowhere: figures audit 16 F4).  The
#: maps are in radiological view: the patient's right on the viewer's left, anterior up in the axial plane.
AXIS_LABELS = {"x": "x (mm, +left)", "y": "y (mm, +posterior)", "z": "z (mm, +superior)"}

#: The most structures outlined on the maps (with a legend): the targets (at most PLANE_OUTLINE_TARGETS of them),
#: then the OARs of highest TPS dose (Dmax, else D2), as the DVH figure ranks them.  A few: more outlines hide the
#: maps they are drawn on.  Before 2026-12-06 the maps drew the body only, so a difference along an organ at risk
#: (the OpenTPS head case's brainstem, +19 % Dmean) could not be placed from the maps (figures audit 16 F4).
PLANE_OUTLINES_MAX = 4
PLANE_OUTLINE_TARGETS = 2

#: The outlines' colours and line styles, in the order of the structures outlined (the targets first): colours seen
#: on the viridis, cividis and grey maps and on the blank (white) background, and each its own line style, so that a
#: greyscale printout tells them apart too.  White is the body's.
PLANE_OUTLINE_STYLES = (("#e7298a", "-"), ("#ff7f00", "--"), ("#00d5ff", "-."), ("black", ":"))


def _plane(res, centre, which: str):
    """The slice of the plane ``which`` through ``centre``: (title, numpy index, (horizontal, vertical) axes,
    their labels, image origin)."""
    z, y, x = res.axes_zyx
    k, j, i = centre
    lab = AXIS_LABELS
    return {"axial": (f"axial z = {z[k]:.1f} mm", np.s_[k, :, :], (x, y), (lab["x"], lab["y"]), "upper"),
            "coronal": (f"coronal y = {y[j]:.1f} mm", np.s_[:, j, :], (x, z), (lab["x"], lab["z"]), "lower"),
            "sagittal": (f"sagittal x = {x[i]:.1f} mm", np.s_[:, :, i], (y, z), (lab["y"], lab["z"]),
                         "lower")}[which]


def _tps_top(res, nm: str) -> float:
    """Structure ``nm``'s TPS maximum (Dmax, else D2; -inf without one): how the DVH figure and the maps' outlines
    rank the structures."""
    met = res.structures[nm]["metrics"]
    v = (met.get("Dmax") or met.get("D2") or {}).get("tps_gy")
    return float(v) if v is not None and np.isfinite(v) else -np.inf


def _outlined(res) -> dict[str, np.ndarray]:
    """The structures outlined on the maps (PLANE_OUTLINES_MAX of them at most): the targets with metrics, then
    the OARs by their TPS maximum (Dmax, else D2) from the highest; the body (external) is drawn as the body."""
    ms = {nm: m for nm, m in res.masks.items() if nm in res.structures and m is not None and m.any()}
    targets = [nm for nm in ms if res.structures[nm]["kind"] == "target"][:PLANE_OUTLINE_TARGETS]
    oars = sorted((nm for nm in ms if res.structures[nm]["kind"] == "oar"), key=partial(_tps_top, res), reverse=True)
    return {nm: ms[nm] for nm in (targets + oars)[:PLANE_OUTLINES_MAX]}


def _draw_outlines(ax, h, v, outlined: Mapping[str, np.ndarray], sl) -> None:
    """The outlines of ``outlined`` (_outlined) in the plane ``sl`` of a map with voxel centres ``h``, ``v``."""
    for (colour, ls), m in zip(PLANE_OUTLINE_STYLES, outlined.values()):
        ms = m[sl]
        if ms.any():
            ax.contour(h, v, ms.astype(float), levels=[0.5], colors=[colour], linestyles=[ls], linewidths=0.9)


#: The most characters of the outlines' legend on one line at FIGURE_WIDTH_IN and MIN_FONT_PT (else two columns)
OUTLINE_LEGEND_LINE_CHARS = 80


def _outline_legend(fig, outlined: Mapping[str, np.ndarray], sl, y: float) -> int:
    """The outlines' legend, across the figure's foot at height ``y`` (figure fraction); a structure this plane
    does not cut says so.  Returns the legend's rows (0: no structure outlined)."""
    from matplotlib.lines import Line2D

    if not outlined:
        return 0
    handles = [Line2D([], [], color=c, ls=ls, lw=1.2) for (c, ls), _ in zip(PLANE_OUTLINE_STYLES, outlined)]
    labels = [mpl_text(nm) if m[sl].any() else f"{mpl_text(nm)} (not in this plane)" for nm, m in outlined.items()]
    ncol = len(labels) if sum(len(t) + 8 for t in labels) <= OUTLINE_LEGEND_LINE_CHARS else 2
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, y), ncol=ncol, fontsize=MIN_FONT_PT,
               frameon=False, handlelength=2.5, columnspacing=1.5)
    return -(-len(labels) // ncol)


def _plane_figure(res, centre, which: str) -> Figure:
    """TPS and MC dose, MC - TPS, the MC's statistical uncertainty and the 2-D gamma 2 %/2 mm in one plane through
    ``centre`` (``which``: axial, coronal or sagittal), drawn at the printed width, with a key to the encodings."""
    from .compare import gamma_plane, normalisation_dose

    desc = _dose(res)
    unit = desc["unit"]
    tps, mc, body = res.tps_gy_zyx, res.mc_gy_zyx, res.body_zyx
    unc = res.mc.uncertainty_rel_zyx   # the MC's relative standard error on the TPS grid (compute)
    # the 3-D gammas' and the dose difference's normalisation (the TPS's near-maximum in the body, as computed for
    # the dose difference; before 2026-12-07 its maximum, gamma audit 28, F1)
    norm = (res.dose_difference.get("normalisation_gy") or (normalisation_dose(tps, body) if body.any() else 0.0)
            or float(tps.max()) or 1.0)
    title, sl, (h, v), (hl, vl), origin = _plane(res, centre, which)
    a, b, m = tps[sl], mc[sl], body[sl]
    ext = voxel_edges_extent(h, v, origin)   # the voxel edges: the images line up with the body outline
    g = gamma_plane((v, h), a, b, m, norm)
    shown = m & ((a >= 0.1 * norm) | (b >= 0.1 * norm))
    d = np.where(shown, (b - a) / norm * 100, np.nan)
    # the MC's own noise beside the difference, on the same footing (1 sd, % of the TPS maximum): a difference
    # where the noise is as large is not a finding (statistics audit 2026-12-05: the map was not shown)
    sd = np.where(shown, np.abs(b) * unc[sl] / norm * 100, np.nan)
    outlined = _outlined(res)
    fig = _new_figure((FIGURE_WIDTH_IN, 5.0))
    axs = fig.subplots(2, 3).ravel()
    dose_kw = {"cmap": DOSE_CMAP, "vmin": 0, "vmax": norm * 1.05}
    over = "max" if max(float(np.nanmax(a)), float(np.nanmax(b))) > norm * 1.05 else "neither"
    for c, (img, lab, kw, extend) in enumerate((
            (a, f"TPS dose ({unit})", dose_kw, over),
            (b, f"MC dose ({unit})", dose_kw, over),
            # on two lines: on one, "... 2.18 Gy(RBE))" ran past the figure's right edge (figures audit 29, F2)
            (d, f"MC - TPS (% of TPS\nnear-max {norm:.3g} {unit})", {"cmap": DIFFERENCE_CMAP, "vmin": -5,
                                                                       "vmax": 5}, "both"),
            (sd, "MC 1 sd (% of TPS near-max)", {"cmap": UNCERTAINTY_CMAP, "vmin": 0,
                                                   "vmax": UNCERTAINTY_MAP_MAX_PCT},
             "max"),
            (g, "gamma 2%/2mm (2-D, this plane)", {"cmap": gamma_cmap(), "vmin": 0, "vmax": 1}, "max"))):
        ax = axs[c]
        im = ax.imshow(img, extent=ext, origin=origin, aspect="equal", interpolation="nearest", **kw)
        if c < 2:
            ax.contour(h, v, m.astype(float), levels=[0.5], colors="w", linewidths=0.6)
        _draw_outlines(ax, h, v, outlined, sl)
        _colour_bar(fig, im, ax, extend=extend)
        _panel_title(ax, lab)   # the plane: the figure's title
        _axis_labels(ax, hl, vl)
    key = axs[5]
    key.set_axis_off()
    key.text(0.0, 1.0, "\n".join(MAPS_KEY), transform=key.transAxes, va="top", ha="left", fontsize=MIN_FONT_PT,
             linespacing=1.4)
    rows = _outline_legend(fig, outlined, sl, 0.0)
    fig.subplots_adjust(**{**MAPS_LAYOUT, "bottom": 0.09 + 0.045 * rows})   # the outlines' legend below
    fig.suptitle(f"{title}: {desc['label']}", fontsize=SUPTITLE_PT)
    return fig


#: The most structures the DVH figure draws: with the demo's 30 ROIs the legend (then 60 entries) hid half the
#: curves, with 150 it spilled out of the figure (structure audit F11).  Beyond this, the targets and the other
#: structures of highest TPS dose are drawn; the structure table keeps them all.
DVH_FIGURE_MAX = 20


def _dvh_masks(res) -> dict[str, np.ndarray]:
    """The masks of the structures drawn in the DVH figure (none: no DVH figure): those with metrics, at most
    DVH_FIGURE_MAX of them (more when there are more targets): the targets, then the others by their TPS maximum
    (Dmax, else D2) from the highest."""
    ms = {nm: m for nm, m in res.masks.items() if nm in res.structures}
    if len(ms) <= DVH_FIGURE_MAX:
        return ms

    targets = [nm for nm in ms if res.structures[nm]["kind"] == "target"]
    others = sorted((nm for nm in ms if nm not in targets), key=partial(_tps_top, res), reverse=True)
    keep = set(targets + others[:max(0, DVH_FIGURE_MAX - len(targets))])
    return {nm: m for nm, m in ms.items() if nm in keep}


def _dvh_left_out(res) -> int:
    """How many structures with metrics the DVH figure leaves out (_dvh_masks)."""
    return sum(nm in res.structures for nm in res.masks) - len(_dvh_masks(res))


#: The DVH's colours of the structures the maps do not outline: tab10 less its colours close to the outlines'
#: (C1 orange, C6 pink, C9 cyan; C7 grey, near the outlines' black and the TPS/MC key's grey), so that a colour on
#: the maps names one structure in the DVH too (figures audit 29, F3)
DVH_OTHER_COLOURS = ("C0", "C2", "C3", "C4", "C5", "C8")

#: The colour of the DVH legend's TPS (solid) / MC (dashed) key: no structure's (black is the 4th outline's)
DVH_KEY_COLOUR = "0.45"


def _dvh_style(n: int, target: bool, colour: str | None = None) -> dict:
    """The n-th DVH structure's colour (``colour``: its outline's on the maps; else DVH_OTHER_COLOURS), marker
    (DVH_MARKERS) and line width (heavier for a target)."""
    return {"color": colour or DVH_OTHER_COLOURS[n % len(DVH_OTHER_COLOURS)],
            "marker": DVH_MARKERS[n % len(DVH_MARKERS)], "markersize": 4,
            "markevery": (3 * n % 30, 30), "lw": DVH_LW_TARGET if target else DVH_LW}


def _dvh_labels(fig, ax, curves: list[tuple[str, np.ndarray, np.ndarray, str]]) -> None:
    """Write each structure's name beside its TPS curve (``curves``: name, dose levels, volume %, colour) at the
    first volume of DVH_LABEL_VOLUMES where the name's box overlaps no name written before and lies inside the
    axes.  The figure is laid out first (its tight layout run once, then fixed), so that the boxes compared are
    those drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    fig.get_layout_engine().execute(fig)
    fig.set_layout_engine("none")   # laid out: the names placed below keep their places when drawn
    r = canvas.get_renderer()
    inside = ax.get_window_extent(r)
    placed: list = []
    for nm, lv, f, colour in curves:
        for at in DVH_LABEL_VOLUMES:
            if not (f[0] > at and (f <= at).any()):
                continue
            k = int(np.argmax(f <= at))
            t = ax.annotate(mpl_text(nm), (lv[k], at), xytext=(3, 2), textcoords="offset points", fontsize=MIN_FONT_PT,
                            color=colour)
            box = t.get_window_extent(r)
            if (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1
                    and not any(box.overlaps(p) for p in placed)):
                placed.append(box)
                break
            t.remove()


def _dvh_figure(res, ms: dict[str, np.ndarray]) -> Figure:
    """TPS and MC cumulative DVHs of the structures ``ms`` (_dvh_masks): TPS solid, MC dashed; each structure with
    its colour and its own marker (DVH_MARKERS), the targets' curves heavier, and its name written beside its TPS
    curve where it overlaps no other name (_dvh_labels; else in the legend only), so that a greyscale printout tells
    them apart (audit 13, F9: colour alone before; audit 16 F8: names on top of each other)."""
    from ..dvh import cumulative_dvh

    desc = _dose(res)
    fig = _new_figure((FIGURE_WIDTH_IN, 4.6))
    ax = fig.subplots()
    top = max(float(res.tps_gy_zyx.max()), float(res.mc_gy_zyx.max())) * 1.05
    curves = []
    # a structure outlined on the maps in its outline's colour; the others in colours no outline has (F3 of audit 29:
    # before, tab10's n-th: plan03's Cube101010 pink on the maps, blue here)
    outline = {nm: c for (c, _), nm in zip(PLANE_OUTLINE_STYLES, _outlined(res))}
    others = 0
    for n, (nm, m) in enumerate(ms.items()):
        lv, f1 = cumulative_dvh(res.tps_gy_zyx, m, bins=300, d_max=top)
        _, f2 = cumulative_dvh(res.mc_gy_zyx, m, bins=300, d_max=top)
        style = _dvh_style(n, res.structures.get(nm, {}).get("kind") == "target", outline.get(nm))
        if nm not in outline:
            style["color"] = DVH_OTHER_COLOURS[others % len(DVH_OTHER_COLOURS)]
            others += 1
        ax.plot(lv, 100 * f1, label=f"{mpl_text(nm)} TPS", **style)   # an ROI name, drawn as it is (mpl_text)
        ax.plot(lv, 100 * f2, ls="--", label=f"{mpl_text(nm)} MC", markerfacecolor="none", **style)
        curves.append((nm, lv, 100 * f1, style["color"]))
    ax.set_xlabel(f"{desc['quantity']} ({desc['unit']})", fontsize=MIN_FONT_PT + 1)
    ax.set_ylabel("volume (%)", fontsize=MIN_FONT_PT + 1)
    ax.tick_params(labelsize=MIN_FONT_PT)
    ax.set_xlim(0, top)
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    # one legend entry per structure (its TPS curve) and one per line style, beside the axes: two entries per
    # structure inside the axes hid the curves with a few tens of structures (structure audit F11)
    from matplotlib.lines import Line2D

    handles = [ln for ln in ax.get_lines() if not ln.get_label().endswith(" MC")]
    handles += [Line2D([], [], color=DVH_KEY_COLOUR, lw=1.5, label="TPS"),
                Line2D([], [], color=DVH_KEY_COLOUR, lw=1.2, ls="--", label="MC")]
    ax.legend(handles=handles, labels=[h.get_label().removesuffix(" TPS") for h in handles], fontsize=MIN_FONT_PT,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    left = _dvh_left_out(res)
    ax.set_title(f"DVH: TPS (solid) and MC (dashed); {desc['fractions']}; targets' curves heavier"
                 + (f"\n{len(ms)} structures drawn: the targets and those of highest dose ({left} more in the "
                    "table)" if left else ""), fontsize=SUPTITLE_PT)
    fig.set_layout_engine("tight")
    _dvh_labels(fig, ax, curves)   # lays the figure out once, then writes the names where they fit
    return fig


#: The gamma histogram's criteria and their line styles (told apart in grey as well as by colour).
HIST_CRITERIA = (("3%/2mm", "-"), ("2%/2mm", "--"), ("1%/1mm", ":"))


def _hist_figure(res) -> Figure:
    fig = _new_figure((FIGURE_WIDTH_IN, 2.9))
    axs = fig.subplots(1, 2)
    for n, (name, ls) in enumerate(HIST_CRITERIA):
        g = res.gamma[name]["gamma"]
        if g.size:
            axs[0].hist(np.clip(g, 0, 1.5), bins=np.linspace(0, 1.5, 31), histtype="step", lw=1.5, ls=ls,
                        color=f"C{n}", label=f"{name}: {100 * res.gamma[name]['pass_rate']:.2f} % pass")
    axs[0].axvline(1, color="k", lw=0.8)
    # the passing gammas pile up at 0.2, 0.4, ...: pymedphys searches distances in steps of 1/interp_fraction (5) of
    # the distance criterion, so a point's gamma is one of those steps where the dose term is small (audit 16 F10)
    _axis_labels(axs[0], "gamma (search stopped at 1.5; the peaks at 0.2, 0.4, ...\nare the search's distance "
                 "steps, not the doses')", "points")
    axs[0].legend(fontsize=MIN_FONT_PT)
    axs[0].set_title("3-D gamma (global, body, 10 % threshold)", fontsize=TITLE_PT)
    d = res.dose_difference.get("values_pct")
    if d is not None and d.size:
        axs[1].hist(np.clip(d, -10, 10), bins=np.linspace(-10, 10, 81), color="C0")
        axs[1].axvline(0, color="k", lw=0.8)
    _axis_labels(axs[1], "MC - TPS (% of the TPS near-maximum;\nclipped at +-10 %)", "voxels")
    axs[1].set_title("dose difference (body voxels above 10 %)", fontsize=TITLE_PT)
    fig.set_layout_engine("tight")   # as the DVH figure
    return fig


#: A beam lies in an axis-aligned plane when its direction's component along the plane's normal is below this
#: (sin 10 deg): a posterior field's mean direction is tilted by its spot map's offset and the beam's divergence.
BEAM_IN_PLANE_MAX_COMPONENT = 0.17


def _beam_plane_normal(direction, iso_mm, dose_zyx: np.ndarray, axes_zyx) -> int:
    """The normal (0 x, 1 y, 2 z) of the axis-aligned plane through the isocentre in which beam ``direction``'s
    figure is drawn: of the planes that hold the beam (its component along their normal below
    BEAM_IN_PLANE_MAX_COMPONENT), the one whose section through the isocentre holds most of the beam's dose above
    half its maximum; else the plane closest to holding it.  A posterior spine field (direction (-0.002, -1, 0)) is
    thus drawn in the sagittal plane along its length, not in one axial slice across it, as the smallest component
    alone chose (CSI audit of 2026-12-05, F5)."""
    comp = np.abs(np.asarray(direction, float))
    holding = [k for k in range(3) if comp[k] < BEAM_IN_PLANE_MAX_COMPONENT]
    if len(holding) < 2:
        return int(np.argmin(comp))
    top = float(np.max(dose_zyx))
    if not top > 0:
        return int(np.argmin(comp))
    hot = np.asarray(dose_zyx) >= 0.5 * top
    z, y, x = axes_zyx
    ix, iy, iz = (int(np.argmin(np.abs(ax - c))) for ax, c in ((x, iso_mm[0]), (y, iso_mm[1]), (z, iso_mm[2])))
    area = {0: int(hot[:, :, ix].sum()), 1: int(hot[:, iy].sum()), 2: int(hot[iz].sum())}
    return max(holding, key=lambda n: (area[n], -comp[n]))


def _crossing_deg(direction, normal: int) -> float | None:
    """The angle (deg) at which beam ``direction`` crosses the axis-aligned plane of ``normal`` (0 x, 1 y, 2 z); None
    where the plane holds the beam (its component along the normal below BEAM_IN_PLANE_MAX_COMPONENT)."""
    d = np.asarray(direction, float)
    comp = abs(float(d[normal])) / float(np.linalg.norm(d))
    return None if comp < BEAM_IN_PLANE_MAX_COMPONENT else float(np.degrees(np.arcsin(min(comp, 1.0))))


def _beam_plane_caption(res, b: int) -> str:
    """Where beam ``b``'s figure is drawn, in words that are true for any beam: "in the plane x = 25.5 mm, which
    holds the beam", or, for an oblique non-coplanar beam that no axis-aligned plane holds (HFS gantry 45, couch
    315), the angle at which it crosses the plane drawn: its panels show a section across the beam, not its track
    (audit 17 "noncoplanar" F4: captioned "in the plane holding the beam" over a triangle of dose)."""
    where = _beam_plane(res, b)[0].split(",")[0]
    deg = _crossing_deg(res.mc.beam_meta[b]["beam_direction"], "xyz".index(where[0]))
    if deg is None:
        return f"in the plane {where}, which holds the beam"
    return (f"in the plane {where}, which the beam crosses at {deg:.0f} deg (no axis-aligned plane holds it: a section "
            "across the beam, not its track)")


def _beam_plane(res, b: int):
    """The TPS and MC doses of beam ``b`` (its per-beam TPS dose, else the totals) in the axis-aligned plane
    through the isocentre that holds the beam (_beam_plane_normal); returns (label, TPS, MC, body, axes, labels,
    origin, the plane's index into a (z, y, x) array)."""
    inp, mc = res.inputs, res.mc
    meta = mc.beam_meta[b]
    has = b in inp.beams
    a = np.where(res.body_zyx, inp.beams[b].dose_gy_zyx, 0.0) if has else res.tps_gy_zyx
    m = np.where(res.body_zyx, mc.beams_gy_zyx[b], 0.0) if has else res.mc_gy_zyx   # res.mc: as computed
    z, y, x = res.axes_zyx
    iso = np.asarray(meta["isocenter_mm"])
    normal = _beam_plane_normal(meta["beam_direction"], iso, a, (z, y, x))  # 0 x, 1 y, 2 z
    deg = _crossing_deg(meta["beam_direction"], normal)
    crossed = "" if deg is None else f", crossed by the beam at {deg:.0f} deg"   # no axis plane holds it
    if normal == 2:
        k = int(np.argmin(np.abs(z - iso[2])))
        return f"z = {z[k]:.1f} mm{crossed}", a[k], m[k], res.body_zyx[k], (y, x), ("x", "y"), "upper", np.s_[k]
    if normal == 1:
        j = int(np.argmin(np.abs(y - iso[1])))
        return (f"y = {y[j]:.1f} mm{crossed}", a[:, j], m[:, j], res.body_zyx[:, j], (z, x), ("x", "z"), "lower",
                np.s_[:, j])
    i = int(np.argmin(np.abs(x - iso[0])))
    return (f"x = {x[i]:.1f} mm{crossed}", a[:, :, i], m[:, :, i], res.body_zyx[:, :, i], (z, y), ("y", "z"), "lower",
            np.s_[:, :, i])


def _beam_norm(res, b: int) -> float:
    """The dose the beam figure's difference and 2-D gamma are in % of: the near-maximum in the body of the beam's
    TPS dose (its per-beam TPS dose, else the plan's; compare.normalisation_dose, as its 3-D gamma's) over the whole
    grid, as the plane figures take the plan's; before 2026-12-06 the maximum of the plane drawn, so the two maps
    of the same plane, both titled "% of TPS max", differed by 2 % (figures audit 16 F7); before 2026-12-07 the
    maximum (gamma audit 28, F1)."""
    from .compare import normalisation_dose

    body = res.body_zyx
    has = b in res.inputs.beams
    known = ((res.beam_gamma.get(b) or {}) if has else res.dose_difference).get("normalisation_gy")   # as computed
    tps = res.inputs.beams[b].dose_gy_zyx if has else res.tps_gy_zyx
    top = known or (normalisation_dose(tps, body) if body.any() else float(np.max(tps)))
    return top or 1.0


#: The patient direction words of +x, +y, +z and of -x, -y, -z (DICOM patient axes)
DIRECTION_WORDS = (("left", "posterior", "superior"), ("right", "anterior", "inferior"))


def _bev_axis_label(name: str, vec) -> str:
    """The beam's-eye-view axis ``name`` (u or v; compare._frame's, from the beam direction) with its direction in
    the patient: a word where it runs along a patient axis (within 18 deg), else its (x, y, z) components."""
    vec = np.asarray(vec, float)
    k = int(np.argmax(np.abs(vec)))
    if abs(vec[k]) >= 0.95:
        return f"{name} (mm, +{DIRECTION_WORDS[0 if vec[k] > 0 else 1][k]})"
    return f"{name} (mm, +({vec[0]:+.2f}, {vec[1]:+.2f}, {vec[2]:+.2f}) in x, y, z)"


def _beam_figure(res, b: int) -> Figure:
    """One figure per beam: TPS and MC dose, difference and 2-D gamma 2 %/2 mm in the axis-aligned plane through the
    isocentre that holds the beam (for an oblique non-coplanar beam that none holds, the one closest to holding it,
    with the angle at which the beam crosses it in the panel titles), the distal R80 difference in the beam's eye view
    and its histogram."""
    from .compare import gamma_plane

    rng = res.ranges[b]
    has = b in res.inputs.beams
    where, A, M, body, (v, h), (hl, vl), org, sl = _beam_plane(res, b)
    outlined = _outlined(res)
    ext = voxel_edges_extent(h, v, org)   # the voxel edges (audit 16 F3: the first to last centre before)
    top = _beam_norm(res, b)   # the 3-D TPS near-maximum in the body, as the plane figures (not this plane's: F7)
    dd = np.where((A >= 0.1 * top) | (M >= 0.1 * top), (M - A) / top * 100, np.nan)
    g = gamma_plane((v, h), A, M, body, top)
    fig = _new_figure((FIGURE_WIDTH_IN, 5.3))
    axs = fig.subplots(2, 3).ravel()
    what = "beam" if has else "total"
    desc = _dose(res)
    unit = desc["unit"]
    dose_kw = {"cmap": DOSE_CMAP, "vmin": 0, "vmax": top * 1.05}
    over = "max" if max(float(np.nanmax(A)), float(np.nanmax(M))) > top * 1.05 else "neither"
    for ax, img, lab, kw, extend in (
            (axs[0], A, f"TPS {what} dose ({unit})", dose_kw, over),
            (axs[1], M, f"MC {what} dose ({unit})", dose_kw, over),
            (axs[2], dd, f"MC - TPS (% of TPS\nnear-max {top:.3g} {unit})", {"cmap": DIFFERENCE_CMAP, "vmin": -5,
                                                                                "vmax": 5}, "both"),
            (axs[3], g, f"gamma: 2 % of {top:.3g} {unit} / 2 mm", {"cmap": gamma_cmap(), "vmin": 0, "vmax": 1},
             "max")):
        im = ax.imshow(img, extent=ext, origin=org, aspect="equal", interpolation="nearest", **kw)
        _draw_outlines(ax, h, v, outlined, sl)
        _colour_bar(fig, im, ax, extend=extend)
        _panel_title(ax, f"{lab}\n{where}")
        _axis_labels(ax, AXIS_LABELS[hl], AXIS_LABELS[vl])
    vals, uv = rng.get("values_mm"), rng.get("bev_uv_mm")
    if vals is not None and len(vals):
        ds = rng["ray_spacing_mm"]
        sc = axs[4].scatter(uv[:, 0], uv[:, 1], c=np.clip(vals, -5, 5), cmap=DIFFERENCE_CMAP, vmin=-5, vmax=5,
                            marker="s", s=max(1.0, 150.0 / max(1.0, np.sqrt(len(vals)))), linewidths=0)
        _colour_bar(fig, sc, axs[4], extend="both")
        axs[4].set_aspect("equal")
        axs[4].invert_xaxis()   # u x v = the beam direction: u leftwards puts it into the page (seen from the source)
        _panel_title(axs[4], f"distal R80 MC - TPS (mm)\nbeam's eye view, {ds:g} mm pixels")
        axs[5].hist(np.clip(vals, -8, 8), bins=np.linspace(-8, 8, 65), color="C2")
        axs[5].axvline(0, color="k", lw=0.8)
        of = f" of {rng['rays_tps']}" if rng.get("rays_without_mc_edge") else ""   # the TPS's rays, where more
        _panel_title(axs[5], f"dR80 median {rng['median_mm']:+.2f} mm\n({rng['rays']}{of} rays)")
    else:
        axs[4].text(0.5, 0.5, "no ray with a distal edge\nof both doses in the grid", ha="center", va="center",
                    fontsize=MIN_FONT_PT)
    # the beam's-eye-view axes in the patient (figures audit 16 F10: "u (mm)", "v (mm)" were defined nowhere)
    from .compare import _frame

    d = np.asarray(res.mc.beam_meta[b]["beam_direction"], float)
    u, v_ = _frame(d / np.linalg.norm(d))
    _axis_labels(axs[4], _bev_axis_label("u", u), _bev_axis_label("v", v_))
    _axis_labels(axs[5], "R80 difference (mm;\nbeyond +-8 in the end bins)", "rays")   # one line was cut off (F5)
    rows = _outline_legend(fig, outlined, sl, 0.0)
    fig.subplots_adjust(**{**MAPS_LAYOUT, "top": 0.88, "hspace": 0.55,   # two-line panel titles
                           "bottom": 0.09 + 0.045 * rows})               # the outlines' legend below
    fig.suptitle(f"beam {b}: {desc['quantity']}" + ("" if has else f", {desc['fractions']}"), fontsize=SUPTITLE_PT)
    return fig


def figure_builders(res, names: Iterable[str] | str | None = None) -> dict[str, Callable[[], Figure]]:
    """The report's figures by name, in the report's order (or ``names``' order), each built when called (one at
    a time: the report encodes and drops each before the next): "axial", "coronal" and "sagittal" (TPS, MC,
    difference, the MC's statistical uncertainty and 2-D gamma in that plane through the target, or without one
    through the TPS dose's high-dose region (_centre); one figure per
    plane, drawn at the printed width), "histograms" (3-D gamma and dose difference), "dvh" (when a structure has
    metrics) and "beam_<number>" per beam.  The HTML report and CheckResult.figures() / save_figures() use these;
    an unknown name is refused with the names there are."""
    if res.tps_gy_zyx is None or res.mc is None or res.inputs is None:
        raise ValueError("this CheckResult holds no dose arrays (only the numbers): its figures need the result "
                         "that mcproton.check returned")
    centre = _centre(res)
    out: dict[str, Callable[[], Figure]] = {name: partial(_plane_figure, res, centre, name) for name in PLANES}
    out["histograms"] = partial(_hist_figure, res)
    ms = _dvh_masks(res)
    if ms:
        out["dvh"] = partial(_dvh_figure, res, ms)
    for b in sorted(res.ranges):
        out[f"beam_{b}"] = partial(_beam_figure, res, b)
    out = {name: partial(_glyphs_said_once, build) for name, build in out.items()}   # laid out while built too
    if names is None:
        return out
    want = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in want if n not in out]
    if unknown:
        raise ValueError(f"no figure named {', '.join(map(repr, unknown))}; this check has {', '.join(out)}")
    return {n: out[n] for n in want}


def _glyphs_said_once(build: Callable[[], Figure]) -> Figure:
    """``build()`` with matplotlib's missing-glyph warnings kept quiet (plots.quiet_glyph_warnings): the figure's
    characters that the font lacks are said once it is encoded (_png)."""
    quiet_glyph_warnings()
    return build()


def _tps_rays_cell(r: Mapping[str, Any]) -> str:
    """The range table's rays with a TPS distal R80, and in brackets those of them without an MC edge (and the rays
    with an MC edge only); "" for a result without the counts (an older check.json)."""
    if "rays_tps" not in r:
        return ""
    extra = [f"{r['rays_without_mc_edge']} no MC edge"] if r.get("rays_without_mc_edge") else []
    if r.get("rays_without_tps_edge"):
        extra.append(f"+{r['rays_without_tps_edge']} with an MC edge only")
    return f"{r['rays_tps']}" + (f" ({'; '.join(extra)})" if extra else "")


def _range_beams_cell(b: Any, r: Mapping[str, Any]) -> str:
    """The range table's beam cell: the beam, or the beams whose range was read on the same rays of the total dose
    ("1, 2, 3 (gantry 0, couch 0)": api._group_shared_rays)."""
    if r.get("beams") and len(r["beams"]) > 1:
        return f"{', '.join(str(x) for x in r['beams'])} ({r.get('direction', 'one direction')})"
    return str(b)


def _table(head: list[str], rows: list[list[Any]], cls: list[str] | None = None, caption: str = "") -> str:
    """A table: the header row in a thead (a printout repeats it on each page the table spans; th scope="col"),
    ``caption`` (escaped) above it where given, ``cls`` a class per row."""
    out = ["<table>" + (f"<caption>{_html(caption)}</caption>" if caption else "") + "<thead><tr>"
           + "".join(f'<th scope="col">{_html(h)}</th>' for h in head) + "</tr></thead><tbody>"]
    for n, r in enumerate(rows):
        c = f' class="{cls[n]}"' if cls and cls[n] else ""
        out.append(f"<tr{c}>" + "".join(f"<td>{_html(_fmt(v))}</td>" for v in r) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.3g}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def _num(v: Any, spec: str) -> str:
    """``v`` with the format ``spec`` (e.g. ".2f", "+.3f"), "n/a" where it is missing or not finite.  The tables
    of pass rates, doses and differences use fixed decimals: 3 significant digits showed a 99.95 % pass rate as
    100 and a D95 of 1.9955 Gy as 2."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "n/a" if v in (None, "") else str(v)
    return drop_zero_sign(format(x, spec)) if math.isfinite(x) else "n/a"   # 0.00, not -0.00 (audit 13, F6)


def sign_off_html(intro: str, roles: Iterable[str] = ("checked by (physicist)", "approved by"),
                  decision: str = "", identity: str = "", action: str = "") -> str:
    """The sign-off block of a signed report (``mcproton check``'s and ``mcproton validate``'s): ``intro``, then
    ``decision`` (the choices to tick, if any), then a table with one empty row per role to fill in by hand: name,
    date, signature, comment.  ``identity`` (HTML): the table's caption, what is signed (the check's patient, plan
    and verdict: a sign-off printed on its own page still names them); ``action`` (HTML): a last row "decision /
    action taken" holding it, with room to write (the check's accept / investigate / re-plan).  SIGN_OFF_CSS gives
    the rows the height of a handwritten signature."""
    rows = "".join(f"<tr><td>{_html(r)}</td><td></td><td></td><td></td><td></td></tr>" for r in roles)
    if action:
        rows += f'<tr class="action"><td>decision / action taken</td><td colspan="4">{action}</td></tr>'
    return (f"<h2>Sign-off</h2><p>{intro}</p>" + (f"<p>{decision}</p>" if decision else "")
            + '<table class="sign">' + (f"<caption>{identity}</caption>" if identity else "")
            + "<tr><th>role</th><th>name</th><th>date</th><th>signature</th>"
            f"<th>comment</th></tr>{rows}</table>")


#: The sign-off block's print layout: rows of 13 mm and a signature column of 30 % of the table (about 56 mm on A4),
#: room for a handwritten name and signature (audit 13, F10: 5.3 mm rows, a 19 mm signature column).
SIGN_OFF_CSS = (".sign{width:100%;table-layout:fixed}.sign td{height:13mm;vertical-align:top}"
                ".sign th:nth-child(1){width:20%}.sign th:nth-child(2){width:22%}.sign th:nth-child(3){width:12%}"
                ".sign th:nth-child(4){width:30%}.sign th:nth-child(5){width:16%}.sign tr.action td{height:24mm}")

#: The check's sign-off: what it is, and the decision a failed (or passed) check needs on its record.
SIGN_OFF_INTRO = ("This independent MC check is a second check of the planning system's dose; it does not replace "
                  "the clinic's own review of the plan.")
SIGN_OFF_ACTION = ("&#9744; accepted &nbsp; &#9744; investigate (inputs, set-up, a re-run) &nbsp; &#9744; re-plan "
                   "or not accepted.  Action taken and by whom:")


def _sign_off(who: Mapping[str, str]) -> str:
    """The check's sign-off block, naming the patient, plan and verdict it signs (``who``: _who)."""
    return sign_off_html(SIGN_OFF_INTRO, identity=_html(_who_line(who)), action=SIGN_OFF_ACTION)


def check_date(provenance: Mapping[str, Any]) -> str:
    """The date of the check (YYYY-MM-DD) that a printed page names: the local date it started, ``check_started``
    (local time with its offset, as check.json gives it); for a result without it, the MC dose's ``date`` (UTC)
    in this machine's local time.  Before (audit 25, F7) the pages gave the UTC date of the MC dose without saying
    so: in the evening in the Americas the day after the check, unlike check.json and RD_mc.dcm."""
    import datetime as _dt

    started = str(provenance.get("check_started") or "")
    if len(started) >= 10 and started[4] == "-" and started[7] == "-" and started[:4].isdigit():
        return started[:10]
    date = str(provenance.get("date") or "")
    try:
        when = _dt.datetime.fromisoformat(date)
    except ValueError:
        return date[:10]
    return (when.astimezone() if when.tzinfo is not None else when).date().isoformat()


def _who(res) -> dict[str, str]:
    """What a printed page of the report names: the verdict, the patient (name, ID), the plan (its label, else its
    name, else its file) and the local date of the check (YYYY-MM-DD: :func:`check_date`)."""
    from .record import identification, plan_label

    inp = res.inputs
    d = res.provenance.get("identification") or identification(inp.plan_path)
    plan = plan_label(d, str(getattr(inp.plan, "label", "") or "")) or Path(inp.plan_path).name
    return {"verdict": "PASS" if res.passed else "FAIL", "patient": d.get("PatientName", ""),
            "patient_id": d.get("PatientID") or "none", "plan": plan,
            "date": check_date(res.provenance)}


def _who_line(who: Mapping[str, str], date: bool = True) -> str:
    """The line naming a page: "mcproton check PASS | patient NAME (ID X) | plan LABEL | 2026-12-05" (the title,
    the sign-off's caption, each printed page's head)."""
    return " | ".join(v for v in (f"mcproton check {who['verdict']}",
                                  "patient " + (f"{who['patient']} " if who["patient"] else "")
                                  + f"(ID {who['patient_id']})",
                                  f"plan {who['plan']}", who["date"] if date else "") if v)


def _css_string(text: str) -> str:
    """``text`` as a CSS string: every character but ASCII letters, digits, space and plain punctuation as a CSS
    escape, so that no quote, backslash or "</style>" in a patient's name ends it."""
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;()_-/#+|^")   # ^: DICOM names
    return '"' + "".join(ch if ch in ok else f"\\{ord(ch):x} " for ch in text) + '"'


#: The report's style: the screen page, and its printout (A4, every table row, figure and the sign-off on one page,
#: the summary on the first page and the details after a page break; audit 13, F7).  The line naming each printed
#: page (patient, plan, verdict) and its page number are page margin boxes (print_css).  The pass/fail colours print
#: (-webkit-print-color-adjust: browsers leave backgrounds out by default; the Nu Html Checker does not know the
#: unprefixed property), and a FAIL is bold too, for a greyscale printout.
REPORT_CSS = ("body{font-family:sans-serif;max-width:1250px;margin:auto;font-size:13px}"
              "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #bbb;padding:2px 6px}"
              # a SHA-256, a UID or a path has no space to wrap at: it breaks anywhere rather than run off the page
              "td{overflow-wrap:anywhere}"
              "caption{text-align:left;font-weight:bold;padding:2px 0}"
              ".pass{background:#d9f2d9}.fail{background:#f8d0d0}.changed{background:#fff3c4}"
              "tr.fail td:last-child{font-weight:bold}h1 .pass,h1 .fail{padding:0 8px}"
              "img{max-width:100%;height:auto;display:block;margin:6px 0}" + SIGN_OFF_CSS
              + "@media print{body{max-width:none;font-size:8.5pt}h1{font-size:16pt}h2{font-size:12pt}"
              "h3{font-size:10pt}table{width:100%}td,th{padding:1px 4px}.details{break-before:page}"
              "h2,h3{break-after:avoid}tr,img,.sign{break-inside:avoid}img{width:100%}"
              ".pass,.fail,.changed{-webkit-print-color-adjust:exact}}")


def print_css(line: str, date: str = "") -> str:
    """The @page rule of a report: A4 with 12 mm margins (the figures are drawn for its 186 mm width), ``line`` at
    the top left of every printed page, ``date`` at the top right, "page n of N" at the bottom right (CSS page
    margin boxes: Chromium-based browsers from version 131 print them; a loose page or a PDF in a folder of them is
    then attributed; audit 13, F7)."""
    small = "font-family:sans-serif;font-size:8pt"
    return ("@page{size:A4;margin:14mm 12mm 13mm 12mm;"
            f"@top-left{{content:{_css_string(line)};{small}}}"
            + (f"@top-right{{content:{_css_string(date)};{small}}}" if date else "")
            + f'@bottom-right{{content:"page " counter(page) " of " counter(pages);{small}}}}}')


def _gamma_table_row(name: str, g: dict) -> list:
    """A row of the report's gamma table: the pass rate, its standard error from the random subset (0 with every
    point), the points, the normalisation dose and the points above 1 searched again (compare.gamma_3d_multi)."""
    se = g.get("pass_rate_se")
    left = g.get("refine_left") or 0
    again = "" if "refined_points" not in g else (
        f"{g['refined_points']} ({g['refined_to_pass']} now pass)" + (f"; {left} not (cap)" if left else ""))
    norm = g.get("normalisation_gy")
    return [name, _num(100 * g["pass_rate"], ".2f"), "" if se is None else _num(100 * se, ".2f"), g["points"],
            g.get("evaluable_points", ""), "" if norm is None else _num(norm, ".4g"), again]


def _identification(res) -> str:
    """The header: patient, plan, TPS doses compared, the dose matched, the beam model and calibration with their
    files, the MC, when; then each file checked by path, UIDs, creation date and SHA-256 (check.json:
    provenance.identification and provenance.inputs, which an older result lacks: then read from the plan)."""
    from .record import dicom_datetime, identification

    inp, p = res.inputs, res.provenance
    d = p.get("identification") or identification(inp.plan_path)
    tps = [inp.total] if inp.total is not None else []
    tps += [inp.beams[b] for b in sorted(inp.beams)]
    doses = "; ".join(f"{Path(t.path).resolve()} ({t.summation_type}, {t.dose_type}"
                      + (f" in the file, compared as {inp.dose_type} as given" if t.dose_type != inp.dose_type else "")
                      + ")" for t in tps)
    sys_ = " ".join(v for v in (d.get("Manufacturer"), d.get("ManufacturerModelName")) if v)
    label = d.get("RTPlanLabel") or str(inp.plan.label or "")
    date = dicom_datetime(d.get("RTPlanDate", ""), d.get("RTPlanTime", ""))
    rows = [["patient", f"{d.get('PatientName', '')} (ID {d.get('PatientID', '') or 'none'})"],
            ["plan", f"{d.get('plan_file') or Path(inp.plan_path).resolve()}: label {label or 'none'}, name "
                     f"{d.get('RTPlanName') or 'none'}, date {date or 'none'}, "
                     f"{d.get('ApprovalStatus') or 'approval status not given'}"
                     + (f", from {sys_}" if sys_ else "")],
            ["plan SOPInstanceUID", d.get("SOPInstanceUID") or str(getattr(inp.plan, "sop_instance_uid", ""))],
            ["TPS dose(s) compared", doses],
            ["CT", str(p.get("ct", ""))],
            ["structure set", str(Path(inp.struct_path).resolve()) if inp.struct_path else "none"],
            ["dose matched", f"{p['dose']}; {p['fractions']} fraction(s)"],
            ["beam model", _beam_model_text(p)],
            ["calibration", _calibration_text(p)],
            ["MC", f"mcproton {p['mcproton_version']}, beam model {p['beam_model']}, calibration "
                   f"{p['calibration']}, {p['statistical_uncertainty_pct']:.2f} % mean uncertainty "
                   "(voxels above 50 %),"
                   f" {p['primaries']} primaries, {p['device']}"],
            ["MC dose computed", f"{p.get('date') or 'not recorded'} (UTC; the end of the first beam's transport"
                                 + (", in an earlier check: the MC dose is reused)" if _reused(res) else ")")],
            ["check started", str(p.get("check_started") or "not recorded")],
            ["check finished (this report written)", str(p.get("check_finished") or "not recorded")],
            ["working directory", str(p.get("working_directory") or "not recorded")]]
    return _table(["item", "value"], rows) + _files_table(p.get("inputs") or [])


def _reused(res) -> bool:
    """Whether the check reused an earlier check's MC dose (check(mc=...)): its CT record says so."""
    return any("reused" in str(f.get("role", "")) for f in res.provenance.get("inputs") or [])


def _acquisition_said(acq: dict | None, kvp: dict | None = None) -> str:
    """What a CT input's record says of its acquisition (record.ct_input), as the files table adds it: "; 80 kVp,
    Siemens SOMATOM Definition AS, kernel Br40" ("" where it says nothing): a HU calibration belongs to one scanner,
    tube voltage and kernel; with the calibration's stated tube voltage (``kvp``: the input's ``calibration_kvp``,
    calibration_kvp.kvp_comparison): "; HU calibration stated for 120 kVp: DIFFERS from the CT's", "...: the CT's
    kVp (no more is compared)",
    or "; HU calibration's kVp not stated"."""
    from .._io.calibration_kvp import listed_kvp

    if not acq:
        return ""
    scanner = " ".join(v for v in (acq.get("Manufacturer"), acq.get("ManufacturerModelName")) if v)
    kv = acq.get("KVP_values") or ([acq["KVP"]] if acq.get("KVP") is not None else [])
    why = f" ({acq['KVP_not_used']})" if acq.get("KVP_not_used") else ""
    parts = [listed_kvp(kv) if kv else "kVp not given" + why,
             scanner or "scanner not given",
             f"kernel {acq['ConvolutionKernel']}" if acq.get("ConvolutionKernel") else "kernel not given"]
    said = "; " + ", ".join(parts)
    if kvp:
        cal = kvp.get("calibration_kvp")
        if cal is None:
            said += "; HU calibration's kVp not stated"
        else:
            said += "; HU calibration stated for " + listed_kvp(cal) + {
                True: ": the CT's kVp (no more is compared)", False: ": DIFFERS from the CT's",
                None: ""}[kvp.get("match")]
    return said


def _files_table(inputs: list[dict]) -> str:
    """The files checked (check.json provenance.inputs): role, resolved path, UIDs, creation date, SHA-256."""
    if not inputs:
        return ""
    # a TPS dose that states its own noise (an MC dose mcproton wrote: api.stated_uncertainty_record) says so
    rows = [[f.get("role", "") + (f" (an MC dose stating {f['stated_uncertainty_pct']:.2f} % statistical uncertainty)"
                                  if f.get("stated_uncertainty_pct") is not None else ""),
             (f.get("path") or (f"none: {f['kept']}" if f.get("kept") else ""))   # kept: api.PHANTOM_CT_NOT_KEPT
             + (f" ({f['slices']} slices{_acquisition_said(f.get('acquisition'), f.get('calibration_kvp'))})"
                                  if f.get("slices") else ""),
             "; ".join(f"{k} {f[key]}" for k, key in (("SOP", "sop_instance_uid"), ("series", "series_instance_uid"))
                       if f.get(key)) or "none",
             f.get("created") or "not given", f.get("sha256", "") + (f" ({f['sha256_of']})" if f.get("sha256_of")
                                                                     else "")]
            for f in inputs]
    return ("<p>Files checked (paths resolved; SHA-256 of each file's bytes: a file changed since gives another)."
            "</p>" + _table(["input", "path", "UIDs", "created (DICOM InstanceCreationDate/Time; a CT: SeriesDate/"
                                               "Time)", "SHA-256"], rows))


def _calibration_text(p: dict) -> str:
    """The HU calibration: a built-in's name and mcproton's version, or the files it was read from with their
    SHA-256 (two versions of a clinic's curve in folders of one name differ)."""
    name = str(p.get("calibration"))
    files = p.get("calibration_files") or []
    if p.get("calibration_builtin"):
        return f"{name} (built into mcproton {p.get('mcproton_version')})"
    if files:
        return f"{name}: " + "; ".join(f"{f.get('path')} (SHA-256 {f.get('sha256', '?')})" for f in files)
    data = p.get("calibration_data_sha256")
    return f"{name} (no file recorded" + (f"; data SHA-256 {data})" if data else ")")


def _beam_model_text(p: dict) -> str:
    """The beam model of the MC: its name, file and SHA-256 (and its table's), so that a signed report names the
    version of the file used."""
    f = p.get("beam_model_file") or {}
    out = str(p.get("beam_model"))
    if f.get("path"):
        out += f": {f['path']} (SHA-256 {f.get('sha256', '?')})"
    if f.get("table"):
        out += f", table {f['table']} (SHA-256 {f.get('table_sha256', '?')})"
    return out


def _beam_dose_section(res) -> list[str]:
    """The MC/TPS dose level of each beam with a per-beam TPS dose (compare.beam_dose_ratio; none: nothing)."""
    rows = [[b, _num(r["ratio"], ".4f"), _num(r["diff_pct"], "+.2f"),
             _num(r.get("uncertainty_pct", float("nan")), ".2f"), _num(r["integral_ratio"], ".4f"), r["voxels"],
             _num(r["threshold_gy"], ".4g")]
            for b, r in sorted(getattr(res, "beam_dose", {}).items()) if r.get("voxels")]
    if not rows:
        return []
    return ["<h2>Beams: dose level</h2>",
            _table(["beam", "MC/TPS (median voxel ratio)", "MC - TPS (%)", "standard error from the MC's noise (%)",
                    "MC/TPS (integral ratio)", "voxels", f"region: averaged TPS dose >= ({_dose(res)['unit']})"], rows),
            "<p>Over each beam's high-dose region: the body voxels where its TPS dose, averaged over 3 x 3 x 3 voxels "
            "(so that the TPS's own noise does not choose them), reaches 50 % of its 99.9th percentile over its "
            "voxels with dose (taken as its maximum). A beam's MU or output error scales all of "
            "them, which the median ratio reads; a range or lateral difference changes the region's edges, which "
            "it leaves out (the integral ratio, shown for comparison, includes them). The standard error is that of "
            "independent voxels x 1.6, for the MC's correlated voxels (measured 1.45-1.6; the JSON's "
            "uncertainty_independent_pct is the independent one, a lower bound).</p>"]


def _readable(v: Any) -> str:
    """A provenance or settings value as text: a mapping as "key value; ...", a list joined by "; ", a number as
    the tables give it, None as "none" (not Python's repr)."""
    if isinstance(v, Mapping):
        return "; ".join(f"{k} {_readable(x)}" for k, x in v.items()) or "none"
    if isinstance(v, (list, tuple)):
        return "; ".join(_readable(x) for x in v) or "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "none" if v is None else _fmt(v)


def _typed_prescription(rx: Any) -> str:
    """The settings table's --prescription as typed: Gy(RBE) for all fractions of the plan ("54 Gy(RBE)", "'CTV60'
    60 Gy(RBE); 'CTV54' 54 Gy(RBE)"), each value as given; before (the review of 2026-12-07, R7) without its unit,
    beside the value used, which is in Gy for a PHYSICAL TPS dose."""
    if rx is None:
        return "not given"
    if isinstance(rx, Mapping):
        return "; ".join(f"{k!r} {float(v):g} Gy(RBE)" for k, v in rx.items())
    return f"{float(rx):g} Gy(RBE)"


def _with_unit(v: Any, unit: str) -> str:
    """A prescription used (one dose, {target: dose} or None) in the TPS dose's ``unit`` (:func:`_dose`: Gy(RBE)
    for an EFFECTIVE dose, Gy for a PHYSICAL one)."""
    if isinstance(v, Mapping):
        return "; ".join(f"{k} {_readable(x)} {unit}" for k, x in v.items()) or "none"
    return _readable(v) + (f" {unit}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "")


def _settings_table(res, unit: str | None = None) -> str:
    """Every option of the check as resolved, with where it came from, and the command line (or the Python call)
    that ran it: a re-run is a copy of it (from the working directory given; the files' hashes then confirm its
    inputs).  check.json: ``settings`` (and ``provenance.physics``).  ``unit``: the doses' (:func:`_dose`; None:
    worked out here)."""
    st, p = res.settings, res.provenance
    if "invocation" not in st:   # a result of an older version
        return ""
    unit = unit or _dose(res)["unit"]
    def pct(v: Any) -> str:
        return "none (the primaries only)" if not v else f"{100 * float(v):.3g} %"

    lv = st.get("levels_config") or {}
    rx = st.get("prescription_given")
    per_beam = st.get("target_uncertainty_per_beam")
    rows = [
        ["command line" if st.get("invoked_from") == "command line" else "Python call", st.get("invocation", ""),
         "copy it to re-run, from the working directory"],
        ["working directory", st.get("working_directory", ""), ""],
        ["target statistical uncertainty", pct(st.get("target_uncertainty")),
         "mean relative uncertainty of the plan dose over the voxels above 50 % of its maximum"
         + (f"; each beam to {pct(per_beam)}" if per_beam else "")],
        ["primaries cap (per beam)", f"{st.get('primaries_limit')}", ""],
        ["seed", st.get("seed"), "the MC, the gamma's subset of points and the noise matching"],
        ["dose type", st.get("dose_type"), st.get("dose_type_source", "")],
        ["dose to", st.get("dose_to"), st.get("dose_to_source", "")],
        ["patient position", ", ".join(st.get("patient_position") or []) or "none",
         st.get("patient_position_source", "")],
        ["fractions", st.get("fractions"), f"the MC computes {p.get('fractions')} fraction(s)"],
        ["RBE", st.get("rbe"), "given (--rbe)" if st.get("rbe_given") is not None else
         "1.1 for an EFFECTIVE dose, 1 for a PHYSICAL one (the default)"],
        ["prescription", _typed_prescription(rx),
         f"used: {_with_unit(p.get('prescription_gy'), unit)} "
         f"({p.get('prescription_source') or 'none'})"],
        ["structure set's material overrides", st.get("struct_overrides"),
         st.get("struct_overrides_source", "--struct-overrides")],
        ["outside the External", st.get("outside_external"), st.get("outside_external_source", "--outside-external")],
        ["calibration", _calibration_text(p), st.get("calibration_source") or (
            "given (--calibration)" if st.get("calibration_given") else "the default")],
        ["physics", _readable(p.get("physics")) if p.get("physics") else "not recorded with the reused MC dose",
         "PhysicsSettings, defaults included"],
        ["gamma", f"{st.get('gamma_points') or 'every'} points, "
                  + (f"{st['gamma_workers']} worker process(es)" if st.get("gamma_workers")
                     else "one worker process per gamma (up to the cores)"), "--gamma-points, --gamma-workers"],
        ["action levels", lv.get("source", "") + (f" (SHA-256 {lv['sha256']})" if lv.get("sha256") else ""),
         "--config"],
        ["CT series", st.get("ct_series") or "not given (the folder's axial series)", "--ct-series"],
        ["phantom from the RT Struct", st.get("phantom_from_struct"), "--phantom-from-struct"],
        ["structure set", Path(str(p["structure_set"])).name if p.get("structure_set") else
         "none: the target D95/Dmean rows were not evaluated",
         ("--struct, or the folder's" if p.get("structure_set") else
          "checked without one as asked (--allow-no-struct)" if st.get("allow_no_struct") and (
              st.get("plan_structure_sets") or "plan_structure_sets" not in st) else
          "none given or found" + (" (the plan names none)" if "allow_no_struct" in st else ""))],
        ["machine check", _plan_check_text(st.get("machine_check")), "--no-machine-check turns it off"],
        ["spot-tune check", _plan_check_text(st.get("spot_tune_check")), "the beam model's spot_tune_ids"],
        ["beam-limiting devices (MLC, jaws) placed in the plan", "computed as open (warned)"
         if st.get("ignore_beam_limiting_devices") else "refused", "--ignore-beam-limiting-devices"],
        ["backend, threads",
         f"{st.get('backend')}, {st.get('threads') or 'default (OMP_NUM_THREADS, else the CPUs it may use)'}",
         f"ran on {p.get('device')}"],
    ]
    return "<h2>Settings</h2>" + _table(["setting", "value as used", "source"],
                                        [[k, _readable(v) if not isinstance(v, str) else v, w]
                                         for k, v, w in rows])


def _plan_check_text(done: Any) -> str:
    """A Settings row of what was checked of the plan against the beam model (settings.machine_check /
    spot_tune_check: "yes: ...", "not possible: ..."); a check.json of an older mcproton holds the option alone
    (true / false), which did not say whether anything could be compared."""
    if isinstance(done, bool) or done is None:
        return ("on (not recorded whether the beam model named anything to compare with)" if done
                else "off" if done is False else "not recorded")
    return str(done)


#: The provenance table's labels (with units) of check.json's provenance keys; a key not here is shown as it is
PROVENANCE_LABELS = {
    "mcproton_version": "mcproton version", "build": "mcproton build (version; SHA-256 of the transport kernel, "
    "the physics data and the code)", "kernel_hash": "transport kernel hash", "beam_model": "beam model",
    "beam_model_file": "beam model file", "calibration": "HU calibration", "ct": "CT",
    "structure_set": "structure set", "statistical_uncertainty_pct":
        "MC statistical uncertainty (%, mean over the voxels above 50 % of the maximum, MC grid)",
    "statistical_uncertainty_tps_grid_pct": "MC statistical uncertainty on the TPS grid (%, a lower bound)",
    "statistical_uncertainty_tps_grid_note": "MC statistical uncertainty on the TPS grid: what it is",
    "primaries": "primaries (all beams)", "mc_wall_s": "MC wall time (s)",
    "mc_process_cpu_s": "MC CPU time of this process (s)", "device": "device", "backend": "backend", "seed": "seed",
    "dose": "dose compared", "dose_unit": "dose unit", "dose_fractions": "fractions of the dose",
    "dose_values": "dose values", "fractions": "fractions computed", "grid": "MC grid",
    "transport_grid": "MC transport grid (the CT's slices transported, and why)", "body_outline":
        "body outline", "prescription_source": "prescription from", "geometry_notes": "geometry notes",
    "python": "Python", "host": "host", "date": "MC dose computed (UTC)", "working_directory": "working directory",
    "physics": "physics (PhysicsSettings)", "check_started": "check started", "check_finished": "check finished",
}


def _provenance_rows(p: Mapping[str, Any], unit: str) -> list[list[str]]:
    """The provenance table: labels with units, nested values as text (the beams, the files and the identification
    have tables of their own)."""
    labels = {**PROVENANCE_LABELS, "prescription_gy": f"prescription ({unit})"}
    shown = {"calibration": _calibration_text(p)}   # with its files (calibration_files, calibration_builtin)
    tg = p.get("transport_grid")
    if isinstance(tg, Mapping) and tg.get("shape_zyx"):   # its shape and what it holds (check.json: all of it)
        shown["transport_grid"] = (" x ".join(str(v) for v in tg["shape_zyx"][::-1]) + " voxels of "
                                   + " x ".join(f"{v:g}" for v in tg["voxel_size_mm"]) + f" mm: {tg.get('said', '')}")
    return [[labels.get(k, k.replace("_", " ")), shown.get(k, _readable(v))] for k, v in p.items()
            if k not in ("beams", "inputs", "identification", "calibration_files", "calibration_builtin")]


def _beams_table(res) -> str:
    """One row per beam of the plan (compare.beam_summary, also in the JSON's provenance.beams).  Its meterset is
    headed "MU" where every beam's is in MU; otherwise "meterset", each with its unit ("1.142e+11 protons (NP)"):
    an NP beam's protons were shown under "MU" (audit 27, spotsem F2)."""
    from .._io.rtplan import meterset_text
    from .compare import beam_summary

    summary = beam_summary(res.mc.beam_meta, res.inputs.beams)
    all_mu = all((r.get("meterset_unit") or "MU") == "MU" for r in summary.values())

    def mu(r: Mapping[str, Any]) -> str:   # 5199.4 MU, not 5.2e+03; 2.53 MU
        v = r["total_meterset"] if r.get("total_meterset") is not None else r["total_mu"]
        if all_mu:
            return _num(v, ".1f" if v is not None and abs(float(v)) >= 100 else ".3g")
        return meterset_text(v, r.get("meterset_unit"))

    def couch(r: Mapping[str, Any]) -> str:   # the support angle, + the table top's eccentric angle where it has one
        ecc = r.get("table_top_eccentric_angle_deg") or 0.0
        return _num(r["couch_angle_deg"], ".1f") + (f" + {ecc:.1f} eccentric" if ecc else "")

    rows = [[b, _num(r["gantry_angle_deg"], ".1f"), couch(r), mu(r),
             r["primaries"], _num(100 * float(r["mean_rel_uncertainty_50"] if r["mean_rel_uncertainty_50"] is not None
                                              else "nan"), ".2f"),
             r["stop_reason"] or "", _num(r["wall_s"], ".1f"), r["tps_dose"]]
            for b, r in summary.items()]
    return _table(["beam", "gantry (deg)", "couch (deg)", "MU" if all_mu else "meterset", "MC primaries",
                   "MC uncertainty (%)",
                   "MC stopped", "MC wall (s)", "TPS dose compared"], rows)


#: The report's figures that show the 3-D gammas; the others can be drawn before the gammas are done
#: (``mcproton check`` draws them while the gammas run in worker processes: render_figures(..., skip=...)).
GAMMA_FIGURES = ("histograms",)


def render_figures(res, skip: Iterable[str] = ()) -> dict[str, str]:
    """The report's figures except ``skip``, each built, encoded as the report embeds it (PNG at REPORT_DPI,
    base64) and dropped before the next: {name: base64 PNG}."""
    return {name: _png(build()) for name, build in figure_builders(res).items() if name not in set(skip)}


#: The memory one figure worker process (FigureWorkers) needs of its own (MB): the fork shares the check's arrays
#: copy-on-write, so what a worker holds alone is matplotlib's import and its canvases, a figure's planes and
#: temporaries, pymedphys' 2-D gamma.  Measured (private dirty memory, /proc/self/smaps_rollup, after drawing) on
#: the OpenTPS head (TPS grid 109 x 99 x 81, three figures each): 98-108 MB per worker; with a margin:
#: FIGURE_WORKER_MB, plus FIGURE_WORKER_GRIDS float64 grids of the dose grid's size for the whole-grid temporaries
#: (a DVH's masked doses, a beam plane's search over the dose).
FIGURE_WORKER_MB = 200.0
FIGURE_WORKER_GRIDS = 4
#: The share of the memory available (mcproton._run.inputs.available_memory) the figure workers may take together.
FIGURE_WORKER_MEMORY_SHARE = 0.5
#: the fewest CPUs with which the figures are drawn in workers: on 2 CPUs (the CI VM, a laptop) the gamma workers
#: already use both and each figure worker adds ~0.45 s of its own matplotlib import; measured on the OpenTPS head
#: case at 2 CPUs (BENCHMARKS.md, 2026-12-06 host time): no gain, so the figures are drawn here below 4 CPUs
FIGURE_WORKER_MIN_CPUS = 4


def figure_worker_count(figures: int, grid_voxels: int) -> int:
    """How many forked processes draw the report's ``figures`` figures (FigureWorkers): one per figure, at most one
    per CPU this process may use (mcproton._cpus.usable_cpus) and as many as FIGURE_WORKER_MEMORY_SHARE of the
    memory available holds (FIGURE_WORKER_MB and FIGURE_WORKER_GRIDS each); 0, the figures drawn here, one after
    the other, where there is no fork (not Linux, or another Python thread running: mcproton._forked), fewer than
    FIGURE_WORKER_MIN_CPUS CPUs, or room for fewer than two."""
    from .._cpus import usable_cpus
    from .._forked import BackgroundProcess
    from .._run.inputs import available_memory

    cpus = usable_cpus()
    if cpus < FIGURE_WORKER_MIN_CPUS:
        return 0
    n = min(int(figures), cpus)
    mem = available_memory()
    if mem is not None:
        each = FIGURE_WORKER_MB * 1e6 + FIGURE_WORKER_GRIDS * 8 * int(grid_voxels)
        n = min(n, int(FIGURE_WORKER_MEMORY_SHARE * mem.available // each))
    return n if n >= 2 and BackgroundProcess.available() else 0


def _import_matplotlib() -> None:
    """In a figure worker while it waits for its message: matplotlib's import and a first canvas (~0.4 s), so
    that drawing starts at once (a failure is left to the drawing, which reports it)."""
    try:
        from ..plots import _plt

        _plt()
    except Exception:  # noqa: BLE001 - see above
        pass


class FigureWorkers:
    """The report's figures that do not show the 3-D gammas (render_figures' ``skip=GAMMA_FIGURES``), drawn in
    ``workers`` forked processes (mcproton._forked.MessageProcess) instead of here one after the other: the figures
    are independent, ~1 s of matplotlib each on a head plan, and the report was the check's largest host step
    (BENCHMARKS.md, 2026-12-06 host time).  ``with FigureWorkers(result_of, workers, log) as figs:`` forks them at
    once, before the check starts its gamma workers' threads (a fork needs no other Python thread); each imports
    matplotlib and waits.  :meth:`render` sends each its share of the figures' names with ``parts``, what the
    figures need that was computed after the fork (the structure statistics, the ranges, ...: the arrays they
    read, the doses and masks, the workers have from the fork, shared, not copied), waits for their PNGs and returns
    them.  ``result_of(parts)``: the CheckResult the figures are drawn from (the same call here and in a worker, so
    the PNGs are those drawn here, byte for byte: tested).

    With no worker (``workers`` < 2: figure_worker_count) :meth:`render` draws here.  A worker that fails (its
    figure raised, it died, its answer did not come back) is logged and its figures drawn here, where an error of
    a figure is raised as it is without workers.  On the way out of the ``with`` (an error or a stop signal in the
    check: CheckStopped) the workers still running are ended, SIGTERM then SIGKILL, each waited for
    (mcproton._forked.STOP_WAIT_S): none is left behind; they ignore SIGINT themselves (a terminal's Ctrl-C reaches
    them too: the check stops them) and end on SIGTERM without running the check's stop handlers.  ``cpu_s``: the
    workers' CPU seconds; ``used``: the workers that drew."""

    def __init__(self, result_of: Callable[[dict], Any], workers: int, log: Callable[[str], None] | None = None):
        from .._forked import MessageProcess

        self.result_of, self.log = result_of, log
        self.cpu_s, self.used = 0.0, 0
        self._procs: list[MessageProcess] = []
        try:
            for k in range(workers if workers >= 2 else 0):
                self._procs.append(MessageProcess(self._draw, _import_matplotlib, f"the report's figures ({k + 1})",
                                                  doing="drawing", role="figure worker", own_signals=True))
        except BaseException:
            self.close()
            raise

    def _draw(self, message: tuple[list[str], dict]) -> tuple[dict[str, str], dict[str, str]]:
        """In a worker: its figures, each built and encoded (render_figures), and the characters of their names
        that the font lacks (plots.missing_glyphs), for :meth:`render` to say in the check.  A warning said here
        would be said once per worker and never reach the check's record (check.json's warnings): what was
        recorded depended on the machine's CPU count (review 2 of 2026-12-06, F3)."""
        names, parts = message
        glyphs: dict[str, str] = {}
        pngs = {name: _png(build(), glyphs) for name, build in figure_builders(self.result_of(parts), names).items()}
        return pngs, glyphs

    def render(self, parts: dict, skip: Iterable[str] = ()) -> dict[str, str]:
        """The figures of ``result_of(parts)`` except ``skip``, {name: base64 PNG} (render_figures'), drawn by the
        workers (each sent its share, in the report's order round the workers) or here."""
        res = self.result_of(parts)
        names = [n for n in figure_builders(res) if n not in set(skip)]
        procs, self._procs = self._procs, []
        if not procs:
            return {name: _png(build()) for name, build in figure_builders(res, names).items()}
        shares = [names[k::len(procs)] for k in range(len(procs))]
        try:
            for p, share in zip(procs, shares):
                if share:
                    p.send((share, parts))
            done: dict[str, str] = {}
            glyphs: dict[str, str] = {}
            for p, share in zip(procs, shares):
                try:
                    pngs, missing = p.join() or ({}, {})
                    done.update(pngs)
                    glyphs.update((ch, f) for ch, f in missing.items() if ch not in glyphs)
                    self.cpu_s += p.process.cpu_s
                    self.used += bool(share)
                except RuntimeError as exc:   # drawn here instead, where an error of a figure is raised as usual
                    if self.log is not None:
                        self.log(f"mcproton check: {exc}; drawing {', '.join(share)} here")
                    done.update((name, _png(build(), glyphs)) for name, build in figure_builders(res, share).items())
        except BaseException:
            for p in procs:
                p.stop()
            raise
        say_missing_glyphs(glyphs)   # here, in the check's record, once, as when the figures are drawn here
        return {name: done[name] for name in names}

    def close(self) -> None:
        """End the workers not yet joined (render joins them): after an error or a stop signal in the check."""
        procs, self._procs = self._procs, []
        for p in procs:
            p.stop()

    def __enter__(self) -> FigureWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _no_target_planes_text() -> str:
    """The dose maps' words where no structure is a target: where the planes go instead (_centre)."""
    return (f"<p>No target structure: the planes go through the high-dose region of the TPS dose (the dose-weighted "
            f"centroid of the body voxels at or above {100 * CENTRE_HIGH_DOSE_LEVEL:.0f} % of the TPS maximum, the "
            "sagittal plane through their median x), not through a target.</p>")


def _alt(res, name: str) -> str:
    """The alt text of the report's figure ``name``: what it shows and its numbers, so that the page read without
    its images (or by a screen reader) still says what each figure found (audit 13, F12: "DVH overlay")."""
    g = res.gamma.get("2%/2mm", {})
    dd = res.dose_difference
    if name in PLANES:
        out = (f"{name} plane through {_centre_words(res)}: TPS and MC dose, MC - TPS and the MC's 1 sd (% of the TPS "
               "near-maximum, its 8th-largest body voxel), 2-D gamma 2%/2mm (grey pass, red fail)")
        if g:
            out += f"; in 3-D, gamma 2%/2mm {_num(100 * g['pass_rate'], '.2f')} % pass"
        if dd.get("voxels"):
            q = dd["percentiles_pct"]
            out += (f", MC - TPS mean {_num(dd['mean_pct'], '+.2f')} % (5-95 %: {_num(q['p5'], '+.2f')} to "
                    f"{_num(q['p95'], '+.2f')} %)")
        return out
    if name == "histograms":
        rates = ", ".join(f"{k} {_num(100 * res.gamma[k]['pass_rate'], '.2f')} %" for k, _ in HIST_CRITERIA
                          if k in res.gamma)
        out = f"3-D gamma histograms (pass rates {rates}) and the MC - TPS histogram"
        if dd.get("voxels"):
            out += (f" (mean {_num(dd['mean_pct'], '+.2f')} %, SD {_num(dd['sd_pct'], '.2f')} % of the TPS "
                    "near-maximum, its 8th-largest body voxel)")
        return out
    if name == "dvh":
        names = list(_dvh_masks(res))
        targets = [f"{nm} D95 {_num(r['metrics']['D95']['diff_pct'], '+.2f')} %, Dmean "
                   f"{_num(r['metrics']['Dmean']['diff_pct'], '+.2f')} %"
                   for nm, r in res.structures.items() if r["kind"] == "target" and "D95" in r["metrics"]]
        left = _dvh_left_out(res)
        return (f"DVH of {len(names)} structure(s) ({', '.join(names)}), TPS solid, MC dashed"
                + (f"; {left} more structures are in the table only" if left else "")
                + (f"; MC - TPS: {'; '.join(targets)}" if targets else ""))
    b = int(name.split("_", 1)[1])
    r = res.ranges[b]
    out = (f"beam {b}: TPS and MC dose, MC - TPS and 2-D gamma 2%/2mm {_beam_plane_caption(res, b)}; distal R80 "
           "MC - TPS in the beam's eye view and its histogram")
    if r.get("rays"):
        of = f" of {r['rays_tps']}" if r.get("rays_without_mc_edge") else ""
        out += (f": median {_num(r['median_mm'], '+.2f')} mm over {r['rays']}{of} rays, "
                f"{_num(100 * r['within_2mm'], '.2f')} % within 2 mm")
    return out


def _img(res, name: str, png: str) -> str:
    """The report's figure ``name`` (its base64 PNG) with its alt text (_alt)."""
    return f'<img alt="{_html(_alt(res, name))}" src="data:image/png;base64,{png}">'


def write_report(res, out_dir: str | Path, timings: dict, pngs: dict[str, str] | None = None) -> Path:
    """Write check.html (figures embedded) into ``out_dir``; returns its path.  ``pngs``: figures already rendered
    (render_figures) of this result; the others are rendered here."""
    out = Path(out_dir)
    done = dict(pngs or {})
    figs = {name: done[name] if name in done else _png(build())       # one built, encoded, next
            for name, build in figure_builders(res).items()}
    p = res.provenance
    desc = _dose(res)
    unit = desc["unit"]
    default = {k: v["value"] for k, v in ActionLevels().describe().items()}
    who = _who(res)
    # the first printed page: what was checked, the verdict and each level, the notes, the sign-off; the details
    # after a page break (audit 13, F7/F10: 8 printed pages, the sign-off on the last with no patient or verdict)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_html(_who_line(who))}</title>",
        f"<style>{REPORT_CSS}{print_css(_who_line(who, date=False), who['date'])}</style></head><body>",
        (f"<h1>mcproton check: <span class=\"{'pass' if res.passed else 'fail'}\">"
         f"{'PASS' if res.passed else 'FAIL'}</span></h1>"),
        # a check against mcproton's own dose says so under the verdict, not only in the Pairing section (audit 21
        # review)
        *([f'<p class="changed"><b>{_html(said[0].upper() + said[1:])}.</b></p>'
           for said in (getattr(res, "self_compared", ""), getattr(res, "no_structures", ""),
                        getattr(res, "kvp_mismatch", "")) if said]),
        # whom the files name, where they differ (mcproton/_io/patients.py: refused where the ID, birth date or sex
        # differ; a name spelled otherwise, or files linked by UID with other IDs, are said here, above the levels)
        *[f'<p class="changed"><b>Patient identity: {_html(w)}.</b></p>'
          for w in res.provenance.get("patient_identity_warnings") or []],
        _identification(res),
        "<h2>Action levels</h2>",
        f"<p>{_html(FRAME)} Defaults and the source of each: the last table of this report.</p>",
        _table(["quantity", "value", "action level", "result"],
               [[c["quantity"], c["value_text"], c["limit_text"], "pass" if c["passed"] else "FAIL"]
                for c in res.checks],
               ["pass" if c["passed"] else "fail" for c in res.checks],
               caption=f"Action levels: {who['verdict']}"),
    ]
    # the notes that explain a level first, under "Likely causes" on a FAIL; the remarks (structure typing, dose in
    # air, an unchecked position, ...) under their own heading: before, all stood under "Likely causes", the real
    # cause last (audit 18b F6).  On a passed check the causes are notes too.
    causes, remarks = res.diagnostics_of("cause"), res.diagnostics_of("remark")
    for head, notes in ((("Likely causes" if not res.passed else "Notes"), causes), ("Remarks", remarks)):
        if notes:
            parts.append(f"<h3>{head}</h3><ul>" + "".join(f"<li>{_html(d)}</li>" for d in notes) + "</ul>")
    if res.warnings:   # what mcproton warned about while checking: the signed report keeps it
        parts.append("<h3>Warnings during the check</h3><ul>"
                     + "".join(f"<li>{_html(w)}</li>" for w in res.warnings)
                     + "</ul>")
    parts += [_sign_off(who), '<div class="details">']
    parts += ["<h2>Gamma (3-D)</h2>",
              _table(["criterion", "pass rate (%)", "standard error (%)", "points evaluated",
                      "points above threshold", f"normalisation ({unit})", "points above 1 searched again"],
                     [_gamma_table_row(k, g) for k, g in res.gamma.items()]
                     + [_gamma_table_row(f"beam {b}: 2%/2mm", g) for b, g in res.beam_gamma.items()]),
              f"<p>{_html(res.settings['gamma'])}.</p>"]
    dd = res.dose_difference
    if dd.get("voxels"):
        from .compare import NORMALISATION_PLATEAU_TEXT

        q = dd["percentiles_pct"]
        parts.append(f"<p>Dose difference MC - TPS over {dd['voxels']} body voxels above 10 %: mean "
                     f"{_num(dd['mean_pct'], '+.2f')} %, SD {dd['sd_pct']:.2f} %, 5-95 % range "
                     f"{_num(q['p5'], '+.2f')}..{_num(q['p95'], '+.2f')} %"
                     f" of the TPS dose's near-maximum in the body ({dd['normalisation_gy']:.3f} {unit}, "
                     + (NORMALISATION_PLATEAU_TEXT if dd.get("normalisation_plateau") else "its 8th-largest body voxel")
                     + "); "
                     f"within 2 %: {100 * dd['within_2pct']:.1f} %, within 3 %: {100 * dd['within_3pct']:.1f} %; "
                     "MC/TPS integral "
                     f"{dd['integral_ratio_mc_tps']:.4f}.</p>")
    parts += [f"<h2>Dose maps: {_html(desc['label'])}</h2>",
              *([] if _first_target(res) is not None else [_no_target_planes_text()]),
              *(_img(res, name, figs[name]) for name in (*PLANES, "histograms"))]
    if res.structures:
        rows = []
        matched = any("noise_matched_diff_pct" in m for r in res.structures.values() for m in r["metrics"].values())
        for nm, r in res.structures.items():
            shown = f"{nm} (part on the dose grid)" if r.get("partly_outside_dose_grid") else nm
            # a target by its name rather than its RTROIInterpretedType says so (structure audit F4)
            kind = (f"{r['kind']} ({r['kind_basis']})" if r.get("kind_basis", "by its type") != "by its type"
                    else r["kind"])
            # volume and voxels on a structure's first row; a structure of few voxels flagged (compare.structure_stats)
            # the contour volume (the planning system's) beside the mask's
            contour = f" (contour {_num(r['contour_volume_cm3'], '.3f')})" if "contour_volume_cm3" in r else ""
            size = [_num(r["volume_cm3"], ".3f") + contour if "volume_cm3" in r else "",
                    "" if r.get("voxels") is None else f"{r['voxels']}" + (" (few: see the notes)"
                                                                          if r.get("few_voxels") else "")]
            for i, (k, m) in enumerate(r["metrics"].items()):
                sz = size if i == 0 else ["", ""]
                if "tps_gy" in m:
                    row = [shown, kind, *sz, k, _num(m["tps_gy"], ".4f"), _num(m["mc_gy"], ".4f"),
                           _num(m["diff_gy"], "+.4f"), _num(m["diff_pct"], "+.2f")]
                    extra = [m.get("noise_shift_pct"), m.get("noise_matched_diff_pct"), m.get("mc_corrected_diff_pct")]
                else:
                    row = [shown, kind, *sz, m.get("label", k), _num(100 * m["tps"], ".2f"),
                           _num(100 * m["mc"], ".2f"), _num(m["diff_points"], "+.2f"), ""]
                    extra = [m.get("noise_shift_points"), m.get("noise_matched_diff_points"),
                             m.get("mc_corrected_diff_points")]
                if matched:
                    row += ["" if x is None else _num(x, "+.2f") for x in extra]
                rows.append(row)
        head = ["structure", "kind", "volume (cm3)", "voxels", "metric", f"TPS ({unit} / %)", f"MC ({unit} / %)",
                f"MC - TPS ({unit} / points)", "MC - TPS (% of the TPS value)"]
        if matched:
            head += ["MC noise alone (% of the TPS value / points)",
                     "MC - TPS with the MC's noise (% of the TPS value / points)",
                     "MC less its noise's shift - TPS (% of the TPS value / points)"]
        parts += [f"<h2>Structures: {_html(desc['label'])}</h2>", _table(head, rows)]
        if matched:
            parts.append("<p>MC noise widens the MC's dose distribution in a structure: D98/D95 read low, D2/Dmax "
                         "high, V95 low, even where the MC is right (Kawrakow 2004, Phys Med Biol 49:1549). "
                         "\"MC noise alone\" is what that noise does to the metric: the metric of the TPS dose with "
                         "the MC's statistical noise added (Gaussian of SD the MC's own standard error in each "
                         "voxel: its dose times its relative uncertainty; "
                         f"{res.settings.get('noise_matching', {}).get('realisations', '')} seeded realisations) "
                         "minus the TPS's. \"MC - TPS with the MC's noise\" compares like with like where the two "
                         "dose distributions have the same shape, but hides part of a real error that changes the "
                         "shape (a cold corner). \"MC less its noise's shift\" corrects the MC's side instead: its "
                         "own dose with its noise added once more, the shift divided by sqrt(2) - 1 (a shift linear "
                         "in the noise, as in a flat dose). Each errs where another holds, so the target D95 action "
                         "level needs the raw difference and both corrected ones within it; the Dmean level is on "
                         "the raw difference (zero-mean noise does not move a mean). Differences in % are of the TPS "
                         "value of the metric, V95/V100 in points of the structure's volume.</p>")
        else:
            parts.append("<p>Differences in % are of the TPS value of the metric, V95/V100 in points of the "
                         "structure's volume.</p>")
        rx = p.get("prescription_gy")
        if rx:
            what = (f"{rx:.3g} {unit}" if not isinstance(rx, dict) else
                    ", ".join(f"{_html(str(nm))} {v:.3g} {unit}" for nm, v in rx.items()))
            parts.append(f"<p>V95/V100 relative to {what} ({_html(str(p['prescription_source']))})"
                         + (": the TPS's V100 of its own median is 50 % by construction, not a coverage"
                            if "median" in str(p.get("prescription_source")) else "") + ".</p>")
        if "dvh" in figs:
            parts.append(_img(res, "dvh", figs["dvh"]))
            left = _dvh_left_out(res)
            if left:
                parts.append(f"<p>The DVH figure draws {len(_dvh_masks(res))} structures: the targets and the "
                             f"others of highest TPS dose; {left} more are in the structure table only.</p>")
    parts += _beam_dose_section(res)
    parts.append("<h2>Beams: range agreement</h2>")
    nan = float("nan")
    rows = [[_range_beams_cell(b, r), r.get("source", ""), _tps_rays_cell(r), r.get("rays", 0),
             _num(r.get("median_mm", nan), "+.2f"),
             _num(r.get("p5_mm", nan), "+.2f"), _num(r.get("p95_mm", nan), "+.2f"),
             _num(100 * r.get("within_1mm", nan), ".2f"), _num(100 * r.get("within_2mm", nan), ".2f"),
             _num(r.get("noise_median_mm", nan), "+.2f"), _num(100 * r.get("noise_within_2mm", nan), ".2f"),
             _num(r.get("noise_matched_median_mm", nan), "+.2f")]
            for b, r in res.ranges.items() if r.get("same_rays_as") is None]   # beams sharing rays: one row
    parts.append(_table(["beam", "dose compared", "rays with a TPS edge (no MC edge)", "rays compared",
                         "median dR80 (mm)", "5 % (mm)", "95 % (mm)",
                         "within 1 mm (%)", "within 2 mm (%)", "MC noise alone: median (mm)",
                         "MC noise alone: within 2 mm (%)", "noise-matched median (mm)"], rows))
    parts.append("<p>\"MC noise alone\": the same comparison of the TPS dose against itself with the MC's noise "
                 "(Gaussian of SD the MC's own standard error in each voxel of that beam's dose, one seeded "
                 "realisation per beam). The median level is judged on the noise-matched median (the median "
                 "less the noise alone's), the rays level against the share of rays that the noise alone leaves "
                 "within 2 mm.</p>")
    parts.append("<p>dR80 = distal 80 % position of the MC minus the TPS along rays parallel to the beam "
                 "through each "
                 "beam's-eye-view pixel where the TPS dose reaches 50 % of its maximum. The median and "
                 "percentiles are of the rays compared (a distal R80 in both doses); a ray with a distal R80 in "
                 "one dose only (\"no MC edge\": the MC's dose on it is missing or never falls) counts outside "
                 "1 and 2 mm.</p>")
    parts.append(_beams_table(res))
    for b in sorted(res.ranges):
        parts.append(_img(res, f"beam_{b}", figs[f"beam_{b}"]))
    if res.mc_rtdose:
        parts += [f"<h2>MC dose as DICOM RT Dose: {_html(desc['label'])}</h2>",
                  "<p>In this report's folder, on the TPS dose grid, in the TPS dose's study and frame of reference, "
                  "referencing the plan (to open beside the TPS dose in the planning system or a viewer); zero "
                  "outside the body outline, as compared here.</p>",
                  _table(["dose", "file", "DoseSummationType", "DoseType", f"maximum ({unit})"],
                         [[k, v["file"], v["dose_summation_type"], v["dose_type"], _num(v["max_gy"], ".4f")]
                          for k, v in res.mc_rtdose.items()])]
    parts += ["<h2>Pairing</h2><ul>" + "".join(f"<li>{_html(s)}</li>" for s in res.pairing) + "</ul>",
              _settings_table(res, unit),
              "<h2>Provenance</h2>",
              _table(["item", "value"], _provenance_rows(p, unit)),
              "<h2>Host steps (wall time, s)</h2>",
              _table(["step", "s"], [[k, v] for k, v in timings.items()]
                     + [["sum of the steps above", sum(v for k, v in timings.items() if k != "total_s")]]),
              "<p>The report's own writing time and the total are in check.json (timings_s).</p>",
              "<h2>Action levels used and their sources</h2>",
              _table(["level", "value", "default", "source"],
                     [[k, v["value"], default[k], v["source"]] for k, v in res.levels.items()],
                     ["" if v["value"] == default[k] else "changed" for k, v in res.levels.items()]),
              "<p>Values differing from the default (set in a --config file) are highlighted.</p>",
              "</div></body></html>"]
    path = out / "check.html"
    from .._io.atomic import write_bytes_atomic

    write_bytes_atomic(path, "\n".join(parts).encode("utf-8"))   # complete or not at all (a stopped check)
    res.report_html = str(path)
    return path


def _batch_common(table: Mapping[str, Mapping[str, Any]]) -> str:
    """What the batch's checks were made with, above its index: each item's value, or its values where the rows
    differ (batch.json has each row's)."""
    checked = [t for t in table.values() if t.get("error") is None]
    items = (("mcproton", lambda t: t.get("mcproton_version")),
             ("beam model", lambda t: f"{t.get('beam_model')}"
                                      + (f" (SHA-256 {t['beam_model_sha256']})" if t.get("beam_model_sha256") else "")),
             ("calibration", lambda t: f"{t.get('calibration')}"
                                       + (f" (SHA-256 {', '.join(t['calibration_sha256'])})"
                                          if t.get("calibration_sha256") else "")),
             ("target statistical uncertainty", lambda t: "none" if not t.get("target_uncertainty") else
              f"{100 * float(t['target_uncertainty']):.3g} %"),
             ("action levels", lambda t: t.get("levels")))
    lines = []
    for label, get in items:
        vals = list(dict.fromkeys(str(get(t)) for t in checked if t.get("mcproton_version") is not None))
        if vals:
            lines.append(f"<li>{_html(label)}: {_html(' | '.join(vals))}"
                         + (" (differs between the rows: see batch.json)" if len(vals) > 1 else "") + "</li>")
    return f"<p>Checked with:</p><ul>{''.join(lines)}</ul>" if lines else ""


def _row_verdict(t: Mapping[str, Any]) -> str:
    """A batch row's outcome as the index shows and counts it: PASS, FAIL (checked), REFUSED, ERROR (the machine, the
    output or a bug), INTERRUPTED, NOT CHECKED (the output disk full) or NOT IN BATCH (an earlier check's folder of a
    patient gone from the export); a row without a status (an older batch.json's) by its flags."""
    if t.get("error") is None:
        return "PASS" if t["passed"] else "FAIL"
    status = t.get("status")
    if t.get("internal_error") or status in ("internal_error", "environment_error"):
        return "ERROR"
    if t.get("interrupted") or status == "interrupted":
        return "INTERRUPTED"
    if t.get("not_checked") or status == "not_checked":
        return "NOT CHECKED"
    return "NOT IN BATCH" if status == "not_in_batch" else "REFUSED"


def write_batch_index(table: dict[str, dict], out_dir: str | Path, pending: Iterable[str] = (),
                      skipped: Iterable[str] = ()) -> Path:
    """Write ``out_dir/index.html``: one row per patient of a ``--batch`` (its folder, PatientID and name, the plan's
    label (else its name, else its UID), PASS, FAIL with the failing quantities, REFUSED, ERROR or INTERRUPTED
    with the message; the 2 %/2 mm gamma, the MC's uncertainty, when it was checked, the TPS doses' SOPInstanceUIDs,
    its report by its path; a row whose plan another row holds too says so, one whose check warned says how often),
    the patients not checked yet (``pending``: the page is rewritten after every patient), and below the table what
    the batch did not take for a patient (``skipped``: the log's lines).  Above the table, what the checks were
    made with (mcproton's version, the beam model and calibration with their SHA-256, the statistical target, the
    action levels).  Returns its path."""
    from .._io.atomic import write_bytes_atomic
    from .inputs import DOSE_TYPE_GIVEN_OVER

    out = Path(out_dir)
    rows = []
    for name, t in table.items():
        who = " ".join(v for v in (t.get("patient_id") or "", f"({t['patient_name']})" if t.get("patient_name")
                                   else "") if v)
        verdict = _row_verdict(t)
        if t.get("error") is not None:   # every row has the key (null for a computed check's: batch.json's core)
            what, link = t["error"], ""
        else:
            n_warn = len(t.get("warnings") or [])
            # a --dose-type that gave another system's RT Dose another type: named, not only counted (journey 28 F3b)
            over = [w for w in t.get("warnings") or [] if str(w).startswith(DOSE_TYPE_GIVEN_OVER)]
            what = "; ".join(t["failed"] + ([f"the same RT Plan as {t['duplicate_of']} (one SOPInstanceUID)"]
                                            if t.get("duplicate_of") else [])
                             + [f"warning: {w}" for w in over]
                             + ([f"{n_warn} warning{'s' if n_warn > 1 else ''} during the check (in its report)"]
                                if n_warn else []))
            rel = t.get("report") or ""   # relative to this folder (batch.json's)
            # the href percent-encoded as a URL path, then escaped: a folder "Pt #1" or "50% a?b" made a fragment or a
            # query of the link's tail, which led nowhere (strings audit 19, F4); the text shown stays the name
            link = f'<a href="{_html(quote(rel))}">{_html(rel)}</a>' if rel else ""
        g, u = t.get("gamma_2_2_pct"), t.get("statistical_uncertainty_pct")
        doses = "; ".join(str(d.get("sop_instance_uid") or Path(str(d.get("path", ""))).name)
                          for d in t.get("tps_doses") or [])
        # as the check's verdict line (realcheck audit F2: read plain PASS; journey audit 28 F1: without structures)
        shown = verdict + "".join(f" ({t[k]})" for k in ("self_compared", "no_structures", "kvp_mismatch")
                                  if verdict in ("PASS", "FAIL") and t.get(k))
        cells = [name, who, t.get("plan") or "", shown, what, "" if g is None else f"{g:.2f}",
                 "" if u is None else f"{u:.2f}", t.get("checked") or "", doses]
        rows.append("<tr" + (' class="pass"' if verdict == "PASS" else ' class="fail"') + ">"
                    + "".join(f"<td>{_html(str(c))}</td>" for c in cells) + f"<td>{link}</td></tr>")
    waiting = list(pending)
    for name in waiting:
        rows.append(f"<tr><td>{_html(name)}</td><td></td><td></td><td>not checked yet</td>" + "<td></td>" * 6
                    + "</tr>")
    from .batch import TOP_LEVEL

    n_pass = sum(1 for t in table.values() if t.get("error") is None and t["passed"])
    # the row of loose top-level files is not a patient, nor is an interrupted patient checked, nor a refused one
    # (journey audit 28, F3a: "4 patient(s) checked, 0 passed" where 3 had been refused)
    kinds = [_row_verdict(t) for k, t in table.items() if k != TOP_LEVEL]
    n_stopped = kinds.count("INTERRUPTED")
    n_checked = kinds.count("PASS") + kinds.count("FAIL")
    # (count, as the first paragraph says it, as the title says it)
    not_checked = [(n, what, short) for n, what, short in (
        (kinds.count("REFUSED"), "refused (not checked: why in its row)", "refused"),
        (kinds.count("ERROR"), "stopped by an error (not checked)", "stopped by an error"),
        (n_stopped, "interrupted", "interrupted"),
        (kinds.count("NOT CHECKED"), "not checked", "not checked"),
        (kinds.count("NOT IN BATCH"), "not in this batch (an earlier check's folder)", "not in this batch"),
        (len(waiting), "not checked yet", "not checked yet")) if n]
    notes = [f"<li>{_html(line)}</li>" for line in skipped]
    head = "".join(f'<th scope="col">{h}</th>' for h in (
        "patient folder", "PatientID (name)", "plan", "result", "failed quantities or reason", "gamma 2%/2mm (%)",
        "MC uncertainty (%)", "checked", "TPS dose(s) compared (SOPInstanceUID)", "report"))
    # the title and each printed page name the batch, its outcome and the date (audit 13, F7: "mcproton check:
    # batch" for every batch)
    from datetime import date

    # counted as the first paragraph counts (review d of 2026-12-07, R2: "0 of 4 patient(s) passed" above "1
    # patient(s) checked, 0 passed ...; 3 refused")
    line = (f"mcproton check batch {out.resolve().name}: {n_pass} of {n_checked} checked patient(s) passed"
            + "".join(f", {n} {short}" for n, _, short in not_checked))
    today = date.today().isoformat()
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_html(line)} | {today}</title>",
        f"<style>{REPORT_CSS}{print_css(line, today)}</style></head><body>",
        "<h1>mcproton check: batch</h1>",
        f"<p>{n_checked} patient(s) checked, {n_pass} passed every action level"
        + "".join(f"; {n} {what}" for n, what, _ in not_checked) + ".  Each report is one HTML page per plan "
        "(its printout: a summary page with the sign-off, then the details); the numbers of all are in "
        "batch.json (its report paths relative to its folder, this one).</p>",
        _batch_common(table),
        f"<table><tr>{head}</tr>", *rows, "</table>",
        *(["<p>Not taken for patients, not checked:</p>", "<ul>", *notes, "</ul>"] if notes else []),
        "</body></html>"])
    return write_bytes_atomic(out / "index.html", page.encode("utf-8"))

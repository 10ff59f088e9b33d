"""Figures people would rather look at than read: depth-dose curves and dose over the anatomy."""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np


def mpl_text(text: object) -> str:
    """``str(text)`` for matplotlib to draw as it is: every ``$`` escaped (``\\$``), so that text from an input (an
    ROI, beam or patient name, a file name) is never read as mathtext.  Before 2026-12-06 an ROI named ``CTV $_$``
    raised matplotlib's ParseSyntaxException while the figures were drawn, after the whole transport (no summary,
    no report), and ``Brainstem $x^2$`` was drawn with a superscript (strings audit 19, F1).  Every figure that draws
    a name from an input passes it through here; text of mcproton's own (units such as ``cm$^2$``) does not."""
    return str(text).replace("$", r"\$")


#: matplotlib's warning of a character that its font cannot draw (drawn as an empty box): "Glyph 23567 (\\N{CJK
#: UNIFIED IDEOGRAPH-5C0F}) missing from font(s) DejaVu Sans."  matplotlib gives it (``_api.warn_external``) as
#: raised by the first caller outside matplotlib: mcproton's figure code for mcproton's figures
_GLYPH_MESSAGE = r"Glyph \d+ \(.*\) missing from font\(s\)"
#: the modules whose figures' missing-glyph warnings :func:`quiet_glyph_warnings` keeps quiet: mcproton's
_OUR_MODULES = r"mcproton(\.|$)"
#: the filter that keeps matplotlib's missing-glyph warnings of mcproton's figures quiet (those only: raised with
#: an mcproton module as their caller; the user's own figures keep theirs), as ``warnings.filterwarnings`` puts it
#: into ``warnings.filters``: :func:`missing_glyphs` finds the characters instead, and :func:`say_missing_glyphs`
#: names them once
_GLYPH_FILTER = ("ignore", re.compile(_GLYPH_MESSAGE, re.I), UserWarning, re.compile(_OUR_MODULES), 0)

#: the characters a missing-glyph warning has named in this process outside any recording_warnings block (inside
#: one, a run's or a check's, each is said once per block: its record holds it whatever was said before)
_GLYPHS_SAID: set[str] = set()
_GLYPHS_SAID_PREFIX = "the figures' font ("


def quiet_glyph_warnings() -> None:
    """Put :data:`_GLYPH_FILTER` first among the warning filters (where it is not already): matplotlib's
    missing-glyph warnings of mcproton's figures are not shown, even under an "always" filter put in since.  One
    filter, added to the filters and left there: no process-global state swapped and restored around a figure
    (``warnings.catch_warnings`` is not thread safe: two threads drawing at once could leave every later warning of
    the process in a dead list; and what was raised in a figure that failed was lost: review 2 of 2026-12-06,
    F2).  Other warnings pass as they are, when they are raised."""
    if not warnings.filters or warnings.filters[0] != _GLYPH_FILTER:
        warnings.filterwarnings("ignore", message=_GLYPH_MESSAGE, category=UserWarning, module=_OUR_MODULES)


@contextmanager
def missing_glyphs_said_once(fig) -> Iterator[None]:
    """``with missing_glyphs_said_once(fig):`` draw or save ``fig`` inside; matplotlib's missing-glyph warnings of it
    (a CJK ROI name in DejaVu Sans) are kept quiet (:func:`quiet_glyph_warnings`) and become one warning of
    mcproton's naming the characters (:func:`missing_glyphs`, :func:`say_missing_glyphs`), also where the drawing
    fails.  Before 2026-12-06 each figure printed matplotlib's two-line warning per character: 16 of them for one
    check (strings audit 19, F8)."""
    quiet_glyph_warnings()
    try:
        yield
    finally:
        say_missing_glyphs(missing_glyphs(fig), stacklevel=4)


def missing_glyphs(fig) -> dict[str, str]:
    """The characters of ``fig``'s texts that none of the fonts matplotlib draws them in has (drawn as empty boxes),
    in order of appearance: {character: the fonts' family names}.  The fonts are those matplotlib's Agg canvas
    uses for each text's font properties (the font and its fallbacks); whitespace and control characters, which
    matplotlib draws no glyph for, and mathtext (mcproton's own units: input names are never mathtext, mpl_text)
    are left out."""
    from matplotlib.text import Text

    out: dict[str, str] = {}
    for t in fig.findobj(Text):
        text = t.get_text()
        if not text or not t.get_visible() or text.isascii() or t._preprocess_math(text)[1]:
            continue
        paths = _font_paths(t.get_fontproperties())
        for ch in dict.fromkeys(text):
            if ch not in out and not _drawable(ch) and not _has_glyph(paths, ch):
                out[ch] = _family_names(paths)
    return out


def _drawable(ch: str) -> bool:
    """Whether ``ch`` needs no glyph to be drawn as meant: ASCII (in every font matplotlib ships), whitespace, or a
    control or format character."""
    import unicodedata

    return ch.isascii() or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def _font_paths(prop) -> tuple[str, ...]:
    """The font files matplotlib's Agg canvas draws text of font properties ``prop`` in: the font and its fallbacks
    (matplotlib >= 3.6), else the one font."""
    from matplotlib import font_manager

    find = getattr(font_manager.fontManager, "_find_fonts_by_props", None)
    return tuple(str(p) for p in (find(prop) if find is not None else [font_manager.findfont(prop)]))


@lru_cache(maxsize=4096)
def _has_glyph(paths: tuple[str, ...], ch: str) -> bool:
    """Whether one of the fonts ``paths`` has a glyph for ``ch``."""
    from matplotlib.font_manager import get_font

    return any(get_font(p).get_char_index(ord(ch)) for p in paths)


@lru_cache(maxsize=64)
def _family_names(paths: tuple[str, ...]) -> str:
    """The family names of the fonts ``paths``, as matplotlib's warning names them ("DejaVu Sans")."""
    from matplotlib.font_manager import get_font

    return ", ".join(dict.fromkeys(get_font(p).family_name for p in paths))


def _glyph_said(ch: str) -> bool:
    """Whether the missing glyph ``ch`` was said: in the outermost recording_warnings block open in this thread (a
    run's or a check's: its record must hold it, whatever an earlier run in the process said), else in this
    process."""
    from ._io.errors import _open_blocks

    blocks = _open_blocks()
    if not blocks:
        return ch in _GLYPHS_SAID
    for m in blocks[0]:
        if m.startswith(_GLYPHS_SAID_PREFIX) and " has no glyph for " in m:
            if ch in m.split(" has no glyph for ", 1)[1].split(" (in a name", 1)[0].split(" "):
                return True
    return False


def say_missing_glyphs(missing: dict[str, str], stacklevel: int = 2) -> None:
    """One warning of mcproton's naming the characters of ``missing`` (:func:`missing_glyphs`: {character: fonts})
    not said yet (:func:`_glyph_said`): each once per run or check, and once per process outside one."""
    new = {ch: fonts for ch, fonts in missing.items() if not _glyph_said(ch)}
    if not new:
        return
    from ._io.errors import McprotonRuntimeWarning, warn

    _GLYPHS_SAID.update(new)
    fonts = ", ".join(sorted(set(new.values())))
    warn(f"{_GLYPHS_SAID_PREFIX}{fonts}) has no glyph for {' '.join(new)} (in a name from the inputs): drawn as "
         "empty boxes in the figures; the tables, the JSON and the HDF5 hold the names as written",
         McprotonRuntimeWarning, stacklevel=stacklevel + 1)


class _Figures:
    """The three pyplot calls these figures use, on figures that pyplot does not know: each a
    ``matplotlib.figure.Figure`` with an Agg canvas of its own (as the check report's).  pyplot, and
    ``matplotlib.use("Agg")`` before it, switched the whole process to Agg: in a notebook, ``plt.show()`` showed
    nothing after the first DVH (the long-lived-process audit, F4).  Library code leaves the user's backend alone,
    needs no display, and leaves no figure open in pyplot."""

    @staticmethod
    def figure(figsize=None, dpi=None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(fig)
        return fig

    @classmethod
    def subplots(cls, *args, figsize=None, dpi=None, **kw):
        fig = cls.figure(figsize, dpi)
        return fig, fig.subplots(*args, **kw)

    @staticmethod
    def close(fig) -> None:
        """Nothing to close: pyplot does not hold the figure; it is freed once unreferenced."""

    @staticmethod
    def get_cmap(name: str):
        from matplotlib import colormaps

        return colormaps[name]


#: the oldest matplotlib that draws all of mcproton's figures, as pyproject's dependency says (``matplotlib>=3.8``; kept
#: equal by tests/test_plots.py): the plane figures outline their isodoses with ``ContourSet.set_path_effects``, and
#: ContourSet became an Artist, with that method, in matplotlib 3.8.  Under 3.7, which the dependency allowed until
#: 2026-12-07, ``mcproton demo`` failed after its whole Monte Carlo, without its summary or plane figures (the
#: packaging audit of 2026-12-07, F1: measured with the lowest allowed numpy, scipy, h5py and pydicom, the demo
#: failed at 3.7.0 and passed at 3.8.0)
MATPLOTLIB_MIN = (3, 8)


def _matplotlib_version() -> str | None:
    """The installed matplotlib's version, read without importing it (None where it is not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("matplotlib")
    except importlib.metadata.PackageNotFoundError:   # a copy without its metadata: asked on import
        try:
            import matplotlib
        except ImportError:
            return None
        return str(getattr(matplotlib, "__version__", "")) or None


def matplotlib_problem() -> str | None:
    """Why the installed matplotlib cannot draw mcproton's figures (older than :data:`MATPLOTLIB_MIN`), with the pip
    command; None where it can (or where its version cannot be read: its import then says)."""
    ver = _matplotlib_version()
    m = re.match(r"(\d+)\.(\d+)", ver or "")
    if m is None or (int(m.group(1)), int(m.group(2))) >= MATPLOTLIB_MIN:
        return None
    least = ".".join(map(str, MATPLOTLIB_MIN))
    return (f"matplotlib {ver} is installed, and mcproton's figures need matplotlib >= {least} (the isodose outlines "
            f"use ContourSet.set_path_effects, new in {least}): pip install 'matplotlib>={least}'")


def require_matplotlib() -> None:
    """:func:`matplotlib_problem` as an error of the machine (exit status 3 on the command line): before each plane
    figure (the figures that need 3.8; the others, the check's report among them, draw with older ones too), and
    before the work of a command that draws them (``mcproton demo``)."""
    why = matplotlib_problem()
    if why is not None:
        from ._io.errors import McprotonEnvironmentError

        raise McprotonEnvironmentError(why)


def _plt() -> _Figures:
    """matplotlib's figure and Agg canvas imported (the first import takes ~0.4 s), and the calls the figures use."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    return _Figures()


def _save(plt, fig, path: str | Path, **kw) -> Path:
    """Save ``fig`` atomically (a temporary file renamed into place: a full disk leaves no partial PNG) and close
    it; the format follows the file name's suffix (default PNG)."""
    from ._io.atomic import atomic_write

    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    if fmt == "png":   # the mark by which an earlier run's plot is recognised (and replaced: _run/inputs.py)
        kw.setdefault("metadata", {"Software": "mcproton"})
    try:
        with missing_glyphs_said_once(fig):
            return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, **kw))
    finally:
        plt.close(fig)


#: :func:`plot_depth_dose` draws a depth-dose, and its R80, along a grid axis only where the beam runs along it: its
#: (mean) direction within this angle (deg) of the axis.  Farther off, the curve is the dose's projection onto the
#: nearest axis, which is not a depth-dose: it is drawn without an R80, and its title says so (figures audit 29, F1)
DEPTH_DOSE_MAX_OFF_AXIS_DEG = 10.0


def depth_dose_axis(direction) -> tuple[str, int, float]:
    """The grid axis a beam of mean ``direction`` (x, y, z; any length) runs along: (its letter, the sign of the
    beam's component along it (+1 or -1), the angle in degrees between the beam and that axis).  Beams whose
    directions cancel (opposed fields) have no axis: ("z", +1, 90.0)."""
    d = np.asarray(direction, dtype=np.float64).reshape(3)
    n = float(np.linalg.norm(d))
    if not np.isfinite(n) or n < 1e-9:
        return "z", 1, 90.0
    k = int(np.argmax(np.abs(d)))
    return "xyz"[k], (1 if d[k] > 0 else -1), float(np.degrees(np.arccos(min(1.0, abs(d[k]) / n))))


def plot_depth_dose(result, path: str | Path, title: str | None = None, *, direction=None) -> Path:
    """Integrated depth-dose (MeV cm2/g per primary) versus depth along the beam, with R80 marked.

    direction : the beam's (mean) direction (x, y, z), e.g. its spots' mean; default (0, 0, 1), a beam along +z.
        The depth is measured along the grid axis the beam runs along (:func:`depth_dose_axis`), from the grid's
        face the beam enters (the far face for a beam along -x, -y or -z).  Before 2026-12-07 the curve was along
        +z whatever the beam: a beam along +x got its lateral profile drawn as a depth-dose with "R80 = 52 mm" (its
        R80 is 77 mm), a beam along -z "R80 = 125 mm" (figures audit 29, F1).  A beam more than
        DEPTH_DOSE_MAX_OFF_AXIS_DEG off every axis gets the projection onto the nearest one, no R80, and a title
        that says so."""
    plt = _plt()
    axis, sign, off_deg = depth_dose_axis((0.0, 0.0, 1.0) if direction is None else direction)
    z, idd = result.integrated_depth_dose(axis)
    z, idd = np.asarray(z, dtype=np.float64), np.asarray(idd, dtype=np.float64)
    g = result.geometry
    k = "xyz".index(axis)
    low = float(g.axis_mm(axis)[0]) - 0.5 * float(np.broadcast_to(g.voxel_size_mm, 3)[k])   # the grid's face
    if sign < 0:   # from the face the beam enters: the far one
        length = float(np.broadcast_to(g.voxel_size_mm, 3)[k]) * z.size
        z, idd = (length - z)[::-1], idd[::-1]
        face = low + length
    else:
        face = low
    oblique = off_deg > DEPTH_DOSE_MAX_OFF_AXIS_DEG
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(z, idd, lw=1.5, color="C0", label="mcproton")
    i = int(np.argmax(idd))
    tail = np.nonzero(idd[i:] < 0.8 * idd[i])[0]
    if tail.size and not oblique:
        j = i + tail[0]
        r80 = float(np.interp(0.8 * idd[i], [idd[j], idd[j - 1]], [z[j], z[j - 1]]))
        ax.axvline(r80, color="0.5", ls="--", lw=0.8)
        ax.text(r80, 0.82 * idd[i], f" R80 = {r80:.2f} mm", color="0.3", fontsize=8)
    ax.set_xlabel(f"{axis} from the grid's face at {axis} = {face:g} mm (mm; not the depth along the beam)" if oblique
                  else f"depth in phantom along {'+' if sign > 0 else '-'}{axis} (mm, from the grid's face at "
                  f"{axis} = {face:g} mm)")
    ax.set_ylabel("integrated depth dose (MeV cm$^2$ g$^{-1}$ per proton)")
    from ._run.result import early_stop_note

    early = early_stop_note(result)
    beam = mpl_text(result.provenance.get("beam", {}).get("name", ""))   # the plan's BeamName, drawn as it is
    notes = [early.upper()] if early else []
    if oblique:
        notes.append(f"the beam is {off_deg:.0f} deg off the {axis} axis: not a depth-dose (no R80)")
    ax.set_title(title or f"{beam} - {result.primaries:,} protons, {result.backend}"
                 + "".join(f"\n{n}" for n in notes), fontsize=None if not notes else 9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return _save(plt, fig, path)


#: The colour map of dose and LETd over the anatomy: perceptually uniform and readable with colour-vision deficiency
#: (as mcproton check's maps, _check/report.DOSE_CMAP; "jet" before 2026-12-06, audit 16 F5)
PLANES_CMAP = "viridis"

#: The colour of values above the colour scale's top (the colour bar then ends in an arrow of it) and of NaN voxels:
#: neither is a colour of PLANES_CMAP, so a saturated or missing value is not read as the top or as "no dose"
OVER_COLOUR = "magenta"
NAN_COLOUR = "red"

#: Line styles of the structures (outlines and DVH curves), cycled with the colours: two structures differ in style
#: as well as colour, so a reader with red/green colour-vision deficiency tells them apart (audit 16 F5)
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


#: :func:`near_max` skips the NEAR_MAX_RANK - 1 hottest voxels: at research-grade statistics (10^5-10^6 protons) the
#: few hottest voxels of a plan are noise spikes whose place changes from seed to seed (audit 16 F1)
NEAR_MAX_RANK = 10


def structure_style(n: int) -> dict:
    """Colour, line style and marker of the ``n``-th structure (0-based) in the plane figures and the DVH."""
    return {"color": f"C{n % 10}", "linestyle": LINE_STYLES[n % len(LINE_STYLES)], "marker": MARKERS[n % len(MARKERS)]}


def near_max(dose: np.ndarray) -> float:
    """A maximum that a few noisy voxels do not set: among the voxels with at least half the maximum dose, the dose
    of the NEAR_MAX_RANK-th hottest (or of the hottest 0.1 % where that is more; the coldest of them where there are
    fewer).  NaN voxels are left out; 0 for a dose without a positive value."""
    d = np.asarray(dose, dtype=np.float64)
    top = float(np.nanmax(d)) if np.isfinite(d).any() else 0.0
    if top <= 0:
        return 0.0
    hot = d[d >= 0.5 * top]
    rank = min(hot.size, max(NEAR_MAX_RANK, int(np.ceil(0.001 * hot.size))))
    return float(np.partition(hot, hot.size - rank)[hot.size - rank])


def high_dose_centre(dose: np.ndarray, body_mask=None, *, level: float = 0.9,
                     median_axes: tuple[int, ...] = ()) -> tuple[int, int, int]:
    """The (z, y, x) index of the dose-weighted centroid of the high-dose region (voxels with at least ``level``,
    90 % by default, of :func:`near_max`, inside ``body_mask`` if given): where the plane figures cut a dose without
    a target, instead of the single hottest voxel, which at research-grade statistics is a noise spike that moves
    from seed to seed.  Along ``median_axes`` (0 z, 1 y, 2 x) the region's median index instead of the centroid
    (the check's sagittal plane: through the median x of a craniospinal plan's neuraxis)."""
    d = np.nan_to_num(np.asarray(dose, dtype=np.float64), nan=0.0)
    if body_mask is not None:
        d = np.where(np.asarray(body_mask, bool), d, 0.0)
    top = near_max(d)
    if top <= 0:
        return tuple(s // 2 for s in d.shape)
    idx = np.argwhere(d >= level * top)
    w = d[tuple(idx.T)]
    c = (idx * w[:, None]).sum(axis=0) / w.sum()
    for ax in median_axes:
        c[ax] = np.median(idx[:, ax])
    return tuple(int(np.clip(np.rint(v), 0, s - 1)) for v, s in zip(c, d.shape))   # type: ignore[return-value]


def voxel_edges_extent(h: np.ndarray, v: np.ndarray, origin: str,
                       spacing: tuple[float | None, float | None] | None = None) -> tuple[float, float, float, float]:
    """The imshow ``extent`` of an image whose pixel centres are the voxel centres ``h`` (columns) and ``v``
    (rows): the outer voxel EDGES, half a voxel beyond the first and last centres.  With the centres (as before
    2026-12-06) N pixels were squeezed into N - 1 voxels, up to half a voxel off the contours drawn at the centres,
    and the outer half voxel cut off (audit 16 F3).  ``spacing`` (dh, dv): for a single-voxel axis."""
    def half(a, s):
        a = np.asarray(a, dtype=np.float64)
        return 0.5 * (float(a[1] - a[0]) if a.size > 1 else float(s if s else 1.0))

    dh, dv = half(h, spacing and spacing[0]), half(v, spacing and spacing[1])
    left, right = float(h[0]) - dh, float(h[-1]) + dh
    if origin == "upper":
        return left, right, float(v[-1]) + dv, float(v[0]) - dv
    return left, right, float(v[0]) - dv, float(v[-1]) + dv

def plot_dose_planes(result, path: str | Path, centre_zyx: tuple[int, int, int] | None = None,
                     title: str | None = None, *, structures: dict | None = None,
                     isodose_gy: Sequence[float] | None = None, reference_gy: float | None = None,
                     body_mask=None, quantity: str | None = None, reference_name: str = "the prescription") -> Path:
    """Dose over the density (anatomy) in three orthogonal planes through ``centre_zyx`` (default: the dose-weighted
    centroid of the high-dose region, :func:`high_dose_centre`; a caller with a target passes its centroid).

    structures : {name: boolean (z, y, x) mask} drawn as outlines (e.g. target, brainstem, cochleae); one with no
        voxels is named in the legend as such.  The names are drawn as they are (:func:`mpl_text`); ``title`` is
        drawn as given (mathtext allowed): a caller escapes the input text it puts there with :func:`mpl_text`.
    isodose_gy : dose levels (Gy) drawn as isodose lines; with ``reference_gy`` (e.g. the prescription, named
        ``reference_name`` on the figure) the default levels are 30, 50, 80, 95 and 107 % of it, and the colour scale
        ends at 110 % of it (else at :func:`near_max`); values above the scale's top are drawn in OVER_COLOUR and the
        colour bar ends in an arrow.
    body_mask : voxels where the dose is shown (default: all); e.g. density > 0.5 g/cm3 hides the
        dose-to-air spikes outside the patient.
    quantity : what the dose is, for the colour bar (default "physical dose to medium, Gy", with the result's
        normalisation where it is short); a caller says the fractions here or in the title.
    NaN voxels are drawn in NAN_COLOUR and counted on the figure (the isodoses are drawn around them).
    """
    dose = np.asarray(result.dose_gy_zyx)
    body = None if body_mask is None else np.asarray(body_mask, bool)
    if centre_zyx is None or not reference_gy:   # the whole grid only for its near-maximum
        whole = dose if body is None else np.where(body, dose, 0.0)
        if centre_zyx is None:
            centre_zyx = high_dose_centre(whole)
        top = near_max(whole)
        del whole
    dmax = float(reference_gy * 1.1) if reference_gy else (top or 1.0)
    levels = list(isodose_gy) if isodose_gy is not None else (
        [f * reference_gy for f in (0.3, 0.5, 0.8, 0.95, 1.07)] if reference_gy else [])

    def fmt(lv: float) -> str:
        return f"{100 * lv / reference_gy:.0f}%" if reference_gy else f"{lv:.2g}"

    def plane(sl):   # the dose (0 outside the body) and the voxels shown, of one plane only
        d = dose[sl] if body is None else np.where(body[sl], dose[sl], 0.0)
        return d, (d >= 0.05 * dmax) | np.isnan(d)

    if quantity is None:
        from ._run.result import PER_PRIMARY, is_per_primary

        # a sum of per-primary beams ("Gy per primary (sum over beams)", 31 characters) said "Gy" alone (audit 26, F2)
        norm = PER_PRIMARY if is_per_primary(result) else str(getattr(result, "normalisation", "") or "")
        quantity = "physical dose to medium (Gy" + (f"; {norm})" if norm and len(norm) <= 30 else ")")
    notes = []
    if reference_gy and levels:
        notes.append(f"isodoses in % of {reference_name} ({reference_gy:.4g} Gy)")
    return _plot_planes(result, plane, path, centre_zyx, title, structures, dmax, levels, fmt, quantity, notes)


def plot_let_planes(result, path: str | Path, centre_zyx: tuple[int, int, int] | None = None,
                    title: str | None = None, *, structures: dict | None = None, reference_gy: float | None = None,
                    min_dose_fraction: float = 0.1, body_mask=None, vmax: float | None = None,
                    reference_name: str = "the reference dose") -> Path:
    """Dose-averaged LET of protons (keV/um, in the voxel's medium) over the anatomy in three planes through
    ``centre_zyx`` (default: :func:`high_dose_centre` of the dose), shown where the dose is at least
    ``min_dose_fraction`` of ``reference_gy`` (named ``reference_name`` on the colour bar; default: of the maximum
    dose): the LETd of nearly undosed voxels is noisy and clinically irrelevant.  Colour scale up to ``vmax``
    (default: the 99th percentile of the shown voxels); higher values are drawn in OVER_COLOUR, the colour bar ends
    in an arrow."""
    dose = np.asarray(result.dose_gy_zyx)
    let = np.asarray(result.let_d_kev_um_zyx)
    shown = _let_shown(dose, reference_gy, min_dose_fraction, body_mask)
    if centre_zyx is None:
        centre_zyx = high_dose_centre(dose, body_mask)
    top = vmax if vmax is not None else (float(np.percentile(let[shown], 99)) if shown.any() else 1.0)
    ref = (f"{reference_name} ({float(reference_gy):.4g} Gy)" if reference_gy
           else f"the maximum dose ({float(np.nanmax(dose)) if dose.size else 0.0:.4g} Gy)")
    return _plot_planes(result, lambda sl: (let[sl], shown[sl] | np.isnan(let[sl])), path, centre_zyx, title,
                        structures, max(top, 1e-6), [], str,
                        f"LETd of protons in the voxel medium (keV/um),\nwhere dose >= {100 * min_dose_fraction:.0f} "
                        f"% of {ref}", [])


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


#: The patient-direction letters at the (left, right, top, bottom) edges of each panel, DICOM patient coordinates
#: (+x left, +y posterior, +z superior) seen in radiological view: the patient's right on the viewer's left
ORIENTATION_LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"),
                       "sagittal": ("A", "P", "S", "I")}

#: Said under every plane figure (audit 16 F2)
ORIENTATION_NOTE = ("radiological view (the patient's right on the viewer's left); DICOM patient axes: "
                    "+x left, +y posterior, +z superior")


def _plot_planes(result, plane, path, centre_zyx, title, structures, vmax, levels, level_fmt,
                 colorbar_label, notes) -> Path:
    """Values over the density in three orthogonal planes through ``centre_zyx``; ``plane(index)`` gives the
    values and the voxels shown of one plane (computed per plane, not over the whole grid); ``levels`` drawn
    as labelled contour lines; ``notes`` (with the orientation, NaN and saturation notes) under the panels.
    Images are drawn with their voxel edges as extent, so they, the isodoses and the outlines (at the voxel
    centres) line up.  A matplotlib older than :data:`MATPLOTLIB_MIN` (no ``ContourSet.set_path_effects``) is
    refused (:func:`require_matplotlib`)."""
    require_matplotlib()
    plt = _plt()
    from matplotlib import patheffects
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    g = result.geometry
    rho = g.density_g_cm3_zyx
    k, j, i = centre_zyx
    x, y, z = g.axis_mm("x"), g.axis_mm("y"), g.axis_mm("z")
    vox = getattr(g, "voxel_size_mm", None)   # (x, y, z) mm: the spacing of a single-voxel axis
    dx, dy, dz = (tuple(float(v) for v in np.broadcast_to(vox, 3)) if vox is not None else (None, None, None))
    sl = plane_slices(centre_zyx)
    planes = [("axial", "axial (z = %.0f mm)" % z[k], (x, y), (dx, dy), "upper",
               "x (mm, +left)", "y (mm, +posterior)"),
              ("coronal", "coronal (y = %.0f mm)" % y[j], (x, z), (dx, dz), "lower",
               "x (mm, +left)", "z (mm, +superior)"),
              ("sagittal", "sagittal (x = %.0f mm)" % x[i], (y, z), (dy, dz), "lower",
               "y (mm, +posterior)", "z (mm, +superior)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), dpi=100)
    fig.subplots_adjust(left=0.05, right=0.86, wspace=0.32, bottom=0.27, top=0.84)   # room for each y label
    cmap = plt.get_cmap(PLANES_CMAP).with_extremes(over=OVER_COLOUR)
    im = None
    over = n_nan = 0
    present: set = set()
    stroke = [patheffects.withStroke(linewidth=1.8, foreground="black")]
    for n, (ax, (key, name, (h, v), spacing, origin, xl, yl)) in enumerate(zip(axes, planes)):
        (d, shown), r = plane(sl[n]), rho[sl[n]]
        d = np.asarray(d, dtype=np.float64)
        ext = voxel_edges_extent(h, v, origin, spacing)
        ax.imshow(r, cmap="gray", extent=ext, origin=origin, vmin=0, vmax=2.0, aspect="equal", interpolation="nearest")
        nan = np.isnan(d) & np.asarray(shown, bool)
        m = np.ma.masked_where(~np.asarray(shown, bool) | nan, d)
        over += int(np.count_nonzero(m.filled(-np.inf) > vmax))
        im = ax.imshow(m, cmap=cmap, alpha=0.45, extent=ext, origin=origin, vmin=0, vmax=vmax, aspect="equal",
                       interpolation="nearest")
        if nan.any():
            n_nan += int(nan.sum())
            ax.imshow(np.ma.masked_where(~nan, np.ones_like(d)), cmap=ListedColormap([NAN_COLOUR]), extent=ext,
                      origin=origin, aspect="equal", interpolation="nearest")
        finite = d[np.isfinite(d)]
        if levels and finite.size and finite.max() > min(levels):   # a NaN voxel no longer hides the isodoses
            cs = ax.contour(h, v, np.ma.masked_invalid(d), levels=sorted(levels), colors="white", linewidths=0.8)
            cs.set_path_effects(stroke)
            labels = ax.clabel(cs, cs.levels, fmt={lv: level_fmt(lv) for lv in cs.levels}, fontsize=6, inline=True)
            for t in labels:
                t.set_path_effects(stroke)
        for c, (nm, mask) in enumerate((structures or {}).items()):
            ms = np.asarray(mask, bool)[sl[n]]
            if ms.any():
                st = structure_style(c)
                ax.contour(h, v, ms.astype(float), levels=[0.5], colors=[st["color"]],
                           linestyles=[st["linestyle"]], linewidths=1.5)
                present.add(nm)
        ax.set_xlim(ext[0], ext[1])
        ax.set_ylim(ext[2], ext[3])
        ax.set_title(name)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        for (tx, ty, ha, va), letter in zip(((0.02, 0.5, "left", "center"), (0.98, 0.5, "right", "center"),
                                             (0.5, 0.98, "center", "top"), (0.5, 0.02, "center", "bottom")),
                                            ORIENTATION_LETTERS[key]):
            ax.text(tx, ty, letter, transform=ax.transAxes, ha=ha, va=va, fontsize=11, fontweight="bold",
                    color="white", path_effects=stroke)
    if structures:
        entries, labels = [], []
        for c, (nm, mask) in enumerate(structures.items()):
            st = structure_style(c)
            entries.append(Line2D([0], [0], color=st["color"], linestyle=st["linestyle"], lw=1.5))
            empty = not np.asarray(mask, bool).any()
            shown = mpl_text(nm)   # an ROI name, drawn as it is (never mathtext)
            labels.append(f"{shown} (no voxels)" if empty else shown if nm in present else
                          f"{shown} (not in these planes)")
        fig.legend(entries, labels, loc="lower center", bbox_to_anchor=(0.45, 0.065), ncol=min(len(labels), 6),
                   fontsize=8, frameon=False)
    cax = fig.add_axes((0.88, 0.3, 0.012, 0.52), label="colour bar")
    fig.colorbar(im, cax=cax, label=colorbar_label, extend="max" if over else "neither")
    notes = [ORIENTATION_NOTE, *notes]
    if over:
        notes.append(f"{OVER_COLOUR}: above the colour scale's top ({vmax:.3g}; {over} voxels in these planes)")
    if n_nan:
        notes.append(f"{NAN_COLOUR}: NaN, no value ({n_nan} voxels in these planes)")
    fig.text(0.45, 0.0, "\n".join(notes), ha="center", va="bottom", fontsize=8)
    if title is None:   # a run stopped early, or short of its target uncertainty, says so (as plot_depth_dose)
        from ._run.result import early_stop_note

        title = (early_stop_note(result) or "").upper() or None
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path, bbox_inches="tight")

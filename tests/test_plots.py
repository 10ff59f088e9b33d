"""The plane figures (mcproton/plots.py) say and show what they hold (figures audit 16, F1-F3, F5, F6, F9): the
properties of the figure (extents, colour map, labels, colour-bar extension, legend text, planes chosen) are checked,
not its pixels."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import log_lines  # tests/fakes.py

import mcproton.plots as P


def _result(dose, vox=10.0, n=8):
    origin = np.array([-35.0, -35.0, -35.0])   # voxel centres -35..35 mm, edges -40..40 mm
    g = SimpleNamespace(density_g_cm3_zyx=np.ones(dose.shape), voxel_size_mm=(vox, vox, vox),
                        axis_mm=lambda a: origin["xyz".index(a)] + vox * np.arange(dose.shape[2 - "xyz".index(a)]))
    return SimpleNamespace(dose_gy_zyx=dose, let_d_kev_um_zyx=np.where(dose > 0, 5.0, 0.0), geometry=g,
                           normalisation="test")


@pytest.fixture
def captured(monkeypatch):
    """The figure each plot function draws, drawn (for the text extents) and kept open."""
    figs = []

    def keep(plt, fig, path, **kw):
        fig.canvas.draw()
        figs.append(fig)
        return path

    monkeypatch.setattr(P, "_save", keep)
    yield figs
    import matplotlib.pyplot as plt

    for f in figs:
        plt.close(f)


def _block():
    dose = np.zeros((8, 8, 8))
    dose[4, 0:2, 0:2] = 1.0   # 2 x 2 voxels, edges x, y = -40..-20 mm, slice z = 0..10 mm
    return dose


def test_image_extent_is_the_voxel_edges(captured, tmp_path):
    """F3: the images span the voxel edges (-40..40 mm), not the first to last centre (-35..35 mm)."""
    P.plot_dose_planes(_result(_block()), tmp_path / "p.png", (4, 0, 0), reference_gy=1.0)
    axes = captured[0].axes[:3]
    for n, ax in enumerate(axes):
        ext = ax.images[0].get_extent()
        assert ext[0] == pytest.approx(-40.0) and ext[1] == pytest.approx(40.0)
        assert sorted(ext[2:]) == pytest.approx([-40.0, 40.0])
        assert sorted(ax.get_xlim()) == pytest.approx([-40.0, 40.0])   # nothing cut off
    assert axes[0].images[0].get_extent()[2:] == pytest.approx((40.0, -40.0))   # axial: anterior (-y) up


def test_voxel_edges_extent_of_a_single_voxel_axis():
    assert P.voxel_edges_extent(np.array([0.0]), np.array([1.0, 3.0]), "lower", (4.0, 2.0)) == (-2, 2, 0, 4)


def test_colour_map_labels_and_orientation(captured, tmp_path):
    """F5: a perceptually uniform colour map; F2: every panel's axis labels visible (not under the neighbouring
    panel) and the patient-direction letters and the radiological convention on the figure."""
    P.plot_dose_planes(_result(_block()), tmp_path / "p.png", (4, 0, 0), reference_gy=1.0)
    fig = captured[0]
    axes = fig.axes[:3]
    assert axes[0].images[1].get_cmap().name.startswith(P.PLANES_CMAP) and P.PLANES_CMAP != "jet"
    r = fig.canvas.get_renderer()
    for n in (1, 2):
        lab = axes[n].yaxis.label.get_window_extent(r)
        prev = axes[n - 1].get_window_extent(r)
        assert lab.x0 > prev.x1, f"panel {n}'s y label lies under panel {n - 1}"
    letters = [{t.get_text() for t in ax.texts} for ax in axes]
    assert letters == [{"R", "L", "A", "P"} | (letters[0] - {"R", "L", "A", "P"}),
                       {"R", "L", "S", "I"} | (letters[1] - {"R", "L", "S", "I"}),
                       {"A", "P", "S", "I"} | (letters[2] - {"A", "P", "S", "I"})]
    assert any("radiological" in t.get_text() for t in fig.texts)


def test_colour_bar_extends_where_values_exceed_the_scale(captured, tmp_path):
    """F6: a dose above 110 % of the reference makes the colour bar end in an arrow (and the figure says how many
    voxels); one below does not."""
    hot = _block() * 1.5
    P.plot_dose_planes(_result(hot), tmp_path / "a.png", (4, 0, 0), reference_gy=1.0)
    P.plot_dose_planes(_result(_block()), tmp_path / "b.png", (4, 0, 0), reference_gy=1.0)
    bars = [[a for a in f.axes if a.get_label() == "colour bar"][0] for f in captured]
    assert [b._colorbar.extend for b in bars] == ["max", "neither"]
    assert any("above the colour scale" in t.get_text() for t in captured[0].texts)


def test_let_label_names_medium_and_reference(captured, tmp_path):
    """F6: the LET colour bar says the LETd is in the voxel medium and what the dose threshold is relative to."""
    P.plot_let_planes(_result(_block()), tmp_path / "l.png", (4, 0, 0), reference_gy=1.636,
                      reference_name="the prescription")
    bar = [a for a in captured[0].axes if a.get_label() == "colour bar"][0]
    label = bar.get_ylabel()
    assert "in the voxel medium" in label and "of the prescription (1.636 Gy)" in label


def test_nan_is_shown_and_keeps_the_isodoses(captured, tmp_path):
    """F9: a NaN voxel in the plane no longer removes its isodose lines, is drawn in NAN_COLOUR and is counted;
    an empty structure is named in the legend as such."""
    n = 20
    z, y, x = np.mgrid[:n, :n, :n]
    dose = np.exp(-((x - 10) ** 2 + (y - 10) ** 2 + (z - 10) ** 2) / 30.0) * 2.0
    dose[10, 10, 12] = np.nan
    tgt = ((x - 10) ** 2 + (y - 10) ** 2 + (z - 10) ** 2) < 16
    res = _result(dose, vox=2.0)
    P.plot_dose_planes(res, tmp_path / "n.png", (10, 10, 10), structures={"T": tgt, "gone": np.zeros_like(tgt)},
                       reference_gy=2.0)
    fig = captured[0]
    axial = fig.axes[0]
    from matplotlib.contour import ContourSet

    iso = [c for c in axial.collections if isinstance(c, ContourSet) and c.colors == "white"] or \
        [c for c in axial.get_children() if isinstance(c, ContourSet) and len(c.levels) == 5]
    assert iso, "the axial plane (with the NaN voxel) has no isodose lines"
    assert len(axial.images) == 3   # CT, dose, NaN layer
    assert any("NaN" in t.get_text() for t in fig.texts)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["T", "gone (no voxels)"]


def test_default_planes_avoid_a_noise_spike():
    """F1: without a centre the planes go through the dose-weighted centroid of the high-dose region, not the
    single hottest voxel (a noise spike at research-grade statistics)."""
    n = 30
    z, y, x = np.mgrid[:n, :n, :n]
    dose = np.where(((x - 10) ** 2 + (y - 12) ** 2 + (z - 14) ** 2) < 25, 1.0, 0.0)
    dose[25, 25, 25] = 1.3   # one hot noisy voxel far from the target
    assert P.high_dose_centre(dose) == (14, 12, 10)
    assert P.near_max(dose) == pytest.approx(1.0)


def test_run_figure_says_fractions_and_rt_dose_difference(captured, tmp_path):
    """F1: mcproton run's figure (one fraction simulated, an RT Dose of all 17) says both in its title, keeps the
    colour-bar label short, and cuts the planes through the high-dose region, not a noise spike."""
    from mcproton.cli import _plot_run_planes

    n = 30
    z, y, x = np.mgrid[:n, :n, :n]
    dose = np.where(((x - 10) ** 2 + (y - 12) ** 2 + (z - 14) ** 2) < 25, 1.9, 0.0)
    dose[25, 25, 25] = 2.5
    res = _result(dose, vox=2.0)
    res.provenance = {}
    res.primaries = 1000
    meta = {"beam_number": 1, "fractions": 1, "fractions_planned": 17, "plan_beam_numbers": [1]}
    _plot_run_planes({"phantom": {"type": "ct"}}, res, [SimpleNamespace(meta=meta)], tmp_path / "r.png", None,
                     str(tmp_path / "RD.dcm"))
    fig = captured[0]
    title = fig._suptitle.get_text()
    assert "1 of 17 fractions" in title and "RD.dcm holds 17 fractions (17 x this dose)" in title
    bar = [a for a in fig.axes if a.get_label() == "colour bar"][0]
    assert bar.get_ylabel() == "physical dose to medium (Gy), 1 of 17 fractions"
    assert fig.axes[0].get_title() == "axial (z = %.0f mm)" % (-35.0 + 2 * 14)


#: ROI names that matplotlib reads as mathtext: the first two do not parse (a ValueError while drawing, after the whole
#: transport, before 2026-12-06), the third is drawn with a superscript (strings audit 19, F1)
MATHTEXT_NAMES = ("CTV $_$", "Cord$}$", "Brainstem $x^2$")


def test_names_from_the_inputs_are_drawn_as_they_are_never_as_mathtext(captured, tmp_path):
    """Strings audit 19, F1: the structure names of the plane figure, the DVH figure and the depth-dose figure's beam
    name are drawn as written (mpl_text: "$" escaped); the figures draw."""
    from mcproton.dvh import plot_dvh

    n = 12
    dose = np.zeros((n, n, n))
    dose[4:8, 4:8, 4:8] = 1.0
    masks = {nm: dose > 0 for nm in MATHTEXT_NAMES}
    P.plot_dose_planes(_result(dose, vox=2.0), tmp_path / "p.png", (6, 6, 6), structures=masks, reference_gy=1.0)
    labels = captured[0].legends[0].get_texts()
    assert len(labels) == len(MATHTEXT_NAMES)
    for t, nm in zip(labels, MATHTEXT_NAMES):   # drawn as plain text, the name as written
        assert t.get_text() == P.mpl_text(nm) and t._preprocess_math(t.get_text()) == (nm, False)
    assert plot_dvh(dose, masks, tmp_path / "dvh.png").stat().st_size > 0   # drawn and saved (a ValueError before)


def test_a_figure_that_cannot_be_drawn_keeps_the_run_and_says_it_is_a_bug(tmp_path, capsys, monkeypatch):
    """Strings audit 19, F1: an error drawing mcproton run's figure (a ValueError from matplotlib) was exit 2,
    "refused: bad input", with no summary.  Now exit 4 (internal_error), the summary printed naming the plot in
    failed_outputs, and one line saying the dose and summary are written and how to leave the figure out."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "run"))
    from run_helpers import write_cfg

    from mcproton.cli import main

    def broken(*a, **k):
        raise ValueError("_ ^ ParseSyntaxException: Expected {phantom | llap}, found end of text")

    monkeypatch.setattr(P, "plot_depth_dose", broken)
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out = tmp_path / "o.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "output.plot=true"]) == 4
    cap = capsys.readouterr()
    summary = json.loads(cap.out)
    assert summary["output"] == str(out) and "ValueError" in summary["failed_outputs"][0]
    msg = [ln for ln in log_lines(cap.err) if ln.startswith("mcproton:")][-1]
    assert "a bug in mcproton's figure" in msg and "output.plot = false" in msg and str(out) in msg, msg
    assert out.exists()


def test_missing_glyphs_are_one_warning_of_ours(tmp_path, monkeypatch):
    """Strings audit 19, F8: a CJK ROI name printed matplotlib's two-line "Glyph 23567 ... missing from font(s)"
    warning per character and figure (16 for one check).  Now one mcproton warning names the characters, each once
    per process; a second figure with them says nothing more."""
    import warnings

    from mcproton.errors import McprotonRuntimeWarning

    monkeypatch.setattr(P, "_GLYPHS_SAID", set())
    n = 8
    dose = np.zeros((n, n, n))
    dose[3:5, 3:5, 3:5] = 1.0
    name = "\u5c0f\u8111 \ue000"   # two CJK ideographs (not in DejaVu Sans) and a private-use character (in no font)
    for k in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            P.plot_dose_planes(_result(dose, vox=2.0), tmp_path / f"g{k}.png", (4, 4, 4), structures={name: dose > 0},
                               reference_gy=1.0)
        texts = [str(w.message) for w in caught]
        assert not [t for t in texts if t.startswith("Glyph ")], texts
        ours = [str(w.message) for w in caught if issubclass(w.category, McprotonRuntimeWarning)]
        assert len(ours) == (1 if k == 0 else 0), ours
        if k == 0:
            assert "\ue000" in ours[0] and "drawn as empty boxes" in ours[0]


def test_the_figures_leave_the_users_matplotlib_backend_and_pyplot_alone(tmp_path):
    """plot_dvh and the plane figures called matplotlib.use("Agg"): a notebook's inline (or a GUI) backend was
    replaced for the rest of the session, and plt.show() showed nothing after the first DVH (the long-lived-process
    audit, F4).  They now draw on figures of their own with an Agg canvas: the backend chosen stays (here svg, a
    backend that needs no display either), no figure is left in pyplot, and the PNGs are written."""
    import matplotlib
    import matplotlib.pyplot as plt

    from mcproton.dvh import plot_dvh

    before = matplotlib.get_backend()
    open_before = plt.get_fignums()
    try:
        matplotlib.use("svg")
        dose = _block()
        mask = dose > 0
        paths = [plot_dvh(dose, {"PTV": mask, "empty": ~mask & (dose < 0)}, tmp_path / "dvh.png"),
                 P.plot_dose_planes(_result(dose), tmp_path / "planes.png", centre_zyx=(4, 0, 0))]
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == open_before
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    finally:
        matplotlib.use(before)


def _cjk_figure():
    from mcproton.plots import _plt

    fig = _plt().figure(figsize=(2, 1))
    fig.text(0.1, 0.5, "\u5c0f\u8111")   # not in DejaVu Sans
    return fig


def test_warnings_of_a_figure_that_fails_are_still_shown(monkeypatch):
    """Review 2 of 2026-12-06, F2 (a): missing_glyphs_said_once caught every warning of the figure and replayed
    them only when the figure succeeded: a warning that explained a failure (a full disk while saving) was lost.
    Warnings pass as they are raised now, and the missing glyphs are said also where the figure fails."""
    import warnings

    from mcproton.errors import McprotonRuntimeWarning

    monkeypatch.setattr(P, "_GLYPHS_SAID", set())
    fig = _cjk_figure()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(OSError):
            with P.missing_glyphs_said_once(fig):
                warnings.warn("a warning that explains the failure", UserWarning)
                raise OSError(28, "No space left on device")
    texts = [str(w.message) for w in caught]
    assert "a warning that explains the failure" in texts, texts
    ours = [str(w.message) for w in caught if issubclass(w.category, McprotonRuntimeWarning)]
    assert len(ours) == 1 and "\u5c0f \u8111" in ours[0], texts


def test_figures_drawn_in_two_threads_leave_the_process_warnings_alone(monkeypatch):
    """Review 2 of 2026-12-06, F2 (b): missing_glyphs_said_once swapped the process's warning machinery
    (warnings.catch_warnings, not thread safe) around each figure.  Two threads drawing at once, entering A, B and
    leaving A, B, left every later warning of the process in a dead list.  Now nothing is swapped: a warning given
    after such an interleaving is shown."""
    import threading
    import warnings

    monkeypatch.setattr(P, "_GLYPHS_SAID", set())
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with P.missing_glyphs_said_once(_cjk_figure()):
            a_in.set()
            b_in.wait(60)
        a_out.set()

    def b():
        a_in.wait(60)
        with P.missing_glyphs_said_once(_cjk_figure()):
            b_in.set()
            a_out.wait(60)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        warnings.warn("a later warning of the process", UserWarning)
    assert "a later warning of the process" in [str(w.message) for w in caught]


def test_the_users_own_figures_keep_matplotlibs_glyph_warning(monkeypatch, tmp_path):
    """The filter that keeps the missing-glyph warnings of mcproton's figures quiet is for those only (raised with an
    mcproton module as their caller): a figure of the user's own, drawn after one of mcproton's, still warns."""
    import io
    import warnings

    monkeypatch.setattr(P, "_GLYPHS_SAID", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        P._save(P._plt(), _cjk_figure(), tmp_path / "ours.png")   # mcproton's figure: its one warning
        n_ours = len([w for w in caught if str(w.message).startswith("Glyph ")])
        _cjk_figure().savefig(io.BytesIO(), format="png")   # the user's (this test module's) own figure
    assert n_ours == 0
    assert [w for w in caught if str(w.message).startswith("Glyph ")]


def test_a_matplotlib_older_than_the_isodose_outlines_need_is_refused_with_the_pip_command(captured, tmp_path,
                                                                                             monkeypatch):
    """The isodose lines' outline is ContourSet.set_path_effects, which matplotlib has since 3.8 (ContourSet an
    Artist): under 3.7.0, which pyproject allowed, the demo failed after its Monte Carlo with "'QuadContourSet' object
    has no attribute 'set_path_effects'" (the packaging audit of 2026-12-07, F1).  pyproject now asks for 3.8, and a
    plane figure under an older matplotlib (one pip left in place: --no-deps, a distribution's) is refused in one
    line naming the version needed and the pip command, an error of the machine (exit status 3)."""
    from mcproton._io.errors import McprotonEnvironmentError

    monkeypatch.setattr(P, "_matplotlib_version", lambda: "3.7.0")
    with pytest.raises(McprotonEnvironmentError, match=r"matplotlib 3\.7\.0 is installed, and mcproton's figures "
                                                       r"need matplotlib >= 3\.8 \(.*set_path_effects.*\): "
                                                       r"pip install 'matplotlib>=3\.8'"):
        P.plot_dose_planes(_result(_block()), tmp_path / "p.png", (4, 0, 0), reference_gy=1.0)
    assert not captured
    for ver in ("3.8.0", "3.10.0rc1", "4.0", "unknown"):
        monkeypatch.setattr(P, "_matplotlib_version", lambda: ver)
        assert P.matplotlib_problem() is None, ver
    # the isodoses are drawn with their outline by the matplotlib installed here (the feature 3.8 is needed for)
    P.plot_dose_planes(_result(_block()), tmp_path / "p.png", (4, 0, 0), reference_gy=1.0)   # isodoses of 1 Gy
    (contours,) = [c for c in captured[0].axes[0].get_children() if type(c).__name__.endswith("ContourSet")]
    assert contours.get_path_effects(), "the isodoses drawn without their outline"


def test_the_matplotlib_pyproject_asks_for_is_the_oldest_the_figures_work_with():
    """pyproject's matplotlib lower bound is mcproton.plots.MATPLOTLIB_MIN (3.8: see there)."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:   # Python 3.10
        import tomli as tomllib

    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    (req,) = [d for d in deps["project"]["dependencies"] if re.match(r"matplotlib\b", d)]
    assert req == "matplotlib>=" + ".".join(map(str, P.MATPLOTLIB_MIN)), req


WATER_CUBE = """\
[run]
primaries = 3000
seed = 2024
backend = "cpu"
threads = 1
batches = 10

[phantom]
type = "water"
size_mm = [{sx}, {sy}, {sz}]
voxel_mm = [{vx}, {vy}, {vz}]

[beam]
energy_mev = 100.0
position_mm = {pos}
direction = {d}
sigma_mm = [3.0, 3.0]

[output]
plot = true
"""


def _run_r80(tmp_path, monkeypatch, name: str, direction, position, along: str) -> tuple[float, object]:
    """``mcproton run`` of a 100 MeV pencil beam in a water box 120 mm long along ``along`` (1 mm voxels along it, 4
    mm across), the beam along ``direction`` from ``position``: the R80 written on its depth-dose figure, and the
    figure."""
    import re

    from mcproton.cli import main

    size = {a: (120.0 if a == along else 40.0) for a in "xyz"}
    vox = {a: (1.0 if a == along else 4.0) for a in "xyz"}
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(WATER_CUBE.format(sx=size["x"], sy=size["y"], sz=size["z"], vx=vox["x"], vy=vox["y"], vz=vox["z"],
                                     pos=list(position), d=list(direction)))
    figs = []

    def keep(plt, fig, path, **kw):
        fig.canvas.draw()
        figs.append(fig)
        return Path(path)

    monkeypatch.setattr(P, "_save", keep)
    assert main(["run", str(cfg), "--out", str(tmp_path / f"{name}.h5"), "--quiet"]) == 0
    (fig,) = figs
    (r80,) = [float(m.group(1)) for t in fig.axes[0].texts if (m := re.search(r"R80 = ([\d.]+) mm", t.get_text()))]
    return r80, fig


def test_depth_dose_figure_follows_the_beam_direction(tmp_path, monkeypatch):
    """Figures audit 29, F1: ``mcproton run`` on a phantom drew the IDD along +z whatever the beam's direction: a
    beam along +x got its lateral profile drawn as a depth-dose, "R80 = 52.32 mm" (its R80 is ~77 mm); a beam along
    -z its curve against the depth from the far face, "R80 = 124.77 mm".  Now the depth runs along the beam from the
    face it enters: the three R80 agree with the +z beam's within 1.5 mm (3000 protons: R80's noise is ~0.2 mm; the
    box's 120 mm face to face holds the 77 mm range whichever face the beam enters)."""
    r80_z, fig_z = _run_r80(tmp_path, monkeypatch, "pz", (0, 0, 1), (0, 0, -10), "z")
    assert 75.0 < r80_z < 80.0, r80_z   # 100 MeV in water: CSDA range 77.2 mm (PSTAR), R80 ~ 77 mm
    r80_mz, fig_mz = _run_r80(tmp_path, monkeypatch, "mz", (0, 0, -1), (0, 0, 130), "z")
    r80_x, fig_x = _run_r80(tmp_path, monkeypatch, "px", (1, 0, 0), (-70, 0, 20), "x")
    assert abs(r80_mz - r80_z) < 1.5 and abs(r80_x - r80_z) < 1.5, (r80_z, r80_mz, r80_x)
    assert "-z" in fig_mz.axes[0].get_xlabel() and "+x" in fig_x.axes[0].get_xlabel(), fig_x.axes[0].get_xlabel()


def test_depth_dose_figure_of_an_oblique_beam_draws_no_r80(tmp_path, monkeypatch):
    """Figures audit 29, F1: a beam 30 deg off every grid axis has no depth-dose along one: its figure draws the
    projection onto the nearest axis, says so in its title, and writes no R80."""
    from mcproton.cli import main

    cfg = tmp_path / "ob.toml"
    cfg.write_text(WATER_CUBE.format(sx=120.0, sy=40.0, sz=120.0, vx=2.0, vy=4.0, vz=2.0, pos=[-40.0, 0.0, -10.0],
                                     d=[0.5, 0.0, 0.866]))
    figs = []
    monkeypatch.setattr(P, "_save", lambda plt, fig, path, **kw: figs.append(fig) or Path(path))
    assert main(["run", str(cfg), "--out", str(tmp_path / "ob.h5"), "--quiet"]) == 0
    (fig,) = figs
    ax = fig.axes[0]
    assert not [t for t in ax.texts if "R80" in t.get_text()]
    assert "30 deg" in ax.get_title() and "not a depth-dose" in ax.get_title(), ax.get_title()

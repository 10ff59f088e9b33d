"""The validation report names the sources of the reference data it shows (provenance audit 2026-12-06, F3).

A report of ``mcproton validate`` is meant to be shared (a clinic's commissioning report).  The DCPT data of
``dcpt_plan02`` are CC BY 4.0: whoever shares them, or a figure that re-plots them, must name the creators, the
licence with its link and the source, and say what was changed (section 3(a)).  Before, report.html,
summary.json, validation/REPORT.md and the figures named none of it (the attribution was only in the case's
README); the other cases' third-party data (matRad's TOPAS curves, the CATANA curve of Geant4, NIST PSTAR, ICRU 90)
had no source either.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_engine as fe  # noqa: E402

fe.load_validation()
from mcproton.validation import report as REP  # noqa: E402
from mcproton.validation import runner  # noqa: E402
from mcproton.validation.cases import CASE_NAMES  # noqa: E402
from mcproton.validation.core import CaseResult, Metric  # noqa: E402
from mcproton.validation.markdown import write_markdown  # noqa: E402
from mcproton.validation.sources import CASE_SOURCES, ICRU90, SOURCES_HEADING, case_sources, figure_credit  # noqa: E402

VAL = Path(__file__).resolve().parents[2] / "validation"
DOI = "doi:10.5281/zenodo.10641085"
CC_BY = "https://creativecommons.org/licenses/by/4.0/"


def _dcpt_case():
    c = CaseResult("dcpt_plan02", "DCPT plan02", "MC-computed (five codes)")
    c.metrics = [Metric("R80 vs mean of SH12A, OpenShieldHIT, FLUKA, MCNP", 150.1, 150.0, 0.5, "mm")]
    return c.finalize()


def _section(page: str, case: str) -> str:
    """The HTML of one case: from its heading to the next heading."""
    start = page.index(f"<h2 id='{case}'>")
    return page[start:page.index("<h2", start + 1)]


def test_report_html_and_summary_name_the_cc_by_source_of_dcpt_plan02(tmp_path):
    s = REP.write_report(tmp_path, [_dcpt_case()], {"mode": "quick", "seed": 1})
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # under the case's heading: the data set, its authors, DOI and licence
    sec = _section(page, "dcpt_plan02")
    for text in ("APTG/2022_DCPT_LET", "Bassler et al. 2024", DOI, "CC BY 4.0", "href='#sources'"):
        assert text in sec, text
    # the report's section: creators, licence with its link, the source with its commit, what was changed
    assert f"<h2 id='sources'>{SOURCES_HEADING}</h2>" in page
    src = page[page.index("<h2 id='sources'>"):page.index("<h2 id='why'>")]
    for text in ("N. Bassler, L. Grzanka", "Danish Centre for Particle Therapy", CC_BY,
                 "62db608b4e72ce92a6ae07886226270fd3f55b39", DOI, "three columns kept"):
        assert text in src, text
    # summary.json holds the same, per case
    (case,) = json.loads((tmp_path / "summary.json").read_text())["cases"]
    assert case == json.loads(json.dumps(s["cases"][0]))
    (ref,) = case["reference_sources"]
    assert ref["licence"].startswith("CC BY 4.0") and DOI in ref["cite"] and "Bassler" in ref["creators"]
    assert DOI in ref["text"] and CC_BY in ref["text"]


def test_report_md_names_the_sources_even_from_an_older_summary(tmp_path):
    REP.write_report(tmp_path / "run", [_dcpt_case()], {"mode": "full", "seed": 1, "command": "x"})
    md = write_markdown(tmp_path / "run", tmp_path / "REPORT.md", tmp_path / "figs").read_text(encoding="utf-8")
    case_part = md[md.index("## dcpt_plan02"):md.index(f"## {SOURCES_HEADING}")]
    assert DOI in case_part and "CC BY 4.0" in case_part
    tail = md[md.index(f"## {SOURCES_HEADING}"):]
    assert "**dcpt_plan02**" in tail and CC_BY in tail and "N. Bassler" in tail
    # a summary.json written before 2026-12-06 has no reference_sources: the case's current ones are used (they
    # belong to the data, not to the run), so validation/REPORT.md can be re-rendered from an older run
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for c in summary["cases"]:
        del c["reference_sources"]
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    md_old = write_markdown(tmp_path / "run", tmp_path / "REPORT2.md", tmp_path / "figs").read_text(encoding="utf-8")
    assert md_old == md


def test_every_case_with_third_party_data_names_its_source():
    """A case whose folder holds reference data, or that compares with tables of another case, has a source; a CC
    BY source carries its DOI, its creators and what mcproton changed."""
    assert set(CASE_SOURCES) <= set(CASE_NAMES)
    for name in CASE_NAMES:
        folder = VAL / name
        data = [p for p in folder.iterdir() if p.suffix in (".csv", ".dcm")]
        if data:
            assert case_sources(name), (name, [p.name for p in data])
    for name in ("heterogeneity_slabs", "range_shifter", "tissue_spr"):   # PSTAR / ICRU 90 / Schneider tables
        assert case_sources(name), name
    # a case whose references use the water table (ICRU 90 by default, read from libdedx) names ICRU 90 (review 2 F1:
    # lateral_spread and heterogeneity_slabs did not)
    for name in CASE_NAMES:
        code = "".join(p.read_text() for p in (VAL / name).glob("*.py"))
        if "water_table(" in code:
            assert ICRU90 in case_sources(name), name
    for srcs in CASE_SOURCES.values():
        for s in srcs:
            assert s.data and s.origin and s.creators and s.licence and s.short
            if "CC BY" in s.licence:
                assert "doi:" in s.cite and "doi:" in s.short and "CC BY 4.0" in s.short and s.changes
    # matRad's repository licence is stated, not left out (audit F5)
    (topas,) = case_sources("topas_idd")
    assert "GPL-3.0-or-later" in topas.licence and "GPL-3.0-or-later" in topas.short


def _dcpt_with_the_fake_engine(monkeypatch, out):
    """Run the dcpt_plan02 case through the runner with the analytical fake engine; the depth dose and LETd read
    off the result are the SHIELD-HIT12A curves (the fake engine knows no plan geometry and no LET)."""
    from mcproton.validation.dcpt_plan02 import dcpt as D

    fe.install_fake_modules(monkeypatch)
    z, dose = D.read_reference("sh12a")
    zl, let = D.read_reference("sh12a", "LETd_protons_mat_keV_um")
    monkeypatch.setattr(D, "depth_dose_from_arrays", lambda *a, **k: (z, dose, 0.01 * dose))
    monkeypatch.setattr(D, "let_d_from_arrays", lambda *a, **k: (zl, let))
    monkeypatch.setattr(fe.FakeResult, "let_d_kev_um_zyx", property(lambda r: np.ones_like(r.dose_gy_zyx)),
                        raising=False)
    runner.main(["--quick", "--out", str(out), "--backend", "cpu", "--cases", "dcpt_plan02,topas_idd"],
                simulate_fn=fe.fake_simulate)
    return json.loads((out / "summary.json").read_text())


def test_figures_of_third_party_data_carry_their_credit(tmp_path, monkeypatch):
    """The figures that re-plot the DCPT curves (and matRad's TOPAS curves) carry the credit in the PNG and under
    the image in the report, so that a figure copied out of the report keeps its attribution."""
    s = _dcpt_with_the_fake_engine(monkeypatch, tmp_path / "out")
    by = {c["name"]: c for c in s["cases"]}
    assert by["dcpt_plan02"]["status"] != "error", by["dcpt_plan02"]["message"]
    assert by["dcpt_plan02"]["figures"] == ["dcpt_plan02_dose.png", "dcpt_plan02_let.png"]
    assert DOI in figure_credit("dcpt_plan02") and "CC BY 4.0" in figure_credit("dcpt_plan02")
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    for case in ("dcpt_plan02", "topas_idd"):
        sec = _section(page, case)
        n_img = sec.count("<img ")
        assert n_img and sec.count(f"<p class='small'>{figure_credit(case)}</p>") == n_img, case
    # the credit is drawn into the PNG: the same figure without it differs below the panels only
    from mcproton.validation.plots import Series, overlay_with_difference

    kw = dict(top=[Series([0, 1], [0, 1])], bottom=[Series([0, 1], [0, 0])], xlabel="x", ylabel_top="y",
              ylabel_bottom="d")
    plain = overlay_with_difference("t", **kw)
    credited = overlay_with_difference("t", **kw, credit=figure_credit("dcpt_plan02"))
    assert plain.credit == "" and credited.credit == figure_credit("dcpt_plan02")
    import io

    import matplotlib.image as mpimg

    def bottom_ink(png: bytes) -> float:       # darkness of the lowest 2 % of the image (0 = white)
        img = mpimg.imread(io.BytesIO(png))[..., :3]
        return float(1.0 - img[-max(2, img.shape[0] // 50):].min())

    assert bottom_ink(plain.png) == 0.0 and bottom_ink(credited.png) > 0.3

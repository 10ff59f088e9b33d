"""What the validation report and READMEs claim matches what the cases test (validation audit 2026-12-06,
F2, F4, F8)."""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_engine as fe  # noqa: E402

fe.load_validation()
from mcproton.validation import tolerances as T  # noqa: E402
from mcproton.validation.catana_62mev import case as catana  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_dcpt_dose_metric_does_not_claim_to_test_protons_per_mu():
    """F2: the case divides the plan's dose by the beam's protons (MU x protons/MU), so protons/MU cancels; the
    metric's note, its tolerance reason and the case README must say 'independent of protons/MU'."""
    case_src = (ROOT / "validation" / "dcpt_plan02" / "case.py").read_text()
    reasons = [r for c, pat, r in T.BASIS if c == "dcpt_plan02" and "22.5" in pat]
    readme = (ROOT / "validation" / "dcpt_plan02" / "README.md").read_text()
    for text in [case_src, readme] + reasons:
        assert "through the beam model's protons/MU" not in text
    assert reasons and all("independent of protons/MU" in r for r in reasons)
    assert "independent of protons/MU" in case_src
    assert "independent of the beam model's protons/MU" in readme


def test_catana_says_it_is_scored_against_a_model_corrected_measurement():
    """F4: the summary of the report called the case 'MEASURED ... passed' while peak/plateau and gamma are scored
    against the measurement x a fitted Bortfeld correction (up to +22 %); the raw comparison must be in the summary
    line, as info."""
    assert "fitted model correction" in catana.DATA_KIND and "not scored" in catana.DATA_KIND
    msg = catana.raw_comparison_message(4.985, 4.246, 5.192, 0.456, 0.98)
    assert "measurement x a fitted model correction" in msg
    assert "+17.4 % vs raw" in msg and "-4.0 % vs corrected" in msg
    assert "45.6 % vs raw (info, not scored)" in msg and "98.0 % vs corrected" in msg


def test_readme_quotes_the_multi_seed_dcpt_dose_mean():
    """F8: README 'Accuracy' quoted the DCPT isocentre dose of one seed (-0.3 %); it must quote the mean of
    quick_spread.csv with the uncertainty of that mean."""
    path = ROOT / "validation" / "quick_spread.csv"
    rows = [r for r in csv.reader(ln for ln in path.read_text().splitlines() if not ln.startswith("#"))]
    head, body = rows[0], rows[1:]
    row = next(dict(zip(head, r)) for r in body if r[0] == "dcpt_plan02" and r[1].startswith("dose at 22.5"))
    mean, sd, n = 100 * float(row["mean_value"]), 100 * float(row["sd_value"]), int(row["n_seeds"])
    text = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    m = re.search(r"dose per primary at the isocentre ([-+]?\d+\.\d+) \+- (\d+\.\d+) % from the five-code mean", text)
    assert m, "README no longer quotes the DCPT isocentre dose as mean +- uncertainty"
    assert float(m.group(1)) == pytest.approx(mean, abs=0.05)
    assert float(m.group(2)) == pytest.approx(sd / n ** 0.5, abs=0.01)


def test_report_warns_when_the_kernel_differs_from_the_spread_and_the_committed_report(tmp_path):
    """F7: a new report printed "quick_spread ... kernel f184b7e6" beside engine kernel 0304d035 without a word."""
    from mcproton.validation import markdown as MD
    from mcproton.validation import report as REP
    from mcproton.validation.core import CaseResult

    spread_k = T.spread_header()["kernel"]
    report_k = T.report_kernel()
    assert spread_k and report_k
    other = "0123456789abcdef0123"
    assert not any(other.startswith(k[:8]) for k in (spread_k, report_k))
    cr = CaseResult("ranges_water", "t", "evaluated")
    cr.runs = [{"provenance": {"kernel_hash": other}, "backend": "cpu", "device": "test"}]
    s = REP.build_summary([cr], {"mode": "quick"})
    assert len(s["kernel_warnings"]) == 2
    for w in s["kernel_warnings"]:
        assert other[:16] in w and "kernel mismatch" in w
    assert spread_k[:16] in s["kernel_warnings"][0] and report_k[:16] in s["kernel_warnings"][1]
    html = REP.render_html(s, [cr])
    assert html.count("kernel mismatch") == 2
    (tmp_path / "summary.json").write_text(json.dumps(s))
    md = MD.write_markdown(tmp_path, tmp_path / "R.md").read_text()
    assert md.count("kernel mismatch") == 2
    # the same kernel: no warning (hashes compared on their common prefix)
    assert T.kernel_warnings(spread_k + "00", spread_k, spread_k[:8]) == []
    assert T.kernel_warnings("fake", spread_k, report_k) == []


def test_readme_says_which_errors_the_suite_misses():
    """F9: from the audit's perturbation runs, a 2 % dose-per-primary error passes the whole suite and nuclear
    elastic scattering off is caught only by the 210 MeV gamma; the README must say so to the signer."""
    text = re.sub(r"\s+", " ", (ROOT / "validation" / "README.md").read_text())
    assert "## What the suite catches and what it does not" in text
    assert "a 2 % error in dose per primary passes the whole suite" in text
    assert re.search(r"nuclear elastic scattering off[^|]*\| \*\*only\*\* the 1 %/1 mm gamma of `topas_idd` at 210 MeV",
                     text)


def test_the_range_shift_claims_cover_the_committed_report():
    """README and docs/physics.md said the range shift behind a shifter equals its WET "within 0.15 mm" while
    validation/REPORT.md gives graphite 39.52 vs 39.71 mm, -0.19 mm (re-acceptance audit of 2026-12-06, F2).  The
    bound they quote must hold for every range-shift row of the committed report, and the README's per-material
    figures must be the report's worst of the two air gaps."""
    rows = re.findall(r"^\| range shift, (\w+) [\d.]+ mm, gap \d+ mm vs WET \| ([\d.]+) \| ([\d.]+) \|",
                      (ROOT / "validation" / "REPORT.md").read_text(), re.M)
    assert len(rows) == 6, "validation/REPORT.md no longer has the six range-shift rows this test reads"
    worst: dict[str, float] = {}
    for mat, value, ref in rows:
        d = float(value) - float(ref)
        worst[mat] = d if abs(d) > abs(worst.get(mat, 0.0)) else worst.get(mat, 0.0)
    bound = max(abs(d) for d in worst.values())
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    physics = re.sub(r"\s+", " ", (ROOT / "docs" / "physics.md").read_text())
    said = [re.search(r"range shift = WET within ([\d.]+) mm", readme),
            re.search(r"the range shift equals the WET within ([\d.]+) mm", physics)]
    assert all(said), "README or docs/physics.md no longer states the range shift against the WET"
    for where, quoted in zip(("README", "docs/physics.md"), (float(x.group(1)) for x in said if x)):
        assert quoted >= bound - 1e-9, f"{where} says within {quoted} mm; validation/REPORT.md has {bound:.2f} mm"
    m = re.search(r"range shift = WET within [\d.]+ mm \(PMMA ([-\d.]+) mm, polyethylene ([-\d.]+) mm, "
                  r"graphite ([-\d.]+) mm", readme)
    assert m, "README no longer gives the range shift per material as '(PMMA .. mm, polyethylene .., graphite ..)'"
    for mat, shown in zip(("pmma", "polyethylene", "graphite"), m.groups()):
        assert float(shown) == pytest.approx(worst[mat], abs=0.006), (mat, shown, worst[mat])


def test_the_energy_conservation_case_is_not_warned_of_its_beam_leaving_the_slabs():
    """Review R1 (2026-12-06): simulate's post-run warning of a beam that mostly left the grid ("check the beam ...
    and the phantom") is for a user's mistake; the energy_conservation case's beam is meant to leave its slabs
    (lateral and distal escape), about 48 % of its energy, and 53 % with nuclear physics off, which was warned of.
    The engine's run of the case (5000 primaries, nuclear off) gives no McprotonRuntimeWarning, and its ledger
    shows the escape."""
    import warnings

    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton.settings import PhysicsSettings
    from mcproton.validation.core import Context
    from mcproton.validation.energy_conservation.case import case_energy_conservation

    ctx = Context(mode="quick", backend="cpu", physics=PhysicsSettings(nuclear=False), log=lambda s: None)
    ctx.pick = lambda quick, full: 5000
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        case_energy_conservation(ctx)
    (run,) = ctx.runs
    assert run["ledger"]["escaped"] > 0.5 * run["ledger"]["incident"], run["ledger"]
    assert not run["provenance"].get("warnings"), run["provenance"].get("warnings")


def test_the_energy_conservation_readme_balances_every_ledger_destination():
    """The energy_conservation README's imbalance formula and the case's recomputation take every energy_out entry
    of the kernel's ledger (kernels/params.h MCP_LEDGER_ENTRIES): the README left out `shifter` (what range
    shifters take, with what the slab's secondaries lose there since 2026-12-07), so a shifter run's ledger checked
    by it was ~30 % out of balance (re-read of 2026-12-07, F2)."""
    from mcproton._kernels.layout import LEDGER_ENTRIES

    want = {e.name for e in LEDGER_ENTRIES if e.kind == "energy_out"}
    (energy_in,) = [e.name for e in LEDGER_ENTRIES if e.kind == "energy_in"]
    readme = " ".join((ROOT / "validation" / "energy_conservation" / "README.md").read_text().split())
    m = re.search(rf"abs\({energy_in} - ([a-z_ -]+)\) / {energy_in}", readme)
    assert m, "validation/energy_conservation/README.md no longer gives the imbalance as abs(incident - ...) / incident"
    assert set(m.group(1).split(" - ")) == want, (m.group(1), want)
    case_src = (ROOT / "validation" / "energy_conservation" / "case.py").read_text()
    terms = re.search(r"sum\(term\(k\) for k in \(([^)]*)\)\)", case_src)
    assert terms and set(re.findall(r'"([a-z_]+)"', terms.group(1))) == want, terms and terms.group(1)

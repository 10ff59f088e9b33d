"""Write the committed commissioning summary (validation/REPORT.md) from a run's summary.json and PNGs.

    python -m mcproton.validation.markdown RUN_DIR validation/REPORT.md [--figures validation/report_figures]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .report import FAILED, INTERRUPTED
from .sources import NO_THIRD_PARTY, SOURCES_HEADING, SOURCES_NOTE, case_sources
from .tolerances import sd_text


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _sources(c: dict) -> list[dict]:
    """A case's third-party reference sources from its summary (``reference_sources``); a summary written before
    the field existed (2026-12-06) gets the case's current ones (sources.py: they belong to the data, not the
    run)."""
    if "reference_sources" in c:
        return list(c["reference_sources"] or [])
    return [s.to_json() for s in case_sources(str(c.get("name", "")))]


def write_markdown(run_dir: str | Path, out_md: str | Path, figures_dir: str | Path | None = None) -> Path:
    run_dir, out_md = Path(run_dir), Path(out_md)
    s = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    if s.get("status") in (INTERRUPTED, FAILED):   # the record of a stopped or failed validation: no report
        raise ValueError(f"{run_dir / 'summary.json'} records a validation that was stopped before its report was "
                         f"complete ({s.get('message', s['status'])}); run mcproton validate again")
    fig_dir = Path(figures_dir) if figures_dir else out_md.parent / "report_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    eng = s.get("engine", {})
    lines = [
        "# mcproton validation report",
        "",
        f"Generated {s.get('generated')} by `{s.get('command')}` ({s.get('mode')} mode), "
        f"{s.get('total_wall_s', 0):.0f} s.",
        "",
        f"- version {eng.get('version')}, kernel `{str(eng.get('kernel_hash'))[:16]}`",
        f"- backend {eng.get('backend')}, device: {eng.get('device')}",
        f"- physics: {json.dumps(eng.get('physics'))}",
        f"- seed {s.get('seed')}, {s.get('batches')} batches per simulation",
        f"- result: {s.get('n_passed')} passed, {s.get('n_failed')} failed, {s.get('n_skipped')} skipped "
        f"(all passed: {_fmt(s.get('all_passed'))})",
        "",
        "The self-contained HTML report (overlays, difference curves, gamma parameters, every simulation's "
        "provenance, sign-off block) is written by `mcproton validate`; this page is its summary. Tolerances are "
        "physics tolerances, explained in each case's README (validation/<case>/README.md) and in "
        "validation/README.md \"Why these tolerances\"; the column \"sd\" is the statistical uncertainty of the "
        "value (1 sd, measured seed to seed in quick mode: validation/quick_spread.csv; in full mode an upper "
        "bound), not a tolerance.",
        "",
        "Scope: the engine's physics with reference beams (pencil beams defined by each case; for dcpt_plan02 DCPT's "
        "published beam model), not a centre's own beam model, which is commissioned against the centre's own "
        "measurements.",
        "",
        *[f"**Warning**: {w}\n" for w in s.get("kernel_warnings", [])],
        "## Summary",
        "",
        "| case | status | data | failed metrics |",
        "|---|---|---|---|",
    ]
    for c in s["cases"]:
        bad = [m["name"] for m in c.get("metrics", []) if m.get("passed") is False and m.get("tolerance") is not None]
        lines.append(f"| {c['name']} | {c['status']} | {c.get('data_kind', '')} | {'; '.join(bad)} |")
    for c in s["cases"]:
        lines += ["", f"## {c['name']}: {c['title']}", "", f"Status: **{c['status']}**. {c.get('message', '')}", ""]
        if c.get("beams"):
            lines += [f"Beams: {c['beams']}.", ""]
        srcs = _sources(c)
        lines += [f"Reference data from: {'; '.join(src['short'] for src in srcs)} (creators, licences, what to "
                  f"cite: \"{SOURCES_HEADING}\" below)." if srcs else f"Third-party reference data: {NO_THIRD_PARTY}.",
                  ""]
        ms = c.get("metrics", [])
        if ms:
            lines += ["| metric | value | reference | sd (statistical) | tolerance | pass | "
                      "tolerance: source / reason |", "|---|---|---|---|---|---|---|"]
            for m in ms:
                tol = m.get("tolerance")
                tol_s = "" if tol is None else f"{_fmt(tol)} {m.get('unit', '')} ({m.get('comparison', '')})"
                sd = sd_text(c["name"], m["name"], m.get("comparison", ""), str(s.get("mode")))
                why = m.get("tolerance_basis", "") if m.get("comparison") != "info" else ""
                lines.append(f"| {m['name']} | {_fmt(m.get('value'))} | {_fmt(m.get('reference'))} | {sd} | {tol_s} | "
                             f"{'info' if tol is None else _fmt(m.get('passed'))} | {why} |")
        # the figures of this run's summary, not every <case>*.png in the folder (an earlier run's could be there)
        for png in [run_dir / str(f) for f in c.get("figures", [])]:
            if not png.is_file():
                continue
            shutil.copy2(png, fig_dir / png.name)
            rel = Path(fig_dir.name) / png.name if fig_dir.parent == out_md.parent else fig_dir / png.name
            lines += ["", f"![{png.stem}]({rel.as_posix()})"]
        for note in c.get("notes", []):
            lines += ["", f"> {note}"]
    lines += _sources_section(s["cases"])
    out_md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_md


def _sources_section(cases: list[dict]) -> list[str]:
    """The report's "Reference data: sources and licences": each source once, with the cases that use it."""
    by: dict[str, tuple[dict, list[str]]] = {}
    for c in cases:
        for src in _sources(c):
            by.setdefault(src["text"], (src, []))[1].append(c["name"])
    out = ["", f"## {SOURCES_HEADING}", "", SOURCES_NOTE, ""]
    for src, names in by.values():
        out.append(f"- **{', '.join(names)}**: {src['text']}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("out_md")
    ap.add_argument("--figures")
    a = ap.parse_args(argv)
    print(write_markdown(a.run_dir, a.out_md, a.figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Write ``summary.json``, ``report.html`` (self-contained: CSS inline, plots as base64 PNG) and the PNGs."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import platform
from pathlib import Path
from typing import Any

from .._check.report import sign_off_html
from .core import REFERENCE_BEAMS, CaseResult, _jsonable
from .sources import NO_THIRD_PARTY, SOURCES_HEADING, SOURCES_NOTE, Source
from .tolerances import (kernel_warnings, quick_spread, report_kernel, sd_text, spread_header, tolerance_basis,
                         why_these_tolerances)

SCHEMA_VERSION = 1
#: summary.json's ``status`` (new keys do not raise SCHEMA_VERSION): "complete", a whole report; "interrupted", the
#: record of a validation stopped by a signal, and "failed", of one ended by an error (its ``error``), each with no
#: report, no cases and ``all_passed`` false (validation/runner.py), which a script must not take for a result
COMPLETE, INTERRUPTED, FAILED = "complete", "interrupted", "failed"
#: the report page's heading (a folder holding report.html with it holds an earlier report: runner.check_out_dir)
REPORT_TITLE = "mcproton validation and commissioning report"


def _settings_from_runs(cases: list[CaseResult]) -> dict[str, Any]:
    """Engine settings common to the run (from the provenance of the first simulation)."""
    for c in cases:
        for r in c.runs:
            p = r.get("provenance") or {}
            keys = ("version", "kernel_hash", "compile_options", "backend", "device", "seed", "primaries", "physics")
            return {k: p.get(k) for k in keys if k in p} | {"backend": r.get("backend"), "device": r.get("device")}
    return {}


def validate_exit_status(cases: list[CaseResult]) -> int:
    """``mcproton validate``'s exit status for these cases, by the table of ``mcproton run`` and ``check``
    (mcproton.errors): 4 (EXIT_INTERNAL) if a case raised (its status ``error``: a crash, not a measurement out of
    tolerance), else 1 (EXIT_FAIL) if one failed, else 0.  Before (the integrator audit of 2026-12-06, F5) a crash
    exited 1 like a failed case."""
    from ..errors import EXIT_FAIL, EXIT_INTERNAL, EXIT_PASS

    if any(c.status == "error" for c in cases):
        return EXIT_INTERNAL
    return EXIT_PASS if all(c.passed for c in cases) else EXIT_FAIL


def build_summary(cases: list[CaseResult], meta: dict[str, Any]) -> dict[str, Any]:
    engine = _settings_from_runs(cases)
    spread = spread_header()
    return {
        "schema_version": SCHEMA_VERSION,
        "status": COMPLETE,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **_jsonable(meta),
        "engine": _jsonable(_settings_from_runs(cases)),
        "all_passed": all(c.passed for c in cases),
        "n_cases": len(cases),
        "n_passed": sum(1 for c in cases if c.status == "passed"),
        "n_failed": sum(1 for c in cases if c.status in ("failed", "error")),   # raised ones too (n_errors)
        "n_errors": sum(1 for c in cases if c.status == "error"),
        "exit_status": validate_exit_status(cases),
        "n_skipped": sum(1 for c in cases if c.status == "skipped"),
        "cases": [_case_json(c, str(meta.get("mode", "quick"))) for c in cases],
        "quick_spread": spread,
        "kernel_warnings": kernel_warnings(str(engine.get("kernel_hash") or ""), spread.get("kernel", ""),
                                           report_kernel()),
        **validation_provenance(cases),
    }


#: what summary.json's ``engine`` is (``engine_note``): the settings of one simulation, not the build
ENGINE_NOTE = ("engine: the settings of the first simulation of the cases run (its seed and primaries are that "
               "simulation's; {} where no case ran a simulation); the build that validated is build")


def validation_provenance(cases: list[CaseResult]) -> dict[str, Any]:
    """What ties a validation's result to what it validated, whatever cases ran: ``mcproton_version``, ``build``
    (:func:`mcproton._build.check_build_identity`: the version and the SHA-256 of the transport kernel, of the
    physics data files and of the code; ``{"error": ...}`` where a source file cannot be read),
    ``reference_files_sha256`` ({name: SHA-256} of every case's reference data file, by its name under the validation
    folder; None for one not found) and ``engine_note`` (what ``engine`` is).  Before (audit 25 provenance, F2), a
    validation of only cases without a simulation (stopping_power, which validates the physics data) recorded
    ``"engine": {}`` and no version, so that two physics data sets gave two PASS reports no field told apart; the
    reference files were named without a hash."""
    from .. import __version__
    from .._build import check_build_record
    from .._io.file_hash import sha256_file
    from .reference import HERE

    files: dict[str, str | None] = {}
    for c in cases:
        for name in c.reference_files:
            where = HERE / name
            files[name] = sha256_file(where) if where.is_file() else None
    return {"mcproton_version": __version__, "build": check_build_record(), "reference_files_sha256": files,
            "engine_note": ENGINE_NOTE}


def _case_json(c: CaseResult, mode: str) -> dict[str, Any]:
    """A case's JSON with, per metric, the source of its tolerance and the measured quick-mode spread."""
    d = c.to_json()
    for mj, m in zip(d["metrics"], c.metrics):
        sp = quick_spread(c.name, m.name)
        mj["tolerance_basis"] = tolerance_basis(c.name, m.name)
        mj["quick_mode_sd"] = None if sp is None else _jsonable(sp["sd"])
        mj["quick_mode_sd_is_upper_bound"] = mode == "full"
    return d


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.passed{color:#116611;font-weight:bold}.failed,.error{color:#b00000;font-weight:bold}
.skipped,.info{color:#777;font-weight:bold}img{max-width:100%;border:1px solid #ddd;margin:6px 0}
.small{font-size:11px;color:#555}code{background:#f6f6f6;padding:0 3px}
"""


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "NaN"
        a = abs(v)
        return f"{v:.3g}" if (a and (a < 1e-3 or a >= 1e5)) else f"{v:.4g}"
    return html.escape(str(v))


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>"
                   f"""{_fmt(v) if not isinstance(v, (dict, list))
                        else '<code>' + html.escape(json.dumps(_jsonable(v))) + '</code>'}"""
                   "</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def _rows_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


#: what the statistical column holds (its heading in the report)
SD_HEADING = "statistical sd of the value (1 sd, seed to seed, quick mode)"
TOL_HEADING = "tolerance (pass criterion)"
BASIS_HEADING = "tolerance: source / reason"


def metric_sd(case: str, m, mode: str) -> str:
    """The statistical uncertainty of a metric's value as shown in the report (tolerances.sd_text, as HTML)."""
    return html.escape(sd_text(case, m.name, m.comparison, mode)).replace("&lt;=", "&le;")


def _metrics_table(c: CaseResult, mode: str = "quick") -> str:
    head = (f"<tr><th>metric</th><th>value</th><th>reference</th><th>difference (value &minus; reference)</th>"
            f"<th>{SD_HEADING}</th><th>{TOL_HEADING}</th><th>unit</th><th>result</th><th>{BASIS_HEADING}</th>"
            "<th>note</th></tr>")
    rows = []
    for m in c.metrics:
        p = m.passed
        cls, word = ("info", "info") if p is None else (("passed", "pass") if p else ("failed", "FAIL"))
        tol = {"abs": "&plusmn;", "rel": "&plusmn;", "max": "&le;", "min": "&ge;"}.get(m.comparison, "")
        tv = "" if m.tolerance is None else (f"{tol}{m.tolerance * 100:g} %" if m.comparison == "rel"
                                              else f"{tol}{_fmt(m.tolerance)}")
        d = m.difference
        dv = "" if d is None else (f"{d * 100:+.2f} %" if m.comparison == "rel" else f"{d:+.4g}")
        basis = tolerance_basis(c.name, m.name) if m.comparison != "info" or m.tolerance is not None else ""
        rows.append(f"<tr><td>{html.escape(m.name)}</td><td>{_fmt(m.value)}</td><td>{_fmt(m.reference)}</td>"
                    f"<td>{dv}</td><td>{metric_sd(c.name, m, mode)}</td><td>{tv}</td><td>{html.escape(m.unit)}</td>"
                    f"<td class='{cls}'>{word}</td><td class='small'>{html.escape(basis)}</td>"
                    f"<td class='small'>{html.escape(m.note)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(summary: dict[str, Any], cases: list[CaseResult]) -> str:
    ok = summary["all_passed"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>mcproton commissioning report</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{REPORT_TITLE}</h1>",
             f"<p>Overall: <span class='{'passed' if ok else 'failed'}'>{'ALL CASES PASSED' if ok else 'FAILURES'}"
             f"</span> &mdash; {summary['n_passed']} passed, {summary['n_failed']} failed, {summary['n_skipped']} "
             f"skipped, generated {html.escape(summary['generated'])}.</p>",
             _scope(summary, cases),
             "<h2>Settings</h2>",
             _kv_table({k: summary.get(k) for k in ("mode", "backend_requested", "seed", "batches", "physics",
                                                      "command", "python", "platform", "total_wall_s")}),
             "<p class='small'>Engine provenance (first simulation):</p>", _kv_table(summary.get("engine", {})),
             "<p class='small'>Build validated (mcproton version; SHA-256 of the transport kernel, the physics data "
             "files and the code):</p>", _kv_table(summary.get("build") or {}),
             "<p class='small'>Reference data files (SHA-256):</p>",
             _kv_table(summary.get("reference_files_sha256") or {}),
             "".join(f"<p class='failed'>Warning: {html.escape(w)}</p>" for w in summary.get("kernel_warnings", [])),
             "<h2>Summary</h2><table><tr><th>case</th><th>title</th><th>reference data</th><th>result</th>"
             "<th>metrics failed</th></tr>"]
    for c in cases:
        parts.append(f"<tr><td><a href='#{c.name}'>{c.name}</a></td><td>{html.escape(c.title)}</td>"
                     f"<td class='small'>{html.escape(c.data_kind)}</td><td class='{c.status}'>{c.status}</td>"
                     f"<td>{sum(1 for m in c.metrics if m.passed is False)} / {len(c.metrics)}</td></tr>")
    parts.append("</table>")
    for c in cases:
        parts.append(f"<h2 id='{c.name}'>{html.escape(c.name)}: {html.escape(c.title)} &mdash; "
                     f"<span class='{c.status}'>{c.status}</span></h2>")
        parts.append(f"<p class='small'>Reference data ({html.escape(c.data_kind)}): "
                     f"{html.escape(', '.join(c.reference_files))}. Case time {c.wall_s:.1f} s.</p>")
        parts.append(_case_sources_html(c))
        if c.message:
            parts.append(f"<p><b>{html.escape(c.message)}</b></p>")
        for f in c.figures:
            b64 = base64.b64encode(f.png).decode("ascii")
            parts.append(f"<div><img alt='{html.escape(f.title)}' src='data:image/png;base64,{b64}'></div>")
            if f.credit:
                parts.append(f"<p class='small'>{html.escape(f.credit)}</p>")
        parts.append(f"<p class='small'>Beams: {html.escape(c.beams or REFERENCE_BEAMS)}.</p>")
        if c.metrics:
            parts.append(_metrics_table(c, str(summary.get("mode", "quick"))))
        if c.gamma_params:
            parts.append("<p class='small'>Gamma parameters:</p>" + _kv_table(c.gamma_params))
        for name, rows in c.tables.items():
            parts.append(f"<p class='small'>{html.escape(name)}:</p>" + _rows_table(rows))
        for n in c.notes:
            parts.append(f"<p class='small'>{html.escape(n)}</p>")
        if c.runs:
            rows = [{"run": r.get("label"), "primaries": r.get("primaries"), "seed": r.get("seed"),
                     "backend": r.get("backend"), "device": r.get("device"), "wall_s": r.get("wall_s"),
                     "protons/s": r.get("protons_per_second"), "geometry": r.get("geometry"), "beam": r.get("beam")}
                    for r in c.runs]
            parts.append("<p class='small'>Simulations:</p>" + _rows_table(rows))
            prov = c.runs[0].get("provenance") or {}
            if prov:
                parts.append("<p class='small'>Provenance of the first simulation of this case:</p>" + _kv_table(prov))
    parts.append(_sources_section(cases))
    parts.append(_why(summary))
    parts.append(sign_off_html(
        "I have reviewed the results above, each failed metric and the reasons for the tolerances. This report "
        "validates the dose engine's physics with reference beams; it does not commission a centre's own beam "
        "model.",
        roles=("reviewed by (medical physicist)", "approved by"),
        decision="Decision: &#9744; engine physics accepted &nbsp; &#9744; accepted with the restrictions in the "
                 "comment &nbsp; &#9744; not accepted"))
    parts.append("</body></html>")
    return "\n".join(parts)


def _scope(summary: dict[str, Any], cases: list[CaseResult]) -> str:
    """What the report validates, the beams of the cases, and any failure by design (--water-model pstar)."""
    own = sorted({c.beams for c in cases if c.beams})
    out = ["<h2>Scope</h2><p>These cases validate the engine's physics (stopping powers, ranges, straggling, "
           "scattering, nuclear interactions, transport through heterogeneities and range shifters, energy "
           "conservation) against reference data, with <b>reference beams</b>: pencil beams defined by each case "
           "and, for one clinical plan, a published machine's beam model. They do <b>not</b> validate a centre's "
           "own beam model: commission that separately against the centre's measurements (IDDs per energy, spot "
           "sizes in air, absolute dose per MU) before clinical use.</p>",
           f"<p class='small'>Beams of the cases: {html.escape(REFERENCE_BEAMS)}"
           + "".join(f"; except {html.escape(b)}" for b in own) + ".</p>"]
    design = [c for c in cases if c.expected_failure]
    if design:
        out.append("<p class='failed'>Failed by design: " + "; ".join(
            f"{html.escape(c.name)}: {html.escape(c.expected_failure)}" for c in design)
            + ". The failure is real for this water model and is not hidden; validate with icru90.</p>")
    return "".join(out)


def _case_sources_html(c: CaseResult) -> str:
    """Under a case's heading: where its reference data come from, in short (the section has the rest)."""
    if not c.reference_sources:
        return f"<p class='small'>Third-party reference data: {html.escape(NO_THIRD_PARTY)}.</p>"
    return (f"<p class='small'>Reference data from: {html.escape('; '.join(s.short for s in c.reference_sources))} "
            f"(creators, licences, what to cite: <a href='#sources'>{SOURCES_HEADING}</a>).</p>")


def _sources_section(cases: list[CaseResult]) -> str:
    """Every third-party source of the reference data shown in the report, once, with the cases that use it: the
    attribution a shared report must keep (CC BY 4.0 for the DCPT data)."""
    by: dict[Source, list[str]] = {}
    for c in cases:
        for s in c.reference_sources:
            by.setdefault(s, []).append(c.name)
    head = ("<tr><th>cases</th><th>data</th><th>creators</th><th>source</th><th>licence</th><th>cite</th>"
            "<th>changes by mcproton</th></tr>")
    rows = "".join(f"<tr><td>{html.escape(', '.join(names))}</td><td>{html.escape(s.data)}</td>"
                   f"<td>{html.escape(s.creators)}</td><td>{html.escape(s.origin)}</td>"
                   f"<td>{html.escape(s.licence)}</td><td>{html.escape(s.cite)}</td>"
                   f"<td>{html.escape(s.changes)}</td></tr>" for s, names in by.items())
    return (f"<h2 id='sources'>{SOURCES_HEADING}</h2>"
            f"<p class='small'>{html.escape(SOURCES_NOTE)}</p>"
            + (f"<table class='small'>{head}{rows}</table>" if rows else
               "<p class='small'>None of the cases run uses third-party reference data.</p>"))


def _why(summary: dict[str, Any]) -> str:
    """Why the tolerances are what they are (validation/README.md), and where the statistical sd comes from."""
    hdr = summary.get("quick_spread") or {}
    src = (f"seeds {html.escape(str(hdr.get('seeds', '')))}, kernel {html.escape(str(hdr.get('kernel', '')))}"
           if hdr else "no spread file")
    items = "".join(f"<li>{html.escape(b)}</li>" for b in why_these_tolerances())
    return ("<h2 id='why'>Why these tolerances</h2>"
            f"<p class='small'>The column '{TOL_HEADING}' is the physics criterion a metric must meet; the column "
            f"'{SD_HEADING}' is the measured statistical uncertainty of the value, from one quick run per seed "
            f"(validation/quick_spread.csv: {src}); in --full mode it is an upper bound (at least as many "
            f"primaries). The column '{BASIS_HEADING}' gives each tolerance's reason; the general reasons "
            "(validation/README.md):</p>"
            f"<ul class='small'>{items}</ul>")


def write_report(out_dir: Path | str, cases: list[CaseResult], meta: dict[str, Any],
                 written: list[Path] | None = None) -> dict[str, Any]:
    """Write one PNG per figure, report.html and, last, summary.json into ``out_dir``; returns the summary.  Each
    file is written atomically (a temporary file renamed into place: a reader, or a validation stopped while
    writing, never sees a truncated summary.json or report.html under its name: the concurrency audit of
    2026-12-07, F3), and appended to ``written`` (where given) once it is."""
    from .._io.atomic import write_bytes_atomic
    from .._io.json_out import json_text   # the one strict writer (NaN as null) of every JSON mcproton writes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = written if written is not None else []

    def put(name: str, data: bytes) -> None:
        done.append(write_bytes_atomic(out / name, data))

    for c in cases:
        for i, f in enumerate(c.figures):
            if not f.filename:
                f.filename = f"{c.name}_{i}.png"
            put(f.filename, f.png)
    meta = {"python": platform.python_version(), "platform": platform.platform(), **meta}
    summary = build_summary(cases, meta)
    put("report.html", render_html(summary, cases).encode("utf-8"))
    put("summary.json", json_text(summary).encode("utf-8"))   # last: what a script reads says the report is whole
    return summary

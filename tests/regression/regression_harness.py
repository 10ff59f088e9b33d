"""Exact regression files (issue 16): run a case's ``run.toml`` through the CLI's job path on the CPU and
reduce the result to SHA-256 digests of its arrays plus a few summary numbers a reviewer can read.

The CPU backend's tallies are fixed-point integers, so a case's dose is bitwise the same for any thread count
and batch split (tests/engine/test_transport.py).  The floating-point kernel code is compiled with
``-march=native -ffast-math`` (mcproton/_backend/cpu.py), so the bits are those of one compiler, instruction
set and libm: the file records them (``platform``), and the exact comparison applies where they match
(README.md).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS_FILE = "results_true.json"
FORMAT = 1

#: the DoseResult arrays whose bits are compared (name in the file -> attribute)
ARRAYS = {
    "dose": "dose_gy_zyx",
    "dose_to_water": "dose_to_water_gy_zyx",
    "let_d": "let_d_kev_um_zyx",
    "uncertainty": "uncertainty_rel_zyx",
    "edep": "edep_mev_zyx",
}


def cases() -> list[str]:
    return sorted(p.parent.name for p in HERE.glob(f"*/{'run.toml'}"))


def run_case(name: str) -> Any:
    """The summed DoseResult of ``<name>/run.toml``, built exactly as ``mcproton run`` builds it (no output
    files, no checkpoint, no progress bar)."""
    from mcproton._run.job import run_job
    from mcproton.config import build_beams, build_geometry, check_beam_hits, load_config, run_settings
    from mcproton.run import sum_results

    cfg = load_config(HERE / name / "run.toml")
    settings = run_settings(cfg)
    geometry = build_geometry(cfg)
    beams = build_beams(cfg)
    check_beam_hits(geometry, beams)
    results = run_job(cfg, settings, geometry, beams, None, checkpoint=False, progress=False, log=lambda m: None)
    return results[0] if len(results) == 1 else sum_results(results)


def platform_key(result: Any) -> dict[str, str]:
    """What the bits depend on besides the source: the compiler and its options, the instruction set that
    ``-march=native`` resolves to (two CPUs of one model name can differ: x86-64-v3 and znver3 gave different
    bits here) and the C library (libm)."""
    import platform
    import subprocess

    from mcproton._backend.cpu import find_compiler

    prov = result.provenance
    out = subprocess.run([find_compiler(), "-march=native", "-Q", "--help=target"], capture_output=True, text=True,
                         check=False).stdout
    march = next((ln.split()[-1] for ln in out.splitlines() if ln.strip().startswith("-march=")), "unknown")
    return {"compiler": prov["compiler"], "compile_options": prov["compile_options"], "march_native": march,
            "libc": " ".join(platform.libc_ver())}


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a, dtype=np.float64)
    h = hashlib.sha256(f"{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _ledger_text(ledger: dict) -> str:
    return json.dumps({k: (repr(float(v)) if isinstance(v, float) else int(v)) for k, v in sorted(ledger.items())})


def _g(x: float) -> float:
    """9 significant digits: enough to see what moved, short enough to read."""
    return float(f"{float(x):.9g}")


def summary(result: Any) -> dict[str, Any]:
    """A few numbers to read when a digest moves (not compared themselves: the digests are)."""
    from mcproton.validation.metrics import distal_range

    g = result.geometry
    dose = result.dose_gy_zyx
    k = np.unravel_index(int(np.argmax(dose)), dose.shape)
    ax = {a: g.axis_mm(a) for a in "xyz"}
    w = dose / dose.sum() if dose.sum() > 0 else dose
    zz, yy, xx = np.meshgrid(ax["z"], ax["y"], ax["x"], indexing="ij")
    z, idd = result.integrated_depth_dose("z")
    led = result.ledger
    return {
        "dose_sum_gy": _g(dose.sum()),
        "dose_max_gy": _g(dose.max()),
        "dose_max_at_mm_xyz": [_g(ax["x"][k[2]]), _g(ax["y"][k[1]]), _g(ax["z"][k[0]])],
        "dose_centroid_mm_xyz": [_g((w * xx).sum()), _g((w * yy).sum()), _g((w * zz).sum())],
        "dose_to_water_sum_gy": _g(result.dose_to_water_gy_zyx.sum()),
        "let_d_dose_mean_kev_um": _g((w * result.let_d_kev_um_zyx).sum()),
        "r80_z_mm": _g(distal_range(z, idd, 0.8)),
        "mean_rel_uncertainty_50": _g(result.mean_rel_uncertainty_50),
        "primaries": int(led["primaries"]),
        "nuclear_events": int(led["nuclear_events"]),
        "secondaries": int(led["secondaries"]),
        "steps": int(led["steps"]),
        "energy_deposited_mev": _g(led["deposited"]),
        "energy_imbalance_rel": _g(led["imbalance_rel"]),
    }


def record(name: str, result: Any) -> dict[str, Any]:
    sha = {key: _digest(getattr(result, attr)) for key, attr in ARRAYS.items()}
    sha["ledger"] = hashlib.sha256(_ledger_text(result.ledger).encode()).hexdigest()
    return {"format": FORMAT, "case": name, "platform": platform_key(result), "sha256": sha,
            "summary": summary(result)}


def load(name: str) -> dict[str, Any] | None:
    p = HERE / name / RESULTS_FILE
    return json.loads(p.read_text()) if p.exists() else None


def save(name: str, rec: dict[str, Any]) -> Path:
    p = HERE / name / RESULTS_FILE
    p.write_text(json.dumps(rec, indent=1) + "\n")
    return p


#: The check on another platform (compiler, instruction set or libm differ from the recording's): the summary
#: numbers within these tolerances.  A rounding difference changes a few histories and the Philox streams keep
#: the rest, so the numbers move little.  Measured on the four cases against the znver3 -O3 -ffast-math build:
#: -march=x86-64 moved no number by more than 9e-5 relative and 2e-4 mm; -O2 without -ffast-math (a larger
#: difference than most platforms make) by 3.7e-5 (sums), 2.1e-4 (dose maximum), 2.3e-3 (mean uncertainty),
#: 0.0028 mm (R80), 0.0011 mm (centroid), 1 nuclear event, 1 secondary and 5 steps.  The tolerances are about
#: 10x those.  A physics change smaller than them shows only in the exact check (the recording platform);
#: I = 75 instead of 78 eV for water moves R80 by 0.26 mm and fails both.
NEAR = {"dose_sum_gy": ("rel", 1e-3), "dose_max_gy": ("rel", 3e-3), "dose_centroid_mm_xyz": ("abs", 0.02),
        "dose_to_water_sum_gy": ("rel", 1e-3), "let_d_dose_mean_kev_um": ("rel", 1e-3), "r80_z_mm": ("abs", 0.03),
        "mean_rel_uncertainty_50": ("rel", 0.025), "primaries": ("abs", 0), "nuclear_events": ("abs", 10),
        "secondaries": ("abs", 20), "steps": ("rel", 1e-3), "energy_deposited_mev": ("rel", 1e-3),
        "energy_imbalance_rel": ("abs", 1e-6)}   # dose_max_at_mm_xyz: a near-tie may move the maximum's voxel


def near_misses(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The summary numbers of ``new`` outside the NEAR tolerances of ``old`` (empty: all within)."""
    bad = []
    for k, (kind, tol) in NEAR.items():
        o, v = np.atleast_1d(old["summary"].get(k, np.nan)), np.atleast_1d(new["summary"][k])
        lim = tol * np.abs(o) if kind == "rel" else tol
        if o.shape != v.shape or not np.all(np.abs(v - o) <= lim):
            bad.append(f"{k}: {old['summary'].get(k)} -> {new['summary'][k]} (tolerance {kind} {tol:g})")
    return bad


def differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A readable account of what moved: the arrays whose digests differ, and the summary numbers old -> new."""
    moved = [k for k in new["sha256"] if old.get("sha256", {}).get(k) != new["sha256"][k]]
    lines = [f"arrays that moved: {', '.join(moved) if moved else 'none'}"]
    for k, v in new["summary"].items():
        o = old.get("summary", {}).get(k)
        mark = "   " if o == v else " * "
        lines.append(f"{mark}{k}: {o} -> {v}")
    return "\n".join(lines)

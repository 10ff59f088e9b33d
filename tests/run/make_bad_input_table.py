"""Run ``mcproton run`` on each bad input and write docs/bad_inputs.md: the case, the command-line change and
the exact message.  Every case must fail before any transport starts, with exit status 2 and one message.

    python tests/run/make_bad_input_table.py            # rewrite docs/bad_inputs.md
    python tests/run/make_bad_input_table.py --check    # exit 1 if docs/bad_inputs.md is out of date

The cases are also run in-process by tests/run/test_run_bad_inputs.py.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad_inputs.md"

BASE = """\
[run]
primaries = 1000
seed = 1
backend = "cpu"
threads = 1

[phantom]
type = "water"
size_mm = [40.0, 40.0, 100.0]
voxel_mm = [4.0, 4.0, 2.0]

[beam]
energy_mev = 100.0
position_mm = [0.0, 0.0, -10.0]
direction = [0.0, 0.0, 1.0]
sigma_mm = [3.0, 3.0]

[output]
plot = false
"""

# (case, extra command-line arguments, config text or None for BASE, text the message must contain)
CASES: list[tuple[str, list[str], str | None, str]] = [
    ("unknown key (typo)", ["--set", "run.primary=1000"], None, "run.primary"),
    ("unknown section", ["--set", "beem.energy_mev=100"], None, "[beem]"),
    ("wrong type (string for a number)", ["--set", 'run.primaries="many"'], None, "run.primaries"),
    ("true/false for a number", ["--set", "beam.energy_mev=true"], None, "beam.energy_mev"),
    ("zero primaries", ["--set", "run.primaries=0"], None, "run.primaries"),
    ("negative primaries", ["--set", "run.primaries=-5"], None, "run.primaries"),
    ("energy above the tables", ["--set", "beam.energy_mev=400"], None, "energy"),
    ("negative energy", ["--set", "beam.energy_mev=-5"], None, "energy_mev"),
    ("energy below the cut-off", ["--set", "beam.energy_mev=0.2"], None, "beam.energy_mev"),
    ("energy spread reaching the tables' limit", ["--set", "beam.energy_mev=345",
                                                  "--set", "beam.energy_spread_mev=12"], None, "energy"),
    ("NaN energy", ["--set", "beam.energy_mev=nan"], None, "beam.energy_mev"),
    ("infinite size", ["--set", "phantom.size_mm=[40.0, inf, 100.0]"], None, "phantom.size_mm"),
    ("negative size", ["--set", "phantom.size_mm=[-40.0, 40.0, 100.0]"], None, "phantom.size_mm"),
    ("zero voxel size", ["--set", "phantom.voxel_mm=0"], None, "phantom.voxel_mm"),
    ("voxel larger than the phantom", ["--set", "phantom.voxel_mm=[80.0, 4.0, 2.0]"], None, "phantom.voxel_mm"),
    ("negative energy spread", ["--set", "beam.energy_spread_mev=-1"], None, "energy_spread_mev"),
    ("negative spot size", ["--set", "beam.sigma_mm=[-3.0, 3.0]"], None, "sigma_mm"),
    ("zero direction", ["--set", "beam.direction=[0.0, 0.0, 0.0]"], None, "direction"),
    ("correlation outside [-1, 1]", ["--set", "beam.correlation=[2.0, 0.0]"], None, "correlation"),
    ("zero total protons", ["--set", "beam.total_protons=0"], None, "total_protons"),
    ("beam misses the phantom", ["--set", "beam.position_mm=[500.0, 0.0, -10.0]"], None, "misses"),
    ("beam points away from the phantom", ["--set", "beam.direction=[0.0, 0.0, -1.0]"], None, "misses"),
    ("one batch", ["--set", "run.batches=1"], None, "run.batches"),
    ("negative seed", ["--set", "run.seed=-1"], None, "run.seed"),
    ("unknown backend", ["--set", 'run.backend="gpu"'], None, "run.backend"),
    ("negative threads", ["--set", "run.threads=-2"], None, "run.threads"),
    ("negative GPU index", ["--set", "run.gpu=-1"], None, "run.gpu"),
    ("zero batch size", ["--set", "run.batch_size=0"], None, "run.batch_size"),
    ("target uncertainty above 1", ["--set", "run.target_uncertainty=1.5"], None, "run.target_uncertainty"),
    ("negative time limit", ["--set", "run.time_limit_s=-1"], None, "run.time_limit_s"),
    ("negative checkpoint interval", ["--set", "run.checkpoint_interval_s=-5"], None, "run.checkpoint_interval_s"),
    ("unknown water model", ["--set", 'physics.water_model="icru49"'], None, "physics.water_model"),
    ("cut-off energy out of range", ["--set", "physics.e_cut_mev=50"], None, "physics.e_cut_mev"),
    ("unknown phantom type", ["--set", 'phantom.type="watr"'], None, "phantom.type"),
    ("unknown material", ["--set", 'phantom.material="watter"'], None, "watter"),
    ("CT phantom without ct_dir", ["--set", 'phantom.type="ct"'], None, "phantom.ct_dir"),
    ("misspelt output.dose_to", ["--set", 'output.dose_to="Water"'], None, "output.dose_to"),
    ("implausible constant RBE", ["--set", "output.rbe=11"], None, "output.rbe"),
    ("dose grid on a water phantom", ["--set", "phantom.dose_voxel_mm=2.0"], None, "phantom.dose_voxel_mm"),
    ("CT folder that does not exist", ["--set", 'phantom.type="ct"', "--set", 'phantom.ct_dir="no/such/dir"'],
     None, "no/such/dir"),
    ("slab with negative thickness", [], BASE.replace('type = "water"', 'type = "slabs"\nlayers = '
                                                     '[{material = "water", thickness_mm = -20}]'), "thickness"),
    ("no [beam] or [plan]", [], BASE.split("[beam]")[0] + "[output]\nplot = false\n", "[beam]"),
    ("malformed --set", ["--set", "run.primaries"], None, "--set"),
    ("config file not found", ["@missing"], None, "not found"),
    ("invalid TOML", [], "[run\nprimaries = 10\n", "TOML"),
    ("zero workers", ["--workers", "0"], None, "--workers"),
]


def case_argv(args: list[str], text: str | None, tmp: Path, i: int) -> list[str]:
    cfg = tmp / f"case{i:02d}.toml"
    cfg.write_text(BASE if text is None else text)
    if args[:1] == ["@missing"]:
        return ["run", str(tmp / "missing.toml"), "--out", str(tmp / "out.h5")]
    return ["run", str(cfg), "--out", str(tmp / f"out{i:02d}.h5"), "--quiet", "--no-checkpoint", *args]


def run_cli(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "mcproton.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    return proc.returncode, (proc.stderr.strip().splitlines() or [""])[-1]


def table() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i, (case, args, text, _must) in enumerate(CASES):
            rc, msg = run_cli(case_argv(args, text, tmp, i))
            msg = msg.replace(str(tmp), "$TMP")
            shown = " ".join(a if " " not in a else repr(a) for a in args if a != "@missing")
            if text is not None:
                shown = (shown + " (config edited)").strip()
            if args[:1] == ["@missing"]:
                shown = "missing config path"
            rows.append(f"| {case} | `{shown}` | {rc} | {msg.replace('|', '&#124;')} |")
    head = ("# Bad inputs and their messages\n\n"
            "Generated by `python tests/run/make_bad_input_table.py` (do not edit by hand): each row runs\n"
            "`mcproton run CONFIG --out OUT --quiet --no-checkpoint ARGS` on a small water-pencil config\n"
            "(the config in the script) with one bad input.  Every case stops before any transport with exit\n"
            "status 2 and one message naming the key and the fix.\n\n"
            "| case | arguments | exit | message |\n|---|---|---|---|\n")
    return head + "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    text = table()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date; run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC} ({len(CASES)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

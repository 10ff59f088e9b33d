"""scripts/gpu_check.sh runs the GPU tests from a copy of a few folders of the checkout (not mcproton/, which must
not shadow the installed wheel).  A test module that reads a file outside that copy when it is collected stops the
whole `pytest -m gpu` run with a collection error: on 2026-12-05 the dry run found tests/test_docs_commands.py
reading docs/ and phantoms/README.md, which were not copied, so no GPU test would have run on the device."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _copied() -> set[str]:
    text = (ROOT / "scripts" / "gpu_check.sh").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("cp -r") and '"$WORK/repo/"' in ln)
    return set(re.findall(r'"\$REPO/([^"/]+)"', line))


def test_the_files_read_at_collection_are_in_the_gpu_checks_copy():
    sys.path.insert(0, str(ROOT / "tests"))
    import test_docs_commands as t

    copied = _copied()
    assert {"tests", "examples", "scripts"} <= copied
    needed = {p.relative_to(ROOT).parts[0] for p in [*t.DOCS, *t.EXAMPLES]}
    assert needed <= copied, f"gpu_check.sh must copy {sorted(needed - copied)} beside the tests"
    assert "mcproton" not in copied       # the installed wheel, not the checkout, is what the device tests


# ---------------------------------------------------------------- the one GPU try's plan (gputry audit 2026-12-06)
def _script(name: str) -> str:
    return (ROOT / "scripts" / name).read_text()


def _steps(text: str) -> list[str]:
    """The step names of gpu_check.sh in the order they run (run_step NAME ..., loops and functions by their
    prefix: "bench$e" -> "bench", "headct_$1" -> "headct_")."""
    return [re.sub(r'\$\{?\w+\}?.*', "", m.group(1).strip('"'))
            for m in re.finditer(r'run_step\s+("?[\w$]+"?)', text)]


def test_gpu_check_runs_the_closing_figures_first_and_the_cpu_figures_off_the_device():
    steps = _steps(_script("gpu_check.sh"))
    text = _script("gpu_check.sh")
    # the head CT runs are a function (blocks, check, full): its calls stand for them in the order
    order = [s for s in steps if s != "headct_"]
    calls = text.index("  headct blocks"), text.index("run_step check_headct"), text.index("  headct full")
    assert calls == tuple(sorted(calls)), "head CT on blocks, then its check, then full resolution"
    assert calls[2] < text.index("run_step check_plan03") < text.index("run_step check_opentps"), \
        "the head-CT figures (issues 15 and 13) come before the plan03 and OpenTPS checks (F7)"
    assert "pytest_simt" not in order, "a CPU test on the device's time (F4)"
    for must in ("baseline_bench", "repeat", "ncu_2e6"):
        assert must in order, f"gpu_check.sh has no {must} step"
    assert order.index("bench") < order.index("baseline_bench") < order.index("repeat") < order.index("ncu_2e6")
    assert order[-1] == "ncu_2e6", "the optional second Nsight Compute pass comes last (F5)"
    # the SIMT proxy on the device: one cross-check unless --simt-all; the rest from gpu_wheels.sh --simt
    assert "simt_cpu.jsonl" in text and "--simt-all" in text and "simt_cpu.jsonl" in _script("gpu_wheels.sh")


def test_gpu_tests_run_from_the_listed_files_that_gpu_wheels_writes_by_collection():
    """F8: the device collected ~3,300 tests to run 30; gpu_wheels.sh lists the files with -m gpu tests (pytest's own
    collection here: complete by construction) and gpu_check.sh gives pytest those files."""
    wheels, check = _script("gpu_wheels.sh"), _script("gpu_check.sh")
    assert re.search(r"pytest .*--collect-only -m gpu tests", wheels) and "gpu_wheels/gpu_tests.txt" in wheels
    line = next(ln for ln in check.splitlines() if ln.startswith("run_step pytest_gpu"))
    assert line.rstrip().endswith('-m gpu "${GPU_TESTS[@]}"'), line
    assert 'mapfile -t GPU_TESTS < "$REPO/gpu_wheels/gpu_tests.txt"' in check


def test_budget_and_timeout_advice_agree_everywhere():
    """F9: one budget B (the script's default) and timeout_s >= B + 50 in the scripts, README and BENCHMARKS."""
    check = _script("gpu_check.sh")
    b = int(re.search(r'BUDGET="\$\{MCPROTON_GPU_CHECK_BUDGET_S:-(\d+)\}"', check).group(1))
    texts = {p: (ROOT / p).read_text() for p in ("README.md", "BENCHMARKS.md", "scripts/gpu_check.sh",
                                                 "scripts/gpu_wheels.sh")}
    for p, t in texts.items():
        for v in re.findall(r"MCPROTON_GPU_CHECK_BUDGET_S=(\d+)", t):
            assert int(v) == b, f"{p} advises a budget of {v} s, the script's default is {b} s"
        for v in re.findall(r"timeout_s[ =:]*(\d+)", t):
            assert int(v) >= b + 50, f"{p}: timeout_s {v} < budget {b} + 50 (the log's end would be lost)"
    assert any(re.search(r"timeout_s[ =:]*\d+", t) for p, t in texts.items() if p.endswith(".md")), \
        "README or BENCHMARKS must give the device call's timeout_s"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout


def test_head_phantom_is_laid_out_from_a_snapshot_whose_rd_objects_are_absent(tmp_path):
    """F3: the stored nbassler/dicomexport snapshot lacks its RD files' objects: archiving the whole folder fails
    (tar: Unexpected EOF, no RS file), the pathspec of scripts/headphantom_from_git.sh takes CT and RS only."""
    repo = tmp_path / "snap"
    d = repo / "res" / "test_studies" / "DCPT_headphantom"
    d.mkdir(parents=True)
    for name in ("CT.1.dcm", "CT.2.dcm", "RS.9.dcm", "RD.5.dcm"):
        (d / name).write_bytes(name.encode() * 100)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "s")
    rd = _git(repo, "rev-parse", "HEAD:res/test_studies/DCPT_headphantom/RD.5.dcm").strip()
    (repo / ".git" / "objects" / rd[:2] / rd[2:]).unlink()     # as in the stored snapshot
    whole = subprocess.run(["git", "-C", str(repo), "archive", "HEAD", "res/test_studies/DCPT_headphantom"],
                           capture_output=True)
    assert whole.returncode != 0, "the fixture must reproduce the snapshot's absent RD object"
    assert "archive HEAD res/test_studies/DCPT_headphantom |" not in _script("gpu_wheels.sh")
    dest = tmp_path / "hp"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "headphantom_from_git.sh"), str(repo), str(dest)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (dest / "ct").iterdir()) == ["CT.1.dcm", "CT.2.dcm"]
    assert (dest / "RS_headphantom.dcm").read_bytes() == b"RS.9.dcm" * 100
    assert "invalid object" not in r.stderr, r.stderr
    assert "HEADPHANTOM_GIT" in _script("gpu_wheels.sh")


def test_repeat_check_compares_bitwise_and_passes_on_the_cpu():
    """F2: scripts/gpu_repeat_check.py (gpu_check.sh's step "repeat"): the same seed twice, 2 against 7 batches and a
    run interrupted and resumed give bitwise the same dose, another seed another (on the CPU here; the GPU there)."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_repeat_check.py"), "--backend", "cpu",
                        "--primaries", "3000"], capture_output=True, text=True, timeout=300)
    res = json.loads(r.stdout.strip().splitlines()[-1])["repeat"]
    assert r.returncode == 0 and res["passed"], (res, r.stderr[-2000:])
    for k in ("same_seed_twice", "batches_7", "resumed_4_batches", "other_seed_differs"):
        assert res[k] is True, k

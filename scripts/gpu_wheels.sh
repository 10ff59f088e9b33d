#!/usr/bin/env bash
# The wheels the GPU machine lacks, for scripts/gpu_check.sh: our own (built from this working tree), pydicom and
# pymedphys with its requirements (pure Python).  The H200 image already has Python 3.12, numpy, scipy, matplotlib,
# h5py, pytest, pytest-benchmark and CuPy, and no network.  Run here before the device call and carry the folder:
#   bash scripts/gpu_wheels.sh [--no-headphantom] [--no-baseline] [--simt]
#       -> gpu_wheels/ (~12 MB, ~20 MB with the head phantom; ignored by git; the carry limit is 64 MiB)
#   device call: command "MCPROTON_GPU_CHECK_BUDGET_S=450 bash scripts/gpu_check.sh", carry ["gpu_wheels"],
#   timeout_s 500 (the budget + 50; scripts/gpu_check.sh's header says why)
# Besides the wheels it writes:
#   gpu_wheels/baseline/  the wheel of the code measured on the H200 on 2026-12-04 (BASELINE_COMMIT, default
#     070242c, kernel 133b5b6f; --no-baseline: none), benched beside today's on the same card (gputry audit F1);
#   gpu_wheels/gpu_tests.txt  the test files that hold `gpu` tests (pytest --collect-only -m gpu here), so that the
#     device collects those files only (F8);
#   gpu_wheels/headphantom.tar.xz  the DCPT head phantom (below);
#   gpu_wheels/simt_cpu.jsonl  with --simt: the SIMT-efficiency proxy at 70/150/230 MeV and 2e5/2e6 histories
#     (mcproton bench --simt --backend cpu, modelling the H200's and H100 SXM's 132 SMs): step counts, the same on
#     any machine, so the device does not spend its time on them (F4); ~3 min here on 2 cores.
# Why a wheel: the package maps kernels/, phantoms/ and validation/ into mcproton.* at install time
# (pyproject [tool.setuptools.package-dir]), so `PYTHONPATH=.` on a checkout cannot import mcproton.kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
HEADPHANTOM=1 BASELINE=1 SIMT=0
for a in "$@"; do
  case "$a" in
    --no-headphantom) HEADPHANTOM=0 ;;
    --no-baseline) BASELINE=0 ;;
    --simt) SIMT=1 ;;
    *) echo "gpu_wheels.sh: unknown argument $a (give --no-headphantom, --no-baseline or --simt)" >&2; exit 2 ;;
  esac
done
rm -rf gpu_wheels
mkdir -p gpu_wheels
# a fresh build: setuptools never removes from build/ a module deleted from the source, which then stays in every
# later wheel (gpuread audit 2026-12-06, F2)
rm -rf build mcproton.egg-info
"$PY" -m pip wheel -q --no-deps -w gpu_wheels .
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d gpu_wheels pydicom
# pymedphys (the check's gamma; pure Python) and its two pure-Python requirements: gpu_check.sh times
# `mcproton check`, which refuses at once without it (before 2026-12-05 its gamma step failed after the MC)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d gpu_wheels \
  "pymedphys==0.41.0" tomlkit typing-extensions
# the DCPT head phantom (CT series + RT Struct of nbassler/dicomexport 7397eb6, MIT licence; ~92 MB,
# 8.6 MB as .tar.xz) for the head-CT timings of gpu_check.sh (issue 15: a head CT plan below 10 s on blocks and
# 20 s at full resolution; issue 13: a head plan checked within 30 s).  Where it is: HEADPHANTOM_DIR (default
# /tmp/headphantom, laid out as examples/headphantom_rs.toml says: ct/CT.*.dcm and RS_headphantom.dcm); with
# HEADPHANTOM_GIT=<the snapshot's git directory> this script lays it out there first
# (scripts/headphantom_from_git.sh).  Without it this script stops, unless given --no-headphantom (gpu_check.sh
# then skips those runs).
HP="${HEADPHANTOM_DIR:-/tmp/headphantom}"
if [ "$HEADPHANTOM" = 1 ] && [ -n "${HEADPHANTOM_GIT:-}" ] && ! { [ -d "$HP/ct" ] && [ -f "$HP/RS_headphantom.dcm" ]; }; then
  bash scripts/headphantom_from_git.sh "$HEADPHANTOM_GIT" "$HP"
fi
if [ "$HEADPHANTOM" = 0 ]; then
  echo "gpu_wheels.sh: no head phantom (--no-headphantom): gpu_check.sh will skip the head-CT runs"
elif [ -d "$HP/ct" ] && [ -f "$HP/RS_headphantom.dcm" ]; then
  tar -C "$HP" -cf - ct RS_headphantom.dcm | xz -T0 -6 > gpu_wheels/headphantom.tar.xz
else
  # the head-CT runs are issue 15's main end-to-end figures and the device time is one try: stop instead of going on
  # without them (gpuread audit 2026-12-06, F3)
  cat >&2 << EOF_HP
gpu_wheels.sh: no head phantom in $HP: gpu_check.sh would skip the head-CT runs (issue 15's 10 s / 20 s figures).
  Get it with the fetch tool (fetch github:nbassler/dicomexport), then lay it out from that snapshot with
    HEADPHANTOM_GIT=/work/.mirror/nbassler+dicomexport/repo bash scripts/gpu_wheels.sh
  (scripts/headphantom_from_git.sh takes the CT.*.dcm and RS.*.dcm files of res/test_studies/DCPT_headphantom by a
  pathspec: the stored snapshot lacks the RD files' objects, so archiving the whole folder fails), or set
  HEADPHANTOM_DIR to a folder laid out as examples/headphantom_rs.toml says; or run
  'bash scripts/gpu_wheels.sh --no-headphantom' to go on without them.
EOF_HP
  exit 1
fi
# the "before" of the same card (gputry audit F1): the code the 2026-12-04 H200 figures are of, in a subfolder
# (gpu_check.sh installs gpu_wheels/*.whl, and two mcproton-0.1.0 wheels in one folder would conflict)
BASE="${BASELINE_COMMIT:-070242c}"
if [ "$BASELINE" = 1 ]; then
  if git rev-parse -q --verify "$BASE^{commit}" > /dev/null; then
    bt=$(mktemp -d)
    git archive "$BASE" | tar -x -C "$bt"
    "$PY" -m pip wheel -q --no-deps -w gpu_wheels/baseline "$bt"
    rm -rf "$bt"
    git rev-parse "$BASE" > gpu_wheels/baseline/SOURCE_COMMIT
  else
    echo "gpu_wheels.sh: no commit $BASE here (a shallow clone?): no baseline wheel; give BASELINE_COMMIT or --no-baseline" >&2
    exit 1
  fi
fi
# the test files holding `gpu` tests (the conftest's cuda backend parameter and @pytest.mark.gpu), for the device's
# pytest: it then collects ~9 files instead of ~3,300 tests (gputry audit F8); gpu_check.sh runs `-m gpu` on them
if ! "$PY" -m pytest -q -p no:cacheprovider --collect-only -m gpu tests > gpu_wheels/collect.txt 2>&1; then
  tail -30 gpu_wheels/collect.txt >&2
  echo "gpu_wheels.sh: pytest --collect-only -m gpu tests failed (above): the list of gpu test files would be incomplete" >&2
  exit 1
fi
sed -n 's/::.*//p' gpu_wheels/collect.txt | sort -u > gpu_wheels/gpu_tests.txt
rm gpu_wheels/collect.txt
[ -s gpu_wheels/gpu_tests.txt ] || { echo "gpu_wheels.sh: pytest --collect-only -m gpu found no gpu test file" >&2; exit 1; }
# the SIMT proxy here (gputry audit F4), from the wheel just built, installed into a temporary folder
if [ "$SIMT" = 1 ]; then
  st=$(mktemp -d)
  "$PY" -m pip install -q --no-deps --no-index --target "$st/site" gpu_wheels/*.whl
  for n in ${MCPROTON_SIMT_N:-200000 2000000}; do
    for e in 70 150 230; do
      echo "gpu_wheels.sh: SIMT proxy $e MeV, $n histories" >&2
      (cd "$st" && PYTHONPATH="$st/site" "$PY" -P -m mcproton.cli bench --simt --backend cpu --energy "$e" \
        --primaries "$n" --json) >> gpu_wheels/simt_cpu.jsonl
    done
  done
  rm -rf "$st"
fi
# what the wheel was built from, so that gpu_check.sh can warn about a stale wheel ("-dirty": with uncommitted
# changes, which the wheel holds)
src=$(git rev-parse HEAD 2>/dev/null || echo unknown)
[ "$src" != unknown ] && [ -n "$(git status --porcelain -- mcproton kernels phantoms validation pyproject.toml 2>/dev/null)" ] \
  && src="$src-dirty"
echo "$src" > gpu_wheels/SOURCE_COMMIT
ls -l gpu_wheels
du -sh gpu_wheels

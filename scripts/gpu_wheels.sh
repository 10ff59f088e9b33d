#!/usr/bin/env bash
# The wheels the GPU machine lacks, for scripts/gpu_check.sh: our own (built from this working tree), pydicom and
# pymedphys with its requirements (pure Python).  The H200 image already has Python 3.12, numpy, scipy, matplotlib,
# h5py, pytest, pytest-benchmark and CuPy, and no network.  Run here before the device call and carry the folder:
#   bash scripts/gpu_wheels.sh          # [--no-headphantom] -> gpu_wheels/ (~11 MB, ~20 MB with the head phantom; ignored by git)
#   device call: command "bash scripts/gpu_check.sh", carry ["gpu_wheels"]
# Why a wheel: the package maps kernels/, phantoms/ and validation/ into mcproton.* at install time
# (pyproject [tool.setuptools.package-dir]), so `PYTHONPATH=.` on a checkout cannot import mcproton.kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
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
# 20 s at full resolution).  Where it is: HEADPHANTOM_DIR (default /tmp/headphantom, laid out as
# examples/headphantom_rs.toml says: ct/CT.*.dcm and RS_headphantom.dcm).  Without it this script stops, unless
# given --no-headphantom (gpu_check.sh then skips those runs).
HP="${HEADPHANTOM_DIR:-/tmp/headphantom}"
if [ -d "$HP/ct" ] && [ -f "$HP/RS_headphantom.dcm" ]; then
  tar -C "$HP" -cf - ct RS_headphantom.dcm | xz -T0 -6 > gpu_wheels/headphantom.tar.xz
elif [ "${1:-}" = --no-headphantom ]; then
  echo "gpu_wheels.sh: no head phantom (--no-headphantom): gpu_check.sh will skip the head-CT runs"
else
  # the head-CT runs are issue 15's main end-to-end figures and the device time is one try: stop instead of going on
  # without them (gpuread audit 2026-12-06, F3)
  cat >&2 << EOF_HP
gpu_wheels.sh: no head phantom in $HP: gpu_check.sh would skip the head-CT runs (issue 15's 10 s / 20 s figures).
  Get it with the fetch tool (fetch github:nbassler/dicomexport), then copy from that snapshot's
  res/test_studies/DCPT_headphantom/ the CT.*.dcm files into $HP/ct/ and RS.*.dcm as $HP/RS_headphantom.dcm
  (git -C <snapshot> archive HEAD res/test_studies/DCPT_headphantom | tar -x; examples/headphantom_rs.toml says
  the layout), or set HEADPHANTOM_DIR; or run 'bash scripts/gpu_wheels.sh --no-headphantom' to go on without them.
EOF_HP
  exit 1
fi
# what the wheel was built from, so that gpu_check.sh can warn about a stale wheel ("-dirty": with uncommitted
# changes, which the wheel holds)
src=$(git rev-parse HEAD 2>/dev/null || echo unknown)
[ "$src" != unknown ] && [ -n "$(git status --porcelain -- mcproton kernels phantoms validation pyproject.toml 2>/dev/null)" ] \
  && src="$src-dirty"
echo "$src" > gpu_wheels/SOURCE_COMMIT
ls -l gpu_wheels
du -sh gpu_wheels

#!/usr/bin/env bash
# The wheels the GPU machine lacks, for scripts/gpu_check.sh: our own (built from this working tree), pydicom and
# pymedphys with its requirements (pure Python).  The H200 image already has Python 3.12, numpy, scipy, matplotlib,
# h5py, pytest, pytest-benchmark and CuPy, and no network.  Run here before the device call and carry the folder:
#   bash scripts/gpu_wheels.sh          # -> gpu_wheels/ (~11 MB, ~20 MB with the head phantom; ignored by git)
#   device call: command "bash scripts/gpu_check.sh", carry ["gpu_wheels"]
# Why a wheel: the package maps kernels/, phantoms/ and validation/ into mcproton.* at install time
# (pyproject [tool.setuptools.package-dir]), so `PYTHONPATH=.` on a checkout cannot import mcproton.kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
rm -rf gpu_wheels
mkdir -p gpu_wheels
"$PY" -m pip wheel -q --no-deps -w gpu_wheels .
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d gpu_wheels pydicom
# pymedphys (the check's gamma; pure Python) and its two pure-Python requirements: gpu_check.sh times
# `mcproton check`, which refuses at once without it (before 2026-12-05 its gamma step failed after the MC)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d gpu_wheels \
  "pymedphys==0.41.0" tomlkit typing-extensions
# optional: the DCPT head phantom (CT series + RT Struct of nbassler/dicomexport 7397eb6, MIT licence; ~92 MB,
# 8.6 MB as .tar.xz) for the head-CT timings of gpu_check.sh (issue 15: a head CT plan below 10 s on blocks and
# 20 s at full resolution).  Where it is: HEADPHANTOM_DIR (default /tmp/headphantom, laid out as
# examples/headphantom_rs.toml says: ct/CT.*.dcm and RS_headphantom.dcm).  Without it gpu_check.sh skips those runs.
HP="${HEADPHANTOM_DIR:-/tmp/headphantom}"
if [ -d "$HP/ct" ] && [ -f "$HP/RS_headphantom.dcm" ]; then
  tar -C "$HP" -cf - ct RS_headphantom.dcm | xz -T0 -6 > gpu_wheels/headphantom.tar.xz
else
  echo "gpu_wheels.sh: no head phantom in $HP (see examples/headphantom_rs.toml); gpu_check.sh will skip the head-CT runs"
fi
# what the wheel was built from, so that gpu_check.sh can warn about a stale wheel
git rev-parse HEAD > gpu_wheels/SOURCE_COMMIT 2>/dev/null || echo unknown > gpu_wheels/SOURCE_COMMIT
ls -l gpu_wheels
du -sh gpu_wheels

#!/usr/bin/env bash
# Wheels the GPU machine lacks (it has CuPy, numpy, h5py, pytest under Python 3.12 and no network), for
# scripts/gpu_check.sh: run here before the device call and carry the folder (device tool: carry=["gpu_wheels"]).
# ~57 MB (numpy dropped: preinstalled there; the carry limit is 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu_wheels
python3 -m pip download -q --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d gpu_wheels pydicom matplotlib scipy
rm -f gpu_wheels/numpy-*.whl gpu_wheels/tzdata-*.whl
du -sh gpu_wheels

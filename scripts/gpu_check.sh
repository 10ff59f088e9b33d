#!/usr/bin/env bash
# One prepared GPU check for a session that is lent a GPU machine (see README "Performance"):
#   GPU test marker, the benchmark at several energies, a CPU/GPU agreement run, the cost of streaming +
#   checkpointing, and the quick validation on the GPU.  Writes everything under ${OUT:-gpu_out}/ (logs, bench JSON, validation summary).
# Usage on the device machine (CuPy, numpy, h5py, pytest preinstalled; carry pydicom etc. as wheels):
#   PYTHONPATH=. bash scripts/gpu_check.sh
set -uo pipefail
out="${OUT:-gpu_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c "import mcproton.cli as c; c.main(['info', '--json'])" | tee "$out/info.json"
python -m pytest -q -m gpu tests/kernels tests/engine tests/physics 2>&1 | tee "$out/pytest_gpu.log"
for e in 70 150 230; do
  python -c "import mcproton.cli as c; c.main(['bench', '--backend', 'cuda', '--energy', '$e', '--primaries', '10000000', '--json'])" \
    | tee -a "$out/bench_cuda.jsonl"
done
python -c "import mcproton.cli as c; c.main(['bench', '--backend', 'cpu', '--energy', '150', '--primaries', '200000', '--json'])" \
  | tee -a "$out/bench_cpu.jsonl"
# issue "long runs": streamed batches + checkpoints vs one launch, with the default 60 s checkpoint interval and
# with one every 10 s (the per-batch work and the checkpoints cost a fixed time each, so small batches cost more).
# Sized by time (--seconds: primaries = what one launch does in that time), so that an unknown GPU speed cannot
# make this step overrun the device budget: 10 batches in ~20 s, then 20 smaller batches in ~10 s.
for iv in 60 10; do
  python scripts/overhead_check.py --backend cuda --seconds 20 --batches 10 --interval $iv \
    | tee -a "$out/overhead_cuda.jsonl"
done
python scripts/overhead_check.py --backend cuda --seconds 10 --batches 20 --interval 60 \
  | tee -a "$out/overhead_cuda.jsonl"
python -c "import mcproton.cli as c, sys; sys.exit(c.main(['validate', '--quick', '--backend', 'cuda', '--out', '$out/validation']))" \
  2>&1 | tail -20 | tee "$out/validate.log"

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
# issue "long runs": streamed batches + checkpoints vs one launch.  The default GPU batch (10^7 histories; 10
# batches) with the default 60 s checkpoint interval and with one every 10 s, then 10^6-history batches (the
# per-batch host work - copying and accumulating the tallies - is fixed per batch, so small batches cost more).
for iv in 60 10; do
  python scripts/overhead_check.py --backend cuda --primaries 100000000 --batches 10 --interval $iv \
    | tee -a "$out/overhead_cuda.jsonl"
done
python scripts/overhead_check.py --backend cuda --primaries 20000000 --batches 20 --interval 60 \
  | tee -a "$out/overhead_cuda.jsonl"
python -c "import mcproton.cli as c, sys; sys.exit(c.main(['validate', '--quick', '--backend', 'cuda', '--out', '$out/validation']))" \
  2>&1 | tail -20 | tee "$out/validate.log"

#!/usr/bin/env bash
# One prepared GPU check for a session that is lent a GPU machine (see README "Performance"):
#   GPU test marker, the benchmark at several energies, a CPU/GPU agreement run, the cost of streaming +
#   checkpointing, and the quick validation on the GPU.  Writes everything under ${OUT:-gpu_out}/ (logs, bench JSON, validation summary).
# Usage: here first `bash scripts/gpu_wheels.sh` (pydicom, matplotlib, scipy as wheels, ~57 MB), then on the
# device machine (CuPy, numpy, h5py, pytest preinstalled) with carry=["gpu_wheels"]:
#   PYTHONPATH=. bash scripts/gpu_check.sh
# The steps run in order of importance; each writes under $out as it finishes, so a run cut short by the
# device's time limit still returns what it did.  The profiling at the end is optional (Firecracker machines).
set -uo pipefail
out="${OUT:-gpu_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ -d gpu_wheels ]; then
  python -m pip install -q --no-index --find-links gpu_wheels pydicom matplotlib scipy 2>&1 | tail -3 | tee "$out/pip.log"
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
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
# Occupancy experiments (same case as the bench at 150 MeV): a register cap (more blocks per SM, some spills)
# and other block sizes; each compiles the kernel again.  Compare protons_per_second with bench_cuda.jsonl.
for knob in "MCPROTON_CUDA_MAXREG=128" "MCPROTON_CUDA_MAXREG=96" "MCPROTON_CUDA_BLOCK=64" "MCPROTON_CUDA_BLOCK=256"; do
  env "$knob" python -c "import mcproton.cli as c; c.main(['bench', '--backend', 'cuda', '--energy', '150', '--primaries', '10000000', '--json'])" \
    | python -c "import json, sys; d = json.load(sys.stdin); d['knob'] = '$knob'; print(json.dumps(d))" \
    | tee -a "$out/bench_cuda_tuning.jsonl"
done
# Profile before guessing (optional: ncu and compute-sanitizer work on Firecracker machines, not on gVisor).
# One timed bench launch of 2e5 histories at 150 MeV (the warm-up launch is skipped); clocks left alone.
if command -v ncu >/dev/null 2>&1; then
  timeout 240 ncu --clock-control none --kernel-name mcp_transport --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section SchedulerStats \
    --section WarpStateStats --section MemoryWorkloadAnalysis \
    python -c "import mcproton.cli as c; c.main(['bench', '--backend', 'cuda', '--energy', '150', '--primaries', '200000', '--json'])" \
    > "$out/ncu_transport.txt" 2>&1 || echo "ncu failed (see ncu_transport.txt)"
fi
if command -v compute-sanitizer >/dev/null 2>&1; then
  timeout 180 compute-sanitizer --tool memcheck \
    python -c "import mcproton.cli as c; c.main(['bench', '--backend', 'cuda', '--energy', '150', '--primaries', '20000', '--json'])" \
    > "$out/memcheck.txt" 2>&1 || echo "compute-sanitizer failed (see memcheck.txt)"
  tail -3 "$out/memcheck.txt"
fi

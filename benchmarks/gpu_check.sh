#!/usr/bin/env bash
# The one-GPU check: small-preset pre-training tokens/s and MFU (bf16), the rollout sampler against HF generate,
# evaluation throughput, one RL step's time and peak memory, written to results/gpu.md with provenance.
# Sized to finish within 8 minutes on one current GPU (the hard limit below stops it at 8).
#   benchmarks/gpu_check.sh                   # on a machine with one GPU, from any directory
#   benchmarks/gpu_check.sh --preset smoke    # the same code on a CPU in seconds (writes results/gpu.md too)
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
exec timeout 480 python -m benchmarks.gpu_check "$@"

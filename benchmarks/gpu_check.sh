#!/usr/bin/env bash
# Everything issue 12 asks of a GPU, in one call of under 10 minutes (a session is lent at most
# 15 minutes of one H200, starts included). Run from the repository root on the GPU machine:
#
#     bash benchmarks/gpu_check.sh            # writes its tables to $OUT (or ./gpu_check_out)
#
# 1. the CUDA tests of the suite (they skip on a CPU-only machine);
# 2. the single-GPU step at (100,000, 512) and (1,000,000, 512), float32 rows with TF32 tile
#    products and float32 accumulation, as a ratio to its matrix products at the GEMM rate
#    measured in the same run, with peak memory;
# 3. a 3-minute duel at (100,000, 512): ebv_gen.generate against the published algorithm
#    (threshold descent, best threshold by bisection) given the same 180 s.
set -euo pipefail
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout 90 "$py" -m pytest -q -x -k "cuda or device" tests/test_coherence.py tests/test_generate.py \
    tests/test_catalog.py tests/test_heads.py tests/test_amp.py 2>&1 | tail -5 | tee "$out/tests.txt"
timeout 100 "$py" benchmarks/bench_steps.py --device cuda --tf32 --steps 2 \
    --sizes 100000x512 1000000x512 2>&1 | tee "$out/steps.md"
timeout 400 "$py" benchmarks/bench_generate.py --device cuda --duel 100000x512 --budget 180 \
    2>&1 | tee "$out/duel.md"

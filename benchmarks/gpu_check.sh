#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script for a lent GPU machine (BENCHMARKS.md, "GPU"):
#   1. the LLM's GPU test (bf16 training and 4-bit QLoRA) and the bf16 storage test, on the GPU;
#   2. emoreg's trainer on a randomly initialised Llama-2-7B-shaped model: tokens/s, MFU, memory;
#   3. the same beside the plain Trainer recipe in fp32 (last: it may run out of memory).
# It needs only torch, transformers, peft and accelerate (no data, no model files); bitsandbytes
# for the 4-bit path may travel as a wheel in .whl/ (see BENCHMARKS.md).
# Usage, in the repository root of the GPU machine:  bash benchmarks/gpu_check.sh [OUTDIR]
set -uo pipefail
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$out/gpu.csv"
status=0
python3 -m pytest -q -p no:cacheprovider tests/test_llm.py -k "gpu or bf16_training" 2>&1 | tee "$out/pytest.log" || status=1
python3 benchmarks/llm_speed.py random --shape 7b --steps 30 --batch 8 --max-tokens 512 2>&1 \
    | tee "$out/random-7b.log" || status=1
python3 benchmarks/llm_speed.py random --shape 7b --steps 20 --batch 8 --max-tokens 512 --plain 2>&1 \
    | grep -v "^{'loss'" | tee "$out/random-7b-plain.log" || status=1
exit $status

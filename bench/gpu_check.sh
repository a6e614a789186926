#!/usr/bin/env bash
# Everything that needs a real GPU, in one go (under 8 minutes): install rnnkit from this
# tree, run the CUDA tests on the device, then time rnnkit's CUDA backend against PyTorch's
# cuDNN (bench/gpu_bench.py). All output goes to one file, $OUT/gpu_check.txt (or
# ./gpu_check.txt), which starts with the GPU's name.
#
#   bash bench/gpu_check.sh              # on a GPU machine (no network needed)
#   bash bench/gpu_check.sh --dry-run    # anywhere: the CUDA simulator, tiny configs, no install
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python}
RESULT="${OUT:-.}/gpu_check.txt"
mkdir -p "$(dirname "$RESULT")"
: > "$RESULT"
say() { echo "$@" | tee -a "$RESULT"; }
run() {   # run LIMIT_SECONDS CMD...: output into the file, one line with its status
    local limit=$1; shift
    local started=$SECONDS
    timeout "$limit" "$@" >> "$RESULT" 2>&1
    local rc=$?
    say "== exit $rc after $((SECONDS - started)) s: $(printf '%q ' "$@")"
}

say "== rnnkit GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ $DRY == 1 ]]; then
    say "== dry run: Numba's CUDA simulator, tiny configs, PyTorch on the CPU; nothing installed"
    export NUMBA_ENABLE_CUDASIM=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    run 300 "$PY" -m pytest -q -x tests/test_cuda_kernels.py -k "philox or long_rows"
    run 300 "$PY" bench/gpu_bench.py --dry-run
else
    command -v nvidia-smi > /dev/null && nvidia-smi -L >> "$RESULT" 2>&1
    run 60 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
    # compile errors and wrong numbers first: the oracle, gradients, the persistent kernel
    # across blocks, then the PTX list
    run 180 "$PY" -m pytest -q --maxfail=10 -p no:cacheprovider tests/test_cuda_device.py \
        tests/test_backend.py -k cuda
    run 200 "$PY" bench/gpu_bench.py --budget 150
fi
say "== done in ${SECONDS} s; results in $RESULT"

#!/usr/bin/env bash
# Everything that needs a real GPU, in one go, in under 8 minutes, offline: install rnnkit
# from this tree (or, when the install fails, run it from the tree), run the GPU-only tests
# with skips shown, time rnnkit's CUDA backend against PyTorch's cuDNN, fp32 and tf32 columns
# (bench/gpu_bench.py), then every backend test on the device as time allows. Every step has
# its own time limit; a step that fails or runs out of time is one line and the next runs. Output: $OUT/gpu_check.txt (or
# ./gpu_check.txt), the GPU's name first; the benchmark's table alone in gpu_table.txt beside it.
#
#   bash bench/gpu_check.sh              # on a GPU machine (no network needed)
#   bash bench/gpu_check.sh --dry-run    # anywhere: the CUDA simulator, tiny configs
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python3}
command -v "$PY" > /dev/null || PY=python
DIR="${OUT:-.}"
RESULT="$DIR/gpu_check.txt"
TABLE="$DIR/gpu_table.txt"
LIMIT=${GPU_CHECK_SECONDS:-470}          # the whole check; each step gets what is left, capped
mkdir -p "$DIR"
: > "$RESULT"
say() { echo "$@" | tee -a "$RESULT"; }
run() {   # run SECONDS CMD...: output into the file, one line with its status
    local want=$1; shift
    local left=$((LIMIT - SECONDS - 5))
    local limit=$(( want < left ? want : left ))
    if (( limit < 10 )); then
        say "== skipped (the check's ${LIMIT} s are spent): $(printf '%q ' "$@")"
        return 1
    fi
    local started=$SECONDS
    timeout -k 5 "$limit" "$@" >> "$RESULT" 2>&1
    local rc=$?
    (( rc == 124 || rc == 137 )) && say "== timed out after ${limit} s"
    say "== exit $rc after $((SECONDS - started)) s: $(printf '%q ' "$@")"
    return $rc
}

say "== rnnkit GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# the tree's own code either way (an editable install points here too); a fresh kernel cache
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$(mktemp -d)}"
if [[ $DRY == 1 ]]; then
    say "== dry run: Numba's CUDA simulator, tiny configs, PyTorch on the CPU if installed"
    export NUMBA_ENABLE_CUDASIM=1
    run 300 "$PY" -m pytest -rs -p no:cacheprovider tests/test_cuda_device.py \
        tests/test_cuda_kernels.py -k "philox or long_rows or launches or device"
    run 240 "$PY" bench/gpu_bench.py --dry-run --table "$TABLE"
else
    command -v nvidia-smi > /dev/null && nvidia-smi -L >> "$RESULT" 2>&1
    "$PY" -c "import numba, numba_cuda, torch, cupy; print('numba', numba.__version__, \
'numba-cuda', numba_cuda.__version__, 'torch', torch.__version__, 'cupy', cupy.__version__)" \
        >> "$RESULT" 2>&1
    run 45 "$PY" -m pip install --no-deps --no-build-isolation -q -e . ||
        say "== the install failed (see above): running from the tree (PYTHONPATH)"
    # what only a GPU shows: the persistent kernel across blocks, the opt-in and chunked
    # shapes, cuBLAS against the tiled kernel, TF32, repeat bits, launches and readbacks
    run 150 "$PY" -m pytest -rs --maxfail=10 -p no:cacheprovider tests/test_cuda_device.py \
        tests/test_cuda_plan.py
    # the issue's targets against cuDNN (no new config after 110 s)
    run 180 "$PY" bench/gpu_bench.py --budget 110 --table "$TABLE"
    # then every backend test (oracle, finite differences) on the device, as time allows
    run 150 "$PY" -m pytest -rs --maxfail=10 -p no:cacheprovider tests/test_backend.py \
        tests/test_adaptive.py tests/test_beam.py -k cuda
fi
say "== done in ${SECONDS} s; results in $RESULT, the table in $TABLE"

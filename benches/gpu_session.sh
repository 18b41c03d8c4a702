#!/usr/bin/env bash
# One prepared GPU session for a lent machine (the device tool's `run`): every step has its own time cap
# inside an overall deadline, so a slow step costs only itself, and each step's output lands under $OUT as
# it finishes. Run from the repository root:
#
#   TOTAL=560 bash benches/gpu_session.sh          # on the GPU machine, $OUT set by the tool
#   OUT=/tmp/dry DEV=cpu M=tiny-gpt2 BIG=tiny-gpt2 QUICK_MODELS=tiny-gpt2 bash benches/gpu_session.sh
#
# The image there has torch, transformers, pytest-benchmark and nvidia-ml-py but not this package: it is
# installed editable without dependencies (PYTEST_PLUGINS when that fails). Measured on an H100 (2026-11-27):
# install 23 s, self-check 166 s (batch 4 x 256), quick_test's 48 items > 150 s (39 done), variants 69 s
# (two compiles), A/A with 8 pairs > 110 s.
set -u
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/gpu-session}; mkdir -p "$OUT"
DEV=${DEV:-cuda}; M=${M:-gpt2}; BIG=${BIG:-gpt2}; TOTAL=${TOTAL:-560}
START=$(date +%s)
L=$OUT/log.txt
PY=${PY:-python3}
step() { echo "=== $(date +%T) +$(( $(date +%s) - START ))s $*" | tee -a "$L"; }
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
cap() { local l; l=$(left); (( l > $1 )) && echo "$1" || echo "$(( l > 5 ? l - 5 : 1 ))"; }
run() {  # run CAP NAME CMD...: bounded (SIGTERM first: tbench saves what it measured), output to the log
  local c; c=$(cap "$1"); shift; local name=$1; shift
  step "$name (cap ${c}s)"
  timeout -k 10 "$c" "$@" >>"$L" 2>&1; echo "--- $name rc=$?" | tee -a "$L"
}

step env
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,clocks.max.mem \
  --format=csv >>"$L" 2>&1
$PY -c "import sys,torch,transformers,pytest_benchmark;print(sys.version.split()[0],torch.__version__,
torch.version.cuda,transformers.__version__,pytest_benchmark.__version__)" >>"$L" 2>&1
step install
if ! $PY -m pip install -q --no-deps --no-build-isolation -e . >>"$L" 2>&1; then
  export PYTHONPATH=$PWD PYTEST_PLUGINS=pytest_tbench.plugin.hooks
  echo "editable install failed: PYTEST_PLUGINS fallback" >>"$L"
fi

P="$PY -m pytest -p no:cacheprovider -q -rs"
SC=(--device "$DEV" --model "$M")
# On a CPU the small block must pass glibc's 32 MiB mmap ceiling: a heap block is not a probe (docs/guides/measuring.md).
[ "$DEV" = cpu ] && SC+=(--rounds 10 --warmup 2 --allocation-mib 128 48)
run 200 selfcheck $PY benches/gpu_selfcheck.py "${SC[@]}"

# forward only: the whole quick_test (48 items) did not fit 150 s on an H100.
run 100 quick_forward $P benches/test_forward.py --tbench-preset quick_test --tbench-devices "$DEV" \
  ${QUICK_MODELS:+--tbench-models $QUICK_MODELS} --benchmark-json "$OUT/quick.json"

# Variants on one shape: attention implementation x compile, bf16; FLOPs, MFU and energy ride along.
run 100 variants $P benches/test_forward.py --tbench-models "$BIG" --tbench-batch-sizes 8 --tbench-seq-lens 512 \
  --tbench-devices "$DEV" --tbench-dtype bfloat16 --tbench-attn-implementation eager,sdpa \
  --tbench-compile off,default --tbench-rounds 400 --benchmark-json "$OUT/variants.json"

# A/A on CUDA: the base differs only by an unused variable, so no verdict may be "REGRESSED".
run 120 ab_aa $P benches/test_forward.py --tbench-models "$M" --tbench-batch-sizes 16 --tbench-seq-lens 512 \
  --tbench-devices "$DEV" --tbench-dtype float16 --tbench-ab env:TBENCH_AA_UNUSED=1 --tbench-ab-pairs 6 \
  --tbench-rounds 72 --benchmark-json "$OUT/ab.json"

# Last, with whatever time is left: the zoo (issue 15's model families at real sizes; dtype auto: float16).
run 90 zoo $P benches/test_forward.py --tbench-config benches/zoo.yaml --tbench-devices "$DEV" \
  --benchmark-json "$OUT/zoo.json"

step done

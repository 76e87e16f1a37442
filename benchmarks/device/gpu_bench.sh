#!/usr/bin/env bash
# The GPU training-throughput benchmark, as one call of the device tool (prepared by
# prepare.sh; carry [".whl", ".benchdata"]). Writes into $OUT (the tool's output folder):
# gpu.txt (card, driver, versions), bench_train_resnet50.json (model / plain / trainer: the
# targets), bench_train_others.json (the other four backbones, while the time lasts), log.txt.
# BUDGET (seconds, default 480) bounds the whole run; resnet50 always runs first.
# For a smoke run elsewhere: PYTHON, WHEELS (folder of wheels for that Python) and BENCH_ARGS
# (bench_train.py options that override the defaults, e.g. "--img-size 32 --batch 4 --steps 2").
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/device}; mkdir -p "$OUT"
BUDGET=${BUDGET:-480}
START=$(date +%s)
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || { echo "error: could not install the wheels in $WHEELS" >&2; exit 1; }
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # peak memory = what the run used, not a preallocation
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$PYTHON" -c "import jax, keras, numpy; print('jax', jax.__version__, 'keras', keras.__version__, 'numpy', numpy.__version__, jax.devices())"
  nproc; date -u
} 2>&1 | tee "$OUT/gpu.txt"
# shellcheck disable=SC2206  # BENCH_ARGS is meant to split into words
COMMON=(--data .benchdata/kermany --batch 128 --epochs 6 ${BENCH_ARGS:-})
"$PYTHON" benchmarks/bench_train.py --archs resnet50 --steps 30 "${COMMON[@]}" \
    --json "$OUT/bench_train_resnet50.json" 2>&1 | tee "$OUT/log.txt"
LEFT=$(( BUDGET - ($(date +%s) - START) ))
if [ "$LEFT" -gt 60 ]; then
  "$PYTHON" benchmarks/bench_train.py --archs inception_v3,xception,vgg16,densenet121 --steps 20 \
      "${COMMON[@]}" --budget $(( LEFT - 60 )) --json "$OUT/bench_train_others.json" 2>&1 | tee -a "$OUT/log.txt"
fi
echo "total $(( $(date +%s) - START )) s" | tee -a "$OUT/log.txt"

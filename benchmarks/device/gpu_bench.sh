#!/usr/bin/env bash
# The GPU training-throughput benchmark, as one call of the device tool (prepared by
# prepare.sh; carry [".whl", ".benchdata"]). Writes into $OUT (the tool's output folder):
# gpu.txt (card, driver, versions), bench_train_resnet50.json (model / plain / trainer: the
# targets), bench_train_others.json (the other four backbones, while the time lasts), log.txt.
# BUDGET (seconds, default 480) bounds the whole run; resnet50 always runs first.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/device}; mkdir -p "$OUT"
BUDGET=${BUDGET:-480}
START=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "error: could not install the carried wheels" >&2; exit 1; }
export PYTHONPATH=/tmp/site KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax, keras, numpy; print('jax', jax.__version__, 'keras', keras.__version__, 'numpy', numpy.__version__, jax.devices())"
  nproc; date -u
} 2>&1 | tee "$OUT/gpu.txt"
COMMON=(--data .benchdata/kermany --batch 128 --epochs 6)
python3 benchmarks/bench_train.py "${COMMON[@]}" --archs resnet50 --steps 30 \
    --json "$OUT/bench_train_resnet50.json" 2>&1 | tee "$OUT/log.txt"
LEFT=$(( BUDGET - ($(date +%s) - START) ))
if [ "$LEFT" -gt 60 ]; then
  python3 benchmarks/bench_train.py "${COMMON[@]}" --archs inception_v3,xception,vgg16,densenet121 \
      --steps 20 --budget $(( LEFT - 60 )) --json "$OUT/bench_train_others.json" 2>&1 | tee -a "$OUT/log.txt"
fi
echo "total $(( $(date +%s) - START )) s" | tee -a "$OUT/log.txt"

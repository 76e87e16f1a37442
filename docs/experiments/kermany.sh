#!/usr/bin/env bash
# The four backbones on Kermany with the from-scratch recipe: exactly the command per
# backbone, then evaluation and the paired comparison (docs/results.md, section 2).
#   bash docs/experiments/kermany.sh [ARCH ...]        (default: the four; run from the project root)
# Each `train` makes the same patient-level split (seed 0) and saves it beside its model.
set -euo pipefail
PY=${PY:-.venv/bin/python}
KERMANY=${KERMANY:-../shared/data/kermany-pneumonia}
OUT=${OUT:-out/kermany}
ARCHS=(${@:-resnet50 inception_v3 xception vgg16})
for A in "${ARCHS[@]}"; do
  [ -f "$OUT/models/$A/card.json" ] || /usr/bin/time -f "train $A: %e s" \
    $PY -m training train --data "$KERMANY" --task pneumonia --arch "$A" --img-size 96 --epochs 6 \
        --out "$OUT/models/$A"
  $PY -m training evaluate --model "$OUT/models/$A" --data "$KERMANY" --out "$OUT/eval/$A" --n-boot 1000
done
$PY -m training compare --models-dir "$OUT/models" --data "$KERMANY" \
    --split "$OUT/models/${ARCHS[0]}/split.csv" --out "$OUT/compare" --n-boot 1000

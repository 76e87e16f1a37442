#!/usr/bin/env bash
# Scratch vs CXR-pretrained on one ieee8023 patient-level split, the four backbones
# (docs/results.md, section "CXR-domain pretraining"). Run from the project root:
#   bash docs/experiments/pretraining.sh [ARCH ...]      (default: the four)
# Pretraining sees Kermany and the *training* part of the ieee8023 split only: --exclude keeps
# every image of the split's val/test patients (by path, patient and content) out of it.
set -euo pipefail
PY=${PY:-.venv/bin/python}
IEEE=${IEEE:-../shared/data/ieee8023-covid-chestxray}
KERMANY=${KERMANY:-../shared/data/kermany-pneumonia}
OUT=${OUT:-out/pretraining}
SIZE=${SIZE:-96}
EPOCHS=${EPOCHS:-15}          # downstream epochs (scratch and fine-tuning alike)
PRE_EPOCHS=${PRE_EPOCHS:-6}   # pretraining epochs
TASK=multilabel-within-source
ARCHS=("${@:-resnet50 inception_v3 xception vgg16}")
# shellcheck disable=SC2206
ARCHS=(${ARCHS[*]})
mkdir -p "$OUT"
[ -f "$OUT/split.csv" ] || $PY -m training split --data "$IEEE" --task $TASK --out "$OUT/split.csv"
for A in "${ARCHS[@]}"; do
  [ -f "$OUT/cxr-$A/card.json" ] || /usr/bin/time -f "pretrain $A %e s" $PY -m training pretrain \
      --data "$KERMANY" --data "$IEEE" --exclude "$OUT/split.csv" --arch "$A" --img-size $SIZE \
      --epochs $PRE_EPOCHS --out "$OUT/cxr-$A"
  [ -f "$OUT/models/scratch-$A/card.json" ] || /usr/bin/time -f "scratch $A %e s" $PY -m training train \
      --data "$IEEE" --task $TASK --split "$OUT/split.csv" --arch "$A" --img-size $SIZE \
      --mode scratch --weights none --epochs $EPOCHS --out "$OUT/models/scratch-$A"
  [ -f "$OUT/models/cxr-$A/card.json" ] || /usr/bin/time -f "finetune $A %e s" $PY -m training train \
      --data "$IEEE" --task $TASK --split "$OUT/split.csv" --arch "$A" --img-size $SIZE \
      --mode finetune --weights "$OUT/cxr-$A" --head-epochs 2 --epochs $EPOCHS --finetune-lr 1e-4 \
      --out "$OUT/models/cxr-$A"
  # paired patient bootstrap: scratch vs CXR-pretrained, same test part
  $PY -m training compare --model "$OUT/models/scratch-$A" --model "$OUT/models/cxr-$A" \
      --data "$IEEE" --split "$OUT/split.csv" --out "$OUT/compare-$A" --n-boot 1000
done
$PY -m training compare --models-dir "$OUT/models" --data "$IEEE" --split "$OUT/split.csv" \
    --out "$OUT/compare" --n-boot 1000

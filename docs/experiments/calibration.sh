#!/bin/bash
# Calibration before/after (docs/results.md, section 6) on the internal, patient-disjoint test part of the demo split,
# for the card's calibration (auto: per output Platt or isotonic by CV on validation) and, for
# the method comparison, Platt / isotonic refitted on validation (the card is not changed).
cd "$(dirname "$0")/../.."
D="--data ../shared/data/ieee8023-covid-chestxray --data ../shared/data/kermany-pneumonia"
for a in resnet50 inception_v3 xception vgg16; do
  for c in card platt isotonic; do  # needs out/trust/models: the demo's models after calibrate + fit-gate
    /usr/bin/time -f "$a $c %e s" .venv/bin/python -m training evaluate --model out/trust/models/$a $D \
      --out out/trust/eval/$a-$c --calibration $c 2>&1 | grep -av "I0000\|W0000\|E0000\|cuda\|oneDNN\|To enable\|WARNING" | tail -2
  done
done

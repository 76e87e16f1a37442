"""Lung-region inputs for the site-held-out experiment (issue 25, docs/results.md §9).

Trains the small lung segmentation model (training/lungs/segment.py) on ieee8023's lungVAE
masks (patient-disjoint 80 / 20; Dice on the held-out 20 %), then writes the two derived
datasets (training/lungs/derive.py) for ``cross-site --data OUT/lungcrop`` / ``OUT/lungmask``.
Writes OUT/segmentation.json (Dice, counts, plausible-mask fraction) and OUT/lung_unet.keras.

    .venv/bin/python docs/experiments/lung_region.py \\
        --data ../shared/data/ieee8023-covid-chestxray --out /tmp/e25 --epochs 40
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ieee8023 dataset root")
    parser.add_argument("--out", required=True, help="folder for the derived datasets (not the repo)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from training.lungs.derive import derive
    from training.lungs.segment import predict_mask, train_segmenter

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    model, seg = train_segmenter(args.data, epochs=args.epochs, seed=args.seed)
    model.save(out / "lung_unet.keras")
    trained = time.monotonic()
    derived = derive(args.data, out, lambda gray: predict_mask(model, gray))
    result = {"segmentation": seg.to_json(), "derived": derived.to_json(),
              "seconds": {"train": round(trained - start), "derive": round(time.monotonic() - trained)}}
    (out / "segmentation.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

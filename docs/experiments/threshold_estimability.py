"""Which outputs of the demo's models can have a decision threshold (docs/results.md).

Rebuilds the demo's patient split (same data, task and seed as ``make demo``) and asks the
one threshold writer (:func:`training.evaluation.thresholds.choose_record`) which outputs have
at least ``--min-patients`` positive and negative patients in the validation part. No model
is needed: estimability depends on the labels only (the scores are placeholders).

    python docs/experiments/threshold_estimability.py \
        --data ../shared/data/ieee8023-covid-chestxray --data ../shared/data/kermany-pneumonia
"""
from __future__ import annotations

import argparse

import numpy as np

from training.data.formats import load_datasets
from training.data.spec import DataSpec
from training.data.splits import make_split
from training.data.tasks import get_task
from training.demo import MULTI_SOURCE_TASK
from training.evaluation.thresholds import MIN_PATIENTS, choose_record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--min-patients", type=int, default=MIN_PATIENTS)
    args = ap.parse_args()
    ds = load_datasets(DataSpec(tuple(args.data), on_error="skip"))
    task = get_task(MULTI_SOURCE_TASK if ds.meta["source"].nunique() > 1 else "multilabel")
    split = make_split(ds, task, seed=0)
    val = ds.subset((split["part"] == "val").to_numpy())
    Y, outputs = task.encode(val), task.classes(ds)
    groups = val.meta["patient"].astype(str).to_numpy()
    record = choose_record(Y, np.full(Y.shape, 0.5), task.kind, outputs, groups,
                           min_patients=args.min_patients, calibration="none")
    print(f"task {task.name}: {len(val)} validation images, {len(set(groups))} patients")
    for name, e in record.entries.items():
        print(f"  {name:>28}: {e.status.value:<14} {e.positive_patients:>4} positive / "
              f"{e.negative_patients:>4} negative patients ({e.positive_images} / {e.negative_images} images)")


if __name__ == "__main__":
    main()

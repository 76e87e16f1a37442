"""Does a model trained on ieee8023 + Kermany read the disease or the source?

For each model, on the test part of a saved split (internal, patient-disjoint), two ROC-AUCs
of its COVID-19 output, with patient-bootstrap 95% CIs:

* **within ieee8023**: COVID-19 vs the other ieee8023 findings (adults from the same
  collection): what the label means;
* **COVID-19 vs Kermany**: ieee8023 COVID-19 images vs Kermany images (pediatric, another
  hospital, no COVID-19). A model can get this one right from the source alone.

A model that learnt the source scores high on the second and near chance on the first; the
paired difference (second - first) measures how much of its "COVID-19" is the source.

    .venv/bin/python docs/experiments/source_shortcut.py --split demo-output/split.csv \\
        --data ../shared/data/ieee8023-covid-chestxray --data ../shared/data/kermany-pneumonia \\
        --model demo-output/models/resnet50 --model out/shortcut/multilabel-resnet50
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

LABEL = "COVID-19"


def _auc(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int) -> dict:
    from training.evaluation.bootstrap import bootstrap_ci

    ci = bootstrap_ci("roc_auc", y, p, groups=groups, n_boot=n_boot)
    return {"value": round(ci.point, 4), "low": round(ci.low, 4), "high": round(ci.high, 4),
            "n_pos": int(y.sum()), "n_neg": int((1 - y).sum())}


def analyse(models: list[str], data: list[str], split: str, n_boot: int) -> list[dict]:
    from training.data.formats import load_datasets
    from training.data.spec import DataSpec
    from training.data.splits import load_split
    from training.evaluation.predict import predict_paths
    from training.runtime import load_all

    ds = load_datasets(DataSpec(tuple(data), on_error="skip"))
    part = load_split(split, ds)["part"].to_numpy()
    test = ds.subset(part == "test")
    source = test.meta["source"].astype(str).to_numpy()
    groups = test.meta["patient"].astype(str).to_numpy()
    covid = test.labels[:, test.pathologies.index(LABEL)]
    loaded = load_all(models)
    probs, _ = predict_paths(loaded, test.meta["path"].astype(str).tolist())
    rows = []
    for m, p in zip(loaded, probs):
        score = p[:, m.outputs.index(LABEL)]
        within = (source == "ieee8023") & ~np.isnan(covid)
        across = ((source == "ieee8023") & (covid == 1)) | (source == "kermany")
        y_across = (source[across] == "ieee8023").astype(float)
        rows.append({"model": m.name, "task": m.card.get("task"),
                     "within_ieee8023": _auc(covid[within], score[within], groups[within], n_boot),
                     "covid_vs_kermany": _auc(y_across, score[across], groups[across], n_boot)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = analyse(args.model, args.data, args.split, args.n_boot)
    fmt = lambda a: f"{a['value']:.2f} [{a['low']:.2f}, {a['high']:.2f}] ({a['n_pos']}+/{a['n_neg']}-)"
    print("| model | task | COVID-19 within ieee8023 | COVID-19 (ieee8023) vs Kermany |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['task']} | {fmt(r['within_ieee8023'])} | {fmt(r['covid_vs_kermany'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

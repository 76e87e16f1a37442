"""Does a recipe variant raise the pooled site-held-out AUC? Paired against a baseline run.

Two ``cross-site`` runs of the same sites and labels (e.g. ResNet50 64 px and a variant of
it): each fold model predicts its own held-out site again (calibrated, as ``cross-site``
pools them); images are paired by site and file name (so a derived dataset, same names,
pairs with the original) and the difference of the pooled ROC-AUCs (variant - baseline) gets
a 95 % CI from one patient bootstrap applied to both. Writes nothing; prints one JSON line
per variant.

    .venv/bin/python docs/experiments/site_paired.py --base /tmp/e25/runs/base \\
        /tmp/e25/runs/a-lungcrop /tmp/e25/runs/b-lungmask
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def held_out(run: Path) -> pd.DataFrame:
    """Every labelled held-out image of ``run``: site, file name, patient, truth, probability."""
    from training.evaluation.evalset import image_cache
    from training.evaluation.predict import predict_paths
    from training.runtime import load

    result = json.loads((run / "cross_site.json").read_text())
    scored, frames = result["scored_output"], []
    for site, fold in result["folds"].items():
        split = pd.read_csv(Path(fold["model"]).parent / "split.csv")
        test = split[(split["part"] == "test") & (split["stratum"] != "unlabelled")]
        lm = load(fold["model"])
        probs, _ = predict_paths([lm], test["path"].tolist(), 32, image_cache())
        p = lm.calibrate(probs[0])[:, lm.outputs.index(scored)]
        frames.append(pd.DataFrame({"site": site, "file": test["path"].map(lambda s: Path(s).name).to_numpy(),
                                    "patient": test["patient"].to_numpy(),
                                    "y": (test["stratum"] == scored).astype(float).to_numpy(), "p": p}))
    return pd.concat(frames, ignore_index=True)


def paired(base: pd.DataFrame, variant: pd.DataFrame, n_boot: int) -> dict:
    """Pooled ROC-AUC difference (variant - baseline) on the images both scored, patient bootstrap."""
    from training.evaluation.bootstrap import paired_bootstrap

    both = base.merge(variant, on=["site", "file"], suffixes=("_base", "_var"))
    if not (both["y_base"] == both["y_var"]).all() or not (both["patient_base"] == both["patient_var"]).all():
        raise SystemExit("the runs label or group the paired images differently: not comparable. "
                         "What to do: compare runs of the same task and data rows")
    d = paired_bootstrap("roc_auc", both["y_base"].to_numpy(), both["p_var"].to_numpy(),
                         both["p_base"].to_numpy(), both["patient_base"].astype(str).to_numpy(), n_boot)
    return {"n_images": len(both), "n_patients": int(both["patient_base"].nunique()),
            **{k: round(float(d[k]), 4) for k in ("a", "b", "diff", "low", "high", "p_value")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the baseline cross-site output folder")
    parser.add_argument("runs", nargs="+", help="variant cross-site output folders")
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args(argv)
    base = held_out(Path(args.base))
    for run in map(Path, args.runs):
        print(json.dumps({"variant": run.name, "baseline": Path(args.base).name,
                          **paired(base, held_out(run), args.n_boot)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Leave one site out: does an output hold at hospitals it never trained on?

Each image's site comes from a metadata column (``--site-column``, default ieee8023's free-text
``location``, normalised to its country: :func:`site_of`). A site is held out only where it has
``min_site_patients`` positive and negative patients for the scored output (else its AUC would
be noise and its fold's training time wasted): such sites, and rows without a site, stay in
training in every fold and are counted in the report. Each fold trains the one recipe on
every other row (80 / 20 train / validation by patient, the same split in every fold outside
the held-out site) and evaluates the held-out site as the test part of its fold's split
(:func:`~training.evaluation.cross_collection.run_fold`: the overlap check, report and CIs of
``evaluate``). Patients linked by byte-identical files share a site, so a duplicate never
crosses the line.

Reported per output: each held-out site's ROC-AUC (patient-bootstrap CI) and the pooled
estimate over every held-out prediction (each fold model on its own site, calibrated by its
card), whose CI resamples patients within each site, so every resample keeps the sites' sizes.
``cross_site.json`` (estimates as ``{"value", "low", "high"}``), ``.csv``, ``.md``. ``--card``
records the pooled estimate as SITE_HELD_OUT evidence in models trained with the same recipe.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training import io
from training.config import TrainConfig
from training.data.formats import load_datasets
# Sites (site_of, row_sites, count_sites) live with the demo's site split: one definition.
from training.data.site_split import MIN_SITE_PATIENTS, count_sites, covid_output, row_sites, site_of
from training.data.spec import DataSpec
from training.data.splits import make_split, save_split
from training.data.tasks import get_task
from training.errors import DataError
from training.evaluation.bootstrap import ScalarMetric, resample_weights
from training.evaluation.cross_collection import (NOT_RECIPE, Trainer, default_trainer, run_fold,
                                                  trained_with)
from training.evaluation.estimate import Estimate
from training.evaluation.evaluate import write_json
from training.evaluation.evalset import image_cache, task_targets
from training.evaluation.evidence import Evidence, EvidenceKind
from training.evaluation.holdout import leave_one_group_out
from training.evaluation.predict import predict_paths
from training.models.card import read_card, update_card
from training.runtime import load

log = logging.getLogger(__name__)


def scored_output(outputs: Sequence[str], wanted: str | None) -> str:
    """``wanted``, else the first output naming COVID-19 (not its negative), else the last
    (a two-class task's positive class)."""
    if wanted is not None:
        if wanted not in outputs:
            raise DataError(f"--output {wanted!r} is not an output of this task ({', '.join(outputs)})",
                            hint="pass one of the task's outputs")
        return wanted
    return covid_output(outputs)


def site_stratified_auc(y: np.ndarray, p: np.ndarray, patients: np.ndarray, sites: np.ndarray,
                        n_boot: int, seed: int = 0) -> Estimate:
    """ROC-AUC of pooled predictions; 95 % CI resampling patients within each site."""
    metric = ScalarMetric("roc_auc")
    point = metric(y, p)
    if not math.isfinite(point):
        return Estimate(None)
    weights = np.zeros((n_boot, len(y)))
    for k, name in enumerate(sorted(set(sites))):
        rows = np.flatnonzero(sites == name)
        weights[:, rows] = np.concatenate(list(resample_weights(patients[rows], len(rows), n_boot, seed + k)))
    stats = np.asarray(metric.batched(y, p, weights), dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if len(stats) < 2:
        return Estimate(point, None, None, len(stats))
    low, high = np.percentile(stats, [2.5, 97.5])
    return Estimate(point, float(low), float(high), len(stats))


def cross_site(spec: DataSpec, cfg: TrainConfig, out_dir: str | Path, site_column: str = "location",
               min_site_patients: int = MIN_SITE_PATIENTS, output: str | None = None, n_boot: int = 1000,
               trainer: Trainer | None = None) -> dict[str, Any]:
    """Hold out each eligible site of ``spec`` once; ``cfg`` is the recipe (its data, split and
    out are set per fold). Returns what ``cross_site.json`` holds."""
    out = Path(out_dir)
    ds = load_datasets(spec)
    if site_column not in ds.meta.columns:
        raise DataError(f"the data have no metadata column {site_column!r}",
                        hint="pass --site-column with a column the loader keeps (ieee8023: location)")
    task = get_task(cfg.task)
    targets, outputs = task.encode(ds), list(task.classes(ds))
    scored = scored_output(outputs, output)
    base = make_split(ds, task, parts=(cfg.parts[0], cfg.parts[1] + cfg.parts[2], 0.0), seed=cfg.seed)
    patients = base["patient"].astype(str).to_numpy()
    site = row_sites([site_of(v) for v in ds.meta[site_column]], patients, base["path"].astype(str).tolist())
    sites = count_sites(site, patients, targets[:, outputs.index(scored)], min_site_patients)
    held = [s.name for s in sites if s.held_out]
    if len(held) < 2:
        raise DataError(f"{len(held)} sites have {min_site_patients} positive and negative patients for "
                        f"{scored!r}; leave one site out needs two or more",
                        hint="lower --min-site-patients, add data, or choose another --site-column")
    folds, pooled = {}, []
    for fold in leave_one_group_out(held):
        result, preds = _run_site(fold.held_out, site, base, ds, cfg, spec, out, n_boot, trainer)
        folds[fold.held_out] = result
        pooled.append(preds)
    result = {"check": "cross_site", "protocol": "leave one site out: train on every other site (and "
              "rows without one), test on all of the site left out", "site_column": site_column,
              "min_site_patients": min_site_patients, "scored_output": scored, "outputs": outputs,
              "sites": {s.name: s.to_json() for s in sites},
              "always_in_training": {"no_site_images": int(sum(s is None for s in site)),
                                     "small_sites": [s.name for s in sites if not s.held_out]},
              "recipe": {k: v for k, v in cfg.to_dict().items() if k not in NOT_RECIPE},
              "bootstrap": {"n_boot": n_boot, "resampling": "patients (pooled: within each site)",
                            "level": 0.95},
              "folds": folds, "pooled": _pooled(pooled, outputs, n_boot)}
    write_outputs(result, out)
    return result


def _run_site(held: str, site: np.ndarray, base: pd.DataFrame, ds: Any, cfg: TrainConfig, spec: DataSpec,
              out: Path, n_boot: int, trainer: Trainer | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train without ``held``, evaluate on it; its summary and its calibrated predictions."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", held).strip("-").lower()
    fold_dir = out / f"without-{slug}"
    test = np.asarray(site == held)
    split = base.assign(part=np.where(test, "test", base["part"]))
    split_path = save_split(split, fold_dir / "split.csv")
    fold_cfg = dataclasses.replace(cfg, data=list(spec.data), split=str(split_path),
                                   out=str(fold_dir / "model"), name=f"without-{slug}")
    log.info("cross-site: training without %s (%d test images)", held, int(test.sum()))
    model_dir, result = run_fold(fold_cfg, spec, fold_dir, n_boot, trainer or default_trainer, str(split_path))
    lm = load(model_dir)
    rows = np.flatnonzero(test)
    probs, _ = predict_paths([lm], split["path"].astype(str).to_numpy()[rows].tolist(), cfg.batch_size,
                             image_cache(cfg.cache_dir))
    preds = {"y": task_targets(ds, lm.card)[rows], "p": lm.calibrate(probs[0]),
             "patient": split["patient"].astype(str).to_numpy()[rows], "site": np.full(len(rows), held)}
    per_output = result["metrics"].get("per_output") or {}
    summary = {"model": str(model_dir), "evaluation": str(fold_dir / "evaluation"),
               "n_test": result["n_images"], "n_test_patients": result["n_patients"],
               "n_train_val": int((~test).sum()),
               "per_output": {o: {"roc_auc": Estimate.of((per_output.get(o) or {}).get("roc_auc")).to_json(),
                                  "positives": (per_output.get(o) or {}).get("n_pos"),
                                  "negatives": (per_output.get(o) or {}).get("n_neg")}
                              for o in lm.outputs}}
    return summary, preds


def _pooled(folds: list[dict[str, np.ndarray]], outputs: list[str], n_boot: int) -> dict[str, Any]:
    """Per output: the ROC-AUC of every held-out prediction together (site-stratified CI)."""
    y, p = np.concatenate([f["y"] for f in folds]), np.concatenate([f["p"] for f in folds])
    patients, sites = np.concatenate([f["patient"] for f in folds]), np.concatenate([f["site"] for f in folds])
    out = {}
    for j, name in enumerate(outputs):
        ok = np.isfinite(y[:, j]) & np.isfinite(p[:, j])
        est = site_stratified_auc(y[ok, j], p[ok, j], patients[ok], sites[ok], n_boot)
        out[name] = {"roc_auc": est.to_json(), "n_images": int(ok.sum()),
                     "n_patients": len(set(patients[ok])), "n_sites": len(set(sites[ok]))}
    return out


# ------------------------------------------------------------------ cards

def record_evidence(result: dict[str, Any], cfg: TrainConfig, model_dirs: Sequence[str | Path]) -> dict[str, str]:
    """Add the pooled estimates as SITE_HELD_OUT evidence to each card of ``model_dirs`` trained
    with ``cfg``'s recipe (config.yaml; data, split, out and name aside); replaces that card's
    earlier site-held-out items. Returns per folder "recorded" or why not."""
    held = [h for h in result["folds"]]
    what = (f"{result['site_column']} sites held out one at a time ({len(held)}: {', '.join(held)}), "
            "pooled; models of this recipe, not this model")
    done = {}
    for d in map(Path, model_dirs):
        if not trained_with(d, cfg, ignore=NOT_RECIPE):
            done[str(d)] = "not recorded: trained with another recipe (or no config.yaml)"
            log.warning("cross-site: %s was trained with another recipe: its card is left as it is", d.name)
            continue
        card = read_card(d)
        new = {o: [Evidence(EvidenceKind.SITE_HELD_OUT, Estimate.of(v["roc_auc"]), what, v["n_images"],
                            v["n_patients"], recipe_only=True)]
               for o, v in result["pooled"].items() if o in card.outputs and v["roc_auc"]["value"] is not None}
        update_card(d, evidence=card.evidence.replaced((EvidenceKind.SITE_HELD_OUT,), new,
                                                           recipe_only=True).to_json())
        done[str(d)] = "recorded"
    return done


# ------------------------------------------------------------------ outputs

def _cell(raw: dict[str, Any] | None) -> str:
    est = Estimate.of((raw or {}).get("roc_auc"))
    return f"{est.text} ({est.ci})" if est.ci else est.text


def table_rows(result: dict[str, Any]) -> pd.DataFrame:
    """One row per (held-out site, output), then one pooled row per output: the CSV."""
    rows = []
    for held, fold in result["folds"].items():
        for name, cell in fold["per_output"].items():
            est = Estimate.of(cell["roc_auc"])
            rows.append({"held_out": held, "output": name, "roc_auc": est.value, "low": est.low,
                         "high": est.high, "positives": cell["positives"], "negatives": cell["negatives"]})
    for name, cell in result["pooled"].items():
        est = Estimate.of(cell["roc_auc"])
        rows.append({"held_out": "pooled", "output": name, "roc_auc": est.value, "low": est.low,
                     "high": est.high, "positives": None, "negatives": None})
    return pd.DataFrame(rows)


def markdown(result: dict[str, Any]) -> str:
    """Outputs × held-out sites (+ pooled): ROC-AUC (95 % CI) at the site left out."""
    folds = result["folds"]
    head = [f"{h} ({f['n_test']} img, {f['n_test_patients']} pat)" for h, f in folds.items()]
    lines = ["| output | " + " | ".join(head) + " | pooled |", "|---|" + "---|" * (len(head) + 1)]
    for name in result["outputs"]:
        cells = [_cell(f["per_output"].get(name)) for f in folds.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_cell(result['pooled'].get(name))} |")
    always = result["always_in_training"]
    lines += ["", f"ROC-AUC at each held-out {result['site_column']} site, 95 % patient-bootstrap CI "
              f"({result['bootstrap']['n_boot']} resamples; pooled: every held-out prediction, patients "
              f"resampled within each site). Held out: sites with ≥ {result['min_site_patients']} positive "
              f"and negative patients for {result['scored_output']!r}. Always in training: "
              f"{always['no_site_images']} images without a site; small sites: "
              f"{', '.join(always['small_sites']) or 'none'}."]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / "cross_site.json")
    io.write_text(out / "cross_site.csv", table_rows(result).to_csv(index=False))
    io.write_text(out / "cross_site.md", markdown(result))

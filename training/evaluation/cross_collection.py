"""Leave one collection out (Cohen et al., MIDL 2020): for N collections, train on all but one
with one recipe, test on the one left out as an external test, per pathology.

A collection is a ``source`` (``meta["source"]``) and the ``--data`` entries that hold it. Each
fold trains with :func:`training.engine.fit.train` and evaluates with
:func:`training.evaluation.evaluate.evaluate_model` (``external``: every image of the held-out
collection, patient-bootstrap CIs). A pathology is scored only where the training collections
and the held-out one both annotate it (never by reading "not annotated" as negative). Writes
``cross_collection.json`` (estimates as ``{"value", "low", "high"}``), ``.csv`` and ``.md``.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from training import io
from training.config import TrainConfig, load_config
from training.data.formats import load_datasets
from training.data.pathologies import VOCABULARY
from training.data.spec import DataSpec
from training.errors import DataError
from training.evaluation.estimate import Estimate
from training.evaluation.evaluate import evaluate_model, write_json
from training.evaluation.holdout import Fold, leave_one_group_out

log = logging.getLogger(__name__)

#: ``trainer(cfg) -> model folder``; the default is :func:`training.engine.fit.train`.
Trainer = Callable[[TrainConfig], Path]
#: A cell's status: "scored", or why it has no number ("not annotated (training)", "not
#: annotated (held out)", "no training positives", "one class in test"), shown as is.
SCORED = "scored"
#: The TrainConfig fields the ``cross-collection`` command takes as flags (the rest: ``--config``).
RECIPE = ("task", "arch", "mode", "img_size", "epochs", "batch_size", "seed", "max_images", "cache_dir")


def recipe(config: str | Path | None, spec: DataSpec, **flags: Any) -> TrainConfig:
    """Every fold's training recipe: the YAML ``config``, then the ``flags`` given (not None) and
    ``spec``'s data options. A new config splits the training collections 80 / 20 into train and
    validation: the test is the collection left out."""
    return load_config(config, {**flags, **spec.to_dict()}, defaults={"parts": (0.8, 0.2, 0.0)})


@dataclass(frozen=True)
class Collection:
    """One collection: its source name, the ``--data`` entries holding it and its label counts."""

    name: str
    data: tuple[str, ...]
    n_images: int
    n_patients: int
    positives: dict[str, int]  # annotated pathologies only
    negatives: dict[str, int]

    @property
    def annotated(self) -> list[str]:
        return list(self.positives)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"annotated": self.annotated}


def _counts(ds: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Positives and negatives of every pathology with a known label (NaN: not annotated)."""
    pos, neg = {}, {}
    for j, name in enumerate(ds.pathologies):
        col = np.asarray(ds.labels[:, j], dtype=np.float64)
        known = ~np.isnan(col)
        if known.any():
            pos[name], neg[name] = int((col[known] == 1).sum()), int((col[known] == 0).sum())
    return pos, neg


def find_collections(spec: DataSpec) -> list[Collection]:
    """The collections of ``spec``: its ``--data`` entries grouped by their one source each."""
    by_source: dict[str, list[str]] = {}
    for entry in spec.data:
        sources = sorted(set(load_datasets(spec.replace(data=(entry,))).meta["source"].astype(str)))
        if len(sources) != 1:
            raise DataError(f"a --data entry holds {len(sources)} sources ({', '.join(sources)}); "
                            "leave-one-collection-out needs one collection per entry",
                            hint="pass each collection as its own --data")
        by_source.setdefault(sources[0], []).append(entry)
    out = []
    for name, entries in sorted(by_source.items()):
        ds = load_datasets(spec.replace(data=tuple(entries)))
        pos, neg = _counts(ds)
        out.append(Collection(name, tuple(entries), len(ds), int(ds.meta["patient"].nunique()), pos, neg))
    return out


def default_trainer(cfg: TrainConfig) -> Path:
    from training.engine.fit import train  # loads Keras: only when a fold trains

    return train(cfg, verbose=0)


#: TrainConfig fields that say where and on what a model trained, not how: two models whose
#: configs differ only in these share a recipe (``cross-site --card``).
NOT_RECIPE = ("data", "split", "out", "name", "parts", "cache_dir")


def trained_with(model_dir: Path, cfg: TrainConfig, ignore: Sequence[str] = ()) -> bool:
    """Whether ``model_dir`` holds a finished model of exactly ``cfg`` (its saved config, with
    the trainer's resolved lr, mode and weights; fields in ``ignore`` not compared): a rerun of
    an interrupted fold evaluates it instead of training it again."""
    from training.engine.fit import resolved  # the trainer's own resolution; loads Keras: only here

    if not ((model_dir / "card.json").is_file() and (model_dir / "config.yaml").is_file()):
        return False
    wanted = resolved(cfg)[0].to_dict()
    saved = load_config(model_dir / "config.yaml").to_dict()
    return all(saved.get(k) == v for k, v in wanted.items() if k not in ignore)


def run_fold(cfg: TrainConfig, test: DataSpec, fold_dir: Path, n_boot: int, trainer: Trainer,
             split: str | None = None) -> tuple[Path, dict[str, Any]]:
    """One fold of a leave-one-group-out protocol: train ``cfg`` (or reuse its finished model,
    see :func:`trained_with`), then evaluate it on ``test``: without ``split`` all of it
    (external), else the test part of ``split``; in ``fold_dir/evaluation``."""
    model_dir = Path(cfg.out)
    if trained_with(model_dir, cfg):
        log.info("%s holds this fold's model (same recipe): not trained again", model_dir.name)
    else:
        model_dir = trainer(cfg)
    result = evaluate_model(model_dir, test, split=split, external=split is None,
                            out_dir=fold_dir / "evaluation", n_boot=n_boot,
                            batch_size=cfg.batch_size, cache_dir=cfg.cache_dir)
    return model_dir, result


def _cell(name: str, trained: Sequence[Collection], held: Collection, per_output: dict) -> dict[str, Any]:
    """One pathology of one fold: its held-out ROC-AUC, or why there is none."""
    train_pos = sum(c.positives.get(name, 0) for c in trained)
    cell: dict[str, Any] = {"positives": held.positives.get(name), "negatives": held.negatives.get(name),
                            "train_positives": train_pos, "roc_auc": None}
    if not any(name in c.positives for c in trained):
        return {**cell, "status": "not annotated (training)"}
    if name not in held.positives:
        return {**cell, "status": "not annotated (held out)"}
    if train_pos == 0:
        return {**cell, "status": "no training positives"}
    est = Estimate.of((per_output.get(name) or {}).get("roc_auc"))
    if est.value is None:
        return {**cell, "status": "one class in test"}
    return {**cell, "status": SCORED, "roc_auc": est.to_json()}


def _run_fold(fold: Fold, cols: list[Collection], cfg: TrainConfig, spec: DataSpec, out: Path,
              n_boot: int, trainer: Trainer, names: list[str]) -> dict[str, Any]:
    trained = [c for c, t in zip(cols, fold.train) if t]
    held = next(c for c, t in zip(cols, fold.test) if t)
    fold_dir = out / f"without-{held.name}"
    fold_cfg = dataclasses.replace(cfg, data=[d for c in trained for d in c.data], split=None,
                                   out=str(fold_dir / "model"), name=f"without-{held.name}")
    log.info("cross-collection: training on %s, testing on %s", [c.name for c in trained], held.name)
    model_dir, result = run_fold(fold_cfg, spec.replace(data=held.data), fold_dir, n_boot, trainer)
    per_output = result["metrics"].get("per_output") or {}
    return {"held_out": held.name, "train_on": [c.name for c in trained],
            "test_set": result["test_set"], "model": str(model_dir),
            "evaluation": str(fold_dir / "evaluation"), "n_test": result["n_images"],
            "n_test_patients": result["n_patients"],
            "per_pathology": {n: _cell(n, trained, held, per_output) for n in names}}


def cross_collection(spec: DataSpec, cfg: TrainConfig, out_dir: str | Path, n_boot: int = 1000,
                     trainer: Trainer | None = None) -> dict[str, Any]:
    """Leave each collection of ``spec`` out once; ``cfg`` is the training recipe (its data,
    split and out are set per fold). Returns what ``cross_collection.json`` holds."""
    out = Path(out_dir)
    cols = find_collections(spec)
    folds = leave_one_group_out([c.name for c in cols])
    names = _vocabulary_order(cols)
    results = {f.held_out: _run_fold(f, cols, cfg, spec, out, n_boot, trainer or default_trainer, names)
               for f in folds}
    result = {"check": "cross_collection", "protocol": "leave one collection out (Cohen et al., MIDL "
              "2020): train on every other collection, test on all of the one left out (external)",
              "collections": {c.name: c.to_json() for c in cols}, "pathologies": names,
              "recipe": {k: v for k, v in cfg.to_dict().items() if k not in ("data", "split", "out", "name")},
              "bootstrap": {"n_boot": n_boot, "resampling": "patients", "level": 0.95},
              "folds": results}
    write_outputs(result, out)
    return result


def _vocabulary_order(cols: Sequence[Collection]) -> list[str]:
    """Every pathology some collection annotates, in the vocabulary's order when it has one."""
    seen = {n for c in cols for n in c.annotated}
    return [v for v in VOCABULARY if v in seen] + sorted(seen - set(VOCABULARY))


# ------------------------------------------------------------------ outputs

def cell_text(cell: dict[str, Any]) -> str:
    """"0.812 (0.751–0.870)" for a scored cell, else its status."""
    if cell["status"] != SCORED:
        return cell["status"]
    est = Estimate.of(cell["roc_auc"])
    return f"{est.text} ({est.ci})" if est.ci else est.text


def table_rows(result: dict[str, Any]) -> pd.DataFrame:
    """One row per (held-out collection, pathology): the CSV."""
    rows = []
    for held, fold in result["folds"].items():
        for name, cell in fold["per_pathology"].items():
            est = Estimate.of(cell["roc_auc"])
            rows.append({"held_out": held, "trained_on": "+".join(fold["train_on"]), "pathology": name,
                         "status": cell["status"], "roc_auc": est.value, "low": est.low, "high": est.high,
                         "positives": cell["positives"], "negatives": cell["negatives"],
                         "train_positives": cell["train_positives"]})
    return pd.DataFrame(rows)


def markdown(result: dict[str, Any]) -> str:
    """Pathologies × held-out collections: ROC-AUC (95 % CI) on the collection left out."""
    folds = result["folds"]
    head = [f"{h} (trained on {'+'.join(f['train_on'])}; {f['n_test']} images, "
            f"{f['n_test_patients']} patients)" for h, f in folds.items()]
    lines = ["| pathology | " + " | ".join(f"held out: {h}" for h in head) + " |",
             "|---|" + "---|" * len(head)]
    for name in result["pathologies"]:
        lines.append(f"| {name} | " + " | ".join(cell_text(f["per_pathology"][name])
                                                  for f in folds.values()) + " |")
    boot = result["bootstrap"]
    lines += ["", f"ROC-AUC on the held-out collection (external test), 95 % CI from "
              f"{boot['n_boot']} patient-bootstrap resamples."]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / "cross_collection.json")
    io.write_text(out / "cross_collection.csv", table_rows(result).to_csv(index=False))
    io.write_text(out / "cross_collection.md", markdown(result))

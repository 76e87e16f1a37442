"""Source checks: the source probe and leave-one-source-out (does the image give its source away?)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from training.audits.common import ci_text, load_data, patient_groups, scored, write_check
from training.audits.probe_features import ProbeTrainer, feature_sets, fit_probe, probe_features
from training.errors import CXRError, DataError
from training.data.dataset import CXRDataset
from training.data.splits import load_split, make_split
from training.data.tasks import get_task

log = logging.getLogger(__name__)

#: Source-probe ROC-AUC above which the report warns.
WARN_AUC = 0.9
SOURCE_WARNING = ("the image alone identifies its source: a model trained to separate classes "
                  "that come from different sources may learn the source")

#: ``trainer(train, test, task) -> probabilities (len(test), C)`` in ``task.classes`` order.
#: ``train.meta["part"]`` says train / val, for trainers that want a validation set.
Trainer = Callable[[Any, Any, Any], np.ndarray]


def _source_split(ds: Any, split_csv: str | Path | None, seed: int) -> np.ndarray:
    """Part per row: from ``split_csv``, else a patient-level split stratified by source."""
    if split_csv is not None:
        return load_split(split_csv, ds)["part"].to_numpy()
    sources = sorted(set(ds.meta["source"].astype(str)))
    # sources as a one-hot "multilabel" matrix: make_split then stratifies by source
    onehot = (ds.meta["source"].astype(str).to_numpy()[:, None] == np.array(sources)[None]).astype(np.float32)
    by_source = CXRDataset(sources, onehot, ds.meta, ds.name)
    return make_split(by_source, get_task("multilabel"), parts=(0.7, 0.0, 0.3), seed=seed)["part"].to_numpy()


def source_probe(data: Sequence[str] | str, split_csv: str | Path | None = None,
                 arch: str = "resnet50", img_size: int = 224, weights: str | None = None,
                 out_dir: str | Path = "shortcuts", seed: int = 0,
                 features: str | Sequence[str] = "auto", cache_dir: str | Path | None = None,
                 n_boot: int = 1000, on_error: str = "skip") -> dict[str, Any]:
    """How well the image alone predicts its source; writes ``source_probe.json`` / ``.html``.

    Fits the probe on the train (and val) part of a patient-level split (``split_csv``, or a
    new one stratified by source: 70 / 30) and scores it on the test part.
    """
    ds = load_data(data, on_error)
    sources = sorted(set(ds.meta["source"].astype(str)))
    if len(sources) < 2:
        raise DataError(f"the data hold one source only ({sources}): a source probe needs at "
                        "least two", hint="pass two or more datasets")
    part = _source_split(ds, split_csv, seed)
    paths = ds.meta["path"].astype(str).tolist()
    X, ok, skipped = probe_features(paths, img_size, arch, weights, features, cache_dir, seed)
    y = np.searchsorted(sources, ds.meta["source"].astype(str).to_numpy())[ok]
    part, groups = part[ok], patient_groups(ds)[ok]
    train, test = part != "test", part == "test"
    if not test.any():
        raise DataError("the split has no test part", path=split_csv, hint="make a split with a test part")
    P = fit_probe(X[train], y[train], X[test], len(sources), seed)
    scores = scored(np.eye(len(sources))[y[test]], P, sources, groups[test], n_boot, seed)
    auc = scores["roc_auc"]["value"]
    warn = bool(np.isfinite(auc) and auc > WARN_AUC)
    summary = [f"Source probe ({'+'.join(feature_sets(features, weights))} features of "
               f"{arch} at {img_size} px, weights={weights}): predicting the source "
               f"({', '.join(sources)}) from the image gives ROC-AUC {ci_text(scores['roc_auc'])} and "
               f"balanced accuracy {ci_text(scores['balanced_accuracy'])} on "
               f"{int(test.sum())} test images of {len(set(groups[test]))} patients."]
    summary.append(f"WARNING: {SOURCE_WARNING}." if warn else
                   f"The source is not readily identified from the image (ROC-AUC <= {WARN_AUC}).")
    result = {"check": "source_probe", "sources": sources, "warning": warn,
              "warn_above_auc": WARN_AUC, "arch": arch, "img_size": img_size, "weights": weights,
              "features": list(feature_sets(features, weights)), "n_features": int(X.shape[1]),
              "split": str(split_csv) if split_csv else f"new patient-level split by source, seed {seed}",
              "n_train": int(train.sum()), "n_test": int(test.sum()),
              "n_test_patients": int(len(set(groups[test]))), "metrics": scores,
              "bootstrap": {"n_boot": n_boot, "resampling": "patients"}, "skipped": skipped,
              "summary": summary}
    rows = [[s, ci_text(scores["per_class_roc_auc"][s])] for s in sources]
    return write_check(result, out_dir, "source_probe", "Source probe", rows, ["source", "ROC-AUC (one vs rest)"])


# ------------------------------------------------------------------ leave one source out

def leave_one_source_out(data: Sequence[str], task: str = "pneumonia",
                         split_csv: str | Path | None = None, arch: str = "resnet50",
                         img_size: int = 224, weights: str | None = None,
                         out_dir: str | Path = "shortcuts", seed: int = 0,
                         features: str | Sequence[str] = "auto",
                         cache_dir: str | Path | None = None, n_boot: int = 1000,
                         trainer: Trainer | None = None, on_error: str = "skip") -> dict[str, Any]:
    """Per source S: train on the other sources' train+val parts, test on all of S (external).

    Also an ``internal`` reference: train on every source's train+val, test on the test part.
    ``trainer`` (see :data:`Trainer`) replaces the default probe model. Writes
    ``leave_one_source_out.json`` / ``.html``.
    """
    t = get_task(task)
    if t.kind != "single":
        raise CXRError(f"leave-one-source-out needs a single-label task, got {task!r} ({t.kind}); "
                       "choose one of covid, pneumonia, 3class, 4class")
    ds = load_data(data, on_error)
    source = ds.meta["source"].astype(str).to_numpy()
    sources = sorted(set(source))
    if len(sources) < 2:
        raise DataError(f"the data hold one source only ({sources}): nothing to leave out",
                        hint="pass two or more datasets")
    part = (load_split(split_csv, ds) if split_csv else make_split(ds, t, seed=seed))["part"].to_numpy()
    paths = ds.meta["path"].astype(str).tolist()
    skipped: list[dict[str, Any]] = []
    if trainer is None:
        X, ok, skipped = probe_features(paths, img_size, arch, weights, features, cache_dir, seed)
        trainer = ProbeTrainer(X, [p for p, k in zip(paths, ok) if k], seed)
        model_desc = (f"probe model: logistic regression on {'+'.join(feature_sets(features, weights))} "
                      f"features of {arch} at {img_size} px, weights={weights}")
    else:
        ok, model_desc = np.ones(len(ds), dtype=bool), f"trainer {getattr(trainer, '__name__', trainer)!r}"
    labelled = ~np.isnan(t.encode(ds)).any(axis=1) & ok
    folds = {"internal": (labelled & (part != "test"), labelled & (part == "test"), "internal")}
    for s in sources:
        folds[s] = (labelled & (source != s) & (part != "test"), labelled & (source == s), "external")
    results = {name: _fold(ds, t, part, tr, te, kind, trainer, n_boot, seed)
               for name, (tr, te, kind) in folds.items()}
    summary = [f"Leave-one-source-out, task {task} ({model_desc}). Each held-out source is an "
               "external test: the model never saw any of its images."]
    summary += [f"{name}: {r['skipped']}" if "skipped" in r else
                f"{name} ({r['test_set']}, n={r['n_test']}): ROC-AUC {ci_text(r['metrics']['roc_auc'])}"
                for name, r in results.items()]
    result = {"check": "leave_one_source_out", "task": task, "classes": t.classes(ds),
              "sources": sources, "model": model_desc, "folds": results, "skipped": skipped,
              "bootstrap": {"n_boot": n_boot, "resampling": "patients"}, "summary": summary}
    rows = [[n, r.get("test_set"), r.get("n_train"), r.get("n_test"),
             ci_text(r["metrics"]["roc_auc"]) if "metrics" in r else r["skipped"],
             ci_text(r["metrics"]["balanced_accuracy"]) if "metrics" in r else ""]
            for n, r in results.items()]
    return write_check(result, out_dir, "leave_one_source_out", "Leave one source out", rows,
                  ["held out", "test set", "train images", "test images", "ROC-AUC (macro)",
                   "balanced accuracy"])


def _fold(ds: Any, task: Any, part: np.ndarray, train: np.ndarray, test: np.ndarray, kind: str,
          trainer: Trainer, n_boot: int, seed: int) -> dict[str, Any]:
    """Train on ``train`` rows, score on ``test`` rows; a reason instead when impossible."""
    classes = task.classes(ds)
    y_tr = task.encode(ds)[train]
    present = sorted({classes[i] for i in y_tr.argmax(axis=1)})
    base = {"test_set": kind, "n_train": int(train.sum()), "n_test": int(test.sum()),
            "train_classes": present}
    if not test.any() or len(present) < 2:
        why = "no labelled test images" if not test.any() else f"training rows hold {present} only"
        return {**base, "skipped": f"not scored: {why}"}
    tr = ds.subset(train)
    tr.meta["part"] = part[train]
    te = ds.subset(test)
    P = np.asarray(trainer(tr, te, task), dtype=np.float64)
    missing = [c for c in classes if c not in present]
    notes = [f"classes {missing} never seen in training: the model cannot predict them"] if missing else []
    return {**base, "n_test_patients": int(te.meta["patient"].nunique()), "notes": notes,
            "metrics": scored(task.encode(te), P, classes, patient_groups(te), n_boot, seed)}

"""Label-efficiency experiment: supervised vs self-training at several labelled fractions.

One fixed patient-level split (``make_split``). The labelled subsets are nested patient
subsets of the train part (10 % ⊂ 25 % ⊂ 50 % ⊂ 100 %, stratified by each patient's class);
the unlabelled pool of a fraction is every other train image with its labels hidden, plus the
train images that have no label for the task at all (e.g. ieee8023 ``todo`` rows). Only
train-part images ever enter training, so no test patient leaks in. Every model is evaluated
on the same test part: macro ROC-AUC and balanced accuracy with patient-bootstrap 95 % CIs,
and the paired AUC difference (self-training − supervised) on the same resamples.

No validation part is used (fixed epochs and thresholds): a validation set with every label
would be labels the low-fraction runs are not supposed to have.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import pandas as pd

from training import io
from training.config import DataOptions, opt
from training.errors import DataError
from training.io import jsonable
from training.semi.model import small_cnn
from training.semi.pseudo_label import SelfTrainConfig, fit_model, predict, self_train
from training.data.cache import ImageCache, default_cache_dir
from training.data.formats import load_datasets
from training.data.splits import load_split, make_split, save_split
from training.data.tasks import get_task
from training.evaluation.bootstrap import ScalarMetric, paired_bootstrap
from training.evaluation.bootstrap import bootstrap_metrics
from training.evaluation.metrics import compute_metrics
from training.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

FRACTIONS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)


def _floats(value: Any) -> tuple[float, ...]:
    """``"0.1,0.25"`` (a flag) or a sequence → a tuple of floats."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(float(v) for v in items)


@dataclass
class SemiConfig(DataOptions):
    """Everything one experiment run depends on (saved in results.json; every field a flag)."""

    out: str = opt("semi-output", "output folder")
    task: str = opt("4class", "label set (single-label or multilabel task name)")
    fractions: tuple[float, ...] = opt(FRACTIONS, "labelled fractions of the train part, increasing "
                                       "in (0, 1]", metavar="F,F,...")
    img_size: int = opt(64, "input size in px")
    rounds: int = opt(2, "self-training rounds")
    threshold: float = opt(0.9, "pseudo-label confidence threshold, in (0, 1]")
    pseudo_weight: float = opt(0.5, "loss weight of pseudo-labels, in [0, 1]")
    epochs: int = opt(10, "epochs per model")
    min_steps: int = opt(300, "at least this many training steps per model (small fractions)")
    batch_size: int = opt(64, "batch size")
    lr: float = opt(1e-3, "learning rate")
    augment: bool = opt(True, "on-device augmentation while training")
    max_images: int | None = opt(None, "patient-level cap on the whole dataset (quick runs)")
    parts: tuple[float, float, float] = opt((0.8, 0.0, 0.2), "TRAIN,VAL,TEST fractions of a new split",
                                            metavar="T,V,T")
    split: str | None = opt(None, "a saved split CSV (default: make one, saved in OUT)")
    seed: int = opt(0, "random seed")
    n_boot: int = opt(1000, "bootstrap resamples for the CIs")
    cache_dir: str | None = opt(None, "preprocessed-image cache (default ~/.cache/cxrlab)")
    widths: tuple[int, ...] = opt((16, 32, 64, 128), "channels of the small CNN's blocks", metavar="W,W,...")

    def __post_init__(self) -> None:
        super().__post_init__()
        fr = _floats(self.fractions)
        if not fr or any(not 0 < f <= 1 for f in fr) or list(fr) != sorted(set(fr)):
            raise ValueError(f"fractions must be increasing values in (0, 1], got {self.fractions!r}")
        self.fractions = fr
        parts = _floats(self.parts)
        total = sum(parts)
        if len(parts) != 3 or min(parts) < 0 or total <= 0:
            raise ValueError(f"parts must be 3 non-negative fractions, got {self.parts!r}")
        self.parts = tuple(v / total for v in parts)  # type: ignore[assignment]
        self.widths = tuple(int(w) for w in _floats(self.widths))
        self.train_config()  # checks rounds, threshold, ... now, before any data is loaded

    def train_config(self) -> SelfTrainConfig:
        return SelfTrainConfig(rounds=self.rounds, threshold=self.threshold, pseudo_weight=self.pseudo_weight,
                               epochs=self.epochs, min_steps=self.min_steps, batch_size=self.batch_size, lr=self.lr,
                               augment=self.augment, seed=self.seed)


# ------------------------------------------------------------------ subsets
def patient_strata(patients: Sequence[str], labels: np.ndarray) -> pd.Series:
    """One stratum per patient: the most common class (argmax) among its labelled rows."""
    cls = np.asarray(labels, dtype=np.float64)
    frame = pd.DataFrame({"patient": list(patients), "cls": np.nan_to_num(cls).argmax(axis=1)})
    return frame.groupby("patient")["cls"].agg(lambda s: s.value_counts().index[0])


def nested_fractions(patients: Sequence[str], labels: np.ndarray, fractions: Sequence[float],
                     seed: int = 0) -> dict[float, np.ndarray]:
    """Boolean row masks, one per fraction: nested patient subsets, stratified by class.

    Each stratum's patients are shuffled once (``seed``); fraction ``f`` takes the first
    ``ceil(f · n)`` of every stratum, so a smaller fraction's patients are always inside a
    larger one's and every class is present from the smallest fraction on.
    """
    patients = np.asarray(list(patients), dtype=object)
    strata = patient_strata(patients, labels)
    rng = np.random.default_rng(seed)
    order = {s: rng.permutation(np.sort(strata.index[strata == s].to_numpy())) for s in sorted(strata.unique())}
    out = {}
    for f in fractions:
        chosen = np.concatenate([ids[:math.ceil(f * len(ids) - 1e-9)] for ids in order.values()])
        out[float(f)] = np.isin(patients, chosen)
    return out


def cap_patients(ds, max_images: int | None, seed: int):
    """A patient-level random subset of ``ds`` with about ``max_images`` images (None: all)."""
    if max_images is None or len(ds) <= max_images:
        return ds
    patients = ds.meta["patient"].astype(str)
    sizes = patients.value_counts().sort_index()
    shuffled = sizes.iloc[np.random.default_rng(seed).permutation(len(sizes))]
    keep = shuffled.index[(shuffled.cumsum() <= max_images).to_numpy()]
    return ds.subset(patients.isin(keep).to_numpy())


# ------------------------------------------------------------------ data
@dataclass
class Data:
    """Images and targets of the train and test parts (unreadable images left out)."""

    classes: list[str]
    dropped: list[str]
    kind: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]  # NaN rows = unlabelled for the task
    patients: dict[str, np.ndarray]
    split_counts: dict[str, Any]
    skipped: list[dict[str, Any]]


def load_data(cfg: SemiConfig) -> Data:
    """Dataset, split (saved as ``out/split.csv``), task targets and cached images."""
    task = get_task(cfg.task)
    ds = cap_patients(load_datasets(cfg.data_spec), cfg.max_images, cfg.seed)
    targets = task.encode(ds)
    split = load_split(cfg.split, ds) if cfg.split else make_split(ds, task, parts=cfg.parts, seed=cfg.seed)
    save_split(split, Path(cfg.out) / "split.csv")
    classes = task.classes(ds)
    present = np.nansum(targets == 1, axis=0) > 0
    if task.kind == "single" and present.sum() < 2:
        raise DataError(f"task {cfg.task!r} has fewer than two classes with labelled images in {ds.name!r}",
                        hint="choose another task or add data")
    dropped = [c for c, ok in zip(classes, present) if not ok]
    if dropped:  # an output without a single example cannot be trained or evaluated
        log.warning("classes without any labelled image, left out of the model: %s", dropped)
    targets, classes = targets[:, present], [c for c, ok in zip(classes, present) if ok]
    part = split["part"].to_numpy()
    labelled = ~np.isnan(targets).all(axis=1)
    rows = {"train": np.flatnonzero(part == "train"), "test": np.flatnonzero((part == "test") & labelled)}
    x, y, pats, skipped = {}, {}, {}, list(ds.skipped)
    for name, r in rows.items():
        r, x[name], bad = _images(cfg, ds, r)
        skipped += [{**b, "part": name} for b in bad]
        y[name], pats[name] = targets[r], ds.meta["patient"].astype(str).to_numpy()[r]
    if not (~np.isnan(y["train"]).all(axis=1)).any() or len(y["test"]) == 0:
        raise DataError(f"no labelled train or test images for task {cfg.task!r} in {ds.name!r}",
                        hint="check the data, the task and the split parts")
    counts = {p: {"images": int(len(y[p])), "patients": int(len(set(pats[p]))),
                  "unlabelled": int(np.isnan(y[p]).all(axis=1).sum()),
                  "classes": {c: int(np.nansum(y[p][:, j] == 1)) for j, c in enumerate(classes)}}
              for p in rows}
    return Data(classes, dropped, task.kind, x, y, pats, counts, skipped)


def _images(cfg: SemiConfig, ds, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``(rows kept, uint8 images, unreadable files)`` from the preprocessed-image cache."""
    cache = ImageCache(cfg.cache_dir or default_cache_dir())
    paths = ds.meta["path"].astype(str).to_numpy()[rows].tolist()
    images, errors = cache.load(paths, PreprocessConfig(size=cfg.img_size), on_error=cfg.on_error)
    if not errors:
        return rows, images, []
    keep = np.setdiff1d(np.arange(len(rows)), [e["index"] for e in errors])
    log.warning("%d unreadable images left out (listed in results.json)", len(errors))
    return rows[keep], images[keep], [{"path": e["path"], "reason": e["reason"]} for e in errors]


# ------------------------------------------------------------------ evaluation
def evaluate(y: np.ndarray, p: np.ndarray, patients: np.ndarray, kind: str, classes: list[str],
             n_boot: int, seed: int) -> dict[str, Any]:
    """Macro ROC-AUC and balanced accuracy with patient-bootstrap 95 % CIs, and n."""
    point = compute_metrics(y, p, kind, classes, thresholds=0.5)
    ci = bootstrap_metrics(y, p, kind, classes, thresholds=0.5, groups=patients, n_boot=n_boot, seed=seed)
    bal_point = point["balanced_accuracy"] if kind == "single" else point["macro"]["balanced_accuracy"]
    bal_ci = ci["balanced_accuracy"] if kind == "single" else ci["macro"]["balanced_accuracy"]
    auc_ci = ci["macro"]["roc_auc"]
    return {"auc": {"value": point["macro"]["roc_auc"], "low": auc_ci["low"], "high": auc_ci["high"]},
            "balanced_accuracy": {"value": bal_point, "low": bal_ci["low"], "high": bal_ci["high"]},
            "per_class_auc": {c: point["per_output"][c]["roc_auc"] for c in classes},
            "n_images": int(len(y)), "n_patients": int(len(set(patients)))}


def _auc_difference(y, p_semi, p_sup, patients, kind, n_boot, seed) -> dict[str, float]:
    return paired_bootstrap(ScalarMetric("roc_auc", 0.5, kind), y, p_semi, p_sup,
                            groups=patients, n_boot=n_boot, seed=seed)


# ------------------------------------------------------------------ the experiment
def run_experiment(cfg: SemiConfig) -> dict[str, Any]:
    """Train and evaluate every (fraction, with/without pool) pair; write results and figure."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    data = load_data(cfg)
    tcfg = cfg.train_config()
    train_known = ~np.isnan(data.y["train"]).all(axis=1)
    masks = nested_fractions(data.patients["train"][train_known], data.y["train"][train_known],
                             cfg.fractions, cfg.seed)
    runs = [_one_fraction(cfg, tcfg, data, f, _in_train(train_known, masks[f])) for f in cfg.fractions]
    results = {"config": jsonable(asdict(cfg)), "classes": data.classes, "classes_dropped": data.dropped,
               "kind": data.kind, "model": "small_cnn (trained from scratch, no pretrained weights)",
               "split": data.split_counts, "skipped": data.skipped, "runs": runs,
               "seconds": round(time.time() - start, 1), "versions": {"keras": keras.__version__}}
    io.write_json(out / "results.json", results)
    plot_label_efficiency(results, out / "label_efficiency.png")
    return results


def _in_train(train_known: np.ndarray, mask_known: np.ndarray) -> np.ndarray:
    """A mask over labelled train rows, lifted to a mask over every train row."""
    full = np.zeros(len(train_known), dtype=bool)
    full[np.flatnonzero(train_known)[mask_known]] = True
    return full


def _one_fraction(cfg: SemiConfig, tcfg: SelfTrainConfig, data: Data, fraction: float,
                  labelled: np.ndarray) -> dict[str, Any]:
    """The supervised model on ``labelled`` train rows, then self-training with the rest."""
    x, y = data.x["train"], data.y["train"]

    def score(p: np.ndarray) -> dict[str, Any]:
        return evaluate(data.y["test"], p, data.patients["test"], data.kind, data.classes,
                        cfg.n_boot, cfg.seed)

    def build() -> keras.Model:
        keras.utils.set_random_seed(cfg.seed)  # same init and draws for every run
        return small_cnn(len(data.classes), data.kind, cfg.img_size, cfg.seed, tuple(cfg.widths))

    t0 = time.time()
    sup = fit_model(build(), x[labelled], y[labelled], data.kind, tcfg)
    p_sup = predict(sup, data.x["test"])
    entry: dict[str, Any] = {
        "fraction": fraction,
        "labelled": {"images": int(labelled.sum()), "patients": int(len(set(data.patients["train"][labelled])))},
        "pool": int((~labelled).sum()),
        "supervised": {**score(p_sup),
                       "seconds": round(time.time() - t0, 1)},
    }
    log.info("fraction %.2f supervised: AUC %.3f", fraction, entry["supervised"]["auc"]["value"])
    if entry["pool"] == 0 or cfg.rounds == 0:
        entry["self_training"] = {**entry["supervised"], "same_as_supervised": True,
                                  "why": "no unlabelled images in the pool" if entry["pool"] == 0 else "rounds = 0"}
        return entry
    t0 = time.time()
    model, history = self_train(build, x[labelled], y[labelled], x[~labelled], data.kind, tcfg,
                                teacher=sup, y_hidden=y[~labelled])
    p_semi = predict(model, data.x["test"])
    entry["self_training"] = {**score(p_semi),
                              "rounds": history, "seconds": round(time.time() - t0, 1)}
    entry["auc_difference"] = _auc_difference(data.y["test"], p_semi, p_sup, data.patients["test"],
                                              data.kind, cfg.n_boot, cfg.seed)
    log.info("fraction %.2f self-training: AUC %.3f", fraction, entry["self_training"]["auc"]["value"])
    return entry


# ------------------------------------------------------------------ figure
def plot_label_efficiency(results: dict[str, Any], path: str | Path) -> Path:
    """Test macro AUC (95 % CI bars) against the labelled fraction, one line per method."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, no backend switch

    runs = results["runs"]
    fr = np.array([r["fraction"] for r in runs])
    fig = Figure(figsize=(5.5, 3.8), dpi=100)
    ax = fig.subplots()
    for key, label, shift, marker in (("supervised", "labelled only", 0.985, "o"),
                                      ("self_training", "+ unlabelled pool (self-training)", 1.015, "s")):
        v = np.array([_nan(r[key]["auc"]["value"]) for r in runs])
        lo = np.array([_nan(r[key]["auc"]["low"]) for r in runs])
        hi = np.array([_nan(r[key]["auc"]["high"]) for r in runs])
        err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
        # a small horizontal offset keeps overlapping CI bars readable
        ax.errorbar(fr * shift, v, yerr=np.nan_to_num(err), marker=marker, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(fr, [f"{f:.0%}" for f in fr])
    ax.minorticks_off()
    n_test = runs[0]["supervised"]["n_images"] if runs else 0
    ax.set(xlabel="labelled fraction of the train part (patients)", ylabel="test macro ROC-AUC",
           title=f"Label efficiency, task {results['config']['task']} (test n={n_test}, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    io.write_figure(path, fig)
    return path


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)

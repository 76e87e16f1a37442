"""Confidence-thresholded pseudo-labels and a self-training loop.

Self-training (Lee 2013; Xie et al. 2020 "noisy student"): train on the labelled images,
predict the unlabelled pool, keep only confident predictions as pseudo-labels, retrain a
fresh model on labelled + pseudo-labelled images (pseudo rows weighted lower), repeat for
``rounds`` rounds. Pseudo-labels are recomputed over the whole pool every round (never
accumulated), and the student is re-initialised, so early mistakes are not locked in.

Multilabel pseudo-labels keep the project's NaN convention: an output whose probability is
neither confidently high nor confidently low stays NaN (unknown, ignored by the loss); it is
never turned into a negative.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import keras
import numpy as np

from training.engine.augment import build_augmentation, with_augmentation
from training.engine.data import ArrayBatches, class_balance_weights
from training.engine.loop import fit_batches

log = logging.getLogger(__name__)

Thresholds = float | Sequence[float]
Balance = None | str | Sequence[float]


# ------------------------------------------------------------------ selection
def _per_class(value: Thresholds, n: int, name: str) -> np.ndarray:
    """A scalar or one value per class, as an ``(n,)`` array checked to lie in [0, 1]."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a number or {n} values (one per class), got {value!r}")
    if ((arr < 0) | (arr > 1)).any():
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return arr


def _proportions(class_balance: Balance, n: int) -> np.ndarray | None:
    """Target class proportions (single) or positive rates (multilabel); None = no balancing."""
    if class_balance is None:
        return None
    if isinstance(class_balance, str):
        if class_balance != "equal":
            raise ValueError(f"class_balance must be None, 'equal' or proportions, got {class_balance!r}")
        return np.full(n, 1.0 / n) if n > 1 else np.full(n, 0.5)
    return _per_class(class_balance, n, "class_balance")


def select_pseudo_labels(probs: np.ndarray, threshold: Thresholds, kind: str,
                         class_balance: Balance = None,
                         low: Thresholds | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``probs`` (N, C) confident enough to pseudo-label: ``(indices, labels)``.

    ``single`` (softmax): row ``i`` is kept when ``max p ≥ threshold[argmax]``; its label is
    the one-hot argmax. ``multilabel``: entry ``(i, j)`` becomes 1 when ``p ≥ threshold[j]``,
    0 when ``p ≤ low[j]`` (default ``1 - threshold``), else NaN; rows with no decided entry
    are not returned. Thresholds are a number or one per class.

    ``class_balance``: None (keep every confident row), ``"equal"``, or target proportions per
    class (single) / positive rates per output (multilabel), e.g. the labelled set's. The
    most confident candidates are kept up to the largest count that matches the proportions;
    a class with no candidate at all does not limit the others (it cannot be helped).
    Returns sorted int64 row indices and float32 labels ``(len(indices), C)``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"probs must be (N, C), got shape {probs.shape}")
    n_cls = probs.shape[1]
    hi = _per_class(threshold, n_cls, "threshold")
    target = _proportions(class_balance, n_cls)
    if kind == "single":
        return _select_single(probs, hi, target)
    if kind == "multilabel":
        lo = 1.0 - hi if low is None else _per_class(low, n_cls, "low")
        if (lo >= hi).any():
            raise ValueError(f"low ({lo.tolist()}) must be below threshold ({hi.tolist()})")
        return _select_multilabel(probs, hi, lo, target)
    raise ValueError(f"kind must be 'single' or 'multilabel', got {kind!r}")


def _top(candidates: np.ndarray, confidence: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most confident of ``candidates`` (stable order for ties)."""
    order = np.argsort(-confidence[candidates], kind="stable")
    return candidates[order[:max(int(k), 0)]]


def _select_single(probs: np.ndarray, hi: np.ndarray, target: np.ndarray | None):
    arg, conf = probs.argmax(axis=1), probs.max(axis=1)
    confident = conf >= hi[arg]
    by_class = [np.flatnonzero(confident & (arg == c)) for c in range(probs.shape[1])]
    if target is not None:
        limits = [len(rows) / t for rows, t in zip(by_class, target) if len(rows) and t > 0]
        total = min(limits) if limits else 0.0
        by_class = [_top(rows, conf, np.floor(total * t + 1e-9)) for rows, t in zip(by_class, target)]
    idx = np.sort(np.concatenate(by_class)).astype(np.int64)
    labels = np.eye(probs.shape[1], dtype=np.float32)[arg[idx]]
    return idx, labels


def _select_multilabel(probs: np.ndarray, hi: np.ndarray, lo: np.ndarray, target: np.ndarray | None):
    labels = np.full(probs.shape, np.nan, dtype=np.float32)
    for j in range(probs.shape[1]):
        p = probs[:, j]
        pos, neg = np.flatnonzero(p >= hi[j]), np.flatnonzero(p <= lo[j])
        if target is not None:
            pos, neg = _balance_binary(pos, neg, p, target[j])
        labels[pos, j], labels[neg, j] = 1.0, 0.0
    idx = np.flatnonzero(~np.isnan(labels).all(axis=1)).astype(np.int64)
    return idx, labels[idx]


def _balance_binary(pos: np.ndarray, neg: np.ndarray, p: np.ndarray, rate: float):
    """Most confident positives/negatives such that positives / all ≈ ``rate``."""
    limits = [len(rows) / r for rows, r in ((pos, rate), (neg, 1 - rate)) if len(rows) and r > 0]
    total = min(limits) if limits else 0.0
    return _top(pos, p, np.floor(total * rate + 1e-9)), _top(neg, 1 - p, np.floor(total * (1 - rate) + 1e-9))


# ------------------------------------------------------------------ training
@dataclass
class SelfTrainConfig:
    """Training and pseudo-labelling settings (one model per round, same budget each)."""

    rounds: int = 2
    threshold: float = 0.9
    low: float | None = None  # multilabel only; default 1 - threshold
    pseudo_weight: float = 0.5  # loss weight of a pseudo-labelled row relative to a labelled one
    class_balance: bool = True  # pseudo-labels follow the labelled class proportions
    epochs: int = 10
    min_steps: int = 300  # small labelled sets get more epochs: at least this many updates
    batch_size: int = 64
    lr: float = 1e-3
    augment: bool = True
    balance_loss: bool = True  # "balanced" class weights in the loss
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"rounds must be >= 0, epochs and batch_size >= 1: {asdict(self)}")
        if not 0 < self.threshold <= 1 or not 0 <= self.pseudo_weight <= 1:
            raise ValueError(f"threshold must be in (0, 1] and pseudo_weight in [0, 1]: {asdict(self)}")


def fit_model(model: keras.Model, x: np.ndarray, y: np.ndarray, kind: str, cfg: SelfTrainConfig,
              row_weight: np.ndarray | None = None) -> keras.Model:
    """Train ``model`` in place on uint8 images ``x`` and targets ``y`` (NaN = unknown).

    Through the project's one loop (:func:`training.engine.loop.fit_batches`): Adam with a
    cosine decay over all steps, the masked loss, optional on-device augmentation.
    """
    weight = np.ones(len(y), np.float32) if row_weight is None else np.asarray(row_weight, np.float32)
    if cfg.balance_loss:
        weight = weight * class_balance_weights(y)[0]
    batches = ArrayBatches(x, y, cfg.batch_size, shuffle=True, seed=cfg.seed, sample_weight=weight)
    fit_on = with_augmentation(model, build_augmentation(seed=cfg.seed)) if cfg.augment else model
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / max(len(batches), 1)))
    steps = max(len(batches), 1) * epochs
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.lr, steps))
    fit_batches(fit_on, batches, kind=kind, optimizer=optimizer, epochs=epochs)
    return model


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities ``(N, C)`` float64 (inference mode)."""
    if len(x) == 0:
        return np.zeros((0, int(model.output.shape[-1])))
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


def labelled_proportions(y: np.ndarray, kind: str) -> np.ndarray:
    """Class proportions (single) or positive rates (multilabel) of the known labels."""
    y = np.asarray(y, dtype=np.float64)
    if kind == "single":
        known = y[~np.isnan(y).any(axis=1)]
        return known.mean(axis=0) if len(known) else np.full(y.shape[1], 1.0 / y.shape[1])
    with np.errstate(invalid="ignore"):
        rate = np.nanmean(y, axis=0) if len(y) else np.full(y.shape[1], np.nan)
    return np.nan_to_num(rate, nan=0.5)


def self_train(build: Callable[[], keras.Model], x_lab: np.ndarray, y_lab: np.ndarray,
               x_unlab: np.ndarray, kind: str, cfg: SelfTrainConfig,
               teacher: keras.Model | None = None,
               y_hidden: np.ndarray | None = None) -> tuple[keras.Model, list[dict]]:
    """Self-training; returns the last model and one log entry per round.

    ``build()`` returns a fresh, untrained model. ``teacher``: an already trained round-0
    model on the labelled data (saves one training run); trained here when None.
    ``y_hidden``: the pool's true labels, used only to *report* pseudo-label accuracy
    (a diagnostic for experiments where labels were hidden); never used for training.
    """
    y_lab = np.asarray(y_lab, dtype=np.float32)
    model = teacher if teacher is not None else fit_model(build(), x_lab, y_lab, kind, cfg)
    balance = labelled_proportions(y_lab, kind) if cfg.class_balance else None
    history: list[dict] = []
    for r in range(1, cfg.rounds + 1):
        if len(x_unlab) == 0:
            break
        idx, pseudo = select_pseudo_labels(predict(model, x_unlab), cfg.threshold, kind,
                                           balance, cfg.low)
        entry = _round_log(r, len(x_unlab), idx, pseudo, y_hidden, kind)
        history.append(entry)
        log.info("self-training round %d: %d of %d pool images pseudo-labelled", r, len(idx), len(x_unlab))
        if len(idx) == 0:
            break  # nothing confident: retraining would only repeat the supervised model
        x = np.concatenate([x_lab, x_unlab[idx]])
        y = np.concatenate([y_lab, pseudo])
        w = np.concatenate([np.ones(len(y_lab), np.float32), np.full(len(idx), cfg.pseudo_weight, np.float32)])
        model = fit_model(build(), x, y, kind, cfg, row_weight=w)
    return model, history


def _round_log(r: int, n_pool: int, idx: np.ndarray, pseudo: np.ndarray,
               y_hidden: np.ndarray | None, kind: str) -> dict:
    entry = {"round": r, "pool": int(n_pool), "pseudo_labelled": int(len(idx)),
             "per_class": [int(v) for v in np.nansum(pseudo == 1, axis=0)] if len(idx) else []}
    if y_hidden is not None and len(idx):
        truth = np.asarray(y_hidden, dtype=np.float64)[idx]
        if kind == "single":  # rows whose true class is known; argmax agreement
            known = ~np.isnan(truth).any(axis=1)
            hits = pseudo[known].argmax(axis=1) == truth[known].argmax(axis=1)
        else:  # decided entries whose true value is known
            known = ~np.isnan(pseudo) & ~np.isnan(truth)
            hits = pseudo[known] == truth[known]
        entry["pseudo_checked"] = int(known.any(axis=1).sum() if known.ndim == 2 else known.sum())
        entry["pseudo_accuracy"] = float(hits.mean()) if hits.size else None
    return entry

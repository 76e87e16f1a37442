"""Post-hoc calibration of a saved model (``python -m training calibrate``).

For models trained before calibration existed, or to change the method: the calibration is
refit on the validation part of the model's split (never the test set), the thresholds are
re-chosen on the calibrated scale (the card's threshold method, default Youden), and the card
gets the calibration, the thresholds and the validation metrics on the new scale: the one
post-training step (``evaluation.posttrain``), as in training. Test metrics already in the
card were computed on the old scale: re-run ``evaluate``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from training.data.formats import load_datasets
from training.data.spec import DataSpec
from training.data.splits import split_hash
from training.errors import CXRError, SplitError
from training.evaluation.calibration import Calibration
from training.evaluation.evalset import EvalSet, image_cache, task_targets, training_split
from training.evaluation.evaluate import validation_predictions
from training.evaluation.posttrain import post_train
from training.evaluation.thresholds import MIN_PATIENTS, ThresholdMethod
from training.models.card import ModelCard, update_card
from training.runtime import load

log = logging.getLogger(__name__)


def card_threshold_method(card: ModelCard) -> tuple[str, float | None]:
    """``(method, target_sensitivity)`` the card's thresholds were chosen with (default youden)."""
    record = card.thresholds
    if record is None or record.method is ThresholdMethod.ARGMAX:
        return "youden", None
    return record.method.value, record.target_sensitivity


def _split_table(card: ModelCard, model_dir: Path, split: str | None) -> pd.DataFrame:
    """The split whose ``val`` part is calibrated on: ``split`` or the model's own."""
    if split is None:
        seen = training_split(card, model_dir)
        if seen is None:
            raise SplitError(f"{model_dir}: the model's split file {card.split.name!r} is "
                             "missing. What to do: pass the split CSV (--split).")
        return seen
    if card.split.sha256 and split_hash(split) != card.split.sha256:
        log.warning("%s is not the split the model was trained with (SHA-256 differs from the "
                    "card): its validation images may include training images", split)
    df = pd.read_csv(split, dtype=str, keep_default_na=False)
    df.attrs["file"] = str(split)
    return df


def _loaded(card: ModelCard, data: DataSpec) -> EvalSet:
    """The data holding the validation images (default: the card's training data, as trained)."""
    spec = data.for_model(DataSpec.from_dict(card.training.config))
    if not spec.data:
        raise CXRError("calibrate: no data given and the card lists no training data. What to do: "
                       "pass the data folders the model was trained on (--data).")
    ds = load_datasets(spec)
    return EvalSet(ds, task_targets(ds, card), "internal", None, "val", ds)


def recalibrate(model_dir: str | Path, data: DataSpec | Sequence[str] | None = None,
                split: str | None = None,
                method: str = "auto", threshold_method: str | None = None,
                target_sensitivity: float | None = None, batch_size: int = 32,
                cache_dir: str | Path | None = None,
                seed: int = 0, min_patients: int = MIN_PATIENTS) -> Calibration:
    """Refit the calibration of a saved model on its validation part and update its card.

    ``data`` defaults to the card's training data, ``split`` to the model's own split,
    ``threshold_method`` to the card's (youden); a threshold needs ``min_patients`` positive
    and negative validation patients. Returns the new calibration.
    """
    model_dir = Path(model_dir)
    lm = load(model_dir)
    evs = _loaded(lm.card, data if isinstance(data, DataSpec) else DataSpec(data or (), on_error="skip"))
    seen = _split_table(lm.card, model_dir, split)
    val = validation_predictions(lm, evs, seen, batch_size, image_cache(cache_dir))
    if val is None or val.n == 0:
        raise SplitError(f"{model_dir}: no validation images of the split were found in "
                         f"{list(evs.full.meta['source'].astype(str).unique())}. What to "
                         "do: pass the data folders the model was trained on (--data).")
    if threshold_method is None and target_sensitivity is None:
        threshold_method, target_sensitivity = card_threshold_method(lm.card)
    post = post_train(val.Y, val.P, lm.kind, lm.outputs, val.groups, calibration=method,
                      threshold_method=threshold_method or "youden",
                      target_sensitivity=target_sensitivity, min_patients=min_patients, seed=seed)
    old = lm.card.metrics
    validation = {**post.metrics, "note": "recomputed on calibrated probabilities by `calibrate`"}
    update_card(model_dir, calibration=post.calibration.to_json(), thresholds=post.thresholds.to_json(),
                metrics={**old.to_json(), "validation": validation})
    if old.test is not None:
        log.warning("%s: the card's test metrics predate this calibration; re-run evaluate", model_dir)
    return post.calibration

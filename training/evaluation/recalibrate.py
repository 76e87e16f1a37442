"""Post-hoc calibration of a saved model (``python -m training calibrate``).

For models trained before calibration existed, or to change the method: the calibration is
refit on the validation part of the model's split (never the test set), the thresholds are
re-chosen on the calibrated scale (the card's threshold method, default Youden), and the card
gets the calibration, the thresholds and the validation metrics on the new scale. Test
metrics already in the card were computed on the old scale: re-run ``evaluate``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from training.data.formats import load_datasets
from training.data.splits import split_hash
from training.errors import CXRError, SplitError
from training.evaluation.calibration import Calibration, fit_calibration
from training.evaluation.evalset import EvalSet, image_cache, task_targets, training_split
from training.evaluation.evaluate import validation_predictions
from training.evaluation.metrics import compute_metrics
from training.evaluation.predict import LoadedModel, load_models
from training.evaluation.thresholds import METHODS as THRESHOLD_METHODS
from training.evaluation.thresholds import choose_thresholds
from training.models.card import ModelCard, update_card

log = logging.getLogger(__name__)


def card_threshold_method(card: ModelCard) -> tuple[str, float | None]:
    """``(method, target_sensitivity)`` the card's thresholds were chosen with (default youden)."""
    text = (card.threshold_method or "").strip()
    found = re.match(r"sensitivity >= ([0-9.]+)", text)
    if found:
        return "sensitivity", float(found.group(1))
    first = text.split()[0] if text else ""
    return (first, None) if first in THRESHOLD_METHODS and first != "sensitivity" else ("youden", None)


def _split_table(card: ModelCard, model_dir: Path, split: str | None) -> pd.DataFrame:
    """The split whose ``val`` part is calibrated on: ``split`` or the model's own."""
    if split is None:
        seen = training_split(card, model_dir)
        if seen is None:
            raise SplitError(f"{model_dir}: the model's split file {card.split.get('file')!r} is "
                             "missing. What to do: pass the split CSV (--split).")
        return seen
    if card.split.get("sha256") and split_hash(split) != card.split["sha256"]:
        log.warning("%s is not the split the model was trained with (SHA-256 differs from the "
                    "card): its validation images may include training images", split)
    df = pd.read_csv(split, dtype=str, keep_default_na=False)
    df.attrs["file"] = str(split)
    return df


def _loaded(card: ModelCard, data: Sequence[str] | None, on_error: str, fmt: str | None,
            views: Sequence[str] | None, modalities: Sequence[str] | None) -> EvalSet:
    """The data holding the validation images (default: the card's training data)."""
    trained = card.training
    folders = [str(d) for d in (data or trained.get("data") or [])]
    if not folders:
        raise CXRError("calibrate: no data given and the card lists no training data. What to do: "
                       "pass the data folders the model was trained on (--data).")
    options = {"views": views if views is not None else trained.get("views"),
               "modalities": modalities if modalities is not None else trained.get("modalities")}
    if fmt in (None, "auto") and not data:  # the card's data: read as in training
        fmt = trained.get("fmt")
    ds = load_datasets(folders, fmt=fmt or "auto", on_error=on_error,
                       **{k: tuple(v) for k, v in options.items() if v is not None})
    return EvalSet(ds, task_targets(ds, card), "internal", None, "val", ds)


def _thresholds(lm: LoadedModel, Y: Any, P: Any, method: str,
                target_sensitivity: float | None) -> tuple[dict[str, float], str]:
    """Thresholds for every output on calibrated ``P``, and the card's method text (as training)."""
    values, fallback = choose_thresholds(Y, P, lm.outputs, None, method, target_sensitivity)
    label = method if target_sensitivity is None else f"sensitivity >= {target_sensitivity}"
    text = f"{label} on validation"
    if fallback:
        text += f"; 0.5 for {fallback} (validation empty or single-class)"
    return values, text


def recalibrate(model_dir: str | Path, data: Sequence[str] | None = None, split: str | None = None,
                method: str = "auto", threshold_method: str | None = None,
                target_sensitivity: float | None = None, batch_size: int = 32,
                on_error: str = "skip", fmt: str | None = None, views: Sequence[str] | None = None,
                modalities: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                seed: int = 0) -> Calibration:
    """Refit the calibration of a saved model on its validation part and update its card.

    ``data`` defaults to the card's training data, ``split`` to the model's own split,
    ``threshold_method`` to the card's (youden). Returns the new calibration.
    """
    model_dir = Path(model_dir)
    lm = load_models([model_dir])[0]
    evs = _loaded(lm.card, data, on_error, fmt, views, modalities)
    seen = _split_table(lm.card, model_dir, split)
    val = validation_predictions(lm, evs, seen, batch_size, image_cache(cache_dir))
    if val is None or val.n == 0:
        raise SplitError(f"{model_dir}: no validation images of the split were found in "
                         f"{[str(d) for d in data or lm.card.training.get('data') or []]}. What to "
                         "do: pass the data folders the model was trained on (--data).")
    cal = fit_calibration(val.Y, val.P, lm.kind, lm.outputs, method, seed, groups=val.groups)
    if threshold_method is None and target_sensitivity is None:
        threshold_method, target_sensitivity = card_threshold_method(lm.card)
    P = cal.apply(val.P)
    values, text = _thresholds(lm, val.Y, P, threshold_method or "youden", target_sensitivity)
    if not cal.is_identity:
        text += f" (on probabilities calibrated by {cal.method}, post hoc)"
    old = lm.card.metrics or {}
    validation = {**compute_metrics(val.Y, P, lm.kind, lm.outputs, values), "n_images": val.n,
                  "note": "recomputed on calibrated probabilities by `calibrate`"}
    if "loss" in (old.get("validation") or {}):
        validation["loss_uncalibrated"] = old["validation"]["loss"]
    update_card(model_dir, calibration=cal.to_json(), thresholds=values, threshold_method=text,
                metrics={**old, "validation": validation})
    if old.get("test"):
        log.warning("%s: the card's test metrics predate this calibration; re-run evaluate", model_dir)
    return cal

"""Fitting a model's OOD gate on its own split: training features for μ/Σ, validation for thresholds.

Training calls :func:`fit_model_gate` after the last epoch; :func:`refit_gate` does the same
for a saved model (``python -m training fit-gate``), reloading the images the trainer used
through its config and the image cache.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np

from training.config import config_keys, load_config
from training.data.cached_images import CachedImages
from training.data.spec import KEYS, DataSpec
from training.engine.feature_cache import compute_features
from training.engine.prepare import prepare
from training.gate.ood import GateRecord, OODGate, fit_gate, save_gate
from training.gate.verdict import REFUSE_ALPHA
from training.models.card import load_model, update_card
from training.models.parts import feature_model, gate_layers

log = logging.getLogger(__name__)


#: Images per part the gate is fitted on (a seeded sample of bigger parts): μ, the PCA and the
#: percentiles are well estimated from 10,000, and the PCA's memory grows with the rows
#: (float64 features; 2048 per image for ResNet50), so a 200k-image collection stays flat.
GATE_MAX_IMAGES = 10_000


def _sample(images: Any, limit: int, seed: int) -> Any:
    """At most ``limit`` rows of ``images`` (a seeded sample, in row order), lazily for a view."""
    if len(images) <= limit:
        return images
    rows = np.sort(np.random.default_rng(seed).choice(len(images), limit, replace=False))
    return images.subset(rows) if isinstance(images, CachedImages) else images[rows]


def fit_model_gate(model: keras.Model, train_images: np.ndarray, val_images: np.ndarray,
                   gradcam_layer: str | None = None, batch_size: int = 32) -> OODGate:
    """The gate of ``model`` from uint8 training and validation images (inference mode; an
    array or a lazy cache view, read per batch; at most :data:`GATE_MAX_IMAGES` of each)."""
    layers = gate_layers(model, gradcam_layer)
    fm = feature_model(model, layers)
    train = compute_features(fm, _sample(train_images, GATE_MAX_IMAGES, 0), batch_size)
    val_images = _sample(val_images, GATE_MAX_IMAGES, 1)
    val = compute_features(fm, val_images, batch_size) if len(val_images) else train[:0]
    gate = fit_gate(train, val, feature_layers=layers)
    log.info("OOD gate: %d training / %d validation images, 95th / 99th percentile %.2f / %.2f",
             len(train), len(val), gate.warn_threshold, gate.threshold)
    if 4 / (len(val) + 1) > REFUSE_ALPHA:
        log.warning("OOD gate: with %d validation images, a bank of four models cannot refuse an "
                    "image on this model's score alone (its smallest p-value is 1/%d; a refusal needs "
                    "4 x p <= %.2f): a validation part of >= %d images is needed for that",
                    len(val), len(val) + 1, REFUSE_ALPHA, int(4 / REFUSE_ALPHA) - 1)
    return gate


def refit_gate(model_dir: str | Path, data: DataSpec | None = None,
               batch_size: int = 32) -> GateRecord:
    """Fit the gate of a saved model on its split; writes ``gate.npz`` and the card's ``gate``.

    ``data``: what to read instead of the model's training data (see ``DataSpec.for_model``)."""
    d = Path(model_dir)
    model, card = load_model(d)
    overrides: dict[str, Any] = {"split": card.split.file, "out": str(d)}
    config = d / "config.yaml"
    if config.is_file():
        cfg = load_config(config, overrides=overrides)
    else:
        cfg = load_config(None, overrides={**_card_config(card), **overrides})
    spec = cfg.data_spec if data is None else data.for_model(cfg.data_spec)
    # every training image describes the domain: no max_images
    cfg = dataclasses.replace(cfg, max_images=None, **spec.to_dict())
    prep = prepare(cfg)
    gate = fit_model_gate(model, prep.images["train"], prep.images["val"], card.gradcam_layer,
                          batch_size)
    entry = save_gate(gate, d)
    update_card(d, gate=entry)
    return entry


def _card_config(card: Any) -> dict[str, Any]:
    """The training config keys a card records (for models saved without config.yaml)."""
    # "feature_cache" in the card is the trainer's fact (bool), not the config's setting.
    keys = set(config_keys()) - {"feature_cache"} - set(KEYS)
    config = card.training.config
    given = {k: v for k, v in config.items() if k in keys and v is not None}
    return {**given, **DataSpec.from_dict(config).to_dict()}

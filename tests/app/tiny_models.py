"""Tiny Keras models with valid cards, saved like real ones (for app tests)."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

SIZE = 32
PREP = {"size": SIZE, "clip_percentile": 0.5, "resize": "pad", "clahe": False,
        "clahe_clip": 0.01, "channels": 3}
SPECS = [  # name, architecture, kind, outputs, preprocessing overrides
    ("tiny-multi", "resnet50", "multilabel", ["No Finding", "Pneumonia", "COVID-19", "ARDS"], {}),
    ("tiny-single", "vgg16", "single", ["Normal", "Pneumonia"], {"clahe": True}),
]


def tiny_model(n_out: int, activation: str, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    x = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.Rescaling(1 / 255.0)(x)
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(n_out, activation=activation, name="head")(y)
    return keras.Model(x, y)


def card_for(name: str, arch: str, kind: str, outputs: list[str], prep: dict, **extra) -> dict:
    card = {
        "name": name, "architecture": arch, "task": "test", "kind": kind, "outputs": outputs,
        "input_size": SIZE, "preprocessing": {**PREP, **prep}, "gradcam_layer": "last_conv",
        "transfer": {"mode": "full", "weights": None},
        "split": {"file": "split.csv", "sha256": "ab" * 32, "counts": {"train": 7, "val": 2, "test": 3}},
        "data": {"sources": ["kermany"], "counts": {"train": {o: 3 for o in outputs}}},
        "thresholds": {o: 0.5 for o in outputs}, "threshold_method": "fixed",
        "metrics": {"validation": {}, "test": {}}, "test_set": None,
    }
    card.update(extra)
    return card


def write_models(root: Path, specs=SPECS) -> Path:
    """Save each spec as ``root/<name>/`` (model.keras + card.json) via card.save_model."""
    from training.models.card import save_model

    root.mkdir(parents=True, exist_ok=True)
    for i, (name, arch, kind, outputs, prep) in enumerate(specs):
        act = "softmax" if kind == "single" else "sigmoid"
        model = tiny_model(len(outputs), act, seed=i)
        save_model(model, card_for(name, arch, kind, outputs, prep), root / name)
    return root


def probe_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)

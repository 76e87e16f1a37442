"""The card's validation metrics use the same decision rule as ``evaluate``."""
from types import SimpleNamespace

import keras
import numpy as np

from training.engine.fit import validation_report
from training.evaluation.metrics import compute_metrics


def _fixed_scores_model(size: int = 4) -> keras.Model:
    """A 2-class softmax whose positive probability is the image's mean pixel / 255."""
    inp = keras.Input((size, size, 3))
    p = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inp))[:, :1]
    return keras.Model(inp, keras.layers.Concatenate()([1 - p, p]))


def test_two_class_softmax_validation_uses_the_positive_threshold():
    """Regression: validation passed thresholds as a list, which the metrics ignored (argmax),
    while ``evaluate`` used the positive class's threshold: the two disagreed on one card."""
    p_pos = np.array([0.10, 0.15, 0.20, 0.30, 0.35, 0.40])  # all below 0.5: argmax says "Normal"
    y = np.eye(2, dtype="float32")[[0, 0, 0, 1, 1, 1]]
    images = np.broadcast_to((p_pos * 255).round()[:, None, None, None], (6, 4, 4, 3)).astype("uint8")
    prep = SimpleNamespace(targets=y, index={"val": np.arange(6)}, images={"val": images},
                           classes=["Normal", "Pneumonia"], task=SimpleNamespace(kind="single"))
    metrics, thresholds, method = validation_report(_fixed_scores_model(), prep, batch_size=3)
    assert 0.2 < thresholds["Pneumonia"] <= 0.30 and "youden" in method
    assert metrics["accuracy"] == 1.0  # the positive-class threshold separates them
    argmax = compute_metrics(y, np.stack([1 - p_pos, p_pos], 1), "single", prep.classes, None)
    assert argmax["accuracy"] == 0.5  # what the card used to report


def test_a_threshold_list_is_honoured_like_a_dict():
    y = np.eye(2)[[0, 1, 1]]
    p = np.array([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4]])
    names = ["a", "b"]
    as_list = compute_metrics(y, p, "single", names, [0.5, 0.25])
    as_dict = compute_metrics(y, p, "single", names, {"a": 0.5, "b": 0.25})
    assert as_list["accuracy"] == as_dict["accuracy"] == 1.0

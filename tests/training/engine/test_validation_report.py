"""The trainer's post-training step: the card's validation metrics use the same decision rule
as ``evaluate``; thresholds on the calibrated scale, only where enough patients."""
from types import SimpleNamespace

import keras
import numpy as np
import pytest

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
    post = validation_report(_fixed_scores_model(), prep, batch_size=3, calibration="none",
                             min_patients=3)
    assert 0.2 < post.thresholds.values()["Pneumonia"] <= 0.30 and "youden" in post.thresholds.describe()
    assert set(post.thresholds.entries) == {"Pneumonia"}  # the positive class only
    assert post.metrics["accuracy"] == 1.0  # the positive-class threshold separates them
    argmax = compute_metrics(y, np.stack([1 - p_pos, p_pos], 1), "single", prep.classes, None)
    assert argmax["accuracy"] == 0.5  # what the card used to report


def test_a_threshold_list_is_honoured_like_a_dict():
    y = np.eye(2)[[0, 1, 1]]
    p = np.array([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4]])
    names = ["a", "b"]
    as_list = compute_metrics(y, p, "single", names, [0.5, 0.25])
    as_dict = compute_metrics(y, p, "single", names, {"a": 0.5, "b": 0.25})
    assert as_list["accuracy"] == as_dict["accuracy"] == 1.0


def test_validation_report_calibrates_and_thresholds_on_the_calibrated_scale():
    """The calibration is fitted on raw validation scores; thresholds and metrics use calibrated ones."""
    rng = np.random.default_rng(0)
    p_pos = rng.uniform(0.05, 0.95, 60).round(2)
    y = np.eye(2, dtype="float32")[(rng.random(60) < 0.5 + 0.3 * (p_pos - 0.5)).astype(int)]
    images = np.broadcast_to((p_pos * 255).round()[:, None, None, None], (60, 4, 4, 3)).astype("uint8")
    prep = SimpleNamespace(targets=y, index={"val": np.arange(60)}, images={"val": images},
                           classes=["Normal", "Pneumonia"], task=SimpleNamespace(kind="single"))
    model = _fixed_scores_model()
    post = validation_report(model, prep, batch_size=8)
    metrics, thresholds, cal = post.metrics, post.thresholds.values(), post.calibration
    assert cal.method == "temperature" and cal.params["temperature"] > 1  # over-confident scores
    assert "calibrated by temperature" in post.thresholds.describe()
    raw = np.asarray(model.predict(images, verbose=0))
    calibrated = cal.apply(raw)
    assert cal.validation_ece["macro"]["calibrated"] < cal.validation_ece["macro"]["raw"]
    want = compute_metrics(y, calibrated, "single", prep.classes, thresholds)
    assert metrics["accuracy"] == want["accuracy"] and metrics["loss"] < metrics["loss_uncalibrated"]
    plain = validation_report(model, prep, 8, calibration="none")
    raw_thresholds = plain.thresholds.values()
    assert plain.calibration.is_identity and plain.thresholds.scale == "raw"
    # the same cut between images, on each scale
    cut = raw[:, 1] >= raw_thresholds["Pneumonia"]
    assert (cut == (calibrated[:, 1] >= thresholds["Pneumonia"])).all()
    assert thresholds["Pneumonia"] != pytest.approx(raw_thresholds["Pneumonia"])


def test_no_validation_images_gives_identity_with_reason():
    prep = SimpleNamespace(targets=np.zeros((0, 2), "float32"), index={"val": np.arange(0)},
                           images={"val": np.zeros((0, 4, 4, 3), "uint8")},
                           classes=["Normal", "Pneumonia"], task=SimpleNamespace(kind="single"))
    post = validation_report(_fixed_scores_model(), prep, 3)
    assert post.calibration.is_identity and "no validation images" in post.calibration.chosen_by
    assert post.thresholds.values() == {"Pneumonia": None}  # not estimable: no decision, not 0.5
    entry = post.thresholds.entries["Pneumonia"]
    assert entry.status.value == "not_estimable" and entry.positive_patients == 0
    assert post.metrics == {}

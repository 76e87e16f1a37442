"""Masked losses and metrics: NaN targets are ignored, never counted as negatives."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.models.losses import (
    MaskedAUC,
    masked_bce,
    masked_binary_accuracy,
    masked_binary_crossentropy,
    masked_categorical_crossentropy,
)

NAN = np.nan
Y = np.array([[1, 0, NAN], [NAN, 1, 0], [0, NAN, NAN], [1, 1, 1]], dtype=np.float32)
P = np.array([[0.9, 0.2, 0.5], [0.3, 0.6, 0.1], [0.4, 0.99, 0.01], [0.7, 0.8, 0.35]],
             dtype=np.float32)


def batch_mean(fn, y, p) -> float:
    """What Keras' default reduction (mean over the batch) makes of per-sample values."""
    values = np.asarray(fn(y, p))
    assert values.shape == (len(y),)
    return float(values.mean())


def numpy_bce(y, p) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_masked_bce_equals_plain_bce_without_nan():
    y = np.nan_to_num(Y, nan=0.0)
    plain = float(np.mean(keras.losses.binary_crossentropy(y, P)))
    assert batch_mean(masked_binary_crossentropy, y, P) == pytest.approx(plain, rel=1e-5)
    assert masked_bce is masked_binary_crossentropy


def test_masked_bce_is_the_mean_over_known_entries_only():
    known = ~np.isnan(Y)
    expected = numpy_bce(Y[known], P[known]).mean()
    assert batch_mean(masked_binary_crossentropy, Y, P) == pytest.approx(expected, rel=1e-5)
    # predictions at unknown entries do not matter at all
    other = np.where(known, P, 1 - P)
    assert batch_mean(masked_binary_crossentropy, Y, other) == pytest.approx(expected, rel=1e-5)
    # ... whereas treating NaN as negative would change the loss
    assert numpy_bce(np.nan_to_num(Y), P).mean() != pytest.approx(expected, rel=1e-3)


def test_all_nan_batch_gives_zero_not_nan():
    y = np.full((3, 2), NAN, dtype=np.float32)
    assert batch_mean(masked_binary_crossentropy, y, P[:3, :2]) == 0.0
    assert batch_mean(masked_categorical_crossentropy, y, P[:3, :2]) == 0.0
    assert batch_mean(masked_binary_accuracy, y, P[:3, :2]) == 0.0


def test_masked_categorical_crossentropy_ignores_unknown_rows():
    y = np.array([[1, 0, 0], [NAN, NAN, NAN], [0, 0, 1], [0, 1, 0]], dtype=np.float32)
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.3, 0.5], [0.3, 0.6, 0.1]],
                 dtype=np.float32)
    rows = [0, 2, 3]
    plain = float(np.mean(keras.losses.categorical_crossentropy(y[rows], p[rows])))
    assert batch_mean(masked_categorical_crossentropy, y, p) == pytest.approx(plain, rel=1e-5)


def test_masked_binary_accuracy_counts_known_entries():
    # known entries: row0 (1->0.9 ok, 0->0.2 ok), row1 (1->0.6 ok, 0->0.1 ok),
    # row2 (0->0.4 ok), row3 (1->0.7 ok, 1->0.8 ok, 1->0.35 wrong): 7 of 8
    assert batch_mean(masked_binary_accuracy, Y, P) == pytest.approx(7 / 8, rel=1e-6)


def test_masked_auc_matches_sklearn_on_known_entries():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 2)) < 0.4).astype(np.float32)
    p = np.clip(0.35 * y + rng.random((200, 2)) * 0.65, 0, 1).astype(np.float32)
    y_masked = y.copy()
    y_masked[rng.random((200, 2)) < 0.3] = NAN
    metric = MaskedAUC(multi_label=True, num_labels=2, num_thresholds=1000)
    metric.update_state(y_masked, p)
    known = ~np.isnan(y_masked)
    expected = np.mean([roc_auc_score(y_masked[known[:, k], k], p[known[:, k], k]) for k in range(2)])
    assert float(metric.result()) == pytest.approx(expected, abs=5e-3)


def test_fit_with_nan_targets_stays_finite_and_learns_known_entries():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.float32)
    y[::3, 1] = NAN
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.05), masked_binary_crossentropy,
                  metrics=[masked_binary_accuracy, MaskedAUC(multi_label=True, num_labels=2)])
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0)  # graph mode (tf.function)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert history.history["masked_binary_accuracy"][-1] > 0.8


def test_compiled_model_with_masked_objects_saves_and_loads(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="sigmoid")])
    model.compile("sgd", masked_binary_crossentropy,
                  metrics=[masked_binary_accuracy, MaskedAUC(multi_label=True, num_labels=3)])
    model.fit(np.nan_to_num(Y[:, :3]), Y, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # custom objects found by registration
    np.testing.assert_allclose(loaded.evaluate(np.nan_to_num(Y), Y, verbose=0),
                               model.evaluate(np.nan_to_num(Y), Y, verbose=0), rtol=1e-5)

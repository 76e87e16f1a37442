"""Pseudo-label selection (thresholds, NaN for undecided, class balance) and self-training."""
from __future__ import annotations

import numpy as np
import pytest

from training.semi.pseudo_label import (SelfTrainConfig, labelled_proportions, select_pseudo_labels,
                                        self_train)

SINGLE = np.array([[0.95, 0.05], [0.6, 0.4], [0.2, 0.8], [0.05, 0.95], [0.97, 0.03], [0.5, 0.5]])


def test_single_keeps_rows_over_threshold_with_onehot_argmax():
    idx, labels = select_pseudo_labels(SINGLE, 0.9, "single")
    assert idx.tolist() == [0, 3, 4]
    assert labels.tolist() == [[1, 0], [0, 1], [1, 0]]
    assert labels.dtype == np.float32 and idx.dtype == np.int64


def test_single_per_class_thresholds():
    # class 1 is easier to be confident about: its threshold is lower
    idx, labels = select_pseudo_labels(SINGLE, [0.96, 0.75], "single")
    assert idx.tolist() == [2, 3, 4]
    assert labels.argmax(axis=1).tolist() == [1, 1, 0]


def test_threshold_exactly_met_counts():
    idx, _ = select_pseudo_labels(np.array([[0.9, 0.1]]), 0.9, "single")
    assert idx.tolist() == [0]


def test_multilabel_undecided_entries_stay_nan():
    probs = np.array([[0.95, 0.50, 0.02], [0.40, 0.60, 0.55], [0.03, 0.99, 0.5]])
    idx, labels = select_pseudo_labels(probs, 0.9, "multilabel")  # low defaults to 0.1
    assert idx.tolist() == [0, 2]  # row 1 decides nothing: not returned
    np.testing.assert_array_equal(labels, [[1, np.nan, 0], [0, 1, np.nan]])


def test_multilabel_explicit_low_threshold():
    probs = np.array([[0.25, 0.85]])
    idx, labels = select_pseudo_labels(probs, 0.8, "multilabel", low=0.3)
    np.testing.assert_array_equal(labels, [[0, 1]])
    with pytest.raises(ValueError, match="below"):
        select_pseudo_labels(probs, 0.8, "multilabel", low=0.9)


def test_class_balance_follows_target_proportions_most_confident_first():
    # 6 confident class-0 rows, 2 confident class-1 rows; target 50/50 → 2 of each
    probs = np.array([[0.99, 0.01], [0.91, 0.09], [0.98, 0.02], [0.95, 0.05], [0.92, 0.08],
                      [0.93, 0.07], [0.03, 0.97], [0.05, 0.95]])
    idx, labels = select_pseudo_labels(probs, 0.9, "single", class_balance="equal")
    assert idx.tolist() == [0, 2, 6, 7]  # the two most confident class-0 rows
    idx, labels = select_pseudo_labels(probs, 0.9, "single", class_balance=[2 / 3, 1 / 3])
    assert labels.sum(axis=0).tolist() == [4, 2]
    assert set(idx[labels[:, 0] == 1]) == {0, 2, 3, 5}


def test_class_balance_multilabel_caps_positives_and_negatives():
    p = np.array([0.99, 0.97, 0.95, 0.93, 0.01, 0.5])[:, None]  # 4 positives, 1 negative
    idx, labels = select_pseudo_labels(p, 0.9, "multilabel", class_balance=[0.5])
    assert idx.tolist() == [0, 4]
    np.testing.assert_array_equal(labels, [[1], [0]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(threshold=1.5, kind="single"), "threshold"),
    (dict(threshold=[0.9, 0.9, 0.9], kind="single"), "one per class"),
    (dict(threshold=0.9, kind="softmax"), "kind"),
    (dict(threshold=0.9, kind="single", class_balance="lots"), "class_balance"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_pseudo_labels(SINGLE, **kwargs)


def test_labelled_proportions_ignore_unknown_rows():
    y = np.array([[1, 0], [1, 0], [0, 1], [np.nan, np.nan]], np.float32)
    np.testing.assert_allclose(labelled_proportions(y, "single"), [2 / 3, 1 / 3])
    ym = np.array([[1, np.nan], [0, 1], [np.nan, 1]], np.float32)
    np.testing.assert_allclose(labelled_proportions(ym, "multilabel"), [0.5, 1.0])


# ------------------------------------------------------------------ the loop
def _blobs(n: int, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Separable tiny "images": class 1 has a bright left half, class 0 a bright right half."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, size, size, 3))
    half = size // 2
    for i, c in enumerate(cls):
        x[i, :, :half] += 150 * c
        x[i, :, half:] += 150 * (1 - c)
    return x.astype(np.uint8), np.eye(2, dtype=np.float32)[cls]


def _tiny_model():
    from training.semi.model import small_cnn

    return small_cnn(2, "single", size=8, seed=0, widths=(4,), dropout=0.0)


def test_self_training_runs_and_uses_confident_pseudo_labels():
    import keras

    from training.semi.pseudo_label import predict

    x_lab, y_lab = _blobs(16, seed=1)
    x_pool, y_pool = _blobs(96, seed=2)
    x_test, y_test = _blobs(64, seed=3)
    cfg = SelfTrainConfig(rounds=2, threshold=0.7, epochs=1, min_steps=100, batch_size=16, lr=3e-2, augment=False)
    keras.utils.set_random_seed(0)
    model, history = self_train(_tiny_model, x_lab, y_lab, x_pool, "single", cfg, y_hidden=y_pool)
    assert [h["round"] for h in history] == [1, 2]
    assert all(h["pool"] == 96 for h in history)
    assert history[-1]["pseudo_labelled"] > 0
    assert history[-1]["pseudo_accuracy"] > 0.9  # separable data: pseudo-labels are right
    acc = (predict(model, x_test).argmax(1) == y_test.argmax(1)).mean()
    assert acc > 0.9


def test_self_training_with_empty_pool_returns_the_teacher():
    x_lab, y_lab = _blobs(8, seed=1)
    cfg = SelfTrainConfig(rounds=2, epochs=1, batch_size=8, augment=False)
    teacher = _tiny_model()
    model, history = self_train(_tiny_model, x_lab, y_lab, x_lab[:0], "single", cfg, teacher=teacher)
    assert model is teacher and history == []

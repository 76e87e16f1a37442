"""Threshold choice on validation: Youden, target sensitivity, NaN labels, degenerate cases."""
import numpy as np
import pytest

from training.evaluation.thresholds import choose_threshold

Y = [0, 0, 0, 0, 1, 0, 1, 1]
S = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_youden_known_case():
    # J at 0.7: 2/3 - 0 = .67; at 0.5: 1 - 1/5 = .8 (best); at 0.6: 2/3 - 1/5
    assert choose_threshold(Y, S) == pytest.approx(0.5)


@pytest.mark.parametrize("target, expected", [(0.6, 0.7), (0.9, 0.5), (1.0, 0.5), (0.3, 0.8)])
def test_target_sensitivity_highest_threshold(target, expected):
    assert choose_threshold(Y, S, target_sensitivity=target) == pytest.approx(expected)


def test_nan_labels_ignored():
    assert choose_threshold(Y + [np.nan], S + [0.99]) == pytest.approx(0.5)


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0], []])
def test_single_class_gives_half_with_warning(y):
    with pytest.warns(UserWarning, match="class"):
        assert choose_threshold(y, np.linspace(0, 1, len(y))) == 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown threshold method"):
        choose_threshold(Y, S, method="magic")
    with pytest.raises(ValueError, match="target_sensitivity"):
        choose_threshold(Y, S, method="sensitivity")

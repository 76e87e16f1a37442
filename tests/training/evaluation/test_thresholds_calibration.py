import numpy as np
import pytest

from training.evaluation.calibration import (calibration_report, expected_calibration_error,
                                             reliability_curve)
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


def test_ece_perfectly_calibrated_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(float)
    assert expected_calibration_error(y, p) < 0.01


def test_ece_overconfident():
    rng = np.random.default_rng(1)
    y = (rng.random(10_000) < 0.5).astype(float)
    assert expected_calibration_error(y, np.full(y.size, 0.9)) == pytest.approx(0.4, abs=0.02)


def test_reliability_curve_bins():
    c = reliability_curve([0, 1, 1, np.nan], [0.05, 0.95, 1.0, 0.5], n_bins=10)
    assert sum(c["count"]) == 3 and c["count"][0] == 1 and c["count"][9] == 2
    assert c["fraction_positive"][9] == 1.0 and np.isnan(c["mean_predicted"][5])
    rep = calibration_report(np.array([[0, 1], [1, 0]]), np.array([[0.2, 0.8], [0.7, 0.3]]), ["a", "b"])
    assert set(rep) == {"a", "b"} and rep["a"]["ece"] == pytest.approx(0.25)

"""Measuring calibration: ECE and reliability curves, the batched bootstrap ECE, ECE with CIs."""
import numpy as np
import pytest

from training.evaluation.calibration import fit_calibration
from training.evaluation.reliability import (ECE, calibration_report, ece_with_ci,
                                             expected_calibration_error, reliability_curve)

from tests.training.evaluation.conftest import overconfident_sigmoids

OUT = ["a", "b"]


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


def test_batched_ece_matches_resampling_by_repetition():
    y, p = overconfident_sigmoids(200, 9)
    y[:7, 0] = np.nan
    w = np.random.default_rng(0).integers(0, 3, size=(4, 200)).astype(float)
    metric = ECE(10)
    for j in range(2):
        want = [metric(np.repeat(y[:, j], wi.astype(int)), np.repeat(p[:, j], wi.astype(int))) for wi in w]
        np.testing.assert_allclose(metric.batched(y[:, j], p[:, j], w), want, atol=1e-12)
    macro = [metric(np.repeat(y, wi.astype(int), axis=0), np.repeat(p, wi.astype(int), axis=0)) for wi in w]
    np.testing.assert_allclose(metric.batched(y, p, w), macro, atol=1e-12)


def test_ece_with_patient_ci():
    y, p = overconfident_sigmoids(300, 10)
    q = fit_calibration(y, p, "multilabel", OUT, "platt").apply(p)
    for P in (p, q):
        est = ece_with_ci(y, P, OUT, groups=np.arange(300) // 3, n_boot=200, seed=0)
        assert set(est) == {"a", "b", "macro"}
        for e in est.values():
            assert e.low <= e.value <= e.high and e.n_used == 200
        assert est["a"].value == pytest.approx(expected_calibration_error(y[:, 0], P[:, 0]))
        assert set(est["macro"].to_json()) == {"value", "low", "high", "n_used"}

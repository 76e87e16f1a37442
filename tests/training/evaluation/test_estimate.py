"""The one CI type: JSON both ways, NaN as null, the bootstrap returns it, the app shows it."""
import math

import numpy as np

from training.evaluation.bootstrap import bootstrap_ci
from training.evaluation.estimate import Estimate


def test_json_round_trip_and_nan_as_null():
    e = Estimate(0.9, 0.8, float("nan"), 120)
    assert e.to_json() == {"value": 0.9, "low": 0.8, "high": None, "n_used": 120}
    assert Estimate.of(e.to_json()) == Estimate(0.9, 0.8, None, 120)
    assert Estimate.of(0.5) == Estimate(0.5) and Estimate.of("text") == Estimate(None)
    assert e.ci == "" and e.text == "0.900" and str(Estimate(0.9, 0.8, 0.95)) == "0.900 (95% CI 0.800–0.950)"


def test_includes_and_unpacking():
    e = Estimate(0.55, 0.45, 0.65)
    assert e.includes(0.5) and not Estimate(0.7, 0.6, 0.8).includes(0.5) and not Estimate(0.5).includes(0.5)
    value, low, high = e
    assert (value, low, high) == (0.55, 0.45, 0.65)


def test_the_bootstrap_returns_an_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 200), 0, 1)
    ci = bootstrap_ci("roc_auc", y, p, n_boot=100)
    assert isinstance(ci, Estimate) and ci.low <= ci.value <= ci.high and ci.n_used == 100
    one_class = bootstrap_ci("roc_auc", np.ones(10), np.linspace(0, 1, 10), n_boot=20)
    assert math.isnan(one_class.value) and one_class.to_json()["value"] is None

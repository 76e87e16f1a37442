
import numpy as np
import pytest

from training.evaluation import metrics as M
from training.evaluation.bootstrap import (ScalarMetric, attach_ci, bootstrap_ci,
                                           bootstrap_metrics, paired_bootstrap, resample_weights)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    return y, np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)


@pytest.mark.parametrize("name", ["roc_auc", "pr_auc", "recall", "specificity", "f1"])
def test_ci_contains_point_and_narrows_with_n(name):
    widths = []
    for n in (100, 1600):
        y, p = _data(n)
        point, low, high = bootstrap_ci(name, y, p, n_boot=300)
        assert low <= point <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): 4x narrower expected


def test_patient_bootstrap_wider_than_image_bootstrap():
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(40), 10)  # 10 near-identical images per patient
    y = np.repeat((rng.random(40) < 0.5).astype(float), 10)
    p = np.repeat(np.clip(0.25 * y[::10] + 0.75 * rng.random(40), 0, 1), 10) + rng.normal(0, 1e-3, 400)
    _, lo_i, hi_i = bootstrap_ci("roc_auc", y, p, None, n_boot=400)
    _, lo_p, hi_p = bootstrap_ci("roc_auc", y, p, patients, n_boot=400)
    assert (hi_p - lo_p) > 2 * (hi_i - lo_i)


def test_patient_weights_keep_images_together():
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    for w in resample_weights(groups, 6, 50, seed=0):
        assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()
        assert (w[:, [0, 2, 3]].sum(axis=1) == 3).all()  # 3 patients drawn each time


def test_many_resamples_run():
    y, p = _data(1000)
    groups = np.arange(1000) // 3
    for name in ("roc_auc", "pr_auc", "f1", "recall"):
        ci = bootstrap_ci(name, y, p, groups, n_boot=1000)
        assert ci.n_used == 1000


def test_undefined_resamples_skipped_and_counted():
    y = np.array([1.0] + [0.0] * 29)  # one positive: most resamples have none
    p = np.linspace(0, 1, 30)
    ci = bootstrap_ci("roc_auc", y, p, n_boot=200)
    assert 0 < ci.n_used < 200


def test_plain_callable_matches_named_metric():
    y, p = _data(150, seed=2)
    named = bootstrap_ci("roc_auc", y, p, n_boot=100, seed=3)
    plain = bootstrap_ci(lambda a, b: M.binary_metrics(a, b)["roc_auc"], y, p, n_boot=100, seed=3)
    np.testing.assert_allclose(named, plain)


def test_paired_same_model_and_better_model():
    y, p = _data(400, seed=4)
    same = paired_bootstrap("roc_auc", y, p, p, n_boot=200)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    rng = np.random.default_rng(5)
    worse = np.clip(p + rng.normal(0, 0.4, p.size), 0, 1)
    d = paired_bootstrap("roc_auc", y, p, worse, np.arange(400) // 2, n_boot=300)
    assert d["diff"] > 0 and d["low"] > 0 and d["p_value"] < 0.05
    assert d["a"] == pytest.approx(M.binary_metrics(y, p)["roc_auc"])


def test_macro_metric_on_matrices():
    y1, p1 = _data(200, 6)
    y2, p2 = _data(200, 7)
    Y, P = np.stack([y1, y2], 1), np.stack([p1, p2], 1)
    m = ScalarMetric("roc_auc")
    assert m(Y, P) == pytest.approx(M.multilabel_metrics(Y, P, 0.5, ["a", "b"])["macro"]["roc_auc"])
    point, low, high = bootstrap_ci(m, Y, P, n_boot=100)
    assert low <= point <= high


@pytest.mark.parametrize("kind", ["multilabel", "single"])
def test_bootstrap_metrics_cover_every_metric(kind):
    rng = np.random.default_rng(8)
    if kind == "single":
        Y = np.eye(3)[rng.integers(0, 3, 150)]
        P = rng.dirichlet([1, 1, 1], 150) + 0.5 * Y
        P /= P.sum(1, keepdims=True)
    else:
        Y = (rng.random((150, 3)) < 0.4).astype(float)
        Y[:20, 1] = np.nan
        P = np.clip(0.3 * np.nan_to_num(Y) + 0.7 * rng.random((150, 3)), 0, 1)
    names = ["a", "b", "c"]
    point = M.compute_metrics(Y, P, kind, names, 0.5)
    merged = attach_ci(point, bootstrap_metrics(Y, P, kind, names, 0.5, np.arange(150) // 2, 200))
    cells = [merged["per_output"][n][m] for n in names for m in M.METRIC_NAMES]
    cells += [merged[avg][m] for avg in ("macro", "micro") for m in M.METRIC_NAMES]
    if kind == "single":
        cells += [merged["accuracy"], merged["balanced_accuracy"]]
    for c in cells:
        assert set(c) == {"value", "low", "high", "n_used"}
        assert c["low"] - 1e-9 <= c["value"] <= c["high"] + 1e-9

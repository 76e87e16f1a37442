"""Calibration maps fitted on validation: each method helps over-confident scores, the stored
form round-trips (also through a saved card), and bad stored forms are refused clearly."""
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import log_loss

from tests.training.evaluation.conftest import overconfident_sigmoids
from training.evaluation.calibration import Calibration, calibrate_card, fit_calibration, softmax_nll
from training.evaluation.reliability import expected_calibration_error

OUT = ["a", "b"]


def _softmax_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, 3))
    labels = np.array([rng.choice(3, p=softmax(row)) for row in logits])
    return np.eye(3)[labels], softmax(3 * logits, axis=1)


def _nll(y, p):
    return np.mean([log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(y.shape[1])])


def _ece(y, p):
    return np.mean([expected_calibration_error(y[:, j], p[:, j]) for j in range(y.shape[1])])


@pytest.mark.parametrize("method", ["platt", "isotonic", "auto"])
def test_sigmoid_methods_lower_ece_and_nll_on_new_data(method):
    y, p = overconfident_sigmoids(1500, 0)
    y_new, p_new = overconfident_sigmoids(1500, 1)
    cal = fit_calibration(y, p, "multilabel", OUT, method)
    q = cal.apply(p_new)
    assert _ece(y_new, q) < 0.5 * _ece(y_new, p_new)
    assert _nll(y_new, q) < _nll(y_new, p_new)
    assert cal.validation_ece["macro"]["calibrated"] < cal.validation_ece["macro"]["raw"]
    assert cal.fitted_on["n_images"] == 1500 and set(cal.fitted_on["positives"]) == set(OUT)


def test_temperature_lowers_ece_and_nll_keeps_rows_and_argmax():
    Y, P = _softmax_data(1500, 0)
    Y_new, P_new = _softmax_data(1500, 1)
    cal = fit_calibration(Y, P, "single", ["x", "y", "z"], "auto")
    assert cal.method == "temperature" and cal.params["temperature"] == pytest.approx(3, rel=0.25)
    Q = cal.apply(P_new)
    np.testing.assert_allclose(Q.sum(axis=1), 1, atol=1e-12)
    assert (Q.argmax(axis=1) == P_new.argmax(axis=1)).all()
    assert softmax_nll(Y_new, Q) < softmax_nll(Y_new, P_new)
    assert _ece(Y_new, Q) < _ece(Y_new, P_new)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_sigmoid_apply_is_monotone_in_range_and_keeps_nan(method):
    y, p = overconfident_sigmoids(600, 2)
    cal = fit_calibration(y, p, "multilabel", OUT, method)
    grid = np.linspace(0, 1, 501)
    q = cal.apply(np.stack([grid, grid], axis=1))
    assert q.dtype == np.float64 and (np.diff(q, axis=0) >= 0).all()
    assert ((q > 0) & (q < 1)).all()
    assert np.isnan(cal.apply(np.array([[np.nan, 0.5]]))[0, 0])


def test_json_round_trip_gives_the_same_map():
    y, p = overconfident_sigmoids(600, 3)
    for cal in (fit_calibration(y, p, "multilabel", OUT, "auto"),
                fit_calibration(*_softmax_data(300, 0), "single", ["x", "y", "z"]),
                Calibration.identity("multilabel", OUT, "test")):
        back = Calibration.from_json(cal.to_json())
        assert back == cal
        P = p if cal.kind == "multilabel" else _softmax_data(50, 9)[1]
        np.testing.assert_array_equal(back.apply(P), cal.apply(P))


def test_auto_uses_platt_with_few_positives_and_says_why():
    rng = np.random.default_rng(4)
    y, p = overconfident_sigmoids(400, 4)
    y[:, 0] = 0
    likely = np.argsort(p[:, 0])[-60:]  # 12 positives among the highest scores
    y[rng.choice(likely, 12, replace=False), 0] = 1  # isotonic would overfit 12 positives
    cal = fit_calibration(y, p, "multilabel", OUT, "auto")
    assert cal.params["a"]["method"] == "platt" and "12 positives" in cal.params["a"]["why"]
    assert "overfit" in cal.chosen_by
    assert "CV log loss" in cal.params["b"]["why"]  # enough of both: chosen by cross-validation


def test_single_class_output_is_not_calibrated_with_reason():
    y, p = overconfident_sigmoids(300, 5)
    y[:, 1] = 0
    y[:3, 1] = np.nan  # unknown labels are ignored
    cal = fit_calibration(y, p, "multilabel", OUT, "isotonic")
    assert cal.params["b"]["method"] == "none" and "one class" in cal.params["b"]["reason"]
    assert cal.method == "per-output"
    np.testing.assert_array_equal(cal.apply(p)[:, 1], p[:, 1])


def test_none_and_method_mismatches_are_recorded():
    y, p = overconfident_sigmoids(300, 6)
    none = fit_calibration(y, p, "multilabel", OUT, "none")
    assert none.is_identity and "none" in none.chosen_by
    np.testing.assert_array_equal(none.apply(p), p)
    assert "temperature requested" in fit_calibration(y, p, "multilabel", OUT, "temperature").chosen_by
    Y, P = _softmax_data(300, 6)
    iso = fit_calibration(Y, P, "single", ["x", "y", "z"], "isotonic")
    assert iso.method == "temperature" and "isotonic requested" in iso.chosen_by
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration(y, p, "multilabel", OUT, "magic")


@pytest.mark.parametrize("change, message", [
    (lambda d: "not a dict", "must be a JSON object"),
    (lambda d: {k: v for k, v in d.items() if k != "params"}, "missing params"),
    (lambda d: {**d, "kind": "other"}, "kind"),
    (lambda d: {**d, "params": {"a": d["params"]["a"]}}, "params keys"),
    (lambda d: {**d, "params": {**d["params"], "a": {"method": "platt", "a": "x", "b": 0}}}, "finite numbers"),
    (lambda d: {**d, "params": {**d["params"], "a": {"method": "isotonic", "x": [0, 1], "y": [0.5]}}},
     "equal non-zero length"),
    (lambda d: {**d, "params": {**d["params"], "a": {"method": "magic"}}}, "method 'magic'"),
])
def test_bad_json_is_refused_with_what_is_wrong(change, message):
    d = fit_calibration(*overconfident_sigmoids(300, 7), "multilabel", OUT, "platt").to_json()
    with pytest.raises(ValueError, match=message):
        Calibration.from_json(change(d))


def test_outputs_and_kind_must_match_the_model():
    d = Calibration.identity("single", ["x", "y"]).to_json()
    with pytest.raises(ValueError, match="outputs mismatch"):
        Calibration.from_json(d, outputs=["y", "x"])
    with pytest.raises(ValueError, match="kind"):
        Calibration.from_json(d, kind="multilabel")
    with pytest.raises(ValueError, match="positive number"):
        Calibration.from_json({**d, "params": {"temperature": -1}})
    with pytest.raises(ValueError, match="shape"):
        Calibration.from_json(d).apply(np.ones((2, 3)))


def test_round_trip_through_a_saved_card(world, tmp_path):
    from training.models.card import load_model, read_card, save_model

    model, card = load_model(world["single"])
    Y, P = _softmax_data(200, 8)
    P = P[:, :2] / P[:, :2].sum(axis=1, keepdims=True)
    cal = fit_calibration(Y[:, :2], P, "single", card.outputs)
    card.calibration = cal.to_json()
    save_model(model, card, tmp_path / "m")
    stored = read_card(tmp_path / "m")
    np.testing.assert_array_equal(Calibration.from_json(stored.calibration).apply(P), cal.apply(P))
    np.testing.assert_array_equal(calibrate_card(stored, P), cal.apply(P))
    assert np.array_equal(calibrate_card({"outputs": ["x", "y"], "kind": "single"}, P), P)

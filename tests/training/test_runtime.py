"""training.runtime: one saved model, loaded and used (the CLI's and the app's)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.tiny import SIZE, tiny_card, tiny_model
from training.errors import ModelCardError
from training.runtime import load, load_all, metadata_vector

MULTI = ["No Finding", "Pneumonia", "COVID-19"]


def _save(folder: Path, kind: str = "multilabel", outputs: list[str] | None = None, seed: int = 0,
          name: str | None = None, **entries) -> Path:
    from training.models.card import save_model

    outputs = outputs or MULTI
    return save_model(tiny_model(len(outputs), kind, seed=seed),
                      tiny_card(name or folder.name, kind, outputs, **entries), folder)


def _edit_card(folder: Path, **changes) -> None:
    card = json.loads((folder / "card.json").read_text())
    card.update(changes)
    (folder / "card.json").write_text(json.dumps(card))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("rt") / "multi", thresholds={"No Finding": 0.5,
                                                                      "Pneumonia": 0.2, "COVID-19": 0.9})


def test_load_builds_what_using_the_model_needs(multi):
    from training.preprocess import PreprocessConfig

    rt = load(multi)
    assert (rt.name, rt.directory, rt.outputs, rt.kind) == ("multi", multi, MULTI, "multilabel")
    assert rt.preprocess == PreprocessConfig.from_dict(rt.card["preprocessing"])
    assert rt.gate is None and rt.calibration.is_identity and rt.metadata_features == []
    assert rt.decision_thresholds() == [0.5, 0.2, 0.9] and rt.no_decision() == {}


def test_prediction_is_the_model_calibrated_and_decided(multi):
    rt = load(multi)
    x = _images(5)
    out = rt.predict(x)
    direct = np.asarray(rt.model(x.astype(np.float32), training=False))
    np.testing.assert_allclose(out.raw, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.calibrated, out.raw.astype(np.float64))  # identity
    np.testing.assert_array_equal(out.positive, out.calibrated >= np.array([0.5, 0.2, 0.9]))
    assert out.decided.all() and np.isnan(out.ood_score).all() and out.outputs == MULTI


def test_batch_size_does_not_change_the_outputs(multi):
    rt = load(multi)
    x = _images(7, seed=1)
    ref, _ = rt.forward(x, batch_size=32)
    for b in (1, 3, 7):
        np.testing.assert_allclose(rt.forward(x, batch_size=b)[0], ref, rtol=0, atol=1e-6)
        np.testing.assert_allclose(rt.forward(x[::-1], batch_size=b)[0], ref[::-1], rtol=0, atol=1e-6)
    assert rt.forward(x[:0])[0].shape == (0, len(MULTI))


def test_duplicate_names_are_refused_naming_them(tmp_path):
    a = _save(tmp_path / "a", outputs=["A", "B"], name="same")
    b = _save(tmp_path / "b", outputs=["A", "B"], name="same")
    with pytest.raises(ModelCardError, match=r"\['same'\].*What to do: give each model a unique 'name'"):
        load_all([a, b])
    assert [r.name for r in load_all([a])] == ["same"]


def test_card_without_thresholds_gives_no_decision(tmp_path):
    folder = _save(tmp_path / "plain")
    single = _save(tmp_path / "single", "single", ["Normal", "Pneumonia"])
    for path in (folder, single):
        _edit_card(path, thresholds=None)
    for rt in load_all([folder, single]):
        out = rt.predict(_images(3))
        assert np.isfinite(out.calibrated).all()
        assert not out.positive.any() and not out.decided.any()
        assert rt.decision_thresholds() == [None] * len(rt.outputs)
        assert out.findings() == [None, None, None]


def test_two_class_softmax_decides_on_its_positive_class(tmp_path):
    rt = load(_save(tmp_path / "s", "single", ["Normal", "Pneumonia"],
                    thresholds={"Normal": 0.6, "Pneumonia": 0.8}))
    out = rt.interpret(np.array([[0.3, 0.7], [0.1, 0.9], [np.nan, np.nan]]))
    assert out.positive.tolist() == [[True, False], [False, True], [False, False]]
    assert out.findings() == ["Normal", "Pneumonia", None]
    assert rt.decision_thresholds() == pytest.approx([0.2, 0.8])


def test_calibration_from_the_card_and_a_broken_one_fails_at_load(tmp_path):
    from training.evaluation.calibration import fit_calibration

    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.99, (200, 3))
    cal = fit_calibration((rng.uniform(size=raw.shape) < raw).astype(float), raw, "multilabel", MULTI, "platt")
    rt = load(_save(tmp_path / "cal", calibration=cal.to_json()))
    out = rt.predict(_images(4))
    np.testing.assert_allclose(out.calibrated, cal.apply(out.raw), rtol=1e-12)
    np.testing.assert_allclose(rt.calibrate(out.raw[0]), out.calibrated[0], rtol=1e-12)  # one image
    other = fit_calibration((rng.uniform(size=raw.shape) < raw).astype(float), raw, "multilabel",
                            ["x", "y", "z"], "platt")
    folder = _save(tmp_path / "broken")
    _edit_card(folder, calibration=other.to_json())     # a calibration of other outputs
    with pytest.raises(ModelCardError, match=f"{folder}.*What to do"):
        load(folder)


def test_gate_scores_come_from_the_same_forward_pass(tmp_path):
    from tests.app.tiny_models import trust_parts
    from training.models.parts import feature_model
    from training.models.card import save_model

    folder = tmp_path / "gated"
    model = tiny_model(len(MULTI), "multilabel", seed=3)
    save_model(model, tiny_card("gated", "multilabel", MULTI,
                                **trust_parts(model, "multilabel", MULTI, {}, folder)), folder)
    rt = load(folder)
    x = _images(4, seed=2)
    out = rt.predict(x, batch_size=3)
    feats = np.asarray(feature_model(rt.model, rt.gate.feature_layers)(x.astype(np.float32)))
    np.testing.assert_allclose(out.ood_score, rt.gate.score(feats), rtol=1e-4)
    assert np.isfinite(out.ood_score).all()


def test_clinical_inputs_reach_the_model(tmp_path):
    from training.models.card import save_model

    model = tiny_model(2, "single", seed=5, metadata=2)
    folder = save_model(model, tiny_card("meta", "single", ["Normal", "Pneumonia"],
                                         metadata_features=["age", "sex"]), tmp_path / "meta")
    rt = load(folder)
    x = _images(2)
    records = [{"age": 0.6, "sex": "F"}, {"age": 0.1, "sex": "M"}]
    direct = np.asarray(model([x.astype(np.float32), np.array([[0.6, 0.0], [0.1, 1.0]], np.float32)]))
    np.testing.assert_allclose(rt.predict(x, records, batch_size=1).raw, direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="2 images but 1 metadata records"):
        rt.forward(x, records[:1])


def test_metadata_vector_keeps_unknown_as_nan():
    vec = metadata_vector(["age", "sex", "spo2"], [{"age": 0, "sex": "F", "spo2": None}, {}])
    assert vec.shape == (2, 3) and vec[0, 0] == 0 and vec[0, 1] == 0 and np.isnan(vec[0, 2])
    assert np.isnan(vec[1]).all()

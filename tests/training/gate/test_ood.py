"""The feature-space OOD gate: fitted on training features, thresholds on validation ones."""
from __future__ import annotations

import numpy as np
import pytest

from training.errors import ModelCardError
from training.gate import ood
from training.gate.assess import model_scores
from training.gate.verdict import Reason, judge


def features(n: int, dim: int = 32, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(4, dim))
    return rng.normal(size=(n, 4)) @ basis + 0.1 * rng.normal(size=(n, dim)) + shift


def test_scores_separate_shifted_features_and_thresholds_come_from_validation():
    gate = ood.fit_gate(features(300), features(100, seed=1), n_components=8)
    inside, outside = gate.score(features(200, seed=2)), gate.score(features(50, shift=3.0, seed=3))
    assert np.median(inside) < 2 < np.median(outside)
    assert (outside > gate.threshold).mean() > 0.95
    assert (inside > gate.threshold).mean() < 0.05
    assert gate.warn_threshold <= gate.threshold
    assert gate.info["thresholds_from"] == "validation"
    assert gate.info["fitted_on"] == {"train_images": 300, "validation_images": 100}


def test_features_off_the_training_subspace_score_high():
    gate = ood.fit_gate(features(300), features(100, seed=1), n_components=4)
    odd = np.random.default_rng(5).normal(size=(20, 32))          # same scale, other directions
    assert (gate.score(odd) > gate.threshold).all()


def test_p_values_are_conformal_against_the_validation_scores():
    gate = ood.fit_gate(features(100), features(99, seed=1), n_components=4)
    ref = gate.reference
    assert len(ref) == 99 and (np.diff(ref) >= 0).all()
    assert gate.p_value(ref.max() + 1) == 1 / 100                 # beyond every validation image
    assert gate.p_value(-1.0) == 1.0
    assert gate.p_value(float("nan")) == 0.0
    fresh = gate.score(features(2000, seed=9))                     # same distribution, new images
    p = np.array([gate.p_value(s) for s in fresh])
    assert abs((p <= 0.05).mean() - 0.05) < 0.03                   # P(p <= a) ~ a


def test_save_and_load_round_trip_checks_the_hash(tmp_path):
    gate = ood.fit_gate(features(100), features(50, seed=1), n_components=4)
    entry = ood.save_gate(gate, tmp_path)
    assert entry["file"] == ood.GATE_FILE and len(entry["sha256"]) == 64
    loaded = ood.load_gate(tmp_path, entry)
    x = features(10, seed=7)
    np.testing.assert_allclose(loaded.score(x), gate.score(x), rtol=1e-5)
    assert loaded.threshold == gate.threshold and loaded.feature_layers == gate.feature_layers
    assert loaded.p_value(float(gate.score(x)[0])) == gate.p_value(float(gate.score(x)[0]))
    (tmp_path / ood.GATE_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelCardError, match="SHA-256"):
        ood.load_gate(tmp_path, entry)
    assert ood.load_gate(tmp_path, None) is None


def test_missing_gate_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelCardError, match="fit-gate"):
        ood.load_gate(tmp_path, {"file": "gate.npz", "threshold": 1, "warn_threshold": 1})


def test_too_few_training_images_is_an_error():
    with pytest.raises(ValueError, match="at least 3"):
        ood.fit_gate(features(2), features(2))


def _models(p_values):
    return {f"m{i}": {"score": 1.0, "p_value": p} for i, p in enumerate(p_values)}


def test_judge_refuses_when_one_model_is_beyond_the_bonferroni_budget():
    result = judge([], _models([0.004, 0.5, 0.6, 0.3]))           # 4 x 0.004 <= 0.02
    assert result.verdict == "refuse"
    assert [r.code for r in result.reasons] == ["out_of_distribution"]
    assert result.models["m0"]["verdict"] == "ood" and result.models["m1"]["verdict"] == "ok"


def test_judge_warns_for_unusual_models_within_the_budget():
    result = judge([], _models([0.01, 0.5, 0.6, 0.3]))            # 4 x 0.01 > 0.02, but 0.01 <= WARN_P
    assert result.verdict == "warn"
    assert [(r.code, r.model) for r in result.reasons] == [("unusual", "m0")]


def test_judge_keeps_image_reasons_and_accepts_clean_images():
    assert judge([], _models([0.5, 0.9])).verdict == "accept"
    warned = judge([Reason("colour", "warn", "marks")], _models([0.5]))
    assert warned.verdict == "warn" and warned.to_json()["reasons"][0]["code"] == "colour"
    assert judge([Reason("too_small", "refuse", "tiny")], {}).refused


def test_bank_false_refusals_stay_within_the_budget():
    """Four correlated models, new in-distribution images: refused at most ~REFUSE_ALPHA."""
    gates = [ood.fit_gate(features(300, seed=s), features(200, seed=10 + s), n_components=4) for s in range(4)]
    fresh = features(1000, seed=99)
    scores = [g.score(fresh) for g in gates]
    refused = np.mean([judge([], model_scores({f"m{k}": (g, s[i]) for k, (g, s) in
                                                 enumerate(zip(gates, scores))})).refused
                       for i in range(len(fresh))])
    assert refused <= 0.04

"""The OOD score: PPCA Mahalanobis on features, conformal p-values, gate files with their hash."""
from __future__ import annotations

import numpy as np
import pytest

from tests.training.gate.conftest import features
from training.errors import ModelCardError
from training.gate import ood


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
    assert entry.file == ood.GATE_FILE and len(entry.sha256) == 64
    assert ood.GateRecord.from_json(entry.to_json()) == entry  # the card's JSON form round-trips
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

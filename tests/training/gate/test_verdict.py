"""The verdict: Bonferroni refusal over the bank, warnings, image reasons; false refusals within budget."""
from __future__ import annotations

import numpy as np

from tests.training.gate.conftest import features
from training.gate import ood
from training.gate.assess import model_scores
from training.gate.verdict import Reason, judge


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

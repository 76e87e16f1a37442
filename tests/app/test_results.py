"""The prediction contract's trust parts: agreement, contradictions, chance-level outputs."""
from __future__ import annotations

from app.results import CHANCE, UNTESTED, agreement, exclusive_flags, model_test, output_trust
from training.models.card import ModelCard


def model(name, kind="multilabel", **positive):
    return {"name": name, "kind": kind, "outputs": [
        {"name": o, "probability": p, "positive": p >= 0.5} for o, p in positive.items()]}


def test_agreement_counts_positives_and_spread_per_output():
    models = [model("a", COVID=0.9, Normal=0.1), model("b", COVID=0.3, Normal=0.2), model("c", COVID=0.7)]
    table = agreement(models)
    assert table["COVID"] == {"n_models": 3, "n_decided": 3, "n_positive": 2, "min": 0.3, "max": 0.9,
                              "spread": 0.9 - 0.3, "disagree": True}
    assert table["Normal"]["n_models"] == 2 and table["Normal"]["disagree"] is False


def test_models_without_a_decision_neither_agree_nor_disagree():
    """Two models call it positive, two have no estimable threshold (positive None): unanimous."""
    models = [model("a", COVID=0.9), model("b", COVID=0.8), model("c", COVID=0.2), model("d", COVID=0.1)]
    for m in models[2:]:
        m["outputs"][0]["positive"] = None
    table = agreement(models)
    assert table["COVID"]["n_decided"] == 2 and table["COVID"]["n_positive"] == 2
    assert table["COVID"]["disagree"] is False
    models[3]["outputs"][0]["positive"] = False
    assert agreement(models)["COVID"]["disagree"] is True


def test_unanimous_outputs_are_not_marked():
    table = agreement([model("a", COVID=0.9), model("b", COVID=0.8)])
    assert table["COVID"]["n_positive"] == 2 and not table["COVID"]["disagree"]


def test_no_finding_with_a_finding_is_flagged():
    flags = exclusive_flags([model("a", **{"No Finding": 0.8, "COVID-19": 0.7, "ARDS": 0.1}),
                             model("b", **{"No Finding": 0.8, "COVID-19": 0.2})])
    assert [f["model"] for f in flags] == ["a"]
    assert flags[0]["outputs"] == ["No Finding", "COVID-19"] and "exclude each other" in flags[0]["message"]


def test_served_softmax_model_has_one_class_and_no_flag(bank, tmp_path):
    """The single-label rule gives a softmax model exactly one positive class, so the page
    can no longer flag its own contradiction; "No Finding" + a finding is still flagged."""
    from app.results import result_json
    from tests.helpers.images import write_xray

    for seed in range(3):
        data = write_xray(tmp_path / f"x{seed}.png", "L", 170 + 9 * seed, 160, seed=seed).read_bytes()
        served = result_json(bank.predict(data, "x.png"), bank, "x.png")
        single = next(m for m in served["models"] if m["kind"] == "single")
        assert sum(o["positive"] for o in single["outputs"]) == 1
        assert served["flags"] == exclusive_flags(served["models"]) == []
    softmax = model("s", kind="single", Normal=0.7, Pneumonia=0.3)
    softmax["outputs"][1]["positive"] = True               # not servable: still said, not hidden
    assert [f["model"] for f in exclusive_flags([softmax])] == ["s"]


def _card(per_output=None):
    raw = {"card_version": 1, "name": "m", "architecture": "resnet50", "task": "t", "kind": "multilabel",
           "outputs": ["A", "B"], "input_size": 32,
           "preprocessing": {"size": 32}, "gradcam_layer": "x"}
    if per_output:
        raw["metrics"] = {"validation": {}, "test": {"test_set": "internal", "n_images": 50, "metrics": {
            "outputs": ["A", "B"], "per_output": per_output,
            "macro": {"roc_auc": {"value": 0.7, "low": 0.45, "high": 0.9}}}}}
        raw["test_set"] = "internal"
    return ModelCard.from_json(raw)


def test_outputs_whose_auc_ci_includes_half_are_chance_level():
    card = _card({"A": {"roc_auc": {"value": 0.9, "low": 0.8, "high": 0.97}},
                  "B": {"roc_auc": {"value": 0.6, "low": 0.42, "high": 0.75}}})
    trust = output_trust(card)
    assert trust["A"]["chance_level"] is False and trust["A"]["test_auc"]["low"] == 0.8
    assert trust["B"]["chance_level"] is True and trust["B"]["note"] == CHANCE
    summary = model_test(card)
    assert summary["test_set"] == "internal" and summary["chance_level"] is True   # macro CI has 0.5
    assert "patient-disjoint" in summary["split"]


def test_untested_outputs_are_said_to_be_unknown():
    trust = output_trust(_card())
    assert all(t["chance_level"] and t["note"] == UNTESTED for t in trust.values())
    assert model_test(_card())["test_set"] is None

"""Transfer evidence: the status rules at the CI boundary, JSON round trip, validation, and the
card's section (round trip, migration of a card written before it, evaluate's replacement)."""
import pytest

from training.errors import ModelCardError
from training.evaluation.estimate import Estimate
from training.evaluation.evidence import (BELOW_CHANCE, SUPPORTED, TRAINING_ONLY, Evidence, EvidenceKind,
                                          TransferEvidence, evidence_from_test)
from training.evaluation import records
from training.models.card import CARD_VERSION, ModelCard

K = EvidenceKind


def _ev(kind, low, high, value=None, **kw):
    value = (low + high) / 2 if value is None else value
    return Evidence(kind, Estimate(value, low, high), "somewhere", 40, 20, **kw)


@pytest.mark.parametrize(("items", "status"), [
    ([], TRAINING_ONLY),
    ([_ev(K.INTERNAL, 0.9, 0.99)], TRAINING_ONLY),              # internal never counts
    ([_ev(K.SITE_HELD_OUT, 0.5, 0.8)], TRAINING_ONLY),          # touching 0.5 is not excluding it
    ([_ev(K.SITE_HELD_OUT, 0.501, 0.8)], SUPPORTED),
    ([_ev(K.EXTERNAL, 0.2, 0.5)], TRAINING_ONLY),
    ([_ev(K.EXTERNAL, 0.2, 0.499)], BELOW_CHANCE),
    ([_ev(K.EXTERNAL, 0.2, 0.4), _ev(K.SITE_HELD_OUT, 0.6, 0.7)], SUPPORTED),
    ([_ev(K.SITE_HELD_OUT, None, None, value=0.9)], TRAINING_ONLY),  # no interval: no claim
])
def test_status_rules(items, status):
    assert TransferEvidence({"COVID-19": items}).status("COVID-19") == status
    assert TransferEvidence({"COVID-19": items}).status("other output") == TRAINING_ONLY


def test_items_best_and_round_trip():
    ev = TransferEvidence({"COVID-19": [_ev(K.INTERNAL, 0.7, 0.9),
                                        _ev(K.SITE_HELD_OUT, 0.4, 0.6, recipe_only=True),
                                        _ev(K.EXTERNAL, 0.55, 0.7)]})
    assert [e.kind for e in ev.items("COVID-19", K.SITE_HELD_OUT)] == [K.SITE_HELD_OUT]
    assert len(ev.items("COVID-19")) == 3
    assert ev.best_transfer("COVID-19").kind is K.EXTERNAL
    assert ev.best_transfer("Normal") is None
    back = TransferEvidence.from_json(ev.to_json())
    assert back == ev and back.items("COVID-19")[1].recipe_only is True


@pytest.mark.parametrize(("item", "words"), [
    ({"kind": "hospital"}, "kind must be one of"),
    ({"auc": "high"}, "auc must be"),
    ({"auc": {"value": 1.2, "low": 0.5, "high": 0.9}}, "auc value must lie in [0, 1]"),
    ({"auc": {"value": 0.7, "low": 0.9, "high": 0.5}}, "reversed"),
    ({"what": ""}, "what must say"),
    ({"n_patients": -1}, "n_patients must be"),
    ({"n_images": 3.5}, "n_images must be"),
    ({"recipe_only": "yes"}, "recipe_only must be"),
])
def test_validation_errors(item, words):
    good = _ev(K.SITE_HELD_OUT, 0.6, 0.8).to_json()
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        TransferEvidence.from_json({"COVID-19": [{**good, **item}]})
    with pytest.raises(ValueError, match="must be a list"):
        TransferEvidence.from_json({"COVID-19": good})


def _test(test_set="internal", auc=None):
    auc = auc or {"value": 0.7, "low": 0.55, "high": 0.82}
    return records.TestEvaluation.from_json({
        "test_set": test_set, "part": "test", "split_sha256": "1a2b3c4d" * 8, "n_images": 40, "n_patients": 30,
        "metrics": {"per_output": {"COVID-19": {"roc_auc": auc}, "Normal": {"roc_auc": None}}}})


def test_from_test_kinds_and_replacement():
    internal = evidence_from_test(_test())
    assert list(internal) == ["COVID-19"]  # an output without an AUC has no item
    item = internal["COVID-19"][0]
    assert (item.kind, item.auc.low, item.n_patients) == (K.INTERNAL, 0.55, 30)
    assert "1a2b3c4d" in item.what
    held = _ev(K.SITE_HELD_OUT, 0.3, 0.45, recipe_only=True)
    ev = TransferEvidence({"COVID-19": [held]}).with_test(_test())
    ev = ev.with_test(_test(auc={"value": 0.8, "low": 0.7, "high": 0.9}))  # re-evaluated: replaced
    assert [e.kind for e in ev.items("COVID-19")] == [K.SITE_HELD_OUT, K.INTERNAL]
    assert ev.items("COVID-19", K.INTERNAL)[0].auc.value == 0.8
    assert ev.status("COVID-19") == BELOW_CHANCE
    ext = ev.with_test(_test("external", {"value": 0.8, "low": 0.6, "high": 0.9}))
    assert ext.status("COVID-19") == SUPPORTED and len(ext.items("COVID-19")) == 3


def _raw(**kw):
    return {"card_version": CARD_VERSION, "name": "m", "architecture": "resnet50", "task": "covid",
            "kind": "single", "outputs": ["COVID-19", "Normal"], "input_size": 32,
            "preprocessing": {"size": 32}, "gradcam_layer": "conv5_block3_out",
            "metrics": {"validation": {}, "test": _test().to_json()}, **kw}


def test_card_round_trip_and_migration():
    old = ModelCard.from_json(_raw())  # written before the section: its test is its evidence
    assert old.evidence.items("COVID-19", K.INTERNAL)[0].auc.value == 0.7
    assert old.evidence.status("COVID-19") == TRAINING_ONLY
    ev = old.evidence.replaced((K.SITE_HELD_OUT,), {"COVID-19": [_ev(K.SITE_HELD_OUT, 0.6, 0.8)]})
    card = ModelCard.from_json(_raw(evidence=ev.to_json()))
    back = ModelCard.from_json(card.to_json())
    assert back.evidence == ev and back.evidence.status("COVID-19") == SUPPORTED
    assert ModelCard.from_json(_raw(evidence={})).evidence.items("COVID-19") == []  # written: as written
    with pytest.raises(ModelCardError, match="evidence kind must be one of"):
        ModelCard.from_json(_raw(evidence={"COVID-19": [{**ev.to_json()["COVID-19"][1], "kind": "x"}]}))


def test_evaluate_writes_its_items_and_keeps_cross_site_ones(world, tmp_path):
    import shutil

    from training.evaluation.evaluate import evaluate_model
    from training.models.card import read_card, update_card

    model = tmp_path / "model"
    shutil.copytree(world["single"], model)
    held = TransferEvidence({"Pneumonia": [_ev(K.SITE_HELD_OUT, 0.3, 0.45, recipe_only=True)]})
    update_card(model, evidence=held.to_json())
    internal = evaluate_model(model, world["data"], split=str(world["split"]), out_dir=tmp_path / "i", n_boot=50)
    external = evaluate_model(model, [world["external"]], out_dir=tmp_path / "e", n_boot=50)
    ev = read_card(model).evidence
    assert [e.kind for e in ev.items("Pneumonia")] == [K.SITE_HELD_OUT, K.INTERNAL, K.EXTERNAL]
    for kind, result in ((K.INTERNAL, internal), (K.EXTERNAL, external)):
        item = ev.items("Pneumonia", kind)[0]
        assert item.auc == Estimate.of(result["metrics"]["per_output"]["Pneumonia"]["roc_auc"])
        assert (item.n_images, item.n_patients) == (result["n_images"], result["n_patients"])

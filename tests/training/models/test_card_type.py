"""The typed model card: JSON round trip, unknown keys kept, one type from training to the app."""
import json

import pytest

from training.errors import ModelCardError
from training.models.card import CARD_VERSION, ModelCard, read_card, update_card


def _raw(**kw):
    raw = {"card_version": 1, "name": "m", "architecture": "resnet50", "task": "pneumonia",
           "kind": "single", "outputs": ["Normal", "Pneumonia"], "input_size": 32,
           "preprocessing": {"size": 32}, "gradcam_layer": "conv5_block3_out",
           "thresholds": {"Normal": 0.5, "Pneumonia": 0.3}, "metrics": {"validation": {}, "test": {}},
           "test_set": None}
    raw.update(kw)
    return raw


def test_round_trip_keeps_every_key_and_unknown_ones():
    raw = _raw(from_a_newer_cxrlab={"x": 1})
    card = ModelCard.from_json(raw)
    assert card.threshold("Pneumonia") == 0.3 and card.extra == {"from_a_newer_cxrlab": {"x": 1}}
    assert card.to_json()["from_a_newer_cxrlab"] == {"x": 1}
    again = ModelCard.from_json(json.loads(json.dumps(card.to_json())))
    assert again == card and "pretraining" not in card.to_json()  # optional keys omitted when unset
    assert card["outputs"] == card.outputs and card.get("missing", 7) == 7 and "task" in card


def test_a_version_this_cxrlab_cannot_read_is_named():
    with pytest.raises(ModelCardError, match=f"card_version 99; this cxrlab reads versions 1..{CARD_VERSION}"):
        ModelCard.from_json(_raw(card_version=99), "some/card.json")


def test_update_card_goes_through_the_type(tmp_path):
    (tmp_path / "card.json").write_text(json.dumps(_raw()))
    card = update_card(tmp_path, test_set="internal", metrics={"validation": {}, "test": {"n_images": 3}})
    assert isinstance(card, ModelCard) and card.test_metrics == {"n_images": 3}
    assert read_card(tmp_path) == card
    with pytest.raises(ModelCardError, match="thresholds keys"):
        update_card(tmp_path, thresholds={"Normal": 0.5})

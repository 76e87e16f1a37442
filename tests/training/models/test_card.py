"""Model cards: save/load round trip, validation, atomic saves, transfer from a saved model."""
from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np
import pytest

from tests.training.models.conftest import images, tiny_size
from training.errors import CXRError, ModelCardError
from training.models import ARCHITECTURES, build_model, get_architecture
from training.models import card as card_mod
from training.models.build import backbone_layers
from training.models.card import (
    CARD_VERSION,
    REQUIRED_KEYS,
    file_sha256,
    load_model,
    read_card,
    save_model,
    update_card,
    validate_card,
)


def make_card(arch: str, outputs=("a", "b"), kind="multilabel", **extra) -> dict:
    size = tiny_size(arch)
    return {
        "name": f"test-{arch}", "architecture": arch, "task": "multilabel", "kind": kind,
        "outputs": list(outputs), "input_size": size,
        "preprocessing": {"size": size, "clip_percentile": 0.5, "resize": "pad", "clahe": False,
                          "clahe_clip": 0.01, "channels": 3},
        "transfer": {"mode": "frozen", "weights": None},
        **extra,
    }


def _run(model, x) -> np.ndarray:
    return np.asarray(model(x, training=False))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, frozen_model):
    """A saved small model directory (VGG16 at 32 px) and its model."""
    model = frozen_model("vgg16")
    out = save_model(model, make_card("vgg16", thresholds={"a": 0.3, "b": 0.7}),
                     tmp_path_factory.mktemp("models") / "m")
    return out, model


# --- round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", [a if a == "vgg16" else pytest.param(a, marks=pytest.mark.slow)
                                  for a in ARCHITECTURES])
def test_save_load_round_trip_predicts_identically(tmp_path, frozen_model, arch):
    model = frozen_model(arch)
    out = save_model(model, make_card(arch), tmp_path / arch)
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "model.keras"]
    loaded, card = load_model(out)
    x = images(arch, seed=3)
    np.testing.assert_array_equal(_run(loaded, x), _run(model, x))
    assert card["gradcam_layer"] == get_architecture(arch).gradcam_layer  # filled from registry
    assert len(loaded.get_layer(card["gradcam_layer"]).output.shape) == 4
    validate_card(card)


def test_save_fills_versions_params_and_checksum(saved):
    out, model = saved
    card = json.loads((out / "card.json").read_text())
    assert card["card_version"] == CARD_VERSION
    assert {"keras", "backend", "cxrlab"} <= set(card["versions"])
    assert card["versions"]["keras"] == keras.__version__
    assert card["created"].endswith("+00:00")
    assert card["params"] == {"total": model.count_params(), "trainable": 512 * 2 + 2}
    assert card["model_sha256"] == hashlib.sha256((out / "model.keras").read_bytes()).hexdigest()


def test_file_sha256(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(os.urandom(3 << 20))  # several read chunks
    assert file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()


# --- validation -------------------------------------------------------------------------------

def _full_card(**changes) -> dict:
    card = {**make_card("vgg16"), "card_version": 1, "gradcam_layer": "block5_conv3",
            "thresholds": {"a": 0.5, "b": 0.5}}
    card.update(changes)
    return card


@pytest.mark.parametrize("change, match", [
    ({"outputs": None}, "outputs"),
    ({"outputs": []}, "outputs"),
    ({"outputs": ["a", "a"]}, "distinct"),
    ({"input_size": 64}, "preprocessing.size"),
    ({"kind": "regression"}, "kind"),
    ({"kind": "single", "outputs": ["a"], "thresholds": None}, "at least 2"),
    ({"thresholds": {"a": 0.5}}, "thresholds keys"),
    ({"thresholds": {"a": 0.5, "b": 1.5}}, r"\[0, 1\]"),
    ({"card_version": CARD_VERSION + 1}, "card_version"),
    ({"gradcam_layer": ""}, "gradcam_layer"),
])
def test_inconsistent_cards_are_rejected_naming_the_file(change, match):
    card = _full_card(**change)
    if change.get("outputs", "") is None:
        del card["outputs"]
    with pytest.raises(ModelCardError, match=match) as err:
        validate_card(card, "models/x/card.json")
    assert "models/x/card.json" in str(err.value)


def test_valid_card_passes_and_required_keys_are_checked():
    assert validate_card(_full_card())["outputs"] == ["a", "b"]
    for key in REQUIRED_KEYS:
        card = _full_card()
        del card[key]
        with pytest.raises(ModelCardError, match=key):
            validate_card(card)


def test_missing_or_broken_files_raise_model_card_error(tmp_path, saved):
    out, _ = saved
    with pytest.raises(ModelCardError, match="card missing"):
        load_model(tmp_path)
    d = tmp_path / "broken"
    d.mkdir()
    (d / "card.json").write_text("{not json")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_model(d)
    (d / "card.json").write_text((out / "card.json").read_text())
    with pytest.raises(ModelCardError, match="model file missing"):
        load_model(d)
    (d / "model.keras").write_bytes(b"garbage")
    with pytest.raises(ModelCardError, match="SHA-256"):
        load_model(d)
    card = json.loads((d / "card.json").read_text())
    del card["model_sha256"]  # hand-written card: the loader itself must fail cleanly
    (d / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="cannot be loaded"):
        load_model(d)


def test_card_that_does_not_match_the_model_is_rejected(tmp_path, frozen_model):
    model = frozen_model("vgg16")
    with pytest.raises(ModelCardError, match="2 outputs but the card lists 3"):
        save_model(model, make_card("vgg16", outputs=("a", "b", "c")), tmp_path / "m")
    bad_size = make_card("vgg16")
    bad_size["input_size"] = bad_size["preprocessing"]["size"] = 64
    with pytest.raises(ModelCardError, match="input_size 64"):
        save_model(model, bad_size, tmp_path / "m")
    with pytest.raises(ModelCardError, match="gradcam_layer 'nope'"):
        save_model(model, make_card("vgg16", gradcam_layer="nope"), tmp_path / "m")
    assert not (tmp_path / "m" / "model.keras").exists()


# --- atomicity --------------------------------------------------------------------------------

def _snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_interrupted_model_write_keeps_the_previous_model(tmp_path, frozen_model, monkeypatch):
    model = frozen_model("vgg16")
    out = save_model(model, make_card("vgg16"), tmp_path / "m")
    before = _snapshot(out)

    def crash(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"PK half a zip")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, make_card("vgg16", name="new"), out)
    monkeypatch.undo()
    assert _snapshot(out) == before  # no temp folder left, nothing replaced
    loaded, card = load_model(out)
    assert card["name"] == "test-vgg16"
    x = images("vgg16")
    np.testing.assert_array_equal(_run(loaded, x), _run(model, x))


def test_interruption_between_model_and_card_is_detected(tmp_path, frozen_model, monkeypatch):
    first = build_model("vgg16", ["a", "b"], "multilabel", input_size=32, weights=None)
    out = save_model(first, make_card("vgg16"), tmp_path / "m")
    real_replace = os.replace

    def crash_on_card(src, dst):
        if str(dst).endswith("card.json"):
            raise KeyboardInterrupt("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(card_mod.os, "replace", crash_on_card)
    with pytest.raises(KeyboardInterrupt):
        save_model(frozen_model("vgg16"), make_card("vgg16", name="new"), out)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "model.keras"]
    with pytest.raises(ModelCardError, match="SHA-256"):  # never a silently mismatched pair
        load_model(out)


def test_update_card_is_atomic_and_validated(tmp_path, saved):
    src, _ = saved
    d = tmp_path / "m"
    d.mkdir()
    (d / "card.json").write_text((src / "card.json").read_text())
    (d / "model.keras").symlink_to(src / "model.keras")  # the card is what changes
    card = update_card(d, metrics={"validation": {"auc": np.float32(0.9), "ece": float("nan")},
                                   "test": {"test_set": "internal", "metrics": {}}})
    on_disk = read_card(d)
    assert on_disk == card and on_disk.test_set == "internal"
    assert on_disk.validation_metrics.get("auc").value == pytest.approx(0.9)
    assert on_disk["metrics"]["validation"]["ece"] is None  # NaN is not JSON: n/a
    assert sorted(p.name for p in d.iterdir()) == ["card.json", "model.keras"]
    text = (d / "card.json").read_text()
    with pytest.raises(ModelCardError, match="thresholds keys"):
        update_card(d, thresholds={"a": 0.5})
    assert (d / "card.json").read_text() == text
    load_model(d)  # the model still matches its card


# --- transfer ---------------------------------------------------------------------------------

def test_transfer_from_a_saved_model_copies_the_backbone_and_reinitialises_the_head(saved, caplog):
    out, source = saved
    with caplog.at_level("INFO"):
        target = build_model("vgg16", ["x", "y", "z"], "single", input_size=48, weights=str(out))
    assert "transferred weights of 13 of 13 vgg16 backbone layers" in caplog.text
    for s, t in zip(backbone_layers(source), backbone_layers(target)):
        assert s.name == t.name
        for a, b in zip(s.get_weights(), t.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert target.get_layer("head").get_weights()[0].shape == (512, 3)


def test_transfer_between_architectures_is_refused(saved):
    out, _ = saved
    with pytest.raises(CXRError, match="vgg16 model.*resnet50"):
        build_model("resnet50", ["a", "b"], "multilabel", input_size=32, weights=str(out))

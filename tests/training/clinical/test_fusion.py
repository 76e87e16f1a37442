"""The two-input late-fusion model: builds, trains a step, saves with a card the app reads."""
from __future__ import annotations

import keras
import numpy as np

from training.preprocess import decode_image
import pandas as pd
import pytest

from training.clinical.encoder import ClinicalEncoder
from training.clinical.fusion import (METADATA_NAME, build_fusion_model,
                                      fit_head, fusion_parts)
from tests.helpers.images import write_xray
from training.engine.data import class_balance_weights
from training.models.build import INPUT_NAME

SIZE = 32


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_fusion_model("resnet50", ["neg", "pos"], "single", n_metadata=5, input_size=SIZE,
                              mode="frozen", weights=None)


def test_two_named_inputs_and_one_head(model):
    assert [t.name.split(":")[0] for t in model.inputs] == [INPUT_NAME, METADATA_NAME]
    assert model.inputs[1].shape[1:] == (5,)
    assert model.outputs[0].shape[1:] == (2,)
    # frozen backbone: only normalisation-free fusion layers train
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert trainable == {"meta_dense", "head"}


def test_train_step_changes_the_full_model(model):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    meta = rng.normal(size=(8, 5)).astype("float32")
    y = np.eye(2, dtype="float32")[[0, 1] * 4]
    feature_model, head = fusion_parts(model)
    feats = np.asarray(feature_model(images))
    model.get_layer("image_norm").adapt(feats)
    before = np.asarray(model([images, meta]))
    hist = fit_head(head, [feats, meta], y, epochs=2, sample_weight=class_balance_weights(y)[0])
    assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all()
    after = np.asarray(model([images, meta]))
    assert not np.allclose(before, after)  # the head's weights are the full model's
    np.testing.assert_allclose(after, np.asarray(head([feats, meta])), rtol=1e-4, atol=1e-5)


def test_metadata_input_changes_the_prediction():
    keras.utils.set_random_seed(2)
    fresh = build_fusion_model("resnet50", ["a", "b"], "single", 3, SIZE, weights=None)
    images = np.zeros((2, SIZE, SIZE, 3), "float32")
    meta = np.array([[0] * 3, [1] * 3], "float32")
    out = np.asarray(fresh([images, meta]))
    assert not np.allclose(out[0], out[1])


def test_bad_metadata_width():
    with pytest.raises(ValueError, match="n_metadata"):
        build_fusion_model("resnet50", ["a", "b"], "single", 0, SIZE, weights=None)


def test_saved_fused_model_loads_in_the_app(model, tmp_path):
    from app.model_bank import ModelBank
    from training.models.card import save_model
    from training.preprocess import PreprocessConfig

    enc = ClinicalEncoder(["age", "sex"]).fit(pd.DataFrame({"age": [30.0, np.nan, 50.0],
                                                            "sex": ["M", "F", "F"]}))
    keras.utils.set_random_seed(1)
    m = build_fusion_model("resnet50", ["neg", "pos"], "single", enc.width, SIZE, weights=None)
    card = {"name": "fused", "architecture": "resnet50", "task": "covid", "kind": "single",
            "outputs": ["neg", "pos"], "input_size": SIZE,
            "preprocessing": PreprocessConfig(size=SIZE).to_dict(),
            "metadata_features": enc.features, "metadata_encoder": enc.to_dict()}
    save_model(m, card, tmp_path / "models" / "fused")
    bank = ModelBank.from_dir(tmp_path / "models", device="cpu")  # warm-up runs both inputs
    assert bank.metadata_features == ["age", "sex"]
    image = write_xray(tmp_path / "x.png")
    got = bank.predict(image.read_bytes(), "x.png", metadata={"age": 45, "sex": None}).models[0]
    x = bank.prepare(decode_image(image.read_bytes()))["fused"][None].astype(np.float32)
    direct = np.asarray(m([x, enc.encode_records([{"age": 45}])]))[0]
    np.testing.assert_allclose([o.probability for o in got.outputs], direct, rtol=1e-5, atol=1e-6)

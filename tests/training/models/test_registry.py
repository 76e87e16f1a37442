"""Registry, preprocessing layer and model building, over every registered backbone."""
from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from tests.training.models.conftest import images, tiny_size
from training.models.losses import masked_binary_crossentropy
from training.errors import CXRError
from training.models import (
    ARCHITECTURES,
    FOUR,
    BackbonePreprocess,
    backbone_layers,
    build_model,
    count_params,
    get_architecture,
    set_backbone_trainable,
    split_feature_head,
    unfreeze_backbone,
)
from training.models import weights as weights_mod

ARCHS = list(ARCHITECTURES)
#: the keras.applications module whose preprocess_input each backbone was trained with
KERAS_MODULE = {
    "resnet50": keras.applications.resnet50,
    "inception_v3": keras.applications.inception_v3,
    "xception": keras.applications.xception,
    "vgg16": keras.applications.vgg16,
    "densenet121": keras.applications.densenet,
    "efficientnet_b0": keras.applications.efficientnet,
}
MODE_MODULE = {"caffe": keras.applications.vgg16, "tf": keras.applications.xception,
               "torch": keras.applications.densenet, "none": keras.applications.efficientnet}


def _run(model, x) -> np.ndarray:
    """Eager forward pass (no tf.function tracing: much faster than predict on tiny inputs)."""
    return np.asarray(model(x, training=False))


def _pixels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)


# --- registry -----------------------------------------------------------------------------

def test_registry_has_the_four_and_modern_backbones():
    assert set(FOUR) <= set(ARCHITECTURES)
    assert {"densenet121", "efficientnet_b0"} <= set(ARCHITECTURES)
    assert all(name == a.name for name, a in ARCHITECTURES.items())


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(CXRError, match="resnet50.*vgg16"):
        get_architecture("alexnet")


@pytest.mark.parametrize("arch", ARCHS)
def test_registry_mode_matches_keras_preprocess_input(arch):
    a = get_architecture(arch)
    x = _pixels()
    ours = np.asarray(BackbonePreprocess(a.preprocess_mode)(x))
    ref = KERAS_MODULE[arch].preprocess_input(x.astype(np.float32).copy())
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


# --- BackbonePreprocess -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "none"])
def test_preprocess_layer_matches_keras(mode):
    x = _pixels(1)
    ref = MODE_MODULE[mode].preprocess_input(x.astype(np.float32).copy())
    for given in (x, x.astype(np.float32)):  # uint8 is cast inside
        out = np.asarray(BackbonePreprocess(mode)(given))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    if mode != "none":
        assert not np.allclose(ref, x)  # the reference really transforms


def test_preprocess_layer_rejects_unknown_mode():
    with pytest.raises(ValueError, match="caffe"):
        BackbonePreprocess("imagenet")


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_preprocess_layer_saves_and_loads(tmp_path, mode):
    inp = keras.Input((5, 7, 3))
    model = keras.Model(inp, BackbonePreprocess(mode, name="p")(inp))
    model.save(tmp_path / "p.keras")
    loaded = keras.saving.load_model(tmp_path / "p.keras")
    assert loaded.get_layer("p").mode == mode
    x = _pixels(2)
    np.testing.assert_allclose(_run(loaded, x), _run(model, x))


# --- building -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_build_forward_shape_and_layout(frozen_model, arch):
    model = frozen_model(arch)
    a = get_architecture(arch)
    s = tiny_size(arch)
    assert tuple(model.input.shape) == (None, s, s, 3)
    assert model.get_layer("cxr_preprocess").mode == a.preprocess_mode
    assert [l.name for l in model.layers[-3:]] == ["features", "head_dropout", "head"]
    out = _run(model, images(arch))
    assert out.shape == (2, 2) and out.dtype == np.float32
    assert np.all((out > 0) & (out < 1))


@pytest.mark.parametrize("arch", ARCHS)
def test_gradcam_layer_is_a_4d_feature_map_in_the_flat_model(frozen_model, arch):
    layer = frozen_model(arch).get_layer(get_architecture(arch).gradcam_layer)
    assert len(layer.output.shape) == 4


@pytest.mark.parametrize("arch", ARCHS)
def test_the_explained_map_is_never_one_cell_where_a_fallback_exists(frozen_model, arch):
    """At the tiny test size InceptionV3's mixed10 is 1×1: Grad-CAM explains mixed7 instead."""
    model, a = frozen_model(arch), get_architecture(arch)
    chosen = a.gradcam_layer_for(model)
    shape = model.get_layer(chosen).output.shape
    if a.gradcam_fallback:
        assert tuple(model.get_layer(a.gradcam_layer).output.shape[1:3]) == (1, 1)  # the case at hand
        assert chosen == a.gradcam_fallback and shape[1] > 1 and shape[2] > 1
    else:
        assert chosen == a.gradcam_layer


def test_inception_keeps_mixed10_where_its_map_has_cells():
    a = get_architecture("inception_v3")
    model = build_model("inception_v3", ["x"], "multilabel", 160, "scratch", None)
    assert tuple(model.get_layer("mixed10").output.shape[1:3]) == (3, 3)
    assert a.gradcam_layer_for(model) == "mixed10"


@pytest.mark.parametrize("arch", ARCHS)
def test_frozen_trains_only_the_head(frozen_model, arch):
    model = frozen_model(arch)
    features = model.get_layer("features").output.shape[-1]
    params = count_params(model)
    assert params["trainable"] == features * 2 + 2
    assert params["total"] == model.count_params() > params["trainable"]
    assert backbone_layers(model) and not any(l.trainable for l in backbone_layers(model))

    backbone_before = [w.copy() for l in backbone_layers(model) for w in l.get_weights()]
    head_before = model.get_layer("head").get_weights()[0].copy()
    model.compile(keras.optimizers.SGD(0.5), masked_binary_crossentropy, run_eagerly=True)
    y = np.array([[1, 0], [np.nan, 1]], dtype=np.float32)
    loss = model.train_on_batch(images(arch), y)
    assert np.isfinite(loss)
    assert not np.allclose(model.get_layer("head").get_weights()[0], head_before)
    backbone_after = [w for l in backbone_layers(model) for w in l.get_weights()]
    assert all(np.array_equal(b, a) for b, a in zip(backbone_before, backbone_after))


@pytest.mark.parametrize("arch", ARCHS)
def test_unfreeze_keeps_batchnorm_frozen(frozen_model, arch):
    model = frozen_model(arch)
    try:
        unfreeze_backbone(model)
        layers = backbone_layers(model)
        bn = [l for l in layers if isinstance(l, keras.layers.BatchNormalization)]
        weighted = [l for l in layers if l.weights and l not in bn]
        assert weighted and all(l.trainable for l in weighted)
        assert not any(l.trainable for l in bn)
        assert count_params(model)["trainable"] > model.get_layer("head").count_params()
    finally:
        set_backbone_trainable(model, False)
    assert count_params(model)["trainable"] == model.get_layer("head").count_params()


def test_finetune_stage_two_trains_convs_but_not_batchnorm_statistics():
    model = build_model("resnet50", ["a", "b"], "single", input_size=32, mode="finetune", weights=None)
    assert count_params(model)["trainable"] == 2048 * 2 + 2  # stage 1 = frozen
    unfreeze_backbone(model)
    conv, bn = model.get_layer("conv2_block1_1_conv"), model.get_layer("conv2_block1_1_bn")
    conv_before, bn_before = conv.get_weights()[0].copy(), [w.copy() for w in bn.get_weights()]
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy", run_eagerly=True)
    model.train_on_batch(images("resnet50", 4), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])
    assert not np.allclose(conv.get_weights()[0], conv_before)
    assert all(np.array_equal(b, a) for b, a in zip(bn_before, bn.get_weights()))


def test_scratch_trains_everything_and_single_is_softmax():
    model = build_model("vgg16", ["x", "y", "z"], "single", input_size=32, mode="scratch")
    params = count_params(model)
    assert params["trainable"] == params["total"]  # VGG16 has no BatchNorm statistics
    out = _run(model, images("vgg16"))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_head_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("vgg16", ["a", "b"], "multilabel", input_size=32, weights=None)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("block1_conv1").compute_dtype == "float16"
    assert model.get_layer("head").compute_dtype == "float32"
    assert _run(model, images("vgg16")).dtype == np.float32


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "ordinal"}, "kind"),
    ({"mode": "partial"}, "transfer mode"),
    ({"outputs": []}, "outputs"),
    ({"outputs": ["a", "a"]}, "distinct"),
    ({"kind": "single", "outputs": ["a"]}, "at least 2"),
    ({"input_size": 16}, "at least 32"),
])
def test_build_rejects_bad_arguments(kwargs, match):
    args = {"arch": "vgg16", "outputs": ["a", "b"], "kind": "multilabel", "weights": None, **kwargs}
    with pytest.raises(CXRError, match=match):
        build_model(**args)


def test_split_feature_head_shares_the_head(frozen_model):
    model = frozen_model("vgg16")
    feature_model, head_model = split_feature_head(model)
    x = images("vgg16")
    feats = _run(feature_model, x)
    assert feats.shape == (2, 512)
    np.testing.assert_allclose(_run(head_model, feats), _run(model, x),
                               rtol=1e-5, atol=1e-6)
    assert head_model.get_layer("head") is model.get_layer("head")
    before = model.get_layer("head").get_weights()[0].copy()
    head_model.compile(keras.optimizers.SGD(0.5), "binary_crossentropy")
    head_model.train_on_batch(feats, np.array([[1, 0], [0, 1]], dtype=np.float32))
    assert not np.allclose(model.get_layer("head").get_weights()[0], before)


# --- weights ----------------------------------------------------------------------------------

def test_imagenet_offline_gives_a_clear_error_naming_the_file(monkeypatch):
    monkeypatch.setattr(weights_mod, "cached_weights", lambda a: None)
    monkeypatch.setattr(weights_mod, "weights_host_reachable", lambda timeout=3.0: False)
    a = get_architecture("resnet50")
    with pytest.raises(CXRError) as err:
        build_model("resnet50", ["a", "b"], "single", input_size=32)
    msg = str(err.value)
    assert a.weights_file in msg and "~/.keras/models" in msg
    assert "--weights none" in msg and "--mode scratch" in msg


def test_imagenet_without_internet_fails_fast_here():
    a = get_architecture("vgg16")
    if weights_mod.cached_weights(a) is not None:
        pytest.skip("ImageNet weights are cached here")
    if weights_mod.weights_host_reachable():
        pytest.skip("online: would download the weights")
    start = time.monotonic()
    with pytest.raises(CXRError, match=a.weights_file):
        build_model("vgg16", ["a", "b"], "single", input_size=32, weights="imagenet")
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("spec", [None, "none", "None", ""])
def test_none_weights_mean_random_init(spec):
    assert weights_mod.normalise_weights(spec) is None


def test_backbone_weights_file_is_loaded_by_layer_name(tmp_path):
    bare = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    bare.save_weights(tmp_path / "vgg.weights.h5")
    model = build_model("vgg16", ["a", "b"], "multilabel", input_size=48,
                        weights=str(tmp_path / "vgg.weights.h5"))
    for name in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0],
                                      bare.get_layer(name).get_weights()[0])


def test_bad_weights_paths_are_clear_errors(tmp_path):
    with pytest.raises(CXRError, match="not found"):
        build_model("vgg16", ["a", "b"], "multilabel", input_size=32, weights=str(tmp_path / "x.h5"))
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(CXRError, match="junk.weights.h5"):
        build_model("vgg16", ["a", "b"], "multilabel", input_size=32,
                    weights=str(tmp_path / "junk.weights.h5"))


# --- describe ---------------------------------------------------------------------------------

def test_describe_architectures_reports_sizes_modes_and_params(frozen_model, monkeypatch):
    from training.models import describe

    subset = {k: ARCHITECTURES[k] for k in ("vgg16", "xception")}
    monkeypatch.setattr(describe, "ARCHITECTURES", subset)
    rows = describe.describe_architectures(input_size=32)
    assert [r["name"] for r in rows] == ["vgg16", "xception"]
    vgg, xcep = rows
    assert vgg["input_size"] == 32 and xcep["input_size"] == 71  # raised to the minimum
    assert vgg["preprocess_mode"] == "caffe" and vgg["gradcam_layer"] == "block5_conv3"
    assert vgg["weights_file"] == ARCHITECTURES["vgg16"].weights_file
    expected = count_params(frozen_model("vgg16"))
    assert (vgg["total_params"], vgg["trainable_params"]) == (expected["total"], expected["trainable"])
    assert xcep["trainable_params"] == 2048 * 2 + 2
    assert describe.describe_architectures(input_size=32) == rows  # cached, same answer

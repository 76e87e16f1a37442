"""BatchNorm statistics that match training: precise BN, the health figure, no side effects."""
import numpy as np
import pytest
import keras
from sklearn.metrics import roc_auc_score

from training.engine import batchnorm as bn


def _data(n=128, seed=0):
    """Bright square (class 1) or not, on a 0..255 scale: the input statistics are far from
    BN's initial moving mean 0 / variance 1, as for raw images."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype("float32")
    x = rng.normal(120, 30, (n, 16, 16, 1))
    x[y == 1, 4:12, 4:12, :] += 60
    return x.astype("float32"), y[:, None]


def _tiny(seed=0, momentum=0.99):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 1))
    x = inp
    for filters in (8, 16):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=momentum)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))


@pytest.fixture(scope="module")
def trained():
    """A tiny BN network trained briefly (24 steps) with Keras's default momentum 0.99."""
    x, y = _data()
    model = _tiny()
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    return model, x, y


def _auc(model, x, y):
    return roc_auc_score(y[:, 0], np.asarray(model.predict(x, verbose=0))[:, 0])


def test_precise_bn_makes_inference_match_training(trained):
    """Regression: brief from-scratch training left the moving statistics near their initial
    values, so inference-mode scores on the model's own training data were useless; precise BN
    recomputes them and the model scores its training data as it learnt to."""
    model, x, y = trained
    model = keras.models.clone_model(model)
    model.set_weights(trained[0].get_weights())
    loss = keras.losses.binary_crossentropy
    before = bn.health(bn.mode_losses(model, x, y, loss, 16))
    assert not before["ok"] and _auc(model, x, y) < 0.8  # what the trainer used to save
    done = bn.precise_bn(model, x, 16)
    assert done == {"layers": 2, "images": 128}
    after = bn.health(bn.mode_losses(model, x, y, loss, 16))
    assert after["ok"] and _auc(model, x, y) > 0.95
    assert after["val_loss_inference_mode"] == pytest.approx(after["val_loss_train_mode"], abs=0.05)


def test_precise_bn_changes_only_moving_statistics(trained):
    model = keras.models.clone_model(trained[0])
    model.set_weights(trained[0].get_weights())
    x = trained[1]
    moving = {id(w) for layer in bn.trainable_bn_layers(model)
              for w in (layer.moving_mean, layer.moving_variance)}
    before = {id(w): keras.ops.convert_to_numpy(w) for w in model.weights}
    layers = bn.trainable_bn_layers(model)
    momenta = [layer.momentum for layer in layers]
    bn.precise_bn(model, x, 16, limit=64)
    for w in model.weights:
        if id(w) in moving:
            assert not np.allclose(keras.ops.convert_to_numpy(w), before[id(w)])
        else:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), before[id(w)])
    assert [layer.momentum for layer in layers] == momenta  # restored


def test_moving_statistics_are_the_plain_batch_average():
    """One BN layer straight on the input: after precise BN its moving mean/variance are the
    means of the per-batch mean/variance."""
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.BatchNormalization()(inp))
    x = np.random.default_rng(1).normal(3.0, 2.0, (64, 4)).astype("float32")
    bn.precise_bn(model, x, 16, limit=64, seed=0)
    layer = bn.trainable_bn_layers(model)[0]
    order = np.random.default_rng(0).permutation(64)
    batches = [x[np.sort(order[i:i + 16])] for i in range(0, 64, 16)]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), np.mean([b.var(0) for b in batches], 0), rtol=1e-4)


def test_mode_losses_leave_the_model_unchanged(trained):
    model, x, y = trained
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    bn.mode_losses(model, x, y, keras.losses.binary_crossentropy, 16)
    for w, v in zip(model.weights, weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), v)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == rates


def test_frozen_bn_is_left_alone_and_settle_reports_it(trained):
    model = keras.models.clone_model(trained[0])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    assert bn.settle(model, trained[1], trained[1], trained[2], keras.losses.binary_crossentropy, 16) == {"layers": 0}
    assert bn.set_momentum(model, 0.9) == 0


def test_settle_warns_when_statistics_disagree(trained, capsys):
    model = keras.models.clone_model(trained[0])
    model.set_weights(trained[0].get_weights())
    x, y = trained[1], trained[2]
    out = bn.settle(model, x, x, y, keras.losses.binary_crossentropy, 16, precise=False)
    assert out["ok"] is False and "BatchNorm" in capsys.readouterr().err
    out = bn.settle(model, x, x, y, keras.losses.binary_crossentropy, 16)
    assert out["ok"] is True and out["precise_bn_images"] == 128 and out["layers"] == 2

"""The compiled forward pass of the post-training passes: same outputs as the eager call,
compiled on TensorFlow, and the Python attributes of its first trace kept."""
import numpy as np
import keras

from training.engine import batchnorm as bn
from training.engine.forward import compiled_call


def _model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inp, keras.layers.Dense(2)(x))


def test_compiled_inference_matches_the_eager_call_for_every_batch_size():
    model = _model()
    call = compiled_call(model, training=False)
    x = np.random.default_rng(0).normal(size=(10, 8, 8, 1)).astype("float32")
    for rows in (4, 4, 3, 10):  # a new size retraces; the result stays the eager one
        np.testing.assert_allclose(keras.ops.convert_to_numpy(call(x[:rows])),
                                   keras.ops.convert_to_numpy(model(x[:rows], training=False)), rtol=1e-5, atol=1e-6)
    if keras.backend.backend() == "tensorflow":
        assert hasattr(call, "get_concrete_function")  # a tf.function, not the eager call


def test_mode_losses_trace_inside_the_frozen_block_dropout_off_and_statistics_kept():
    """Traced with dropout at 0 and BN momentum at 1: the train-mode loss is the same on every
    call (no dropout noise) and the moving statistics do not move."""
    model = _model()
    x = np.random.default_rng(1).normal(5.0, 2.0, (32, 8, 8, 1)).astype("float32")
    y = np.random.default_rng(2).integers(0, 2, (32, 2)).astype("float32")
    layer = bn.trainable_bn_layers(model)[0]
    before = keras.ops.convert_to_numpy(layer.moving_mean).copy()
    loss = keras.losses.binary_crossentropy
    first = bn.mode_losses(model, x, y, lambda t, p: loss(t, p, from_logits=True), 8)
    second = bn.mode_losses(model, x, y, lambda t, p: loss(t, p, from_logits=True), 8)
    assert first == second
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.moving_mean), before)
    assert model.layers[-2].rate == 0.5 and layer.momentum == 0.99  # restored after the block

"""A model's forward pass compiled once, for the passes over many images after training:
precise BN, the BatchNorm health figure and the OOD gate's features (also the feature cache).

Called eagerly, a Keras model on TensorFlow dispatches every layer from Python: on the 2-core
CPU a ResNet50 at 96 px ran 46 images/s so, against 82-102 as a ``tf.function`` (BENCHMARKS.md
"Post-training passes"). Other backends keep the plain call (JAX is what GPU runs use).

The function is traced at its first call, so what layers read from Python attributes then
(BatchNorm momentum, dropout rate) stays fixed for its life: make a new one after changing them.
"""
from __future__ import annotations

from typing import Any, Callable

import keras


def compiled_call(model: keras.Model, training: bool) -> Callable[[Any], Any]:
    """``model(x, training=training)``, compiled on TensorFlow; a batch of another size than the
    first retraces once (``reduce_retracing``), not per size."""
    def call(x: Any) -> Any:
        return model(x, training=training)

    if keras.backend.backend() != "tensorflow":
        return call
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    return tf.function(call, reduce_retracing=True)

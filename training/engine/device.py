"""What accelerators the active Keras backend sees: the one place that asks."""
from __future__ import annotations

import keras


def gpu_count() -> int:
    """GPUs visible to the active backend (TensorFlow or JAX; 0 for others)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

        return len(tf.config.list_physical_devices("GPU"))
    if keras.backend.backend() == "jax":
        import jax  # JAX backend only

        return sum(d.platform == "gpu" for d in jax.devices())
    return 0


def gpus_visible() -> bool:
    """Whether the active backend sees a GPU."""
    return gpu_count() > 0

"""Which device serves the models: ``CXRLAB_DEVICE`` checked and applied at every start-up."""
from __future__ import annotations

import logging

from training.errors import CXRError

log = logging.getLogger(__name__)


def require_device(device: str = "auto") -> tuple[str, int]:
    """``(device, GPUs seen)`` for a valid ``CXRLAB_DEVICE``; refuses ``gpu`` without a GPU.

    Runs at every start-up, with or without model folders: a setting the app accepts must
    hold, not wait for the first model to fail.
    """
    from training.engine.device import gpu_count  # loads Keras: only when serving starts

    device = (device or "auto").strip().lower()
    if device not in ("auto", "cpu", "gpu"):
        raise CXRError(f"CXRLAB_DEVICE={device!r} is not one of auto, cpu, gpu.")
    gpus = gpu_count()
    if device == "gpu" and not gpus:
        raise CXRError("CXRLAB_DEVICE=gpu but TensorFlow sees no GPU. "
                       "What to do: use the GPU image/driver, or set CXRLAB_DEVICE=auto or cpu.")
    return device, gpus


def configure_device(device: str = "auto") -> str:
    """Pick GPU or CPU (``auto``/``cpu``/``gpu``); returns "GPU" or "CPU".

    Must run before TensorFlow touches a GPU: hiding devices later is impossible.
    """
    device, gpus = require_device(device)
    if device == "cpu" and gpus:
        import tensorflow as tf  # only TensorFlow can be told to hide a GPU it sees

        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            log.warning("CXRLAB_DEVICE=cpu but TensorFlow already initialised the GPU; using it")
            return "GPU"
        return "CPU"
    return "GPU" if gpus and device != "cpu" else "CPU"

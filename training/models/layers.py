"""Serializable Keras layers that travel inside saved models."""
from __future__ import annotations

import keras
from keras import ops

#: ImageNet channel statistics used by ``keras.applications`` (RGB order).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
#: "caffe" mode subtracts these from BGR channels (0..255 scale).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

MODES = ("caffe", "tf", "torch", "none")


@keras.saving.register_keras_serializable(package="cxrlab")
class BackbonePreprocess(keras.layers.Layer):
    """The ``keras.applications`` ``preprocess_input`` of a backbone, as a layer.

    Input: images valued in [0, 255] (uint8 or float), channels last, RGB. Modes:
    ``caffe`` RGB→BGR minus ImageNet means; ``tf`` x/127.5 - 1; ``torch`` x/255 then
    ImageNet mean/std; ``none`` identity (backbones that rescale inside, e.g. EfficientNet).
    Computes in float32 by default: under mixed precision the next layer casts down,
    so the mean subtraction itself is not done in float16.
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"BackbonePreprocess mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)  # RGB -> BGR
            return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=x.dtype)
            std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="cxrlab")
class FirstChannel(keras.layers.Layer):
    """Keeps the first channel, ``(B, H, W, C) -> (B, H, W, 1)`` (grayscale CXRs stored as RGB).

    A named layer instead of a ``Lambda``: Keras 3 refuses to load ``Lambda`` layers in safe
    mode (their Python code would be unpickled), so a model using one could not be served.
    """

    def call(self, inputs):
        return inputs[..., :1]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

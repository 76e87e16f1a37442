"""Grad-CAM heatmaps (Selvaraju et al. 2017) for saved models, and when a map would mislead.

Every saved model takes uint8-valued images ``(B, S, S, 3)``; :func:`gradcam` takes one
such image and returns an ``(S, S)`` heatmap in [0, 1] for one output class.
``explainer(model, layer).explain(image)`` returns the probabilities, the heatmap and the
explained class from one compiled call (one forward pass; the app uses it).
Gradients use ``tf.GradientTape``, so this module needs the TensorFlow backend.
"""
from __future__ import annotations

import threading
import weakref

import keras
import numpy as np

_CACHE_LOCK = threading.Lock()
#: model -> {layer name: GradCAM}; weak so that a dropped model frees its graph.
_CACHE: weakref.WeakKeyDictionary[keras.Model, dict[str, GradCAM]] = weakref.WeakKeyDictionary()


def _require_tensorflow():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Grad-CAM needs the TensorFlow backend, but Keras uses {keras.backend.backend()!r}. "
            "What to do: set KERAS_BACKEND=tensorflow before starting Python."
        )
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    return tf


class GradCAM:
    """A compiled Grad-CAM for one model and one convolutional layer."""

    def __init__(self, model: keras.Model, layer_name: str):
        tf = _require_tensorflow()
        try:
            layer = model.get_layer(layer_name)
        except ValueError as exc:
            raise ValueError(
                f"Grad-CAM layer {layer_name!r} is not a top-level layer of model "
                f"{model.name!r}. What to do: set the card's 'gradcam_layer' to the name of "
                "the last convolutional layer of the functional model."
            ) from exc
        self.layer_name = layer_name
        self.size = tuple(model.inputs[0].shape[1:3])
        grad_model = keras.Model(model.inputs, [layer.output, model.outputs[0]])
        self.n_outputs = int(model.outputs[0].shape[-1])
        #: the explained feature map's (h, w): a 1×1 map cannot localise anything
        self.map_size = tuple(int(d) for d in layer.output.shape[1:3])
        spec = tf.TensorSpec((None, *self.size, 3), tf.float32)
        # One graph for all calls: class indices and candidates are tensors, not Python values.
        self._fn = tf.function(
            lambda x, k, c: _cam(tf, grad_model, x, k, c),
            input_signature=[spec, tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.bool)],
        )

    def explain(self, image_uint8: np.ndarray, class_index: int | None = None,
                candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """``(probabilities (C,), heatmap (S, S), class index)`` from ONE forward pass.

        ``class_index=None`` explains the most probable output among ``candidates`` (a
        boolean mask over the outputs; default all), chosen inside the compiled graph.
        """
        image = np.asarray(image_uint8)
        if image.shape != (*self.size, 3):
            raise ValueError(f"Grad-CAM expects an image of shape {(*self.size, 3)}, got {image.shape}")
        k = -1 if class_index is None else int(class_index)   # -1: chosen in the graph
        if class_index is not None and not 0 <= k < self.n_outputs:
            raise ValueError(f"class_index {class_index} out of range for {self.n_outputs} outputs")
        mask = np.ones(self.n_outputs, bool) if candidates is None else np.asarray(candidates, bool)
        if mask.shape != (self.n_outputs,) or not mask.any():
            raise ValueError(f"candidates must be a non-empty mask of {self.n_outputs} outputs, got {mask}")
        preds, cam, index = self._fn(image[None].astype(np.float32), np.array([k], np.int32), mask)
        return np.asarray(preds)[0], np.asarray(cam)[0], int(np.asarray(index)[0])

    def explain_all(self, image_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (C,), heatmaps (C, S, S))``: one map per output, one batched call."""
        image = np.asarray(image_uint8)
        if image.shape != (*self.size, 3):
            raise ValueError(f"Grad-CAM expects an image of shape {(*self.size, 3)}, got {image.shape}")
        x = np.repeat(image[None].astype(np.float32), self.n_outputs, axis=0)
        preds, cams, _ = self._fn(x, np.arange(self.n_outputs, dtype=np.int32),
                                  np.ones(self.n_outputs, bool))
        return np.asarray(preds)[0], np.asarray(cams)

    def __call__(self, image_uint8: np.ndarray, class_index: int) -> np.ndarray:
        return self.explain(image_uint8, class_index)[1]


def _cam(tf, grad_model, x, k, candidates):
    """Channel weights = spatially averaged gradients; ReLU; resized; scaled to [0, 1].

    Returns the predictions too, so a caller that wants both runs the model once.
    ``k`` holds one class index per image (a batch of copies of one image explains several
    outputs at once); ``k < 0``: explain that image's top output among ``candidates``.
    """
    with tf.GradientTape() as tape:
        features, preds = grad_model(x, training=False)
        masked = tf.where(candidates[None, :], preds, tf.fill(tf.shape(preds), -1.0))
        top = tf.argmax(masked, axis=1, output_type=tf.int32)
        index = tf.where(k >= 0, k, top)
        score = tf.gather(preds, index, axis=1, batch_dims=1)
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, tf.shape(x)[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    # A flat map (no positive evidence) stays all-zero instead of dividing by zero.
    cam = tf.where(peak > 0, cam / tf.maximum(peak, 1e-12), tf.zeros_like(cam))
    return preds, cam, index


def explainer(model: keras.Model, layer_name: str) -> GradCAM:
    """The compiled :class:`GradCAM` of ``model`` at ``layer_name``, made once and cached."""
    with _CACHE_LOCK:
        per_model = _CACHE.setdefault(model, {})
        if layer_name not in per_model:
            per_model[layer_name] = GradCAM(model, layer_name)
        return per_model[layer_name]


def gradcam(model: keras.Model, image_uint8: np.ndarray, layer_name: str, class_index: int) -> np.ndarray:
    """Grad-CAM heatmap ``(S, S)`` in [0, 1] of output ``class_index`` at ``layer_name``.

    The compiled function is cached per model and layer, so repeated calls are fast.
    """
    n_out = int(model.outputs[0].shape[-1])
    if not 0 <= class_index < n_out:
        raise ValueError(f"class_index {class_index} out of range for {n_out} outputs")
    return explainer(model, layer_name)(image_uint8, class_index)


# ------------------------------------------------------------------ honest display

#: A map whose values span less than this (of its [0, 1] range) shows nothing.
UNIFORM_SPAN = 0.05


def cam_problem(cam: np.ndarray, map_size: tuple[int, ...] = ()) -> str | None:
    """Why a heatmap would mislead (None when it is worth showing)."""
    cam = np.asarray(cam, dtype=np.float32)
    if map_size and all(int(d) <= 1 for d in map_size):
        return ("the model's last feature map is 1×1 at this input size, so Grad-CAM cannot "
                "localise anything (a larger input size would)")
    if not np.isfinite(cam).all():
        return "the heatmap is not a number (NaN): the gradient overflowed"
    if float(cam.max()) <= 0.0:
        return ("the heatmap is zero everywhere: no region increases this output (zero or "
                "negative gradient, e.g. a saturated probability)")
    if float(cam.max() - cam.min()) < UNIFORM_SPAN:
        return "the heatmap is uniform: it does not single out any region"
    return None

"""Every saved model of a models folder, loaded once, with compiled inference.

A model folder is ``models/<name>/`` with ``card.json`` + ``model.keras`` (written by
``training.models.card.save_model``). Folders with neither are ignored (with a log line);
a folder with only one of the two, or an inconsistent card, refuses start-up.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import CXRError, ModelCardError
from training.models.card import ModelCard
from training.explain import explainer, overlay, png_data_uri
from training.models.card import load_model
from training.preprocess import PreprocessConfig
from training import preprocess as pp

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
MODEL_FILE = "model.keras"
#: Outputs that mean "nothing found": not the default class for a heatmap.
NORMAL_CLASSES = frozenset({"No Finding", "Normal"})


@dataclass
class OutputResult:
    name: str
    probability: float
    threshold: float | None             # None: the card has no thresholds yet
    positive: bool


@dataclass
class ModelResult:
    name: str
    architecture: str
    input_size: int
    outputs: list[OutputResult]
    heatmap: str | None = None          # PNG data URI of the overlay
    heatmap_class: str | None = None
    seconds: float = 0.0


@dataclass
class Prediction:
    models: list[ModelResult]
    seconds: float


@dataclass
class ServedModel:
    """One served model: its card, preprocessing and compiled inference function (the
    evaluation's counterpart is ``training.evaluation.predict.LoadedModel``)."""

    name: str
    card: ModelCard
    model: Any
    preprocess: Any                     # training.preprocess.PreprocessConfig
    infer: Callable[[np.ndarray], np.ndarray]
    path: Path
    metadata_features: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> list[str]:
        return list(self.card.outputs)

    def threshold(self, output: str) -> float | None:
        return self.card.threshold(output)


def configure_device(device: str = "auto") -> str:
    """Pick GPU or CPU (``auto``/``cpu``/``gpu``); returns "GPU" or "CPU".

    Must run before TensorFlow touches a GPU: hiding devices later is impossible.
    """
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    device = (device or "auto").lower()
    if device not in ("auto", "cpu", "gpu"):
        raise CXRError(f"CXRLAB_DEVICE={device!r} is not one of auto, cpu, gpu.")
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            log.warning("CXRLAB_DEVICE=cpu but TensorFlow already initialised the GPU; using it")
            return "GPU"
        return "CPU"
    if device == "gpu" and not gpus:
        raise CXRError("CXRLAB_DEVICE=gpu but TensorFlow sees no GPU. "
                       "What to do: use the GPU image/driver, or set CXRLAB_DEVICE=auto or cpu.")
    return "GPU" if gpus and device != "cpu" else "CPU"


def compile_inference(model: Any, size: int, n_meta: int = 0) -> Callable[..., np.ndarray]:
    """A compiled ``x -> probabilities`` call: ``tf.function`` with a fixed signature."""
    import keras  # loads the Keras backend: only when a model is used

    if keras.backend.backend() != "tensorflow":
        # Portable fallback: Keras compiles its own predict step on other backends.
        return lambda *xs: np.asarray(model.predict_on_batch(list(xs) if len(xs) > 1 else xs[0]))
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    spec = [tf.TensorSpec((None, size, size, 3), tf.float32)]
    if n_meta:
        spec.append(tf.TensorSpec((None, n_meta), tf.float32))
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                     input_signature=spec, reduce_retracing=True)
    return lambda *xs: np.asarray(fn(*xs))


def _scan(root: Path) -> list[Path]:
    """Model folders under ``root``; refuses half-written ones, logs ignored ones."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        has_card, has_model = (folder / CARD_FILE).is_file(), (folder / MODEL_FILE).is_file()
        if has_card and has_model:
            found.append(folder)
        elif has_model:
            raise ModelCardError(
                f"{folder}: {MODEL_FILE} has no {CARD_FILE} beside it. What to do: save models "
                "with training.models.card.save_model (python -m training train), or remove the folder.")
        elif has_card:
            raise ModelCardError(
                f"{folder}: {CARD_FILE} has no {MODEL_FILE} beside it. What to do: copy the "
                "model file too, or remove the folder.")
        else:
            log.info("ignoring %s: no %s or %s", folder, CARD_FILE, MODEL_FILE)
    return found


def _check(folder: Path, model: Any, card: ModelCard) -> None:
    """What ``load_model`` does not check but the app relies on; a mismatch refuses start-up."""
    expected = 1 + bool(card.metadata_features)
    if len(model.inputs) != expected:
        raise ModelCardError(
            f"{folder / CARD_FILE}: the model has {len(model.inputs)} input(s) but the card implies "
            f"{expected} (the image, plus clinical fields when 'metadata_features' is set). "
            "What to do: fix the card or re-save the model.")


class ModelBank:
    """The loaded models, in folder order; thread-safe to call from many requests."""

    def __init__(self, models: list[ServedModel], device: str = "CPU", root: Path | None = None):
        self.models = models
        self.device = device
        self.root = root

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self):
        return iter(self.models)

    def get(self, name: str) -> ServedModel | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def metadata_features(self) -> list[str]:
        """Union of the clinical fields any loaded model uses, in first-seen order."""
        return list(dict.fromkeys(f for m in self.models for f in m.metadata_features))

    @classmethod
    def from_dir(cls, path: str | os.PathLike, device: str = "auto", warmup: bool = True) -> ModelBank:
        """Load every ``path/*/`` model once; a missing ``path`` gives an empty bank."""
        root = Path(path)
        if not root.is_dir():
            log.warning("models folder %s does not exist: no models loaded", root)
            return cls([], "CPU", root)
        folders = _scan(root)
        used = configure_device(device) if folders else "CPU"
        models = [_load_one(folder, warmup) for folder in folders]
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ModelCardError(f"{root}: several model cards use the name(s) {dupes}. "
                                 "What to do: give each model a unique 'name'.")
        log.info("loaded %d model(s) on %s from %s", len(models), used, root)
        return cls(models, used, root)

    def prepare(self, image_bytes: bytes, filename: str) -> dict[str, np.ndarray]:
        """Each model's input image (uint8 S,S,3): decoded once, preprocessed once per config."""
        gray = pp.decode_image(image_bytes, name=filename)
        by_config: dict[str, np.ndarray] = {}
        inputs = {}
        for m in self.models:
            key = m.preprocess.key()
            if key not in by_config:
                by_config[key] = pp.preprocess(gray, m.preprocess)
            inputs[m.name] = by_config[key]
        return inputs

    def predict(self, image_bytes: bytes, filename: str, heatmaps: bool = False,
                heatmap_class: str | None = None,
                metadata: dict[str, float | None] | None = None) -> Prediction:
        """Probabilities of every model for one uploaded image (never stored)."""
        start = time.perf_counter()
        inputs = self.prepare(image_bytes, filename)
        results = [self._run(m, inputs[m.name], heatmaps, heatmap_class, metadata or {})
                   for m in self.models]
        return Prediction(results, time.perf_counter() - start)

    def _run(self, m: ServedModel, image: np.ndarray, heatmaps: bool,
             heatmap_class: str | None, metadata: dict[str, float | None]) -> ModelResult:
        start = time.perf_counter()
        xs = [image[None].astype(np.float32)]
        if m.metadata_features:
            xs.append(metadata_vector(m.metadata_features, metadata, m.card.metadata_encoder))
        heatmap = None
        if heatmaps and m.card.gradcam_layer and not m.metadata_features:
            # One compiled call gives the probabilities and the heatmap: one forward pass.
            probs, heatmap = _explain(m, image, heatmap_class)
        else:
            probs = m.infer(*xs)[0]
        outputs = []
        for name, p in zip(m.outputs, probs):
            t = m.threshold(name)
            outputs.append(OutputResult(name, float(p), t, t is not None and bool(p >= t)))
        result = ModelResult(m.name, m.card.architecture, int(m.card.input_size), outputs)
        if heatmap is not None:
            result.heatmap, result.heatmap_class = heatmap
        result.seconds = time.perf_counter() - start
        return result


def metadata_vector(features: list[str], metadata: dict[str, float | None],
                    encoder: dict | None = None) -> np.ndarray:
    """Clinical fields as a (1, F) float32 row; unknown values are NaN, never guessed.

    A card with a ``metadata_encoder`` (training.clinical) gets that encoder's vector instead.
    """
    if encoder:
        from training.clinical.features import ClinicalEncoder  # clinical fusion models only

        return ClinicalEncoder.from_dict(encoder).encode_records([metadata])
    def encode(value: Any) -> float:
        if value is None or value == "":
            return float("nan")
        if isinstance(value, str):
            return {"M": 1.0, "F": 0.0}.get(value.upper(), float("nan"))
        return float(value)

    return np.array([[encode(metadata.get(f)) for f in features]], dtype=np.float32)


def heatmap_candidates(outputs: list[str]) -> np.ndarray:
    """Boolean mask of the outputs an automatic heatmap may explain: the non-normal ones."""
    mask = np.array([name not in NORMAL_CLASSES for name in outputs], dtype=bool)
    return mask if mask.any() else np.ones(len(outputs), dtype=bool)


def heatmap_index(outputs: list[str], probs: np.ndarray, wanted: str | None) -> int:
    """The requested class if the model has it, else the top non-normal class."""
    if wanted in outputs:
        return outputs.index(wanted)
    candidates = np.flatnonzero(heatmap_candidates(outputs))
    return int(max(candidates, key=lambda i: probs[i]))


def _explain(m: ServedModel, image: np.ndarray,
             wanted: str | None) -> tuple[np.ndarray, tuple[str, str]]:
    """Probabilities and ``(overlay PNG data URI, explained class)`` from one compiled call.

    The class (``heatmap_index``'s rule) is picked inside the graph from the same forward pass.
    """
    index = m.outputs.index(wanted) if wanted in m.outputs else None
    probs, cam, index = explainer(m.model, m.card.gradcam_layer).explain(
        image, index, heatmap_candidates(m.outputs))
    return probs, (png_data_uri(overlay(image, cam, alpha=0.4)), m.outputs[index])


def _load_one(folder: Path, warmup: bool) -> ServedModel:
    start = time.perf_counter()
    model, card = load_model(folder)
    _check(folder, model, card)
    features = list(card.metadata_features or [])
    try:
        cfg = PreprocessConfig.from_dict(card.preprocessing)
    except (TypeError, ValueError) as exc:
        raise ModelCardError(f"{folder / CARD_FILE}: bad 'preprocessing': {exc}") from exc
    size = int(card.input_size)
    n_meta = len(card.metadata_encoder["output_names"]) if card.metadata_encoder else len(features)
    infer = compile_inference(model, size, n_meta)
    loaded = ServedModel(str(card.name), card, model, cfg, infer, folder, features)
    if warmup:
        # Traces the graph now, so that the first clinician does not wait for it.
        xs = [np.zeros((1, size, size, 3), np.float32)] + ([np.zeros((1, n_meta), np.float32)] if features else [])
        infer(*xs)
        if card.gradcam_layer and not features:

            explainer(model, card.gradcam_layer).explain(np.zeros((size, size, 3), np.uint8))
    log.info("loaded model %s (%s, %d px) in %.1f s", loaded.name, card.architecture, size,
             time.perf_counter() - start)
    return loaded

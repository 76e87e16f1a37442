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

from app.device import configure_device
from app.limiter import Deadline
from training import preprocess as pp
from training.errors import ModelCardError
from training.evaluation.calibration import Calibration
from training.evaluation.decision import decide, decision_thresholds
from app.imaging import display_overlay, jpeg_data_uri
from training.explain import cam_problem, explainer
from training.gate.assess import assess
from training.gate.checks import inspect
from training.gate.ood import OODGate, load_gate
from training.gate.verdict import GateResult
from training.models.card import ModelCard, load_model
from training.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
MODEL_FILE = "model.keras"
#: Outputs that mean "nothing found": not the default class for a heatmap.
NORMAL_CLASSES = frozenset({"No Finding", "Normal"})


@dataclass
class OutputResult:
    name: str
    probability: float                  # calibrated (the card's calibration; raw when it has none)
    raw_probability: float              # the network's own sigmoid/softmax output
    # The threshold the decision applies, on the calibrated scale (a two-class softmax's first
    # class: 1 - the positive class's); None: no thresholds yet, or argmax (softmax, > 2 classes).
    threshold: float | None
    positive: bool                      # training.evaluation.decision.decide, as `cxrlab predict`


@dataclass
class Heatmap:
    """One output's Grad-CAM at display resolution, or why it is not shown."""

    output: str
    image: str | None = None            # JPEG data URI of the overlay on the uploaded image
    problem: str | None = None          # set when the map would mislead (uniform, NaN, 1×1 map)


@dataclass
class ModelResult:
    name: str
    architecture: str
    input_size: int
    outputs: list[OutputResult]
    heatmaps: dict[str, Heatmap] = field(default_factory=dict)
    heatmap_class: str | None = None    # the map shown first (requested, else top finding)
    heatmap_problem: str | None = None  # why there are no maps at all (e.g. clinical inputs)
    seconds: float = 0.0


@dataclass
class Prediction:
    gate: GateResult
    models: list[ModelResult]           # empty when the gate refused the image
    seconds: float
    width: int = 0
    height: int = 0
    gray: np.ndarray | None = None      # the decoded upload (float32 H×W), shared with the report


@dataclass
class ServedModel:
    """One served model: its card, preprocessing and compiled inference function (the
    evaluation's counterpart is ``training.evaluation.predict.LoadedModel``)."""

    name: str
    card: ModelCard
    model: Any
    preprocess: Any                     # training.preprocess.PreprocessConfig
    infer: Callable[..., tuple[np.ndarray, np.ndarray | None]]   # -> (probabilities, features)
    path: Path
    metadata_features: list[str] = field(default_factory=list)
    gate: OODGate | None = None
    calibration: Calibration | None = None

    @property
    def outputs(self) -> list[str]:
        return list(self.card.outputs)

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of one image (C,); unchanged when the card has no calibration."""
        if self.calibration is None:
            return np.asarray(probs, dtype=np.float64)
        return self.calibration.apply(np.asarray(probs, dtype=np.float64)[None])[0]


def compile_inference(model: Any, size: int, n_meta: int = 0,
                      feature_layers: list[str] | None = None) -> Callable[..., tuple[np.ndarray, np.ndarray | None]]:
    """A compiled ``x -> (probabilities, features or None)`` call (``tf.function``, fixed signature).

    With ``feature_layers`` the same forward pass also returns their pooled outputs,
    which the OOD gate scores: no second pass through the backbone.
    """
    import keras  # loads the Keras backend: only when a model is used

    net = model
    if feature_layers:
        from training.models.parts import feature_model  # only for models with a fitted gate

        feats = feature_model(model, feature_layers).outputs[0]
        net = keras.Model(model.inputs, [model.outputs[0], feats])

    def split(out: Any) -> tuple[np.ndarray, np.ndarray | None]:
        if feature_layers:
            return np.asarray(out[0]), np.asarray(out[1])
        return np.asarray(out), None

    if keras.backend.backend() != "tensorflow":
        # Portable fallback: Keras compiles its own predict step on other backends.
        return lambda *xs: split(net.predict_on_batch(list(xs) if len(xs) > 1 else xs[0]))
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    spec = [tf.TensorSpec((None, size, size, 3), tf.float32)]
    if n_meta:
        spec.append(tf.TensorSpec((None, n_meta), tf.float32))
    fn = tf.function(lambda *xs: net(list(xs) if len(xs) > 1 else xs[0], training=False),
                     input_signature=spec, reduce_retracing=True)
    return lambda *xs: split(fn(*xs))


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
        used = configure_device(device)     # first: a wrong CXRLAB_DEVICE fails without models too
        if not root.is_dir():
            log.warning("models folder %s does not exist: no models loaded", root)
            return cls([], used, root)
        folders = _scan(root)
        models = [_load_one(folder, warmup) for folder in folders]
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ModelCardError(f"{root}: several model cards use the name(s) {dupes}. "
                                 "What to do: give each model a unique 'name'.")
        log.info("loaded %d model(s) on %s from %s", len(models), used, root)
        return cls(models, used, root)

    def prepare(self, gray: np.ndarray) -> dict[str, np.ndarray]:
        """Each model's input image (uint8 S,S,3) from the decoded upload, once per config."""
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
                metadata: dict[str, float | None] | None = None, *,
                max_pixels: int = pp.DEFAULT_MAX_PIXELS,
                deadline: Deadline | None = None) -> Prediction:
        """The gate's verdict and, unless it refuses, every model's outputs (nothing stored).

        The image checks run first: an image they refuse reaches no model. Then one forward
        pass per model gives its probabilities and the features its OOD gate scores; if the
        models' gates refuse, no probability leaves this function. ``max_pixels`` bounds the
        decoded image (``CXRLAB_MAX_PIXELS``); ``deadline`` (``CXRLAB_REQUEST_TIMEOUT``) is
        checked before every later stage: preprocessing, each forward pass, each model's heatmaps.
        """
        start = time.perf_counter()
        check = deadline.check if deadline is not None else _no_deadline
        facts = inspect(image_bytes, filename, max_pixels=max_pixels)

        def done(gate: GateResult, results: list[ModelResult]) -> Prediction:
            return Prediction(gate, results, time.perf_counter() - start, facts.width,
                              facts.height, facts.decoded)

        checked = assess(facts)
        if checked.refused:
            return done(checked, [])
        check("preprocessing")
        inputs = self.prepare(facts.decoded)
        runs = {}
        for m in self.models:
            check(f"model {m.name}")
            runs[m.name] = self._forward(m, inputs[m.name], metadata or {})
        verdict = assess(facts, {m.name: (m.gate, runs[m.name][2]) for m in self.models
                                 if m.gate is not None and runs[m.name][2] is not None}, checked)
        if verdict.refused:
            return done(verdict, [])
        results = []
        for m in self.models:
            if heatmaps:
                check(f"the heatmaps of model {m.name}")
            results.append(self._result(m, inputs[m.name], facts.decoded, runs[m.name], heatmaps,
                                        heatmap_class))
        return done(verdict, results)

    def _forward(self, m: ServedModel, image: np.ndarray,
                 metadata: dict[str, float | None]) -> tuple[np.ndarray, float, float | None]:
        """``(raw probabilities, seconds, OOD score or None)`` of one model."""
        start = time.perf_counter()
        xs = [image[None].astype(np.float32)]
        if m.metadata_features:
            xs.append(metadata_vector(m.metadata_features, metadata, m.card.metadata_encoder))
        probs, feats = m.infer(*xs)
        score = float(m.gate.score(feats)[0]) if m.gate is not None and feats is not None else None
        return probs[0], time.perf_counter() - start, score

    def _result(self, m: ServedModel, image: np.ndarray, gray: np.ndarray,
                run: tuple[np.ndarray, float, float | None], heatmaps: bool,
                wanted: str | None) -> ModelResult:
        raw, seconds, _ = run
        start = time.perf_counter()
        calibrated = m.calibrate(raw)
        # The rule `cxrlab predict` applies; missing=None: a card without thresholds, no decision.
        kind, thresholds = m.card.kind, m.card.thresholds
        positive = decide(calibrated[None], kind, thresholds, m.outputs, missing=None)[0]
        shown = decision_thresholds(kind, thresholds, m.outputs, missing=None)
        outputs = [OutputResult(*row) for row in zip(m.outputs, calibrated.tolist(), raw.tolist(),
                                                     shown, positive.tolist())]
        result = ModelResult(m.name, m.card.architecture, int(m.card.input_size), outputs)
        if heatmaps:
            _add_heatmaps(result, m, image, gray, calibrated, wanted)
        result.seconds = seconds + time.perf_counter() - start
        return result


def _no_deadline(stage: str) -> None:
    """The check of a prediction without a time limit (the CLI, tests)."""


def metadata_vector(features: list[str], metadata: dict[str, float | None],
                    encoder: dict | None = None) -> np.ndarray:
    """Clinical fields as a (1, F) float32 row; unknown values are NaN, never guessed.

    A card with a ``metadata_encoder`` (training.clinical) gets that encoder's vector instead.
    """
    if encoder:
        from training.clinical.encoder import ClinicalEncoder  # clinical fusion models only

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


def _add_heatmaps(result: ModelResult, m: ServedModel, image: np.ndarray, gray: np.ndarray,
                  probs: np.ndarray, wanted: str | None) -> None:
    """One Grad-CAM per output (one batched call), drawn over the upload at display size."""
    if m.metadata_features or not m.card.gradcam_layer:
        result.heatmap_problem = ("this model also takes clinical inputs: Grad-CAM of the image "
                                  "branch alone is not shown" if m.metadata_features else
                                  "the model card names no Grad-CAM layer")
        return
    cam = explainer(m.model, m.card.gradcam_layer)
    _, maps = cam.explain_all(image)
    for name, heat in zip(m.outputs, maps):
        problem = cam_problem(heat, cam.map_size)
        shown = None if problem else jpeg_data_uri(display_overlay(gray, heat, m.preprocess))
        result.heatmaps[name] = Heatmap(name, shown, problem)
    result.heatmap_class = m.outputs[heatmap_index(m.outputs, probs, wanted)]


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
    gate = load_gate(folder, card.gate)
    infer = compile_inference(model, size, n_meta, gate.feature_layers if gate else None)
    calibration = Calibration.from_json(card.calibration) if card.calibration else None
    loaded = ServedModel(str(card.name), card, model, cfg, infer, folder, features, gate, calibration)
    if warmup:
        # Traces the graphs now, so that the first clinician does not wait for them.
        xs = [np.zeros((1, size, size, 3), np.float32)] + ([np.zeros((1, n_meta), np.float32)] if features else [])
        infer(*xs)
        if card.gradcam_layer and not features:
            explainer(model, card.gradcam_layer).explain_all(np.zeros((size, size, 3), np.uint8))
    log.info("loaded model %s (%s, %d px) in %.1f s", loaded.name, card.architecture, size,
             time.perf_counter() - start)
    return loaded

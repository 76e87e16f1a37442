"""The served models: every saved model of a models folder, loaded once as a
:class:`training.runtime.Runtime`, and the serving around them.

A model folder is ``models/<name>/`` with ``card.json`` + ``model.keras`` (written by
``training.models.card.save_model``). Folders with neither are ignored (with a log line);
a folder with only one of the two, an inconsistent card or two cards with one name refuse
start-up. What a model is and how it predicts is the runtime's; this module keeps what is
about serving: device placement, warm-up, the gate's verdict over all models, heatmaps (each
a layer the page stacks over the one display image, and that layer blended for the API and
reports).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.device import configure_device
from app.imaging import Box, blend, cam_box, cam_region, colourise, display_image, jpeg_data_uri, png_data_uri
from app.limiter import Deadline
from training import preprocess as pp
from training.errors import ModelCardError
from training.explain import cam_problem, explainer
from training.gate.assess import assess
from training.gate.checks import inspect
from training.gate.verdict import GateResult
from training.models.card import CARD_FILE, MODEL_FILE
from training.runtime import Prediction, Runtime, load_all

log = logging.getLogger(__name__)

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
    positive: bool | None               # training.evaluation.decision.decide, as `cxrlab predict`;
    #                                     None: no decision for this output (``no_decision`` says why)
    no_decision: str | None = None      # e.g. its threshold was not estimable (too few patients)


@dataclass
class Heatmap:
    """One output's Grad-CAM at display resolution, or why it is not shown."""

    output: str
    image: str | None = None            # JPEG data URI of the map blended over the display image
    problem: str | None = None          # set when the map would mislead (uniform, NaN, 1×1 map)
    # PNG data URI of the colour-mapped map alone, at its own resolution, for the model's
    # ``heatmap_box`` on the display image (the page stacks it over that image)
    layer: str | None = None


@dataclass
class DisplayImage:
    """The upload as the pages show it (sent once; every model's heatmap layer lies on it)."""

    uri: str                            # JPEG data URI
    width: int
    height: int


@dataclass
class ModelResult:
    name: str
    architecture: str
    input_size: int
    outputs: list[OutputResult]
    heatmaps: dict[str, Heatmap] = field(default_factory=dict)
    heatmap_class: str | None = None    # the map shown first (requested, else top finding)
    heatmap_problem: str | None = None  # why there are no maps at all (e.g. clinical inputs)
    heatmap_box: Box | None = None      # where this model's maps lie on the display image
    seconds: float = 0.0


@dataclass
class ServedResult:
    """One upload served: the gate's verdict and, unless it refused, every model's result."""

    gate: GateResult
    models: list[ModelResult]           # empty when the gate refused the image
    seconds: float
    width: int = 0
    height: int = 0
    gray: np.ndarray | None = None      # the decoded upload (float32 H×W), shared with the report
    display: DisplayImage | None = None  # with heatmaps: the upload at display size


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


class ModelBank:
    """The loaded models, in folder order; thread-safe to call from many requests."""

    def __init__(self, models: list[Runtime], device: str = "CPU", root: Path | None = None):
        self.models = models
        self.device = device
        self.root = root

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self):
        return iter(self.models)

    def get(self, name: str) -> Runtime | None:
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
        models = load_all(_scan(root))
        if warmup:
            for m in models:
                warm_up(m)
        log.info("loaded %d model(s) on %s from %s", len(models), used, root)
        return cls(models, used, root)

    def prepare(self, gray: np.ndarray) -> dict[str, np.ndarray]:
        """Each model's input image (uint8 S,S,3) from the decoded upload, once per config."""
        by_config: dict[str, np.ndarray] = {}
        inputs = {}
        for m in self.models:
            key = m.preprocess.key()
            if key not in by_config:
                by_config[key] = m.prepare(gray)
            inputs[m.name] = by_config[key]
        return inputs

    def predict(self, image_bytes: bytes, filename: str, heatmaps: bool = False,
                heatmap_class: str | None = None,
                metadata: dict[str, float | None] | None = None, *,
                max_pixels: int = pp.DEFAULT_MAX_PIXELS,
                deadline: Deadline | None = None) -> ServedResult:
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

        def done(gate: GateResult, results: list[ModelResult],
                 display: DisplayImage | None = None) -> ServedResult:
            return ServedResult(gate, results, time.perf_counter() - start, facts.width,
                                facts.height, facts.decoded, display)

        checked = assess(facts)
        if checked.refused:
            return done(checked, [])
        check("preprocessing")
        inputs = self.prepare(facts.decoded)
        runs = {}
        for m in self.models:
            check(f"model {m.name}")
            runs[m.name] = self._forward(m, inputs[m.name], metadata or {})
        verdict = assess(facts, {m.name: (m.gate, float(runs[m.name][0].ood_score[0]))
                                 for m in self.models if m.gate is not None}, checked)
        if verdict.refused:
            return done(verdict, [])
        base = display_image(facts.decoded) if heatmaps else None
        results = []
        for m in self.models:
            if heatmaps:
                check(f"the heatmaps of model {m.name}")
            results.append(self._result(m, inputs[m.name], facts.decoded, runs[m.name], base,
                                        heatmap_class))
        shown = None if base is None else DisplayImage(jpeg_data_uri(base), base.shape[1], base.shape[0])
        return done(verdict, results, shown)

    def _forward(self, m: Runtime, image: np.ndarray,
                 metadata: dict[str, float | None]) -> tuple[Prediction, float]:
        """One model's prediction of one image (the runtime's: calibrated, decided, OOD score)
        and its seconds."""
        start = time.perf_counter()
        prediction = m.predict(image[None], [metadata])
        return prediction, time.perf_counter() - start

    def _result(self, m: Runtime, image: np.ndarray, gray: np.ndarray,
                run: tuple[Prediction, float], base: np.ndarray | None,
                wanted: str | None) -> ModelResult:
        """``base``: the display image when heatmaps are asked for, else None."""
        prediction, seconds = run
        start = time.perf_counter()
        calibrated = prediction.calibrated[0]
        undecided = m.no_decision()
        positive = [None if o in undecided else bool(p) for o, p in zip(m.outputs, prediction.positive[0])]
        rows = zip(m.outputs, calibrated.tolist(), prediction.raw[0].tolist(),
                   m.decision_thresholds(), positive, [undecided.get(o) for o in m.outputs])
        result = ModelResult(m.name, m.card.architecture, int(m.card.input_size),
                             [OutputResult(*row) for row in rows])
        if base is not None:
            _add_heatmaps(result, m, image, gray.shape, base, calibrated, wanted)
        result.seconds = seconds + time.perf_counter() - start
        return result


def _no_deadline(stage: str) -> None:
    """The check of a prediction without a time limit (the CLI, tests)."""


def warm_up(m: Runtime) -> None:
    """Trace the graphs now, so that the first clinician does not wait for them."""
    size = int(m.card.input_size)
    m.forward(np.zeros((1, size, size, 3), np.uint8))
    if m.card.gradcam_layer and not m.metadata_features:
        explainer(m.model, m.card.gradcam_layer).explain_all(np.zeros((size, size, 3), np.uint8))


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


def _add_heatmaps(result: ModelResult, m: Runtime, image: np.ndarray, shape: tuple[int, int],
                  base: np.ndarray, probs: np.ndarray, wanted: str | None) -> None:
    """One Grad-CAM per output (one batched call), cut to the part of the upload (``shape``)
    the model saw: as a layer for the display image ``base``, and blended over it."""
    if m.metadata_features or not m.card.gradcam_layer:
        result.heatmap_problem = ("this model also takes clinical inputs: Grad-CAM of the image "
                                  "branch alone is not shown" if m.metadata_features else
                                  "the model card names no Grad-CAM layer")
        return
    cam = explainer(m.model, m.card.gradcam_layer)
    _, maps = cam.explain_all(image)
    box = result.heatmap_box = cam_box(base.shape[:2], m.preprocess)
    for name, heat in zip(m.outputs, maps):
        problem = cam_problem(heat, cam.map_size)
        if problem:
            result.heatmaps[name] = Heatmap(name, problem=problem)
            continue
        region = cam_region(heat, shape, m.preprocess)
        result.heatmaps[name] = Heatmap(name, jpeg_data_uri(blend(base, region, box)),
                                        layer=png_data_uri(colourise(region)))
    result.heatmap_class = m.outputs[heatmap_index(m.outputs, probs, wanted)]

"""Self-describing saved models: ``model.keras`` + ``card.json`` in one directory.

Saves are atomic per file (temp file in the same folder, then ``os.replace``: training.io,
which gives the files the mode a plain ``open()`` would); the model is replaced before its card, and the card records the model's SHA-256, so an interrupted
save leaves either the previous pair, a new model without a card (ignored by the app), or
a mismatch that :func:`load_model` reports, never a silently wrong model.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

import training
from training import io
from training.errors import ModelCardError
from training.evaluation.thresholds import ThresholdRecord
from training.io import file_sha256, jsonable  # noqa: F401  (re-exported: older imports)
from training.clinical.records import EncoderRecord
from training.data.records import DataSummary, SplitRecord
from training.evaluation.records import CalibrationRecord, CardMetrics, MetricSet, TestEvaluation
from training.evaluation.evidence import TransferEvidence, evidence_from_test
from training.gate.ood import GateRecord
from training.models.records import InitialisationRecord, PretrainingRecord, TrainingSummary, TransferRecord
from training.preprocess import PreprocessConfig
from training.models import layers, losses  # noqa: F401  registered for keras.saving.load_model
from training.models.parts import count_params
from training.models.registry import ARCHITECTURES

CARD_VERSION = 2  # 2: typed sections, thresholds as a record, test_set inside metrics.test
MODEL_FILE, CARD_FILE = "model.keras", "card.json"
REQUIRED_KEYS = ("card_version", "name", "architecture", "task", "kind", "outputs",
                 "input_size", "preprocessing", "gradcam_layer")
KINDS = ("single", "multilabel")


@dataclass
class ModelCard:
    """Everything needed to use a saved model, and how good it is (``card.json``, typed).

    Written by :func:`save_model` (training), updated by :func:`update_card` (evaluation),
    read with :func:`read_card`/:func:`load_model` by the evaluation and the app. Keys a
    newer cxrlab added are kept in ``extra`` and written back unchanged. ``card[key]`` and
    ``card.get(key)`` read the JSON form (for templates and code written against card.json).
    Every section is a typed record, validated on load (:data:`SECTIONS`); ``extra`` and
    ``training.config`` are the only free-form parts.
    """

    name: str
    architecture: str
    task: str
    kind: str                                  # "single" (softmax) | "multilabel" (sigmoids)
    outputs: list[str]                         # output order
    input_size: int
    preprocessing: PreprocessConfig
    gradcam_layer: str | None = None
    transfer: TransferRecord = field(default_factory=TransferRecord)
    initialisation: InitialisationRecord | None = None
    training: TrainingSummary = field(default_factory=TrainingSummary)
    split: SplitRecord = field(default_factory=SplitRecord)
    data: DataSummary = field(default_factory=DataSummary)
    thresholds: ThresholdRecord | None = None  # training.evaluation.thresholds (posttrain writes it)
    metrics: CardMetrics = field(default_factory=CardMetrics)   # validation and test evaluation
    evidence: TransferEvidence | None = None   # per output: where its AUC was measured (never None once built)
    pretraining: PretrainingRecord | None = None   # a CXR-pretrained backbone: on what
    metadata_features: list[str] | None = None     # clinical fusion: the metadata inputs, in order
    metadata_encoder: EncoderRecord | None = None  # clinical fusion: the fitted encoder
    calibration: CalibrationRecord | None = None   # run by training.evaluation.calibration.Calibration
    gate: GateRecord | None = None                 # feature-space OOD statistics (gate.npz)
    params: dict[str, int] | None = None
    versions: dict[str, str] | None = None
    created: str | None = None
    model_sha256: str | None = None
    card_version: int = CARD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    _OMIT_WHEN_NONE = ("pretraining", "metadata_features", "metadata_encoder", "calibration", "gate")

    def __post_init__(self) -> None:
        """Sections given as JSON (a dict) become their records, validated (ValueError)."""
        if isinstance(self.preprocessing, dict):
            self.preprocessing = PreprocessConfig.from_dict(self.preprocessing)
        for key, record in SECTIONS.items():
            value = getattr(self, key)
            if key == "evidence" and value is None:  # a card from before the section: its test is its evidence
                value = TransferEvidence(evidence_from_test(self.metrics.test))
            if value is None and key not in OPTIONAL_SECTIONS:
                value = {}
            setattr(self, key, None if value is None else record.from_json(value))

    @classmethod
    def from_json(cls, raw: dict, path: str | os.PathLike | None = None) -> ModelCard:
        """The card of a parsed ``card.json`` (validated: ModelCardError names ``path``)."""
        if isinstance(raw, ModelCard):
            return raw
        validate_card(raw, path)
        raw = migrate(raw)
        raw = {**raw, "thresholds": _thresholds_from_json(raw)}
        raw.pop("threshold_method", None)  # version 1: its sentence is now inside the record
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        try:
            return cls(**{k: v for k, v in raw.items() if k in names},
                       extra={k: v for k, v in raw.items() if k not in names})
        except (ValueError, TypeError) as e:
            where = f"{path}: " if path else ""
            raise ModelCardError(f"{where}model card section {e}. What to do: re-save the model with "
                                 "this cxrlab (or re-run the step that wrote that section).") from e

    def to_json(self) -> dict[str, Any]:
        """The ``card.json`` object (keys in a stable order, unknown keys kept)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        # through the records again: a section assigned as JSON after construction is validated too
        prep = self.preprocessing
        out["preprocessing"] = (PreprocessConfig.from_dict(prep) if isinstance(prep, dict) else prep).to_dict()
        out.update({k: record.from_json(out[k]).to_json() for k, record in SECTIONS.items()
                    if out[k] is not None})
        if self.thresholds is not None:
            out["thresholds"] = self.thresholds.to_json()
        for key in self._OMIT_WHEN_NONE:
            if out[key] is None:
                del out[key]
        return {"card_version": out.pop("card_version"), **out, **self.extra}

    def threshold(self, output: str) -> float | None:
        """The decision threshold of ``output`` (None: no decision, e.g. not estimable)."""
        return None if self.thresholds is None else self.thresholds.values().get(output)

    @property
    def test_evaluation(self) -> TestEvaluation | None:
        """What ``evaluate`` stored (None before any evaluation)."""
        return self.metrics.test

    @property
    def validation_metrics(self) -> MetricSet | None:
        """The validation metrics of training (or of ``calibrate``); None without validation."""
        return self.metrics.validation

    @property
    def test_set(self) -> str | None:
        """"internal" | "external" | None (not evaluated)."""
        return None if self.metrics.test is None else self.metrics.test.test_set

    def __getitem__(self, key: str) -> Any:
        data = self.to_json()
        if key not in data:
            raise KeyError(key)
        return data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_json()


#: The card's typed sections and their records (each: ``from_json`` validates, ``to_json``).
SECTIONS: dict[str, Any] = {
    "transfer": TransferRecord, "initialisation": InitialisationRecord, "training": TrainingSummary,
    "split": SplitRecord, "data": DataSummary, "metrics": CardMetrics, "evidence": TransferEvidence,
    "pretraining": PretrainingRecord,
    "metadata_encoder": EncoderRecord, "calibration": CalibrationRecord, "gate": GateRecord}
OPTIONAL_SECTIONS = ("initialisation", "pretraining", "metadata_encoder", "calibration", "gate")


def migrate(raw: dict) -> dict:
    """A parsed card.json of an older version in the current form (a copy; current ones as they are).

    Version 1 -> 2: ``thresholds`` + the ``threshold_method`` sentence become one record
    (:meth:`ThresholdRecord.from_v1`, the only reader of that sentence); the top-level
    ``test_set`` moves into ``metrics.test`` (where evaluate also wrote it). The other
    sections kept their JSON shape and are typed on load. A card without ``evidence`` (any
    version: the section is additive) gets its test evaluation's items on construction
    (:func:`~training.evaluation.evidence.evidence_from_test`, also what evaluate writes with).
    """
    if raw.get("card_version", CARD_VERSION) >= CARD_VERSION:
        return raw
    out = dict(raw)
    method = out.pop("threshold_method", None)
    if out.get("thresholds") is not None:
        record = ThresholdRecord.from_v1(out["thresholds"], method, out["kind"], out["outputs"])
        out["thresholds"] = None if record is None else record.to_json()
    test_set = out.pop("test_set", None)
    metrics = dict(out.get("metrics") or {})
    if metrics.get("test"):
        metrics["test"] = {"test_set": test_set, **metrics["test"]}
    out.update(metrics=metrics, card_version=CARD_VERSION)
    return out


def validate_card(card: dict, path: str | os.PathLike | None = None) -> dict:
    """Check a card's keys and their consistency; return it. ModelCardError names ``path``."""
    where = f"{path}: " if path else ""
    if isinstance(card, ModelCard):
        validate_card(card.to_json(), path)
        return card

    def fail(what: str) -> None:
        raise ModelCardError(f"{where}model card {what}. What to do: re-save the model with "
                             f"training.models.card.save_model or fix card.json by hand.")

    if not isinstance(card, dict):
        fail(f"must be a JSON object, got {type(card).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        fail(f"is missing {', '.join(missing)}")
    version = card["card_version"]
    if not isinstance(version, int) or not 1 <= version <= CARD_VERSION:
        fail(f"has card_version {version!r}; this cxrlab reads versions 1..{CARD_VERSION}")
    if card["kind"] not in KINDS:
        fail(f"has unknown kind {card['kind']!r} (expected one of {', '.join(KINDS)})")
    outputs = card["outputs"]
    if (not isinstance(outputs, list) or not outputs
            or not all(isinstance(o, str) for o in outputs) or len(set(outputs)) != len(outputs)):
        fail(f"outputs must be a non-empty list of distinct names, got {outputs!r}")
    if card["kind"] == "single" and len(outputs) < 2:
        fail("of kind 'single' (softmax) needs at least 2 outputs")
    size = card["input_size"]
    if not isinstance(size, int) or size <= 0:
        fail(f"input_size must be a positive integer, got {size!r}")
    prep = card["preprocessing"]
    prep_size = prep.get("size") if isinstance(prep, dict) else getattr(prep, "size", None)
    if prep_size != size:
        fail(f"input_size {size} != preprocessing.size {prep_size!r}")
    if not isinstance(card["gradcam_layer"], str) or not card["gradcam_layer"]:
        fail("gradcam_layer must be a layer name")
    _validate_thresholds(card.get("thresholds"), outputs, fail)
    return card


def _thresholds_from_json(raw: dict) -> ThresholdRecord | None:
    """The record of a card's ``thresholds``: its JSON, or (version 1) a ``{output: value}``
    dict + the ``threshold_method`` sentence, converted by :meth:`ThresholdRecord.from_v1`."""
    t = raw.get("thresholds")
    if t is None or isinstance(t, ThresholdRecord):
        return t
    if isinstance(t, dict) and isinstance(t.get("entries"), dict):
        return ThresholdRecord.from_json(t, raw["outputs"])
    return ThresholdRecord.from_v1(t, raw.get("threshold_method"), raw["kind"], raw["outputs"])


def _validate_thresholds(thresholds: Any, outputs: list[str], fail) -> None:
    if thresholds is None or isinstance(thresholds, ThresholdRecord):
        return
    if isinstance(thresholds, dict) and isinstance(thresholds.get("entries"), dict):
        try:
            ThresholdRecord.from_json(thresholds, outputs)
        except ValueError as exc:
            fail(f"thresholds: {exc}")
        return
    if not isinstance(thresholds, dict) or set(thresholds) != set(outputs):
        keys = sorted(thresholds) if isinstance(thresholds, dict) else thresholds
        fail(f"thresholds keys {keys!r} != outputs {outputs!r}")
    bad = {k: v for k, v in thresholds.items()
           if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1}
    if bad:
        fail(f"thresholds must be numbers in [0, 1], got {bad!r}")


def versions() -> dict[str, str]:
    """Library versions recorded in a card."""
    out = {"keras": keras.__version__, "backend": keras.backend.backend()}
    try:
        out["tensorflow"] = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        pass
    out["cxrlab"] = training.__version__
    return out


def save_model(model: keras.Model, card: ModelCard | dict, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/model.keras`` and ``out_dir/card.json`` atomically; return ``out_dir``.

    Fills ``card_version``, ``versions``, ``created``, ``params`` and ``model_sha256``;
    the card is validated (and checked against the model) before anything is replaced.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = dict(card.to_json() if isinstance(card, ModelCard) else card)
    raw.setdefault("card_version", CARD_VERSION)
    if raw.get("gradcam_layer") is None:
        raw["gradcam_layer"] = _default_gradcam_layer(raw)
    raw.update(versions=versions(), params=count_params(model),
               created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    typed = ModelCard.from_json(raw, out / CARD_FILE)
    _check_model_matches(model, typed, out)
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=out))
    try:
        model.save(tmp / MODEL_FILE)
        typed.model_sha256 = file_sha256(tmp / MODEL_FILE)
        text = io.json_text(typed.to_json())  # serialised before anything is replaced
        io.publish(tmp / MODEL_FILE, out / MODEL_FILE)  # model first: never a card without it
        io.write_text(out / CARD_FILE, text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _default_gradcam_layer(card: dict) -> str | None:

    arch = ARCHITECTURES.get(card.get("architecture"))
    return arch.gradcam_layer if arch else None


def load_model(model_dir: str | os.PathLike, compile: bool = False) -> tuple[keras.Model, ModelCard]:
    """Load ``(model, card)`` from a model directory, checking the card against the model."""
    d = Path(model_dir)
    card = read_card(d)
    model_path = d / MODEL_FILE
    if not model_path.is_file():
        raise ModelCardError(f"{model_path}: model file missing beside its card. What to do: "
                             f"re-train or restore the model, or remove the directory.")
    expected = card.model_sha256
    if expected and file_sha256(model_path) != expected:
        raise ModelCardError(f"{model_path}: does not match {d / CARD_FILE} (SHA-256 differs; "
                             f"interrupted save or hand-copied file). What to do: re-save or re-train.")
    try:
        model = keras.saving.load_model(model_path, compile=compile)
    except Exception as e:
        raise ModelCardError(f"{model_path}: cannot be loaded ({type(e).__name__}: {e}). "
                             f"What to do: re-save it with this cxrlab/keras version.") from e
    _check_model_matches(model, card, d)
    return model, card


def read_card(model_dir: str | os.PathLike) -> ModelCard:
    """The validated card of a model directory (no model loading)."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise ModelCardError(f"{path}: model card missing. What to do: every model directory "
                             f"needs card.json beside model.keras (written by save_model).")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelCardError(f"{path}: model card is not valid JSON ({e}). What to do: "
                             f"fix or restore card.json.") from e
    return ModelCard.from_json(card, path)


def _check_model_matches(model: keras.Model, card: ModelCard, where: Path) -> None:
    width = model.outputs[0].shape[-1]
    shape = tuple(model.inputs[0].shape[1:])
    size = card.input_size
    problems = []
    if width != len(card.outputs):
        problems.append(f"model has {width} outputs but the card lists {len(card.outputs)}")
    if shape != (size, size, 3):
        problems.append(f"model input {shape} != card input_size {size} (expected {(size, size, 3)})")
    layer = card.gradcam_layer
    if not any(lay.name == layer for lay in model.layers):
        problems.append(f"gradcam_layer {layer!r} is not a layer of the model")
    if problems:
        raise ModelCardError(f"{where}: card does not match the model: {'; '.join(problems)}. "
                             f"What to do: fix the card or re-save the model.")


def update_card(model_dir: str | os.PathLike, **fields: Any) -> ModelCard:
    """Atomically set top-level card fields (e.g. ``metrics``, ``thresholds``); return the card."""
    d = Path(model_dir)
    raw = {**read_card(d).to_json(), **fields}
    card = ModelCard.from_json(raw, d / CARD_FILE)
    io.write_json(d / CARD_FILE, card.to_json())
    return card

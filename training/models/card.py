"""Self-describing saved models: ``model.keras`` + ``card.json`` in one directory.

Saves are atomic per file (temp file in the same folder, then ``os.replace``: training.io,
which gives the files the mode a plain ``open()`` would); the model is replaced before its card, and the card records the model's SHA-256, so an interrupted
save leaves either the previous pair, a new model without a card (ignored by the app), or
a mismatch that :func:`load_model` reports, never a silently wrong model.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras

import training
from training import io
from training.errors import ModelCardError
from training.io import file_sha256, jsonable  # noqa: F401  (re-exported: older imports)
from training.models.build import count_params

CARD_VERSION = 1
MODEL_FILE, CARD_FILE = "model.keras", "card.json"
REQUIRED_KEYS = ("card_version", "name", "architecture", "task", "kind", "outputs",
                 "input_size", "preprocessing", "gradcam_layer")
KINDS = ("single", "multilabel")


def validate_card(card: dict, path: str | os.PathLike | None = None) -> dict:
    """Check a card's keys and their consistency; return it. ModelCardError names ``path``."""
    where = f"{path}: " if path else ""

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
    prep_size = card["preprocessing"].get("size") if isinstance(card["preprocessing"], dict) else None
    if prep_size != size:
        fail(f"input_size {size} != preprocessing.size {prep_size!r}")
    if not isinstance(card["gradcam_layer"], str) or not card["gradcam_layer"]:
        fail("gradcam_layer must be a layer name")
    _validate_thresholds(card.get("thresholds"), outputs, fail)
    return card


def _validate_thresholds(thresholds: Any, outputs: list[str], fail) -> None:
    if thresholds is None:
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


def save_model(model: keras.Model, card: dict, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/model.keras`` and ``out_dir/card.json`` atomically; return ``out_dir``.

    Fills ``card_version``, ``versions``, ``created``, ``params`` and ``model_sha256``;
    the card is validated (and checked against the model) before anything is replaced.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    card.setdefault("card_version", CARD_VERSION)
    card.setdefault("gradcam_layer", _default_gradcam_layer(card))
    card.update(versions=versions(), params=count_params(model),
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    validate_card(card, out / CARD_FILE)
    _check_model_matches(model, card, out)
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=out))
    try:
        model.save(tmp / MODEL_FILE)
        card["model_sha256"] = file_sha256(tmp / MODEL_FILE)
        text = io.json_text(card)  # serialised before anything is replaced
        io.publish(tmp / MODEL_FILE, out / MODEL_FILE)  # model first: never a card without it
        io.write_text(out / CARD_FILE, text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _default_gradcam_layer(card: dict) -> str | None:
    from training.models.registry import ARCHITECTURES

    arch = ARCHITECTURES.get(card.get("architecture"))
    return arch.gradcam_layer if arch else None


def load_model(model_dir: str | os.PathLike, compile: bool = False) -> tuple[keras.Model, dict]:
    """Load ``(model, card)`` from a model directory, checking the card against the model."""
    d = Path(model_dir)
    card = read_card(d)
    model_path = d / MODEL_FILE
    if not model_path.is_file():
        raise ModelCardError(f"{model_path}: model file missing beside its card. What to do: "
                             f"re-train or restore the model, or remove the directory.")
    expected = card.get("model_sha256")
    if expected and file_sha256(model_path) != expected:
        raise ModelCardError(f"{model_path}: does not match {d / CARD_FILE} (SHA-256 differs; "
                             f"interrupted save or hand-copied file). What to do: re-save or re-train.")
    if compile:
        import training.engine.losses  # noqa: F401  registers the custom losses and metrics
    import training.models.layers  # noqa: F401  registers BackbonePreprocess
    try:
        model = keras.saving.load_model(model_path, compile=compile)
    except Exception as e:
        raise ModelCardError(f"{model_path}: cannot be loaded ({type(e).__name__}: {e}). "
                             f"What to do: re-save it with this cxrlab/keras version.") from e
    _check_model_matches(model, card, d)
    return model, card


def read_card(model_dir: str | os.PathLike) -> dict:
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
    return validate_card(card, path)


def _check_model_matches(model: keras.Model, card: dict, where: Path) -> None:
    width = model.outputs[0].shape[-1]
    shape = tuple(model.inputs[0].shape[1:])
    size = card["input_size"]
    problems = []
    if width != len(card["outputs"]):
        problems.append(f"model has {width} outputs but the card lists {len(card['outputs'])}")
    if shape != (size, size, 3):
        problems.append(f"model input {shape} != card input_size {size} (expected {(size, size, 3)})")
    layer = card["gradcam_layer"]
    if not any(l.name == layer for l in model.layers):
        problems.append(f"gradcam_layer {layer!r} is not a layer of the model")
    if problems:
        raise ModelCardError(f"{where}: card does not match the model: {'; '.join(problems)}. "
                             f"What to do: fix the card or re-save the model.")


def update_card(model_dir: str | os.PathLike, **fields: Any) -> dict:
    """Atomically set top-level card fields (e.g. ``metrics``, ``thresholds``); return the card."""
    d = Path(model_dir)
    card = read_card(d)
    card.update(fields)
    validate_card(card, d / CARD_FILE)
    io.write_json(d / CARD_FILE, card)
    return card

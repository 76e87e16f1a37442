"""Batch prediction of image files and folders with one or several saved models.

Each model's card gives its preprocessing, outputs, calibration and thresholds, so the images
are prepared exactly as in training and the probabilities shown are the calibrated ones (the
scale of the card's thresholds). Unreadable files get a row with an ``error`` (and a log
message); nothing is skipped silently. Inference runs in fixed-size batches (the last one
padded), so a prediction depends neither on the batch size nor on the file order.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from training import io
from training.errors import CXRError, DataError, ModelCardError
from training.evaluation.calibration import Calibration
from training.evaluation.decision import decide
from training.evaluation.thresholds import DEFAULT as DEFAULT_THRESHOLD
from training.gate.assess import assess
from training.gate.checks import inspect
from training.gate.ood import OODGate, load_gate
from training.gate.verdict import GateResult, Reason
from training.models.card import ModelCard
from training.models.parts import feature_model
from training.models.card import load_model
from training.preprocess import PreprocessConfig
from training.preprocess import is_dicom, load_image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
#: Files decoded per step (bounds memory for big folders; a multiple of any batch size works).
_CHUNK = 256


@dataclass
class LoadedModel:
    """A saved model with what inference needs from its card."""

    name: str
    model: Any
    card: ModelCard
    preprocess: Any  # training.preprocess.PreprocessConfig
    directory: Path = field(default_factory=Path)

    @property
    def outputs(self) -> list[str]:
        return list(self.card.outputs)

    @property
    def kind(self) -> str:
        return self.card.kind

    def thresholds(self) -> dict[str, float]:
        """The card's thresholds (0.5 where the card has none), on the calibrated scale."""
        saved = self.card.thresholds or {}
        return {o: float(saved.get(o, 0.5)) for o in self.outputs}

    @functools.cached_property
    def calibration(self) -> Calibration:
        """The card's calibration (the identity when the card has none)."""
        if not self.card.calibration:
            return Calibration.identity(self.kind, self.outputs, "the card has no calibration")
        try:
            return Calibration.from_json(self.card.calibration, self.outputs, self.kind)
        except ValueError as exc:
            raise ModelCardError(f"{self.directory}: {exc}. What to do: refit it with `python -m "
                                 "training calibrate --model DIR` or fix card.json.") from exc

    def calibrate(self, P: np.ndarray) -> np.ndarray:
        """Raw probabilities ``(N, C)`` through the card's calibration (float64)."""
        return self.calibration.apply(P)

    @functools.cached_property
    def gate(self) -> OODGate | None:
        """The model's feature-space OOD gate (None when the card has none)."""
        return load_gate(self.directory, self.card.gate)

    @functools.cached_property
    def scorer(self) -> Any:
        """image → (probabilities, pooled gate features): one forward pass for both."""
        import keras  # only for gated models

        feats = feature_model(self.model, self.gate.feature_layers).outputs[0]
        return keras.Model(self.model.inputs, [self.model.outputs[0], feats])


def load_models(model_dirs: Sequence[str | Path]) -> list[LoadedModel]:
    """Load every model directory; names from the cards, made unique with the folder name."""
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    out: list[LoadedModel] = []
    for d in model_dirs:
        model, card = load_model(d)
        out.append(LoadedModel(str(card.name or Path(d).name), model, card,
                               PreprocessConfig.from_dict(card.preprocessing), Path(d)))
        _ = out[-1].calibration  # a broken stored calibration fails here, naming the folder
    names = [m.name for m in out]
    for m in out:
        if names.count(m.name) > 1:  # two cards with one name: the folder tells them apart
            m.name = f"{m.name}@{m.directory.name}"
    return out


# ------------------------------------------------------------------ finding the files

def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is DICOM by :func:`training.preprocess.is_dicom` (the one rule)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return is_dicom(head, path.name)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS or (path.suffix == "" and is_dicom_file(path))


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named directly (always kept), plus the images found in folders, recursively.

    Folder walks follow symbolic links (each real folder visited once, so link loops
    end) and keep .png/.jpg/.jpeg/.dcm/.dicom files and extensionless DICOMs. A missing
    input is an error; the number of other files ignored in folders is logged.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(_walk(path))
        else:
            raise DataError("no such file or folder", path=path,
                            hint="check the path (and that the data folder is mounted)")
    return list(dict.fromkeys(found))  # drop repeats, keep order


def _walk(root: Path) -> list[Path]:
    images, ignored, seen = [], 0, set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a second link to a visited folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and _is_image(p):
                images.append(p)
            else:
                ignored += 1
    if ignored:
        log.info("%s: ignored %d files that are not images (by extension / DICOM magic)", root, ignored)
    return images


# ------------------------------------------------------------------ loading and inference

def load_images(paths: Sequence[str | Path], cfg: Any,
                cache: Any = None) -> tuple[np.ndarray, list[str | None]]:
    """Preprocessed ``uint8 (N, S, S, C)`` (zeros where unreadable) and one error or None per file.

    With ``cache`` (a :class:`training.data.cache.ImageCache`) each file is decoded once ever
    (evaluation and comparison predict the same validation and test files several times;
    decoding full-size CXRs is most of their time on a CPU); without, every call decodes.
    """
    if cache is not None:
        x, bad = cache.load([str(p) for p in paths], cfg, on_error="skip")
        errors: list[str | None] = [None] * len(paths)
        for e in bad:
            errors[e["index"]] = e["reason"]
            log.error("cannot use %s: %s", e["path"], e["reason"])
        return x, errors
    x = np.zeros((len(paths), cfg.size, cfg.size, cfg.channels), dtype=np.uint8)
    errors = [None] * len(paths)
    for i, p in enumerate(paths):
        try:
            x[i] = load_image(p, cfg)
        except (CXRError, ValueError) as exc:
            errors[i] = str(exc)
            log.error("cannot use %s: %s", p, exc)
    return x, errors


def predict_array(model: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Model outputs for ``x`` in batches of exactly ``min(batch_size, len(x))`` rows.

    The last batch is padded with zeros, so every call has the same shape (no retracing;
    the same numerics for every row wherever it sits).
    """
    if len(x) == 0:
        return np.zeros((0, model.outputs[0].shape[-1]), dtype=np.float32)
    b = max(1, min(int(batch_size), len(x)))
    out = []
    for start in range(0, len(x), b):
        batch = x[start:start + b]
        n = len(batch)
        if n < b:
            batch = np.concatenate([batch, np.zeros((b - n,) + x.shape[1:], x.dtype)])
        out.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32)[:n])
    return np.concatenate(out)


def _predict_scored(m: LoadedModel, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw probabilities and OOD scores of a gated model, batched like :func:`predict_array`."""
    if len(x) == 0:
        return np.zeros((0, len(m.outputs)), np.float32), np.zeros(0)
    b = max(1, min(int(batch_size), len(x)))
    probs, scores = [], []
    for start in range(0, len(x), b):
        batch = x[start:start + b]
        n = len(batch)
        if n < b:
            batch = np.concatenate([batch, np.zeros((b - n,) + x.shape[1:], x.dtype)])
        p, f = m.scorer.predict_on_batch(batch)
        probs.append(np.asarray(p, dtype=np.float32)[:n])
        scores.append(m.gate.score(np.asarray(f)[:n]))
    return np.concatenate(probs), np.concatenate(scores)


def predict_scored(models: Sequence[LoadedModel], paths: Sequence[str | Path], batch_size: int = 32,
                   cache: Any = None) -> tuple[list[np.ndarray], list[np.ndarray], list[str | None]]:
    """:func:`predict_paths` plus each model's OOD score per file (NaN: no gate / unreadable)."""
    return _predict(models, paths, batch_size, cache, scored=True)


def predict_paths(models: Sequence[LoadedModel], paths: Sequence[str | Path],
                  batch_size: int = 32, cache: Any = None) -> tuple[list[np.ndarray], list[str | None]]:
    """RAW probabilities per model (``(N, C)``, NaN rows where unreadable) and errors per file.

    Not calibrated (:meth:`LoadedModel.calibrate` does that), so evaluation can fit or apply a
    calibration and report both scales.

    Images are decoded once per distinct preprocessing and ``_CHUNK`` files at a time (and
    through ``cache``, an ``ImageCache``, when given: see :func:`load_images`).
    """
    probs, _, errors = _predict(models, paths, batch_size, cache, scored=False)
    return probs, errors


def _predict(models: Sequence[LoadedModel], paths: Sequence[str | Path], batch_size: int,
             cache: Any, scored: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[str | None]]:
    probs = [np.full((len(paths), len(m.outputs)), np.nan, dtype=np.float32) for m in models]
    scores = [np.full(len(paths), np.nan) for _ in models]
    errors: list[str | None] = [None] * len(paths)
    for start in range(0, len(paths), _CHUNK):
        chunk = list(paths[start:start + _CHUNK])
        by_cfg: dict[str, tuple[np.ndarray, list[str | None]]] = {}
        for k, m in enumerate(models):
            key = m.preprocess.key()
            if key not in by_cfg:
                by_cfg[key] = load_images(chunk, m.preprocess, cache)
            x, errs = by_cfg[key]
            ok = np.array([e is None for e in errs])
            rows = slice(start, start + len(chunk))
            if scored and m.gate is not None:
                probs[k][rows][ok], scores[k][rows][ok] = _predict_scored(m, x[ok], batch_size)
            else:
                probs[k][rows][ok] = predict_array(m.model, x[ok], batch_size)
            for i, e in enumerate(errs):
                if e is not None and errors[start + i] is None:
                    errors[start + i] = e
    return probs, scores, errors


def predicted_findings(p: np.ndarray, m: LoadedModel) -> list[str | None]:
    """Per row of CALIBRATED ``p``: the positive outputs joined by ';' (one class for a softmax
    model), None where the row has no probabilities.

    The app's rule (:func:`training.evaluation.decision.decide`) with the card's thresholds;
    where the card has none, 0.5 (the app then shows no decision).
    """
    positive = decide(p, m.kind, m.card.thresholds, m.outputs, missing=DEFAULT_THRESHOLD)
    known = ~np.isnan(np.asarray(p, dtype=np.float64)).any(axis=1)
    return [";".join(n for n, on in zip(m.outputs, row) if on) if ok else None
            for row, ok in zip(positive, known)]


def predict_files(model_dirs: Sequence[str | Path], inputs: Sequence[str | Path],
                  batch_size: int = 32) -> pd.DataFrame:
    """Predict every image of ``inputs`` (files or folders) with every model, through the gate.

    Columns: ``path``; ``gate`` (accept | warn | refuse) and ``gate_reasons`` (``code: message``
    joined by " | "); per model ``prob_<output>`` (calibrated by the card, card order),
    ``raw_prob_<output>`` (the network's output), ``pred`` (calibrated probabilities against
    the card's thresholds) and ``ood_score`` (its gate's score; empty without a gate), prefixed
    by ``<model name>:`` when there are several models; ``error`` (None when the file was read).
    A refused image gets no probabilities and no ``pred`` (as in the app).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    models = load_models(model_dirs)
    paths = find_images([inputs] if isinstance(inputs, (str, Path)) else inputs)
    probs, scores, errors = predict_scored(models, paths, batch_size)
    verdicts = [_verdict(p, models, [s[i] for s in scores]) if e is None else None
                for i, (p, e) in enumerate(zip(paths, errors))]
    refused = np.array([v is not None and v.refused for v in verdicts], dtype=bool)
    df = pd.DataFrame({"path": [str(p) for p in paths],
                       "gate": [v.verdict if v else None for v in verdicts],
                       "gate_reasons": [" | ".join(f"{r.code}: {r.message}" for r in v.reasons) if v else None
                                        for v in verdicts]})
    for m, raw, score in zip(models, probs, scores):
        prefix = f"{m.name}:" if len(models) > 1 else ""
        raw = np.where(refused[:, None], np.nan, raw)
        p = m.calibrate(raw)
        for j, o in enumerate(m.outputs):
            df[f"{prefix}prob_{o}"] = p[:, j]
        for j, o in enumerate(m.outputs):
            df[f"{prefix}raw_prob_{o}"] = raw[:, j].astype(np.float64)
        df[f"{prefix}pred"] = predicted_findings(p, m)
        df[f"{prefix}ood_score"] = score
    df["error"] = errors
    n_err, n_refused = sum(e is not None for e in errors), int(refused.sum())
    if n_err:
        log.warning("%d of %d files could not be read (see the 'error' column)", n_err, len(paths))
    if n_refused:
        log.warning("%d of %d images refused by the input gate (see 'gate_reasons')", n_refused, len(paths))
    return df


def _verdict(path: Path, models: Sequence[LoadedModel], scores: list[float]) -> GateResult:
    """The gate's verdict on one file: its image checks and each gated model's score."""
    try:
        facts = inspect(Path(path).read_bytes(), str(path))
    except (CXRError, OSError) as exc:  # read a moment ago: only a race gets here
        return GateResult([Reason("undecodable", "refuse", str(exc))])
    gated = {m.name: (m.gate, s) for m, s in zip(models, scores) if m.gate is not None and np.isfinite(s)}
    return assess(facts, gated)


def write_predictions(df: pd.DataFrame, path: str | Path) -> Path:
    """Write predictions as CSV (or JSON records for a ``.json`` path); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        return io.write_text(path, df.to_json(orient="records", indent=1))
    return io.write_csv(path, df)

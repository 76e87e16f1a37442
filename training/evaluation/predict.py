"""Batch prediction of image files and folders with one or several saved models.

Each model is a :class:`training.runtime.Runtime` (the app's too): its card gives the
preprocessing, outputs, calibration and thresholds, so the images are prepared exactly as in training and the probabilities shown are the calibrated ones (the
scale of the card's thresholds). Unreadable files get a row with an ``error`` (and a log
message); nothing is skipped silently. Inference runs in fixed-size batches (the last one
padded), so a prediction depends neither on the batch size nor on the file order.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from training import io
from training.errors import CXRError, DataError
from training.gate.assess import assess
from training.gate.checks import inspect
from training.gate.verdict import GateResult, Reason
from training.preprocess import error_reason, is_dicom, load_image
from training.runtime import Runtime, load_all

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
#: Files decoded per step (bounds memory for big folders; a multiple of any batch size works).
_CHUNK = 256


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
    decoding full-size CXRs is most of their time on a CPU) and the images come as a lazy
    :class:`~training.data.cached_images.CachedImages` view; without, every call decodes.
    Callers pass at most ``_CHUNK`` paths at a time, so memory stays flat either way.
    """
    if cache is not None:
        x, bad = cache.open([str(p) for p in paths], cfg, on_error="skip")
        errors: list[str | None] = [None] * len(paths)
        for e in bad:
            errors[e["index"]] = e["reason"]
            log.error(_UNUSABLE, e["reason"])
        return x, errors
    x = np.zeros((len(paths), cfg.size, cfg.size, cfg.channels), dtype=np.uint8)
    errors = [None] * len(paths)
    for i, p in enumerate(paths):
        try:
            x[i] = load_image(p, cfg)
        except (CXRError, ValueError) as exc:
            errors[i] = str(exc)
            log.error(_UNUSABLE, error_reason(exc) if isinstance(exc, DataError) else exc)
    return x, errors


#: File names are patient data: the log says why, the output's row (path, error) says which.
_UNUSABLE = "an image could not be used (its row's 'error' column names it): %s"


def predict_scored(models: Sequence[Runtime], paths: Sequence[str | Path], batch_size: int = 32,
                   cache: Any = None) -> tuple[list[np.ndarray], list[np.ndarray], list[str | None]]:
    """:func:`predict_paths` plus each model's OOD score per file (NaN: no gate / unreadable)."""
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
            probs[k][rows][ok], scores[k][rows][ok] = m.forward(x[ok], batch_size=batch_size)
            for i, e in enumerate(errs):
                if e is not None and errors[start + i] is None:
                    errors[start + i] = e
    return probs, scores, errors


def predict_paths(models: Sequence[Runtime], paths: Sequence[str | Path],
                  batch_size: int = 32, cache: Any = None) -> tuple[list[np.ndarray], list[str | None]]:
    """RAW probabilities per model (``(N, C)``, NaN rows where unreadable) and errors per file.

    Not calibrated (:meth:`training.runtime.Runtime.calibrate` does that), so evaluation can
    fit or apply a calibration and report both scales.

    Images are decoded once per distinct preprocessing and ``_CHUNK`` files at a time (and
    through ``cache``, an ``ImageCache``, when given: see :func:`load_images`).
    """
    probs, _, errors = predict_scored(models, paths, batch_size, cache)
    return probs, errors


def predict_files(model_dirs: Sequence[str | Path], inputs: Sequence[str | Path],
                  batch_size: int = 32) -> pd.DataFrame:
    """Predict every image of ``inputs`` (files or folders) with every model, through the gate.

    Columns: ``path``; ``gate`` (accept | warn | refuse) and ``gate_reasons`` (``code: message``
    joined by " | "); per model ``prob_<output>`` (calibrated by the card, card order),
    ``raw_prob_<output>`` (the network's output), ``pred`` (the decision rule of
    :mod:`training.runtime` with the card's thresholds; empty for a card without thresholds,
    as in the app), ``decision_note`` (the outputs that get no decision, and why: e.g. a
    threshold not estimable from too few validation patients) and ``ood_score`` (its gate's score; empty without a gate), prefixed
    by ``<model name>:`` when there are several models; ``error`` (None when the file was read).
    A refused image gets no probabilities and no ``pred`` (as in the app).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    models = load_all(model_dirs)
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
        out = m.interpret(np.where(refused[:, None], np.nan, raw), score)
        for j, o in enumerate(m.outputs):
            df[f"{prefix}prob_{o}"] = out.calibrated[:, j]
        for j, o in enumerate(m.outputs):
            df[f"{prefix}raw_prob_{o}"] = out.raw[:, j].astype(np.float64)
        df[f"{prefix}pred"] = out.findings()
        # why an output is never in ``pred`` (e.g. its threshold is not estimable): one note a model
        undecided = m.no_decision()
        df[f"{prefix}decision_note"] = "; ".join(f"{o}: no decision, {why}" for o, why in undecided.items()) or None
        df[f"{prefix}ood_score"] = score
    df["error"] = errors
    n_err, n_refused = sum(e is not None for e in errors), int(refused.sum())
    if n_err:
        log.warning("%d of %d files could not be read (see the 'error' column)", n_err, len(paths))
    if n_refused:
        log.warning("%d of %d images refused by the input gate (see 'gate_reasons')", n_refused, len(paths))
    return df


def _verdict(path: Path, models: Sequence[Runtime], scores: list[float]) -> GateResult:
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

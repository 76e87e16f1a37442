"""Batch prediction of image files and folders with one or several saved models.

Each model's card gives its preprocessing, outputs and thresholds, so the images are
prepared exactly as in training. Unreadable files get a row with an ``error`` (and a log
message); nothing is skipped silently. Inference runs in fixed-size batches (the last one
padded), so a prediction depends neither on the batch size nor on the file order.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from training.errors import CXRError, DataError
from training.evaluation import metrics as M
from training.models.card import ModelCard
from training.models.card import load_model
from training.preprocess import PreprocessConfig
from training.preprocess import load_image

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
        """The card's thresholds (0.5 where the card has none)."""
        saved = self.card.thresholds or {}
        return {o: float(saved.get(o, 0.5)) for o in self.outputs}


def load_models(model_dirs: Sequence[str | Path]) -> list[LoadedModel]:
    """Load every model directory; names from the cards, made unique with the folder name."""
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    out: list[LoadedModel] = []
    for d in model_dirs:
        model, card = load_model(d)
        out.append(LoadedModel(str(card.name or Path(d).name), model, card,
                               PreprocessConfig.from_dict(card.preprocessing), Path(d)))
    names = [m.name for m in out]
    for m in out:
        if names.count(m.name) > 1:  # two cards with one name: the folder tells them apart
            m.name = f"{m.name}@{m.directory.name}"
    return out


# ------------------------------------------------------------------ finding the files

def is_dicom_file(path: Path) -> bool:
    """DICOM by content: the ``DICM`` magic after the 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


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


def predict_paths(models: Sequence[LoadedModel], paths: Sequence[str | Path],
                  batch_size: int = 32, cache: Any = None) -> tuple[list[np.ndarray], list[str | None]]:
    """Probabilities per model (``(N, C)``, NaN rows where unreadable) and errors per file.

    Images are decoded once per distinct preprocessing and ``_CHUNK`` files at a time (and
    through ``cache``, an ``ImageCache``, when given: see :func:`load_images`).
    """
    probs = [np.full((len(paths), len(m.outputs)), np.nan, dtype=np.float32) for m in models]
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
            probs[k][start:start + len(chunk)][ok] = predict_array(m.model, x[ok], batch_size)
            for i, e in enumerate(errs):
                if e is not None and errors[start + i] is None:
                    errors[start + i] = e
    return probs, errors


def predicted_findings(p: np.ndarray, m: LoadedModel) -> list[str | None]:
    """Per row: outputs over their thresholds joined by ';' (multilabel) or the argmax class."""
    names = m.outputs
    out: list[str | None] = []
    thr = np.array([m.thresholds()[o] for o in names])
    for row in p:
        if np.isnan(row).any():
            out.append(None)
        elif m.kind == "multilabel":
            out.append(";".join(n for n, v, t in zip(names, row, thr) if v >= t))
        else:
            thresholds = {names[-1]: thr[-1]} if len(names) == 2 else None
            out.append(names[int(M.single_label_classes(row[None, :], thresholds, names)[0])])
    return out


def predict_files(model_dirs: Sequence[str | Path], inputs: Sequence[str | Path],
                  batch_size: int = 32) -> pd.DataFrame:
    """Predict every image of ``inputs`` (files or folders) with every model.

    Columns: ``path``; per model ``prob_<output>`` (card order) and ``pred``, prefixed by
    ``<model name>:`` when there are several models; ``error`` (None when the file was read).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    models = load_models(model_dirs)
    paths = find_images([inputs] if isinstance(inputs, (str, Path)) else inputs)
    probs, errors = predict_paths(models, paths, batch_size)
    df = pd.DataFrame({"path": [str(p) for p in paths]})
    for m, p in zip(models, probs):
        prefix = f"{m.name}:" if len(models) > 1 else ""
        for j, o in enumerate(m.outputs):
            df[f"{prefix}prob_{o}"] = p[:, j].astype(np.float64)
        df[f"{prefix}pred"] = predicted_findings(p, m)
    df["error"] = errors
    n_err = sum(e is not None for e in errors)
    if n_err:
        log.warning("%d of %d files could not be read (see the 'error' column)", n_err, len(paths))
    return df


def write_predictions(df: pd.DataFrame, path: str | Path) -> Path:
    """Write predictions as CSV (or JSON records for a ``.json`` path); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        df.to_json(path, orient="records", indent=1)
    else:
        df.to_csv(path, index=False)
    return path

"""Probe features for the shortcut checks: image statistics and frozen-backbone features, and the probe."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.errors import CXRError
from training.data.cache import ImageCache, default_cache_dir
from training.engine.feature_cache import compute_features
from training.models.build import build_model, split_feature_head
from training.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

HIST_BINS = 32
#: Width of the border band, as a share of the image side.
BORDER = 0.1
FEATURE_SETS = ("backbone", "stats")


def original_size(path: str) -> tuple[float, float]:
    """``(width, height)`` of the file as stored (header only); NaN when unreadable."""
    from PIL import Image, UnidentifiedImageError  # image files only here

    try:
        with Image.open(path) as img:
            return float(img.width), float(img.height)
    except (OSError, UnidentifiedImageError):
        pass
    try:  # DICOM (PIL does not read it)
        import pydicom  # DICOM input only

        d = pydicom.dcmread(path, stop_before_pixels=True)
        return float(d.Columns), float(d.Rows)
    except Exception:  # noqa: BLE001  any unreadable header: the size is unknown, not an error
        return float("nan"), float("nan")


def intensity_histogram(x: np.ndarray, bins: int) -> np.ndarray:
    """Per-image histogram ``(N, bins)`` of grey levels ``x`` in [0, 1] (fractions of pixels)."""
    n = len(x)
    idx = np.minimum((x * bins).astype(np.int64), bins - 1).reshape(n, -1)
    return np.stack([np.bincount(i, minlength=bins) for i in idx]) / idx.shape[1]


def image_statistics(images: np.ndarray, paths: Sequence[str]) -> np.ndarray:
    """Cheap acquisition features per image, ``(N, 32 + 10 + 4)`` float32.

    A 32-bin intensity histogram of the preprocessed image; mean and std of each border band
    (top, bottom, left, right: padding, collimation, burnt-in text) and of the centre; and the
    original file's width, height, aspect and log pixel count (scanner / export settings).
    """
    x = np.asarray(images)[..., 0].astype(np.float32) / 255.0
    n, s = x.shape[:2]
    hist = intensity_histogram(x, HIST_BINS)
    b = max(1, int(round(s * BORDER)))
    bands = [x[:, :b], x[:, -b:], x[:, :, :b], x[:, :, -b:], x[:, b:-b, b:-b] if s > 2 * b else x]
    band_stats = [f(a.reshape(n, -1), axis=1) for a in bands for f in (np.mean, np.std)]
    w, h = np.array([original_size(p) for p in paths], dtype=np.float64).reshape(-1, 2).T
    size = [w, h, w / h, np.log(w * h)]
    out = np.column_stack([hist, *band_stats, *size]).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def backbone_features(images: np.ndarray, arch: str, weights: str | None, seed: int = 0,
                      batch_size: int = 32) -> np.ndarray:
    """Pooled frozen-backbone features ``(N, F)`` of uint8 images (random init when weights=None)."""
    import keras  # loads the Keras backend: only when a model is used


    keras.utils.set_random_seed(seed)  # a random-init backbone must be the same every run
    model = build_model(arch, ["a", "b"], "single", input_size=images.shape[1], mode="frozen",
                        weights=weights)
    feature_model, _ = split_feature_head(model)
    return compute_features(feature_model, images, batch_size)


def feature_sets(features: str | Sequence[str], weights: str | None) -> tuple[str, ...]:
    if features == "auto":
        return ("backbone", "stats") if weights is None else ("backbone",)
    sets = (features,) if isinstance(features, str) else tuple(features)
    unknown = sorted(set(sets) - set(FEATURE_SETS))
    if unknown or not sets:
        raise CXRError(f"unknown probe feature set(s) {unknown or sets}; choose from "
                       f"{', '.join(FEATURE_SETS)} or 'auto'")
    return sets


def probe_features(paths: Sequence[str], img_size: int, arch: str = "resnet50",
                   weights: str | None = None, features: str | Sequence[str] = "auto",
                   cache_dir: str | Path | None = None, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Probe features of every path: ``(X for readable rows, readable mask, skipped records)``.

    Images come from the preprocessed-image cache (:class:`training.data.cache.ImageCache`);
    unreadable files are left out and listed (never silently dropped).
    """
    sets = feature_sets(features, weights)
    cache = ImageCache(Path(cache_dir) if cache_dir else default_cache_dir())
    images, errors = cache.load(list(paths), PreprocessConfig(size=int(img_size)), on_error="skip")
    ok = np.ones(len(paths), dtype=bool)
    ok[[e["index"] for e in errors]] = False
    kept = [p for p, k in zip(paths, ok) if k]
    blocks = []
    if "backbone" in sets:
        blocks.append(backbone_features(images[ok], arch, weights, seed))
    if "stats" in sets:
        blocks.append(image_statistics(images[ok], kept))
    skipped = [{"path": e["path"], "reason": e["reason"]} for e in errors]
    return np.hstack(blocks).astype(np.float32), ok, skipped


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int,
              seed: int = 0) -> np.ndarray:
    """Standardised logistic regression; probabilities ``(len(x_test), n_classes)``.

    Classes absent from ``y_train`` get probability 0 (the probe cannot predict them).
    """
    from sklearn.linear_model import LogisticRegression  # scikit-learn: only this step needs it
    from sklearn.pipeline import make_pipeline  # scikit-learn: only this step needs it
    from sklearn.preprocessing import StandardScaler  # scikit-learn: only this step needs it

    if len(np.unique(y_train)) < 2:
        raise CXRError(f"the probe needs at least 2 classes in its training rows, got "
                       f"{np.unique(y_train).tolist()}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(x_train, y_train)
    out = np.zeros((len(x_test), n_classes), dtype=np.float64)
    out[:, clf.classes_.astype(np.int64)] = clf.predict_proba(x_test)
    return out


class ProbeTrainer:
    """The default :data:`Trainer` of :func:`leave_one_source_out`: features + logistic regression."""

    def __init__(self, features: np.ndarray, paths: Sequence[str], seed: int = 0):
        self.features = features
        self.row = {str(p): i for i, p in enumerate(paths)}
        self.seed = seed

    def _x(self, ds: Any) -> np.ndarray:
        return self.features[[self.row[str(p)] for p in ds.meta["path"]]]

    def __call__(self, train: Any, test: Any, task: Any) -> np.ndarray:
        y = task.encode(train)
        known = ~np.isnan(y).any(axis=1)
        return fit_probe(self._x(train)[known], y[known].argmax(axis=1), self._x(test),
                         y.shape[1], self.seed)

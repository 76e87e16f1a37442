"""Fast frozen mode: run the frozen backbone once, cache the pooled features, train the head.

With a frozen backbone and no augmentation every epoch would recompute the same features,
so the feature model (:func:`training.models.build.split_feature_head`) runs once over every
image (batched) and the head trains on the cached ``(N, F)`` float32 features for many epochs
in seconds on a CPU. The cache file is keyed by (architecture, weights, input size,
preprocessing key, a digest of the uint8 images themselves).

With augmentation, features change every epoch; we do **not** cache K augmented views (it
would fix the augmentations to K draws and multiply disk use): the run falls back to full
passes through the frozen backbone (``decide`` says so and the trainer logs it).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import keras

from training import io
from training.engine.forward import compiled_call

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when the feature computation changes


def decide(mode: str, augment: bool, setting: str = "auto") -> tuple[bool, str]:
    """Whether to train on cached features, and why (for the log and the card).

    ``setting``: "auto" (cache when frozen and not augmented), "on" (cache in frozen mode;
    augmentation is then turned off), "off" (never).
    """
    if setting == "off":
        return False, "feature cache off: full passes through the backbone every epoch"
    if mode not in ("frozen", "finetune"):
        return False, f"mode {mode!r} trains the backbone: no feature cache"
    if augment and setting == "auto":
        return False, ("augmentation on: features differ every epoch, so full passes through the "
                       "frozen backbone are used (no cached augmented views)")
    if augment:
        return True, "feature cache forced on: augmentation is turned off for the cached stage"
    return True, "frozen backbone without augmentation: head trained on cached features"


def weights_id(weights: str | None) -> str:
    """A stable identity of the backbone weights (a file's content digest, else the name)."""
    if weights and Path(weights).is_file():
        return "sha256:" + io.file_sha256(Path(weights))
    if weights and Path(weights).is_dir():  # a cxrlab model folder
        files = sorted(p for p in Path(weights).iterdir() if p.suffix in (".keras", ".h5"))
        return "dir:" + ",".join(io.file_sha256(p) for p in files)
    return str(weights)


def images_digest(images: np.ndarray, chunk_rows: int = 256) -> str:
    """sha1 of the uint8 image array (shape included), read in chunks (memmap-friendly)."""
    h = hashlib.sha1(repr((images.shape, str(images.dtype))).encode())
    for start in range(0, len(images), chunk_rows):
        h.update(np.ascontiguousarray(images[start:start + chunk_rows]).tobytes())
    return h.hexdigest()


def feature_key(arch: str, weights: str | None, size: int, preprocess_key: str,
                images: np.ndarray) -> str:
    """The cache key of one image array's features."""
    payload = {"arch": arch, "weights": weights_id(weights), "size": int(size),
               "preprocess": preprocess_key, "images": images_digest(images),
               "keras": keras.__version__, "version": FEATURES_VERSION}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def feature_batches(feature_model: keras.Model, images: np.ndarray, batch_size: int = 64
                    ) -> Iterator[np.ndarray]:
    """Pooled features of ``images`` (an array or a lazy cache view), one float32 batch at a
    time (inference mode): only a batch of images is ever in memory."""
    call = compiled_call(feature_model, training=False)
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size])
        yield keras.ops.convert_to_numpy(call(batch)).astype(np.float32)


def compute_features(feature_model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Pooled features ``(N, F)`` float32 in memory, one batched forward pass (inference mode)."""
    n_feat = int(feature_model.output.shape[-1])
    out = np.empty((len(images), n_feat), dtype=np.float32)
    start = 0
    for feats in feature_batches(feature_model, images, batch_size):
        out[start:start + len(feats)] = feats
        start += len(feats)
    return out


def cached_features(feature_model: keras.Model, images: np.ndarray, key: str, cache_dir: str | Path,
                    batch_size: int = 64) -> np.ndarray:
    """Features from ``cache_dir/<key>.npy`` (memory-mapped: the head reads them per batch),
    computed and written batch by batch, atomically, when absent."""
    path = Path(cache_dir) / f"{key}.npy"
    if path.is_file():
        feats = np.load(path, mmap_mode="r")
        if feats.shape[0] == len(images):
            log.info("features: cache hit %s", path)
            return feats
        log.warning("features: %s has %d rows, expected %d; recomputing", path, len(feats), len(images))
    n_feat = int(feature_model.output.shape[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                  "shape": (len(images), n_feat)}
        np.lib.format.write_array_header_1_0(f, header)
        for feats in feature_batches(feature_model, images, batch_size):
            f.write(feats.astype("<f4").tobytes())
    log.info("features: computed (%d, %d) for %d images", len(images), n_feat, len(images))
    return np.load(path, mmap_mode="r")


def features_for(feature_model: keras.Model, images: np.ndarray, info: dict[str, Any],
                 cache_dir: str | Path, batch_size: int = 64) -> np.ndarray:
    """:func:`cached_features` with the key built from ``info`` (arch, weights, size, preprocess_key)."""
    key = feature_key(info["arch"], info["weights"], info["size"], info["preprocess_key"], images)
    return cached_features(feature_model, images, key, cache_dir, batch_size)

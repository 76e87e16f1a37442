"""What a training run loads before its model: data, task targets, split, train/val images.

``prepare(cfg)`` gives a :class:`Prepared`; the split is made once with ``cfg.seed`` and saved
in ``cfg.out`` (or taken from ``cfg.split``), and a resumed run reuses it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.config import TrainConfig
from training.data.cache import ImageCache, default_cache_dir
from training.data.cached_images import CachedImages
from training.data.formats import load_datasets
from training.data.splits import load_split, make_split, save_split
from training.data.tasks import get_task
from training.engine.data import usable_rows
from training.errors import CXRError, DataError
from training.models.registry import get_architecture

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything loaded before the model: data, split, targets, images per part."""

    ds: Any
    task: Any
    classes: list[str]
    targets: np.ndarray  # (N, C) task targets aligned with ds rows
    split: pd.DataFrame  # aligned with ds rows
    split_path: Path
    index: dict[str, np.ndarray]  # part → ds row indices used
    images: dict[str, CachedImages]  # "train"/"val" → lazy uint8 (n, S, S, 3), read per batch
    size: int
    preprocess: Any
    skipped: list[dict[str, Any]]


def load_data(cfg: TrainConfig):
    """The datasets of ``cfg.data`` (with its format, views, modalities and error policy)."""
    if not cfg.data:
        raise CXRError("config: no data given. What to do: set `data` to one or more dataset folders/CSVs")
    return load_datasets(cfg.data_spec)


def resolve_split(cfg: TrainConfig, ds, task) -> tuple[pd.DataFrame, Path]:
    """The saved split of ``cfg.split``, or a new one made with ``cfg.seed`` saved in ``out``."""
    if cfg.split:
        return load_split(cfg.split, ds), Path(cfg.split)
    path = Path(cfg.out) / "split.csv"
    if path.is_file():  # a resumed run: reuse the split it started with
        return load_split(path, ds), path
    df = make_split(ds, task, parts=cfg.parts, seed=cfg.seed)
    return df, save_split(df, path)


def _subsample(rows: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """At most ``cap`` rows, chosen deterministically by ``seed`` (kept in original order)."""
    if cap is None or len(rows) <= cap:
        return rows
    keep = np.random.default_rng(seed).choice(len(rows), size=int(cap), replace=False)
    return rows[np.sort(keep)]


def _open_images(cache: ImageCache, cfg: TrainConfig, ds, rows: np.ndarray, pcfg
                 ) -> tuple[CachedImages, list[dict]]:
    paths = ds.meta["path"].astype(str).to_numpy()[rows].tolist()
    return cache.open(paths, pcfg, on_error=cfg.on_error, progress=True)


def prepare(cfg: TrainConfig, ds=None, split: tuple[pd.DataFrame, Path] | None = None) -> Prepared:
    """Load data, targets, split and the train/val images (unreadable ones left out, listed)."""
    ds = load_data(cfg) if ds is None else ds
    task = get_task(cfg.task)
    targets = task.encode(ds)
    split_df, split_path = split or resolve_split(cfg, ds, task)
    usable = np.zeros(len(ds), dtype=bool)
    usable[usable_rows(targets)] = True
    part = split_df["part"].to_numpy()
    index = {p: np.flatnonzero((part == p) & usable) for p in ("train", "val", "test")}
    index["train"] = _subsample(index["train"], cfg.max_images, cfg.seed)
    if len(index["train"]) == 0:
        raise DataError(f"no labelled training images for task {cfg.task!r}",
                        hint="check the data and the task (rows unlabelled for the task are not used)")
    size = cfg.img_size or get_architecture(cfg.arch).input_size
    pcfg = cfg.preprocess_config(size)
    images, skipped = {}, list(getattr(ds, "skipped", []))
    cache = ImageCache(cfg.cache_dir or default_cache_dir())
    for p in ("train", "val"):
        images[p], errors = _open_images(cache, cfg, ds, index[p], pcfg)
        if errors:  # on_error="skip": drop the unreadable rows, report them
            bad = np.array([e["index"] for e in errors])
            keep = np.setdiff1d(np.arange(len(index[p])), bad)
            index[p], images[p] = index[p][keep], images[p].subset(keep)
            skipped += [{"path": e["path"], "reason": e["reason"], "part": p} for e in errors]
            log.warning("%d unreadable %s images left out (listed in the card)", len(errors), p)
    return Prepared(ds, task, task.classes(ds), targets, split_df, split_path, index, images,
                    size, pcfg, skipped)



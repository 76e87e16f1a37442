"""A lazy, read-only array of cached images: rows read from memory-mapped store shards.

:meth:`training.data.cache.ImageCache.open` returns one; the trainer, evaluation, precise BN,
the feature cache and the gate index it batch by batch, so host memory stays flat in the
number of images (8 bytes a row of bookkeeping, plus at most :data:`OPEN_SHARDS` mapped
shards). Channels are repeated per batch on the host, not inside the model: a saved model's
input contract stays ``(S, S, 3)`` uint8, and only one channel is held for the whole set.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

#: Shards kept memory-mapped by one view (LRU): bounds the mapped pages (~12 MB each at 224 px).
OPEN_SHARDS = 16


class CachedImages:
    """A lazy, read-only ``uint8 (N, size, size, channels)`` array over the store's shards.

    Indexing (an int, a slice, an integer array or a boolean mask, as NumPy) returns a new
    ``np.ndarray`` read from memory-mapped shards (the last :data:`OPEN_SHARDS` kept open);
    the one stored channel is repeated to ``channels`` per call. Rows of unreadable files read
    as zeros. ``np.asarray(view)`` materialises everything: small sets only.
    """

    def __init__(self, shards: list[Path], shard_of: np.ndarray, row_of: np.ndarray,
                 size: int, channels: int):
        self._shards = shards
        self._shard_of = np.asarray(shard_of, dtype=np.int32)  # -1: unreadable (zeros)
        self._row_of = np.asarray(row_of, dtype=np.int32)
        self.shape = (len(self._shard_of), int(size), int(size), int(channels))
        self.dtype = np.dtype(np.uint8)
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # batch loaders read from several threads

    @classmethod
    def from_index(cls, digests: list[str | None], index: dict[str, tuple[Path, int]],
                   size: int, channels: int) -> CachedImages:
        """The view of ``digests`` (None: unreadable) located through a store's ``index``."""
        numbers: dict[Path, int] = {}
        shard_of = np.full(len(digests), -1, dtype=np.int32)
        row_of = np.zeros(len(digests), dtype=np.int32)
        for i, digest in enumerate(digests):
            if digest is not None:
                shard, row = index[digest]
                shard_of[i], row_of[i] = numbers.setdefault(shard, len(numbers)), row
        return cls(list(numbers), shard_of, row_of, size, channels)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.shape[0]

    def subset(self, rows: Any) -> CachedImages:
        """A view of the given rows (any index form), still lazy."""
        idx = self._indices(rows)
        return CachedImages(self._shards, self._shard_of[idx], self._row_of[idx], self.shape[1],
                            self.shape[3])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            if not -len(self) <= key < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} images")
            return self._read(np.array([key % len(self)]))[0]
        return self._read(self._indices(key))

    def _indices(self, key: Any) -> np.ndarray:
        """Row numbers of a slice, an integer index array or a boolean mask."""
        n = len(self)
        if isinstance(key, slice):
            return np.arange(*key.indices(n))
        if isinstance(key, tuple):  # NumPy would index several axes: only rows are indexable
            raise IndexError("index rows with an int, a slice, a 1-D integer array or a boolean mask")
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask of shape {idx.shape} for {n} images")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise IndexError("index with an int, a slice, a 1-D integer array or a boolean mask")
        if idx.min() < -n or idx.max() >= n:
            raise IndexError(f"row index out of range for {n} images")
        return idx % max(n, 1)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        size, channels = self.shape[1], self.shape[3]
        gray = np.zeros((len(idx), size, size), dtype=np.uint8)
        shard_of = self._shard_of[idx]
        for shard in np.unique(shard_of[shard_of >= 0]):
            at = np.flatnonzero(shard_of == shard)
            rows = self._row_of[idx[at]]
            order = np.argsort(rows, kind="stable")  # ascending reads: sequential on disk
            gray[at[order]] = self._mapped(int(shard))[rows[order]]
        return np.repeat(gray[..., None], channels, axis=-1) if channels > 1 else gray[..., None]

    def _mapped(self, shard: int) -> np.ndarray:
        with self._lock:
            if shard in self._open:
                self._open.move_to_end(shard)
            else:
                self._open[shard] = np.load(self._shards[shard], mmap_mode="r")
                if len(self._open) > OPEN_SHARDS:
                    self._open.popitem(last=False)
            return self._open[shard]

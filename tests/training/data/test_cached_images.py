"""Tests of training/data/cached_images.py: NumPy indexing semantics, lazy reads, flat memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.proc_memory import reset_peak, status_kb
from training.data import cached_images as ci
from training.data.cached_images import CachedImages


def _store(tmp_path: Path, n: int, size: int = 8, rows_per_shard: int = 4, seed: int = 0
           ) -> tuple[CachedImages, np.ndarray]:
    """A view over ``n`` random rows in shards, shuffled across shards, and the eager array
    it must equal (row 3 unreadable: zeros)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    gray = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    shards, index = [], {}
    for s, start in enumerate(range(0, n, rows_per_shard)):
        path = tmp_path / f"shard-{s}.npy"
        np.save(path, gray[start:start + rows_per_shard])
        shards.append(path)
        index.update({f"d{start + r}": (path, r) for r in range(min(rows_per_shard, n - start))})
    order = rng.permutation(n)
    digests: list[str | None] = [f"d{i}" for i in order]
    expected = gray[order]
    if n > 3:
        digests[3], expected[3] = None, 0
    view = CachedImages.from_index(digests, index, size, 3)
    return view, np.repeat(expected[..., None], 3, axis=-1)


@pytest.mark.parametrize("key", [0, 5, -1, slice(None), slice(2, 9, 3), slice(None, None, -2),
                                 np.array([7, 1, 1, 3, 0]), [4, -2], np.array([], dtype=int),
                                 "mask"])
def test_indexing_matches_the_eager_array(tmp_path, key):
    view, eager = _store(tmp_path, 10)
    if isinstance(key, str):
        key = np.arange(10) % 3 == 0
    got = view[key]
    assert isinstance(got, np.ndarray) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, eager[key])


def test_shape_len_asarray_and_subset(tmp_path):
    view, eager = _store(tmp_path, 10)
    assert view.shape == (10, 8, 8, 3) and len(view) == 10 and view.ndim == 4
    np.testing.assert_array_equal(np.asarray(view), eager)
    sub = view.subset([9, 2, 3])
    assert isinstance(sub, CachedImages) and sub.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(sub[:], eager[[9, 2, 3]])


def test_one_channel_is_not_repeated(tmp_path):
    view, eager = _store(tmp_path, 6)
    one = CachedImages(view._shards, view._shard_of, view._row_of, 8, 1)
    np.testing.assert_array_equal(one[:], eager[..., :1])


@pytest.mark.parametrize("key, match", [(10, "out of range"), (np.array([0, 10]), "out of range"),
                                        (np.ones(3, bool), "mask"), (np.array([0.5]), "integer"),
                                        ((0, 1), "integer")])
def test_bad_index_is_explained(tmp_path, key, match):
    view, _ = _store(tmp_path, 10)
    with pytest.raises(IndexError, match=match):
        view[key]


def test_open_shards_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(ci, "OPEN_SHARDS", 2)
    view, eager = _store(tmp_path, 20)
    for i in range(0, 20, 3):
        np.testing.assert_array_equal(view[i:i + 3], eager[i:i + 3])
    assert len(view._open) <= 2


def _peak_reading(tmp_path: Path, n: int) -> int:
    """Peak RSS growth (kB) while every row of an ``n``-row store is read in batches."""
    view, _ = _store(tmp_path, n, size=96, rows_per_shard=64, seed=1)
    base = status_kb("VmRSS")
    if not reset_peak():
        pytest.skip("this kernel does not let a process reset its peak RSS")
    total = 0
    for start in range(0, n, 32):
        total += int(view[start:start + 32].sum(dtype=np.int64))
    assert total > 0
    return status_kb("VmHWM") - base


def test_memory_does_not_grow_with_the_number_of_images(tmp_path, monkeypatch):
    monkeypatch.setattr(ci, "OPEN_SHARDS", 2)
    small = _peak_reading(tmp_path / "small", 640)
    big = _peak_reading(tmp_path / "big", 2560)  # 4x: eager would need 71 MB
    assert big < small + 4096, (small, big)
    assert big < 16 * 1024  # batches + two mapped shards, far below the eager array

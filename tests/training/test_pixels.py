"""The pixel budget and the row-block float conversion (``training/pixels.py``)."""
import numpy as np
import pytest

from training import pixels
from training.errors import ImageDecodeError


def test_luma_is_itu601_in_float_without_rounding():
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    want = np.array([[0.299 * 255, 0.587 * 255], [0.114 * 255, 0.299 * 10 + 0.587 * 20 + 0.114 * 30]])
    got = pixels.luma(rgb)
    assert got.dtype == np.float32 and got.shape == (2, 2)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_luma_ignores_alpha():
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 100, 7
    np.testing.assert_allclose(pixels.luma(rgba), 100.0, rtol=1e-6)


def test_by_rows_fills_every_row_in_blocks(monkeypatch):
    monkeypatch.setattr(pixels, "BLOCK_PIXELS", 10)  # width 4: blocks of 2 rows
    calls = []

    def block(top, end):
        calls.append((top, end))
        return np.arange(top, end, dtype=np.float32)[:, None] * np.ones(4, np.float32)

    out = pixels.by_rows(5, 4, block)
    assert calls == [(0, 2), (2, 4), (4, 5)]  # the last block stops at the image's end
    np.testing.assert_array_equal(out[:, 0], np.arange(5))


def test_by_rows_wider_than_a_block_goes_one_row_at_a_time(monkeypatch):
    monkeypatch.setattr(pixels, "BLOCK_PIXELS", 3)
    rows = []
    pixels.by_rows(3, 8, lambda top, end: rows.append(end - top) or np.zeros((end - top, 8)))
    assert rows == [1, 1, 1]


def test_check_size_refuses_over_the_budget_only():
    pixels.check_size(100, "10 x 10", limit=100)  # at the limit: allowed
    with pytest.raises(ImageDecodeError, match=r"10 x 11 = 110 pixels, more than the 100 allowed"):
        pixels.check_size(110, "10 x 11", limit=100)

"""Pixel-level helpers shared by the decoders: the pixel budget, grey from colour, and float
conversion a block of rows at a time (no full-size temporaries)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.errors import ImageDecodeError

#: ITU-R 601 luma, the weights Pillow's convert("L") uses, applied in float (no 8-bit rounding).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Largest image decoded by default, in pixels (DICOM: rows x columns x frames x samples),
#: checked from the header before any pixel is allocated. The app passes CXRLAB_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 40_000_000

#: Pixels per block of rows converted at a time: float temporaries of a few MB, not the image's.
BLOCK_PIXELS = 1 << 20


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of ``(H, W, >=3)`` as float32 ``(H, W)``, a block of rows at a time."""
    return by_rows(*rgb.shape[:2], lambda top, end: rgb[top:end, :, :3].astype(np.float32) @ LUMA)


def check_size(pixels: int, what: str, limit: int) -> None:
    """Refuse decompression bombs from the declared size (Pillow only warns at 1-2x its limit)."""
    if pixels > limit:
        raise ImageDecodeError(f"image is {what} = {pixels} pixels, more than the {limit} allowed "
                               "(possible decompression bomb)")


def by_rows(height: int, width: int, block: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """float32 ``(height, width)`` filled by ``block(top, end)``: no full-size temporaries."""
    out = np.empty((height, width), np.float32)
    for top in range(0, height, step := max(1, BLOCK_PIXELS // max(width, 1))):
        out[top:top + step] = block(top, min(height, top + step))
    return out

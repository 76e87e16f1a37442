"""Shared generated images for the audit tests."""
from __future__ import annotations

import numpy as np


def cxr_image(sick: bool, gamma: float, seed: int, h: int = 24, w: int = 24) -> np.ndarray:
    """Noise plus a bright top band (wider when sick); ``gamma`` < 1 brightens the mid-tones."""
    rng = np.random.default_rng(seed)
    img = rng.random((h, w)) * 0.4
    img[: int(h * (0.6 if sick else 0.25))] += 0.5
    return (np.clip(img, 0, 1) ** gamma * 255).astype(np.uint8)

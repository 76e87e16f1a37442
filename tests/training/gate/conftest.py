"""Shared data for the gate tests."""
from __future__ import annotations

import numpy as np


def features(n: int, dim: int = 32, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(4, dim))
    return rng.normal(size=(n, 4)) @ basis + 0.1 * rng.normal(size=(n, dim)) + shift

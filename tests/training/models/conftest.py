"""Tiny models built once per session (building backbones is the slow part)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from training.models import build_model

#: smallest input each backbone accepts (keeps CPU tests fast)
TINY = {"inception_v3": 75, "xception": 75}


def tiny_size(arch: str) -> int:
    return TINY.get(arch, 32)


def images(arch: str, n: int = 2, seed: int = 0) -> np.ndarray:
    s = tiny_size(arch)
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def frozen_model() -> Callable:
    """``frozen_model(arch)``: a shared frozen 2-output multilabel model, random weights.

    Tests must not leave it modified (or restore it).
    """
    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = build_model(arch, ["a", "b"], "multilabel",
                                      input_size=tiny_size(arch), weights=None)
        return cache[arch]

    return get

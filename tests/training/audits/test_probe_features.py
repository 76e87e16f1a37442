"""Probe features: feature sets, image statistics (borders, size), the logistic-regression probe."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from training.errors import CXRError
from training.audits import probe_features as S


def test_unknown_feature_set_is_rejected():
    with pytest.raises(CXRError, match="unknown probe feature set"):
        S.feature_sets(("pixels",), None)


def test_image_statistics_capture_borders_and_size(tmp_path):
    a = np.zeros((2, 20, 20, 3), np.uint8)
    a[1, 2:-2, 2:-2] = 200  # image 1: bright centre, black border
    a[0] = 100
    for i, (w, h) in enumerate([(40, 20), (10, 30)]):
        Image.new("L", (w, h)).save(tmp_path / f"{i}.png")
    f = S.image_statistics(a, [str(tmp_path / "0.png"), str(tmp_path / "1.png")])
    assert f.shape == (2, S.HIST_BINS + 14)
    assert np.allclose(f[:, :S.HIST_BINS].sum(axis=1), 1.0)
    top_mean = S.HIST_BINS  # first border statistic
    assert f[0, top_mean] == pytest.approx(100 / 255) and f[1, top_mean] < f[1, -6]
    assert f[0, -4:-1].tolist() == [40, 20, 2] and f[1, -4:-1].tolist() == pytest.approx([10, 30, 1 / 3])


def test_fit_probe_leaves_unseen_classes_at_zero():
    x = np.random.default_rng(0).normal(size=(20, 3))
    p = S.fit_probe(x, np.array([0, 2] * 10), x[:4], 3)
    assert p.shape == (4, 3) and (p[:, 1] == 0).all() and np.allclose(p.sum(axis=1), 1)
    with pytest.raises(CXRError, match="at least 2 classes"):
        S.fit_probe(x, np.zeros(20), x, 2)

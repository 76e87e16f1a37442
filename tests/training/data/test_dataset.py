"""The dataset contract validates its shape and keeps rows aligned."""
import numpy as np
import pandas as pd
import pytest

from training.data.dataset import PATHOLOGIES, REQUIRED_META, CXRDataset


def _meta(n: int) -> pd.DataFrame:
    return pd.DataFrame({c: [f"{c}{i}" for i in range(n)] for c in REQUIRED_META})


def test_subset_keeps_alignment():
    labels = np.eye(3, len(PATHOLOGIES), dtype=np.float32)
    ds = CXRDataset(list(PATHOLOGIES), labels, _meta(3))
    sub = ds.subset([2, 0])
    assert sub.meta["path"].tolist() == ["path2", "path0"]
    np.testing.assert_array_equal(sub.labels, labels[[2, 0]])
    assert ds.subset(np.array([False, True, False])).meta["path"].tolist() == ["path1"]


def test_unlabelled_mask():
    labels = np.full((2, len(PATHOLOGIES)), np.nan, dtype=np.float32)
    labels[0, 1] = 0.0
    assert CXRDataset(list(PATHOLOGIES), labels, _meta(2)).unlabelled.tolist() == [False, True]


def test_rejects_misaligned_or_incomplete():
    with pytest.raises(ValueError, match="rows"):
        CXRDataset(list(PATHOLOGIES), np.zeros((2, len(PATHOLOGIES))), _meta(3))
    with pytest.raises(ValueError, match="required"):
        CXRDataset(list(PATHOLOGIES), np.zeros((1, len(PATHOLOGIES))), _meta(1).drop(columns="patient"))
    with pytest.raises(ValueError, match="labels must be"):
        CXRDataset(list(PATHOLOGIES), np.zeros((1, 2)), _meta(1))

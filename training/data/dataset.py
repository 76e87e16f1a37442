"""The one dataset contract shared by every source format (after torchxrayvision).

A :class:`CXRDataset` is three aligned things:

* ``pathologies``: the ordered list of label names (columns of ``labels``);
* ``labels``: an ``(N, K)`` float32 matrix with 1 (present), 0 (absent) or NaN (unknown);
* ``meta``: a pandas DataFrame with one row per image, aligned with ``labels``.

``meta`` always has the columns in :data:`REQUIRED_META` (missing values as NA);
sources add whatever else they carry (clinical fields, raw finding text, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: The project's pathology vocabulary, in its canonical output order.
#: The hierarchy: COVID-19 and SARS are viral pneumonias; every typed pneumonia is a
#: pneumonia. ARDS is its own label (it can co-occur with any of them).
PATHOLOGIES: tuple[str, ...] = (
    "No Finding",
    "Pneumonia",
    "Bacterial Pneumonia",
    "Viral Pneumonia",
    "Fungal Pneumonia",
    "COVID-19",
    "SARS",
    "ARDS",
)

#: Columns every dataset's ``meta`` has (values may be missing).
REQUIRED_META: tuple[str, ...] = (
    "path",      # absolute path of the image file (str)
    "patient",   # patient id, prefixed by source so ids never collide across sources
    "source",    # dataset name, e.g. "ieee8023", "kermany"
    "view",      # PA, AP, AP Supine, L, ... or NA
    "modality",  # X-ray, CT, ... or NA
    "sex",       # M, F or NA
    "age",       # years (float) or NaN
)


@dataclass
class CXRDataset:
    """Images with an explicit label matrix (NaN = unknown) and aligned metadata."""

    pathologies: list[str]
    labels: np.ndarray
    meta: pd.DataFrame
    name: str = "dataset"
    #: Rows not loaded, each ``{"path": ..., "reason": ...}``; reported, never silent.
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.float32)
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.pathologies):
            raise ValueError(
                f"labels must be (N, {len(self.pathologies)}), got {self.labels.shape}"
            )
        if len(self.meta) != len(self.labels):
            raise ValueError(f"meta has {len(self.meta)} rows but labels {len(self.labels)}")
        missing = [c for c in REQUIRED_META if c not in self.meta.columns]
        if missing:
            raise ValueError(f"meta lacks required columns {missing}")
        self.meta = self.meta.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def unlabelled(self) -> np.ndarray:
        """Boolean mask of rows whose every label is unknown."""
        return np.isnan(self.labels).all(axis=1)

    def subset(self, index: np.ndarray | list[int]) -> "CXRDataset":
        """Rows ``index`` (integer positions or a boolean mask), as a new dataset."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return CXRDataset(
            list(self.pathologies),
            self.labels[index],
            self.meta.iloc[index].reset_index(drop=True),
            self.name,
            list(self.skipped),
        )

    def label_frame(self) -> pd.DataFrame:
        """Labels as a DataFrame (columns = pathologies), aligned with ``meta``."""
        return pd.DataFrame(self.labels, columns=self.pathologies)

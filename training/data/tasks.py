"""Named label sets ("tasks") computed from a dataset's pathology matrix.

A task turns the ``(N, K)`` pathology matrix into the ``(N, C)`` targets a model is
trained on: ``multilabel`` keeps one sigmoid output per pathology; the single-label
tasks (softmax) give each row a one-hot vector, or an all-NaN row when the row's labels
do not decide its class (unlabelled for that task; never counted as a negative).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from training.data.dataset import CXRDataset
from training.errors import UnknownLabelError

Kind = Literal["multilabel", "single"]


@dataclass(frozen=True)
class Task:
    """A named label set: its kind, its class names, and how to derive targets."""

    name: str
    kind: Kind
    description: str
    fixed_classes: tuple[str, ...] = ()
    #: For single-label tasks: maps a pathology-column getter to one (N,) class index
    #: array with -1 where the class is undecided.
    rule: Callable[[Callable[[str], np.ndarray]], np.ndarray] | None = None
    #: Multilabel only: keep a label only within sources that have both of its classes
    #: (:func:`within_source`); elsewhere it becomes NaN, for training and scoring alike.
    within_source: bool = False

    def classes(self, ds: CXRDataset | None = None) -> list[str]:
        """Output names in order (multilabel: the dataset's pathologies)."""
        if self.kind == "multilabel":
            if ds is None:
                raise ValueError("multilabel classes depend on the dataset")
            return list(ds.pathologies)
        return list(self.fixed_classes)

    def encode(self, ds: CXRDataset) -> np.ndarray:
        """Targets ``(N, C)`` float32: 1/0/NaN; single-label rows are one-hot or all NaN."""
        if self.kind == "multilabel":
            labels = ds.labels.astype(np.float32, copy=True)
            return within_source(labels, ds.meta["source"].to_numpy()) if self.within_source else labels
        index = self.rule(lambda name: _column(ds, name))
        out = np.full((len(ds), len(self.fixed_classes)), np.nan, dtype=np.float32)
        known = index >= 0
        out[known] = 0.0
        out[np.flatnonzero(known), index[known]] = 1.0
        return out


def within_source(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """``labels`` with each (source, pathology) pair set to NaN where that source has only one
    known value of the pathology.

    Why: when two sources are combined, a label that one source has only as positives (adult
    COVID-19 in ieee8023) and the other only as negatives (pediatric Kermany) is learnt most
    cheaply from *which source* an image comes from (the source probe separates them with
    ROC-AUC 0.99). Kept only where a source contrasts both classes, every label must be learnt,
    and is scored, within a source. A single source loses only labels it has one value of,
    which teach nothing anyway.
    """
    out = np.array(labels, dtype=np.float32, copy=True)
    for source in np.unique(sources.astype(str)):
        rows = sources.astype(str) == source
        for j in range(out.shape[1]):
            known = out[rows, j][~np.isnan(out[rows, j])]
            if len(np.unique(known)) < 2:
                out[np.flatnonzero(rows), j] = np.nan
    return out


def _column(ds: CXRDataset, name: str) -> np.ndarray:
    """A pathology column (NaN everywhere when the dataset lacks that pathology)."""
    if name in ds.pathologies:
        return ds.labels[:, ds.pathologies.index(name)]
    return np.full(len(ds), np.nan, dtype=np.float32)


def _select(conditions: list[tuple[int, np.ndarray]], n: int) -> np.ndarray:
    """Class index per row: the first true condition wins; -1 when none holds."""
    out = np.full(n, -1, dtype=np.int64)
    for cls, cond in reversed(conditions):
        out[cond] = cls
    return out


def _covid(col: Callable[[str], np.ndarray]) -> np.ndarray:
    c = col("COVID-19")
    return _select([(1, c == 1), (0, c == 0)], len(c))


def _pneumonia(col: Callable[[str], np.ndarray]) -> np.ndarray:
    p, nf = col("Pneumonia"), col("No Finding")
    return _select([(1, p == 1), (0, (nf == 1) & (p != 1))], len(p))


def _covid_vs_pneumonia(col: Callable[[str], np.ndarray]) -> np.ndarray:
    # Why: COVID-19 vs a normal chest (or another collection) is learnt from era and source;
    # against other pneumonias of the same collection the label is more nearly the disease.
    c, p = col("COVID-19"), col("Pneumonia")
    return _select([(1, c == 1), (0, (c == 0) & (p == 1))], len(c))


def _three(col: Callable[[str], np.ndarray]) -> np.ndarray:
    c, p, nf = col("COVID-19"), col("Pneumonia"), col("No Finding")
    return _select([(2, c == 1), (1, (p == 1) & (c == 0)), (0, (nf == 1) & (p != 1))], len(c))


def _four(col: Callable[[str], np.ndarray]) -> np.ndarray:
    c, v, b, nf = col("COVID-19"), col("Viral Pneumonia"), col("Bacterial Pneumonia"), col("No Finding")
    # A row typed both bacterial and viral (co-infection) is ambiguous for a softmax task.
    return _select(
        [
            (3, c == 1),
            (2, (v == 1) & (c == 0) & (b != 1)),
            (1, (b == 1) & (v != 1) & (c != 1)),
            (0, (nf == 1) & (c != 1) & (v != 1) & (b != 1)),
        ],
        len(c),
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("multilabel", "multilabel", "one sigmoid output per pathology (NaN = unknown, ignored by the loss)"),
        Task("multilabel-within-source", "multilabel",
             "multilabel, each label kept only within sources that have both of its classes "
             "(combined datasets: no reward for recognising the source)", within_source=True),
        Task("covid", "single", "COVID-19 positive vs negative", ("COVID-19 negative", "COVID-19 positive"), _covid),
        Task("covid-vs-pneumonia", "single", "COVID-19 vs other pneumonia only (rows with neither: unused)",
             ("Other pneumonia", "COVID-19"), _covid_vs_pneumonia),
        Task("pneumonia", "single", "normal vs pneumonia (any cause)", ("Normal", "Pneumonia"), _pneumonia),
        Task("3class", "single", "normal / pneumonia (non-COVID) / COVID-19", ("Normal", "Pneumonia", "COVID-19"), _three),
        Task(
            "4class",
            "single",
            "normal / bacterial / viral (non-COVID) / COVID-19",
            ("Normal", "Bacterial Pneumonia", "Viral Pneumonia", "COVID-19"),
            _four,
        ),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``; a clear error listing the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownLabelError(
            f"unknown task {name!r}", hint=f"choose one of: {', '.join(TASKS)}"
        ) from None

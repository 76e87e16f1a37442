"""Whole sites kept out of training: a split's fourth part, ``"site"``.

A site is where an image was taken: ieee8023's free-text ``location`` normalised to its country
(:func:`site_of`). The internal test shares hospitals, eras and image sources with training, so
it cannot say whether an output transfers; re-training once per held-out site (``cross-site``)
can, but costs a training run per site. :func:`hold_out_sites` instead moves whole sites of an
existing split to part ``"site"``: never trained or validated on, evaluated like a test part
(``evaluate --part site``), so the served model itself gets a site-held-out AUC.

The automatic rule holds out every site with ``min_patients`` positive and negative patients
for the task's COVID-19 output, except the largest such site, which stays in training (the
model must still learn the output somewhere). Every row that shares a patient or a
byte-identical file with a held-out row goes with it, whatever its own site.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.content import content_groups, file_digests
from training.data.dataset import CXRDataset
from training.data.tasks import Task
from training.errors import DataError, SplitError

log = logging.getLogger(__name__)

SITE_PART = "site"
SITE_COLUMN = "location"
#: Positive and negative patients a site needs before its AUC is worth estimating.
MIN_SITE_PATIENTS = 5
#: Spellings of one country in ieee8023's ``location`` (its last comma-separated part).
COUNTRY_SPELLINGS = {"usa": "United States", "us": "United States", "u.s.a.": "United States",
                     "united states of america": "United States", "uk": "United Kingdom",
                     "england": "United Kingdom", "scotland": "United Kingdom", "wales": "United Kingdom"}
UNKNOWN_SITES = ("", "?", "unknown", "n/a", "na", "nan")


def site_of(value: Any) -> str | None:
    """The site of one metadata value: its last comma-separated part (a country in ieee8023's
    ``location``: "Milan, Italy" -> "Italy"), spellings unified; None when unknown."""
    if value is None or pd.isna(value):
        return None
    last = str(value).split(",")[-1].strip()
    if last.lower() in UNKNOWN_SITES:
        return None
    return COUNTRY_SPELLINGS.get(last.lower(), last)


def data_sites(ds: CXRDataset, column: str = SITE_COLUMN) -> np.ndarray:
    """Each row's own site (None where unknown, or everywhere when ``ds`` lacks ``column``)."""
    if column not in ds.meta.columns:
        return np.full(len(ds), None, dtype=object)
    return np.array([site_of(v) for v in ds.meta[column]], dtype=object)


def covid_output(outputs: Sequence[str]) -> str:
    """The first output naming COVID-19 (not its negative), else the last (a two-class task's
    positive class): the output whose transfer a site split measures."""
    return next((o for o in outputs if "covid" in o.lower() and "negative" not in o.lower()), outputs[-1])


def _groups(patients: Sequence[str], paths: Sequence[str]) -> np.ndarray:
    """Patients linked by byte-identical files (:func:`content_groups`). Only files whose size
    another file shares are read: a file of unique size has no identical twin."""
    sizes = pd.Series([_size(p) for p in paths])
    shared = (sizes.duplicated(keep=False) & (sizes >= 0)).to_numpy()
    digests: list[str | None] = [None] * len(sizes)
    for i, d in zip(np.flatnonzero(shared), file_digests([paths[i] for i in np.flatnonzero(shared)])):
        digests[i] = d
    return content_groups(patients, digests)[0]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1  # unreadable: compared with nothing


def row_sites(sites: Sequence[str | None], patients: Sequence[str], paths: Sequence[str]) -> np.ndarray:
    """Each row's group site: the most frequent site of its group (patients linked by identical
    files), so a group never straddles training and test; None for groups without a site."""
    groups = _groups(list(patients), [str(p) for p in paths])
    frame = pd.DataFrame({"group": groups, "site": pd.Series(list(sites), dtype=object)})
    mode = frame.dropna(subset=["site"]).groupby("group")["site"].agg(lambda s: s.value_counts().index[0])
    return frame["group"].map(mode).astype(object).where(frame["group"].isin(mode.index), None).to_numpy()


@dataclass(frozen=True)
class Site:
    """One site: its counts (patients for the scored output) and whether it qualifies."""

    name: str
    n_images: int
    n_patients: int
    positives: int  # patients with a positive label for the scored output
    negatives: int
    held_out: bool  # enough positive and negative patients to estimate an AUC there

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def count_sites(site: np.ndarray, patients: np.ndarray, y: np.ndarray, min_patients: int) -> list[Site]:
    """Per site (sorted): images, patients, positive and negative patients of ``y`` (NaN: unknown)."""
    out = []
    for name in sorted({s for s in site if s is not None}):
        rows = site == name
        pos = len(set(patients[rows & (y == 1)]))
        neg = len(set(patients[rows & (y == 0)]))
        out.append(Site(name, int(rows.sum()), len(set(patients[rows])), pos, neg,
                        pos >= min_patients and neg >= min_patients))
    return out


@dataclass(frozen=True)
class SiteHoldout:
    """A split with whole sites moved to part ``"site"``, and what was moved."""

    split: pd.DataFrame
    sites: tuple[str, ...]  # the sites held out (empty: nothing moved)
    n_images: int           # rows in part "site"
    n_patients: int


def _auto_sites(counts: list[Site], output: str, min_patients: int) -> tuple[str, ...]:
    """Every qualifying site but the largest (by patients, then images), which trains."""
    qualifying = [s for s in counts if s.held_out]
    if len(qualifying) < 2:
        log.info("site split: %d site(s) have %d positive and negative patients for %r; "
                 "nothing held out (the largest such site stays in training)",
                 len(qualifying), min_patients, output)
        return ()
    largest = max(qualifying, key=lambda s: (s.n_patients, s.n_images, s.name))
    log.info("site split: %s stays in training (the largest site with %d positive and negative "
             "patients for %r)", largest.name, min_patients, output)
    return tuple(s.name for s in qualifying if s is not largest)


def _checked(split: pd.DataFrame, ds: CXRDataset) -> None:
    if "fold" in split.columns:
        raise SplitError("a k-fold split rotates every patient through test: it cannot hold a site "
                         "part. What to do: hold sites out of a plain train/val/test split.")
    if len(split) != len(ds) or not (split["path"].astype(str).to_numpy()
                                     == ds.meta["path"].astype(str).to_numpy()).all():
        raise SplitError("the split's rows are not the data's rows in the same order. What to do: "
                         "pass the split make_split (or load_split) returned for these data.")


def hold_out_sites(split: pd.DataFrame, ds: CXRDataset, task: Task, sites: Sequence[str] | None = None,
                   min_patients: int = MIN_SITE_PATIENTS) -> SiteHoldout:
    """``split`` (aligned with ``ds``) with whole sites moved to part ``"site"``.

    ``sites``: the sites to hold out, by name; None: the automatic rule (module docstring).
    Rows of other sites keep their part; ``ds`` without a site column holds nothing out.
    """
    _checked(split, ds)
    own = data_sites(ds)
    patients = split["patient"].astype(str).to_numpy()
    classes = list(task.classes(ds))
    output = covid_output(classes)
    counts = count_sites(own, patients, task.encode(ds)[:, classes.index(output)], min_patients)
    if sites is None:
        held = _auto_sites(counts, output, min_patients)
    else:
        known = {s.name for s in counts}
        unknown = sorted(set(sites) - known)
        if unknown:
            raise DataError(f"no images from site(s) {unknown} in the data",
                            hint=f"choose among the data's sites: {', '.join(sorted(known)) or 'none'}")
        held = tuple(sorted(set(sites)))
    if not held:
        return SiteHoldout(split.copy(), (), 0, 0)
    groups = _groups(list(patients), split["path"].astype(str).tolist())
    moved = np.isin(groups, groups[np.isin(own, list(held))])
    out = split.assign(part=np.where(moved, SITE_PART, split["part"].to_numpy()))
    if not (out["part"] == "train").any():
        raise SplitError(f"holding out {', '.join(held)} leaves nothing to train on. "
                         "What to do: hold out fewer sites.")
    n_patients = int(out.loc[moved, "patient"].nunique())
    log.info("site split: held out %s: %d images, %d patients (never trained or validated on)",
             ", ".join(held), int(moved.sum()), n_patients)
    return SiteHoldout(out, held, int(moved.sum()), n_patients)


def held_out_site_names(ds: CXRDataset, in_part: np.ndarray) -> tuple[str, ...]:
    """The sites of ``ds`` whose every row is in ``in_part`` (bool per row): what a site part
    holds out (rows that joined it by patient or identical file do not name their site)."""
    own = data_sites(ds)
    return tuple(sorted(s for s in {x for x in own if x is not None} if in_part[own == s].all()))

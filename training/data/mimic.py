"""MIMIC-CXR-JPG 2.x (Johnson et al., PhysioNet 2019): metadata, label and split CSVs + JPEGs.

The root holds ``mimic-cxr-2.0.0-metadata.csv``, ``-chexpert.csv``, ``-negbio.csv`` and
``-split.csv`` (each possibly ``.gz``, read transparently) and ``files/``, with each image at
``files/p<first two digits of subject_id>/p<subject_id>/s<study_id>/<dicom_id>.jpg``.

Labels are per study: an image gets its study's row of the ``labeler`` file (``chexpert``, the
default, or ``negbio``), joined on (subject_id, study_id); 1 / 0, blank = not mentioned =
unknown (NaN), ``-1`` = uncertain by the ``uncertain`` policy, as for CheXpert (same findings).
A study without a label row is unlabelled (NaN), not normal. Views come from ``ViewPosition``
(LATERAL and LL read as ``L``); the default keeps PA and AP. The split file's
train / validate / test become ``official_part`` train / val / test. MIMIC-CXR-JPG carries no
sex or age (they live in MIMIC-IV): both are unknown.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.chexpert import FINDINGS
from training.data.collection import check_files, label_columns, view_mask, view_name, view_names
from training.data.csv_format import OnError, read_csv_text, require_columns
from training.data.dataset import CXRDataset
from training.data.spec import LABELER_CHOICES
from training.errors import DataError

log = logging.getLogger(__name__)

SOURCE = "mimic"
DEFAULT_VIEWS = ("PA", "AP")
KEYS = ("subject_id", "study_id")
#: MIMIC's ViewPosition values under the project's view names (the others kept as written)
VIEW_NAMES = {"lateral": "L", "ll": "L"}
OFFICIAL = {"train": "train", "validate": "val", "test": "test"}
EXTRA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns",
                 "StudyDate", "StudyTime", "PerformedProcedureStepDescription")


def find_csv(root: Path, kind: str) -> Path | None:
    """``mimic-cxr-<version>-<kind>.csv(.gz)`` in ``root`` (the newest version), or None."""
    found = sorted(p for p in root.glob(f"mimic-cxr-*-{kind}.csv*")
                   if p.name.endswith((".csv", ".csv.gz")) and p.is_file())
    return found[-1] if found else None


def is_mimic(path: Path) -> bool:
    """A folder with MIMIC-CXR-JPG's metadata CSV (registry detection)."""
    return path.is_dir() and find_csv(path, "metadata") is not None


def load_mimic(root: str | Path, views: Sequence[str] | None = DEFAULT_VIEWS,
               uncertain: str = "ignore", labeler: str = "chexpert",
               on_error: OnError = "raise") -> CXRDataset:
    """Load a MIMIC-CXR-JPG folder; ``views`` (ViewPosition, ``L`` for laterals) None keeps all."""
    root = Path(root).resolve()
    if labeler not in LABELER_CHOICES:
        raise DataError(f"labeler={labeler!r} is not one of {list(LABELER_CHOICES)}",
                        hint="use --labeler chexpert or negbio")
    images, csv_path = _read(root, "metadata", ("dicom_id", *KEYS))
    images["line"] = np.arange(len(images)) + 2  # CSV line numbers (header = line 1)
    images["view"] = images["ViewPosition"].map(lambda v: view_name(v, VIEW_NAMES)) if "ViewPosition" in images else pd.NA
    images = images[view_mask(images["view"], view_names(views, VIEW_NAMES))].reset_index(drop=True)
    pathologies, studies = _study_labels(root, labeler, uncertain)
    df = images.merge(studies, on=list(KEYS), how="left", validate="many_to_one")
    meta = _meta(df, root, _official(root))
    ok, skipped = _check_rows(meta, df["line"].to_numpy(), csv_path, on_error)
    labels = df.loc[ok, pathologies].to_numpy(dtype=np.float32)  # no label row: NaN
    return CXRDataset(pathologies, labels, meta[ok], SOURCE, skipped)


def _read(root: Path, kind: str, columns: tuple[str, ...]) -> tuple[pd.DataFrame, Path]:
    """One of the collection's CSVs (and its path), id columns stripped; absent = an error."""
    path = find_csv(root, kind) if root.is_dir() else None
    if path is None:
        raise DataError(f"no mimic-cxr-2.0.0-{kind}.csv(.gz) in this folder", path=root,
                        hint="point at the MIMIC-CXR-JPG folder (it holds the metadata, "
                             "chexpert, negbio and split CSVs and files/)")
    df = read_csv_text(path)
    require_columns(df, columns, path)
    for column in columns:
        df[column] = df[column].astype("string").str.strip().astype(object)
    return df, path


def _study_labels(root: Path, labeler: str, uncertain: str) -> tuple[list[str], pd.DataFrame]:
    """The findings and one label row per (subject_id, study_id), read from the ``labeler``
    file (a bad value names its line); a repeated study keeps its first row."""
    labels, path = _read(root, labeler, KEYS)
    pathologies, values = label_columns(labels, FINDINGS, uncertain, path.name)
    table = pd.DataFrame(values, columns=pathologies)
    for key in KEYS:
        table[key] = labels[key].to_numpy()
    repeated = table.duplicated(list(KEYS)).to_numpy()
    if repeated.any():
        log.warning("%s: %d repeated study row(s) ignored", path.name, int(repeated.sum()))
    return pathologies, table[~repeated]


def _official(root: Path) -> dict[str, str]:
    """dicom_id → train / val / test from the split file; empty when it is absent."""
    if find_csv(root, "split") is None:
        return {}
    split, _ = _read(root, "split", ("dicom_id", "split"))
    part = split["split"].str.lower().map(OFFICIAL)
    return dict(zip(split["dicom_id"][part.notna()], part[part.notna()]))


def _meta(df: pd.DataFrame, root: Path, official: dict[str, str]) -> pd.DataFrame:
    subject, study, dicom = (df[c].fillna("").astype(str) for c in ("subject_id", "study_id",
                                                                      "dicom_id"))
    meta = pd.DataFrame({
        "path": [os.path.join(root, "files", f"p{s[:2]}", f"p{s}", f"s{t}", f"{d}.jpg")
                 for s, t, d in zip(subject, study, dicom)],
        "patient": [f"{SOURCE}:{s}" if s else pd.NA for s in subject],
        "source": SOURCE,
        "view": df["view"],
        "modality": "X-ray",
        "sex": pd.NA,
        "age": np.nan,
    })
    for name in EXTRA_COLUMNS:
        meta[name] = df[name] if name in df.columns else pd.NA
    if official:
        meta["official_part"] = [official.get(d, pd.NA) for d in dicom]
    return meta


def _check_rows(meta: pd.DataFrame, lines: np.ndarray, csv_path: Path, on_error: OnError
                ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Rows to keep: no ids or a repeated image are always skipped; a missing image raises
    or is skipped (``on_error``)."""
    no_ids = meta[["dicom_id", "subject_id", "study_id"]].isna().any(axis=1).to_numpy()
    repeated = ~no_ids & meta["dicom_id"].duplicated().to_numpy()
    skipped = [{"path": f"{csv_path}:{lines[i]}",
                "reason": "no dicom_id, subject_id or study_id" if no_ids[i]
                else "the same dicom_id is listed on an earlier line"}
               for i in np.flatnonzero(no_ids | repeated)]
    if skipped:
        log.warning("%s: skipped %d row(s) without ids or repeated (see dataset.skipped)",
                    csv_path.name, len(skipped))
    ok = ~(no_ids | repeated)
    exists, missing = check_files(meta[ok], csv_path.name, on_error)
    ok[np.flatnonzero(ok)] = exists
    return ok, skipped + missing

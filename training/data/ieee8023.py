"""The ieee8023 COVID-19 image data collection: ``metadata.csv`` + ``images/``.

Findings go through :mod:`training.data.vocab` (old flat and current hierarchical
styles; exhaustive, since the collection lists ARDS whenever present). ``todo`` rows are
kept as unlabelled. Rows are filtered by view and modality (CT ``volumes`` rows drop out
with the default ``modalities``); rows whose image is missing raise or are recorded in
``skipped``; a second row for an already listed image is always recorded in ``skipped``.
No image is decoded here: only existence is checked.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.csv_format import (OnError, files_exist, missing_files_error,
                                      normalize_sex, read_csv_text, require_columns)
from training.data.dataset import PATHOLOGIES, CXRDataset
from training.data.vocab import findings_to_labels
from training.errors import DataError

log = logging.getLogger(__name__)

SOURCE = "ieee8023"
REQUIRED_COLUMNS = ("patientid", "finding", "filename")
NUMERIC_COLUMNS = ("offset", "temperature", "pO2_saturation", "leukocyte_count",
                   "neutrophil_count", "lymphocyte_count")
YES_NO_COLUMNS = ("survival", "intubated", "intubation_present", "went_icu", "in_icu",
                  "needed_supplemental_O2", "extubated")
TEXT_COLUMNS = ("date", "location", "filename", "license")
DEFAULT_VIEWS = ("PA", "AP", "AP Supine")
DEFAULT_MODALITIES = ("X-ray",)


def load_ieee8023(root: str | Path, views: Sequence[str] | None = DEFAULT_VIEWS,
                  modalities: Sequence[str] | None = DEFAULT_MODALITIES,
                  on_error: OnError = "raise") -> CXRDataset:
    """Load ``root/metadata.csv``; ``views``/``modalities`` None keeps every value."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    root = Path(root).resolve()
    csv_path = root / "metadata.csv"
    if not csv_path.is_file():
        raise DataError("no metadata.csv in this folder", path=root,
                        hint="point at the ieee8023 covid-chestxray-dataset folder")
    df = read_csv_text(csv_path)
    require_columns(df, REQUIRED_COLUMNS, csv_path)
    df = _filter(df, "view", views, csv_path)
    df = _filter(df, "modality", modalities, csv_path)
    lines = df.index.to_numpy() + 2  # CSV line numbers (header = line 1), for messages
    meta = _meta(df.reset_index(drop=True), root)
    keep, skipped = _check_rows(meta, lines, csv_path, on_error)
    meta = meta[keep].reset_index(drop=True)
    labels, _ = findings_to_labels(meta["finding"], exhaustive=True, source=str(csv_path))
    return CXRDataset(list(PATHOLOGIES), labels, meta, SOURCE, skipped)


def _clean(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip()


def _filter(df: pd.DataFrame, column: str, allowed: Sequence[str] | None,
            path: Path) -> pd.DataFrame:
    """Keep rows whose ``column`` is in ``allowed`` (case-insensitive); None keeps all."""
    if allowed is None:
        return df
    if isinstance(allowed, str):
        allowed = (allowed,)
    if column not in df.columns:
        raise DataError(f"cannot filter by {column}: the column is missing", path=path,
                        hint=f"pass {column}s=None to keep every row")
    wanted = {a.strip().lower() for a in allowed}
    keep = _clean(df[column]).str.lower().isin(wanted).fillna(False).to_numpy(dtype=bool)
    log.info("%s: %d of %d rows have %s in %s", path, keep.sum(), len(df), column, sorted(wanted))
    return df[keep]


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A stripped text column, all NA when the CSV lacks it."""
    if name in df.columns:
        return _clean(df[name]).astype(object).where(lambda s: s.notna(), pd.NA)
    return pd.Series([pd.NA] * len(df), dtype=object)


def _yes_no(values: pd.Series) -> pd.Series:
    """'Y' / 'N' / 'NA' (blank and odd values such as '?' or 'Not visible' → 'NA')."""
    text = values.astype("string").str.strip().str.upper()
    mapped = text.map({"Y": "Y", "YES": "Y", "N": "N", "NO": "N"}, na_action="ignore")
    return mapped.fillna("NA").astype(object)


def _meta(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    folder = _column(df, "folder").fillna("images")
    filename = _column(df, "filename")
    patient = _column(df, "patientid")
    meta = pd.DataFrame({
        "path": [pd.NA if pd.isna(f) else os.path.join(root, d, f)
                 for d, f in zip(folder, filename)],
        "patient": [pd.NA if pd.isna(p) else f"{SOURCE}:{p}" for p in patient],
        "source": SOURCE,
        "view": _column(df, "view"),
        "modality": _column(df, "modality"),
        "sex": normalize_sex(_column(df, "sex")),
        "age": pd.to_numeric(_column(df, "age"), errors="coerce").astype(float),
        "finding": _column(df, "finding"),
    })
    for name in NUMERIC_COLUMNS:  # odd values ('?') → NaN
        meta[name] = pd.to_numeric(_column(df, name), errors="coerce").astype(float)
    for name in YES_NO_COLUMNS:
        meta[name] = _yes_no(_column(df, name))
    for name in TEXT_COLUMNS:
        meta[name] = _column(df, name)
    meta["folder"] = folder
    return meta


def _check_rows(meta: pd.DataFrame, lines: np.ndarray, csv_path: Path, on_error: OnError
                ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Rows without patient id / filename, or whose image is missing: raise or skip."""
    no_patient = meta["patient"].isna().to_numpy()
    no_file = meta["path"].isna().to_numpy()
    missing = ~no_file & ~files_exist([str(p) for p in meta["path"]])
    if on_error == "raise":
        if no_patient.any() or no_file.any():
            bad = no_patient | no_file
            raise DataError(f"{int(bad.sum())} row(s) without patientid or filename "
                            f"(lines {', '.join(map(str, lines[bad][:5]))})",
                            path=csv_path, hint="fill them in, or pass --on-error skip")
        if missing.any():
            raise missing_files_error(list(meta["path"][missing]), str(csv_path))
    # the collection lists some images twice under two patient ids (one case entered
    # twice): keeping both would put one image in two patients, hence in two parts
    duplicate = ~no_file & meta["path"].duplicated().to_numpy()
    reasons = {"no patientid": no_patient, "no filename": no_file,
               "image file does not exist": missing,
               "duplicate row: the same image file is listed on an earlier line": duplicate}
    drop = no_patient | no_file | missing | duplicate
    skipped = []
    for i in np.flatnonzero(drop):
        reason = next(r for r, mask in reasons.items() if mask[i])
        path = meta["path"].iloc[i]
        skipped.append({"path": f"{csv_path}:{lines[i]}" if pd.isna(path) else str(path),
                        "reason": reason})
    if skipped:
        log.warning("%s: skipped %d row(s) (see dataset.skipped)", csv_path, len(skipped))
    return ~drop, skipped

"""Generic CSV datasets: one row per image with ``path``, ``patient`` and labels.

Labels come either from a ``label`` column (finding strings understood by
:mod:`training.data.vocab`, several separated by ``|`` or ``,``) or from one column per
vocabulary pathology holding 1 / 0 / blank (blank = unknown = NaN). Optional columns
``view``, ``modality``, ``sex``, ``age``, ``source``; any other column is kept in ``meta``.

Rows without a patient id are an error (never one patient per image): honest
patient-level splits need the id, and guessing it would leak patients across parts.
A ``label`` column is not exhaustive (ARDS not listed stays NaN, unlike ieee8023).
"""
from __future__ import annotations

import gzip
import io
import logging
import os
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from training.data.dataset import PATHOLOGIES, REQUIRED_META, CXRDataset
from training.data.vocab import apply_hierarchy, finding_to_labels, known_findings
from training.errors import DataError, UnknownLabelError

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # utf-8-sig also reads plain UTF-8
_MAX_LISTED = 5


class _Bad(NamedTuple):
    """A bad row: 0-based row, what is wrong, what to do, the error class to raise."""

    row: int
    message: str
    hint: str | None = None
    error: type[DataError] = DataError


def read_csv_text(path: str | Path) -> pd.DataFrame:
    """Read a CSV as strings (blank → NaN) trying UTF-8 (± BOM), then cp1252/Latin-1;
    a ``.gz`` file is decompressed first (MIMIC-CXR and PadChest ship their CSVs gzipped)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:  # EOFError, BadGzipFile: a damaged .gz
        raise DataError(f"cannot read the CSV ({getattr(exc, 'strerror', None) or exc})",
                        path=path, hint="check the path and its permissions (a .gz: "
                        "download it again)") from exc
    for encoding in _ENCODINGS:
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if encoding != "utf-8-sig":
        log.warning("%s: not valid UTF-8; read as %s (check accented text)", path, encoding)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"not a readable CSV ({exc})", path=path,
                        hint="save it as comma-separated text with one header row") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df


def require_columns(df: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    """Raise a DataError naming the file and the first missing column."""
    for column in columns:
        if column not in df.columns:
            raise DataError(
                f"required column {column!r} is missing (columns: {', '.join(df.columns)})",
                path=path, hint=f"add a {column!r} column or choose another --format",
            )


def missing_files_error(paths: list[str], what: str) -> DataError:
    """The error for rows whose image file does not exist."""
    shown = ", ".join(paths[:_MAX_LISTED]) + (" ..." if len(paths) > _MAX_LISTED else "")
    return DataError(
        f"{len(paths)} image file(s) listed in {what} do not exist: {shown}",
        hint="restore the files, or pass --on-error skip to load without them (they are "
             "recorded in the dataset's skipped list)",
    )


def files_exist(paths: list[str]) -> np.ndarray:
    """Existence of each path, via one directory listing per folder (fast for thousands)."""
    listing: dict[str, set[str]] = {}
    out = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        folder, name = os.path.split(path)
        if folder not in listing:
            try:
                listing[folder] = set(os.listdir(folder))
            except OSError:  # a missing folder: every file in it is missing
                listing[folder] = set()
        out[i] = name in listing[folder]
    return out


def normalize_sex(values: pd.Series) -> pd.Series:
    """M / F / NA (also accepts male/female, any case)."""
    first = values.astype("string").str.strip().str.upper().str[:1]
    return first.where(first.isin(["M", "F"]), pd.NA).astype(object)


def load_csv(path: str | Path, on_error: OnError = "raise") -> CXRDataset:
    """Load a generic CSV dataset (see the module docstring for the columns)."""
    path = Path(path).resolve()
    _check_on_error(on_error)
    df = read_csv_text(path)
    require_columns(df, ("path", "patient"), path)
    labels, bad = _labels(df, path)
    source = df["source"] if "source" in df.columns else pd.Series([path.stem] * len(df))
    source = source.fillna(path.stem).astype(str)
    meta = _meta(df, path, source)
    bad.extend(_bad_rows(meta, path))
    _file_checks(meta, path, on_error, bad)
    keep = np.ones(len(df), dtype=bool)
    skipped: list[dict[str, Any]] = []
    for b in bad:
        if on_error == "raise":  # header = line 1
            raise b.error(f"line {b.row + 2}: {b.message}", path=path, hint=b.hint)
        if keep[b.row]:
            skipped.append({"path": _row_path(meta, b.row, path), "reason": b.message})
        keep[b.row] = False
    return CXRDataset(list(PATHOLOGIES), labels[keep], meta[keep], path.stem, skipped)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _row_path(meta: pd.DataFrame, row: int, path: Path) -> str:
    value = meta["path"].iloc[row]
    return f"{path}:{row + 2}" if pd.isna(value) else str(value)


def _labels(df: pd.DataFrame, path: Path) -> tuple[np.ndarray, list[_Bad]]:
    """The label matrix and the rows whose labels are bad."""
    lower = {c.lower(): c for c in df.columns}
    columns = {p: lower[p.lower()] for p in PATHOLOGIES if p.lower() in lower}
    if "label" in lower and columns:
        raise DataError(
            f"both a 'label' column and pathology columns {list(columns.values())}",
            path=path, hint="keep one way of giving labels")
    if "label" in lower:
        return _labels_from_text(df[lower["label"]])
    if columns:
        return _labels_from_columns(df, columns)
    raise DataError(
        "no labels: expected a 'label' column or one column per pathology "
        f"({', '.join(PATHOLOGIES)})", path=path,
        hint="add a 'label' column (e.g. 'Pneumonia|COVID-19'; blank = unknown)")


def _labels_from_text(values: pd.Series) -> tuple[np.ndarray, list[_Bad]]:
    rows, bad = [], []
    for i, value in enumerate(values):
        labels, known = finding_to_labels(value, exhaustive=False)
        rows.append(labels)
        if not known:
            bad.append(_Bad(i, f"unknown label {value!r}",
                            f"use names from the vocabulary: {', '.join(known_findings())}",
                            UnknownLabelError))
    return np.vstack(rows) if rows else np.zeros((0, len(PATHOLOGIES))), bad


def _labels_from_columns(df: pd.DataFrame, columns: dict[str, str]
                         ) -> tuple[np.ndarray, list[_Bad]]:
    out = np.full((len(df), len(PATHOLOGIES)), np.nan, dtype=np.float32)
    bad: list[_Bad] = []
    for k, name in enumerate(PATHOLOGIES):
        if name not in columns:
            continue
        values = df[columns[name]].astype("string").str.strip()
        number = pd.to_numeric(values, errors="coerce")
        odd = values.notna() & ~number.isin([0, 1])
        for i in np.flatnonzero(odd.to_numpy()):
            bad.append(_Bad(int(i), f"column {columns[name]!r} has value {values.iloc[i]!r}",
                            "use 1 (present), 0 (absent) or blank (unknown)"))
        out[:, k] = number.where(~odd).to_numpy(dtype=np.float32, na_value=np.nan)
    out, conflict = apply_hierarchy(out)
    for i in np.flatnonzero(conflict):
        bad.append(_Bad(int(i), "contradictory labels (e.g. No Finding=1 with a disease, or "
                        "COVID-19=1 with Viral Pneumonia=0)", "fix the row's pathology columns"))
    return out, bad


def _meta(df: pd.DataFrame, path: Path, source: pd.Series) -> pd.DataFrame:
    """REQUIRED_META columns first, then every other CSV column."""
    folder = path.parent
    paths = df["path"].map(lambda p: p if pd.isna(p) else os.path.normpath(folder / str(p).strip()))
    patient = df["patient"].astype("string").str.strip()
    meta = pd.DataFrame({
        "path": paths.astype(object),
        "patient": (source + ":" + patient).astype(object).where(patient.notna(), pd.NA),
        "source": source.to_numpy(),
        "view": df["view"].astype(object) if "view" in df.columns else pd.NA,
        "modality": df["modality"].astype(object) if "modality" in df.columns else pd.NA,
        "sex": normalize_sex(df["sex"]) if "sex" in df.columns else pd.NA,
        "age": pd.to_numeric(df["age"], errors="coerce") if "age" in df.columns else np.nan,
    })
    extra = [c for c in df.columns if c not in REQUIRED_META and c.lower() != "label"
             and c.lower() not in {p.lower() for p in PATHOLOGIES}]
    for column in extra:
        meta[column] = df[column].to_numpy()
    if "label" in {c.lower() for c in df.columns}:
        meta["finding"] = df[[c for c in df.columns if c.lower() == "label"][0]].to_numpy()
    return meta


def _bad_rows(meta: pd.DataFrame, path: Path) -> list[_Bad]:
    bad = []
    for i in np.flatnonzero(meta["patient"].isna().to_numpy()):
        bad.append(_Bad(int(i), "no patient id",
                        "fill the 'patient' column: patient-level splits need it"))
    for i in np.flatnonzero(meta["path"].isna().to_numpy()):
        bad.append(_Bad(int(i), "no image path", "fill the 'path' column"))
    duplicate = meta["path"].notna() & meta["path"].duplicated()
    for i in np.flatnonzero(duplicate.to_numpy()):
        bad.append(_Bad(int(i), f"image {meta['path'].iloc[i]} is listed twice",
                        "keep one row per image"))
    return bad


def _file_checks(meta: pd.DataFrame, path: Path, on_error: OnError,
                 bad: list[_Bad]) -> None:
    """Missing image files: one error listing them all, or one skipped entry each."""
    has_path = meta["path"].notna().to_numpy()
    exists = files_exist([str(p) for p in meta["path"]])
    missing = [int(i) for i in np.flatnonzero(has_path & ~exists)]
    if missing and on_error == "raise":
        raise missing_files_error([meta["path"].iloc[i] for i in missing], str(path))
    bad.extend(_Bad(i, "image file does not exist") for i in missing)

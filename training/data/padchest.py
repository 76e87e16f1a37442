"""PadChest (BIMCV; Bustos et al., Med. Image Anal. 2020): one labels CSV + 16-bit PNGs.

The root holds ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` (or ``.csv.gz``) and
the images, either as unpacked (``<ImageDir>/<ImageID>``, ImageDir 0..54) or flat
(``<ImageID>``). ``Labels`` is a Python list written as text (``"['pneumonia', ' pleural
effusion']"``), read with :func:`ast.literal_eval`; a row whose list cannot be read (``nan``,
blank, not a list) is always left out and listed in ``skipped`` with the reason.

Labels are exhaustive over what PadChest annotates, as torchxrayvision reads them: the reports
were labelled for every finding they state, so a listed finding is 1 and a vocabulary finding
that PadChest uses (it appears in the CSV) but this image does not list is 0; ``normal`` is
No Finding. An empty list states nothing: the image is unlabelled (NaN), not "normal".
"""
from __future__ import annotations

import ast
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.collection import check_files, label_lists, view_mask, view_name, view_names
from training.data.csv_format import (OnError, files_exist, normalize_sex, read_csv_text,
                                      require_columns)
from training.data.dataset import CXRDataset
from training.data.pathologies import canonical
from training.errors import DataError

log = logging.getLogger(__name__)

SOURCE = "padchest"
CSV_PATTERN = "PADCHEST_chest_x_ray_images_labels_*.csv*"  # the 160K release, .csv or .csv.gz
REQUIRED_COLUMNS = ("ImageID", "PatientID", "Labels")
DEFAULT_VIEWS = ("PA", "AP", "AP Supine")
#: PadChest projections under the project's view names (the others are kept as written)
VIEW_NAMES = {"ap_horizontal": "AP Supine", "l": "L"}
#: Terms about the study, not findings: neither a finding nor "normal"
NOT_FINDINGS = frozenset({"exclude", "suboptimal study"})
EXTRA_COLUMNS = ("ImageID", "ImageDir", "StudyID", "StudyDate_DICOM", "PatientBirth", "Projection",
                 "MethodProjection", "ViewPosition_DICOM", "Labels")


def find_csv(root: Path) -> Path | None:
    """PadChest's labels CSV in ``root`` (the first by name), or None."""
    found = sorted(p for p in root.glob(CSV_PATTERN)
                   if p.name.endswith((".csv", ".csv.gz")) and p.is_file())
    return found[0] if found else None


def is_padchest(path: Path) -> bool:
    """A folder with PadChest's labels CSV (registry detection)."""
    return path.is_dir() and find_csv(path) is not None


def load_padchest(root: str | Path, views: Sequence[str] | None = DEFAULT_VIEWS,
                  on_error: OnError = "raise") -> CXRDataset:
    """Load a PadChest folder; ``views`` (Projection, AP_horizontal = AP Supine) None keeps all."""
    root = Path(root).resolve()
    csv_path = find_csv(root) if root.is_dir() else None
    if csv_path is None:
        raise DataError("no PADCHEST_chest_x_ray_images_labels_*.csv(.gz) in this folder",
                        path=root, hint="point at the PadChest folder that holds its labels CSV")
    df = read_csv_text(csv_path)
    require_columns(df, REQUIRED_COLUMNS, csv_path)
    lines = np.arange(len(df)) + 2  # CSV line numbers (header = line 1), for skipped entries
    findings, unreadable = _parse_labels(df["Labels"])
    annotated = {canonical(f) for listed in findings if listed for f in listed} - {None}
    meta = _meta(df, root)
    keep = view_mask(meta["view"], view_names(views, VIEW_NAMES))
    log.info("%s: %d of %d rows have a view in %s", csv_path.name, keep.sum(), len(df), views)
    meta, lines = meta[keep].reset_index(drop=True), lines[keep]
    findings, unreadable = [f for f, k in zip(findings, keep) if k], unreadable[keep]
    ok, skipped = _check_rows(meta, lines, unreadable, csv_path, on_error)
    meta = meta[ok].reset_index(drop=True)
    findings = [f for f, k in zip(findings, ok) if k]
    pathologies, labels = label_lists(findings, annotated, csv_path.name)
    labels[np.array([not f for f in findings], dtype=bool)] = np.nan  # [] states nothing
    return CXRDataset(pathologies, labels, meta, SOURCE, skipped)


def _parse_labels(values: pd.Series) -> tuple[list[list[str] | None], np.ndarray]:
    """Each row's findings (stripped, lower case, study terms dropped), None if unreadable."""
    out: list[list[str] | None] = []
    for text in values:
        try:
            parsed = ast.literal_eval(text) if isinstance(text, str) else None
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if not isinstance(parsed, (list, tuple)) or not all(isinstance(t, str) for t in parsed):
            out.append(None)
            continue
        terms = (" ".join(t.split()).lower() for t in parsed)
        out.append(sorted({t for t in terms if t and t not in NOT_FINDINGS}))
    return out, np.array([f is None for f in out], dtype=bool)


def _text(df: pd.DataFrame, name: str) -> pd.Series:
    """A stripped text column, all NA when the CSV lacks it."""
    if name not in df.columns:
        return pd.Series([pd.NA] * len(df), dtype=object)
    return df[name].astype("string").str.strip().astype(object).where(df[name].notna(), pd.NA)


def _paths(df: pd.DataFrame, root: Path) -> list[str]:
    """``<root>/<ImageDir>/<ImageID>``, or flat ``<root>/<ImageID>`` where only that exists
    (a missing image is reported at its unpacked place)."""
    image = _text(df, "ImageID").fillna("")
    folder = pd.to_numeric(_text(df, "ImageDir"), errors="coerce")
    flat = [os.path.join(root, i) for i in image]
    nested = [os.path.join(root, str(int(d)), i) if pd.notna(d) else f
              for d, i, f in zip(folder, image, flat)]
    use_flat = files_exist(flat) & ~files_exist(nested)
    return [f if u else n for n, f, u in zip(nested, flat, use_flat)]


def _age(df: pd.DataFrame) -> pd.Series:
    """Years from the birth year to the study year (±1: PadChest gives only the birth year)."""
    study = pd.to_numeric(_text(df, "StudyDate_DICOM").str[:4], errors="coerce")
    birth = pd.to_numeric(_text(df, "PatientBirth"), errors="coerce")
    age = (study - birth).astype(float)
    return age.where((age >= 0) & (age <= 120))


def _meta(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    patient = _text(df, "PatientID")
    meta = pd.DataFrame({
        "path": _paths(df, root),
        "patient": [pd.NA if pd.isna(p) else f"{SOURCE}:{p}" for p in patient],
        "source": SOURCE,
        "view": _text(df, "Projection").map(lambda v: view_name(v, VIEW_NAMES)),
        "modality": "X-ray",
        "sex": normalize_sex(_text(df, "PatientSex_DICOM")),
        "age": _age(df),
    })
    for name in EXTRA_COLUMNS:
        meta[name] = _text(df, name)
    return meta


def _check_rows(meta: pd.DataFrame, lines: np.ndarray, unreadable: np.ndarray, csv_path: Path,
                on_error: OnError) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Rows to keep: unreadable labels, no ImageID/PatientID or a repeated image are always
    skipped; a missing image raises or is skipped (``on_error``)."""
    no_image = meta["ImageID"].isna().to_numpy()
    no_patient = meta["patient"].isna().to_numpy()
    repeated = ~no_image & meta["ImageID"].duplicated().to_numpy()  # ImageIDs are unique
    reasons = {"Labels is not a readable list (e.g. 'nan')": unreadable,
               "no ImageID": no_image, "no PatientID": no_patient,
               "the same image is listed on an earlier line": repeated}
    bad = np.logical_or.reduce(list(reasons.values()))
    skipped = [{"path": f"{csv_path}:{lines[i]}",
                "reason": next(r for r, mask in reasons.items() if mask[i])}
               for i in np.flatnonzero(bad)]
    if skipped:
        log.warning("%s: skipped %d row(s) with unreadable labels or ids (see dataset.skipped)",
                    csv_path.name, len(skipped))
    exists, missing = check_files(meta[~bad], csv_path.name, on_error)
    ok = ~bad
    ok[np.flatnonzero(ok)] = exists
    return ok, skipped + missing

"""The RSNA Pneumonia Detection Challenge (stage 2): DICOMs, opacity boxes and classes.

Layout: ``stage_2_train_labels.csv`` (``patientId, x, y, width, height, Target``; one row
per box, one row with blank box and ``Target`` 0 for an image without one),
``stage_2_detailed_class_info.csv`` (``patientId, class``) and
``stage_2_train_images/<patientId>.dcm``. The unlabelled ``stage_2_test_images`` are not
loaded.

RSNA's ``patientId`` is an IMAGE id (one image each, the patients are not linked), so
patient-level splits are image-level for RSNA: a patient with two images may sit in two parts.

Labels (pathologies ``No Finding``, ``Pneumonia``, ``Lung Opacity``):

* ``Lung Opacity`` (Target 1): Lung Opacity = 1 and Pneumonia = 1 (the challenge marks
  opacities suspicious for pneumonia; torchxrayvision labels both), No Finding = 0;
* ``Normal``: No Finding = 1, Lung Opacity = Pneumonia = 0;
* ``No Lung Opacity / Not Normal``: all three 0;
* without the class file: Target alone (No Finding NaN for Target 0).

``meta`` keeps the boxes (``boxes``: a JSON list of ``[x, y, width, height]``) and the class.
View (``ViewPosition``), sex and age come from each DICOM's header, read without its pixels
(no image is decoded); no message quotes a tag value.
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.collection import check_files, view_mask
from training.data.csv_format import OnError, normalize_sex, read_csv_text, require_columns
from training.data.dataset import CXRDataset
from training.data.pathologies import ordered
from training.errors import DataError

log = logging.getLogger(__name__)

SOURCE = "rsna"
LABELS_CSV = "stage_2_train_labels.csv"
CLASSES_CSV = "stage_2_detailed_class_info.csv"
IMAGES = "stage_2_train_images"
PATHOLOGIES = ordered(["No Finding", "Pneumonia", "Lung Opacity"])
#: detailed class → labels.
CLASS_LABELS: dict[str, dict[str, float]] = {
    "Lung Opacity": {"No Finding": 0.0, "Pneumonia": 1.0, "Lung Opacity": 1.0},
    "Normal": {"No Finding": 1.0, "Pneumonia": 0.0, "Lung Opacity": 0.0},
    "No Lung Opacity / Not Normal": {"No Finding": 0.0, "Pneumonia": 0.0, "Lung Opacity": 0.0},
}
#: Target → labels, without the class file (a Target 0 image may or may not be normal).
TARGET_LABELS: dict[int, dict[str, float]] = {
    1: CLASS_LABELS["Lung Opacity"],
    0: {"Pneumonia": 0.0, "Lung Opacity": 0.0},
}
_HEADER_TAGS = ("ViewPosition", "PatientSex", "PatientAge")
_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
_MAX_AGE = 120.0  # RSNA has a few ages of 148-155 (typing errors): unknown, not kept


def is_rsna(path: Path) -> bool:
    """An RSNA root: ``stage_2_train_labels.csv`` in it."""
    return path.is_dir() and (path / LABELS_CSV).is_file()


def load_rsna(root: str | Path, on_error: OnError = "raise",
              views: Sequence[str] | None = None) -> CXRDataset:
    """Load the RSNA training images of ``root``; ``views`` (e.g. ``["PA"]``) filters by
    the DICOM's ViewPosition, None keeps all."""
    root = Path(root).resolve()
    images = _images(root)
    images["path"] = [os.path.join(root, IMAGES, f"{pid}.dcm") for pid in images["patientId"]]
    exists, skipped = check_files(images, LABELS_CSV, on_error)
    images = images[exists].reset_index(drop=True)
    headers = _headers(list(images["path"]), on_error, skipped)
    readable = np.array([h is not None for h in headers], dtype=bool)
    meta = _meta(images[readable].reset_index(drop=True), [h for h in headers if h is not None])
    labels = _labels(meta)
    chosen = view_mask(meta["view"], views)
    if views is not None:
        log.info("rsna: %d of %d images have a view in %s", chosen.sum(), len(meta), views)
    return CXRDataset(list(PATHOLOGIES), labels[chosen], meta[chosen], SOURCE, skipped)


def _images(root: Path) -> pd.DataFrame:
    """One row per patientId: Target, the boxes (JSON) and the class (NA without its file)."""
    csv_path = root / LABELS_CSV
    if not csv_path.is_file():
        raise DataError(f"no {LABELS_CSV} in this folder", path=root,
                        hint="point at the RSNA Pneumonia Detection Challenge folder")
    rows = read_csv_text(csv_path)
    require_columns(rows, ("patientId", "x", "y", "width", "height", "Target"), csv_path)
    rows["patientId"] = rows["patientId"].str.strip()
    target = pd.to_numeric(rows["Target"], errors="coerce")
    bad = rows["patientId"].isna() | ~target.isin([0, 1])
    if bad.any():
        lines = ", ".join(str(i + 2) for i in np.flatnonzero(bad.to_numpy())[:5])
        raise DataError(f"{int(bad.sum())} row(s) without patientId or with a Target other "
                        f"than 0/1 (lines {lines})", path=csv_path,
                        hint="restore the file from the challenge download")
    rows["Target"] = target.astype(int)
    box = rows[["x", "y", "width", "height"]].apply(pd.to_numeric, errors="coerce").to_numpy()
    rows["box"] = [None if np.isnan(b).any() else [float(v) for v in b] for b in box]
    grouped = rows.groupby("patientId", sort=False)
    images = pd.DataFrame({
        "Target": grouped["Target"].max(),
        "boxes": grouped["box"].agg(lambda g: json.dumps([b for b in g if b is not None])),
    }).rename_axis("patientId").reset_index()
    images["class"] = _classes(root, images["patientId"])
    return images


def _classes(root: Path, patient_ids: pd.Series) -> pd.Series:
    """The detailed class of each image (NA when the class file is absent or lacks it)."""
    path = root / CLASSES_CSV
    if not path.is_file():
        log.info("rsna: no %s: labels from Target only (No Finding unknown)", CLASSES_CSV)
        return pd.Series([pd.NA] * len(patient_ids), dtype=object)
    info = read_csv_text(path)
    require_columns(info, ("patientId", "class"), path)
    info = info.assign(patientId=info["patientId"].str.strip(), cls=info["class"].str.strip())
    unknown = sorted(set(info["cls"].dropna()) - set(CLASS_LABELS))
    if unknown:
        raise DataError(f"unknown class(es) {unknown}", path=path,
                        hint=f"the classes are: {', '.join(CLASS_LABELS)}")
    one = info.drop_duplicates("patientId").set_index("patientId")["cls"]
    return patient_ids.map(one).astype(object)


def _age(value: str) -> float:
    """Years from a DICOM age string: ``051Y``, ``006M``, ``010W``, ``003D`` or bare ``51``."""
    text = value.strip().upper()
    unit = _AGE_UNITS.get(text[-1:], None)
    try:
        years = float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        return float("nan")
    return years if 0 <= years <= _MAX_AGE else float("nan")


def _header(path: str) -> dict[str, str] | None:
    """The header tags of one DICOM (pixels never read); None when it cannot be parsed."""
    import pydicom  # RSNA input only

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
        return {tag: str(ds.get(tag, "") or "").strip() for tag in _HEADER_TAGS}
    except Exception:  # noqa: BLE001 -- any damaged file: reported by count, never by value
        return None


def _headers(paths: list[str], on_error: OnError,
             skipped: list[dict[str, Any]]) -> list[dict[str, str] | None]:
    """Every DICOM's header tags, read by threads; unreadable ones raise or are skipped."""
    import pydicom  # RSNA input only

    # as in training.dicom: pydicom's validation warnings quote tag values (patient data)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    with ThreadPoolExecutor(max_workers=min(16, 4 * (os.cpu_count() or 1))) as pool:
        headers = list(pool.map(_header, paths))
    bad = [p for p, h in zip(paths, headers) if h is None]
    if bad and on_error == "raise":
        raise DataError(f"{len(bad)} DICOM file(s) whose header cannot be read",
                        path=os.path.dirname(bad[0]),
                        hint="re-download them, or pass --on-error skip to load without them")
    skipped.extend({"path": p, "reason": "unreadable DICOM header"} for p in bad)
    if bad:
        log.warning("rsna: skipped %d DICOM(s) whose header cannot be read", len(bad))
    return headers


def _meta(images: pd.DataFrame, headers: list[dict[str, str]]) -> pd.DataFrame:
    tags = pd.DataFrame(headers, columns=list(_HEADER_TAGS))
    ages = np.array([_age(a) for a in tags["PatientAge"]], dtype=float)
    odd = int(np.isnan(ages).sum() - (tags["PatientAge"] == "").sum())
    if odd:
        log.info("rsna: %d image(s) with an implausible or unreadable age (NaN)", odd)
    return pd.DataFrame({
        "path": images["path"].to_numpy(),
        "patient": [f"{SOURCE}:{pid}" for pid in images["patientId"]],
        "source": SOURCE,
        "view": tags["ViewPosition"].replace("", pd.NA).astype(object),
        "modality": "X-ray",
        "sex": normalize_sex(tags["PatientSex"]),
        "age": ages,
        "image_id": images["patientId"].to_numpy(),
        "Target": images["Target"].to_numpy(),
        "class": images["class"].to_numpy(),
        "boxes": images["boxes"].to_numpy(),
    })


def _labels(meta: pd.DataFrame) -> np.ndarray:
    """Labels from the class (Target alone where the class is unknown); a class that
    contradicts Target is an error."""
    out = np.full((len(meta), len(PATHOLOGIES)), np.nan, dtype=np.float32)
    for i, (cls, target) in enumerate(zip(meta["class"], meta["Target"])):
        if isinstance(cls, str) and (cls == "Lung Opacity") != (target == 1):
            raise DataError(f"an image has Target {target} but class {cls!r}", path=CLASSES_CSV,
                            hint="restore both CSVs from one download")
        values = CLASS_LABELS[cls] if isinstance(cls, str) else TARGET_LABELS[int(target)]
        for name, value in values.items():
            out[i, PATHOLOGIES.index(name)] = value
    return out

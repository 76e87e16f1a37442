"""CheXpert (Irvin et al., AAAI 2019): ``train.csv`` / ``valid.csv`` + ``train/`` ``valid/``.

``Path`` is written relative to the folder above the collection
(``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``); its first part is
dropped when it is not ``train``/``valid``/``test``, so a renamed folder still reads. Labels:
1 / 0, blank = not mentioned = unknown (NaN), ``-1`` = uncertain, by the ``uncertain`` policy
(``ignore``: NaN, the default; ``ones``; ``zeros``; Irvin et al. compare them). The patient is
the ``patientNNNNN`` part of the path; the view is ``L`` for laterals, else the ``AP/PA``
value (a frontal image with another or no value has an unknown view).

Decision: ``valid.csv`` rows are the official **test** part. They are the only images labelled by
radiologists (consensus of three), not by the report labeller, so they measure a model against
the better reference; their patients are not in ``train.csv``. Validation (early stopping,
calibration, thresholds) is carved from ``train.csv`` by patient.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import pandas as pd

from training.data.collection import check_files, label_columns, view_mask
from training.data.csv_format import OnError, normalize_sex, read_csv_text, require_columns
from training.data.dataset import CXRDataset
from training.errors import DataError

SOURCE = "chexpert"
FILES = {"train.csv": "train", "valid.csv": "test"}  # official parts (module docstring)
FINDINGS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
            "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
            "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices")
REQUIRED_COLUMNS = ("Path", "Frontal/Lateral")
DEFAULT_VIEWS = ("PA", "AP")
_PARTS = ("train", "valid", "test")
_PATIENT = re.compile(r"patient\d+")


def is_chexpert(path: Path) -> bool:
    """A folder with ``train.csv`` or ``valid.csv`` whose header has ``Frontal/Lateral``."""
    for name in FILES:
        csv = path / name
        if path.is_dir() and csv.is_file():
            with open(csv, encoding="utf-8", errors="replace") as fh:
                if "Frontal/Lateral" in fh.readline():
                    return True
    return False


def load_chexpert(root: str | Path, views: Sequence[str] | None = DEFAULT_VIEWS,
                  uncertain: str = "ignore", on_error: OnError = "raise") -> CXRDataset:
    """Load ``train.csv`` and ``valid.csv`` (either may be absent, not both)."""
    root = Path(root).resolve()
    frames = []
    for name, part in FILES.items():
        if (root / name).is_file():
            df = read_csv_text(root / name)
            require_columns(df, REQUIRED_COLUMNS, root / name)
            frames.append(df.assign(official_part=part))
    if not frames:
        raise DataError("no train.csv or valid.csv in this folder", path=root,
                        hint="point at the CheXpert folder (e.g. CheXpert-v1.0-small)")
    df = pd.concat(frames, ignore_index=True)
    meta = _meta(df, root)
    rows = view_mask(meta["view"], views)
    df, meta = df[rows].reset_index(drop=True), meta[rows].reset_index(drop=True)
    where = f"{root}/{'+'.join(n for n in FILES if (root / n).is_file())}"
    keep, skipped = check_files(meta, where, on_error)
    pathologies, labels = label_columns(df[keep], FINDINGS, uncertain, where)
    return CXRDataset(pathologies, labels, meta[keep].reset_index(drop=True), SOURCE, skipped)


def image_path(root: Path, written: str) -> str:
    """``Path`` as written (relative to the collection's parent, or to itself) → absolute."""
    parts = PurePosixPath(str(written).strip().replace("\\", "/")).parts
    if len(parts) > 1 and parts[0] not in _PARTS:
        parts = parts[1:]
    return str(root.joinpath(*parts))


def _view(frontal: object, ap_pa: object) -> object:
    if str(frontal).strip().lower() == "lateral":
        return "L"
    value = str(ap_pa).strip().upper()
    return value if value in ("AP", "PA") else pd.NA


def _meta(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    written = df["Path"].astype(str)
    patient = [m[0] if (m := _PATIENT.search(p)) else pd.NA for p in written]
    if any(pd.isna(p) for p in patient):
        raise DataError("a Path without a patientNNNNN folder", path=root,
                        hint="keep CheXpert's Path column as published")
    ap_pa = df.get("AP/PA", pd.Series(pd.NA, index=df.index))
    study = written.str.extract(r"(study\d+)", expand=False)
    return pd.DataFrame({
        "path": [image_path(root, p) for p in written],
        "patient": [f"{SOURCE}:{p}" for p in patient],
        "source": SOURCE,
        "view": [_view(f, a) for f, a in zip(df["Frontal/Lateral"], ap_pa)],
        "modality": "X-ray",
        "sex": normalize_sex(df.get("Sex", pd.Series(pd.NA, index=df.index))).to_numpy(),
        "age": pd.to_numeric(df.get("Age", pd.Series(np.nan, index=df.index)),
                             errors="coerce").to_numpy(dtype=float),
        "study": study.to_numpy(dtype=object),
        "official_part": df["official_part"].to_numpy(dtype=object),
    })

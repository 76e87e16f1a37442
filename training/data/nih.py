"""NIH ChestX-ray14 (Wang et al., CVPR 2017): ``Data_Entry_2017*.csv`` + the images.

Layouts: images flat in ``images/`` or in the download's ``images_001/images/`` ...
``images_012/images/`` folders (both searched). ``Finding Labels`` lists every finding the
collection annotates (its 14 + ``No Finding``, ``|``-separated), so a finding not listed is 0
and every other vocabulary finding is left out (NaN after combining). Implied zeros of the
seed's hierarchy (Pneumonia=0 ⇒ COVID-19=0) are not filled in: NIH does not annotate them.
The official ``train_val_list.txt`` / ``test_list.txt`` give ``official_part`` (train / test;
the split then carves val from train). Ages as ``058Y`` (the 2017 file) are read as years;
ages over 120 (typos in the 2017 file) are unknown. No image is decoded here.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from training.data.collection import check_files, label_lists, view_mask
from training.data.csv_format import OnError, normalize_sex, read_csv_text, require_columns
from training.data.dataset import CXRDataset
from training.data.pathologies import canonical
from training.errors import DataError

SOURCE = "nih"
CSV_GLOB = "Data_Entry_2017*.csv"
FINDINGS = ("No Finding", "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass",
            "Nodule", "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema",
            "Fibrosis", "Pleural_Thickening", "Hernia")
#: Their vocabulary names: what NIH annotates (absent from the list = 0)
ANNOTATED = tuple(str(canonical(f)) for f in FINDINGS)
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
DEFAULT_VIEWS = ("PA", "AP")
OFFICIAL_LISTS = {"train_val_list.txt": "train", "test_list.txt": "test"}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([YMD]?)\s*$", re.IGNORECASE)
_AGE_UNIT = {"": 1.0, "Y": 1.0, "M": 1 / 12, "D": 1 / 365}


def is_nih(path: Path) -> bool:
    """A folder with a ``Data_Entry_2017*.csv``."""
    return path.is_dir() and any(path.glob(CSV_GLOB))


def load_nih(root: str | Path, views: Sequence[str] | None = DEFAULT_VIEWS,
             on_error: OnError = "raise") -> CXRDataset:
    """Load the collection at ``root``; ``views`` None keeps every View Position."""
    root = Path(root).resolve()
    found = sorted(root.glob(CSV_GLOB))
    if not found:
        raise DataError(f"no {CSV_GLOB} in this folder", path=root,
                        hint="point at the NIH ChestX-ray14 folder (with Data_Entry_2017.csv)")
    csv_path = found[-1]  # Data_Entry_2017_v2020.csv sorts after Data_Entry_2017.csv
    df = read_csv_text(csv_path)
    require_columns(df, REQUIRED_COLUMNS, csv_path)
    df = df[view_mask(df.get("View Position", pd.Series(pd.NA, index=df.index)), views)]
    meta = _meta(df.reset_index(drop=True), root)
    keep, skipped = check_files(meta, str(csv_path), on_error)
    meta = meta[keep].reset_index(drop=True)
    lists = [str(f).split("|") if pd.notna(f) else [] for f in meta["finding"]]
    pathologies, labels = label_lists(lists, ANNOTATED, str(csv_path))
    return CXRDataset(pathologies, labels, meta, SOURCE, skipped)


def age_years(text: object) -> float:
    """``"058Y"``, ``"58"``, ``"7M"`` → years; anything else, or over 120, → NaN."""
    match = _AGE.match(str(text)) if pd.notna(text) else None
    if match is None:
        return float("nan")
    years = float(match[1]) * _AGE_UNIT[match[2].upper()]
    return years if years <= 120 else float("nan")


def _image_folders(root: Path) -> dict[str, str]:
    """Image name → its folder: ``images/`` and every ``images_NNN/images/``."""
    folders = [root / "images", *sorted(root.glob("images_*/images"))]
    index: dict[str, str] = {}
    for folder in folders:
        if folder.is_dir():
            index.update((name, str(folder)) for name in os.listdir(folder))
    return index


def _official(root: Path) -> dict[str, str]:
    """Image name → train / test, from the official lists when present."""
    out: dict[str, str] = {}
    for name, part in OFFICIAL_LISTS.items():
        path = root / name
        if path.is_file():
            out.update((line.strip(), part) for line in path.read_text().splitlines()
                       if line.strip())
    return out


def _meta(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    names = df["Image Index"].astype(str).str.strip()
    folders = _image_folders(root)
    default = str(root / "images")
    patient = df["Patient ID"].astype(str).str.strip()
    meta = pd.DataFrame({
        "path": [os.path.join(folders.get(n, default), n) for n in names],
        "patient": (SOURCE + ":" + patient).to_numpy(dtype=object),
        "source": SOURCE,
        "view": df.get("View Position", pd.Series(pd.NA, index=df.index)).to_numpy(dtype=object),
        "modality": "X-ray",
        "sex": normalize_sex(df.get("Patient Gender", pd.Series(pd.NA, index=df.index))).to_numpy(),
        "age": np.array([age_years(a) for a in df.get("Patient Age", [pd.NA] * len(df))],
                        dtype=float),
        "finding": df["Finding Labels"].to_numpy(dtype=object),
        "image": names.to_numpy(dtype=object),
    })
    if "Follow-up #" in df.columns:
        meta["follow_up"] = pd.to_numeric(df["Follow-up #"], errors="coerce").to_numpy()
    official = _official(root)
    if official:
        meta["official_part"] = names.map(official).astype(object).where(
            lambda s: s.notna(), pd.NA).to_numpy()
    return meta

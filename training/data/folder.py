"""Class-folder datasets: ``[train|val|test]/CLASS/*.(jpeg|jpg|png|dcm)`` or ``CLASS/*``.

Class folders map onto the vocabulary: ``NORMAL``/``Normal`` → No Finding; ``PNEUMONIA``
→ Pneumonia; ``COVID``/``COVID-19`` → COVID-19 (so also viral pneumonia); any other
vocabulary pathology by name (case-insensitive, ``_`` = space); anything else is an
:class:`UnknownLabelError`.

Kermany file names (``person1000_bacteria_2931.jpeg``, ``IM-0115-0001.jpeg``,
``NORMAL2-IM-0771-0001.jpeg``) carry the patient and, in PNEUMONIA, the type. Only for
such Kermany-named files: ``bacteria``/``virus`` decides Bacterial vs Viral, and COVID-19
and SARS are 0 (the Kermany set predates COVID-19 and had no SARS); Fungal and ARDS stay
NaN (not assessed). Other files are one patient each (warned once).
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data.csv_format import OnError
from training.data.dataset import PATHOLOGIES, CXRDataset
from training.data.vocab import finding_to_labels
from training.errors import DataError, UnknownLabelError

log = logging.getLogger(__name__)

EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".dcm"})
SPLITS = frozenset({"train", "val", "valid", "validation", "test"})
KERMANY = "kermany"

#: Kermany name patterns → patient id (group 1); ``bacteria``/``virus`` in group "type".
_KERMANY_NAMES = (
    re.compile(r"^(person\d+)_(?P<type>bacteria|virus)_\d+(?:_\d+)*$", re.IGNORECASE),
    re.compile(r"^(NORMAL\d*-IM-\d+)(?:-\d+)+$", re.IGNORECASE),
    re.compile(r"^(IM-\d+)(?:-\d+)+$", re.IGNORECASE),
)

#: Class folder (lower case, "_" as space) → finding string for the vocabulary.
CLASS_ALIASES: dict[str, str] = {
    "normal": "No Finding",
    "covid": "COVID-19",
    "covid19": "COVID-19",
    **{p.lower(): p for p in PATHOLOGIES},
}

#: Kermany PNEUMONIA name type → explicit labels (the rest NaN).
_KERMANY_TYPES: dict[str, dict[str, float]] = {
    "bacteria": {"Bacterial Pneumonia": 1, "Viral Pneumonia": 0},
    "virus": {"Bacterial Pneumonia": 0, "Viral Pneumonia": 1},
}


_KNOWN_CLASSES = (f"rename it to one of: NORMAL, PNEUMONIA, COVID, {', '.join(PATHOLOGIES)} "
                  "(case-insensitive, '_' for a space)")


def _class_key(folder: str) -> str:
    return folder.strip().lower().replace("_", " ")


def kermany_patient(stem: str) -> tuple[str | None, str | None]:
    """``(patient, type)`` from a Kermany file stem; ``(None, None)`` if not Kermany-named."""
    for pattern in _KERMANY_NAMES:
        match = pattern.match(stem)
        if match:
            kind = match.groupdict().get("type")
            return match.group(1), kind.lower() if kind else None
    return None, None


def class_labels(folder: str) -> np.ndarray:
    """Labels ``(K,)`` for a class folder name; UnknownLabelError if it names no pathology."""
    key = _class_key(folder)
    if key not in CLASS_ALIASES:
        raise UnknownLabelError(f"class folder {folder!r} is not a known class",
                                hint=_KNOWN_CLASSES)
    # a class folder holds one diagnosis, but says nothing of ARDS beside it
    labels, _ = finding_to_labels(CLASS_ALIASES[key], exhaustive=False)
    return labels


def load_folder(root: str | Path, on_error: OnError = "raise") -> CXRDataset:
    """Load a class-folder tree (with or without a train/val/test level)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    root = Path(root).resolve()
    skipped: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for split, class_dir in _class_dirs(root):
        rows.extend(_class_rows(class_dir, split, on_error, skipped))
    if not rows:
        raise DataError("no images found in the class folders", path=root,
                        hint=f"put {'/'.join(sorted(EXTENSIONS))} files in CLASS/ folders")
    return _dataset(root, rows, skipped)


def _subdirs(folder: Path) -> list[Path]:
    # hidden folders and OS junk (.git, __MACOSX) are not classes
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "__")))


def _class_dirs(root: Path) -> list[tuple[str | None, Path]]:
    """``(split or None, class folder)`` pairs."""
    if not root.is_dir():
        raise DataError("not a folder", path=root, hint="point at the dataset's root folder")
    top = _subdirs(root)
    if not top:
        raise DataError("no class folders", path=root,
                        hint="expected CLASS/ or train/CLASS/ subfolders, e.g. NORMAL/, PNEUMONIA/")
    is_split = [p.name.lower() in SPLITS for p in top]
    if any(is_split) and not all(is_split):
        raise DataError(
            f"mixes split folders and class folders: {[p.name for p in top]}", path=root,
            hint="use either train/CLASS/... (with val/, test/) or CLASS/... at the top")
    if not any(is_split):
        return [(None, p) for p in top]
    return [(split.name, p) for split in top for p in _subdirs(split)]


def _class_rows(class_dir: Path, split: str | None, on_error: OnError,
                skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per image file; empty/unknown folders and other files are recorded."""
    files = sorted((e for e in os.scandir(class_dir) if not e.name.startswith(".")),
                   key=lambda e: e.name)
    images = [e for e in files if e.is_file() and os.path.splitext(e.name)[1].lower() in EXTENSIONS]
    for entry in files:
        if entry not in images:  # not silently dropped: reported in skipped
            skipped.append({"path": entry.path, "reason": "not an image (.jpeg/.jpg/.png/.dcm)"})
    if not images:
        problem = (DataError, "empty class folder (no image files)",
                   "remove it or add its images; --on-error skip ignores it")
    elif _class_key(class_dir.name) not in CLASS_ALIASES:
        problem = (UnknownLabelError, f"class folder {class_dir.name!r} is not a known class",
                   _KNOWN_CLASSES)
    else:
        problem = None
    if problem and on_error == "raise":
        error, message, hint = problem
        raise error(message, path=class_dir, hint=hint)
    if problem:
        paths = [e.path for e in images] or [str(class_dir)]
        skipped.extend({"path": p, "reason": problem[1]} for p in paths)
        return []
    labels = class_labels(class_dir.name)
    return [{"path": e.path, "class": class_dir.name, "orig_split": split,
             "labels": labels} for e in images]


def _dataset(root: Path, rows: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> CXRDataset:
    stems = [os.path.splitext(os.path.basename(r["path"]))[0] for r in rows]
    parsed = [kermany_patient(s) for s in stems]
    n_kermany = sum(p is not None for p, _ in parsed)
    source = KERMANY if n_kermany > len(rows) / 2 else root.name
    labels = np.vstack([r["labels"] for r in rows]).astype(np.float32)
    patients = []
    for i, (row, (patient, kind)) in enumerate(zip(rows, parsed)):
        if patient is None:  # one patient per file: its path relative to the root
            patient = os.path.splitext(os.path.relpath(row["path"], root))[0]
        else:
            if row["class"].lower() == "pneumonia":
                _kermany_labels(labels[i], kind)
        patients.append(f"{source}:{patient}")
    if n_kermany < len(rows):
        msg = (f"{root}: {len(rows) - n_kermany} of {len(rows)} file name(s) carry no patient id; "
               "each is treated as its own patient (patients with several images would leak "
               "across splits: use a CSV with a patient column if you know them)")
        log.warning(msg)
        warnings.warn(msg, stacklevel=3)
    meta = pd.DataFrame({
        "path": [r["path"] for r in rows],
        "patient": patients,
        "source": source,
        "view": pd.NA,
        "modality": "X-ray" if source == KERMANY else pd.NA,
        "sex": pd.NA,
        "age": np.nan,
        "class": [r["class"] for r in rows],
        "orig_split": [r["orig_split"] for r in rows],
        "filename": [os.path.basename(r["path"]) for r in rows],
    })
    return CXRDataset(list(PATHOLOGIES), labels, meta, source, skipped)


def _kermany_labels(labels: np.ndarray, kind: str | None) -> None:
    """In place: the Kermany rule for a Kermany-named PNEUMONIA file (module docstring)."""
    col = {p: i for i, p in enumerate(PATHOLOGIES)}
    for name in ("COVID-19", "SARS"):
        labels[col[name]] = 0.0
    for name, value in _KERMANY_TYPES.get(kind or "", {}).items():
        labels[col[name]] = value

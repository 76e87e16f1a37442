"""COVIDx CXR (v9 and later layout): ``train.txt``/``val.txt``/``test.txt`` + image folders.

Each list file is space-separated without a header, one image a line:
``patient_id filename class source``; the image is ``<part>/<filename>`` and the file it is
listed in becomes ``official_part`` (train / val / test). A filename may hold spaces (the
first field is the patient, the last two the class and the source). ``source`` is the
collection COVIDx took the image from (cohen, fig1, actmed, sirm, ricord, rsna, bimcv, ...):
it is kept as the ``origin`` meta column; the dataset's ``source`` is "covidx".

Classes, through the seed's hierarchy (:mod:`training.data.vocab`: a COVID-19 finding is a
viral pneumonia, as ieee8023's ``Pneumonia/Viral/COVID-19``):

* ``positive`` (v9 binary) / ``COVID-19`` (3-class): COVID-19 = 1 (so Viral Pneumonia =
  Pneumonia = 1, No Finding = 0);
* ``pneumonia``: non-COVID pneumonia: Pneumonia = 1, COVID-19 = 0 (its type unknown: NaN);
* ``normal``: No Finding = 1, every disease 0;
* ``negative`` (v9 binary): COVID-19 = 0 only (normal and non-COVID pneumonia alike).

The pathologies are the ones the classes present decide (binary files: no ARDS).

Overlap with other collections: COVIDx copies ieee8023 (``cohen``) images unchanged and
converts RSNA DICOMs to PNG. Byte-identical copies are linked by the split's content-hash
grouping (:mod:`training.data.content`: identical files put their patients in one split
group); the converted RSNA images are not byte-identical and cannot be linked: never put
COVIDx and RSNA on opposite sides of a split or a leave-one-collection-out run, or load
COVIDx with ``origins`` excluding ``rsna``.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.collection import check_files
from training.data.csv_format import OnError
from training.data.dataset import PATHOLOGIES, CXRDataset
from training.data.vocab import finding_to_labels
from training.errors import DataError

log = logging.getLogger(__name__)

SOURCE = "covidx"
PARTS: tuple[str, ...] = ("train", "val", "test")
#: class (lower case) → (finding string of the seed vocabulary, explicit overrides).
CLASSES: dict[str, tuple[str, dict[str, float]]] = {
    "positive": ("COVID-19", {}),
    "covid-19": ("COVID-19", {}),
    "pneumonia": ("Pneumonia", {"COVID-19": 0.0}),
    "normal": ("No Finding", {}),
    "negative": ("", {"COVID-19": 0.0}),
}
#: origins whose images other loaders also read (ieee8023 as "cohen", RSNA as "rsna").
SHARED_ORIGINS = {"cohen": "ieee8023", "rsna": "rsna"}


def is_covidx(path: Path) -> bool:
    """A COVIDx root: ``train.txt``, ``test.txt`` and ``train/``."""
    return (path.is_dir() and (path / "train.txt").is_file() and (path / "test.txt").is_file()
            and (path / "train").is_dir())


def class_labels(name: str) -> np.ndarray:
    """The label vector (order of PATHOLOGIES) of a COVIDx class."""
    finding, overrides = CLASSES[name.lower()]
    labels, _ = finding_to_labels(finding, exhaustive=False)
    for pathology, value in overrides.items():
        labels[PATHOLOGIES.index(pathology)] = value
    return labels


def load_covidx(root: str | Path, on_error: OnError = "raise",
                origins: Sequence[str] | None = None) -> CXRDataset:
    """Load every list file of ``root``; ``origins`` (e.g. ``["bimcv", "ricord"]``) keeps
    only images from those collections, None keeps all."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    root = Path(root).resolve()
    rows, skipped = _rows(root, on_error)
    if origins is not None:
        wanted = {o.strip().lower() for o in ([origins] if isinstance(origins, str) else origins)}
        rows = rows[rows["origin"].str.lower().isin(wanted)].reset_index(drop=True)
    _warn_shared(rows["origin"])
    codes, classes = pd.factorize(rows["class"].str.lower())
    table = np.vstack([class_labels(c) for c in classes] or [np.full(len(PATHOLOGIES), np.nan)])
    decided = [i for i in range(len(PATHOLOGIES)) if (~np.isnan(table[:, i])).any()]
    pathologies = [PATHOLOGIES[i] for i in decided]
    return CXRDataset(pathologies, table[codes][:, decided], _meta(rows), SOURCE, skipped)


def _parse(path: Path, part: str) -> tuple[list[dict[str, str]], list[int]]:
    """The rows of one list file, and the line numbers of lines that are not 4+ fields."""
    rows, bad = [], []
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4:
            bad.append(number)
            continue
        rows.append({"patient_id": fields[0], "filename": " ".join(fields[1:-2]),
                     "class": fields[-2], "origin": fields[-1], "official_part": part,
                     "line": f"{path.name}:{number}"})
    return rows, bad


def _rows(root: Path, on_error: OnError) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Rows of every list file present; bad lines, unknown classes, repeated or missing
    images raise or are skipped."""
    lists = [(root / f"{part}.txt", part) for part in PARTS if (root / f"{part}.txt").is_file()]
    if not lists:
        raise DataError("no train.txt, val.txt or test.txt in this folder", path=root,
                        hint="point at the COVIDx CXR folder (train.txt, test.txt, train/, test/)")
    rows: list[dict[str, str]] = []
    skipped: list[dict[str, Any]] = []
    for path, part in lists:
        parsed, bad = _parse(path, part)
        if bad and on_error == "raise":
            raise DataError(f"{len(bad)} line(s) without 'patient_id filename class source' "
                            f"({', '.join(f'{path.name}:{n}' for n in bad[:5])})", path=root,
                            hint="restore the file, or pass --on-error skip")
        skipped += [{"path": f"{path}:{n}", "reason": "not 'patient_id filename class source'"}
                    for n in bad]
        rows += parsed
    df = pd.DataFrame(rows, columns=["patient_id", "filename", "class", "origin",
                                     "official_part", "line"])
    df["path"] = [os.path.join(root, p, f) for p, f in zip(df["official_part"], df["filename"])]
    reasons = {
        "unknown class (expected positive/negative or COVID-19/pneumonia/normal)":
            ~df["class"].str.lower().isin(list(CLASSES)).to_numpy(),
        "image listed twice": df["path"].duplicated().to_numpy(),
    }
    drop = np.zeros(len(df), dtype=bool)
    for reason, mask in reasons.items():
        if mask.any() and on_error == "raise":
            raise DataError(f"{int(mask.sum())} line(s): {reason} "
                            f"({', '.join(df['line'][mask].iloc[:5])})", path=root,
                            hint="fix the list files, or pass --on-error skip")
        skipped += [{"path": df["line"].iloc[i], "reason": reason}
                    for i in np.flatnonzero(mask & ~drop)]
        drop |= mask
    df = df[~drop].reset_index(drop=True)
    exists, missing = check_files(df, "the COVIDx list files", on_error)
    if len(skipped):
        log.warning("covidx: skipped %d line(s) (see dataset.skipped)", len(skipped))
    return df[exists].reset_index(drop=True), skipped + missing


def _warn_shared(origin: pd.Series) -> None:
    """A warning naming how many images COVIDx shares with collections cxrlab also loads."""
    counts = Counter(o.lower() for o in origin if o.lower() in SHARED_ORIGINS)
    if counts:
        shared = ", ".join(f"{n} from {SHARED_ORIGINS[o]} ({o})" for o, n in sorted(counts.items()))
        log.warning("covidx: %s; byte-identical copies stay with their twin in a split, "
                    "converted ones (rsna) do not: do not test COVIDx against a model trained "
                    "on those collections", shared)


def _meta(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "path": rows["path"].to_numpy(),
        "patient": [f"{SOURCE}:{p}" for p in rows["patient_id"]],
        "source": SOURCE,
        "view": pd.NA,  # COVIDx does not record the view
        "modality": "X-ray",
        "sex": pd.NA,
        "age": np.nan,
        "filename": rows["filename"].to_numpy(),
        "class": rows["class"].to_numpy(),
        "origin": rows["origin"].to_numpy(),
        "official_part": rows["official_part"].to_numpy(),
    })

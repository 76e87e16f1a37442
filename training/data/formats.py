"""Registry of dataset formats, auto-detection, and combining several datasets.

``FORMATS`` maps a name to ``(detect(path) -> bool, loader)``; detection tries them in
order (ieee8023 before folder: an ieee8023 root also has subfolders). Options a loader
does not take (``views`` for a class folder) are left out for that loader, so one
call can load mixed formats; an option no loader takes is an error.
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from training.data.chexpert import is_chexpert, load_chexpert
from training.data.covidx import is_covidx, load_covidx
from training.data.csv_format import load_csv
from training.data.dataset import CXRDataset
from training.data.folder import load_folder
from training.data.ieee8023 import load_ieee8023
from training.data.mimic import is_mimic, load_mimic
from training.data.nih import is_nih, load_nih
from training.data.padchest import is_padchest, load_padchest
from training.data.rsna import is_rsna, load_rsna
from training.data.spec import DataSpec
from training.errors import DataError

log = logging.getLogger(__name__)

Loader = Callable[..., CXRDataset]


def _is_ieee8023(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.csv").is_file() and (path / "images").is_dir()


def _is_csv(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def _is_folder(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


FORMATS: dict[str, tuple[Callable[[Path], bool], Loader]] = {
    "ieee8023": (_is_ieee8023, load_ieee8023),
    "csv": (_is_csv, load_csv),
    # public collections: before "folder" (their roots have subfolders too)
    "nih": (is_nih, load_nih),
    "chexpert": (is_chexpert, load_chexpert),
    "rsna": (is_rsna, load_rsna),
    "covidx": (is_covidx, load_covidx),
    "mimic": (is_mimic, load_mimic),
    "padchest": (is_padchest, load_padchest),
    "folder": (_is_folder, load_folder),
}

_EXPECTED = ("a folder with metadata.csv and images/ (ieee8023), a .csv file with "
             "path, patient and label columns (csv), a folder with Data_Entry_2017.csv (nih), "
             "a folder with train.csv/valid.csv of CheXpert (chexpert), a folder with "
             "stage_2_train_labels.csv (rsna), a folder with train.txt, test.txt and train/ "
             "(covidx), a folder with mimic-cxr-2.0.0-metadata.csv(.gz) (mimic), a folder with "
             "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv(.gz) (padchest), "
             "or a folder of class subfolders "
             "such as NORMAL/ and PNEUMONIA/, optionally under train/ val/ test/ (folder)")


def detect_format(path: str | Path) -> str:
    """The name of the first format in FORMATS that recognises ``path``."""
    path = Path(path)
    if not path.exists():
        raise DataError("does not exist", path=path, hint="check the dataset path")
    for name, (detect, _) in FORMATS.items():
        if detect(path):
            return name
    raise DataError(f"cannot tell the dataset format; expected {_EXPECTED}", path=path,
                    hint=f"fix the layout or name the format ({', '.join(FORMATS)})")


def _accepted(loader: Loader) -> set[str]:
    return set(inspect.signature(loader).parameters)


def _check_options(options: dict[str, Any]) -> None:
    known = set().union(*(_accepted(loader) for _, loader in FORMATS.values()))
    known -= {"root", "path", "on_error"}  # given positionally / explicitly
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown dataset option(s) {unknown}; known: {sorted(known)}")


def load_dataset(path: str | Path, fmt: str = "auto", on_error: str = "raise",
                 **options: Any) -> CXRDataset:
    """Load one dataset; ``fmt`` is a FORMATS name or "auto"; options go to the loader."""
    _check_options(options)
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}", path=path,
                        hint=f"use one of: auto, {', '.join(FORMATS)}")
    loader = FORMATS[name][1]
    accepted = _accepted(loader)
    ignored = sorted(set(options) - accepted)
    if ignored:
        log.info("%s (%s): options %s do not apply to this format", path, name, ignored)
    kwargs = {k: v for k, v in options.items() if k in accepted}
    return loader(path, on_error=on_error, **kwargs)


def load_datasets(spec: DataSpec) -> CXRDataset:
    """Load every dataset of ``spec`` with its options and combine them (see :func:`combine`)."""
    if not isinstance(spec, DataSpec):
        raise TypeError(f"load_datasets takes a DataSpec, got {type(spec).__name__}")
    if not spec.data:
        raise DataError("no dataset given", hint="pass --data (one or more dataset folders or CSVs)")
    options = spec.loader_options()
    ds = combine([load_dataset(p, spec.fmt, spec.on_error, **options) for p in spec.data])
    return ds if spec.pathologies is None else keep_pathologies(ds, spec.pathologies)


def keep_pathologies(ds: CXRDataset, names: Sequence[str]) -> CXRDataset:
    """``ds`` with only the label columns ``names`` (canonical), in that order.

    A name no loaded collection annotates would be an output trained on nothing: an error.
    """
    absent = [n for n in names if n not in ds.pathologies]
    if absent:
        sources = sorted(set(ds.meta["source"].astype(str)))
        raise DataError(f"no loaded collection ({', '.join(sources)}) annotates {absent}",
                        hint=f"choose --pathologies among: {', '.join(ds.pathologies)}")
    columns = [ds.pathologies.index(n) for n in names]
    return CXRDataset(list(names), ds.labels[:, columns], ds.meta, ds.name, list(ds.skipped))


def combine(datasets: Sequence[CXRDataset]) -> CXRDataset:
    """Stack datasets: labels by pathology name, meta concatenated, name "a+b".

    Patient ids are already prefixed by their source, so two sources cannot collide;
    the same source twice shares one id namespace (e.g. Kermany train/ and test/
    loaded separately). The same image twice is an error.
    """
    if not datasets:
        raise ValueError("no datasets to combine")
    if len(datasets) == 1:
        return datasets[0]
    pathologies = list(datasets[0].pathologies)
    for ds in datasets[1:]:  # union of label names, first-seen order
        pathologies += [p for p in ds.pathologies if p not in pathologies]
    labels = np.vstack([_align(ds, pathologies) for ds in datasets])
    _check_disjoint(datasets)
    meta = pd.concat([ds.meta for ds in datasets], ignore_index=True)
    skipped = [entry for ds in datasets for entry in ds.skipped]
    name = "+".join(ds.name for ds in datasets)
    return CXRDataset(pathologies, labels, meta, name, skipped)


def _check_disjoint(datasets: Sequence[CXRDataset]) -> None:
    """The same image file in two datasets would sit in two rows (and maybe two parts)."""
    seen: set[str] = set()
    for ds in datasets:
        paths = set(ds.meta["path"].astype(str))
        both = sorted(seen & paths)
        if both:
            raise DataError(f"{len(both)} image(s) of {ds.name!r} are also in an earlier "
                            f"dataset, e.g. {both[0]}", hint="load each dataset once")
        seen |= paths


def _align(ds: CXRDataset, pathologies: list[str]) -> np.ndarray:
    """``ds.labels`` with columns in ``pathologies`` order (NaN where ``ds`` lacks one)."""
    out = np.full((len(ds), len(pathologies)), np.nan, dtype=np.float32)
    for j, name in enumerate(pathologies):
        if name in ds.pathologies:
            out[:, j] = ds.labels[:, ds.pathologies.index(name)]
    return out

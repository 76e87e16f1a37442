"""Patient-level train/val/test splits (and k folds), stratified by the task label.

Every patient lands in exactly one part, so no image of a test patient is ever seen in
training. Splits are made with scikit-learn's ``StratifiedGroupKFold`` (groups =
patients, classes = the task label of each row) in a single pass: the data are cut into
``k`` folds (``k`` chosen so that ``parts`` are whole numbers of folds, at most
:data:`MAX_FOLDS`), then whole folds go to test, val and train. Rows that are unlabelled
for the task are kept and assigned with their patient (as their own stratum), so a later
semi-supervised use can never leak a test patient into training.

k-fold cross-validation (``folds=k``): every patient gets one ``fold`` in ``0..k-1``.
Run ``i`` tests on fold ``i``, validates on fold ``(i + 1) % k`` (only when
``parts[1] > 0``) and trains on the rest; see :func:`fold_parts`. The ``part`` column of
a k-fold split is run 0's rotation, so a k-fold split file is also a usable plain split.

Byte-identical files are kept together as well: public collections hold the same image
under two names and two patient ids (ieee8023 has such a pair; Kermany has duplicate groups).
:func:`training.data.content.content_groups` links every patient that shares an identical file
(sha1 of the bytes) into one *split group*, and the folds are cut over those groups, so
identical content can never sit in two parts. :func:`check_content_disjoint` verifies it for
any split.

Official parts (meta ``official_part``: NIH's test list, CheXpert's valid set, ...): ``test``
rows go to test, ``val`` to val, ``train`` to train or val; rows without one are split as above.
A patient (or content group) in two official parts goes whole to the stronger (test, then val),
logged with a count. k-fold splits rotate every patient through test: they ignore them.

Split files are CSV with columns ``path, patient, part, stratum[, fold]``. Loading a split
against a dataset whose every row is in the file but which lacks some rows of the file
(e.g. the same data loaded with a view filter) is allowed with a warning: a subset of a
patient-disjoint split is still patient-disjoint. A fourth part, ``site`` (whole sites never
trained or validated on), is added only by :func:`training.data.site_split.hold_out_sites`.
"""
from __future__ import annotations

import logging
import math
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from training import io
from training.data.content import content_groups, file_digests
from training.data.dataset import CXRDataset
from training.data.tasks import Task
from training.errors import DataError, SplitError

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("train", "val", "test", "site")  # site: site_split.py; training reads train/val
COLUMNS: tuple[str, ...] = ("path", "patient", "part", "stratum")
UNLABELLED = "unlabelled"
#: Resolution of ``parts``: fractions are rounded to multiples of ``1 / MAX_FOLDS``.
MAX_FOLDS = 20
_RESPLIT_HINT = "re-run `python -m training split` on this dataset and retrain"
_SHOW = 5  # how many offending patients/paths an error message lists


# --------------------------------------------------------------------------- strata
def row_strata(ds: CXRDataset, task: Task) -> np.ndarray:
    """The task label of every row as a string (``"unlabelled"`` for all-NaN rows).

    Single-label tasks give the class name; multilabel gives the positive pathologies
    joined by ``"+"`` (``"negative"`` when every known label is 0).
    """
    targets = task.encode(ds)
    classes = task.classes(ds)
    known = ~np.isnan(targets).all(axis=1)
    out = np.full(len(ds), UNLABELLED, dtype=object)
    if task.kind == "single":
        idx = np.argmax(np.nan_to_num(targets), axis=1)
        out[known] = np.asarray(classes, dtype=object)[idx[known]]
        return out
    for i in np.flatnonzero(known):
        pos = [c for c, v in zip(classes, targets[i]) if v == 1]
        out[i] = "+".join(pos) if pos else "negative"
    return out


def _merge_rare(strata: np.ndarray, patients: np.ndarray, k: int) -> np.ndarray:
    """Strata seen in fewer than ``k`` patients merged (into "other", then the commonest).

    Only for stratification: ``StratifiedGroupKFold`` cannot spread a class over ``k``
    folds with fewer than ``k`` members (typical for rare multilabel combinations).
    """
    per = pd.Series(patients).groupby(pd.Series(strata)).nunique()
    rare = set(per.index[per < k])
    if not rare:
        return strata
    merged = np.array(["__other__" if s in rare else s for s in strata], dtype=object)
    if pd.Series(patients[merged == "__other__"]).nunique() < k:
        common = per.drop(list(rare)).idxmax() if len(per) > len(rare) else "__other__"
        merged[merged == "__other__"] = common
    return merged


def _split_groups(patients: np.ndarray, paths: np.ndarray, by_content: bool) -> tuple[np.ndarray, list]:
    """Groups for the folds (patients, linked by identical content) and the file digests."""
    if not by_content:
        return patients, [None] * len(paths)
    digests = file_digests(paths)
    groups, merged = content_groups(patients, digests)
    if merged:
        per_group = pd.Series(patients).groupby(groups).nunique()
        log.info("split: %d patients share byte-identical image files with another patient; "
                 "linked into %d groups that stay in one part", merged, int((per_group > 1).sum()))
    return groups, digests


# --------------------------------------------------------------------------- making
def _fold_counts(parts: tuple[float, float, float]) -> tuple[int, list[int]]:
    """``k`` and the number of folds per part such that ``parts ≈ counts / k``."""
    if len(parts) != 3 or any(p < 0 for p in parts) or not math.isclose(sum(parts), 1.0, abs_tol=1e-6):
        raise SplitError(
            f"parts must be three non-negative fractions (train, val, test) summing to 1, got {parts}"
        )
    if parts[0] <= 0:
        raise SplitError(f"the train part must be > 0, got parts={parts}")
    k = math.lcm(*(Fraction(p).limit_denominator(MAX_FOLDS).denominator for p in parts))
    k = min(max(k, 2), MAX_FOLDS)
    counts = [round(p * k) for p in parts]
    for i, p in enumerate(parts):  # a requested part never vanishes by rounding
        counts[i] = max(counts[i], 1) if p > 0 else 0
    counts[0] = k - counts[1] - counts[2]
    if counts[0] < 1:
        raise SplitError(f"parts={parts} leave nothing to train on at a resolution of 1/{k}")
    return k, counts


def _patients(ds: CXRDataset) -> np.ndarray:
    """Patient ids as strings; a clear error for missing ids or duplicate paths."""
    meta = ds.meta
    missing = meta["patient"].isna()
    if missing.any():
        paths = meta.loc[missing, "path"].astype(str).tolist()
        raise DataError(
            f"{missing.sum()} rows of {ds.name!r} have no patient id (e.g. {paths[:_SHOW]})",
            hint="a patient-level split needs an id for every image; fix the loader or the metadata",
        )
    dup = meta["path"].duplicated(keep=False)
    if dup.any():
        raise DataError(
            f"{ds.name!r} lists {meta.loc[dup, 'path'].nunique()} image paths more than once "
            f"(e.g. {meta.loc[dup, 'path'].unique()[:_SHOW].tolist()})",
            hint="drop the duplicate rows before splitting; a split is keyed by path",
        )
    return meta["patient"].astype(str).to_numpy(dtype=object, copy=True)  # never a view of ds.meta


def _assign_folds(strata: np.ndarray, patients: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per row, from ``StratifiedGroupKFold`` over groups (``patients``)."""
    n_patients = len(set(patients))
    if n_patients < k:
        raise SplitError(
            f"only {n_patients} patients (or groups of patients sharing identical images): "
            f"cannot cut {k} patient-level folds. "
            "What to do: use fewer folds or coarser parts, or add data."
        )
    y = _merge_rare(strata, patients, k)
    fold = np.full(len(y), -1, dtype=np.int64)
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, test_idx) in enumerate(cv.split(np.zeros(len(y)), y, patients)):
        fold[test_idx] = i
    return fold


def fold_parts(df: pd.DataFrame, fold: int, val: bool = True) -> pd.DataFrame:
    """Run ``fold`` of a k-fold split: test = ``fold``, val = next fold, train = the rest."""
    if "fold" not in df.columns:
        raise SplitError("this split has no 'fold' column; make it with make_split(..., folds=k)")
    k = int(df["fold"].max()) + 1
    if not 0 <= fold < k:
        raise SplitError(f"fold must be in 0..{k - 1}, got {fold}")
    out = df.copy()
    out["part"] = "train"
    if val and k > 2:
        out.loc[out["fold"] == (fold + 1) % k, "part"] = "val"
    out.loc[out["fold"] == fold, "part"] = "test"
    return out


def make_split(ds: CXRDataset, task: Task, parts: tuple[float, float, float] = (0.7, 0.1, 0.2),
               seed: int = 0, folds: int | None = None, by_content: bool = True) -> pd.DataFrame:
    """A patient-level split of ``ds`` stratified by ``task``; one row per ds row, same order.

    Columns ``path, patient, part, stratum`` (+ ``fold`` when ``folds`` is given: see the
    module docstring). A part of 0 is allowed (e.g. ``(0.8, 0.0, 0.2)``). Same ``seed``,
    same split. ``by_content``: keep patients that share a byte-identical file together
    (module docstring); off only for data known to be free of duplicates.
    """
    patients = _patients(ds)
    strata = row_strata(ds, task)
    paths = ds.meta["path"].astype(str).to_numpy(dtype=object, copy=True)  # never a view of ds.meta
    groups, digests = _split_groups(patients, paths, by_content)
    df = pd.DataFrame({"path": paths, "patient": patients, "part": "train", "stratum": strata})
    _fold_counts(parts)  # validates parts
    if folds is not None:
        if folds < 2:
            raise SplitError(f"folds must be >= 2, got {folds}")
        df["fold"] = _assign_folds(strata, groups, folds, seed)
        df = fold_parts(df, 0, val=parts[1] > 0)
    else:
        official = official_parts(ds, groups)
        df.loc[official == "test", "part"] = "test"
        df.loc[official == "val", "part"] = "val"
        train_only = (parts[0], parts[1], 0.0)  # official train rows: train or val, never test
        for rows, wanted in ((official == "", parts), (official == "train", train_only)):
            if rows.any():
                df.loc[rows, "part"] = _cut(strata[rows], groups[rows], wanted, seed)
    check_patient_disjoint(df)
    check_content_disjoint(df, digests=digests)
    return df


def _cut(strata: np.ndarray, groups: np.ndarray, parts: tuple[float, float, float],
         seed: int) -> np.ndarray:
    """The part of each row: whole folds of groups to test, val and train (``parts`` valid)."""
    if parts[1] == parts[2] == 0:
        return np.full(len(strata), "train", dtype=object)
    k, counts = _fold_counts(tuple(p / sum(parts) for p in parts))  # type: ignore[arg-type]
    fold = _assign_folds(strata, groups, k, seed)
    out = np.full(len(strata), "train", dtype=object)
    out[fold < counts[2]] = "test"  # folds [0, n_test) → test, then val
    out[(fold >= counts[2]) & (fold < counts[2] + counts[1])] = "val"
    return out


def official_parts(ds: CXRDataset, groups: np.ndarray) -> np.ndarray:
    """Per row, the official part of its group (test, val, train, "": none; the strongest)."""
    if "official_part" not in ds.meta.columns:
        return np.full(len(ds), "", dtype=object)
    given = ds.meta["official_part"].astype("string").str.strip().str.lower().fillna("")
    rank = {"": 0, "train": 1, "val": 2, "test": 3}
    if not set(given) <= set(rank):
        raise SplitError(f"official_part values {sorted(set(given) - set(rank))} are not one of "
                         f"{list(rank)[1:]}. What to do: fix the loader that set them")
    own = given.map(rank).to_numpy()
    strongest = pd.Series(own).groupby(groups).transform("max").to_numpy()
    moved = pd.Series(groups[strongest != own]).nunique()
    if moved:
        log.info("split: %d patients (or groups sharing an image) had rows in two official "
                 "parts; all their rows went to the stronger part (test, then val)", moved)
    return np.array(list(rank), dtype=object)[strongest]


# --------------------------------------------------------------------------- checks
def check_patient_disjoint(df: pd.DataFrame) -> None:
    """Raise :class:`SplitError` when a patient appears in two parts (or two folds)."""
    for col in ("part", "fold"):
        if col not in df.columns:
            continue
        n = df.groupby(df["patient"].astype(str))[col].nunique()
        bad = n.index[n > 1].tolist()
        if bad:
            raise SplitError(
                f"{len(bad)} patients appear in more than one {col} (e.g. {bad[:_SHOW]}): "
                f"their images would leak between training and evaluation. What to do: {_RESPLIT_HINT}."
            )


def check_content_disjoint(df: pd.DataFrame, ds: CXRDataset | None = None,
                           digests: Sequence[str | None] | None = None,
                           on_leak: Literal["raise", "warn"] = "raise") -> int:
    """Raise (or warn) when byte-identical files sit in two parts (or two folds).

    ``digests`` (sha1 per row of ``df``) are computed from the files when not given; rows
    whose file cannot be read are not compared. Returns the number of leaking contents.
    """
    if on_leak not in ("raise", "warn"):
        raise ValueError(f"on_leak must be 'raise' or 'warn', got {on_leak!r}")
    digests = file_digests(df["path"].astype(str).tolist()) if digests is None else list(digests)
    frame = df.assign(_digest=digests).dropna(subset=["_digest"])
    name = f" of {ds.name!r}" if ds is not None else ""
    for col in ("part", "fold"):
        if col not in frame.columns:
            continue
        n = frame.groupby("_digest")[col].nunique()
        bad = n.index[n > 1]
        if len(bad) == 0:
            continue
        rows = frame[frame["_digest"].isin(bad[:_SHOW])]
        examples = [" = ".join(f"{p} [{v}]" for p, v in zip(g["path"], g[col]))
                    for _, g in rows.groupby("_digest")]
        msg = (f"{len(bad)} byte-identical images{name} sit in more than one {col} (e.g. "
               f"{examples[:3]}): the same image would be trained on and tested on. "
               f"What to do: {_RESPLIT_HINT} (make_split keeps identical files together).")
        if on_leak == "raise":
            raise SplitError(msg)
        warnings.warn(msg, stacklevel=2)
        return len(bad)
    return 0


# --------------------------------------------------------------------------- files
def save_split(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV atomically (:mod:`training.io`: temp file + ``os.replace``, the
    mode ``open()`` would give); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in (*COLUMNS, "fold") if c in df.columns]
    with io.atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        df[cols].to_csv(fh, index=False, lineterminator="\n")
    return path


def split_hash(path: str | Path) -> str:
    """sha256 hex digest of the split file's bytes (recorded in the model card)."""
    return io.file_sha256(path)


def _read_split(path: Path) -> pd.DataFrame:
    """The split CSV with its columns and part values checked."""
    if not path.is_file():
        raise DataError("split file not found", path=path, hint=_RESPLIT_HINT)
    try:
        df = pd.read_csv(path, dtype={"path": str, "patient": str, "part": str, "stratum": str},
                         keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"split file is not a readable CSV ({e})", path=path, hint=_RESPLIT_HINT) from e
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SplitError(f"{path}: split file lacks columns {missing}. What to do: {_RESPLIT_HINT}.")
    bad = sorted(set(df["part"]) - set(PARTS))
    if bad:
        raise SplitError(f"{path}: unknown part values {bad[:_SHOW]} (expected {list(PARTS)}).")
    dup = df["path"].duplicated()
    if dup.any():
        examples = df.loc[dup, "path"].tolist()[:_SHOW]
        raise SplitError(f"{path}: {dup.sum()} image paths listed twice (e.g. {examples}). What to do: {_RESPLIT_HINT}.")
    return df


def load_split(path: str | Path, ds: CXRDataset,
               content: Literal["warn", "raise", "off"] = "warn") -> pd.DataFrame:
    """The split at ``path`` aligned to ``ds`` rows (same order, matched by ``path``).

    Raises :class:`SplitError` when patients overlap parts, when rows of ``ds`` are not in
    the split, or when a path's patient id differs from the dataset's. Split rows that
    ``ds`` lacks are ignored with a warning (see the module docstring). ``content``: what to
    do when byte-identical files sit in two parts (splits made before content grouping may
    have them): warn (default), raise, or skip the check (it reads every file once).
    """
    path = Path(path)
    df = _read_split(path)
    check_patient_disjoint(df)
    ds_paths = ds.meta["path"].astype(str)
    indexed = df.set_index("path")
    absent = ~ds_paths.isin(indexed.index)
    if absent.any():
        raise SplitError(
            f"{path}: {absent.sum()} of {len(ds)} images of {ds.name!r} are not in the split "
            f"(e.g. {ds_paths[absent].tolist()[:_SHOW]}); the split was made for other data. "
            f"What to do: {_RESPLIT_HINT}."
        )
    extra = len(df) - len(ds_paths)
    if extra > 0:
        warnings.warn(f"{path}: {extra} split rows are not in {ds.name!r}; ignoring them", stacklevel=2)
    out = indexed.loc[ds_paths.to_numpy()].reset_index()
    ds_patients = _patients(ds)
    differ = out["patient"].to_numpy() != ds_patients
    if differ.any():
        ex = [f"{p}: {a!r} vs {b!r}" for p, a, b in
              zip(out["path"][differ], out["patient"][differ], ds_patients[differ])][:3]
        raise SplitError(
            f"{path}: {differ.sum()} images have another patient id in the split than in "
            f"{ds.name!r} (e.g. {ex}); patient-disjointness cannot be trusted. What to do: {_RESPLIT_HINT}."
        )
    if content != "off":
        check_content_disjoint(out, ds, on_leak=content)
    return out


# --------------------------------------------------------------------------- counts
def split_counts(df: pd.DataFrame, targets: np.ndarray, classes: list[str], by: str = "part") -> dict:
    """Per part (or fold): images, patients, unlabelled rows, positives per class.

    ``targets`` is the ``(N, C)`` task encoding aligned with ``df`` rows (NaN = unknown).
    Every part of :data:`PARTS` is listed (zeros when empty; ``site`` only when present) when ``by="part"``.
    """
    targets = np.asarray(targets, dtype=np.float32)
    if targets.shape != (len(df), len(classes)):
        raise ValueError(f"targets must be ({len(df)}, {len(classes)}), got {targets.shape}")
    present = set(df[by])
    keys = [p for p in PARTS if p != "site" or p in present] if by == "part" else sorted(present)
    out: dict = {}
    for key in keys:
        mask = (df[by] == key).to_numpy()
        t = targets[mask]
        out[str(key)] = {
            "images": int(mask.sum()),
            "patients": int(df.loc[mask, "patient"].nunique()),
            "unlabelled": int(np.isnan(t).all(axis=1).sum()),
            "classes": {c: int(np.nansum(t[:, j] == 1)) for j, c in enumerate(classes)},
        }
    return out

"""What an evaluation runs on: the held-back images of a model's split (or external data),
their task targets and patients, and the check that none of them was seen in training.

``load_eval_set`` says which part of which split is evaluated and whether the test set is
internal or external; ``check_overlap`` matches the evaluated images against the model's own
split by path, patient id and file content (SHA-256).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.cache import ImageCache, default_cache_dir
from training.data.formats import load_datasets
from training.data.site_split import SITE_PART
from training.data.spec import DataSpec
from training.data.splits import load_split, split_hash
from training.data.tasks import get_task
from training.errors import ModelCardError, SplitError
from training.models.card import ModelCard, file_sha256

log = logging.getLogger(__name__)
_SHOW = 5


# ------------------------------------------------------------------ the data to evaluate on

@dataclass
class EvalSet:
    """The rows to evaluate, their targets in card output order, and how they were chosen."""

    ds: Any  # CXRDataset
    targets: np.ndarray
    test_set: str  # "internal" | "external" | "site-held-out"
    split: str | None
    part: str | None
    full: Any = None  # the whole loaded dataset (to find validation rows)
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return self.ds.meta["path"].astype(str).tolist()

    @property
    def groups(self) -> np.ndarray:
        """Patient ids (a row without one is its own patient)."""
        return patient_ids(self.ds.meta)


def patient_ids(meta: pd.DataFrame) -> np.ndarray:
    """Patient id per row of a dataset's ``meta`` (a row without one is its own patient)."""
    patient = meta["patient"]
    return np.where(patient.isna(), meta["path"].astype(str), patient.astype(str)).astype(object)


def task_targets(ds: Any, card: ModelCard) -> np.ndarray:
    """The task encoding of ``ds`` in the card's output order (NaN where the data lack one)."""
    task = get_task(card.task)
    targets, classes = task.encode(ds), task.classes(ds)
    if task.kind == "single" and list(classes) != list(card.outputs):
        raise ModelCardError(f"model {card.name!r}: card outputs {card.outputs} differ "
                             f"from task {card.task!r} classes {classes}. What to do: fix the card.")
    out = np.full((len(ds), len(card.outputs)), np.nan, dtype=np.float32)
    for j, name in enumerate(card.outputs):
        if name in classes:
            out[:, j] = targets[:, classes.index(name)]
    return out


def _resolve(file: str | None, model_dir: Path) -> Path | None:
    """A card's split path: as written, or relative to the model folder."""
    if not file:
        return None
    for candidate in (Path(file), model_dir / file):
        if candidate.is_file():
            return candidate
    return None


def load_eval_set(card: ModelCard, model_dir: Path, data: DataSpec, split: str | None = None,
                  part: str = "test", external: bool = False) -> EvalSet:
    """Load ``data`` and choose the rows: a split part (internal) or everything (external).

    Views/modalities left to default are the ones the model was trained with (its card).
    """
    ds = load_datasets(data.for_model(DataSpec.from_dict(card.training.config)))
    sources = set(ds.meta["source"].astype(str))
    trained_on = set(card.data.sources)
    new_source = bool(trained_on) and not (sources & trained_on)
    notes = [f"{len(ds.skipped)} rows of the data could not be loaded (listed in metrics.json)"] \
        if ds.skipped else []
    if external or (split is None and new_source):
        why = "requested" if external else f"sources {sorted(sources)} not used in training {sorted(trained_on)}"
        return EvalSet(ds, task_targets(ds, card), "external", None, None, ds, notes + [f"external test ({why})"])
    split_path = Path(split) if split else _resolve(card.split.file, model_dir)
    if split_path is None:
        raise SplitError(f"{model_dir}: no split given and the model's split file "
                         f"{card.split.name!r} is missing. What to do: pass a "
                         "split CSV, or mark the data as an external test set.")
    parts = load_split(split_path, ds)["part"].to_numpy()
    mask = parts == part
    if not mask.any():
        raise SplitError(f"{split_path}: part {part!r} has no images of {ds.name!r} "
                         f"(parts present: {sorted(set(parts))}).")
    sub = ds.subset(mask)
    # whole sites never trained on (site_split): not an internal test, though of the same sources
    test_set = "external" if new_source else ("site-held-out" if part == SITE_PART else "internal")
    return EvalSet(sub, task_targets(sub, card), test_set, str(split_path), part, ds, notes)


# ------------------------------------------------------------------ overlap with training

def training_split(card: ModelCard, model_dir: Path) -> pd.DataFrame | None:
    """The model's own split (path, patient, part), checked against the card's hash; or None."""
    info = card.split
    path = _resolve(info.file, model_dir)
    if path is None:
        return None
    if info.sha256 and split_hash(path) != info.sha256:
        raise ModelCardError(f"{path}: the split file changed since the model was trained (SHA-256 "
                             f"differs from the card). What to do: restore the original split file; "
                             "without it the test set cannot be checked against the training data.")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.attrs["file"] = str(path)
    return df


def _sha256_many(paths: Sequence[str]) -> dict[str, str]:

    out = {}
    for p in paths:
        try:
            out[p] = file_sha256(p)
        except OSError:
            pass  # an unreadable file cannot be compared by content; it is reported elsewhere
    return out


def check_overlap(paths: Sequence[str], patients: Sequence[str], seen: pd.DataFrame | None,
                  allow_overlap: bool = False) -> dict[str, Any]:
    """Test images that the model saw in train/val: by path, patient id, or file content.

    Refuses (:class:`SplitError`) when any is found, unless ``allow_overlap``.
    """
    if seen is None:
        log.warning("the model's training split is unavailable: test images cannot be checked "
                    "against the training images")
        return {"checked": False, "reason": "the model's training split file is unavailable",
                "n_images": None, "allowed": allow_overlap}
    used = seen[seen["part"].isin(["train", "val"])]
    train_paths = set(used["path"]) | {os.path.realpath(p) for p in used["path"]}
    by_path = {p for p in paths if p in train_paths or os.path.realpath(p) in train_paths}
    train_patients = set(used["patient"])
    by_patient = {p for p, g in zip(paths, patients) if g in train_patients}
    train_hashes = set(_sha256_many(list(used["path"])).values())
    by_content = {p for p, h in _sha256_many(list(paths)).items() if h in train_hashes}
    bad = sorted(by_path | by_patient | by_content)
    report = {"checked": True, "split": seen.attrs.get("file"), "n_images": len(bad),
              "by_path": len(by_path), "by_patient": len(by_patient), "by_content": len(by_content),
              "examples": bad[:_SHOW], "allowed": allow_overlap}
    if bad and not allow_overlap:
        raise SplitError(
            f"{len(bad)} of {len(paths)} test images were used to train or validate the model "
            f"({len(by_path)} by path, {len(by_patient)} by patient, {len(by_content)} by identical "
            f"file content; e.g. {bad[:_SHOW]}). What to do: evaluate on the held-out test part or "
            "on external data; allow_overlap=True evaluates anyway and flags the report.")
    if bad:
        log.warning("EVALUATING ON %d IMAGES THE MODEL TRAINED/VALIDATED ON (allow_overlap)", len(bad))
    return report


def image_cache(cache_dir: str | Path | None = None) -> Any:
    """The preprocessed-image cache evaluation reads through (the trainer's by default)."""
    return ImageCache(cache_dir or default_cache_dir())

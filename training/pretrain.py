"""CXR-domain pretraining: the offline substitute for ImageNet weights.

``pretrain`` trains a backbone from scratch, supervised on every label the local data sets
carry (task ``multilabel-within-source``: one sigmoid per pathology, NaN where unknown, and
each label kept only within the sources that contrast it, so that combining Kermany with
ieee8023 does not teach "which hospital"). The result is an ordinary cxrlab model folder
whose card says what it was pretrained on; ``train --weights THAT_FOLDER --mode finetune``
(or ``frozen``) then starts the real task from its backbone.

Pretraining must never see the patients a later model is tested on: ``exclude`` takes split
files and drops every image whose path, patient or bytes are in their ``val``/``test`` parts
(val too: the downstream model selects its epoch and thresholds there).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.config import DataOptions, TrainConfig, opt
from training.errors import CXRError
from training.data.formats import load_datasets
from training.data.content import file_digests
from training.data.splits import split_hash
from training.engine.fit import train
from training.models.card import update_card

log = logging.getLogger(__name__)

PRETRAIN_TASK = "multilabel-within-source"


@dataclass
class PretrainConfig(DataOptions):
    """A pretraining run: the data, what to keep out, and the training budget."""

    exclude: list[str] = opt(factory=list, help="split CSV whose val/test images (by path, "
                             "patient and content) are kept out of pretraining (repeatable)",
                             metavar="SPLIT", repeat=True)
    arch: str = opt("resnet50", "backbone")
    img_size: int = opt(96, "input size in px (use the size the downstream models will use)")
    epochs: int = opt(6, "epochs")
    batch_size: int = opt(32, "batch size")
    lr: float | None = opt(None, "peak learning rate (default: the backbone's from-scratch recipe)")
    max_images: int | None = opt(None, "cap on training images (deterministic subsample)")
    seed: int = opt(0, "seed")
    out: str = opt("models/cxr-pretrained", "output folder (a cxrlab model folder)")
    cache_dir: str | None = opt(None, "preprocessed-image cache (default ~/.cache/cxrlab)")
    val_fraction: float = opt(0.1, "fraction of patients held out for validation (early "
                              "stopping, the BatchNorm check)")

    def __post_init__(self) -> None:
        super().__post_init__()
        value = self.exclude
        self.exclude = [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise CXRError(f"pretrain: val_fraction must be in (0, 1), got {self.val_fraction}")

    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` this pretraining runs (from scratch, within-source labels)."""
        return TrainConfig(**self.data_spec.to_dict(), task=PRETRAIN_TASK, arch=self.arch,
                           mode="scratch", weights=None, img_size=self.img_size, epochs=self.epochs,
                           batch_size=self.batch_size, lr=self.lr, max_images=self.max_images,
                           seed=self.seed, out=self.out, cache_dir=self.cache_dir,
                           parts=(1.0 - self.val_fraction, self.val_fraction, 0.0))


def excluded_rows(ds, splits: Sequence[str | Path]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Boolean mask of ``ds`` rows to keep out, and what each split excluded (for the card).

    A row is out when its path, its patient, or its file's bytes (sha1) appear in the
    ``val`` or ``test`` part of any of ``splits``.
    """
    out = np.zeros(len(ds), dtype=bool)
    facts = []
    paths = ds.meta["path"].astype(str).to_numpy()
    patients = ds.meta["patient"].astype(str).to_numpy()
    digests = None
    for split in splits:
        df = pd.read_csv(split, dtype=str, keep_default_na=False)
        if not {"path", "patient", "part"} <= set(df.columns):
            raise CXRError(f"{split}: not a split file (needs path, patient, part columns). "
                           "What to do: give a split made by `python -m training split`.")
        held = df[df["part"] != "train"]  # val, test and held-out sites
        if digests is None:
            digests = np.array(file_digests(paths), dtype=object)
        held_digests = {d for d in file_digests(held["path"].tolist()) if d}
        hit = (np.isin(paths, held["path"].to_numpy()) | np.isin(patients, held["patient"].to_numpy())
               | np.isin(digests, list(held_digests)))
        facts.append({"split": str(split), "sha256": split_hash(split), "held_out_images": int(len(held)),
                      "rows_excluded": int((hit & ~out).sum())})
        out |= hit
    return out, facts


def pretrain(cfg: PretrainConfig, verbose: int = 1) -> Path:
    """Run the pretraining; return the model folder (its card gains a ``pretraining`` entry)."""
    if not cfg.data:
        raise CXRError("pretrain: no data given. What to do: pass --data (one or more dataset folders)")
    tcfg = cfg.train_config()
    ds = load_datasets(tcfg.data_spec)
    drop, facts = excluded_rows(ds, cfg.exclude)
    if drop.any():
        log.info("pretraining: %d of %d images kept out (val/test of %s)", drop.sum(), len(ds),
                 ", ".join(cfg.exclude))
    kept = ds.subset(~drop)
    if len(kept) == 0:
        raise CXRError("pretrain: every image is excluded by --exclude. What to do: check the splits.")
    out = train(tcfg, ds=kept, verbose=verbose)
    sources = sorted(kept.meta["source"].astype(str).unique().tolist())
    update_card(out, pretraining={"data": list(cfg.data), "sources": sources, "images": int(len(kept)),
                                  "task": PRETRAIN_TASK, "excluded": facts,
                                  "config": dataclasses.asdict(cfg)})
    return out

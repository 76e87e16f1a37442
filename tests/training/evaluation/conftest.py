"""Tiny data sets (Kermany-named PNG folders), a saved split and tiny saved models.

The images carry a class signal that survives preprocessing (the share of bright pixels),
and the tiny models read it through global average pooling, so metrics are meaningful.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.special import expit

from tests.helpers.tiny import tiny_card, tiny_model

SIZE = 16


#: Image side: the smallest the input gate accepts (smaller images are refused as too small).
SIDE = 128


def write_cxr(path: Path, bright_share: float, seed: int) -> Path:
    """A grayscale PNG whose top ``bright_share`` of rows is bright (plus noise): 32x32 noise
    blocks upscaled to :data:`SIDE`, so models at 16 px see what they saw at 32 px."""
    rng = np.random.default_rng(seed)
    img = rng.random((32, 32)) * 60
    img[: int(round(bright_share * 32))] += 150
    img = np.kron(img, np.ones((SIDE // 32, SIDE // 32)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.clip(0, 255).astype(np.uint8), "L").save(path)
    return path


def make_kermany(root: Path, n_patients: int = 24, seed: int = 0) -> Path:
    """``root/NORMAL`` and ``root/PNEUMONIA`` with 1-3 images per patient (Kermany names)."""
    rng = np.random.default_rng(seed)
    k = 0
    for i in range(n_patients):
        sick = i % 2 == 1
        share = rng.uniform(0.35, 0.75) if sick else rng.uniform(0.1, 0.5)  # overlapping classes
        for j in range(1 + i % 3):
            k += 1
            s = float(np.clip(share + rng.normal(0, 0.05), 0.05, 0.95))
            name = (f"PNEUMONIA/person{i}_bacteria_{k}.png" if sick
                    else f"NORMAL/IM-{i:04d}-{j + 1:04d}.png")
            write_cxr(root / name, s, seed * 1000 + k)
    return root


def save_tiny(root: Path, name: str, kind: str, outputs: list[str], task: str, split: Path,
              sources: list[str], data: list[str] | None = None, arch: str = "tiny",
              gain: float = 4.0) -> Path:
    """A brightness-reading tiny model (``gain`` < 0: inverted) with a card naming ``split``."""
    from training.data.splits import split_hash
    from training.models.card import save_model

    card = tiny_card(name, kind, outputs, arch=arch, size=SIZE, task=task,
                     training={"data": data or [], "seconds_per_epoch": 1.5},
                     split={"file": str(split), "sha256": split_hash(split)},
                     data={"sources": sources}, threshold_method="youden on validation")
    return save_model(tiny_model(len(outputs), kind, size=SIZE, gain=gain), card, root / name)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """Kermany-like data, its split, a single-label and a multilabel model, external data."""
    from training.data.formats import load_datasets
    from training.data.spec import DataSpec
    from training.data.splits import make_split, save_split
    from training.data.tasks import get_task

    root = tmp_path_factory.mktemp("eval")
    data = make_kermany(root / "kermany", 30)
    ds = load_datasets(DataSpec(str(data)))
    split = save_split(make_split(ds, get_task("pneumonia"), parts=(0.5, 0.25, 0.25), seed=0),
                       root / "split.csv")
    models = root / "models"
    single = save_tiny(models, "single", "single", ["Normal", "Pneumonia"], "pneumonia", split,
                       ["kermany"], [str(data)])
    multi = save_tiny(models, "multi", "multilabel", ["No Finding", "Pneumonia"], "multilabel",
                      split, ["kermany"], [str(data)], arch="tiny2")
    external = root / "hospitalx"
    rng = np.random.default_rng(7)
    for i in range(12):
        sick = i % 2 == 1
        share = rng.uniform(0.4, 0.8) if sick else rng.uniform(0.1, 0.45)
        write_cxr(external / ("PNEUMONIA" if sick else "NORMAL") / f"case{i}.png", share, 500 + i)
    return {"root": root, "data": str(data), "split": split, "single": single, "multi": multi,
            "external": str(external), "ds": ds}


def overconfident_sigmoids(n: int, seed: int, prevalence_shift: float = 0.0):
    """Labels drawn from sigmoid(z); the model says sigmoid(3 z): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(prevalence_shift, 1.5, size=(n, 2))
    y = (rng.random((n, 2)) < expit(z)).astype(float)
    return y, expit(3 * z)

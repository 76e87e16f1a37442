"""Leave one collection out on two tiny generated CSV collections that annotate different
pathologies: real training per fold, external evaluation, the table's statuses."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers.images import stripes
from training.config import TrainConfig
from training.data.spec import DataSpec
from training.errors import DataError
from training.evaluation.cross_collection import (Collection, _cell, cross_collection, find_collections,
                                                  recipe, trained_with)


def write_collection(root, source: str, n: int, seed: int, covid: bool):
    """``root/<source>.csv``: Pneumonia = vertical stripes (+ COVID-19 for half of them when
    ``covid``: the other collection does not annotate it), one image per patient."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sick = i % 2 == 1
        path = root / source / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(stripes(sick, seed * 1000 + i, size=128)).save(path)
        row = {"path": str(path), "patient": f"p{i}", "source": source, "Pneumonia": int(sick)}
        if covid:
            row["COVID-19"] = int(sick and rng.random() < 0.5)
        rows.append(row)
    csv = root / f"{source}.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return str(csv)


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    root = tmp_path_factory.mktemp("collections")
    return [write_collection(root, "alpha", 24, 1, covid=True),
            write_collection(root, "beta", 24, 2, covid=False)]


def test_leave_one_collection_out_end_to_end(collections, tmp_path):
    spec = DataSpec(collections)
    cfg = TrainConfig(data=collections, task="multilabel", arch="vgg16", weights=None, img_size=32,
                      parts=(0.8, 0.2, 0.0), mode="frozen", augment=False, epochs=2, batch_size=8,
                      lr=1e-2, warmup_epochs=0, patience=0, cache_dir=str(tmp_path / "cache"),
                      calibration="none", precise_bn=False)
    result = cross_collection(spec, cfg, tmp_path / "out", n_boot=50)

    assert set(result["folds"]) == {"alpha", "beta"}
    alpha, beta = result["folds"]["alpha"], result["folds"]["beta"]
    assert alpha["train_on"] == ["beta"] and beta["train_on"] == ["alpha"]
    assert alpha["test_set"] == beta["test_set"] == "external"
    assert alpha["n_test"] == beta["n_test"] == 24
    # each model trained on the other collection only
    card = json.loads((tmp_path / "out" / "without-alpha" / "model" / "card.json").read_text())
    assert card["training"]["data"] == [collections[1]] and card["data"]["sources"] == ["beta"]
    for fold in (alpha, beta):
        cell = fold["per_pathology"]["Pneumonia"]
        assert cell["status"] == "scored" and (cell["positives"], cell["negatives"]) == (12, 12)
        auc = cell["roc_auc"]
        assert set(auc) >= {"value", "low", "high"} and auc["low"] <= auc["value"] <= auc["high"]
    # COVID-19: annotated by alpha only, so never scored (and never read as "negative")
    assert alpha["per_pathology"]["COVID-19"]["status"] == "not annotated (training)"
    assert beta["per_pathology"]["COVID-19"]["status"] == "not annotated (held out)"
    assert beta["per_pathology"]["COVID-19"]["roc_auc"] is None

    out = tmp_path / "out"
    assert json.loads((out / "cross_collection.json").read_text())["pathologies"] == result["pathologies"]
    table = pd.read_csv(out / "cross_collection.csv")
    assert len(table) == 2 * len(result["pathologies"])
    assert set(table["status"]) >= {"scored", "not annotated (training)", "not annotated (held out)"}
    md = (out / "cross_collection.md").read_text()
    assert "held out: alpha (trained on beta" in md and "| COVID-19 | not annotated (training) |" in md
    assert f"{alpha['per_pathology']['Pneumonia']['roc_auc']['value']:.3f}" in md

    # a rerun (e.g. after an interruption) evaluates the saved models without training again
    again = cross_collection(spec, cfg, out, n_boot=50, trainer=lambda c: pytest.fail("retrained"))
    assert again["folds"]["alpha"]["per_pathology"] == alpha["per_pathology"]
    changed = dataclasses.replace(cfg, epochs=3)
    assert not trained_with(out / "without-alpha" / "model", changed)


def test_an_entry_with_two_sources_is_refused(tmp_path):
    csv = write_collection(tmp_path, "mixed", 4, 3, covid=False)
    df = pd.read_csv(csv)
    df.loc[:1, "source"] = "other"
    df.to_csv(csv, index=False)
    with pytest.raises(DataError, match="one collection per entry"):
        find_collections(DataSpec([csv]))


def test_one_collection_is_refused(collections):
    with pytest.raises(DataError, match="at least 2 groups"):
        cross_collection(DataSpec(collections[:1]), TrainConfig(data=collections[:1]), "unused",
                         trainer=lambda cfg: pytest.fail("nothing should train"))


def _col(name, pos, neg):
    return Collection(name, (name,), 10, 10, pos, neg)


@pytest.mark.parametrize("train_pos, held_pos, held_neg, auc, status", [
    (0, 3, 3, {"value": 0.7, "low": 0.5, "high": 0.9}, "no training positives"),
    (2, 3, 0, {"value": None, "low": None, "high": None}, "one class in test"),
    (2, 3, 3, {"value": 0.7, "low": 0.5, "high": 0.9}, "scored"),
])
def test_cell_status(train_pos, held_pos, held_neg, auc, status):
    trained = [_col("a", {"Edema": train_pos}, {"Edema": 5})]
    held = _col("b", {"Edema": held_pos}, {"Edema": held_neg})
    cell = _cell("Edema", trained, held, {"Edema": {"roc_auc": auc}})
    assert cell["status"] == status
    assert (cell["roc_auc"] is not None) == (status == "scored")


def test_recipe_yaml_then_flags(tmp_path):
    yml = tmp_path / "recipe.yaml"
    yml.write_text("epochs: 3\narch: vgg16\nmode: scratch\n")
    cfg = recipe(yml, DataSpec(["a.csv", "b.csv"], on_error="skip"), arch="resnet50", epochs=None)
    assert (cfg.epochs, cfg.arch, cfg.mode) == (3, "resnet50", "scratch")
    assert cfg.parts == (0.8, 0.2, 0.0) and cfg.data == ["a.csv", "b.csv"] and cfg.on_error == "skip"

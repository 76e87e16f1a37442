"""Leave one site out on a tiny generated CSV with a free-text location column: site
normalisation, which sites get a fold, real training per fold, per-site and pooled AUCs with
CIs, the three output files, and the card evidence written only for the same recipe."""
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
from training.evaluation.cross_site import (count_sites, cross_site, record_evidence, row_sites,
                                            scored_output, site_of, site_stratified_auc)
from training.evaluation.estimate import Estimate
from training.evaluation.evidence import SUPPORTED, TRAINING_ONLY, EvidenceKind
from training.models.card import read_card

#: (location, patients): two sites large enough to hold out, one too small, and rows without one.
LOCATIONS = [("Milan, Italy", 12), ("Rome, Italy", 4), ("Berlin, Germany", 14), ("Porto, Portugal", 4),
             ("?", 3), (None, 3)]


@pytest.mark.parametrize(("value", "site"), [
    ("Milan, Italy", "Italy"), ("Wuhan, Hubei Province, China", "China"), ("Italy", "Italy"),
    ("Seattle, USA", "United States"), ("London, England", "United Kingdom"), (" UK ", "United Kingdom"),
    ("?", None), ("", None), (None, None), (float("nan"), None), (pd.NA, None)])
def test_site_of_is_the_country(value, site):
    assert site_of(value) == site


def test_sites_follow_content_groups_and_counts(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"same"), b.write_bytes(b"same")  # p2's file is p1's: one group, one site
    c = tmp_path / "c.png"
    c.write_bytes(b"other")
    site = row_sites(["Italy", None, "Spain"], ["p1", "p2", "p3"], [str(a), str(b), str(c)])
    assert list(site) == ["Italy", "Italy", "Spain"]
    y = np.array([1.0, np.nan, 0.0])
    sites = count_sites(site, np.array(["p1", "p2", "p3"]), y, min_patients=1)
    assert [(s.name, s.positives, s.negatives, s.held_out) for s in sites] == [
        ("Italy", 1, 0, False), ("Spain", 0, 1, False)]  # NaN is unknown, never negative


def test_scored_output_and_stratified_ci():
    assert scored_output(["COVID-19 negative", "COVID-19 positive"], None) == "COVID-19 positive"
    assert scored_output(["No Finding", "COVID-19", "Pneumonia"], None) == "COVID-19"
    assert scored_output(["Normal", "Pneumonia"], None) == "Pneumonia"
    with pytest.raises(DataError, match="not an output"):
        scored_output(["Normal", "Pneumonia"], "COVID-19")
    rng = np.random.default_rng(0)
    y = np.tile([0.0, 1.0], 40)
    p = y * 0.3 + rng.random(80) * 0.7
    est = site_stratified_auc(y, p, np.arange(80).astype(str), np.repeat(["a", "b"], 40), n_boot=200)
    assert est.low < est.value < est.high and est.n_used == 200
    assert site_stratified_auc(np.zeros(4), np.ones(4), np.arange(4).astype(str), np.array(["a"] * 4),
                               n_boot=10) == Estimate(None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One CSV: Pneumonia = vertical stripes, alternating by patient, one image each."""
    root = tmp_path_factory.mktemp("sites")
    rows, i = [], 0
    for location, n in LOCATIONS:
        for _ in range(n):
            sick = i % 2 == 1
            path = root / "img" / f"img{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(stripes(sick, i, size=64)).save(path)
            rows.append({"path": str(path), "patient": f"p{i}", "Pneumonia": int(sick), "No Finding": int(not sick),
                         "location": location})
            i += 1
    csv = root / "sites.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return str(csv)


def test_leave_one_site_out_end_to_end(data, tmp_path):
    cfg = TrainConfig(data=[data], task="pneumonia", arch="vgg16", weights=None, img_size=32,
                      parts=(0.8, 0.2, 0.0), mode="frozen", augment=False, epochs=2, batch_size=8,
                      lr=1e-2, warmup_epochs=0, patience=0, cache_dir=str(tmp_path / "cache"),
                      calibration="none", precise_bn=False)
    out = tmp_path / "out"
    result = cross_site(DataSpec([data]), cfg, out, min_site_patients=5, n_boot=50)

    assert set(result["folds"]) == {"Italy", "Germany"}  # Portugal: 2 + 2 patients, too few
    assert result["sites"]["Italy"]["n_patients"] == 16 and result["sites"]["Portugal"]["held_out"] is False
    assert result["always_in_training"] == {"no_site_images": 6, "small_sites": ["Portugal"]}
    italy = result["folds"]["Italy"]
    assert (italy["n_test"], italy["n_train_val"]) == (16, 24)
    split = pd.read_csv(out / "without-italy" / "split.csv")
    assert (split["part"] == "test").sum() == 16 and set(split["part"]) == {"train", "val", "test"}
    for fold in result["folds"].values():
        auc = fold["per_output"]["Pneumonia"]["roc_auc"]
        assert auc["low"] <= auc["value"] <= auc["high"]
    pooled = result["pooled"]["Pneumonia"]
    assert (pooled["n_images"], pooled["n_patients"], pooled["n_sites"]) == (30, 30, 2)
    assert pooled["roc_auc"]["low"] <= pooled["roc_auc"]["value"] <= pooled["roc_auc"]["high"]

    assert json.loads((out / "cross_site.json").read_text())["pooled"].keys() == {"Normal", "Pneumonia"}
    table = pd.read_csv(out / "cross_site.csv")
    assert len(table) == 3 * 2 and set(table["held_out"]) == {"Italy", "Germany", "pooled"}
    md = (out / "cross_site.md").read_text()
    assert "| Pneumonia |" in md and "small sites: Portugal" in md

    # the card of a model of the same recipe gets the pooled estimate; another recipe's does not
    same, other = out / "without-italy" / "model", out / "without-germany" / "model"
    cfg_other = dataclasses.replace(cfg, epochs=3)
    assert record_evidence(result, cfg, [same]) == {str(same): "recorded"}
    assert record_evidence(result, cfg_other, [other])[str(other)].startswith("not recorded")
    held = read_card(same).evidence.items("Pneumonia", EvidenceKind.SITE_HELD_OUT)
    assert len(held) == 1 and held[0].recipe_only and held[0].n_images == 30
    assert held[0].auc.value == pytest.approx(pooled["roc_auc"]["value"])
    assert read_card(same).evidence.status("Pneumonia") in (SUPPORTED, TRAINING_ONLY, "below chance elsewhere")
    assert read_card(other).evidence.items("Pneumonia", EvidenceKind.SITE_HELD_OUT) == []
    record_evidence(result, cfg, [same])  # again: replaced, not appended
    assert len(read_card(same).evidence.items("Pneumonia", EvidenceKind.SITE_HELD_OUT)) == 1


def test_needs_two_sites_and_the_column(data, tmp_path):
    cfg = TrainConfig(data=[data], task="pneumonia", arch="vgg16", weights=None, img_size=32,
                      cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="leave one site out needs two or more"):
        cross_site(DataSpec([data]), cfg, tmp_path / "o", min_site_patients=9)
    with pytest.raises(DataError, match="no metadata column 'hospital'"):
        cross_site(DataSpec([data]), cfg, tmp_path / "o", site_column="hospital")

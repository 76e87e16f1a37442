"""Source checks: the source probe and leave-one-source-out on generated sources that differ in brightness."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.training.audits.conftest import cxr_image
from training.errors import CXRError, DataError
from training.audits import source as S
from training.audits.probe_features import HIST_BINS


def write_source(root: Path, name: str, gamma: float, n_patients: int = 30, seed: int = 0) -> Path:
    """A CSV dataset ``root/name.csv``: 2 images per patient, half the patients with pneumonia."""
    rows = []
    for i in range(n_patients):
        sick = i % 2 == 1
        for j in range(2):
            path = root / name / f"p{i}_{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(cxr_image(sick, gamma, seed * 10_000 + i * 10 + j), "L").save(path)
            rows.append({"path": str(path), "patient": f"p{i}", "source": name,
                         "label": "Pneumonia" if sick else "No Finding"})
    csv = root / f"{name}.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {"dark": write_source(root, "dark", 1.0, seed=1),
            "bright": write_source(root, "bright", 0.3, seed=2),
            # chance-level checks need more patients: small held-out sets swing far below 0.5
            "same_a": write_source(root, "same_a", 1.0, n_patients=80, seed=4),
            "same_b": write_source(root, "same_b", 1.0, n_patients=80, seed=5),
            "cache": root / "cache"}


FAST = dict(img_size=32, weights=None, features=("stats",), n_boot=200)


def test_probe_separates_sources_that_differ_in_brightness(sources, tmp_path):
    r = S.source_probe([str(sources["dark"]), str(sources["bright"])], out_dir=tmp_path,
                       cache_dir=sources["cache"], **FAST)
    auc = r["metrics"]["roc_auc"]
    assert auc["value"] > 0.95 and auc["low"] > 0.85
    assert r["warning"] is True and r["sources"] == ["bright", "dark"]
    assert r["n_train"] + r["n_test"] == 120 and r["n_test"] > 20
    saved = json.loads((tmp_path / "source_probe.json").read_text())
    assert saved["metrics"]["roc_auc"] == auc
    page = (tmp_path / "source_probe.html").read_text()
    assert "the image alone identifies its source" in page


def test_probe_on_identical_sources_is_near_chance(sources, tmp_path):
    r = S.source_probe([str(sources["same_a"]), str(sources["same_b"])], out_dir=tmp_path,
                       cache_dir=sources["cache"], **FAST)
    auc = r["metrics"]["roc_auc"]
    assert auc["low"] < 0.5 < auc["high"] and auc["value"] < 0.8
    assert r["warning"] is False
    assert "not readily identified" in (tmp_path / "source_probe.html").read_text()


def test_probe_split_is_patient_disjoint_and_reused_from_a_file(sources, tmp_path):
    from training.data.formats import load_datasets
    from training.data.spec import DataSpec
    from training.data.splits import make_split, save_split
    from training.data.tasks import get_task

    data = [str(sources["dark"]), str(sources["bright"])]
    ds = load_datasets(DataSpec(data))
    split = make_split(ds, get_task("pneumonia"), parts=(0.5, 0.0, 0.5), seed=3)
    path = save_split(split, tmp_path / "split.csv")
    r = S.source_probe(data, split_csv=path, out_dir=tmp_path, cache_dir=sources["cache"], **FAST)
    assert r["n_test"] == int((split["part"] == "test").sum())
    assert r["split"] == str(path)


def test_probe_with_backbone_features(sources, tmp_path):
    r = S.source_probe([str(sources["dark"]), str(sources["bright"])], arch="resnet50", img_size=32,
                       weights=None, features="auto", out_dir=tmp_path, cache_dir=sources["cache"],
                       n_boot=50)
    assert r["features"] == ["backbone", "stats"]
    assert r["n_features"] == 2048 + HIST_BINS + 10 + 4


def test_probe_needs_two_sources(sources, tmp_path):
    with pytest.raises(DataError, match="one source only"):
        S.source_probe([str(sources["dark"])], out_dir=tmp_path, cache_dir=sources["cache"], **FAST)


def test_leave_one_source_out_tests_each_source_externally(sources, tmp_path):
    data = [str(sources["dark"]), str(sources["bright"])]
    r = S.leave_one_source_out(data, task="pneumonia", out_dir=tmp_path, cache_dir=sources["cache"], **FAST)
    assert set(r["folds"]) == {"internal", "dark", "bright"}
    for s in ("dark", "bright"):
        fold = r["folds"][s]
        assert fold["test_set"] == "external" and fold["n_test"] == 60 and fold["n_test_patients"] == 30
        assert fold["n_train"] < 60  # the other source's train+val only
        assert fold["metrics"]["roc_auc"]["low"] is not None
    assert r["folds"]["internal"]["test_set"] == "internal"
    assert r["folds"]["internal"]["metrics"]["roc_auc"]["value"] > 0.8
    assert (tmp_path / "leave_one_source_out.html").is_file()


def test_leave_one_source_out_uses_a_given_trainer(sources, tmp_path):
    seen = []

    def constant(train, test, task):
        seen.append((set(train.meta["source"]), set(test.meta["source"]), set(train.meta["part"])))
        return np.full((len(test), 2), 0.5)

    r = S.leave_one_source_out([str(sources["dark"]), str(sources["bright"])], task="pneumonia",
                               out_dir=tmp_path, trainer=constant, n_boot=50)
    assert ({"bright"}, {"dark"}) in [(a, b) for a, b, _ in seen]
    assert all("test" not in parts for _, _, parts in seen)
    assert r["folds"]["dark"]["metrics"]["roc_auc"]["value"] == 0.5


def test_leave_one_source_out_rejects_multilabel_and_one_source(sources, tmp_path):
    with pytest.raises(CXRError, match="single-label task"):
        S.leave_one_source_out([str(sources["dark"])], task="multilabel", out_dir=tmp_path)
    with pytest.raises(DataError, match="one source only"):
        S.leave_one_source_out([str(sources["dark"])], out_dir=tmp_path, trainer=lambda *a: None)

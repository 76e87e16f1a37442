import json
import shutil

import pandas as pd
import pytest

from training.data.splits import split_hash
from training.errors import SplitError
from training.evaluation.evaluate import evaluate_model
from training.evaluation.metrics import METRIC_NAMES
from training.models.card import read_card


def _copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def internal(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ev_internal")
    model = _copy_model(world["single"], out / "model")
    result = evaluate_model(model, [world["data"]], out_dir=out / "report", n_boot=200)
    return model, out / "report", result


def test_internal_evaluation_outputs(world, internal):
    model, out, result = internal
    for f in ("metrics.json", "report.html", "roc.png", "pr.png", "reliability_raw.png",
              "reliability_calibrated.png", "confusion.png"):
        assert (out / f).is_file(), f
    split = pd.read_csv(world["split"])
    test = split[split["part"] == "test"]
    assert result["test_set"] == "internal" and result["part"] == "test"
    assert result["n_images"] == len(test) and result["n_patients"] == test["patient"].nunique()
    assert result["overlap"]["checked"] and result["overlap"]["n_images"] == 0
    assert result["bootstrap"]["resampling"] == "patients"
    auc = result["metrics"]["per_output"]["Pneumonia"]["roc_auc"]
    assert auc["low"] <= auc["value"] <= auc["high"] and auc["value"] > 0.5
    card = read_card(model)
    assert card.test_set == "internal" and card.test_evaluation.split_sha256 == split_hash(world["split"])
    assert card["metrics"]["test"]["metrics"]["accuracy"] == result["metrics"]["accuracy"]


def test_report_contains_the_numbers_of_metrics_json(internal):
    _, out, _ = internal
    data = json.loads((out / "metrics.json").read_text())
    html = (out / "report.html").read_text()
    cells = [data["metrics"]["per_output"][o][m] for o in data["metrics"]["per_output"]
             for m in METRIC_NAMES] + [data["metrics"]["accuracy"], data["metrics"]["balanced_accuracy"]]
    numbers = [c[k] for c in cells for k in ("value", "low", "high") if c[k] is not None]
    assert len(numbers) > 30
    for v in numbers:
        assert f"{v:.4f}" in html
    for text in ("internal", "Research tool", "patients", data["thresholds"]["method"], str(data["n_images"])):
        assert text in html


def test_refuses_training_images(world, tmp_path):
    model = _copy_model(world["single"], tmp_path / "model")
    with pytest.raises(SplitError, match="used to train or validate"):
        evaluate_model(model, [world["data"]], part="train", out_dir=tmp_path / "r", n_boot=50)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_allow_overlap_evaluates_and_flags(world, tmp_path):
    model = _copy_model(world["single"], tmp_path / "model")
    r = evaluate_model(model, [world["data"]], part="val", out_dir=tmp_path / "r",
                       allow_overlap=True, n_boot=50)
    assert r["overlap"]["allowed"] and r["overlap"]["n_images"] == r["n_images"] > 0
    html = (tmp_path / "r" / "report.html").read_text()
    assert "WARNING" in html and "NOT a fair" in html


def test_refuses_identical_content_under_another_name(world, tmp_path):
    ext = tmp_path / "clinic"
    shutil.copytree(world["external"], ext)
    split = pd.read_csv(world["split"])
    train_file = split.loc[split["part"] == "train", "path"].iloc[0]
    shutil.copy(train_file, ext / "NORMAL" / "renamed_copy.png")
    model = _copy_model(world["single"], tmp_path / "model")
    with pytest.raises(SplitError, match="1 by identical file content"):
        evaluate_model(model, [str(ext)], out_dir=tmp_path / "r", n_boot=50)


def test_other_source_without_split_is_external(world, tmp_path):
    model = _copy_model(world["single"], tmp_path / "model")
    r = evaluate_model(model, [world["external"]], out_dir=tmp_path / "r", n_boot=50)
    assert r["test_set"] == "external" and r["split"] is None and r["n_images"] == 12
    assert read_card(model).test_set == "external"
    assert "external" in (tmp_path / "r" / "report.html").read_text()


def test_multilabel_thresholds_from_validation(world, tmp_path):
    model = _copy_model(world["multi"], tmp_path / "model")
    r = evaluate_model(model, [world["data"]], out_dir=tmp_path / "r", n_boot=50,
                       threshold_method="youden", min_patients=2)  # the tiny split: 3-4 a class
    split = pd.read_csv(world["split"])
    assert r["thresholds"]["method"] == "youden on validation"
    assert r["thresholds"]["n_validation"] == (split["part"] == "val").sum()
    assert r["metrics"]["per_output"]["Pneumonia"]["threshold"] == r["thresholds"]["values"]["Pneumonia"]
    assert "youden on validation" in (tmp_path / "r" / "report.html").read_text()
    r2 = evaluate_model(model, [world["data"]], out_dir=tmp_path / "r2", n_boot=50,
                        target_sensitivity=0.99, min_patients=2)
    assert r2["thresholds"]["method"].startswith("sensitivity >= 0.99")
    assert r2["thresholds"]["values"]["Pneumonia"] <= r["thresholds"]["values"]["Pneumonia"]

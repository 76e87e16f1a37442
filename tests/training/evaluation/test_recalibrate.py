"""Calibration stored in a card and used everywhere: the `calibrate` command (post hoc), the
evaluation (ECE before/after with CIs, both reliability figures, HTML) and predict_files."""
import json
import shutil

import numpy as np
import pytest

from training.cli import main
from training.evaluation.calibration import Calibration
from training.evaluation.evaluate import NO_CARD_CALIBRATION, evaluate_model
from training.evaluation.predict import predict_files
from training.evaluation.recalibrate import recalibrate
from training.models.card import read_card


@pytest.fixture(scope="module")
def calibrated(world, tmp_path_factory):
    """A copy of the single-label tiny model calibrated with the `calibrate` command."""
    model = tmp_path_factory.mktemp("recal") / "model"
    shutil.copytree(world["single"], model)
    assert main(["calibrate", "--model", str(model), "--method", "temperature",
                 "--min-threshold-patients", "2"]) == 0  # the tiny split: 3-4 patients a class
    return model


@pytest.fixture(scope="module")
def evaluated(world, calibrated, tmp_path_factory):
    out = tmp_path_factory.mktemp("recal_eval")
    return out, evaluate_model(calibrated, [world["data"]], out_dir=out, n_boot=100, min_patients=2)


def test_calibrate_command_updates_the_card(world, calibrated):
    before, card = read_card(world["single"]), read_card(calibrated)
    assert before.calibration is None
    cal = Calibration.from_json(card.calibration, card.outputs, card.kind)
    assert cal.method == "temperature" and cal.params["temperature"] != 1.0
    assert cal.fitted_on["n_images"] > 0
    assert card.thresholds != before.thresholds  # re-chosen on the calibrated scale
    assert card.thresholds.method.value == "youden" and card.thresholds.calibration == "temperature"
    assert card.thresholds.min_patients == 2  # --min-threshold-patients came through
    assert card.thresholds.entries["Pneumonia"].status.value == "chosen"
    assert "calibrated by temperature" in card.thresholds.describe()
    assert "calibrated" in card.metrics.to_json()["validation"]["note"]
    assert (calibrated / "calibrate.config.yaml").is_file()


def test_calibrate_with_too_few_validation_patients_records_not_estimable(world, tmp_path):
    model = tmp_path / "few"
    shutil.copytree(world["single"], model)
    recalibrate(model, data=[world["data"]], method="temperature")  # default: 10 patients a class
    entry = read_card(model).thresholds.entries["Pneumonia"]
    assert entry.status.value == "not_estimable" and entry.value is None
    assert 0 < entry.positive_patients < 10 and "at least 10" in entry.reason
    assert read_card(model).threshold("Pneumonia") is None


def test_recalibrate_multilabel_auto_uses_platt_with_few_positives(world, tmp_path):
    model = tmp_path / "multi"
    shutil.copytree(world["multi"], model)
    cal = recalibrate(model, data=[world["data"]])
    assert cal.kind == "multilabel" and set(cal.params) == {"No Finding", "Pneumonia"}
    assert all(v["method"] == "platt" and "overfit" in v["why"] for v in cal.params.values())
    assert read_card(model).calibration.to_json() == cal.to_json()


def test_evaluation_reports_ece_before_and_after(calibrated, evaluated):
    out, r = evaluated
    cal = r["calibration"]
    assert cal["source"] == "card" and cal["method"] == "temperature"
    for when in ("before", "after"):
        assert set(cal[when]) == {"Normal", "Pneumonia", "macro"}
        for o, section in cal[when].items():
            e = section["ece"]
            assert e["low"] <= e["value"] <= e["high"], (when, o, e)
        assert "curve" in cal[when]["Pneumonia"]
    assert cal["before"]["Pneumonia"]["ece"] != cal["after"]["Pneumonia"]["ece"]
    for f in ("reliability_raw.png", "reliability_calibrated.png"):
        assert (out / f).is_file()
    summary = read_card(calibrated).metrics.to_json()["test"]["calibration"]
    assert summary["method"] == "temperature" and set(summary) == {"method", "source", "before", "after"}
    assert summary["after"]["macro"] == cal["after"]["macro"]["ece"]
    assert "calibrated" in r["thresholds"]["method"]


def test_evaluation_html_has_the_calibration_section(evaluated):
    out, r = evaluated
    html = (out / "report.html").read_text()
    cal = r["calibration"]
    assert "<h2>Calibration</h2>" in html and "ECE before (raw)" in html
    assert cal["method"] in html and cal["source"] in html
    for when in ("before", "after"):
        e = cal[when]["Pneumonia"]["ece"]
        assert f"{e['value']:.4f}" in html and f"{e['low']:.4f}" in html
    assert "reliability_raw.png" in html and "reliability_calibrated.png" in html


def test_evaluation_without_card_calibration_and_with_a_refit(world, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(world["single"], model)
    plain = evaluate_model(model, [world["data"]], out_dir=tmp_path / "plain", n_boot=50)
    assert plain["calibration"]["method"] == NO_CARD_CALIBRATION
    assert plain["calibration"]["before"] == plain["calibration"]["after"]
    refit = evaluate_model(model, [world["data"]], out_dir=tmp_path / "refit", n_boot=50,
                           calibration="temperature")
    assert refit["calibration"]["method"] == "temperature"
    assert refit["calibration"]["source"].startswith("refit (temperature) on the validation part")
    assert read_card(model).calibration is None  # an experiment leaves the card's calibration alone
    saved = json.loads((tmp_path / "refit" / "metrics.json").read_text())
    assert saved["calibration"]["source"] == refit["calibration"]["source"]


def test_predict_files_writes_calibrated_and_raw_columns(world, calibrated):
    files = sorted((world["root"] / "kermany").rglob("*.png"))[:8]
    df = predict_files([calibrated], files)
    cal = Calibration.from_json(read_card(calibrated).calibration)
    raw = df[["raw_prob_Normal", "raw_prob_Pneumonia"]].to_numpy()
    prob = df[["prob_Normal", "prob_Pneumonia"]].to_numpy()
    assert not np.allclose(raw, prob)
    np.testing.assert_allclose(prob, cal.apply(raw), atol=1e-12)
    np.testing.assert_allclose(prob.sum(axis=1), 1, atol=1e-9)
    t = read_card(calibrated).threshold("Pneumonia")
    assert list(df["pred"]) == ["Pneumonia" if v >= t else "Normal" for v in prob[:, 1]]

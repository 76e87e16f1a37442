"""The one post-training step: the two-class softmax handled once, thresholds only where the
validation part has enough patients, and the trainer, `evaluate` and `calibrate` agree."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from training.data.spec import DataSpec
from training.engine.fit import validation_report
from training.evaluation import evaluate
from training.evaluation.decision import decide, no_decision
from training.evaluation.evalset import load_eval_set, training_split
from training.evaluation.posttrain import post_train
from training.evaluation.predict import predict_files
from training.evaluation.recalibrate import recalibrate
from training.evaluation.thresholds import Status, ThresholdMethod
from training.models.card import read_card
from training.runtime import load

PAIR = ["Normal", "Pneumonia"]


def _softmax_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.random(n) < 0.5
    p = np.clip(0.35 + 0.3 * label + rng.normal(0, 0.15, n), 0.01, 0.99)
    return np.eye(2)[label.astype(int)], np.stack([1 - p, p], axis=1)


def test_two_class_softmax_thresholds_its_positive_class_once():
    Y, raw = _softmax_scores(80)
    post = post_train(Y, raw, "single", PAIR, None, calibration="none")
    assert set(post.thresholds.entries) == {"Pneumonia"}  # the first class is never thresholded
    t = post.thresholds.values()["Pneumonia"]
    assert post.thresholds.entries["Pneumonia"].status is Status.CHOSEN and 0 < t < 1
    got = decide(raw, "single", post.thresholds, PAIR, missing=None)
    assert (got[:, 1] == (raw[:, 1] >= t)).all() and (got.sum(axis=1) == 1).all()


def test_softmax_of_more_classes_gets_argmax_and_no_thresholds():
    rng = np.random.default_rng(1)
    Y, raw = np.eye(3)[rng.integers(0, 3, 40)], rng.dirichlet([1, 1, 1], 40)
    post = post_train(Y, raw, "single", ["a", "b", "c"], None, calibration="none")
    assert post.thresholds.method is ThresholdMethod.ARGMAX and post.thresholds.entries == {}
    assert decide(raw, "single", post.thresholds, ["a", "b", "c"], missing=None).sum(axis=1).tolist() == [1] * 40


def test_not_estimable_below_the_minimum_of_patients_with_the_counts():
    """SARS: 12 images of 2 patients; ARDS: 30 positive patients: only ARDS gets a threshold."""
    n = 60
    groups = np.array([f"p{i}" for i in range(n)], dtype=object)
    groups[:12] = np.where(np.arange(12) < 6, "sars-a", "sars-b")
    rng = np.random.default_rng(2)
    Y = np.zeros((n, 2))
    Y[:12, 0] = 1
    Y[::2, 1] = 1
    Y[5, 1] = np.nan  # unknown stays unknown: counted nowhere
    P = rng.random((n, 2))
    post = post_train(Y, P, "multilabel", ["SARS", "ARDS"], groups, calibration="none", min_patients=10)
    sars, ards = post.thresholds.entries["SARS"], post.thresholds.entries["ARDS"]
    assert sars.value is None and sars.status is Status.NOT_ESTIMABLE
    assert (sars.positive_patients, sars.positive_images) == (2, 12)
    assert sars.negative_patients == 48 and "2 positive" in sars.reason and "10" in sars.reason
    assert ards.status is Status.CHOSEN and ards.value is not None
    assert ards.positive_images + ards.negative_images == n - 1
    assert post.thresholds.values() == {"SARS": None, "ARDS": ards.value}
    assert "SARS: not estimable" in post.thresholds.describe()
    # no decision for SARS whatever the stand-in, and every consumer can say why
    assert not decide(np.ones((1, 2)), "multilabel", post.thresholds, ["SARS", "ARDS"], missing=0.5)[0, 0]
    assert set(no_decision("multilabel", post.thresholds, ["SARS", "ARDS"])) == {"SARS"}


def test_two_class_softmax_whose_positive_class_is_not_estimable_has_no_class():
    Y, raw = _softmax_scores(12)
    post = post_train(Y, raw, "single", PAIR, None, calibration="none", min_patients=10)
    assert post.thresholds.values() == {"Pneumonia": None}
    assert not decide(raw, "single", post.thresholds, PAIR, missing=0.5).any()
    why = no_decision("single", post.thresholds, PAIR)
    assert set(why) == set(PAIR) and all("the Pneumonia threshold not estimable" in w for w in why.values())


def test_the_record_round_trips_through_json():
    Y, raw = _softmax_scores(80)
    record = post_train(Y, raw, "single", PAIR, None, calibration="temperature").thresholds
    assert type(record).from_json(record.to_json(), PAIR) == record
    with pytest.raises(ValueError, match="What to do"):
        type(record).from_json({**record.to_json(), "method": "magic"}, PAIR)


@pytest.fixture
def model(world, tmp_path):
    folder = tmp_path / "single"
    shutil.copytree(world["single"], folder)
    return folder


def _trainer_record(val, kind, outputs):
    """The trainer's step on the same raw validation probabilities (a stand-in for the model)."""
    n = val.n
    prep = SimpleNamespace(targets=val.Y, index={"val": np.arange(n)},
                           images={"val": np.zeros((n, 4, 4, 3), "uint8")}, classes=outputs,
                           task=SimpleNamespace(kind=kind),
                           ds=SimpleNamespace(meta=pd.DataFrame({"patient": val.groups,
                                                                 "path": [f"{i}" for i in range(n)]})))
    stub = SimpleNamespace(predict=lambda *_a, **_k: val.P)
    return validation_report(stub, prep, 8, calibration="temperature", min_patients=2).thresholds


def test_trainer_evaluate_and_calibrate_write_the_same_record(world, model):
    rt = load(model)
    evs = load_eval_set(rt.card, model, DataSpec.of([world["data"]]), None, "test", False)
    val = evaluate.validation_predictions(rt, evs, training_split(rt.card, model))
    assert val is not None and val.n > 0
    by_evaluate = evaluate.post_training(rt, val, "temperature", min_patients=2).thresholds
    recalibrate(model, data=[world["data"]], method="temperature", threshold_method="youden",
                min_patients=2)
    by_calibrate = read_card(model).thresholds
    by_trainer = _trainer_record(val, rt.kind, rt.outputs)
    assert by_evaluate == by_calibrate == by_trainer
    assert by_calibrate.entries["Pneumonia"].status is Status.CHOSEN


def test_predict_csv_gives_no_decision_and_says_why(world, model):
    recalibrate(model, data=[world["data"]], method="temperature")  # too few patients: not estimable
    files = sorted((world["root"] / "kermany").rglob("*.png"))[:3]
    df = predict_files([model], files)
    assert df["pred"].isna().all() and df["prob_Pneumonia"].notna().all()
    note = df["decision_note"].iloc[0]
    assert "Normal: no decision" in note and "not estimable" in note and "at least 10" in note

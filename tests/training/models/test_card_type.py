"""The typed model card: JSON round trip, typed sections validated on load, unknown keys kept,
and a version-1 card (as cxrlab wrote them before the typed sections) still read."""
import dataclasses
import json

import pytest

from training.clinical.records import EncoderRecord
from training.data.records import DataSummary, SplitRecord
from training.errors import ModelCardError
from training.evaluation.estimate import Estimate
from training.evaluation.records import CalibrationRecord, MetricSet, TestEvaluation
from training.gate.ood import GateRecord
from training.models.card import CARD_VERSION, ModelCard, migrate, read_card, update_card
from training.models.records import InitialisationRecord, PretrainingRecord, TrainingSummary, TransferRecord
from training.preprocess import PreprocessConfig

SHA = "ab" * 32


def _raw(**kw):
    raw = {"card_version": CARD_VERSION, "name": "m", "architecture": "resnet50", "task": "pneumonia",
           "kind": "single", "outputs": ["Normal", "Pneumonia"], "input_size": 32,
           "preprocessing": {"size": 32}, "gradcam_layer": "conv5_block3_out",
           "metrics": {"validation": {}, "test": {}}}
    raw.update(kw)
    return raw


def _test_summary(**kw):
    """metrics.test as evaluate writes it (one output shown; intervals as objects)."""
    auc = {"value": 0.91, "low": 0.85, "high": 0.96, "n_used": 200}
    return {"test_set": "internal", "split": "/srv/runs/split.csv", "part": "test", "n_images": 40,
            "n_patients": 20, "thresholds": {"method": "youden on validation", "values": {"Pneumonia": 0.4}},
            "metrics": {"kind": "single", "outputs": ["Normal", "Pneumonia"],
                        "per_output": {"Pneumonia": {"n_pos": 20, "n_neg": 20, "threshold": 0.4,
                                                     "roc_auc": auc, "confusion_matrix": [[1, 2], [3, 4]]}},
                        "macro": {"roc_auc": auc}, "accuracy": {"value": 0.8, "low": 0.7, "high": 0.9}},
            "overlap": {"checked": True, "n_images": 0},
            "calibration": {"method": "temperature", "source": "card", "before": {}, "after": {}}, **kw}


#: A version-1 card.json exactly as cxrlab 1 wrote them (engine.fit.build_card, evaluate,
#: save_gate, pretrain, clinical fusion): frozen here, never regenerated.
V1_CARD = {
    "card_version": 1, "name": "k-resnet50", "architecture": "resnet50", "task": "pneumonia",
    "kind": "single", "outputs": ["Normal", "Pneumonia"], "input_size": 32,
    "preprocessing": {"size": 32, "clip_percentile": 0.5, "resize": "pad", "clahe": False,
                      "clahe_clip": 0.01, "channels": 3},
    "gradcam_layer": "conv5_block3_out",
    "transfer": {"mode": "finetune", "weights": "imagenet", "note": "weights were auto"},
    "initialisation": {"kind": "imagenet", "summary": "ImageNet (keras.applications weights)"},
    "training": {"arch": "resnet50", "mode": "finetune", "task": "pneumonia", "seed": 0, "epochs": 3,
                 "data": ["/srv/data/kermany"], "views": ["PA"], "split": "/srv/runs/split.csv",
                 "feature_cache": True, "feature_cache_reason": "frozen backbone", "best_epoch": 2,
                 "batchnorm": {"precise": True}, "mixed_precision": None, "distribute": "none",
                 "replicas": 1, "global_batch": 8, "effective_batch": 8, "lr_used": 0.001,
                 "finetune_lr_used": 1e-05, "epochs_run": 3, "seconds_per_epoch": 1.5,
                 "train_images_used": 60},
    "split": {"file": "/srv/runs/split.csv", "sha256": SHA, "counts": {"train": 60, "val": 20, "test": 40}},
    "data": {"sources": ["kermany"], "counts": {"train": {"Normal": 30, "Pneumonia": 30}},
             "parts": {"train": {"images": 60, "patients": 30, "unlabelled": 0,
                                 "classes": {"Normal": 30, "Pneumonia": 30}}},
             "skipped": []},
    "thresholds": {"Normal": 0.5, "Pneumonia": 0.4},
    "threshold_method": "youden on validation (on probabilities calibrated by temperature)",
    "metrics": {"validation": {"kind": "single", "outputs": ["Normal", "Pneumonia"],
                               "per_output": {"Pneumonia": {"n_pos": 10, "n_neg": 10, "roc_auc": 0.9}},
                               "accuracy": 0.85, "loss": 0.4, "n_images": 20},
                "test": {k: v for k, v in _test_summary().items()}},
    "test_set": "internal",
    "pretraining": {"data": ["/srv/data/kermany"], "sources": ["kermany"], "images": 80,
                    "task": "multilabel-within-source", "config": {"epochs": 1},
                    "excluded": [{"split": "/srv/runs/split.csv", "sha256": SHA, "held_out_images": 20}]},
    "metadata_features": ["age"],
    "metadata_encoder": {"version": 1, "features": ["age"], "numeric": ["age"], "categorical": [],
                         "medians": [50.0], "indicators": ["age"], "mean": [0.0, 0.1], "scale": [1.0, 0.3],
                         "output_names": ["age", "age_missing"]},
    "calibration": {"kind": "single", "outputs": ["Normal", "Pneumonia"], "method": "temperature",
                    "params": {"temperature": 1.3}, "chosen_by": "requested", "fitted_on": {"n_images": 20},
                    "validation_ece": {}},
    "gate": {"method": "mahalanobis-ppca", "file": "gate.npz", "sha256": SHA, "feature_layers": ["features"],
             "threshold": 2.5, "warn_threshold": 1.8, "n_components": 4, "dim": 16,
             "fitted_on": {"train_images": 60, "validation_images": 20}, "thresholds_from": "validation"},
    "params": {"total": 100, "trainable": 10}, "versions": {"keras": "3"},
    "created": "2026-01-01T00:00:00+00:00", "model_sha256": SHA,
}
del V1_CARD["metrics"]["test"]["test_set"]  # v1 test summaries relied on the top-level test_set too


def test_every_section_is_a_record():
    card = ModelCard.from_json(json.loads(json.dumps(V1_CARD)))
    assert isinstance(card.preprocessing, PreprocessConfig) and isinstance(card.transfer, TransferRecord)
    assert isinstance(card.initialisation, InitialisationRecord) and isinstance(card.training, TrainingSummary)
    assert isinstance(card.split, SplitRecord) and isinstance(card.data, DataSummary)
    assert isinstance(card.pretraining, PretrainingRecord) and isinstance(card.metadata_encoder, EncoderRecord)
    assert isinstance(card.calibration, CalibrationRecord) and isinstance(card.gate, GateRecord)
    assert isinstance(card.validation_metrics, MetricSet) and isinstance(card.test_evaluation, TestEvaluation)
    untyped = [f.name for f in dataclasses.fields(ModelCard) if "dict[str, Any]" in str(f.type)]
    assert untyped == ["extra"]  # keys of a newer cxrlab, kept as written: the only free-form field


def test_a_version_1_card_is_migrated_and_read():
    raw = json.loads(json.dumps(V1_CARD))
    card = ModelCard.from_json(raw, "old/card.json")
    assert card.card_version == CARD_VERSION == 2 and raw == V1_CARD  # the input is not changed
    assert card.test_set == "internal" and card.test_evaluation.split_sha256 is None
    assert card.test_evaluation.metrics.per_output["Pneumonia"].get("roc_auc") == Estimate(0.91, 0.85, 0.96, 200)
    assert card.test_evaluation.metrics.per_output["Pneumonia"].tables["confusion_matrix"] == [[1, 2], [3, 4]]
    assert card.validation_metrics.get("accuracy").value == 0.85 and card.validation_metrics.n_images == 20
    assert card.training.best_epoch == 2 and card.training.seconds_per_epoch == 1.5
    assert card.training.config["data"] == ["/srv/data/kermany"] and "best_epoch" not in card.training.config
    assert card.transfer.note == "weights were auto" and card.split.name == "split.csv"
    assert card.gate.fitted_on == {"train_images": 60, "validation_images": 20}
    assert card.metadata_encoder.output_names == ["age", "age_missing"]
    assert card.threshold("Pneumonia") == pytest.approx(0.4)   # the thresholds record (from_v1)
    out = card.to_json()
    assert "test_set" not in out and "threshold_method" not in out and out["card_version"] == 2
    assert ModelCard.from_json(json.loads(json.dumps(out))) == card  # v2 round trip
    # sections keep their JSON shape: version-1 readers of card.json still find their keys
    for key in ("transfer", "initialisation", "training", "split", "data", "pretraining",
                "metadata_encoder", "calibration", "gate"):
        assert out[key] == V1_CARD[key], key
    assert out["metrics"]["validation"] == V1_CARD["metrics"]["validation"]


def test_migrate_leaves_current_cards_alone():
    raw = _raw()
    assert migrate(raw) is raw
    assert migrate({**_raw(card_version=1), "test_set": None})["card_version"] == CARD_VERSION


def test_round_trip_keeps_every_key_and_unknown_ones():
    raw = _raw(from_a_newer_cxrlab={"x": 1}, metrics={"validation": {"loss": 0.3}, "test": _test_summary()})
    card = ModelCard.from_json(raw)
    assert card.extra == {"from_a_newer_cxrlab": {"x": 1}} and card.to_json()["from_a_newer_cxrlab"] == {"x": 1}
    again = ModelCard.from_json(json.loads(json.dumps(card.to_json())))
    assert again == card and "pretraining" not in card.to_json()  # optional keys omitted when unset
    assert card["outputs"] == card.outputs and card.get("missing", 7) == 7 and "task" in card
    assert card["metrics"]["test"]["metrics"]["per_output"]["Pneumonia"]["roc_auc"]["low"] == 0.85


@pytest.mark.parametrize("section, value, match", [
    ("split", {"file": "s.csv", "sha256": "short"}, "split sha256"),
    ("split", {"counts": {"train": -1}}, "split counts"),
    ("transfer", {"mode": "sideways"}, "transfer mode"),
    ("initialisation", {"kind": "magic"}, "initialisation kind"),
    ("training", [1, 2], "training must be a JSON object"),
    ("data", {"skipped": "none"}, "data skipped"),
    ("calibration", {"kind": "single", "outputs": ["Normal", "Pneumonia"], "method": "temperature",
                     "params": {"temperature": -1}}, "temperature must be a positive number"),
    ("gate", {"file": "gate.npz", "threshold": "high", "warn_threshold": 1}, "gate threshold"),
    ("metadata_encoder", {"version": 1, "features": ["age"], "numeric": ["age"], "categorical": [],
                          "medians": [1.0], "mean": [0.0], "scale": [1.0], "output_names": ["x"]},
     "inconsistent"),
    ("pretraining", {"sources": ["k"]}, "pretraining images"),
    ("metrics", {"test": {"test_set": "somewhere", "metrics": {}}}, "test_set must be one of"),
    ("metrics", {"test": {"test_set": "internal"}}, "has no metrics object"),
    ("preprocessing", {"size": 32, "sharpen": 2}, "unknown preprocessing parameter"),
])
def test_a_bad_section_is_named_with_the_file(section, value, match):
    with pytest.raises(ModelCardError, match=match) as err:
        ModelCard.from_json(_raw(**{section: value}), "some/card.json")
    assert "some/card.json" in str(err.value) and "What to do" in str(err.value)


def test_a_version_this_cxrlab_cannot_read_is_named():
    with pytest.raises(ModelCardError, match=f"card_version 99; this cxrlab reads versions 1..{CARD_VERSION}"):
        ModelCard.from_json(_raw(card_version=99), "some/card.json")


def test_update_card_goes_through_the_type(tmp_path):
    (tmp_path / "card.json").write_text(json.dumps(_raw()))
    card = update_card(tmp_path, metrics={"validation": {}, "test": _test_summary()})
    assert isinstance(card, ModelCard) and card.test_evaluation.n_images == 40 and card.test_set == "internal"
    assert read_card(tmp_path) == card
    with pytest.raises(ModelCardError, match="split sha256"):
        update_card(tmp_path, split={"sha256": "x"})

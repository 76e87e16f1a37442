"""Threshold choice on validation: Youden, target sensitivity, NaN labels, degenerate cases."""
import numpy as np
import pytest

from training.evaluation.thresholds import (Status, ThresholdMethod, ThresholdRecord, choose_record,
                                              choose_threshold)

Y = [0, 0, 0, 0, 1, 0, 1, 1]
S = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_youden_known_case():
    # J at 0.7: 2/3 - 0 = .67; at 0.5: 1 - 1/5 = .8 (best); at 0.6: 2/3 - 1/5
    assert choose_threshold(Y, S) == pytest.approx(0.5)


@pytest.mark.parametrize("target, expected", [(0.6, 0.7), (0.9, 0.5), (1.0, 0.5), (0.3, 0.8)])
def test_target_sensitivity_highest_threshold(target, expected):
    assert choose_threshold(Y, S, target_sensitivity=target) == pytest.approx(expected)


def test_nan_labels_ignored():
    assert choose_threshold(Y + [np.nan], S + [0.99]) == pytest.approx(0.5)


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0], []])
def test_single_class_gives_half_with_warning(y):
    with pytest.warns(UserWarning, match="class"):
        assert choose_threshold(y, np.linspace(0, 1, len(y))) == 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown threshold method"):
        choose_threshold(Y, S, method="magic")
    with pytest.raises(ValueError, match="target_sensitivity"):
        choose_threshold(Y, S, method="sensitivity")


# ------------------------------------------------------------------ the card's record

def test_from_v1_reads_the_old_sentence_once():
    old = {"No Finding": 0.4, "SARS": 0.5}
    rec = ThresholdRecord.from_v1(old, "youden on validation; 0.5 for ['SARS'] (validation empty or "
                                  "single-class) (on probabilities calibrated by platt)")
    assert rec.method is ThresholdMethod.YOUDEN and rec.calibration == "platt" and rec.scale == "calibrated"
    assert rec.values() == {"No Finding": 0.4, "SARS": None}  # the old 0.5 was never estimated
    assert rec.entries["SARS"].status is Status.NOT_ESTIMABLE
    sens = ThresholdRecord.from_v1({"a": 0.3}, "sensitivity >= 0.9 on validation")
    assert sens.method is ThresholdMethod.SENSITIVITY and sens.target_sensitivity == 0.9
    assert sens.scale == "raw"
    unknown = ThresholdRecord.from_v1({"a": 0.3}, "set by hand")
    assert unknown.entries["a"].status is Status.FROM_CARD and unknown.values() == {"a": 0.3}
    assert ThresholdRecord.from_v1(None, "anything") is None
    pair = ThresholdRecord.from_v1({"Normal": 0.6, "Pneumonia": 0.7}, "youden on validation",
                                   "single", ["Normal", "Pneumonia"])
    assert pair.values() == {"Pneumonia": 0.7}  # a softmax decides by its positive class only
    three = ThresholdRecord.from_v1({"a": 0.1, "b": 0.2, "c": 0.3}, "youden", "single", ["a", "b", "c"])
    assert three.method is ThresholdMethod.ARGMAX and three.entries == {}
    nothing = ThresholdRecord.from_v1({"a": 0.5}, "0.5 (no validation images)")
    assert nothing.values() == {"a": None}


@pytest.mark.parametrize("change, message", [
    ({"method": "magic"}, "unknown method"),
    ({"scale": "odd"}, "scale"),
    ({"entries": {"zzz": {"value": 0.5, "status": "fixed"}}}, "not outputs"),
    ({"entries": {"a": {"value": 1.5, "status": "chosen"}}}, "value must be"),
    ({"entries": {"a": {"value": None, "status": "chosen"}}}, "needs value"),
    ({"entries": {"a": {"value": 0.5, "status": "maybe"}}}, "unknown status"),
    ({"entries": {"a": {"value": None, "status": "not_estimable", "positive_patients": -1}}}, "counts"),
    ({"method": "sensitivity"}, "target_sensitivity"),
])
def test_from_json_says_what_is_wrong(change, message):
    good = choose_record(None, None, "multilabel", ["a"], method="fixed").to_json()
    with pytest.raises(ValueError, match=message):
        ThresholdRecord.from_json({**good, **change}, ["a"])


def test_fixed_needs_no_data_and_describes_itself():
    rec = choose_record(None, None, "multilabel", ["a", "b"], method="fixed", calibration="platt")
    assert rec.values() == {"a": 0.5, "b": 0.5} and rec.describe().startswith("fixed 0.5")
    assert ThresholdRecord.from_json(rec.to_json(), ["a", "b"]) == rec

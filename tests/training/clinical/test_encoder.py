"""ClinicalEncoder: train-only fit, missing indicators, JSON round-trip, user records."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training.clinical.encoder import ClinicalEncoder, available_fields, card_metadata_vector
from training.errors import DataError

TRAIN = pd.DataFrame({"age": [20.0, 40.0, np.nan, 60.0], "temperature": [37.0, 38.0, 39.0, 40.0],
                      "sex": ["M", "F", pd.NA, "F"], "view": ["PA", "AP", "PA", pd.NA]})
TEST = pd.DataFrame({"age": [np.nan, 1000.0], "temperature": [np.nan, 37.0],
                     "sex": ["F", "X"], "view": ["L", "PA"]})


def _enc() -> ClinicalEncoder:
    return ClinicalEncoder(["age", "sex", "view", "temperature"]).fit(TRAIN)


def test_median_imputation_and_indicator_use_train_only():
    enc = _enc()
    p = enc.params
    assert p["medians"] == [40.0, 38.5]  # medians of TRAIN; TEST's 1000 never enters
    assert p["indicators"] == ["age"]  # temperature is never missing in train: no indicator
    x = enc.transform(TEST)
    names = p["output_names"]
    age = x[:, names.index("age")]
    # the missing test age is imputed with the train median → standardised train median
    assert age[0] == pytest.approx((40.0 - p["mean"][0]) / p["scale"][0], rel=1e-5)
    assert x[:, names.index("age_missing")].tolist() != [0.0, 0.0]
    # refitting with the test rows appended changes the parameters: fit really sees only its input
    other = ClinicalEncoder(enc.features).fit(pd.concat([TRAIN, TEST]))
    assert other.params["medians"] != p["medians"]


def test_transform_equals_scikit_learn_and_one_hot_handles_unknown():
    enc = _enc()
    x = enc.transform(TEST)
    np.testing.assert_allclose(x, enc.transformer.transform(enc._frame(TEST)), rtol=1e-5, atol=1e-6)
    names = enc.params["output_names"]
    sex = [n for n in names if n.startswith("sex=")]
    assert "sex=missing" in sex
    # unknown sex "X" and unknown view "L" → all-zero one-hot rows, not an error
    assert x[1, [names.index(n) for n in sex]].sum() == 0
    assert x[0, [names.index(n) for n in names if n.startswith("view=")]].sum() == 0


def test_json_round_trip_and_partial_user_records():
    enc = _enc()
    restored = ClinicalEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_allclose(restored.transform(TEST), enc.transform(TEST))
    records = [{"age": "45", "sex": "m"}, {}, {"temperature": 39.5, "view": "", "sex": None}]
    x = restored.encode_records(records)
    assert x.shape == (3, enc.width) and np.isfinite(x).all()
    full = pd.DataFrame([{"age": 45.0, "sex": "M", "view": pd.NA, "temperature": np.nan}])
    np.testing.assert_allclose(x[:1], enc.transform(full))
    card = {"metadata_encoder": enc.to_dict()}
    np.testing.assert_allclose(card_metadata_vector(card, records[0]), x[:1])


@pytest.mark.parametrize("bad", [{"age": "old"}, {"temperature": "hot"}])
def test_non_numeric_user_value_is_a_clear_error(bad):
    with pytest.raises(DataError, match="is not a number"):
        _enc().encode_records([bad])


def test_errors_unknown_field_unfitted_and_bad_json():
    with pytest.raises(DataError, match="bad clinical feature list"):
        ClinicalEncoder(["age", "shoe_size"])
    with pytest.raises(DataError, match="not fitted"):
        ClinicalEncoder(["age"]).transform(TRAIN)
    with pytest.raises(DataError, match="missing from the metadata"):
        _enc().transform(TRAIN[["age"]])
    params = _enc().to_dict()
    params["output_names"] = params["output_names"][:-1]
    with pytest.raises(DataError, match="inconsistent"):
        ClinicalEncoder.from_dict(params)


def test_available_fields_skips_empty_columns():
    meta = TRAIN.assign(offset=np.nan)
    assert available_fields(meta, ["age", "offset", "sex"]) == ["age", "sex"]


def test_field_never_seen_in_train_keeps_a_fixed_width():
    train = TRAIN.assign(lymphocyte_count=np.nan)
    enc = ClinicalEncoder(["age", "lymphocyte_count"]).fit(train)
    x = enc.encode_records([{"lymphocyte_count": 1.2}, {}])
    assert x.shape == (2, enc.width) and np.isfinite(x).all()

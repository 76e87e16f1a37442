"""The collections' shared label readers, view filter and file check."""
import numpy as np
import pandas as pd
import pytest

from training.data.collection import check_files, label_columns, label_lists, view_mask
from training.errors import DataError


def test_label_columns_canonical_names_policy_and_unknown_columns(caplog):
    df = pd.DataFrame({"Pleural Effusion": ["1.0", "-1.0", None], "Gout": ["1", "0", "1"],
                       "Nodule": ["0", "1", "-1"]})
    with caplog.at_level("INFO"):
        names, labels = label_columns(df, ["Pleural Effusion", "Gout", "Nodule"], "zeros", "x.csv")
    assert names == ["Effusion", "Nodule"] and "Gout" in caplog.text
    np.testing.assert_array_equal(labels, [[1, 0], [0, 1], [np.nan, 0]])
    with pytest.raises(DataError, match="uncertain='maybe'"):
        label_columns(df, ["Nodule"], "maybe", "x.csv")


def test_label_lists_are_exhaustive_over_what_is_annotated(caplog):
    with caplog.at_level("INFO"):
        names, labels = label_lists([["Effusion", "Gout"], []], ["Nodule", "Effusion"], "x")
    assert names == ["Effusion", "Nodule"] and "'Gout' (1)" in caplog.text
    np.testing.assert_array_equal(labels, [[1, 0], [0, 0]])


def test_view_mask_and_check_files(tmp_path):
    assert list(view_mask(pd.Series(["PA", "ap", None, "L"]), ("AP", "PA"))) == [1, 1, 0, 0]
    assert view_mask(pd.Series(["L"]), None).all()
    (tmp_path / "a.png").write_bytes(b"x")
    meta = pd.DataFrame({"path": [str(tmp_path / "a.png"), str(tmp_path / "b.png")]})
    keep, skipped = check_files(meta, "x.csv", "skip")
    assert list(keep) == [True, False] and skipped[0]["path"].endswith("b.png")
    with pytest.raises(DataError, match="1 image file"):
        check_files(meta, "x.csv", "raise")

"""The PadChest loader on a generated collection in BIMCV's published layout."""
import gzip
import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers.collections.padchest import CSV_NAME, image_id, padchest
from training.data.dataset import REQUIRED_META
from training.data.formats import detect_format, load_dataset, load_datasets
from training.data.padchest import load_padchest
from training.data.spec import DataSpec
from training.errors import DataError


def col(ds, name):
    return ds.labels[:, ds.pathologies.index(name)]


def row(ds, stem):
    return int(np.flatnonzero(ds.meta["ImageID"] == image_id(stem))[0])


def test_loads_views_meta_and_16_bit_images(tmp_path):
    ds = load_padchest(padchest(tmp_path / "pc"))
    # L and COSTAL dropped by the default views; 'nan' labels skipped with a reason
    assert sorted(ds.meta["ImageID"]) == sorted(image_id(s) for s in "acdeh")
    assert set(REQUIRED_META) <= set(ds.meta.columns) and ds.name == "padchest"
    m = ds.meta.iloc[row(ds, "a")]
    assert m["patient"] == "padchest:p1" and m["source"] == "padchest" and m["view"] == "PA"
    assert m["sex"] == "M" and m["age"] == 64.0 and m["modality"] == "X-ray"
    d = ds.meta.iloc[row(ds, "d")]
    assert d["view"] == "AP Supine" and np.isnan(d["age"])           # AP_horizontal; no birth
    assert pd.isna(ds.meta.iloc[row(ds, "e")]["sex"])               # 'O' is not M/F
    assert all(p.endswith(f"/{int(f)}/{i}") for p, f, i in
               zip(ds.meta["path"], ds.meta["ImageDir"], ds.meta["ImageID"]))
    with Image.open(ds.meta["path"][0]) as img:
        assert img.mode.startswith("I")                              # 16-bit PNG, not decoded
    assert ds.skipped == [{"path": f"{tmp_path / 'pc' / CSV_NAME}:7",
                           "reason": "Labels is not a readable list (e.g. 'nan')"}]


def test_string_lists_are_exhaustive_and_empty_lists_unknown(tmp_path):
    ds = load_padchest(padchest(tmp_path / "pc"), views=None)
    assert ds.pathologies == ["No Finding", "Pneumonia", "Cardiomegaly", "Effusion",
                              "Fracture", "Support Devices"]
    a, c, d = row(ds, "a"), row(ds, "c"), row(ds, "d")
    assert col(ds, "Pneumonia")[a] == 1 and col(ds, "Effusion")[a] == 1   # ' pleural effusion'
    assert col(ds, "No Finding")[a] == 0 and col(ds, "Cardiomegaly")[a] == 0  # not listed = 0
    assert col(ds, "No Finding")[c] == 1 and ds.labels[c].sum() == 1        # 'normal'
    assert col(ds, "Cardiomegaly")[d] == 1 and col(ds, "Support Devices")[d] == 1  # 'NSG tube'
    assert col(ds, "No Finding")[d] == 0                                    # 'chronic changes'
    assert col(ds, "Fracture")[row(ds, "g")] == 1
    # '[]' and ['exclude'] state no finding: unlabelled, never "normal"
    assert np.isnan(ds.labels[row(ds, "e")]).all() and np.isnan(ds.labels[row(ds, "h")]).all()
    assert ds.unlabelled.sum() == 2


def test_unknown_terms_logged_once_without_becoming_labels(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="training.data.collection"):
        load_padchest(padchest(tmp_path / "pc"))
    lines = [r.getMessage() for r in caplog.records if "chronic changes" in r.getMessage()]
    assert len(lines) == 1


def test_flat_layout_gzip_csv_and_views_by_padchest_name(tmp_path):
    root = padchest(tmp_path / "pc", flat=True, gz=True)
    assert not (root / CSV_NAME).exists() and (root / f"{CSV_NAME}.gz").is_file()
    ds = load_padchest(root, views=["AP_horizontal", "l"])
    assert sorted(ds.meta["view"]) == ["AP Supine", "L"]
    assert all(p == str(root / i) for p, i in zip(ds.meta["path"], ds.meta["ImageID"]))


def test_missing_images_raise_or_skip(tmp_path):
    root = padchest(tmp_path / "pc", missing="c")
    with pytest.raises(DataError, match="1 image file"):
        load_padchest(root)
    ds = load_padchest(root, on_error="skip")
    assert image_id("c") not in set(ds.meta["ImageID"])
    assert {"path": str(root / "0" / image_id("c")), "reason": "image file does not exist"} \
        in ds.skipped


def test_repeated_image_and_missing_patient_skipped(tmp_path):
    from tests.helpers.collections.padchest import ROWS

    rows = ROWS[:1] + (("a", "p9", "PA", "M", "1950.0", "20140915", "['normal']"),
                       ("z", "", "PA", "F", "1950.0", "20140915", "['normal']"))
    ds = load_padchest(padchest(tmp_path / "pc", rows=rows))
    assert len(ds) == 1 and ds.meta["patient"][0] == "padchest:p1"
    assert [s["reason"] for s in ds.skipped] == ["the same image is listed on an earlier line",
                                                 "no PatientID"]


def test_detected_and_loaded_through_the_registry(tmp_path):
    root = padchest(tmp_path / "pc")
    assert detect_format(root) == "padchest"
    assert len(load_dataset(root, views=None)) == 7


@pytest.mark.parametrize("content", [b"not gzip", None])
def test_bad_or_absent_csv_is_a_clear_error(tmp_path, content):
    root = tmp_path / "pc"
    root.mkdir()
    if content is not None:
        (root / f"{CSV_NAME}.gz").write_bytes(content)
    with pytest.raises(DataError, match="What to do"):
        load_padchest(root)


def test_csv_without_labels_column_names_it(tmp_path):
    root = padchest(tmp_path / "pc")
    text = (root / CSV_NAME).read_text().replace(",Labels,", ",Findings,")
    (root / CSV_NAME).unlink()
    (root / f"{CSV_NAME}.gz").write_bytes(gzip.compress(text.encode()))
    with pytest.raises(DataError, match="'Labels' is missing"):
        load_padchest(root)


def test_combined_with_mimic_one_column_per_finding_and_nan_where_not_annotated(tmp_path):
    from tests.helpers.collections.mimic import mimic

    spec = DataSpec((str(padchest(tmp_path / "pc")), str(mimic(tmp_path / "m"))))
    ds = load_datasets(spec)
    assert ds.pathologies.count("Effusion") == 1                # 'pleural effusion' = 'Pleural Effusion'
    pc = (ds.meta["source"] == "padchest").to_numpy()
    assert np.nansum(col(ds, "Effusion")[pc]) == 1 and np.isnan(col(ds, "Effusion")[pc]).sum() == 2
    assert np.isnan(col(ds, "Edema")[pc]).all()                 # MIMIC's finding, not PadChest's
    assert (col(ds, "Edema")[~pc] == 0).any()

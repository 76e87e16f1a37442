"""The RSNA Pneumonia loader on a generated collection in the challenge's layout."""
import json
import logging

import numpy as np
import pytest

from tests.helpers.collections.rsna import RsnaImage, make_rsna, rsna_images
from training.data.dataset import REQUIRED_META
from training.data.formats import detect_format, load_dataset
from training.data.rsna import LABELS_CSV, load_rsna
from training.errors import DataError


def col(ds, name):
    return ds.labels[:, ds.pathologies.index(name)]


@pytest.fixture(scope="module")
def rsna_root(tmp_path_factory):
    return make_rsna(tmp_path_factory.mktemp("rsna") / "rsna")


def test_one_row_per_image_labels_from_the_class(rsna_root):
    ds = load_rsna(rsna_root)
    images = rsna_images()
    assert ds.pathologies == ["No Finding", "Pneumonia", "Lung Opacity"] and ds.name == "rsna"
    assert len(ds) == len(images)  # two boxes = two CSV rows, one image
    assert list(ds.meta["image_id"]) == [im.patient_id for im in images]
    expected = {"Lung Opacity": [0, 1, 1], "Normal": [1, 0, 0],
                "No Lung Opacity / Not Normal": [0, 0, 0]}
    assert ds.labels.tolist() == [expected[im.cls] for im in images]
    assert ds.skipped == []


def test_meta_from_the_dicom_header_and_boxes(rsna_root):
    ds = load_rsna(rsna_root)
    m, images = ds.meta, rsna_images()
    assert set(REQUIRED_META) <= set(m.columns)
    assert list(m["patient"]) == [f"rsna:{im.patient_id}" for im in images]
    assert (m["source"] == "rsna").all() and (m["modality"] == "X-ray").all()
    assert list(m["view"]) == [im.view for im in images]
    assert list(m["sex"]) == [im.sex for im in images]
    assert m["age"][0] == 20.0 and np.isnan(m["age"][4])  # '148': a typing error, unknown
    assert json.loads(m["boxes"][0]) == [list(b) for b in images[0].boxes]
    assert len(json.loads(m["boxes"][0])) == 2 and json.loads(m["boxes"][1]) == []
    assert m["Target"].tolist() == [int(im.cls == "Lung Opacity") for im in images]


def test_dicom_age_strings(tmp_path):
    images = [RsnaImage(f"id-{i}", "Normal", age=age)
              for i, age in enumerate(["051Y", "006M", "", "abc"])]
    ages = load_rsna(make_rsna(tmp_path / "r", images)).meta["age"]
    assert ages[0] == 51 and ages[1] == 0.5 and ages[2:].isna().all()


def test_views_filter_on_the_header_view(rsna_root):
    ds = load_rsna(rsna_root, views=["pa"])
    assert len(ds) == 3 and (ds.meta["view"] == "PA").all()


def test_without_the_class_file_target_alone(tmp_path):
    root = make_rsna(tmp_path / "r")
    (root / "stage_2_detailed_class_info.csv").unlink()
    ds = load_rsna(root)
    target = ds.meta["Target"].to_numpy()
    assert (col(ds, "Lung Opacity") == target).all() and (col(ds, "Pneumonia") == target).all()
    no_finding = col(ds, "No Finding")
    assert np.isnan(no_finding[target == 0]).all() and (no_finding[target == 1] == 0).all()


def test_class_contradicting_target_is_an_error(tmp_path):
    root = make_rsna(tmp_path / "r")
    info = root / "stage_2_detailed_class_info.csv"
    info.write_text(info.read_text().replace(",Lung Opacity\n", ",Normal\n"))
    with pytest.raises(DataError, match="Target 1 but class 'Normal'"):
        load_rsna(root)


def test_missing_and_unreadable_dicoms_raise_or_skip(tmp_path, caplog):
    images = rsna_images()
    root = make_rsna(tmp_path / "r", images)
    (root / "stage_2_train_images" / f"{images[1].patient_id}.dcm").unlink()
    (root / "stage_2_train_images" / f"{images[2].patient_id}.dcm").write_bytes(b"not a dicom")
    with pytest.raises(DataError, match="1 image file"):
        load_rsna(root)
    (root / "stage_2_train_images" / f"{images[1].patient_id}.dcm").write_bytes(b"nor this")
    with pytest.raises(DataError, match="2 DICOM file.*header cannot be read"):
        load_rsna(root)
    with caplog.at_level(logging.INFO):
        ds = load_rsna(root, on_error="skip")
    assert len(ds) == len(images) - 2
    assert sorted(s["reason"] for s in ds.skipped) == ["unreadable DICOM header"] * 2
    # patient data (ids, tag values) never reaches the log
    assert not any(im.patient_id in caplog.text for im in images)
    assert "148" not in caplog.text


def test_header_only_pixels_never_read(tmp_path):
    images = rsna_images(3)
    root = make_rsna(tmp_path / "r", images)
    dcm = root / "stage_2_train_images" / f"{images[0].patient_id}.dcm"
    dcm.write_bytes(dcm.read_bytes()[:-2000])  # pixel data cut short
    assert len(load_rsna(root)) == 3


def test_bad_target_is_an_error_naming_the_line(tmp_path):
    root = make_rsna(tmp_path / "r")
    csv = root / LABELS_CSV
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",2"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"Target other than 0/1 \(lines 4\)"):
        load_rsna(root)


def test_detected_and_loaded_through_the_registry(rsna_root):
    assert detect_format(rsna_root) == "rsna"
    ds = load_dataset(rsna_root, views=["AP"])
    assert len(ds) == 3 and set(ds.meta["view"]) == {"AP"}

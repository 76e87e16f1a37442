"""The MIMIC-CXR-JPG loader on a generated collection in PhysioNet's published layout."""
import numpy as np
import pandas as pd
import pytest

from tests.helpers.collections.mimic import IMAGES, PREFIX, image_path, mimic
from training.config import DataOptions
from training.data.dataset import REQUIRED_META
from training.data.formats import detect_format, load_dataset, load_datasets
from training.data.mimic import load_mimic
from training.data.spec import DataSpec
from training.errors import CXRError, DataError

DICOM = {n: d for n, (d, *_rest) in enumerate(IMAGES)}


def col(ds, name):
    return ds.labels[:, ds.pathologies.index(name)]


def row(ds, n):
    return int(np.flatnonzero(ds.meta["dicom_id"] == DICOM[n])[0])


def test_gzip_csvs_frontal_views_paths_and_meta(tmp_path):
    root = mimic(tmp_path / "m")
    assert not list(root.glob("*.csv")) and len(list(root.glob("*.csv.gz"))) == 4
    ds = load_mimic(root)
    # LATERAL, LL and the blank ViewPosition dropped by the default PA, AP
    assert sorted(ds.meta["dicom_id"]) == sorted(DICOM[n] for n in (0, 2, 3, 5))
    assert set(REQUIRED_META) <= set(ds.meta.columns) and ds.name == "mimic"
    assert ds.meta["patient"][row(ds, 0)] == "mimic:10000032"
    assert (ds.meta["source"] == "mimic").all() and (ds.meta["modality"] == "X-ray").all()
    assert ds.meta["sex"].isna().all() and ds.meta["age"].isna().all()  # not in MIMIC-CXR-JPG
    d, subject, study, *_ = IMAGES[0]
    assert ds.meta["path"][row(ds, 0)] == str(image_path(root.resolve(), d, subject, study))
    assert "/files/p10/p10000032/s50414267/" in ds.meta["path"][row(ds, 0)]
    assert ds.skipped == []


def test_laterals_read_as_l_and_kept_when_asked(tmp_path):
    root = mimic(tmp_path / "m")
    ds = load_mimic(root, views=["L"])
    assert sorted(ds.meta["dicom_id"]) == sorted(DICOM[n] for n in (1, 4))
    assert (ds.meta["view"] == "L").all() and set(ds.meta["ViewPosition"]) == {"LATERAL", "LL"}
    assert len(load_mimic(root, views=["lateral"])) == 2
    every = load_mimic(root, views=None)
    assert len(every) == len(IMAGES) and pd.isna(every.meta["view"][row(every, 6)])


def test_labels_joined_per_study_blank_unknown_and_no_row_unlabelled(tmp_path):
    ds = load_mimic(mimic(tmp_path / "m"), views=None)
    assert ds.pathologies[0] == "No Finding" and "Effusion" in ds.pathologies
    assert len(ds.pathologies) == 14 and "Pleural Effusion" not in ds.pathologies
    # both images of study 50414267 (PA and lateral) carry its row
    assert col(ds, "No Finding")[row(ds, 0)] == 1 and col(ds, "No Finding")[row(ds, 1)] == 1
    assert np.isnan(col(ds, "Pneumonia")[row(ds, 0)])                    # blank = unknown
    c = row(ds, 2)
    assert col(ds, "Consolidation")[c] == 1 and col(ds, "Edema")[c] == 0
    assert np.isnan(col(ds, "Pneumonia")[c])                             # -1, ignore → NaN
    assert ds.unlabelled.tolist() == [n == 5 for n in range(len(IMAGES))]  # study without a row


@pytest.mark.parametrize("policy, value", [("ones", 1.0), ("zeros", 0.0)])
def test_uncertain_policy(tmp_path, policy, value):
    ds = load_mimic(mimic(tmp_path / "m"), uncertain=policy)
    assert col(ds, "Pneumonia")[row(ds, 2)] == value and col(ds, "Effusion")[row(ds, 3)] == value
    assert col(ds, "Atelectasis")[row(ds, 3)] == 1                       # certain values kept


def test_negbio_labeler(tmp_path):
    root = mimic(tmp_path / "m")
    assert col(ds := load_mimic(root, labeler="negbio"), "Pneumonia")[row(ds, 2)] == 1
    with pytest.raises(DataError, match="labeler='chexbert'"):
        load_mimic(root, labeler="chexbert")
    (root / f"{PREFIX}negbio.csv.gz").unlink()
    with pytest.raises(DataError, match="no mimic-cxr-2.0.0-negbio.csv"):
        load_mimic(root, labeler="negbio")


def test_official_split_becomes_official_part(tmp_path):
    ds = load_mimic(mimic(tmp_path / "m", gz=False), views=None)
    parts = [ds.meta["official_part"][row(ds, n)] for n in range(len(IMAGES))]
    assert parts == ["train", "train", "val", "test", "test", "train", "train"]
    assert "official_part" not in load_mimic(mimic(tmp_path / "n", split=False)).meta


def test_missing_images_raise_or_skip(tmp_path):
    root = mimic(tmp_path / "m", missing=DICOM[3])
    with pytest.raises(DataError, match="1 image file"):
        load_mimic(root)
    ds = load_mimic(root, on_error="skip")
    assert DICOM[3] not in set(ds.meta["dicom_id"]) and len(ds) == 3
    assert [s["reason"] for s in ds.skipped] == ["image file does not exist"]


def test_repeated_dicom_skipped(tmp_path):
    ds = load_mimic(mimic(tmp_path / "m", images=IMAGES + IMAGES[:1]))
    assert len(ds) == 4 and ds.skipped[0]["reason"].startswith("the same dicom_id")
    assert ds.skipped[0]["path"].endswith(f"{PREFIX}metadata.csv.gz:{len(IMAGES) + 2}")


def test_odd_label_value_is_a_clear_error(tmp_path):
    root = mimic(tmp_path / "m", gz=False)
    path = root / f"{PREFIX}chexpert.csv"
    path.write_text(path.read_text().replace("-1.0", "maybe", 1))
    with pytest.raises(DataError, match=r"'maybe' \(line 3 of mimic-cxr-2.0.0-chexpert.csv\)"):
        load_mimic(root)


def test_detected_and_loaded_through_the_registry(tmp_path):
    root = mimic(tmp_path / "m")
    assert detect_format(root) == "mimic"
    assert len(load_dataset(root, uncertain="ones", views=None)) == len(IMAGES)
    with pytest.raises(DataError, match="What to do"):
        load_mimic(tmp_path)


def test_labeler_flag_reaches_the_loader_through_the_spec(tmp_path):
    root = mimic(tmp_path / "m")
    spec = DataOptions(data=[str(root)], labeler="negbio").data_spec
    assert spec.labeler == "negbio" and DataSpec.from_dict(spec.to_dict()) == spec
    ds = load_datasets(spec)
    assert col(ds, "Pneumonia")[row(ds, 2)] == 1                         # negbio's row
    assert np.isnan(col(load_datasets(spec.replace(labeler="chexpert")), "Pneumonia")[row(ds, 2)])
    with pytest.raises(CXRError, match="labeler='chexbert'"):
        DataSpec((str(root),), labeler="chexbert")

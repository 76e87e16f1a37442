"""CheXpert: Path relative to the parent, blank = NaN, -1 by policy, views, valid = test."""
import shutil

import numpy as np
import pytest

from tests.helpers.collections.chexpert import FINDINGS, make_chexpert
from training.data.chexpert import image_path, load_chexpert
from training.data.formats import detect_format, load_dataset
from training.errors import DataError


@pytest.fixture
def root(tmp_path):
    return make_chexpert(tmp_path, patients=4, valid_patients=2)


def _cell(ds, row, finding):
    return ds.labels[row, ds.pathologies.index(finding)]


@pytest.mark.parametrize("policy, uncertain", [("ignore", np.nan), ("ones", 1.0), ("zeros", 0.0)])
def test_blank_is_unknown_and_minus_one_follows_the_policy(root, policy, uncertain):
    ds = load_chexpert(root, views=None, uncertain=policy)
    # row 0: cells cycle 1.0, "", -1.0, 0.0 over FINDINGS
    assert _cell(ds, 0, "No Finding") == 1 and np.isnan(_cell(ds, 0, "Enlarged Cardiomediastinum"))
    assert _cell(ds, 0, "Lung Opacity") == 0
    assert _cell(ds, 0, "Cardiomegaly") == pytest.approx(uncertain, nan_ok=True)
    assert _cell(ds, 0, "Effusion") == pytest.approx(uncertain, nan_ok=True)  # Pleural Effusion
    assert len(ds.pathologies) == len(FINDINGS) and "Nodule" not in ds.pathologies


def test_patient_from_path_views_and_valid_is_the_official_test(root):
    ds = load_dataset(root)  # default views: frontal (AP, PA) only
    assert detect_format(root) == "chexpert"
    assert set(ds.meta["view"]) <= {"AP", "PA"} and len(ds) == 4 + 2
    assert ds.meta["patient"][0] == "chexpert:patient00001" and ds.meta["study"][0] == "study1"
    assert list(ds.meta["official_part"]) == ["train"] * 4 + ["test"] * 2
    assert set(ds.meta["sex"]) == {"M", "F"} and ds.meta["age"].notna().all()
    every = load_chexpert(root, views=None)
    assert len(every) == 10 and (every.meta["view"] == "L").sum() == 4
    assert load_dataset(root, uncertain="ones").pathologies == ds.pathologies


def test_paths_relative_to_the_parent_or_to_the_renamed_folder(root, tmp_path):
    assert image_path(root, "CheXpert-v1.0-small/train/patient1/study1/v.jpg") == \
        image_path(root, "train/patient1/study1/v.jpg") == str(root / "train/patient1/study1/v.jpg")
    renamed = shutil.move(str(root), str(tmp_path / "chexpert"))
    assert len(load_chexpert(renamed)) == 6


def test_missing_images_and_bad_values_are_clear(root):
    (root / "valid" / "patient64541" / "study1" / "view1_frontal.jpg").unlink()
    with pytest.raises(DataError, match="1 image file"):
        load_chexpert(root)
    assert len(load_chexpert(root, on_error="skip").skipped) == 1
    text = (root / "train.csv").read_text().replace(",1.0,", ",yes,", 1)
    (root / "train.csv").write_text(text)
    with pytest.raises(DataError, match="has value 'yes'"):
        load_chexpert(root, on_error="skip")

"""NIH ChestX-ray14: the published CSV and layouts, No Finding, old ages, official lists."""
import numpy as np
import pytest

from tests.helpers.collections.nih import make_nih
from training.data.formats import detect_format, load_dataset
from training.data.nih import ANNOTATED, age_years, load_nih
from training.errors import DataError


@pytest.mark.parametrize("folders", [0, 3])
def test_flat_and_numbered_folder_layouts_load_every_image(tmp_path, folders):
    root = make_nih(tmp_path / "nih", folders=folders)
    assert detect_format(root) == "nih"
    ds = load_dataset(root)
    assert len(ds) == 12 and ds.meta["path"].map(lambda p: __import__("os").path.isfile(p)).all()
    assert ds.pathologies == [p for p in ds.pathologies if p in ANNOTATED]
    assert set(ds.pathologies) == set(ANNOTATED) and "Pleural Thickening" in ds.pathologies


def test_findings_are_exhaustive_and_no_finding_is_a_label(tmp_path):
    ds = load_nih(make_nih(tmp_path / "nih"))
    col = {p: ds.labels[:, ds.pathologies.index(p)] for p in ds.pathologies}
    assert not np.isnan(ds.labels).any()  # NIH lists every finding it annotates: absent = 0
    assert col["No Finding"][0] == 1 and col["Effusion"][0] == 0
    assert col["Effusion"][1] == 1 and col["Atelectasis"][1] == 1 and col["No Finding"][1] == 0
    assert col["Pleural Thickening"][4] == 1  # NIH's Pleural_Thickening
    assert "COVID-19" not in ds.pathologies  # not annotated: NaN after combining, never 0


def test_meta_patient_view_sex_age_and_official_parts(tmp_path):
    ds = load_nih(make_nih(tmp_path / "nih", patients=6, old_ages=True))
    m = ds.meta
    assert m["patient"][0] == "nih:1" and m["source"][0] == "nih" and m["modality"][0] == "X-ray"
    assert set(m["view"]) == {"PA", "AP"} and set(m["sex"]) == {"M", "F"}
    assert m["age"][0] == 27.0 and m["follow_up"][1] == 1
    assert list(m["official_part"]) == ["train"] * 8 + ["test"] * 4
    assert len(load_nih(tmp_path / "nih", views=("AP",))) == 4


def test_without_official_lists_there_is_no_official_part(tmp_path):
    assert "official_part" not in load_nih(make_nih(tmp_path / "n", official=False)).meta


@pytest.mark.parametrize("text, years", [("058Y", 58.0), ("58", 58.0), ("006M", 0.5),
                                         ("414", np.nan), ("", np.nan), (None, np.nan)])
def test_ages(text, years):
    assert age_years(text) == pytest.approx(years, nan_ok=True)


def test_missing_images_raise_or_are_skipped(tmp_path):
    root = make_nih(tmp_path / "nih", missing=2)
    with pytest.raises(DataError, match="2 image file"):
        load_nih(root)
    ds = load_nih(root, on_error="skip")
    assert len(ds) == 10 and [s["reason"] for s in ds.skipped] == ["image file does not exist"] * 2


def test_a_folder_without_the_csv_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="Data_Entry_2017"):
        load_nih(tmp_path)

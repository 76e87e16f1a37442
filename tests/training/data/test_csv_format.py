"""Generic CSV datasets: label column or one column per pathology."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.images import write_image
from training.data.csv_format import load_csv, read_csv_text
from training.data.dataset import PATHOLOGIES, REQUIRED_META
from training.errors import DataError, UnknownLabelError


def make(tmp_path: Path, text: str, images=("a.png", "b.png", "c.png"), encoding="utf-8",
         name="mine.csv") -> Path:
    for image in images:
        write_image(tmp_path / "img" / image, h=8, w=8)
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def col(ds, name):
    return ds.labels[:, PATHOLOGIES.index(name)]


def test_label_column(tmp_path):
    path = make(tmp_path, "path,patient,label,sex,age,site\n"
                          "img/a.png,p1,COVID-19|ARDS,male,70,Hôpital\n"
                          "img/b.png,p1,Pneumonia,F,?,x\n"
                          f"{tmp_path / 'img' / 'c.png'},p2,,,,\n")
    ds = load_csv(path)
    assert ds.name == "mine" and ds.pathologies == list(PATHOLOGIES)
    assert set(REQUIRED_META) <= set(ds.meta.columns) and "site" in ds.meta.columns
    assert list(ds.meta["patient"]) == ["mine:p1", "mine:p1", "mine:p2"]
    assert all(Path(p).is_file() and Path(p).is_absolute() for p in ds.meta["path"])
    assert col(ds, "COVID-19")[0] == 1 and col(ds, "ARDS")[0] == 1
    assert col(ds, "Pneumonia")[1] == 1 and np.isnan(col(ds, "ARDS")[1])  # not exhaustive
    assert ds.unlabelled.tolist() == [False, False, True]
    assert ds.meta["sex"][0] == "M" and ds.meta["age"][0] == 70 and np.isnan(ds.meta["age"][1])
    assert ds.meta["finding"][0] == "COVID-19|ARDS"


def test_pathology_columns_with_hierarchy(tmp_path):
    path = make(tmp_path, "path,patient,COVID-19,no finding,Pneumonia\n"
                          "img/a.png,p1,1,,\n"
                          "img/b.png,p2,0,1,\n"
                          "img/c.png,p3,,,1.0\n")
    ds = load_csv(path)
    assert col(ds, "COVID-19").tolist()[:2] == [1, 0] and np.isnan(col(ds, "COVID-19")[2])
    assert col(ds, "Viral Pneumonia")[0] == 1 and col(ds, "Pneumonia")[0] == 1  # implied
    assert (ds.labels[1, 1:] == 0).all() and col(ds, "No Finding")[1] == 1
    assert col(ds, "Pneumonia")[2] == 1 and np.isnan(col(ds, "SARS")[2])


def test_source_column_prefixes_patients(tmp_path):
    path = make(tmp_path, "path,patient,label,source\nimg/a.png,1,COVID-19,siteA\nimg/b.png,1,COVID-19,\n")
    ds = load_csv(path)
    assert list(ds.meta["patient"]) == ["siteA:1", "mine:1"]
    assert list(ds.meta["source"]) == ["siteA", "mine"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1"])
def test_encodings(tmp_path, encoding):
    path = make(tmp_path, "path,patient,label,location\nimg/a.png,p1,COVID-19,Hôpital\n", encoding=encoding)
    assert load_csv(path).meta["location"][0] == "Hôpital"


def test_unknown_label(tmp_path):
    path = make(tmp_path, "path,patient,label\nimg/a.png,p1,COVID-19\nimg/b.png,p2,Lung Opacity\n")
    with pytest.raises(UnknownLabelError) as info:
        load_csv(path)
    msg = str(info.value)
    assert "mine.csv" in msg and "line 3" in msg and "'Lung Opacity'" in msg and "covid-19" in msg
    ds = load_csv(path, on_error="skip")
    assert len(ds) == 1 and ds.skipped[0]["path"].endswith("b.png")
    assert "Lung Opacity" in ds.skipped[0]["reason"]


@pytest.mark.parametrize("text, match", [
    ("path,patient,COVID-19\nimg/a.png,p1,2\n", r"line 2: column 'COVID-19' has value '2'"),
    ("path,patient,COVID-19\nimg/a.png,p1,yes\n", "has value 'yes'"),
    ("path,patient,No Finding,COVID-19\nimg/a.png,p1,1,1\n", "line 2: contradictory labels"),
    ("path,patient,label\nimg/a.png,,COVID-19\n", "line 2: no patient id"),
    ("path,patient,label\n,p1,COVID-19\n", "line 2: no image path"),
    ("path,patient,label\nimg/a.png,p1,COVID-19\nimg/a.png,p2,SARS\n", "line 3: image .* listed twice"),
])
def test_bad_rows_raise_or_skip(tmp_path, text, match):
    path = make(tmp_path, text)
    with pytest.raises(DataError, match=match):
        load_csv(path)
    ds = load_csv(path, on_error="skip")
    assert len(ds.skipped) == 1 and len(ds) == text.count("\n") - 2


@pytest.mark.parametrize("text, match", [
    ("patient,label\np1,COVID-19\n", "required column 'path' is missing"),
    ("path,label\nimg/a.png,COVID-19\n", "required column 'patient' is missing"),
    ("path,patient\nimg/a.png,p1\n", "no labels"),
    ("path,patient,label,SARS\nimg/a.png,p1,COVID-19,0\n", "both a 'label' column"),
    ("", "not a readable CSV"),
])
def test_bad_files(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_csv(make(tmp_path, text))


def test_missing_image(tmp_path):
    path = make(tmp_path, "path,patient,label\nimg/a.png,p1,COVID-19\nimg/zz.png,p2,SARS\n")
    with pytest.raises(DataError, match=r"1 image file\(s\).*zz\.png.*--on-error skip"):
        load_csv(path)
    ds = load_csv(path, on_error="skip")
    assert len(ds) == 1 and ds.skipped == [{"path": str(tmp_path / "img" / "zz.png"),
                                            "reason": "image file does not exist"}]


def test_read_csv_text_keeps_strings(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n007,NA\n,x\n")
    df = read_csv_text(path)
    assert df["a"][0] == "007" and df["b"][0] == "NA" and pd.isna(df["a"][1])


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="cannot read the CSV"):
        read_csv_text(tmp_path / "nope.csv")

"""The COVIDx loader on generated collections in its published layout (both class styles)."""
import logging
import shutil

import numpy as np
import pytest

from tests.helpers.collections.covidx import (BINARY, IMAGES, THREE_CLASS, covidx_lines,
                                              make_covidx)
from tests.helpers.images import write_xray
from training.data.content import content_groups, file_digests
from training.data.covidx import load_covidx
from training.data.dataset import PATHOLOGIES, REQUIRED_META
from training.data.formats import combine, detect_format, load_dataset
from training.data.ieee8023 import load_ieee8023
from training.errors import DataError

NAN = float("nan")


def labels_of(ds, cls):
    """The rows of class ``cls`` as {pathology: value}, checked to be all alike."""
    rows = ds.labels[(ds.meta["class"] == cls).to_numpy()]
    assert len(rows) and np.array_equal(rows, rows[:1].repeat(len(rows), 0), equal_nan=True)
    return dict(zip(ds.pathologies, rows[0].tolist()))


def test_binary_style(tmp_path):
    ds = load_covidx(make_covidx(tmp_path / "c", BINARY))
    assert ds.name == "covidx" and len(ds) == len(IMAGES)
    # binary files decide no ARDS: the column is left out (NaN after combine), never 0
    assert ds.pathologies == [p for p in PATHOLOGIES if p != "ARDS"]
    assert labels_of(ds, "positive") == {
        "No Finding": 0, "Pneumonia": 1, "Bacterial Pneumonia": 0, "Viral Pneumonia": 1,
        "Fungal Pneumonia": 0, "COVID-19": 1, "SARS": 0}
    negative = labels_of(ds, "negative")
    assert negative.pop("COVID-19") == 0 and all(np.isnan(v) for v in negative.values())


def test_three_class_style(tmp_path):
    ds = load_covidx(make_covidx(tmp_path / "c", THREE_CLASS))
    assert ds.pathologies == list(PATHOLOGIES)
    assert labels_of(ds, "COVID-19")["COVID-19"] == 1 and labels_of(ds, "COVID-19")["Viral Pneumonia"] == 1
    pneumonia = labels_of(ds, "pneumonia")  # non-COVID pneumonia of unknown type
    assert pneumonia["Pneumonia"] == 1 and pneumonia["COVID-19"] == 0 and pneumonia["No Finding"] == 0
    assert np.isnan(pneumonia["Bacterial Pneumonia"]) and np.isnan(pneumonia["Viral Pneumonia"])
    normal = labels_of(ds, "normal")
    assert normal.pop("No Finding") == 1 and set(normal.values()) == {0.0}


def test_meta_parts_and_origins(tmp_path):
    root = make_covidx(tmp_path / "c")
    ds = load_covidx(root)
    m = ds.meta
    assert set(REQUIRED_META) <= set(m.columns)
    listed = [(f"covidx:{line.split()[0]}", line.split()[-1], part)
              for part, lines in covidx_lines().items() for line in lines]  # file order
    assert list(zip(m["patient"], m["origin"], m["official_part"])) == listed
    assert sorted(m["official_part"]) == ["test", "train", "train", "train", "train", "val"]
    assert (m["source"] == "covidx").all()
    assert all(str(p).startswith(str(root.resolve() / part))
               for p, part in zip(m["path"], m["official_part"]))
    assert m["view"].isna().all() and (m["modality"] == "X-ray").all()


def test_origins_filter_and_shared_origin_warning(tmp_path, caplog):
    root = make_covidx(tmp_path / "c")
    with caplog.at_level(logging.WARNING):
        ds = load_covidx(root)
    assert "1 from ieee8023 (cohen), 1 from rsna (rsna)" in caplog.text
    assert not any(p in caplog.text for p, _, _ in IMAGES if len(p) > 3)  # no patient id logged
    kept = load_covidx(root, origins=["BIMCV", "ricord"])
    assert sorted(kept.meta["origin"]) == ["bimcv", "ricord"] and len(ds) == 6


def test_filename_with_spaces(tmp_path):
    lines = {"train": ["12 covid 19 case 3.png positive sirm"], "test": []}
    ds = load_covidx(make_covidx(tmp_path / "c", lines=lines))
    assert ds.meta["filename"].tolist() == ["covid 19 case 3.png"]
    assert ds.meta["patient"].tolist() == ["covidx:12"] and ds.meta["origin"][0] == "sirm"


@pytest.mark.parametrize("bad, reason", [
    ("9 x.png Tuberculosis cohen", "unknown class"),
    ("9 x.png positive", "not 'patient_id filename class source'"),
])
def test_bad_lines_raise_or_skip(tmp_path, bad, reason):
    lines = covidx_lines()
    lines["test"].append(bad)
    root = make_covidx(tmp_path / "c", lines=covidx_lines())
    (root / "test.txt").write_text("".join(f"{r}\n" for r in lines["test"]))
    write_xray(root / "test" / "x.png", h=32, w=32)
    with pytest.raises(DataError, match=r"test.txt:2"):
        load_covidx(root)
    ds = load_covidx(root, on_error="skip")
    assert len(ds) == len(IMAGES) and ds.skipped[0]["path"].endswith("test.txt:2")
    assert reason in ds.skipped[0]["reason"]


def test_missing_or_repeated_image(tmp_path):
    root = make_covidx(tmp_path / "c")
    first = covidx_lines()["train"][0]
    (root / "train.txt").write_text((root / "train.txt").read_text() + first + "\n")
    with pytest.raises(DataError, match="image listed twice"):
        load_covidx(root)
    (root / "train" / IMAGES[1][1]).unlink()
    ds = load_covidx(root, on_error="skip")
    assert sorted(s["reason"] for s in ds.skipped) == ["image file does not exist",
                                                       "image listed twice"]
    assert len(ds) == len(IMAGES) - 1


def test_detected_and_loaded_through_the_registry(tmp_path):
    root = make_covidx(tmp_path / "c")
    assert detect_format(root) == "covidx"
    assert len(load_dataset(root, views=["PA"])) == len(IMAGES)  # views: not a COVIDx option


def test_an_image_shared_with_ieee8023_is_one_split_group(tmp_path):
    """COVIDx copies ieee8023 images unchanged: combined, the two rows have different paths
    (combine accepts them) but identical bytes, and content grouping links their patients."""
    ieee = tmp_path / "ieee8023"
    write_xray(ieee / "images" / "a.png", seed=1)
    write_xray(ieee / "images" / "b.png", seed=2)
    (ieee / "metadata.csv").write_text(
        "patientid,finding,view,modality,folder,filename\n"
        "3,Pneumonia/Viral/SARS,PA,X-ray,images,a.png\n4,No Finding,PA,X-ray,images,b.png\n")
    covidx = make_covidx(tmp_path / "c")
    shutil.copyfile(ieee / "images" / "a.png", covidx / "train" / IMAGES[1][1])
    ds = combine([load_ieee8023(ieee), load_covidx(covidx)])
    assert "ARDS" in ds.pathologies and np.isnan(ds.labels[2:, ds.pathologies.index("ARDS")]).all()
    groups, linked = content_groups(ds.meta["patient"], file_digests(ds.meta["path"]))
    shared = ds.meta.index[ds.meta["path"].str.endswith(("a.png", IMAGES[1][1]))]
    assert linked == 2 and groups[shared[0]] == groups[shared[1]]
    assert len(set(groups)) == len(set(ds.meta["patient"])) - 1

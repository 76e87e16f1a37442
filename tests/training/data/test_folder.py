"""Class-folder datasets (Kermany layout and generic class folders)."""
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.images import write_dicom, write_image
from training.data.dataset import PATHOLOGIES, REQUIRED_META
from training.data.folder import class_labels, kermany_patient, load_folder
from training.errors import DataError, UnknownLabelError

SHARED = Path(__file__).resolve().parents[3].parent / "shared/data/kermany-pneumonia"
KERMANY = {
    "NORMAL": ["IM-0115-0001.jpeg", "IM-0115-0002.jpeg", "NORMAL2-IM-0771-0001.jpeg"],
    "PNEUMONIA": ["person1000_bacteria_2931.jpeg", "person1000_virus_1681.jpeg",
                  "person1001_virus_1682.jpeg"],
}


def make(root: Path, layout: dict[str, list[str]], split: str | None = "train") -> Path:
    base = root / split if split else root
    for cls, names in layout.items():
        (base / cls).mkdir(parents=True, exist_ok=True)
        for name in names:
            if name.endswith(".dcm"):
                write_dicom(base / cls / name, h=8, w=8)
            else:
                write_image(base / cls / name, h=8, w=8)
    return root


def col(ds, name):
    return ds.labels[:, PATHOLOGIES.index(name)]


def test_kermany_layout(tmp_path):
    ds = load_folder(make(tmp_path / "k", KERMANY))
    assert ds.name == "kermany" and ds.pathologies == list(PATHOLOGIES)
    assert set(REQUIRED_META) <= set(ds.meta.columns)
    assert list(ds.meta["patient"]) == [
        "kermany:IM-0115", "kermany:IM-0115", "kermany:NORMAL2-IM-0771",
        "kermany:person1000", "kermany:person1000", "kermany:person1001"]
    assert (ds.meta["orig_split"] == "train").all() and (ds.meta["source"] == "kermany").all()
    assert col(ds, "No Finding").tolist() == [1, 1, 1, 0, 0, 0]
    assert (ds.labels[:3, 1:] == 0).all()  # normal: every disease 0
    assert col(ds, "Pneumonia")[3:].tolist() == [1, 1, 1]
    assert col(ds, "Bacterial Pneumonia")[3:].tolist() == [1, 0, 0]
    assert col(ds, "Viral Pneumonia")[3:].tolist() == [0, 1, 1]
    assert (col(ds, "COVID-19")[3:] == 0).all() and (col(ds, "SARS")[3:] == 0).all()
    assert np.isnan(col(ds, "Fungal Pneumonia")[3:]).all() and np.isnan(col(ds, "ARDS")[3:]).all()
    assert ds.skipped == []


def test_splits_and_plain_class_layout(tmp_path):
    root = make(tmp_path / "k", KERMANY, "train")
    make(root, {"NORMAL": ["IM-0200-0001.jpeg"], "PNEUMONIA": ["person5_virus_9.jpeg"]}, "test")
    ds = load_folder(root)
    assert sorted(set(ds.meta["orig_split"])) == ["test", "train"] and len(ds) == 8
    plain = load_folder(make(tmp_path / "p", KERMANY, split=None))
    assert len(plain) == 6 and plain.meta["orig_split"].isna().all()


def test_generic_names_one_patient_each_with_one_warning(tmp_path):
    root = make(tmp_path / "mydata", {"covid": ["a.png", "b.jpg"], "Normal": ["c.dcm"],
                                      "Viral_Pneumonia": ["d.PNG"]}, split=None)
    with pytest.warns(UserWarning, match=r"4 of 4 file name\(s\)") as record:
        ds = load_folder(root)
    assert len(record) == 1
    assert ds.name == "mydata" and (ds.meta["source"] == "mydata").all()
    assert ds.meta["patient"].nunique() == 4 and ds.meta["patient"][0] == "mydata:Normal/c"
    by_class = dict(zip(ds.meta["class"], ds.labels))
    covid = by_class["covid"]
    assert covid[PATHOLOGIES.index("COVID-19")] == 1 and covid[PATHOLOGIES.index("Viral Pneumonia")] == 1
    assert covid[PATHOLOGIES.index("Pneumonia")] == 1 and covid[PATHOLOGIES.index("No Finding")] == 0
    viral = by_class["Viral_Pneumonia"]
    assert viral[PATHOLOGIES.index("Viral Pneumonia")] == 1 and np.isnan(viral[PATHOLOGIES.index("COVID-19")])


def test_kermany_rule_only_for_kermany_names(tmp_path):
    root = make(tmp_path / "k", {"PNEUMONIA": ["person1_bacteria_1.jpeg", "person2_bacteria_2.jpeg",
                                               "other.png"]})
    with pytest.warns(UserWarning, match="1 of 3"):
        ds = load_folder(root)
    assert ds.name == "kermany"
    other = ds.labels[ds.meta["filename"] == "other.png"][0]
    assert other[PATHOLOGIES.index("Pneumonia")] == 1
    assert np.isnan(other[[PATHOLOGIES.index(p) for p in
                           ("Bacterial Pneumonia", "Viral Pneumonia", "COVID-19", "SARS")]]).all()


@pytest.mark.parametrize("stem, expected", [
    ("person1000_bacteria_2931", ("person1000", "bacteria")),
    ("person1001_virus_1681", ("person1001", "virus")),
    ("person1_virus_11_2", ("person1", "virus")),
    ("IM-0115-0001", ("IM-0115", None)),
    ("IM-0117-0001-0001", ("IM-0117", None)),
    ("NORMAL2-IM-0771-0001", ("NORMAL2-IM-0771", None)),
    ("NORMAL2-IM-1345-0001-0001", ("NORMAL2-IM-1345", None)),
    ("scan_01", (None, None)),
])
def test_kermany_patient(stem, expected):
    assert kermany_patient(stem) == expected


@pytest.mark.parametrize("name", ["NORMAL", "Normal", "PNEUMONIA", "COVID", "COVID-19", "covid19",
                                  "SARS", "ards", "Bacterial_Pneumonia", "No Finding"])
def test_class_labels_known(name):
    assert (class_labels(name) == 1).sum() >= 1


def test_unknown_class_folder(tmp_path):
    root = make(tmp_path / "k", {**KERMANY, "Lung_Opacity": ["x.png"]})
    with pytest.raises(UnknownLabelError) as info:
        load_folder(root)
    msg = str(info.value)
    assert "Lung_Opacity" in msg and "NORMAL" in msg and "PNEUMONIA" in msg and "COVID" in msg
    ds = load_folder(root, on_error="skip")
    assert len(ds) == 6 and len(ds.skipped) == 1 and "Lung_Opacity" in ds.skipped[0]["reason"]


def test_empty_class_folder(tmp_path):
    root = make(tmp_path / "k", KERMANY)
    (root / "train" / "COVID").mkdir()
    with pytest.raises(DataError, match=r"train/COVID: empty class folder"):
        load_folder(root)
    ds = load_folder(root, on_error="skip")
    assert len(ds) == 6 and ds.skipped[0]["path"].endswith("COVID")


def test_non_image_files_recorded_not_dropped_silently(tmp_path):
    root = make(tmp_path / "k", KERMANY)
    (root / "train" / "NORMAL" / "notes.txt").write_text("hi")
    (root / "train" / "NORMAL" / ".DS_Store").write_text("junk")
    ds = load_folder(root)
    assert len(ds) == 6
    assert [Path(s["path"]).name for s in ds.skipped] == ["notes.txt"]


@pytest.mark.parametrize("setup, match", [
    (lambda r: r.mkdir(), "no class folders"),
    (lambda r: (r / "train").mkdir(parents=True) or (r / "NORMAL").mkdir(), "mixes split folders"),
    (lambda r: (r / "NORMAL").mkdir(parents=True), "empty class folder"),
])
def test_bad_layouts(tmp_path, setup, match):
    root = tmp_path / "bad"
    setup(root)
    with pytest.raises(DataError, match=match):
        load_folder(root)


needs_shared = pytest.mark.skipif(not (SHARED / "train").is_dir(), reason="shared Kermany data not present")


@needs_shared
def test_shared_kermany():
    ds = load_folder(SHARED)
    assert len(ds) == 4419 and ds.name == "kermany" and ds.skipped == []
    assert int(col(ds, "No Finding").sum()) == 1121
    assert int(col(ds, "Bacterial Pneumonia").sum()) == 2148
    assert int(col(ds, "Viral Pneumonia").sum()) == 1150
    assert int(col(ds, "Pneumonia").sum()) == 3298 and not ds.unlabelled.any()
    # patients, counted independently from the file names
    names = [p.stem for p in (SHARED / "train").glob("*/*.jpeg")]
    def patient(name: str) -> str:  # "personN_..." or "[NORMAL2-]IM-NNNN-..."
        if name.startswith("person"):
            return name.split("_")[0]
        parts = name.split("-")
        return "-".join(parts[: parts.index("IM") + 2])

    expected = {patient(n) for n in names}
    assert ds.meta["patient"].nunique() == len(expected) == 2418

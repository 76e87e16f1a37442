"""Format registry, auto-detection, and combining datasets."""
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.images import write_image
from training.data.dataset import PATHOLOGIES, CXRDataset
from training.data.formats import FORMATS, combine, detect_format, load_dataset, load_datasets
from training.data.spec import DataSpec
from training.errors import DataError

SHARED = Path(__file__).resolve().parents[3].parent / "shared/data"


def make_ieee(root: Path) -> Path:
    write_image(root / "images" / "a.png", h=8, w=8)
    write_image(root / "images" / "b.png", h=8, w=8)
    (root / "metadata.csv").write_text(
        "patientid,finding,view,modality,folder,filename\n"
        "1,COVID-19,PA,X-ray,images,a.png\n2,Pneumocystis,L,X-ray,images,b.png\n")
    return root


def make_folder(root: Path) -> Path:
    write_image(root / "train" / "NORMAL" / "IM-0001-0001.jpeg", h=8, w=8)
    write_image(root / "train" / "PNEUMONIA" / "person1_virus_1.jpeg", h=8, w=8)
    return root


def make_csv(root: Path) -> Path:
    write_image(root / "x.png", h=8, w=8)
    path = root / "list.csv"
    path.write_text("path,patient,label\nx.png,1,SARS\n")
    return path


MAKERS = {"ieee8023": make_ieee, "folder": make_folder, "csv": make_csv}


def test_registry_is_complete():
    """Every format is tested: here, or (a public collection) in its own test_<name>.py."""
    own = {f.stem.removeprefix("test_") for f in Path(__file__).parent.glob("test_*.py")}
    assert set(MAKERS) <= set(FORMATS) <= set(MAKERS) | own


def test_pathologies_keep_those_columns_in_order_and_name_the_collections(tmp_path):
    from tests.helpers.collections.nih import make_nih

    paths = [make_ieee(tmp_path / "i"), make_nih(tmp_path / "n", patients=3, per_patient=1)]
    ds = load_datasets(DataSpec(paths, pathologies="nodule,COVID-19"))
    assert ds.pathologies == ["Nodule", "COVID-19"] and len(ds) == 4
    ieee = (ds.meta["source"] == "ieee8023").to_numpy()
    assert np.isnan(ds.labels[ieee, 0]).all() and np.isnan(ds.labels[~ieee, 1]).all()
    with pytest.raises(DataError, match=r"no loaded collection \(ieee8023\) annotates \['Hernia'\]"):
        load_datasets(DataSpec(paths[:1], pathologies="Hernia"))


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_detect_and_load_each_format(tmp_path, fmt):
    path = MAKERS[fmt](tmp_path / "d")
    assert detect_format(path) == fmt
    ds = load_dataset(path)
    assert isinstance(ds, CXRDataset) and ds.pathologies == list(PATHOLOGIES) and len(ds) >= 1
    assert load_dataset(path, fmt=fmt).meta.equals(ds.meta)


def test_options_reach_the_loader_that_takes_them(tmp_path):
    path = make_ieee(tmp_path / "d")
    assert len(load_dataset(path)) == 1
    assert len(load_dataset(path, views=None)) == 2
    assert len(load_dataset(make_folder(tmp_path / "f"), views=None)) == 2  # not a folder option
    with pytest.raises(TypeError, match="unknown dataset option"):
        load_dataset(path, view=("PA",))


@pytest.mark.parametrize("setup, match", [
    (lambda p: p, "does not exist"),
    (lambda p: p.mkdir() or p, "cannot tell the dataset format"),
    (lambda p: (p.mkdir(), (p / "x.txt").write_text("x"))[0] or p / "x.txt", "cannot tell"),
])
def test_detect_errors(tmp_path, setup, match):
    with pytest.raises(DataError, match=match) as info:
        detect_format(setup(tmp_path / "d"))
    if match == "cannot tell the dataset format":
        assert "metadata.csv" in str(info.value) and "class subfolders" in str(info.value)


def test_unknown_format_name(tmp_path):
    with pytest.raises(DataError, match="unknown dataset format 'dicomdir'"):
        load_dataset(make_csv(tmp_path), fmt="dicomdir")


def test_load_datasets_combines(tmp_path):
    paths = [make_ieee(tmp_path / "i"), make_folder(tmp_path / "k"), make_csv(tmp_path / "c")]
    ds = load_datasets(DataSpec(paths, views="all"))
    assert ds.name == "ieee8023+kermany+list" and len(ds) == 5
    assert list(ds.meta["source"]) == ["ieee8023"] * 2 + ["kermany"] * 2 + ["list"]
    assert all(p.split(":")[0] == s for p, s in zip(ds.meta["patient"], ds.meta["source"]))
    assert ds.meta["patient"].nunique() == 5  # "1" in ieee8023 and csv do not collide
    assert ds.labels[:, PATHOLOGIES.index("SARS")][-1] == 1
    assert "orig_split" in ds.meta.columns and ds.meta["orig_split"][:2].isna().all()


def test_combine_aligns_pathologies_and_keeps_skipped():
    import pandas as pd
    meta = lambda p: pd.DataFrame({"path": [p], "patient": ["s:1"], "source": ["s"], "view": [None],
                                   "modality": [None], "sex": [None], "age": [np.nan]})
    a = CXRDataset(["A", "B"], [[1, 0]], meta("/a"), "a", [{"path": "/x", "reason": "r"}])
    b = CXRDataset(["B", "C"], [[1, 1]], meta("/b"), "b")
    ds = combine([a, b])
    assert ds.pathologies == ["A", "B", "C"] and ds.name == "a+b"
    np.testing.assert_array_equal(ds.labels, [[1, 0, np.nan], [np.nan, 1, 1]])
    assert ds.skipped == [{"path": "/x", "reason": "r"}]
    with pytest.raises(DataError, match="also in an earlier dataset"):
        combine([a, a])


@pytest.mark.skipif(not (SHARED / "kermany-pneumonia").is_dir()
                    or not (SHARED / "ieee8023-covid-chestxray").is_dir(), reason="shared data not present")
def test_shared_auto_and_combined():
    ieee, kermany = SHARED / "ieee8023-covid-chestxray", SHARED / "kermany-pneumonia"
    assert detect_format(ieee) == "ieee8023" and detect_format(kermany) == "folder"
    ds = load_datasets(DataSpec([ieee, kermany], on_error="skip"))
    assert ds.name == "ieee8023+kermany" and len(ds) == 555 + 4419
    assert ds.meta.groupby("source")["patient"].apply(lambda s: s.str.startswith(s.name + ":").all()).all()

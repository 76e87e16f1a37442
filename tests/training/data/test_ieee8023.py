"""The ieee8023 loader on generated fixtures and on the shared data when present."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.images import write_image
from training.data.dataset import PATHOLOGIES, REQUIRED_META
from training.data.ieee8023 import load_ieee8023
from training.errors import DataError

SHARED = Path(__file__).resolve().parents[3].parent / "shared/data/ieee8023-covid-chestxray"
COLUMNS = ("patientid,offset,sex,age,finding,survival,intubated,went_icu,temperature,"
           "pO2_saturation,view,modality,date,location,folder,filename,license")
ROWS = [
    "1,0,M,65,COVID-19,Y,N,?,38.1,?,PA,X-ray,2020,Hôpital Bichat,images,a.png,CC BY",
    "1,3,M,65,\"COVID-19, ARDS\",Y,Not visible,Y,,93,AP Supine,X-ray,2020,Hôpital Bichat,images,b.jpg,",
    "2,,F,?,todo,,,,,,AP,X-ray,,Milano,images,c.png,",
    "3,,,40,Pneumonia/Bacterial/Streptococcus,N,,,,,PA,X-ray,,,images,d.png,",
    "4,,M,30,No Finding,,,,,,L,X-ray,,,images,e.png,",
    "5,,F,50,COVID-19,,,,,,Axial,CT,,,volumes,f.nii.gz,",
]
WEIRD = "6,,F,50,Weird Finding,,,,,,PA,X-ray,,,images,g.png,"


def make(root: Path, rows=ROWS, columns=COLUMNS, encoding="utf-8", images="abcdeg") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for name in images:
        ext = ".jpg" if name == "b" else ".png"
        write_image(root / "images" / f"{name}{ext}", h=8, w=8)
    (root / "metadata.csv").write_bytes(("\n".join([columns, *rows]) + "\n").encode(encoding))
    return root


def col(ds, name):
    return ds.labels[:, PATHOLOGIES.index(name)]


def test_loads_filters_and_labels(tmp_path):
    ds = load_ieee8023(make(tmp_path / "d"))
    assert ds.pathologies == list(PATHOLOGIES) and ds.name == "ieee8023"
    # L view and CT volume filtered out; the unknown finding kept as unlabelled
    assert list(ds.meta["filename"]) == ["a.png", "b.jpg", "c.png", "d.png"]
    assert set(REQUIRED_META) <= set(ds.meta.columns)
    assert list(ds.meta["patient"][:3]) == ["ieee8023:1", "ieee8023:1", "ieee8023:2"]
    assert (ds.meta["source"] == "ieee8023").all()
    assert all(Path(p).is_absolute() and Path(p).exists() for p in ds.meta["path"])
    assert col(ds, "COVID-19")[:2].tolist() == [1, 1] and col(ds, "ARDS")[:2].tolist() == [0, 1]
    assert ds.unlabelled.tolist() == [False, False, True, False]
    assert col(ds, "Bacterial Pneumonia")[3] == 1 and col(ds, "COVID-19")[3] == 0
    assert ds.skipped == []


def test_unknown_finding_kept_unlabelled_with_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"1 row\(s\).*'Weird Finding': 1"):
        ds = load_ieee8023(make(tmp_path / "d", rows=ROWS + [WEIRD]))
    assert ds.meta["filename"].iloc[-1] == "g.png" and ds.meta["finding"].iloc[-1] == "Weird Finding"
    assert ds.unlabelled[-1] and len(ds) == 5


def test_meta_values_parsed(tmp_path):
    ds = load_ieee8023(make(tmp_path / "d"))
    m = ds.meta
    assert m["age"].tolist()[:2] == [65.0, 65.0] and np.isnan(m["age"][2])  # '?' → NaN
    assert m["temperature"][0] == pytest.approx(38.1) and np.isnan(m["temperature"][1])
    assert np.isnan(m["pO2_saturation"][0]) and m["pO2_saturation"][1] == 93
    assert m["offset"].tolist()[:2] == [0.0, 3.0]
    assert m["survival"].tolist()[:4] == ["Y", "Y", "NA", "N"]
    assert m["intubated"].tolist()[:2] == ["N", "NA"]       # 'Not visible' → NA
    assert m["went_icu"].tolist()[:2] == ["NA", "Y"]        # '?' → NA
    assert m["extubated"].eq("NA").all()                    # column absent → NA
    assert m["sex"].tolist()[:3] == ["M", "M", "F"] and pd.isna(m["sex"][3])
    assert m["finding"][1] == "COVID-19, ARDS"
    assert m["location"][0] == "Hôpital Bichat"
    assert pd.isna(m["lymphocyte_count"]).all()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252"])
def test_encodings(tmp_path, encoding):
    ds = load_ieee8023(make(tmp_path / "d", encoding=encoding), views=None)
    assert ds.meta["location"][0] == "Hôpital Bichat"
    assert "patientid" not in ds.meta.columns and ds.meta["patient"][0] == "ieee8023:1"


def test_filters_none_keep_everything_and_volumes_missing(tmp_path):
    root = make(tmp_path / "d")
    with pytest.raises(DataError, match=r"1 image file.*f\.nii\.gz.*--on-error skip"):
        load_ieee8023(root, views=None, modalities=None)
    ds = load_ieee8023(root, views=None, modalities=None, on_error="skip")
    assert len(ds) == 5 and "L" in set(ds.meta["view"])
    assert [Path(s["path"]).name for s in ds.skipped] == ["f.nii.gz"]


@pytest.mark.parametrize("views, n", [(("PA",), 2), ("AP", 1), (("ap supine", "ap"), 2)])
def test_view_filter(tmp_path, views, n):
    ds = load_ieee8023(make(tmp_path / "d"), views=views)
    assert len(ds) == n


def test_missing_image_raises_or_is_skipped(tmp_path):
    root = make(tmp_path / "d", images="abdeg")  # c.png missing
    with pytest.raises(DataError) as info:
        load_ieee8023(root)
    msg = str(info.value)
    assert "1 image file(s)" in msg and "c.png" in msg and "--on-error skip" in msg
    ds = load_ieee8023(root, on_error="skip")
    assert len(ds) == 3 and "c.png" not in set(ds.meta["filename"])
    assert ds.skipped == [{"path": str(root.resolve() / "images" / "c.png"),
                           "reason": "image file does not exist"}]


@pytest.mark.parametrize("column", ["patientid", "finding", "filename"])
def test_missing_required_column(tmp_path, column):
    names = COLUMNS.split(",")
    keep = [i for i, n in enumerate(names) if n != column]
    rows = [",".join(pd.read_csv(pd.io.common.StringIO(r), header=None, dtype=str,
                                 keep_default_na=False).iloc[0, keep].map(lambda v: f'"{v}"'))
            for r in ROWS]
    root = make(tmp_path / "d", rows=rows, columns=",".join(names[i] for i in keep))
    with pytest.raises(DataError, match=rf"metadata.csv: required column '{column}' is missing"):
        load_ieee8023(root)


def test_missing_patient_id_and_duplicates(tmp_path):
    rows = ["1,,M,1,COVID-19,,,,,,PA,X-ray,,,images,a.png,",
            "2,,M,1,COVID-19,,,,,,PA,X-ray,,,images,a.png,",   # same image again
            ",,M,1,COVID-19,,,,,,PA,X-ray,,,images,b.jpg,"]
    root = make(tmp_path / "d", rows=rows)
    with pytest.raises(DataError, match="without patientid or filename.*lines 4"):
        load_ieee8023(root)
    ds = load_ieee8023(root, on_error="skip")
    assert len(ds) == 1 and ds.meta["patient"][0] == "ieee8023:1"
    reasons = sorted(s["reason"] for s in ds.skipped)
    assert reasons[0].startswith("duplicate row") and reasons[1] == "no patientid"


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="no metadata.csv"):
        load_ieee8023(tmp_path)


def test_bad_on_error(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_ieee8023(make(tmp_path / "d"), on_error="ignore")


# ---------------------------------------------------------------- shared data
needs_shared = pytest.mark.skipif(not (SHARED / "metadata.csv").is_file(),
                                  reason="shared ieee8023 data not present")


@needs_shared
def test_shared_counts_match_independent_pandas():
    ds = load_ieee8023(SHARED, on_error="skip")
    raw = pd.read_csv(SHARED / "metadata.csv")
    # known facts of this copy of the collection
    assert (raw["finding"] == "todo").sum() == 78
    assert (raw["finding"] == "COVID-19, ARDS").sum() == 12
    # independent expectation: frontal X-rays whose file exists, first row per image
    sel = raw[raw["view"].isin(["PA", "AP", "AP Supine"]) & (raw["modality"] == "X-ray")]
    exists = sel.apply(lambda r: (SHARED / r["folder"] / r["filename"]).is_file(), axis=1)
    expected = sel[exists].drop_duplicates("filename")
    assert len(ds) == len(expected) == 555
    assert len(ds.skipped) == len(sel) - len(expected) == 15  # 11 missing files + 4 duplicate rows
    assert list(ds.meta["filename"]) == list(expected["filename"])
    assert int(ds.unlabelled.sum()) == int((expected["finding"] == "todo").sum()) == 28
    covid = expected["finding"].str.contains("COVID-19")
    assert int(np.nansum(col(ds, "COVID-19"))) == int(covid.sum()) == 427
    # untyped "Pneumonia" and "ARDS" alone leave COVID-19 unknown, like "todo"
    undecided = expected["finding"].isin(["todo", "Pneumonia", "ARDS"])
    assert int((col(ds, "COVID-19") == 0).sum()) == int((~covid & ~undecided).sum())
    assert int(np.isnan(col(ds, "COVID-19")).sum()) == int(undecided.sum())
    assert int(np.nansum(col(ds, "ARDS"))) == int(expected["finding"].str.contains("ARDS").sum())
    assert ds.meta["patient"].nunique() == expected["patientid"].nunique()


@needs_shared
def test_shared_default_raises_on_missing_files():
    with pytest.raises(DataError, match=r"11 image file\(s\).*--on-error skip"):
        load_ieee8023(SHARED)

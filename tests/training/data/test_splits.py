"""Patient-level splits: disjoint, stratified, reproducible, unlabelled rows kept, files checked."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.dataset import PATHOLOGIES, CXRDataset
from training.data.spec import DataSpec
from training.data.splits import (
    check_patient_disjoint,
    fold_parts,
    load_split,
    make_split,
    row_strata,
    save_split,
    split_counts,
    split_hash,
)
from training.data.tasks import TASKS, get_task
from training.errors import DataError, SplitError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
CLASS_PATHOLOGIES = {  # synthetic class → positive pathologies
    0: ("No Finding",),
    1: ("Pneumonia", "Bacterial Pneumonia"),
    2: ("Pneumonia", "Viral Pneumonia"),
    3: ("Pneumonia", "Viral Pneumonia", "COVID-19"),
}


def synthetic_dataset(n: int = 400, seed: int = 0, unlabelled: float = 0.05, sources: tuple[str, ...] = ("src",),
                      probs: tuple[float, ...] = (0.3, 0.35, 0.2, 0.15)) -> CXRDataset:
    """``n`` rows of patients with 1-4 images each, one class per patient, some unlabelled rows."""
    rng = np.random.default_rng(seed)
    meta, labels = [], []
    pid = 0
    while len(meta) < n:
        pid += 1
        cls = int(rng.choice(len(probs), p=probs))
        src = sources[pid % len(sources)]
        sex = rng.choice(["M", "F", None])
        age = float(rng.integers(1, 95)) if rng.random() < 0.8 else np.nan
        for j in range(int(rng.integers(1, 5))):
            if len(meta) == n:
                break
            row = np.full(len(PATHOLOGIES), np.nan, np.float32)
            if rng.random() >= unlabelled:
                row[[PATHOLOGIES.index(p) for p in ("No Finding", "Pneumonia", "COVID-19")]] = 0
                row[[PATHOLOGIES.index(p) for p in CLASS_PATHOLOGIES[cls]]] = 1
            labels.append(row)
            meta.append({"path": f"/data/{src}/p{pid}_{j}.png", "patient": f"{src}:p{pid}", "source": src,
                         "view": rng.choice(["PA", "AP", None]), "modality": "X-ray", "sex": sex, "age": age})
    return CXRDataset(list(PATHOLOGIES), np.array(labels), pd.DataFrame(meta), name="synthetic")


@pytest.fixture(scope="module")
def ds() -> CXRDataset:
    return synthetic_dataset()


def _parts_of_patients(df: pd.DataFrame) -> pd.Series:
    return df.groupby("patient")["part"].nunique()


def _assert_stratified(df: pd.DataFrame, tol: float, parts=("train", "val", "test")) -> None:
    """Each part's label proportions within ``tol`` of the whole set's."""
    total = df["stratum"].value_counts(normalize=True)
    for part in parts:
        got = df.loc[df["part"] == part, "stratum"].value_counts(normalize=True)
        diff = (got.reindex(total.index, fill_value=0) - total).abs().max()
        assert diff < tol, f"{part}: proportions off by {diff:.3f}\n{got}\n{total}"


# --------------------------------------------------------------------------- make_split
@pytest.mark.parametrize("task", list(TASKS))
def test_split_is_patient_disjoint_and_complete(ds, task):
    df = make_split(ds, get_task(task))
    assert list(df.columns) == ["path", "patient", "part", "stratum"]
    assert df["path"].tolist() == ds.meta["path"].tolist()  # aligned, nothing dropped
    assert (_parts_of_patients(df) == 1).all()
    assert set(df["part"]) == {"train", "val", "test"}
    check_patient_disjoint(df)


def test_split_fractions_and_stratification_on_2000_rows():
    big = synthetic_dataset(2000, seed=3)
    df = make_split(big, get_task("4class"), seed=1)
    frac = df["part"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.7) < 0.03 and abs(frac["val"] - 0.1) < 0.03 and abs(frac["test"] - 0.2) < 0.03
    _assert_stratified(df, tol=0.03)


def test_multilabel_stratifies_on_combined_key_with_rare_keys_merged():
    big = synthetic_dataset(1000, seed=4)
    big.labels[:3, PATHOLOGIES.index("ARDS")] = 1  # a rare combination: only one patient has it
    df = make_split(big, get_task("multilabel"), seed=0)
    assert "Pneumonia+Viral Pneumonia+COVID-19" in set(df["stratum"])
    assert (df["stratum"].str.contains("ARDS")).sum() == 3  # stratum column keeps the real key
    assert (_parts_of_patients(df) == 1).all()
    _assert_stratified(df, tol=0.04)


def test_split_is_a_copy_not_a_view_of_the_dataset(ds):
    before = ds.meta["patient"].copy()
    df = make_split(ds, get_task("covid"))
    df.loc[0, "patient"] = "edited"
    df.loc[0, "path"] = "edited"
    pd.testing.assert_series_equal(ds.meta["patient"], before)
    assert ds.meta.loc[0, "path"] != "edited"


def test_stratum_is_the_task_label(ds):
    strata = row_strata(ds, get_task("3class"))
    targets = get_task("3class").encode(ds)
    unl = np.isnan(targets).all(axis=1)
    assert (strata[unl] == "unlabelled").all()
    expected = np.array(["Normal", "Pneumonia", "COVID-19"], dtype=object)[np.argmax(np.nan_to_num(targets), 1)]
    assert (strata[~unl] == expected[~unl]).all()


def test_same_seed_same_split_other_seed_other_split(ds):
    task = get_task("pneumonia")
    a, b, c = make_split(ds, task, seed=7), make_split(ds, task, seed=7), make_split(ds, task, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert (a["part"] != c["part"]).any()


def test_unlabelled_rows_are_kept_with_their_patient():
    d = synthetic_dataset(600, seed=5, unlabelled=0.2)
    df = make_split(d, get_task("covid"))
    unl = d.unlabelled
    assert unl.sum() > 50 and len(df) == len(d)
    assert set(df.loc[unl, "part"]) == {"train", "val", "test"}  # spread over parts, never dropped
    assert (df.loc[unl, "stratum"] == "unlabelled").all()
    assert (_parts_of_patients(df) == 1).all()


def test_literature_80_20_has_no_val(ds):
    df = make_split(ds, get_task("3class"), parts=(0.8, 0.0, 0.2))
    assert set(df["part"]) == {"train", "test"}
    assert abs((df["part"] == "test").mean() - 0.2) < 0.05


def test_uneven_parts_are_honoured():
    big = synthetic_dataset(2000, seed=6)
    df = make_split(big, get_task("pneumonia"), parts=(0.6, 0.15, 0.25))
    frac = df["part"].value_counts(normalize=True)
    assert abs(frac["val"] - 0.15) < 0.03 and abs(frac["test"] - 0.25) < 0.03


@pytest.mark.parametrize("parts", [(0.5, 0.5, 0.5), (0.0, 0.5, 0.5), (0.9, -0.1, 0.2), (1.0,), (0.02, 0.49, 0.49)])
def test_bad_parts_are_rejected(ds, parts):
    with pytest.raises(SplitError, match="parts|train part|nothing to train"):
        make_split(ds, get_task("covid"), parts=parts)


def test_kfold_assigns_every_patient_one_fold(ds):
    df = make_split(ds, get_task("3class"), folds=5, seed=2)
    assert sorted(df["fold"].unique()) == [0, 1, 2, 3, 4]
    assert (df.groupby("patient")["fold"].nunique() == 1).all()
    sizes = df["fold"].value_counts(normalize=True)
    assert (abs(sizes - 0.2) < 0.05).all()
    # part = run 0: test fold 0, val fold 1, train the rest
    assert (df.loc[df["fold"] == 0, "part"] == "test").all()
    assert (df.loc[df["fold"] == 1, "part"] == "val").all()
    assert (df.loc[df["fold"] >= 2, "part"] == "train").all()
    run3 = fold_parts(df, 3)
    assert (run3.loc[run3["fold"] == 3, "part"] == "test").all()
    assert (run3.loc[run3["fold"] == 4, "part"] == "val").all()
    check_patient_disjoint(run3)


def test_kfold_without_val(ds):
    df = make_split(ds, get_task("covid"), parts=(0.8, 0.0, 0.2), folds=4)
    assert set(df["part"]) == {"train", "test"}
    assert set(df.loc[df["part"] == "test", "fold"]) == {0}


def test_too_few_patients_is_a_clear_error():
    tiny = synthetic_dataset(6, seed=0)
    with pytest.raises(SplitError, match="patients"):
        make_split(tiny, get_task("covid"), folds=10)


def test_missing_patient_id_is_a_clear_error(ds):
    bad = ds.subset(np.arange(50))
    bad.meta.loc[3, "patient"] = None
    with pytest.raises(DataError, match="no patient id"):
        make_split(bad, get_task("covid"))


# --------------------------------------------------------------------------- checks and files
def _corrupt(df: pd.DataFrame) -> str:
    """Put one multi-image patient into two parts; returns that patient."""
    sizes = df.groupby("patient").size()
    patient = sizes.index[sizes > 1][0]
    rows = df.index[df["patient"] == patient]
    df.loc[rows[0], "part"] = "train"
    df.loc[rows[1], "part"] = "test"
    return patient


def test_check_patient_disjoint_names_offending_patients(ds):
    df = make_split(ds, get_task("covid"))
    patient = _corrupt(df)
    with pytest.raises(SplitError, match=rf"^1 patients appear in more than one part \(e.g. \['{patient}'\]\)"):
        check_patient_disjoint(df)


def test_save_load_round_trip_and_hash(ds, tmp_path):
    df = make_split(ds, get_task("3class"), seed=3)
    path = save_split(df, tmp_path / "sub" / "split.csv")
    h = split_hash(path)
    assert len(h) == 64
    loaded = load_split(path, ds)
    pd.testing.assert_frame_equal(loaded, df)
    save_split(loaded, tmp_path / "again.csv")  # same content → same bytes → same hash
    assert split_hash(tmp_path / "again.csv") == h
    assert not list(tmp_path.rglob("*.tmp"))  # the atomic write leaves no temp file


def test_load_split_aligns_by_path_regardless_of_file_order(ds, tmp_path):
    df = make_split(ds, get_task("covid"), folds=3)
    save_split(df.sample(frac=1.0, random_state=0), tmp_path / "s.csv")
    loaded = load_split(tmp_path / "s.csv", ds)
    assert loaded["path"].tolist() == ds.meta["path"].tolist()
    assert (loaded["part"].to_numpy() == df["part"].to_numpy()).all()
    assert (loaded["fold"].to_numpy() == df["fold"].to_numpy()).all()


def test_load_split_rejects_a_patient_in_two_parts(ds, tmp_path):
    df = make_split(ds, get_task("covid"))
    patient = _corrupt(df)
    save_split(df, tmp_path / "bad.csv")
    with pytest.raises(SplitError, match=patient):
        load_split(tmp_path / "bad.csv", ds)


def test_load_split_rows_missing_from_split(ds, tmp_path):
    df = make_split(ds, get_task("covid"))
    save_split(df.iloc[5:], tmp_path / "short.csv")
    with pytest.raises(SplitError, match=r"5 of \d+ images .*python -m training split"):
        load_split(tmp_path / "short.csv", ds)


def test_load_split_on_a_subset_warns_and_ignores_extra_rows(ds, tmp_path):
    df = make_split(ds, get_task("covid"))
    save_split(df, tmp_path / "s.csv")
    sub = ds.subset(np.arange(0, len(ds), 2))
    with pytest.warns(UserWarning, match="not in"):
        loaded = load_split(tmp_path / "s.csv", sub)
    assert loaded["path"].tolist() == sub.meta["path"].tolist()


def test_load_split_rejects_changed_patient_ids(ds, tmp_path):
    df = make_split(ds, get_task("covid"))
    df.loc[0, "patient"] = "somebody-else"
    save_split(df, tmp_path / "s.csv")
    with pytest.raises(SplitError, match="another patient id"):
        load_split(tmp_path / "s.csv", ds)


@pytest.mark.parametrize("content, error, match", [
    ("path,patient\n/a,p\n", SplitError, "lacks columns"),
    ("path,patient,part,stratum\n/a,p,holdout,x\n", SplitError, "unknown part"),
    ("path,patient,part,stratum\n/a,p,train,x\n/a,p,train,x\n", SplitError, "listed twice"),
])
def test_load_split_rejects_malformed_files(ds, tmp_path, content, error, match):
    (tmp_path / "s.csv").write_text(content)
    with pytest.raises(error, match=match):
        load_split(tmp_path / "s.csv", ds)


def test_load_split_missing_file(ds, tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "nope.csv", ds)


def test_split_counts(ds):
    task = get_task("3class")
    df = make_split(ds, task)
    counts = split_counts(df, task.encode(ds), task.classes(ds))
    assert list(counts) == ["train", "val", "test"]
    assert sum(c["images"] for c in counts.values()) == len(ds)
    assert sum(c["patients"] for c in counts.values()) == ds.meta["patient"].nunique()
    for part, c in counts.items():
        sub = df[df["part"] == part]
        assert c["classes"]["COVID-19"] == (sub["stratum"] == "COVID-19").sum()
        assert c["unlabelled"] == (sub["stratum"] == "unlabelled").sum()


# --------------------------------------------------------------------------- real data
def _loader():
    if importlib.util.find_spec("training.data.formats") is None:
        pytest.skip("training.data.formats is not there yet")
    from training.data import formats
    return formats


@pytest.mark.realdata
def test_real_kermany_pneumonia_split_is_stratified():
    path = SHARED / "kermany-pneumonia"
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    d = _loader().load_dataset(path)
    df = make_split(d, get_task("pneumonia"), seed=0)
    assert (_parts_of_patients(df) == 1).all() and len(df) == len(d)
    _assert_stratified(df, tol=0.03)


@pytest.mark.realdata
def test_real_ieee8023_plus_kermany_3class_split_is_stratified():
    paths = [SHARED / "ieee8023-covid-chestxray", SHARED / "kermany-pneumonia"]
    if not all(p.is_dir() for p in paths):
        pytest.skip("shared data absent")
    d = _loader().load_datasets(DataSpec(paths, on_error="skip"))
    df = make_split(d, get_task("3class"), seed=0)
    assert (_parts_of_patients(df) == 1).all() and len(df) == len(d)
    assert (df["stratum"] == "unlabelled").any()  # e.g. ieee8023 "todo" rows, kept
    _assert_stratified(df, tol=0.03)


# --------------------------------------------------------------------------- identical content
def _with_files(d: CXRDataset, root: Path) -> CXRDataset:
    """``d`` with every path a real (tiny, distinct) file under ``root``."""
    d = d.subset(np.arange(len(d)))
    paths = []
    for i in range(len(d)):
        p = root / f"img{i}.png"
        p.write_bytes(f"distinct image {i}".encode())
        paths.append(str(p))
    d.meta["path"] = paths
    return d


def _copy_bytes(d: CXRDataset, src_row: int, dst_row: int) -> None:
    Path(d.meta.loc[dst_row, "path"]).write_bytes(Path(d.meta.loc[src_row, "path"]).read_bytes())


@pytest.fixture()
def dup_ds(tmp_path) -> CXRDataset:
    """300 rows on disk; three patients chained by identical files (A=B by one file, B=C by another)."""
    d = _with_files(synthetic_dataset(300, seed=11), tmp_path)
    first = d.meta.groupby("patient").head(1)  # one row per patient, in order
    a, b, c = first.index[[3, 40, 77]]
    _copy_bytes(d, a, b)
    b2 = d.meta.index[(d.meta["patient"] == d.meta.loc[b, "patient"])]
    c_rows = d.meta.index[d.meta["patient"] == d.meta.loc[c, "patient"]]
    if len(b2) > 1:
        _copy_bytes(d, b2[1], c_rows[0])
    else:  # b has one image: chain through it again
        _copy_bytes(d, a, c_rows[0])
    return d


def _chained(d: CXRDataset) -> list[str]:
    from training.data.content import file_digests

    dig = pd.Series(file_digests(d.meta["path"].tolist()))
    dup = dig.duplicated(keep=False).to_numpy()
    return sorted(set(d.meta.loc[dup, "patient"]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_identical_images_of_different_patients_land_in_one_part(dup_ds, seed, caplog):
    linked = _chained(dup_ds)
    assert len(linked) == 3
    with caplog.at_level("INFO", logger="training.data.splits"):
        df = make_split(dup_ds, get_task("3class"), seed=seed)
    assert df.loc[df["patient"].isin(linked), "part"].nunique() == 1
    assert "3 patients share byte-identical image files" in caplog.text
    assert (_parts_of_patients(df) == 1).all()
    assert list(df.columns) == ["path", "patient", "part", "stratum"]  # file format unchanged


@pytest.mark.parametrize("seed", [0, 5])
def test_identical_images_share_one_fold(dup_ds, seed):
    df = make_split(dup_ds, get_task("covid"), folds=5, seed=seed)
    assert df.loc[df["patient"].isin(_chained(dup_ds)), "fold"].nunique() == 1


def _leaky_split(d: CXRDataset, task: str) -> pd.DataFrame:
    """The first split by patient only (no content grouping) that separates the linked patients."""
    linked = _chained(d)
    for seed in range(30):
        df = make_split(d, get_task(task), seed=seed, by_content=False)
        if df.loc[df["patient"].isin(linked), "part"].nunique() > 1:
            return df
    raise AssertionError("some seed should separate the three unlinked patients")


def test_without_content_grouping_the_leak_is_caught(dup_ds):
    from training.data.splits import check_content_disjoint

    df = _leaky_split(dup_ds, "3class")
    with pytest.raises(SplitError, match=r"byte-identical images of 'synthetic' sit in more than one part"):
        check_content_disjoint(df, dup_ds)
    with pytest.warns(UserWarning, match="byte-identical"):
        assert check_content_disjoint(df, on_leak="warn") >= 1


def test_load_split_warns_or_raises_on_identical_content_across_parts(dup_ds, tmp_path):
    path = save_split(_leaky_split(dup_ds, "covid"), tmp_path / "old.csv")
    with pytest.warns(UserWarning, match="byte-identical"):
        load_split(path, dup_ds)
    with pytest.raises(SplitError, match="byte-identical"):
        load_split(path, dup_ds, content="raise")
    load_split(path, dup_ds, content="off")  # no check, no warning
    good = save_split(make_split(dup_ds, get_task("covid")), tmp_path / "good.csv")
    import warnings as _w
    with _w.catch_warnings():
        _w.simplefilter("error")
        load_split(good, dup_ds, content="raise")


@pytest.mark.realdata
def test_real_ieee8023_plus_kermany_has_no_identical_content_across_parts():
    from training.data.content import file_digests
    from training.data.splits import check_content_disjoint

    paths = [SHARED / "ieee8023-covid-chestxray", SHARED / "kermany-pneumonia"]
    if not all(p.is_dir() for p in paths):
        pytest.skip("shared data absent")
    d = _loader().load_datasets(DataSpec(paths, on_error="skip", views="all"))  # every view: the jumbo pair too
    digests = file_digests(d.meta["path"].tolist())
    assert pd.Series(digests).dropna().duplicated().sum() > 10  # the data do hold duplicates
    for seed in (0, 1):
        df = make_split(d, get_task("3class"), seed=seed)
        assert check_content_disjoint(df, d, digests=digests) == 0
        by_digest = df.assign(d=digests).dropna(subset=["d"]).groupby("d")["part"].nunique()
        assert (by_digest == 1).all()


# --------------------------------------------------------------------------- official parts
def _with_official(ds: CXRDataset, parts: dict[str, str]) -> CXRDataset:
    """``ds`` with ``official_part`` set per patient (others: none)."""
    meta = ds.meta.assign(official_part=ds.meta["patient"].map(parts).astype(object))
    return CXRDataset(ds.pathologies, ds.labels, meta, ds.name)


def test_official_parts_are_honoured_and_official_train_never_reaches_test(ds, caplog):
    patients = ds.meta["patient"].unique()
    official = {p: "test" for p in patients[:20]} | {p: "val" for p in patients[20:30]} \
        | {p: "train" for p in patients[30:100]}
    df = make_split(_with_official(ds, official), get_task("4class"), by_content=False)
    part_of = df.groupby("patient")["part"].first()
    assert (part_of[patients[:20]] == "test").all() and (part_of[patients[20:30]] == "val").all()
    assert set(part_of[patients[30:100]]) == {"train", "val"}  # val carved from official train
    assert set(part_of[patients[100:]]) == {"train", "val", "test"}  # no official part: as before
    check_patient_disjoint(df)


def test_a_patient_in_two_official_parts_goes_whole_to_test_and_is_counted(ds, caplog):
    first = ds.meta["patient"].value_counts().index[0]  # a patient with several images
    rows = np.flatnonzero(ds.meta["patient"] == first)
    meta = ds.meta.assign(official_part=pd.NA)
    meta.loc[rows[0], "official_part"], meta.loc[rows[1:], "official_part"] = "test", "train"
    with caplog.at_level("INFO"):
        df = make_split(CXRDataset(ds.pathologies, ds.labels, meta, "d"), get_task("4class"),
                        by_content=False)
    assert set(df["part"].iloc[rows]) == {"test"} and "1 patients" in caplog.text
    meta.loc[rows[0], "official_part"] = "holdout"
    with pytest.raises(SplitError, match="'holdout'"):
        make_split(CXRDataset(ds.pathologies, ds.labels, meta, "d"), get_task("4class"))

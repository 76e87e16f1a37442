"""Whole sites moved to part "site": every row of the site, its patients and identical files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.dataset import CXRDataset
from training.data.report import summarize
from training.data.site_split import (SITE_PART, held_out_site_names, hold_out_sites, row_sites,
                                      site_of)
from training.data.spec import DataSpec
from training.data.splits import (check_content_disjoint, check_patient_disjoint, make_split,
                                  split_counts)
from training.data.tasks import get_task
from training.errors import DataError, SplitError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
PATHOLOGIES = ["No Finding", "Pneumonia", "COVID-19"]
#: (location, patients): Italy is the largest qualifying site, Germany and Spain qualify too
#: (2 positive and 2 negative patients at min_patients=2), Portugal does not, two rows have none.
SITES = [("Milan, Italy", 10), ("Rome, Italy", 2), ("Berlin, Germany", 6), ("Madrid, Spain", 4),
         ("Porto, Portugal", 2), ("?", 2), (None, 2)]


def _row(root: Path, i: int, patient: str, location: str | None, covid: bool) -> tuple[dict, list[float]]:
    path = root / f"img{i:03d}.png"
    path.write_bytes(f"image {i}".encode())  # distinct contents
    meta = {"path": str(path), "patient": patient, "source": "ieee8023", "view": "PA", "modality": "X-ray",
            "sex": pd.NA, "age": np.nan, "location": location}
    return meta, [float(not covid), float(covid), float(covid)]


@pytest.fixture()
def ds(tmp_path) -> CXRDataset:
    """Patients of alternating class per site; G0 has a second image located in Italy; patient
    DUP (Italy) has a byte-identical copy of a Spanish patient's image."""
    meta, labels, i = [], [], 0
    for location, n in SITES:
        for k in range(n):
            m, y = _row(tmp_path, i, f"p{i}", location, covid=k % 2 == 1)
            meta.append(m), labels.append(y)
            i += 1
    germany = next(m["patient"] for m in meta if m["location"] == "Berlin, Germany")
    spain = next(m for m in meta if m["location"] == "Madrid, Spain")
    m, y = _row(tmp_path, i, germany, "Milan, Italy", covid=False)  # same patient, other location
    meta.append(m), labels.append(y)
    m, y = _row(tmp_path, i + 1, "DUP", "Milan, Italy", covid=True)
    Path(m["path"]).write_bytes(Path(spain["path"]).read_bytes())  # identical file, other patient
    meta.append(m), labels.append(y)
    return CXRDataset(PATHOLOGIES, np.array(labels), pd.DataFrame(meta), "sites")


def _split(ds: CXRDataset) -> pd.DataFrame:
    return make_split(ds, get_task("covid"), parts=(0.5, 0.25, 0.25), seed=0)


@pytest.mark.parametrize("task", ["covid", "multilabel", "multilabel-within-source"])
def test_auto_rule_holds_out_all_qualifying_sites_but_the_largest(ds, task):
    split = _split(ds)
    held = hold_out_sites(split, ds, get_task(task), min_patients=2)
    assert held.sites == ("Germany", "Spain")
    own = np.array([site_of(v) for v in ds.meta["location"]], dtype=object)
    moved = held.split["part"].to_numpy() == SITE_PART
    assert moved[np.isin(own, ["Germany", "Spain"])].all()
    patients = ds.meta["patient"].to_numpy()
    germany = patients[own == "Germany"][0]
    assert moved[patients == germany].all()          # its Italian row too
    assert moved[patients == "DUP"].all()            # identical content, whatever its location
    expected = np.isin(own, ["Germany", "Spain"]) | (patients == germany) | (patients == "DUP")
    assert (moved == expected).all()
    others = ~moved
    assert (held.split["part"].to_numpy()[others] == split["part"].to_numpy()[others]).all()
    assert held.n_images == int(expected.sum()) and held.n_patients == len(set(patients[expected]))
    check_patient_disjoint(held.split)
    check_content_disjoint(held.split)
    assert split_counts(held.split, get_task("covid").encode(ds), ["neg", "pos"])["site"]["images"] == held.n_images
    assert "site" not in split_counts(split, get_task("covid").encode(ds), ["neg", "pos"])
    assert (split["part"] != SITE_PART).all()        # the input split is left as it was
    assert held_out_site_names(ds, moved) == ("Germany", "Spain")  # Italy keeps rows in training
    parts = summarize(ds, held.split)["split"]["parts"]  # the dataset report counts the part
    assert list(parts) == ["train", "val", "test", "site"] and parts["site"]["images"] == held.n_images


def test_named_sites_unknown_sites_and_too_few(ds):
    split = _split(ds)
    held = hold_out_sites(split, ds, get_task("covid"), sites=["Portugal"])
    assert held.sites == ("Portugal",) and held.n_images == 2
    with pytest.raises(DataError, match="Atlantis"):
        hold_out_sites(split, ds, get_task("covid"), sites=["Atlantis"])
    assert hold_out_sites(split, ds, get_task("covid"), sites=()).sites == ()
    # min 4: only Italy (7 positive, 7 negative patients) qualifies; it stays in training
    none = hold_out_sites(split, ds, get_task("covid"), min_patients=4)
    assert none.sites == () and none.n_images == 0 and none.split.equals(split)


def test_no_location_column_holds_nothing_out(ds):
    plain = CXRDataset(ds.pathologies, ds.labels, ds.meta.drop(columns=["location"]), "plain")
    split = _split(plain)
    held = hold_out_sites(split, plain, get_task("covid"), min_patients=2)
    assert held.sites == () and held.split.equals(split)


def test_bad_splits_are_refused(ds):
    split = _split(ds)
    with pytest.raises(SplitError, match="same order"):
        hold_out_sites(split.iloc[::-1].reset_index(drop=True), ds, get_task("covid"))
    kfold = make_split(ds, get_task("covid"), folds=3, seed=0)
    with pytest.raises(SplitError, match="k-fold"):
        hold_out_sites(kfold, ds, get_task("covid"))


def test_row_sites_reads_only_files_of_shared_size(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(b"same"), b.write_bytes(b"same"), c.write_bytes(b"diff")  # c: same size, not same
    assert list(row_sites(["Italy", None, None], ["p1", "p2", "p3"], [str(a), str(b), str(c)])) == [
        "Italy", "Italy", None]


@pytest.mark.realdata
def test_real_ieee8023_auto_rule_holds_out_germany_and_spain():
    path = SHARED / "ieee8023-covid-chestxray"
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    from training.data.formats import load_datasets

    data = load_datasets(DataSpec((str(path),), on_error="skip"))
    for task in ("covid", "multilabel"):
        held = hold_out_sites(make_split(data, get_task(task), seed=0), data, get_task(task))
        assert held.sites == ("Germany", "Spain")
        assert held.n_images >= 94 + 47

"""Tasks turn the pathology matrix into targets; undecided rows stay NaN, never negative."""
import numpy as np
import pandas as pd
import pytest

from training.data.dataset import PATHOLOGIES, CXRDataset
from training.data.tasks import TASKS, get_task
from training.errors import UnknownLabelError

N = np.nan


def _ds(rows: list[dict]) -> CXRDataset:
    labels = np.array([[r.get(p, N) for p in PATHOLOGIES] for r in rows], dtype=np.float32)
    meta = pd.DataFrame({"path": [f"/x/{i}.png" for i in range(len(rows))], "patient": list(range(len(rows))),
                         "source": "t", "view": "PA", "modality": "X-ray", "sex": pd.NA, "age": np.nan})
    return CXRDataset(list(PATHOLOGIES), labels, meta)


NORMAL = {p: 0.0 for p in PATHOLOGIES} | {"No Finding": 1.0}
COVID = {p: 0.0 for p in PATHOLOGIES} | {"Pneumonia": 1.0, "Viral Pneumonia": 1.0, "COVID-19": 1.0}
BACT = {p: 0.0 for p in PATHOLOGIES} | {"Pneumonia": 1.0, "Bacterial Pneumonia": 1.0}
VIRAL = {p: 0.0 for p in PATHOLOGIES} | {"Pneumonia": 1.0, "Viral Pneumonia": 1.0}
UNTYPED = {"Pneumonia": 1.0, "No Finding": 0.0}  # pneumonia of unknown cause
UNLABELLED: dict = {}


@pytest.mark.parametrize(
    "task,expected",
    [
        ("covid", [0, 1, 0, 0, None, None]),
        ("covid-vs-pneumonia", [None, 1, 0, 0, None, None]),
        ("pneumonia", [0, 1, 1, 1, 1, None]),
        ("3class", [0, 2, 1, 1, None, None]),
        ("4class", [0, 3, 1, 2, None, None]),
    ],
)
def test_single_label_tasks(task, expected):
    ds = _ds([NORMAL, COVID, BACT, VIRAL, UNTYPED, UNLABELLED])
    y = get_task(task).encode(ds)
    assert y.shape == (6, len(get_task(task).classes()))
    for row, exp in zip(y, expected):
        if exp is None:
            assert np.isnan(row).all()
        else:
            assert row.tolist() == [1.0 if i == exp else 0.0 for i in range(len(row))]


def test_covid_vs_pneumonia_uses_only_covid_and_other_pneumonia():
    """A normal chest, a COVID-19-unknown pneumonia and an unlabelled row are unused (NaN),
    never negatives; the positive class is the COVID-19 output cross-site scores."""
    untyped_known = UNTYPED | {"COVID-19": 0.0}
    unknown_covid = {"Pneumonia": 1.0}  # pneumonia, COVID-19 status not recorded
    ds = _ds([COVID, BACT, untyped_known, NORMAL, unknown_covid, UNLABELLED])
    task = get_task("covid-vs-pneumonia")
    y = task.encode(ds)
    assert task.classes() == ["Other pneumonia", "COVID-19"]
    assert y[:3].tolist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    assert np.isnan(y[3:]).all()


def test_multilabel_keeps_nan():
    ds = _ds([COVID, UNTYPED, UNLABELLED])
    y = get_task("multilabel").encode(ds)
    assert get_task("multilabel").classes(ds) == list(PATHOLOGIES)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ds.labels))
    assert np.isnan(y[2]).all()


def test_unknown_task_lists_known():
    with pytest.raises(UnknownLabelError, match="4class"):
        get_task("5class")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_has_classes(name):
    task = get_task(name)
    assert task.kind in ("multilabel", "single")
    if task.kind == "single":
        assert len(task.classes()) >= 2


def test_within_source_keeps_only_labels_a_source_contrasts():
    """Combined sources: a label one source has only as positives and the other only as
    negatives is learnt from the source, so each is kept only where its source has both."""
    rows = [COVID, COVID, BACT, NORMAL, NORMAL, BACT, VIRAL, UNLABELLED]
    ds = _ds(rows)
    ds.meta["source"] = ["ieee", "ieee", "ieee", "kermany", "kermany", "kermany", "kermany", "kermany"]
    plain, ws = get_task("multilabel").encode(ds), get_task("multilabel-within-source").encode(ds)
    col = {p: PATHOLOGIES.index(p) for p in PATHOLOGIES}
    ieee, kermany = np.arange(3), np.arange(3, 7)
    # COVID-19: ieee8023 has both classes, Kermany only negatives -> NaN there
    assert np.array_equal(ws[ieee, col["COVID-19"]], plain[ieee, col["COVID-19"]])
    assert np.isnan(ws[kermany, col["COVID-19"]]).all() and (plain[kermany, col["COVID-19"]] == 0).all()
    # No Finding: ieee8023 has no normal here -> NaN there, Kermany keeps both classes
    assert np.isnan(ws[ieee, col["No Finding"]]).all()
    assert np.array_equal(ws[kermany, col["No Finding"]], [1, 1, 0, 0])
    # Pneumonia: all positive in ieee8023 -> NaN; Kermany contrasts it
    assert np.isnan(ws[ieee, col["Pneumonia"]]).all() and not np.isnan(ws[kermany, col["Pneumonia"]]).any()
    # unknown stays unknown; known values are never changed, only hidden
    assert np.isnan(ws[7]).all()
    known = ~np.isnan(ws)
    assert np.array_equal(ws[known], plain[known])


def test_within_source_on_one_source_drops_only_single_valued_labels():
    ds = _ds([COVID, BACT, NORMAL, VIRAL])
    ws = get_task("multilabel-within-source").encode(ds)
    assert np.isnan(ws[:, PATHOLOGIES.index("SARS")]).all()  # all 0: teaches nothing
    assert not np.isnan(ws[:, PATHOLOGIES.index("COVID-19")]).any()

"""Dataset report: every figure, summary.json numbers that match the data, split tables, escaping."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from tests.training.data.test_splits import SHARED, synthetic_dataset
from training.data.report import summarize, write_report
from training.data.splits import make_split
from training.data.tasks import get_task
from training.errors import SplitError

BASE_FIGURES = {"pathologies.png", "sex.png", "view.png", "modality.png", "age.png", "images_per_patient.png"}


@pytest.fixture(scope="module")
def ds():
    d = synthetic_dataset(300, seed=11, unlabelled=0.1, sources=("alpha", "beta"))
    d.skipped = [{"path": "/data/alpha/gone.png", "reason": "file not found"},
                 {"path": "/data/alpha/ct.nii", "reason": "modality CT excluded"},
                 {"path": "/data/beta/gone2.png", "reason": "file not found"}]
    return d


@pytest.fixture(scope="module")
def report(ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    split = make_split(ds, get_task("3class"), seed=0)
    index = write_report(ds, out, split=split, title="Test report")
    return index, json.loads((out / "summary.json").read_text()), split


def test_writes_every_figure_as_a_real_png_referenced_by_the_html(report):
    index, summary, _ = report
    expected = BASE_FIGURES | {"pathologies_by_source.png", "split.png"}
    assert set(summary["figures"]) == expected
    html = index.read_text()
    for name in expected:
        with Image.open(index.parent / name) as img:
            assert img.format == "PNG" and min(img.size) > 200
        assert f'src="{name}"' in html


def test_summary_numbers_match_the_dataset(ds, report):
    _, s, _ = report
    assert s["n_images"] == len(ds) == 300
    assert s["n_patients"] == ds.meta["patient"].nunique()
    assert {k: v["images"] for k, v in s["sources"].items()} == ds.meta["source"].value_counts().to_dict()
    for j, p in enumerate(ds.pathologies):
        col = ds.labels[:, j]
        assert s["pathologies"][p] == {"positive": int((col == 1).sum()), "negative": int((col == 0).sum()),
                                       "unknown": int(np.isnan(col).sum())}
    assert s["unlabelled"]["images"] == int(ds.unlabelled.sum()) > 0
    assert s["sex"].get("unknown", 0) == int(ds.meta["sex"].isna().sum()) > 0
    assert sum(s["sex"].values()) == sum(s["view"].values()) == len(ds)
    assert s["age"]["known"] + s["age"]["unknown"] == len(ds)
    assert sum(s["age"]["counts"]) == s["age"]["known"]
    assert sum(s["images_per_patient"]["histogram"].values()) == s["n_patients"]
    assert s["skipped"]["count"] == 3
    assert s["skipped"]["reasons"] == {"file not found": 2, "modality CT excluded": 1}


def test_html_states_dataset_size_and_research_use(ds, report):
    index, s, _ = report
    html = index.read_text()
    assert "<title>Test report</title>" in html
    assert f"<b>{len(ds)}</b> images of <b>{s['n_patients']}</b> patients" in html
    assert "research" in html.lower()
    assert "modality CT excluded" in html and "/data/beta/gone2.png" in html


def test_split_tables(ds, report):
    index, s, split = report
    parts = s["split"]["parts"]
    assert list(parts) == ["train", "val", "test"]
    assert sum(p["images"] for p in parts.values()) == len(ds)
    for name, p in parts.items():
        rows = split[split["part"] == name]
        assert p["patients"] == rows["patient"].nunique()
        assert p["strata"] == rows["stratum"].value_counts().to_dict()
    html = index.read_text()
    assert "Patient-level split" in html
    assert f"<td>test</td><td>{parts['test']['images']}</td><td>{parts['test']['patients']}</td>" in html


def test_no_split_no_split_section(ds, tmp_path):
    one = ds.subset(np.flatnonzero(ds.meta["source"] == "alpha"))
    index = write_report(one, tmp_path)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["split"] is None and set(s["figures"]) == BASE_FIGURES  # one source: no per-source figure
    assert "Patient-level split" not in index.read_text()
    assert not (tmp_path / "split.png").exists()


def test_kfold_split_adds_a_fold_table_and_unassigned_rows_are_counted(ds):
    split = make_split(ds, get_task("covid"), folds=3).iloc[7:]
    s = summarize(ds, split)
    assert s["split"]["unassigned"] == 7 and s["split"]["parts"]["unassigned"]["images"] == 7
    assert sorted(s["split"]["folds"]) == ["0", "1", "2"]


def test_a_leaky_split_is_refused(ds, tmp_path):
    split = make_split(ds, get_task("covid"))
    sizes = split.groupby("patient").size()
    rows = split.index[split["patient"] == sizes.index[sizes > 1][0]]
    split.loc[rows[0], "part"], split.loc[rows[1], "part"] = "train", "test"
    with pytest.raises(SplitError, match="more than one part"):
        write_report(ds, tmp_path, split=split)


def test_odd_names_are_escaped(tmp_path):
    d = synthetic_dataset(40, seed=2, sources=("a&b<i>", "plain"))
    d.name = "<script>alert(1)</script>"
    d.skipped = [{"path": "/x/<img src=x onerror=alert(2)>.png", "reason": "bad \"quote\" & <tag>"}]
    index = write_report(d, tmp_path, title="<b>title</b>")
    html = index.read_text()
    assert "<script>" not in html and "<img src=x" not in html and "<b>title</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&amp;b&lt;i&gt;" in html and "&amp;lt;b&amp;gt;" not in html  # escaped once, not twice
    assert json.loads((tmp_path / "summary.json").read_text())["dataset"] == d.name  # JSON keeps the raw name


@pytest.mark.realdata
def test_real_data_report_is_fast(tmp_path):
    paths = [SHARED / "ieee8023-covid-chestxray", SHARED / "kermany-pneumonia"]
    if not all(p.is_dir() for p in paths):
        pytest.skip("shared data absent")
    if importlib.util.find_spec("training.data.formats") is None:
        pytest.skip("training.data.formats is not there yet")
    from training.data.formats import load_datasets
    from training.data.spec import DataSpec

    d = load_datasets(DataSpec(paths, on_error="skip"))
    split = make_split(d, get_task("3class"))
    index = write_report(d, tmp_path, split=split)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n_images"] == len(d) and f"<b>{len(d)}</b> images" in index.read_text()
    assert s["skipped"]["count"] == len(d.skipped)
    assert set(s["sources"]) == set(d.meta["source"])

"""Severity scores: ## comment lines, join by file name, grouped CV, metrics, plot."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.clinical import severity as S
from training.errors import DataError


def _write(tmp_path, body: str):
    path = tmp_path / "scores.csv"
    path.write_text(body)
    return path


def test_comment_lines_skipped_but_hash_in_data_kept(tmp_path):
    path = _write(tmp_path, "## header, with, commas\n##another\n"
                            "filename,geographic_extent_mean,opacity_mean\n"
                            "a#1.png,3.5,2\n b.png ,0,6\n")
    df = S.read_scores(path)
    assert df["filename"].tolist() == ["a#1.png", "b.png"]  # '#' inside data survives
    assert df["geographic_extent"].tolist() == [3.5, 0.0] and df["opacity"].tolist() == [2.0, 6.0]


@pytest.mark.parametrize("body, match", [
    ("filename,geographic_mean\nx.png,1\n", "lacks column"),
    ("filename,geographic_mean,opacity_mean\nx.png,9,1\n", "outside 0..8"),
    ("filename,geographic_mean,opacity_mean\nx.png,1,\n", "opacity value"),
    ("filename,geographic_mean,opacity_mean\nx.png,1,1\nx.png,2,2\n", "scored twice"),
])
def test_bad_score_files_are_clear_errors(tmp_path, body, match):
    with pytest.raises(DataError, match=match):
        S.read_scores(_write(tmp_path, body))
    with pytest.raises(DataError, match="not found"):
        S.read_scores(tmp_path / "nope.csv")


def test_join_reports_unmatched():
    meta = pd.DataFrame({"path": ["/d/images/a.png", "/d/images/b.png", "/d/images/c.png"]})
    scores = pd.DataFrame({"filename": ["c.png", "a.png", "zz.png"],
                           "geographic_extent": [1.0, 2.0, 3.0], "opacity": [0.5, 1.0, 1.5]})
    joined, unmatched = S.join_scores(meta, scores)
    assert joined["row"].tolist() == [0, 2] and joined["geographic_extent"].tolist() == [2.0, 1.0]
    assert unmatched == ["zz.png"]


def test_cv_regress_learns_and_scores_with_cis(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.clip(3 + 1.5 * x[:, 0] + rng.normal(0, 0.3, 60), 0, 6)
    groups = np.repeat(np.arange(30), 2)
    p = S.cv_regress(x, y, groups, folds=5, top=6.0)
    assert p.min() >= 0 and p.max() <= 6
    s = S.score(y, p, groups, n_boot=200)
    assert s["pearson_r"]["value"] > 0.8 and s["mae"]["value"] < 0.6 and s["patients"] == 30
    assert s["pearson_r"]["low"] < s["pearson_r"]["value"] < s["pearson_r"]["high"]
    assert np.isnan(S.pearson(y, np.ones_like(y)))
    png = S.scatter_plot({"opacity": (y, p, s)}, tmp_path / "s.png")
    assert png.read_bytes()[:4] == b"\x89PNG"

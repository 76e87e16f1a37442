"""Comparing models on one split: paired CIs, and models from other splits refused."""
import json
import shutil

import numpy as np
import pytest

from training.errors import SplitError
from training.evaluation.compare import compare_models

from .conftest import save_tiny


def test_compare_two_models(world, tmp_path):
    worse = save_tiny(tmp_path / "models", "inverted", "single", ["Normal", "Pneumonia"], "pneumonia",
                      world["split"], ["kermany"], [world["data"]], gain=-2.0)
    df = compare_models([world["single"], worse], [world["data"]], str(world["split"]),
                        out_dir=tmp_path / "cmp", n_boot=100)
    assert list(df["model"]) == ["single", "inverted"]
    for col in ("architecture", "mode", "params_total", "params_trainable", "seconds_per_epoch",
                "latency_ms", "Pneumonia: recall", "Pneumonia: recall low", "Normal: specificity high",
                "macro: roc_auc", "macro AUC p-value vs best"):
        assert col in df, col
    assert (df["latency_ms"] > 0).all() and (df["seconds_per_epoch"] == 1.5).all()
    assert df.loc[0, "macro: roc_auc"] > df.loc[1, "macro: roc_auc"]
    assert np.isnan(df.loc[0, "macro AUC diff vs best"]) and df.loc[1, "macro AUC diff vs best"] > 0
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["best"] == "single" and set(data["paired"]) == {"inverted"}
    # compare.json keeps estimates as objects; the CSV's flat columns come from the same numbers
    auc = data["models"][0]["estimates"]["macro"]["roc_auc"]
    assert set(auc) == {"value", "low", "high"} and auc["value"] == pytest.approx(df.loc[0, "macro: roc_auc"], abs=1e-4)
    assert set(data["models"][0]["estimates"]) >= {"Normal", "Pneumonia", "macro", "overall"}
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert f"{data['paired']['inverted']['diff']:.4f}" in html and "Research tool" in html
    for f in data["figures"]:
        assert (tmp_path / "cmp" / f).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "cmp" / "compare.csv").is_file()


def test_compare_refuses_different_splits(world, tmp_path):
    other = tmp_path / "split_b.csv"
    shutil.copy(world["split"], other)
    with open(other, "a") as f:
        f.write("\n")
    b = save_tiny(tmp_path / "models", "b", "single", ["Normal", "Pneumonia"], "pneumonia", other,
                  ["kermany"], [world["data"]])
    with pytest.raises(SplitError, match="different splits"):
        compare_models([world["single"], b], [world["data"]], str(world["split"]),
                       out_dir=tmp_path / "cmp", n_boot=50)

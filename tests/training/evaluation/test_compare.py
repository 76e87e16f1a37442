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


def test_compare_writes_the_case_level_comparison(world, tmp_path):
    from sklearn.metrics import cohen_kappa_score

    worse = save_tiny(tmp_path / "models", "inverted", "single", ["Normal", "Pneumonia"], "pneumonia",
                      world["split"], ["kermany"], [world["data"]], gain=-2.0)
    out = tmp_path / "cmp"
    compare_models([world["single"], worse], [world["data"]], str(world["split"]), out_dir=out,
                   n_boot=50, gallery_k=1000)   # every test case is a gallery row: all checkable
    cases = json.loads((out / "cases.json").read_text())
    assert cases["models"] == ["single", "inverted"] and set(cases["outputs"]) == {"Normal", "Pneumonia"}
    o = cases["outputs"]["Pneumonia"]
    rows = o["rows"]
    assert [r["case"] for r in rows] == o["gallery"] and len(rows) == len(set(o["gallery"]))
    spreads = [r["spread"] for r in rows]
    assert spreads == sorted(spreads, reverse=True)
    # Hand computation from the rows: each model's decision, the truth, wrong or right.
    truth = np.array([r["truth"] for r in rows])
    dec = {m: np.array([r["models"][m]["positive"] for r in rows]) for m in cases["models"]}
    wrong = {m: dec[m] != (truth == 1) for m in dec}
    assert o["errors"] == {m: int(w.sum()) for m, w in wrong.items()}
    both = wrong["single"] & wrong["inverted"]
    assert o["shared"] == {"1": int((wrong["single"] ^ wrong["inverted"]).sum()), "2": int(both.sum())}
    assert o["split"] == [r["case"] for r in rows if dec["single"][rows.index(r)] != dec["inverted"][rows.index(r)]]
    assert o["alone_right"]["single"] == sorted(r["case"] for r, w in zip(rows, wrong["inverted"] & ~wrong["single"]) if w)
    pair = o["pairs"][0]
    assert pair["kappa"]["value"] == pytest.approx(cohen_kappa_score(dec["single"], dec["inverted"]), abs=1e-4)
    assert pair["mcnemar"]["b"] == int((wrong["inverted"] & ~wrong["single"]).sum())
    assert pair["mcnemar"]["c"] == int((wrong["single"] & ~wrong["inverted"]).sum())
    # Pictures: one plain image per case, one heatmap (or a reason) per model, same size.
    from PIL import Image
    cell = rows[0]["models"]["single"]
    assert Image.open(out / rows[0]["image"]).size == (224, 224)
    assert ("file" in cell and Image.open(out / cell["file"]).size == (224, 224)) or cell["why"]
    assert cell["threshold"] is not None and 0 <= cell["probability"] <= 1
    assert set(o["figures"]) == {"roc", "pr", "reliability"}
    assert all((out / f).read_bytes()[:4] == b"\x89PNG" for f in o["figures"].values())
    files = json.loads((out / "case_files.json").read_text())
    assert set(files) == {str(c) for c in o["gallery"]}

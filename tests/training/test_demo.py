"""The main job end to end on tiny data (offline setting, two backbones)."""
import json

import pandas as pd
import pytest

from tests.training.clinical.conftest import make_ieee8023
from tests.training.evaluation.conftest import make_kermany
from training import demo


@pytest.mark.slow
def test_demo_on_two_sources_runs_every_step_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "imagenet_available", lambda archs: False)  # as on an offline machine
    monkeypatch.setenv("CXRLAB_CACHE", str(tmp_path / "cache"))
    data = [make_kermany(tmp_path / "kermany", n_patients=30), make_ieee8023(tmp_path / "ieee", n_patients=16)]
    cfg = demo.DemoConfig(data=[str(d) for d in data], out=str(tmp_path / "out"), img_size=32,
                          epochs=1, archs=("resnet50", "vgg16"), n_boot=50)
    out = demo.run_demo(cfg)
    said = capsys.readouterr().out
    assert "FROM SCRATCH" in said and "recipe" in said  # the demo says which setting it used
    assert "task multilabel-within-source" in said and "Source probe" in said
    assert (out / "report" / "index.html").exists() and (out / "split.csv").exists()
    split = pd.read_csv(out / "split.csv")
    n_ieee_test = int(((split["part"] == "test") & split["path"].str.contains("/ieee/")).sum())
    assert 0 < n_ieee_test < int((split["part"] == "test").sum())
    probe = json.loads((out / "shortcuts" / "source_probe.json").read_text())
    assert set(probe["sources"]) == {"kermany", "ieee8023"}
    for arch in cfg.archs:
        card = json.loads((out / "models" / arch / "card.json").read_text())
        assert card["transfer"]["mode"] == "scratch" and card["split"]["file"].endswith("split.csv")
        assert card["task"] == "multilabel-within-source" and card["initialisation"]["kind"] == "none"
        metrics = json.loads((out / "evaluation" / arch / "metrics.json").read_text())
        assert metrics["test_set"] == "internal" and metrics["part"] == "test"
        # COVID-19 is scored within ieee8023 only: Kermany test images do not count as negatives
        covid = metrics["metrics"]["per_output"]["COVID-19"]
        assert covid["n"] == n_ieee_test
    compare = json.loads((out / "compare" / "compare.json").read_text())
    assert {r["architecture"] for r in compare["models"]} == set(cfg.archs)


@pytest.mark.slow
def test_demo_on_one_source_uses_plain_multilabel(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "imagenet_available", lambda archs: False)
    monkeypatch.setenv("CXRLAB_CACHE", str(tmp_path / "cache"))
    data = make_kermany(tmp_path / "data", n_patients=30)
    cfg = demo.DemoConfig(data=[str(data)], out=str(tmp_path / "out"), task="pneumonia",
                          img_size=32, epochs=1, archs=("vgg16",), n_boot=50)
    demo.run_demo(cfg)
    said = capsys.readouterr().out
    assert "one source, nothing to check" in said and not (tmp_path / "out" / "shortcuts").exists()

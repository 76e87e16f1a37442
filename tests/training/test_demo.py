"""The main job end to end on a tiny Kermany-style folder (offline setting, two backbones)."""
import json

import pytest

from tests.training.evaluation.conftest import make_kermany
from training import demo


@pytest.mark.slow
def test_demo_runs_every_step_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "imagenet_available", lambda archs: False)  # as on an offline machine
    monkeypatch.setenv("CXRLAB_CACHE", str(tmp_path / "cache"))
    data = make_kermany(tmp_path / "data", n_patients=30)
    cfg = demo.DemoConfig(data=[str(data)], out=str(tmp_path / "out"), task="pneumonia",
                          img_size=32, epochs=1, archs=("resnet50", "vgg16"), n_boot=50)
    out = demo.run_demo(cfg)
    said = capsys.readouterr().out
    assert "FROM SCRATCH" in said  # the demo says which setting it used
    assert (out / "report" / "index.html").exists() and (out / "split.csv").exists()
    for arch in cfg.archs:
        card = json.loads((out / "models" / arch / "card.json").read_text())
        assert card["transfer"]["mode"] == "scratch" and card["split"]["file"].endswith("split.csv")
        metrics = json.loads((out / "evaluation" / arch / "metrics.json").read_text())
        assert metrics["test_set"] == "internal" and metrics["part"] == "test"
    compare = json.loads((out / "compare" / "compare.json").read_text())
    assert {r["architecture"] for r in compare["models"]} == set(cfg.archs)

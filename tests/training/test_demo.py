"""The main job end to end on tiny data (offline setting, two backbones)."""
import dataclasses
import json
from pathlib import Path

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


@pytest.mark.slow
def test_a_second_demo_reuses_models_evaluation_and_comparison(tmp_path, monkeypatch, capsys):
    from training.config import TrainConfig, config_keys
    from training.models.card import read_card

    monkeypatch.setattr(demo, "imagenet_available", lambda archs: False)
    monkeypatch.setenv("CXRLAB_CACHE", str(tmp_path / "cache"))
    data = make_kermany(tmp_path / "data", n_patients=30)
    cfg = demo.DemoConfig(data=[str(data)], out=str(tmp_path / "out"), task="pneumonia",
                          img_size=32, epochs=1, archs=("vgg16",), n_boot=50)
    calls, real = [], demo.train_all
    monkeypatch.setattr(demo, "train_all", lambda *a, **k: calls.append(k["archs"]) or real(*a, **k))
    demo.run_demo(cfg)
    first = capsys.readouterr().out
    assert calls == [("vgg16",)] and "vgg16: epoch 1/1" in first and "ETA of all 1 trainings" in first
    # the closing summary: internal AUC beside the transfer status (no site held out here)
    assert "pneumonia" in first.split("summary:")[1].lower()
    assert "validated only on its training sources (site-held-out: not measured)" in first
    model_dir = tmp_path / "out" / "models" / "vgg16"
    before = read_card(model_dir)

    def must_not_run(*a, **k):
        raise AssertionError("ran again on a second demo with the same config")

    monkeypatch.setattr(demo, "evaluate_model", must_not_run)
    monkeypatch.setattr(demo, "compare_models", must_not_run)
    demo.run_demo(cfg)
    second = capsys.readouterr().out
    assert calls == [("vgg16",)]  # the trainer was not called again
    assert "vgg16: reused (same config, data and split)" in second
    assert "evaluation reused" in second and "comparison reused" in second
    after = read_card(model_dir)
    assert after.model_sha256 == before.model_sha256 and before.training.reused is None
    assert after.training.reused.startswith("reused by demo at")

    # the card's own recipe is the same run; any change of recipe, data or split is not
    sha = after.split.sha256
    recorded = after.training.to_json()
    same = TrainConfig(**{k: recorded[k] for k in config_keys() if k not in demo.RESOLVED_KEYS})
    assert demo.same_run(after, same, sha)
    assert not demo.same_run(after, dataclasses.replace(same, epochs=2), sha)
    assert not demo.same_run(after, dataclasses.replace(same, data=[str(tmp_path / "other")]), sha)
    assert not demo.same_run(after, same, "0" * 64)


def test_eta_from_the_pace_so_far_and_durations_read_at_a_glance():
    assert demo.eta_seconds(120.0, 4, 12) == 360.0 and demo.eta_seconds(5.0, 0, 12) is None
    assert [demo.duration(s) for s in (42.4, 190, 3900)] == ["42 s", "3 min 10 s", "1 h 05 min"]


def test_progress_counts_the_epochs_left_of_every_model(capsys):
    progress = demo.TrainingProgress(n_models=3, epochs_per_model=4)
    progress.begin("resnet50")
    for epoch in range(2):
        progress.on_epoch_end(epoch)
    assert progress.left() == 2 + 4 + 4
    progress.end(Path("m/resnet50"))  # stopped early: its last two epochs are not waited for
    progress.begin("vgg16")
    progress.on_epoch_end(0)
    assert progress.left() == 3 + 4
    said = capsys.readouterr().out
    assert "resnet50: epoch 2/4" in said and "trained in" in said and "vgg16: epoch 1/4" in said


def test_make_demo_serves_with_the_app_saying_the_address_and_make_serve_needs_a_demo(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "demo"
    dry = subprocess.run(["make", "--no-print-directory", "-n", "demo", f"OUT={out}", "PORT=8123"], cwd=root,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    serve = (f".venv/bin/cxrlab serve --models-dir {out}/models --compare-dir {out}/compare "
             "--bind 127.0.0.1:8123")
    assert dry[-2:] == [f".venv/bin/cxrlab demo  --out {out}", serve]  # no early "http://" echo
    # -o: never (re)install here, whatever the state of .venv
    missing = subprocess.run(["make", "--no-print-directory", "-s", "-o", ".venv/.installed", "serve", f"OUT={out}"], cwd=root,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "What to do: run make demo first" in missing.stderr
    (out / "models").mkdir(parents=True)
    assert subprocess.run(["make", "--no-print-directory", "-n", "serve", f"OUT={out}", "PORT=8123"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.splitlines()[-1] == serve

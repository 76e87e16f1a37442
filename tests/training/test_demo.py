"""The main job end to end on tiny data (offline setting, two backbones)."""
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.training.clinical.conftest import make_ieee8023
from tests.training.evaluation.conftest import make_kermany
from training import demo, demo_progress


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
    # the closing summary: internal AUC beside the site-held-out one (no site in Kermany) and the status
    row = next(line for line in first.split("summary:")[1].splitlines() if "Pneumonia" in line)
    assert "internal 0." in row and "site-held-out not measured" in row
    assert row.rstrip().endswith("validated only on its training sources")
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
    # a card written before a setting existed ran at that setting's default: still the same run
    older = dataclasses.replace(after, training=dataclasses.replace(
        after.training, config={k: v for k, v in after.training.config.items() if k != "augment_strength"}))
    assert "augment_strength" not in older.training.to_json()
    assert demo.same_run(older, same, sha)
    assert not demo.same_run(older, dataclasses.replace(same, augment_strength="strong"), sha)


def test_eta_from_the_pace_so_far_and_durations_read_at_a_glance():
    assert demo_progress.eta_seconds(120.0, 4, 12) == 360.0 and demo_progress.eta_seconds(5.0, 0, 12) is None
    assert [demo_progress.duration(s) for s in (42.4, 190, 3900)] == ["42 s", "3 min 10 s", "1 h 05 min"]


def test_progress_counts_the_epochs_left_of_every_model(capsys):
    progress = demo_progress.TrainingProgress(n_models=3, epochs_per_model=4)
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


def test_the_eta_weighs_each_model_by_its_epoch_cost():
    """A quick first model (cost 1) must not make the slower ones' ETA optimistic."""
    progress = demo_progress.TrainingProgress(n_models=2, epochs_per_model=2, costs=[1.0, 3.0])
    progress.begin("inception_v3")
    progress.on_epoch_end(0)
    assert progress.left_cost() == 1.0 + 2 * 3.0 and progress.done_cost == 1.0
    progress.on_epoch_end(1)
    progress.end(Path("m/inception_v3"))
    progress.begin("vgg16")
    progress.on_epoch_end(0)
    assert progress.left_cost() == 3.0 and progress.done_cost == 5.0
    with pytest.raises(ValueError, match="one per model"):
        demo_progress.TrainingProgress(n_models=2, epochs_per_model=2, costs=[1.0])


def test_make_demo_serves_with_the_app_saying_the_address_and_make_serve_needs_a_demo(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "demo"
    dry = subprocess.run(["make", "--no-print-directory", "-n", "demo", f"OUT={out}", "PORT=8123"], cwd=root,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    serve = (f".venv/bin/cxrlab serve --models-dir {out}/models --compare-dir {out}/compare "
             "--bind 127.0.0.1:8123")
    # the demo serves itself (the same `cxrlab serve`) once its first model is ready
    assert dry[-1] == f".venv/bin/cxrlab demo  --out {out} --serve --bind 127.0.0.1:8123"
    # -o: never (re)install here, whatever the state of .venv
    missing = subprocess.run(["make", "--no-print-directory", "-s", "-o", ".venv/.installed", "serve", f"OUT={out}"], cwd=root,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "What to do: run make demo first" in missing.stderr
    (out / "models").mkdir(parents=True)
    assert subprocess.run(["make", "--no-print-directory", "-n", "serve", f"OUT={out}", "PORT=8123"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.splitlines()[-1] == serve


# ---------------------------------------------------------------- --serve, with fakes (no training)
FAKE_SERVER = """
import http.server, sys, threading
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health)
threading.Timer(float(sys.argv[2]), server.shutdown).start()
server.serve_forever()
"""


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """The demo on tiny Kermany data with a fake trainer, evaluator, comparison and server (an
    HTTP server answering /healthz for 3 s); returns ``(cfg, events)``: what ran, in order."""
    from tests.app.servers import free_port
    from training import demo_server
    from training.models.card import MODEL_FILE

    events, reuse = [], set()
    monkeypatch.setattr(demo, "imagenet_available", lambda archs: False)

    def train_all(tcfg, archs, ds, callbacks):
        events.append(f"train {archs[0]}")
        d = Path(tcfg.out) / archs[0]
        d.mkdir(parents=True, exist_ok=True)
        (d / MODEL_FILE).write_bytes(b"model")
        for cb in callbacks:
            cb.on_epoch_end(0)
        return [d]

    def evaluate_model(model_dir, spec, split, part, out_dir, n_boot):
        events.append(f"evaluate {Path(model_dir).name}")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "metrics.json").write_text(json.dumps({"part": part, "bootstrap": {"n_boot": n_boot}}))

    monkeypatch.setattr(demo, "train_all", train_all)
    monkeypatch.setattr(demo, "evaluate_model", evaluate_model)
    monkeypatch.setattr(demo, "compare_models", lambda *a, **k: events.append("compare"))
    monkeypatch.setattr(demo, "reusable", lambda d, cfg, sha: d.name in reuse)
    monkeypatch.setattr(demo, "mark_reused", lambda d: None)
    monkeypatch.setattr(demo, "summary_lines", lambda dirs: ["summary: (fake)"])
    port = free_port()
    monkeypatch.setattr(demo_server, "serve_command",
                        lambda out, bind: [sys.executable, "-c", FAKE_SERVER, str(port), "3"])
    real_start = demo_server.DemoServer.start
    monkeypatch.setattr(demo_server.DemoServer, "start",
                        lambda self, n: self.proc or events.append(f"serve with {n}") or real_start(self, n))
    data = make_kermany(tmp_path / "data", n_patients=30)
    cfg = demo.DemoConfig(data=[str(data)], out=str(tmp_path / "out"), task="pneumonia", epochs=1,
                          archs=("resnet50", "vgg16"), n_boot=10, serve=True, bind=f"127.0.0.1:{port}")
    return cfg, events, reuse


@pytest.mark.timeout(120)
def test_serve_starts_the_app_after_the_first_model_and_a_second_run_before_any_training(fake_run, capsys):
    from training.demo_status import STATUS_FILE, read_status

    cfg, events, reuse = fake_run
    demo.run_demo(cfg)  # returns when the (fake) app stops
    said = capsys.readouterr().out
    # each model is served as soon as it is saved: before its evaluation
    assert events == ["train resnet50", "serve with 1", "evaluate resnet50", "train vgg16",
                      "evaluate vgg16", "compare"]
    assert f"the app is up: http://{cfg.bind}" in said and f"serving at http://{cfg.bind}" in said
    assert "[3/6]" in said and "[4/6]" in said and said.index("[5/6]") < said.index("[6/6]")
    status = read_status(Path(cfg.out) / STATUS_FILE)
    assert status.finished and status.stage == "finished" and status.done == ("resnet50", "vgg16")

    # second run: vgg16 is reused (its evaluation too) and served before resnet50 trains again
    events.clear()
    reuse.add("vgg16")
    demo.run_demo(cfg)
    said = capsys.readouterr().out
    assert events == ["serve with 1", "train resnet50", "evaluate resnet50", "compare"]
    assert "vgg16: evaluation reused" in said
    assert read_status(Path(cfg.out) / STATUS_FILE).done == ("vgg16", "resnet50")


@pytest.mark.timeout(60)
def test_a_failing_run_stops_the_app_and_says_the_run_stopped(fake_run, monkeypatch):
    from training.demo_status import STATUS_FILE, read_status

    cfg, events, reuse = fake_run
    reuse.add("resnet50")

    def broken(*a, **k):
        raise RuntimeError("training failed")

    monkeypatch.setattr(demo, "train_all", broken)
    with pytest.raises(RuntimeError):
        demo.run_demo(cfg)
    status = read_status(Path(cfg.out) / STATUS_FILE)
    assert status.finished and status.stage == "stopped" and status.done == ("resnet50",)
    assert events == ["serve with 1", "evaluate resnet50"]


def test_progress_writes_the_status_the_app_shows(tmp_path, capsys):
    from training.demo_status import DemoStatus, StatusFile, read_status

    status = StatusFile(tmp_path / "demo-status.json", DemoStatus(planned=("resnet50", "vgg16"), epochs=2))
    progress = demo_progress.TrainingProgress(n_models=2, epochs_per_model=2, status=status)
    progress.begin("resnet50")
    assert read_status(status.path).current == "resnet50" and read_status(status.path).eta_seconds is None
    progress.on_epoch_end(0)
    now = read_status(status.path)
    assert (now.current, now.epoch, now.stage) == ("resnet50", 1, "training") and now.eta_seconds > 0
    status.model_done("resnet50")
    assert read_status(status.path).done == ("resnet50",) and read_status(status.path).current is None


@pytest.mark.timeout(60)
def test_wait_up_returns_when_the_app_answers_or_stops(tmp_path, monkeypatch):
    """The first evaluation waits for the app: until it answers, not the whole patience; an
    app that exits ends the wait at once and says it did not come up."""
    from tests.app.servers import free_port
    from training import demo_server

    port = free_port()
    monkeypatch.setattr(demo_server, "serve_command",
                        lambda out, bind: [sys.executable, "-c", FAKE_SERVER, str(port), "5"])
    server = demo_server.DemoServer(tmp_path, f"127.0.0.1:{port}", tmp_path / "status.json")
    server.start(1)
    started = time.monotonic()
    assert server.wait_up(30) is True and time.monotonic() - started < 10
    server.stop()

    monkeypatch.setattr(demo_server, "serve_command", lambda out, bind: [sys.executable, "-c", "pass"])
    gone = demo_server.DemoServer(tmp_path, f"127.0.0.1:{free_port()}", tmp_path / "status.json")
    gone.start(1)
    started = time.monotonic()
    assert gone.wait_up(30) is False and time.monotonic() - started < 10


@pytest.mark.timeout(120)
def test_the_quickest_backbone_trains_first_and_the_pages_keep_the_given_order(fake_run, monkeypatch):
    cfg, events, reuse = fake_run
    cfg = dataclasses.replace(cfg, archs=demo.FOUR, serve=False)
    compared = []
    monkeypatch.setattr(demo, "compare_models", lambda dirs, *a, **k: compared.extend(Path(d).name for d in dirs))
    demo.run_demo(cfg)
    assert [e for e in events if e.startswith("train")] == [
        "train inception_v3", "train resnet50", "train xception", "train vgg16"]
    assert compared == list(demo.FOUR)  # the comparison (and the pages) in the given order

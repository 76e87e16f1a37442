"""Smoke: the benchmark scripts run end to end on CPU with tiny settings and write their JSON."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.no_tensorflow import sitecustomize_dir

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, args: list[str], tmp_path: Path, timeout: int = 300, backend: str = "tensorflow",
         env: dict | None = None, ok: bool | None = True) -> dict:
    """Run a benchmark script; ``ok``: its expected success (None: timing targets, not checked)."""
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
                          env={**os.environ, "KERAS_BACKEND": backend, **(env or {})})
    if ok is not None:
        assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return json.loads(out.read_text())


TINY = ["--archs", "vgg16", "--img-size", "32", "--batch", "4", "--steps", "2", "--warmup", "1", "--epochs", "2"]


def _check_rows(result: dict, memory: str) -> dict:
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"keras", "model", "plain", "trainer"}, result["rows"]
    for r in rows.values():
        assert r["images_per_s"] > 0 and r["epoch_s"] > 0 and r[memory] > 0
        assert (r["arch"], r["size"], r["batch"]) == ("vgg16", 32, 4)
    trainer = rows["trainer"]
    # the real trainer ran: its split of the 16 synthetic files, two timed epochs
    assert 0 < trainer["train_rows"] < 16 and len(trainer["epoch_wall_s"]) == 2
    assert trainer["prepare_s"] >= 0 and trainer["total_s"] >= sum(trainer["epoch_wall_s"])
    assert set(result["checks"]["vgg16"]) == {"trainer_vs_keras", "trainer_vs_model", "trainer_vs_plain"}
    assert len(result["meta"]["load_avg"]) == 3
    return rows


@pytest.mark.slow
def test_bench_train_four_modes(tmp_path):
    _check_rows(_run("bench_train.py", TINY, tmp_path), "peak_rss_mb")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_bench_train_under_jax_without_tensorflow(tmp_path):
    """What the GPU machine runs: KERAS_BACKEND=jax and no TensorFlow at all."""
    env = {"PYTHONPATH": str(sitecustomize_dir(tmp_path / "site")), "JAX_PLATFORMS": "cpu"}
    rows = _check_rows(_run("bench_train.py", TINY, tmp_path, backend="jax", env=env), "peak_rss_mb")
    assert {r["backend"] for r in rows.values()} == {"jax"}


def test_bench_train_budget_stops_new_runs(tmp_path):
    result = _run("bench_train.py", [*TINY, "--budget", "1e-9"], tmp_path, ok=False)
    assert [r["error"] for r in result["rows"]] == ["not run: --budget 0 s spent"] * 4


def test_bench_train_checks_targets():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train import checks

    rows = [{"arch": "resnet50", "mode": m, "images_per_s": v}
            for m, v in (("keras", 50.0), ("model", 100.0), ("plain", 40.0), ("trainer", 95.0))]
    assert checks(rows)["resnet50"] == {"trainer_vs_keras": 1.9, "trainer_vs_model": 0.95,
                                        "trainer_vs_plain": 2.375, "cpu_target_met": True,
                                        "gpu_target_met": True}
    rows[3]["images_per_s"] = 85.0  # below 90 % of model-only, still above keras
    assert checks(rows)["resnet50"]["gpu_target_met"] is False
    assert checks(rows)["resnet50"]["cpu_target_met"] is True
    # CPU target: trainer >= 0.9 x keras, judged on the median of repeats
    cpu = [{"arch": "resnet50", "mode": "keras", "images_per_s": v} for v in (50.0, 40.0, 45.0)]
    cpu += [{"arch": "resnet50", "mode": "trainer", "images_per_s": v} for v in (39.0, 41.0, 60.0)]
    assert checks(cpu)["resnet50"] == {"trainer_vs_keras": 0.911, "cpu_target_met": True}
    cpu[-1]["images_per_s"] = 38.0   # median 39 / 45 = 0.867
    assert checks(cpu)["resnet50"]["cpu_target_met"] is False
    assert "cpu_target_met" not in checks([dict(r, arch="vgg16") for r in cpu])["vgg16"]


def test_bench_inference_one_backbone(tmp_path):
    result = _run("bench_inference.py", ["--archs", "vgg16", "--n", "2", "--warmup", "1", "--batch", "2"],
                  tmp_path)
    (row,) = result["rows"]
    assert row["arch"] == "vgg16" and row["size"] == 224
    for style in ("predict", "function", "xla"):
        assert 0 < row[style]["median_ms"] <= row[style]["p95_ms"]
    assert row["batch2_images_per_s"] > 0 and len(result["meta"]["load_avg_before"]) == 3


@pytest.mark.slow
def test_bench_trainer_parts(tmp_path):
    result = _run("bench_trainer_parts.py", ["--arch", "vgg16", "--img-size", "32", "--batch", "4",
                                             "--steps", "1", "--warmup", "1", "--backup-size", "32",
                                             "--repeats", "1"], tmp_path)
    augment = [r for r in result["rows"] if r["part"] == "augment"]
    (backup,) = [r for r in result["rows"] if r["part"] == "backup"]
    assert len(augment) == 3 and all(r["images_per_s"] > 0 for r in augment)
    assert backup["size_mb"] > 50 and backup["save_s"] > 0  # VGG16 conv weights + AdamW state


@pytest.mark.parametrize("script", ["prepare.sh", "gpu_bench.sh"])
def test_device_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device" / script)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_bench_gate_runs_the_gate_on_every_set(tmp_path):
    """The gate benchmark on the app's tiny models: verdict shares, OOD AUROC, budget curve."""
    import pandas as pd

    from tests.app.tiny_models import write_models
    from tests.helpers.images import write_xray

    models = write_models(tmp_path / "models")
    files = [write_xray(tmp_path / "x" / f"{i}.png", h=200 + 10 * i, w=180, seed=i) for i in range(8)]
    split = tmp_path / "split.csv"
    pd.DataFrame({"path": [str(f) for f in files], "part": ["val"] * 4 + ["test"] * 4}).to_csv(split)
    result = _run("bench_gate.py", ["--models", str(models), "--split", str(split), "--data", str(tmp_path),
                                    "--sets", "val_xray,test_xray,synthetic,crop", "--max-per-set", "6"],
                  tmp_path)
    summary = result["summary"]
    assert {"val_xray", "test_xray", "synthetic", "crop", "budgets"} <= set(summary)
    for name in ("val_xray", "test_xray", "synthetic", "crop"):
        entry = summary[name]
        assert entry["accept_rate"] + entry["warn_rate"] + entry["refuse_rate"] == pytest.approx(1.0)
    assert summary["synthetic"]["refuse_rate"] > 0.5          # noise, blanks, a 1x1 image...
    assert set(summary["test_xray"]["ood_auroc_vs_val"]) == {"tiny-multi"}
    assert set(summary["budgets"]) == {"0.01", "0.02", "0.03", "0.05", "0.1"}
    assert len(result["rows"]["crop"]) == 4


def test_bench_upload_memory_small_budget(tmp_path):
    """Each case in a fresh process: decoded under the budget, the bombs refused at once."""
    result = _run("bench_upload_memory.py", ["--cases", "png_1bit,dicom_16bit,rle_bomb,png_bomb_9400",
                                             "--max-pixels", "250000"], tmp_path)
    rows = {r["case"]: r["now"] for r in result["rows"]}
    assert [rows[c]["outcome"] for c in ("png_1bit", "dicom_16bit")] == ["decoded"] * 2
    assert rows["rle_bomb"]["outcome"] == rows["png_bomb_9400"]["outcome"] == "refused (422)"
    assert all(r["added_mb"] is not None and r["ms"] is not None for r in rows.values())  # none crashed
    assert result["checks"] == {"rle_bomb_refused": True, "rle_bomb_ms_target_met": True,
                                "rle_bomb_mb_target_met": True}


def test_bench_fuzz_small_campaign(tmp_path):
    """The full-size campaign's script, at a few cases per target: runs, and finds no failure."""
    result = _run("bench_fuzz.py", ["--decode", "40", "--api", "10", "--pdf", "5"], tmp_path)
    assert [r["target"] for r in result["reports"]] == ["decode + gate", "/api/predict",
                                                         "/api/report?format=pdf"]


@pytest.mark.slow
def test_bench_hostile_http_refuses_every_hostile_file(tmp_path):
    """A real gunicorn server: every hostile file gets its 422, the ordinary one its 200."""
    result = _run("bench_hostile_http.py", ["--repeats", "1"], tmp_path, ok=None)
    statuses = {name: row["status"] for name, row in result["rows"].items()}
    assert statuses.pop("ordinary_png_512") == 200
    assert set(statuses.values()) == {422}, statuses


@pytest.mark.slow
def test_bench_post_training_times_every_pass(tmp_path):
    """On a tiny from-scratch ResNet50 (BN layers to recompute) and its own split."""
    from tests.helpers.images import stripes_folder
    from training.config import TrainConfig
    from training.engine.fit import train

    folder = stripes_folder(tmp_path / "stripes", 12)
    model_dir = train(TrainConfig(data=[str(folder)], task="pneumonia", arch="resnet50", weights=None,
                                  img_size=32, parts=(0.6, 0.2, 0.2), mode="scratch", augment=False,
                                  epochs=1, batch_size=4, cache_dir=str(tmp_path / "cache"),
                                  out=str(tmp_path / "run"), seed=0), verbose=0)
    result = _run("bench_post_training.py", [str(model_dir), "--split", str(tmp_path / "run" / "split.csv"),
                                            "--images", "8", "--batch", "4"], tmp_path)
    assert result["eager_images_per_s"] > 0 and result["compiled_images_per_s"] > 0
    assert set(result["passes_s"]) == {"precise BN", "BN health (2 modes on validation)",
                                       "validation report", "OOD gate (features + fit)"}
    assert result["train_images"] > 0 and all(v > 0 for v in result["passes_s"].values())

"""Smoke: the benchmark scripts run end to end on CPU with tiny settings and write their JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, args: list[str], tmp_path: Path, timeout: int = 240) -> dict:
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_bench_train_three_modes(tmp_path):
    result = _run("bench_train.py", ["--archs", "vgg16", "--img-size", "32", "--batch", "4",
                                     "--steps", "2", "--warmup", "1"], tmp_path)
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"model", "plain", "trainer"}
    for r in rows.values():
        assert r["images_per_s"] > 0 and r["epoch_s"] > 0 and r["peak_rss_mb"] > 0
        assert (r["arch"], r["size"], r["batch"]) == ("vgg16", 32, 4)
    assert rows["trainer"]["cache_build_s"] >= 0
    assert set(result["checks"]["vgg16"]) == {"trainer_vs_model", "trainer_vs_plain", "target_met"}
    assert len(result["meta"]["load_avg"]) == 3


def test_bench_train_checks_targets():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train import checks

    rows = [{"arch": "resnet50", "mode": m, "images_per_s": v}
            for m, v in (("model", 100.0), ("plain", 40.0), ("trainer", 95.0))]
    assert checks(rows)["resnet50"] == {"trainer_vs_model": 0.95, "trainer_vs_plain": 2.38, "target_met": True}
    rows[2]["images_per_s"] = 85.0  # below 90 % of model-only
    assert checks(rows)["resnet50"]["target_met"] is False


def test_bench_inference_one_backbone(tmp_path):
    result = _run("bench_inference.py", ["--archs", "vgg16", "--n", "2", "--warmup", "1", "--batch", "2"],
                  tmp_path)
    (row,) = result["rows"]
    assert row["arch"] == "vgg16" and row["size"] == 224
    for style in ("predict", "function", "xla"):
        assert 0 < row[style]["median_ms"] <= row[style]["p95_ms"]
    assert row["batch2_images_per_s"] > 0 and len(result["meta"]["load_avg_before"]) == 3

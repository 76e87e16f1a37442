"""App latency benchmark: one upload through the whole app, all four backbones at their default sizes.

    python benchmarks/bench_app.py --n 30 --json out/bench_app.json
    python benchmarks/bench_app.py --n 10 --profile      # cProfile of the heatmap request
    python benchmarks/bench_app.py --n 10 --ab           # previous vs current heatmap path

Builds ResNet50 (224), InceptionV3 (299), Xception (299) and VGG16 (224) with random weights
(latency does not depend on the weights), saves them with cards into a models folder (kept
with --models-dir, so a rerun skips the build), loads them with the app's ModelBank and posts
one chest X-ray to ``/api/predict`` through Flask's test client: ``--warmup`` requests, then
``--n`` timed ones, without heatmaps and with four Grad-CAM heatmaps. Targets on a 2-core CPU:
p95 <= 300 ms without heatmaps, <= 800 ms with them.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ["No Finding", "Pneumonia", "COVID-19", "ARDS"]
TARGETS_MS = {"no_heatmaps": 300.0, "heatmaps": 800.0}


def make_models(root: str | os.PathLike, archs: tuple[str, ...] | None = None) -> Path:
    """Random-weight models with valid cards in ``root/<arch>/`` (skips ones already there)."""
    from training.models import build_model
    from training.models.card import save_model
    from training.models.registry import FOUR, get_architecture

    root = Path(root)
    for name in archs or FOUR:
        if (root / name / "card.json").is_file():
            continue
        a = get_architecture(name)
        model = build_model(name, OUTPUTS, "multilabel", weights=None)
        card = {
            "name": name, "architecture": name, "task": "multilabel", "kind": "multilabel",
            "outputs": OUTPUTS, "input_size": a.input_size,
            "preprocessing": {"size": a.input_size, "clip_percentile": 0.5, "resize": "pad",
                              "clahe": False, "clahe_clip": 0.01, "channels": 3},
            "gradcam_layer": a.gradcam_layer, "transfer": {"mode": "frozen", "weights": None},
            "thresholds": {o: 0.5 for o in OUTPUTS}, "threshold_method": "fixed (benchmark)",
            "metrics": {"validation": {}, "test": {}},
        }
        save_model(model, card, root / name)
    return root


def sample_upload(path: str | None = None) -> tuple[bytes, str]:
    """``path``, else a synthetic 2048x1792 grayscale JPEG (the size of a typical CXR export)."""
    if path:
        return Path(path).read_bytes(), Path(path).name
    from tests.helpers.images import write_image

    with tempfile.TemporaryDirectory() as tmp:
        image = write_image(Path(tmp) / "chest.jpg", "L", 2048, 1792, seed=3)
        return image.read_bytes(), image.name


def summarise(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000
    return {"n": len(ms), "median_ms": round(float(np.median(ms)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "min_ms": round(float(ms.min()), 1),
            "max_ms": round(float(ms.max()), 1)}


def timed(call: Callable[[], Any], n: int, warmup: int) -> tuple[list[float], Any]:
    """Wall times of ``n`` calls after ``warmup`` untimed ones; returns them and the last result."""
    last = None
    for _ in range(warmup):
        last = call()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        last = call()
        times.append(time.perf_counter() - start)
    return times, last


def post(client, data: bytes, name: str, query: str) -> dict:
    rv = client.post(f"/api/predict{query}", data={"file": (io.BytesIO(data), name)},
                     content_type="multipart/form-data")
    if rv.status_code != 200:
        raise RuntimeError(f"/api/predict{query} answered {rv.status_code}: {rv.get_data(as_text=True)[:300]}")
    return rv.get_json()


def machine() -> dict[str, Any]:
    import tensorflow as tf

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "load_avg": [round(x, 2) for x in os.getloadavg()]}


def run(models_dir: Path, n: int, warmup: int, profile: bool = False,
        upload: str | None = None, ab: bool = False) -> dict[str, Any]:
    """Load the bank once, then time both request kinds; returns the result dict."""
    from app import create_app
    from app.model_bank import ModelBank

    start = time.perf_counter()
    bank = ModelBank.from_dir(models_dir, device="cpu")
    load_s = time.perf_counter() - start
    app = create_app({"MODEL_BANK": bank, "SECRET_KEY": "bench", "MAX_INFLIGHT": 4})
    client = app.test_client()
    data, name = sample_upload(upload)
    result: dict[str, Any] = {"machine": machine(), "upload": {"name": name, "bytes": len(data)},
                              "models": [f"{m.name} {m.card['input_size']}px" for m in bank],
                              "bank_load_s": round(load_s, 1), "warmup": warmup, "results": {}}
    for label, query in (("no_heatmaps", ""), ("heatmaps", "?heatmaps=1")):
        times, body = timed(lambda q=query: post(client, data, name, q), n, warmup)
        stats = summarise(times)
        stats["target_p95_ms"] = TARGETS_MS[label]
        stats["met"] = stats["p95_ms"] <= TARGETS_MS[label]
        stats["last_per_model_ms"] = {m["name"]: round(m["seconds"] * 1000, 1) for m in body["models"]}
        result["results"][label] = stats
        print(f"{label:12s} median {stats['median_ms']:7.1f} ms  p95 {stats['p95_ms']:7.1f} ms  "
              f"(target {TARGETS_MS[label]:.0f}, {'met' if stats['met'] else 'MISSED'})  "
              f"per model {stats['last_per_model_ms']}", flush=True)
    from training.preprocess import decode_image

    times, _ = timed(lambda: bank.prepare(decode_image(data, name=name)), n, 1)
    result["results"]["decode_and_preprocess_only"] = summarise(times)
    print(f"decode+preprocess only: median {result['results']['decode_and_preprocess_only']['median_ms']} ms")
    if ab:
        result["ab_heatmaps"] = ab_heatmaps(bank, data, name, n)
    if profile:
        result["profile"] = profile_request(client, data, name)
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _previous_heatmap_path(m, image: np.ndarray) -> str:
    """The app's heatmap path before the fused Grad-CAM (for --ab): two forward passes,
    matplotlib's colormap call and PNG compression level 6."""
    from matplotlib import colormaps
    from PIL import Image

    from app.model_bank import heatmap_index
    from training.explain import gradcam

    probs = m.forward(image[None])[0][0]
    cam = gradcam(m.model, image, m.card["gradcam_layer"], heatmap_index(m.outputs, probs, None))
    colour = colormaps["jet"](cam)[..., :3] * 255.0
    blended = np.clip(np.rint(0.6 * image + 0.4 * colour), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blended).save(buffer, "PNG")
    return buffer.getvalue().hex()[:8]


def ab_heatmaps(bank, data: bytes, name: str, n: int) -> dict[str, Any]:
    """Previous vs current heatmap path, alternated request by request (fair under a noisy load)."""
    from training.preprocess import decode_image

    gray = decode_image(data, name=name)
    inputs = bank.prepare(gray)

    def current() -> list:
        return [bank._result(m, inputs[m.name], gray, bank._forward(m, inputs[m.name], {}), True, None)
                for m in bank]

    paths = {"previous": lambda: [_previous_heatmap_path(m, inputs[m.name]) for m in bank],
             "current": current}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for fn in paths.values():
        fn()                                                   # warm-up / tracing
    for _ in range(n):
        for key, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    out = {k: summarise(v) for k, v in times.items()}
    print(f"A/B heatmap models only (no decode): previous median {out['previous']['median_ms']} ms, "
          f"current median {out['current']['median_ms']} ms", flush=True)
    return out


def profile_request(client, data: bytes, name: str, n: int = 5) -> str:
    """cProfile of ``n`` heatmap requests; the top functions by cumulative time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        post(client, data, name, "?heatmaps=1")
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
    print(out.getvalue())
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", help="where the random-weight models are (built if missing); "
                                         "default: a temporary folder")
    ap.add_argument("--n", type=int, default=30, help="timed requests per kind (default 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--upload", help="image to post (default: a synthetic 2048x1792 JPEG)")
    ap.add_argument("--ab", action="store_true",
                    help="also time the previous heatmap path against the current one, alternated")
    ap.add_argument("--profile", action="store_true", help="also cProfile 5 heatmap requests")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    with tempfile.TemporaryDirectory(prefix="cxrlab-bench-") as tmp:
        models_dir = make_models(Path(args.models_dir or Path(tmp) / "models"))
        result = run(models_dir, args.n, args.warmup, args.profile, args.upload, args.ab)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""CPU inference latency per backbone: ``model.predict`` vs a compiled call vs XLA.

Random weights (latency does not depend on their values), each backbone at its default
input size, the saved-model graph of cxrlab (uint8 in, preprocessing layer inside):

* ``predict``: ``model.predict(x)`` on one image (what a naive server does per request);
* ``function``: ``tf.function(model)`` called on one image (no per-call predict set-up);
* ``xla``: ``tf.function(model, jit_compile=True)`` on one image;
* ``batch16``: images/s of the compiled call on batches of 16.

Median and p95 over ``--n`` calls after ``--warmup`` calls. The 1-, 5- and 15-minute load
averages are printed with the results: on a shared machine they explain the noise.

    python benchmarks/bench_inference.py --archs resnet50,inception_v3,xception,vgg16 --n 30 \\
        --json bench_inference.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FOUR = "resnet50,inception_v3,xception,vgg16"


def _times_ms(fn: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _summary(times: list[float]) -> dict:
    import numpy as np

    return {"median_ms": round(float(np.median(times)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}


def bench_arch(arch: str, n: int, warmup: int, batch: int) -> dict:
    """Latency of the three call styles and batch throughput for one backbone."""
    import keras
    import numpy as np
    import tensorflow as tf

    from training.models.build import build_model

    model = build_model(arch, ["a", "b"], "single", None, mode="frozen", weights=None)
    size = int(model.input_shape[1])
    rng = np.random.default_rng(0)
    one = rng.integers(0, 255, (1, size, size, 3), dtype=np.uint8)
    many = rng.integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    fn = tf.function(model, reduce_retracing=True)
    xla = tf.function(model, jit_compile=True)
    t0 = time.perf_counter()
    xla(one).numpy()
    row = {"arch": arch, "size": size, "n": n, "xla_compile_s": round(time.perf_counter() - t0, 1)}
    for name, call in (("predict", lambda: model.predict(one, verbose=0)),
                       ("function", lambda: fn(one).numpy()),
                       ("xla", lambda: xla(one).numpy())):
        row[name] = _summary(_times_ms(call, n, warmup))
    batch_ms = _times_ms(lambda: fn(many).numpy(), max(3, n // 5), 1)
    row[f"batch{batch}_images_per_s"] = round(batch * 1000 / float(np.median(batch_ms)), 1)
    keras.backend.clear_session()
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=FOUR)
    ap.add_argument("--n", type=int, default=30, help="timed calls per style")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", help="write the rows and machine facts here")
    args = ap.parse_args(argv)
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("error: bench_inference measures the TensorFlow serving path; "
                         "set KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "load_avg_before": [round(v, 2) for v in os.getloadavg()]}
    rows = []
    for arch in args.archs.split(","):
        row = bench_arch(arch, args.n, args.warmup, args.batch)
        row["load_avg"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(row), flush=True)
        rows.append(row)
    meta["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({"meta": meta}))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

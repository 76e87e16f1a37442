"""Training-throughput benchmark: model only vs a plain input pipeline vs the cxrlab trainer path.

For each backbone (in its own subprocess, so peak memory is per backbone) three ways to feed
the same train step (``model.fit``, all layers trainable, random init):

* ``model``: one batch of host uint8 images already in memory, fed again and again (the
  ceiling: no decoding, no pipeline);
* ``plain``: what a user would write first: a ``keras.utils.PyDataset`` that opens and
  decodes the JPEGs with PIL every batch into float32 (no cache);
* ``trainer``: the project's path: images preprocessed once into the ``ImageCache``, then
  ``ArrayBatches`` (uint8) through the augmentation wrapper on the device.

Reports images/s, seconds per epoch (``--epoch-images``, default 5216 = Kermany train) and
peak memory (JAX: device ``peak_bytes_in_use``; else the process's peak RSS), and checks
the targets of docs/scaling.md (resnet50: trainer ≥ 90 % of model-only, ≥ 2× plain).

GPU (device machine, JAX backend)::

    KERAS_BACKEND=jax python benchmarks/bench_train.py --data ../shared/data/kermany-pneumonia \\
        --batch 128 --steps 30 --json bench_train.json

CPU smoke run (no data needed: synthetic JPEGs are written to a temp folder)::

    python benchmarks/bench_train.py --archs resnet50 --img-size 64 --batch 8 --steps 3
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "KERAS_BACKEND" not in os.environ:  # the device machine has JAX and no TensorFlow
    os.environ["KERAS_BACKEND"] = "jax" if importlib.util.find_spec("jax") else "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_ARCHS = "resnet50,inception_v3,xception,vgg16,densenet121"
MODES = ("model", "plain", "trainer")
KERMANY_TRAIN = 5216


# ------------------------------------------------------------------ data
def jpeg_files(data: str | None, n: int, tmp: Path) -> list[str]:
    """Up to ``n`` JPEGs under ``data``; without ``data``, ``n`` synthetic 512 px JPEGs in ``tmp``."""
    if data:
        files = sorted(str(p) for p in Path(data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        if not files:
            raise SystemExit(f"error: no JPEG files under {data}")
        return files[:n]
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = tmp / f"synthetic{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8)).save(path, quality=90)
        out.append(str(path))
    return out


def _cycle(dataset, steps: int):
    """A PyDataset of ``steps`` batches cycling over ``dataset`` (fewer images than steps × batch)."""
    import keras

    class Cycle(keras.utils.PyDataset):
        def __len__(self) -> int:
            return steps

        def __getitem__(self, i: int):
            return dataset[i % len(dataset)]

    return Cycle()


class PlainJPEGs:
    """Decode + resize with PIL every batch, float32 (the no-cache pipeline)."""

    def __init__(self, files: list[str], size: int, batch: int):
        self.files, self.size, self.batch = files, size, batch

    def __len__(self) -> int:
        return max(1, len(self.files) // self.batch)

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        names = self.files[i * self.batch:(i + 1) * self.batch]
        x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((self.size, self.size)), np.float32)
                      for f in names])
        return x, _targets(len(x))


def _targets(n: int):
    import numpy as np

    return np.eye(2, dtype="float32")[np.arange(n) % 2]


# ------------------------------------------------------------------ one backbone
def _peak_memory() -> dict:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.local_devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return {"peak_device_mb": round(stats["peak_bytes_in_use"] / 2**20, 1)}
    # ru_maxrss is in KiB on Linux
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _timed_fit(model, dataset, steps: int, warmup: int) -> float:
    """Seconds for ``steps`` train steps after ``warmup`` untimed ones (compilation), one fit."""
    import keras

    marks: dict[str, float] = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == warmup - 1:
                float(keras.ops.convert_to_numpy((logs or {})["loss"]))  # wait for the device
                marks["start"] = time.perf_counter()

    history = model.fit(_cycle(dataset, warmup + steps), epochs=1, verbose=0, callbacks=[Clock()])
    float(history.history["loss"][-1])
    return time.perf_counter() - marks["start"]


def _compiled(model, accumulate: int):
    import keras

    extra = {"gradient_accumulation_steps": accumulate} if accumulate > 1 else {}
    # JAX always compiles with XLA; on TensorFlow (CPU runs here) XLA would add minutes of
    # compilation per model for no benefit to what is measured.
    jit = "auto" if keras.backend.backend() == "jax" else False
    model.compile(optimizer=keras.optimizers.AdamW(1e-4, **extra), loss="categorical_crossentropy",
                  jit_compile=jit)
    return model


def run_one(arch: str, args: argparse.Namespace) -> list[dict]:
    """Every mode of ``args.modes`` for one backbone; one row per mode."""
    import keras
    import numpy as np

    from training.data.cache import ImageCache
    from training.engine.augment import build_augmentation, with_augmentation
    from training.engine.data import ArrayBatches
    from training.models.build import build_model
    from training.models.registry import get_architecture
    from training.preprocess import PreprocessConfig

    size = args.img_size or get_architecture(arch).input_size
    precision = args.precision
    if precision == "auto":
        gpu = keras.backend.backend() == "jax" and any(d.platform == "gpu" for d in __import__("jax").devices())
        precision = "mixed_bfloat16" if gpu else "float32"
    keras.mixed_precision.set_dtype_policy(precision)
    model = build_model(arch, ["a", "b"], "single", size, mode="scratch", weights=None)
    base = {"arch": arch, "size": size, "batch": args.batch, "accumulate": args.accumulate,
            "precision": precision, "steps": args.steps, "backend": keras.backend.backend()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = jpeg_files(args.data, args.n_images or args.batch * 4, Path(tmp))
        for mode in args.modes.split(","):
            row = dict(base, mode=mode)
            if mode == "model":
                x = np.random.default_rng(0).integers(0, 255, (args.batch, size, size, 3), dtype=np.uint8)
                seconds = _timed_fit(_compiled(model, args.accumulate), [(x, _targets(len(x)))],
                                     args.steps, args.warmup)
            elif mode == "plain":
                seconds = _timed_fit(_compiled(model, args.accumulate), PlainJPEGs(files, size, args.batch),
                                     args.steps, args.warmup)
            elif mode == "trainer":
                t0 = time.perf_counter()
                images, _ = ImageCache(Path(tmp) / "cache").load(files, PreprocessConfig(size=size),
                                                                 workers=os.cpu_count())
                row["cache_build_s"] = round(time.perf_counter() - t0, 2)
                wrapper = _compiled(with_augmentation(model, build_augmentation()), args.accumulate)
                data = ArrayBatches(images, _targets(len(images)), args.batch, shuffle=True)
                seconds = _timed_fit(wrapper, data, args.steps, args.warmup)
            else:
                raise SystemExit(f"error: unknown mode {mode!r}; choose from {', '.join(MODES)}")
            ips = args.steps * args.batch / seconds
            rows.append(row | {"images_per_s": round(ips, 2), "epoch_s": round(args.epoch_images / ips, 1),
                               **_peak_memory()})
    return rows


# ------------------------------------------------------------------ driver
def checks(rows: list[dict]) -> dict:
    """The targets of docs/scaling.md, per backbone with all three modes."""
    out = {}
    for arch in sorted({r["arch"] for r in rows}):
        ips = {r["mode"]: r["images_per_s"] for r in rows if r["arch"] == arch}
        if not set(MODES) <= set(ips):
            continue
        vs_model, vs_plain = ips["trainer"] / ips["model"], ips["trainer"] / ips["plain"]
        out[arch] = {"trainer_vs_model": round(vs_model, 3), "trainer_vs_plain": round(vs_plain, 2),
                     "target_met": vs_model >= 0.9 and vs_plain >= 2.0 if arch == "resnet50" else None}
    return out


def _subprocess_rows(arch: str, argv: list[str], timeout: float) -> list[dict]:
    cmd = [sys.executable, __file__, *argv, "--one", arch]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    rows = [json.loads(line[5:]) for line in proc.stdout.splitlines() if line.startswith("ROW: ")]
    if proc.returncode != 0:
        rows.append({"arch": arch, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]})
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder of JPEGs (e.g. Kermany); default: synthetic JPEGs")
    ap.add_argument("--archs", default=DEFAULT_ARCHS)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--img-size", type=int, help="default: each backbone's own input size")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    ap.add_argument("--steps", type=int, default=30, help="timed train steps per mode")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation), >= 1")
    ap.add_argument("--n-images", type=int, help="distinct images cycled (default 4 batches)")
    ap.add_argument("--epoch-images", type=int, default=KERMANY_TRAIN)
    ap.add_argument("--precision", default="auto", help="auto (bf16 on GPU) | float32 | mixed_bfloat16 | mixed_float16")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per backbone")
    ap.add_argument("--json", help="write all rows + checks here")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one backbone, print rows
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.one:
        for row in run_one(args.one, args):
            print("ROW: " + json.dumps(row), flush=True)
        return 0
    rows = []
    for arch in args.archs.split(","):
        for row in _subprocess_rows(arch, argv, args.timeout):
            print(json.dumps(row), flush=True)
            rows.append(row)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "cpu_count": os.cpu_count(),
            "load_avg": [round(v, 2) for v in os.getloadavg()], "backend": os.environ["KERAS_BACKEND"]}
    result = {"meta": meta, "rows": rows, "checks": checks(rows)}
    print(json.dumps({"checks": result["checks"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""What the trainer adds to a training step, part by part (CPU here; any backend).

* ``augment``: images/s of ``model.fit`` on one in-memory uint8 batch, for the bare model, the
  wrapper with Keras's ``RandomRotation`` + ``RandomTranslation`` + ``RandomZoom`` (the
  trainer's augmentation before 2026-11-26) and the wrapper with the current
  ``build_augmentation`` (one ``RandomAffine`` + brightness + contrast);
* ``backup``: size and seconds of one resume backup (weights + AdamW state, what
  ``engine.callbacks.Backup`` writes) and of a host copy of the weights (what
  ``BestOnValidation`` takes at an improving epoch).

    KERAS_BACKEND=jax python benchmarks/bench_trainer_parts.py --arch resnet50 --img-size 96 --batch 16
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
if "KERAS_BACKEND" not in os.environ:
    os.environ["KERAS_BACKEND"] = "jax" if importlib.util.find_spec("jax") else "tensorflow"


def keras_three_layers(seed: int = 0):
    """The previous augmentation: three separate Keras geometric layers + intensity."""
    import keras

    from training.engine import augment as a

    return keras.Sequential([
        keras.layers.RandomRotation(a.ROTATION, fill_mode="constant", seed=seed),
        keras.layers.RandomTranslation(a.TRANSLATION, a.TRANSLATION, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomZoom(a.ZOOM, a.ZOOM, fill_mode="constant", seed=seed + 2),
        keras.layers.RandomBrightness(a.INTENSITY, value_range=(0, 255), seed=seed + 3),
        keras.layers.RandomContrast(a.INTENSITY, value_range=(0, 255), seed=seed + 4),
    ])


def augment_rows(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    from bench_train import _compiled, _targets, timed_fit
    from training.engine.augment import build_augmentation, with_augmentation
    from training.models.build import build_model

    x = np.random.default_rng(0).integers(0, 255, (args.batch, args.img_size, args.img_size, 3), dtype=np.uint8)
    batches = [(x, _targets(len(x)))]
    model = build_model(args.arch, ["a", "b"], "single", args.img_size, mode="scratch", weights=None)
    variants = {"no augmentation": lambda: model,
                "keras rotation+translation+zoom layers": lambda: with_augmentation(model, keras_three_layers()),
                "build_augmentation (RandomAffine)": lambda: with_augmentation(model, build_augmentation())}
    rows = []
    for name, make in variants.items():
        seconds = timed_fit(_compiled(make(), 1), batches, args.steps, args.warmup)
        rows.append({"part": "augment", "variant": name, "images_per_s": round(args.steps * args.batch / seconds, 2)})
    return rows


def backup_rows(args: argparse.Namespace) -> list[dict]:
    import keras
    import numpy as np

    from bench_train import _targets
    from training.models.build import build_model

    size = args.backup_size
    model = build_model(args.arch, ["a", "b"], "single", size, mode="scratch", weights=None)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="categorical_crossentropy")
    x = np.zeros((2, size, size, 3), np.uint8)
    model.fit(x, _targets(2), epochs=1, verbose=0)  # creates the optimizer state
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            path = Path(tmp) / "latest.weights.h5"
            t0 = time.perf_counter()
            model.save_weights(path)
            t1 = time.perf_counter()
            [np.array(w) for w in model.get_weights()]
            t2 = time.perf_counter()
            rows.append({"part": "backup", "arch": args.arch, "size_mb": round(path.stat().st_size / 2**20, 1),
                         "save_s": round(t1 - t0, 3), "host_copy_s": round(t2 - t1, 3), "repeat": i})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--img-size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--backup-size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="augment,backup")
    ap.add_argument("--json")
    args = ap.parse_args()
    import keras

    rows = []
    parts = args.parts.split(",")
    if "augment" in parts:
        rows += augment_rows(args)
    if "backup" in parts:
        rows += backup_rows(args)
    meta = {"backend": keras.backend.backend(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_avg": [round(v, 2) for v in os.getloadavg()], "arch": args.arch, "img_size": args.img_size,
            "batch": args.batch}
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the trainer adds to a training step, part by part (CPU here; any backend).

* ``augment``: images/s of ``model.fit`` on one in-memory uint8 batch, for the bare model, the
  wrapper with Keras's ``RandomRotation`` + ``RandomTranslation`` + ``RandomZoom`` (the
  trainer's augmentation before 2026-11-26) and the wrapper with the current
  ``build_augmentation`` (one ``RandomAffine`` + brightness + contrast);
* ``backup``: size and seconds of one resume backup (weights + AdamW state, what
  ``engine.callbacks.Backup`` writes) and of a host copy of the weights (what
  ``BestOnValidation`` takes at an improving epoch);
* ``timeline``: the real trainer (``engine.fit.train``, scratch, on ``--data``) with a clock
  on each part of an epoch: the training steps, the validation pass, the best-weights copy,
  the backup (``--backup-every``) and its best-weights write.

The ``augment`` variants alternate ``--repeats`` times (TensorFlow's CPU throughput switches
levels between fits: compare within a repeat).

    KERAS_BACKEND=jax python benchmarks/bench_trainer_parts.py --arch resnet50 --img-size 96 --batch 16
    KERAS_BACKEND=tensorflow python benchmarks/bench_trainer_parts.py --arch resnet50 --img-size 96 \
        --batch 32 --steps 16 --repeats 3 --parts augment,timeline --data ../shared/data/kermany-pneumonia
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
    compiled = {name: _compiled(make(), 1) for name, make in variants.items()}
    rows = []
    for repeat in range(args.repeats):
        for name, model in compiled.items():
            seconds = timed_fit(model, batches, args.steps, args.warmup)
            rows.append({"part": "augment", "variant": name, "repeat": repeat,
                         "images_per_s": round(args.steps * args.batch / seconds, 2)})
    return rows


def timeline_rows(args: argparse.Namespace) -> list[dict]:
    """Seconds of each part of the trainer's epochs (train steps, validation, copies, backups)."""
    import functools
    import keras

    from training.config import TrainConfig
    from training.engine import callbacks as C
    from training.engine.fit import train

    events: list[tuple[str, float]] = []

    def timed(cls, name):
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(*a, **kw):
            t = time.perf_counter()
            result = original(*a, **kw)
            events.append((f"{cls.__name__}.{name}", time.perf_counter() - t))
            return result
        return wrapper

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_test_begin(self, logs=None):
            events.append(("train steps", time.perf_counter() - self.t0))
            self.v0 = time.perf_counter()

        def on_test_end(self, logs=None):
            events.append(("validation", time.perf_counter() - self.v0))

    patched = [(C.Backup, "_save_model"), (C.BestOnValidation, "persist"), (C.BestOnValidation, "save_best")]
    saved = [(cls, name, getattr(cls, name)) for cls, name in patched]
    for cls, name in patched:
        setattr(cls, name, timed(cls, name))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(data=[args.data], task="pneumonia", arch=args.arch, mode="scratch", weights=None,
                              img_size=args.img_size, epochs=args.epochs, batch_size=args.batch, augment=True,
                              patience=0, warmup_epochs=0, mixed_precision="off", on_error="skip",
                              backup_interval=args.backup_every, max_images=args.max_images,
                              cache_dir=args.cache_dir, out=str(Path(tmp) / "run"), precise_bn=False)
            train(cfg, callbacks=[Clock()], verbose=0)
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)
    return [{"part": "timeline", "event": e, "seconds": round(s, 3)} for e, s in events]


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
    ap.add_argument("--parts", default="augment,backup", help="augment,backup,timeline")
    ap.add_argument("--data", help="timeline: a Kermany-layout folder")
    ap.add_argument("--epochs", type=int, default=3, help="timeline: trainer epochs")
    ap.add_argument("--max-images", type=int, default=1536, help="timeline: training rows")
    ap.add_argument("--backup-every", type=float, default=60.0, help="timeline: backup interval, s")
    ap.add_argument("--cache-dir", help="timeline: image cache (default the trainer's)")
    ap.add_argument("--json")
    args = ap.parse_args()
    import keras

    rows = []
    parts = args.parts.split(",")
    if "augment" in parts:
        rows += augment_rows(args)
    if "backup" in parts:
        rows += backup_rows(args)
    if "timeline" in parts:
        if not args.data:
            raise SystemExit("error: --parts timeline needs --data (a Kermany-layout folder)")
        rows += timeline_rows(args)
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

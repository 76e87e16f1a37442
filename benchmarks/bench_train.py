"""Training-throughput benchmark: model only vs a plain input pipeline vs the cxrlab trainer.

For each backbone, four ways to train the same network (random init, all layers trainable),
each in its own subprocess (so peak memory is per backbone and mode):

* ``keras``: the reference a user would write: the bare ``keras.applications`` backbone
  (``include_top=False, pooling="avg"`` + a softmax ``Dense``), ``model.fit`` on in-memory
  float32 arrays, ``jit_compile=False`` (XLA on for JAX, which always compiles), same size,
  batch and precision; throughput of the epochs after the first, like the trainer's;
* ``model``: one batch of host uint8 images already in memory, fed again and again through
  ``model.fit`` (the ceiling: no decoding, no pipeline, no callbacks);
* ``plain``: what a user writes first: a ``keras.utils.PyDataset`` that opens and decodes the
  JPEGs with PIL every batch into float32 (no cache, no workers), same ``model.fit``;
* ``trainer``: the project's trainer end to end, ``training.engine.fit.train`` on the same
  files as a dataset (task ``pneumonia``, mode ``scratch``, augmentation on, its callbacks,
  validation every epoch, backups at the default interval): images preprocessed once into the
  image cache, uint8 batches, augmentation on the device. Its throughput is the training rows
  divided by the wall time of an epoch (validation and callbacks included), epochs after the
  first (compilation) only.

``keras`` and ``trainer`` report the **median** epoch (``epoch_wall_s`` lists them all): on the
2-core VM TensorFlow's CPU throughput switches between two levels from one ``fit`` epoch to
the next (about 2x apart, the same for any model: BENCHMARKS.md), so a mean of three epochs
mostly measures which level each run drew. ``--repeats`` runs the modes that many times,
alternating, and the checks use the median over repeats.

Reports images/s, seconds per epoch of ``--epoch-images`` (default 5216 = Kermany train),
peak memory (JAX: device ``peak_bytes_in_use``; else the process's peak RSS) and the targets
of docs/scaling.md (resnet50: trainer >= 90 % of model-only and >= 2x plain). The JSON is
rewritten after every backbone, so a run cut short keeps what it measured.

GPU (device machine, JAX backend; see benchmarks/device/)::

    KERAS_BACKEND=jax python benchmarks/bench_train.py --data .benchdata/kermany \\
        --batch 128 --steps 30 --json bench_train.json

CPU smoke run (no data needed: synthetic JPEGs in NORMAL/ and PNEUMONIA/ folders)::

    python benchmarks/bench_train.py --archs vgg16 --img-size 32 --batch 4 --steps 2 --epochs 2

The CPU target (issue 11: trainer >= 90 % of ``keras`` for resnet50 at 96 px, batch 32)::

    python benchmarks/bench_train.py --data ../shared/data/kermany-pneumonia --modes keras,trainer \
        --archs resnet50 --img-size 96 --batch 32 --epochs 4 --repeats 2
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
    os.environ["KERAS_BACKEND"] = "tensorflow" if importlib.util.find_spec("tensorflow") else "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_ARCHS = "resnet50,inception_v3,xception,vgg16,densenet121"
MODES = ("keras", "model", "plain", "trainer")
DEFAULT_MODES = "keras,model,plain,trainer"
KERMANY_TRAIN = 5216


# ------------------------------------------------------------------ data
def jpeg_files(data: str | None, n: int | None, tmp: Path) -> list[str]:
    """JPEGs under ``data`` (at most ``n``); without ``data``, ``n`` synthetic 512 px JPEGs.

    Synthetic files go to ``tmp/NORMAL`` and ``tmp/PNEUMONIA`` so the trainer reads them as a
    folder dataset (one patient per file).
    """
    if data:
        files = sorted(str(p) for p in Path(data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        if not files:
            raise SystemExit(f"error: no JPEG files under {data}")
        return files[:n] if n else files
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n or 64):
        folder = tmp / ("NORMAL" if i % 2 else "PNEUMONIA")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"synthetic{i:04d}.jpeg"
        Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8)).save(path, quality=90)
        out.append(str(path))
    return out


def _targets(n: int):
    import numpy as np

    return np.eye(2, dtype="float32")[np.arange(n) % 2]


def _cycle(batches, steps: int):
    """A PyDataset of ``steps`` batches cycling over ``batches`` (anything indexable)."""
    import keras

    class Cycle(keras.utils.PyDataset):
        def __len__(self) -> int:
            return steps

        def __getitem__(self, i: int):
            return batches[i % len(batches)]

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


# ------------------------------------------------------------------ measurements
class IdleMeter:
    """Wall seconds in which the whole process used < 10 % of one core (sampled every 0.25 s).

    Training keeps both cores busy, so idle seconds are time lost waiting (e.g. tf.data's
    autotuning thread holding up the end of an epoch: BENCHMARKS.md).
    """

    def __init__(self, period: float = 0.25):
        import threading

        self.period, self.idle, self._stop = period, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        while not self._stop.wait(self.period):
            w, c = time.perf_counter(), time.process_time()
            if c - cpu < 0.1 * (w - wall):
                self.idle += w - wall
            wall, cpu = w, c

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.idle, 1)


def _peak_memory() -> dict:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.local_devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return {"peak_device_mb": round(stats["peak_bytes_in_use"] / 2**20, 1)}
    # ru_maxrss is in KiB on Linux
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _device() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return platform.processor() or platform.machine()


def _precision(setting: str) -> str:
    import keras

    if setting != "auto":
        return setting
    gpu = keras.backend.backend() == "jax" and any(d.platform == "gpu" for d in __import__("jax").devices())
    return "mixed_bfloat16" if gpu else "float32"


def _compiled(model, accumulate: int):
    import keras

    extra = {"gradient_accumulation_steps": accumulate} if accumulate > 1 else {}
    # JAX always compiles with XLA; on TensorFlow (CPU runs here) XLA would add minutes of
    # compilation per model for no benefit to what is measured.
    jit = "auto" if keras.backend.backend() == "jax" else False
    model.compile(optimizer=keras.optimizers.AdamW(1e-4, **extra), loss="categorical_crossentropy",
                  jit_compile=jit)
    return model


def timed_fit(model, batches, steps: int, warmup: int) -> float:
    """Seconds for ``steps`` train steps, after a first ``fit`` of ``warmup`` steps (compilation).

    No callback has a batch hook, so on JAX the host queues steps without waiting for each; the
    timed ``fit`` returns after its last step finished (the epoch's logs are read back).
    """
    model.fit(_cycle(batches, warmup), epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(_cycle(batches, steps), epochs=1, verbose=0)
    return time.perf_counter() - start


def run_model_or_plain(mode: str, arch: str, args: argparse.Namespace, files: list[str], precision: str) -> dict:
    """Images/s of ``model.fit`` fed one in-memory batch (``model``) or PIL decoding (``plain``)."""
    import keras
    import numpy as np

    from training.models.build import build_model
    from training.models.registry import get_architecture

    size = args.img_size or get_architecture(arch).input_size
    keras.mixed_precision.set_dtype_policy(precision)
    model = _compiled(build_model(arch, ["a", "b"], "single", size, mode="scratch", weights=None),
                      args.accumulate)
    if mode == "model":
        x = np.random.default_rng(0).integers(0, 255, (args.batch, size, size, 3), dtype=np.uint8)
        batches = [(x, _targets(len(x)))]
    else:
        batches = PlainJPEGs(files, size, args.batch)
    seconds = timed_fit(model, batches, args.steps, args.warmup)
    return {"images_per_s": args.steps * args.batch / seconds, "timed_images": args.steps * args.batch}


def epoch_clock():
    """A callback taking wall-clock marks at every epoch start and at the end (no batch hooks)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.marks.append(time.perf_counter())

        def on_train_end(self, logs=None):
            self.marks.append(time.perf_counter())

        @property
        def epochs(self) -> list[float]:
            return [b - a for a, b in zip(self.marks, self.marks[1:])]

    return EpochClock()


def steady_rate(rows: int, epochs: list[float]) -> float:
    """Images/s of the median epoch after the first (the first compiles)."""
    import statistics

    steady = epochs[1:] or epochs
    return rows / statistics.median(steady)


def run_keras(arch: str, args: argparse.Namespace, precision: str) -> dict:
    """The plain-Keras reference: bare backbone, in-memory float32 arrays, ``model.fit``."""
    import keras
    import numpy as np

    from training.models.registry import get_architecture

    a = get_architecture(arch)
    size = args.img_size or a.input_size
    # As many rows per epoch as the trainer trains on: epochs of equal length see the machine's
    # slow stretches alike (a short epoch's median skips them more often than a long one's).
    rows = args.n_images or (trainer_train_rows(_trainer_config(arch, args, args.data, Path("."), precision))
                             if args.data else 32 * args.batch)
    keras.mixed_precision.set_dtype_policy(precision)
    backbone = a.constructor(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    model = keras.Sequential([backbone, keras.layers.Dense(2, activation="softmax", dtype="float32")])
    jit = keras.backend.backend() == "jax"  # JAX always compiles; TF: the reference's False
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="categorical_crossentropy", jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (rows, size, size, 3)).astype("float32")
    clock = epoch_clock()
    model.fit(x, _targets(rows), batch_size=args.batch, epochs=args.epochs, callbacks=[clock], verbose=0)
    return {"images_per_s": steady_rate(rows, clock.epochs), "train_rows": rows,
            "epoch_wall_s": [round(e, 3) for e in clock.epochs]}


def _trainer_config(arch: str, args: argparse.Namespace, data: str, tmp: Path, precision: str):
    """The trainer's config in this benchmark (backups at the trainer's default unless given)."""
    from training.config import TrainConfig

    backup = {} if args.backup_every is None else {"backup_interval": args.backup_every}
    return TrainConfig(data=[data], task="pneumonia", arch=arch, mode="scratch", weights=None,
                       img_size=args.img_size, epochs=args.epochs, batch_size=args.batch,
                       accumulate=args.accumulate, augment=True, patience=0, warmup_epochs=0,
                       mixed_precision="on" if precision.startswith("mixed") else "off",
                       workers=args.workers, cache_dir=str(tmp / "cache"), out=str(tmp / "run"),
                       on_error="skip", max_images=args.n_images, **backup)


def trainer_train_rows(cfg) -> int:
    """How many training rows the trainer will use with ``cfg`` (its split, labelled rows)."""
    import numpy as np

    from training.data.splits import make_split
    from training.data.tasks import get_task
    from training.engine.data import usable_rows
    from training.engine.prepare import load_data

    ds = load_data(cfg)
    task = get_task(cfg.task)
    split = make_split(ds, task, parts=cfg.parts, seed=cfg.seed)
    train = np.intersect1d(np.flatnonzero(split["part"].to_numpy() == "train"), usable_rows(task.encode(ds)))
    return min(len(train), cfg.max_images or len(train))


def run_trainer(arch: str, args: argparse.Namespace, data: str, tmp: Path, precision: str) -> dict:
    """The project's trainer end to end on ``data``; throughput of the epochs after the first."""
    from training.engine.fit import train

    clock = epoch_clock()
    cfg = _trainer_config(arch, args, data, tmp, precision)
    start = time.perf_counter()
    out = train(cfg, callbacks=[clock], verbose=0)
    total = time.perf_counter() - start
    card = json.loads((out / "card.json").read_text())
    rows = int(card["training"]["train_images_used"])
    return {"images_per_s": steady_rate(rows, clock.epochs), "train_rows": rows,
            "val_rows": int(card["metrics"]["validation"].get("n_images", 0)),
            "epoch_wall_s": [round(e, 3) for e in clock.epochs],
            "prepare_s": round(clock.marks[0] - start, 2),
            "total_s": round(total, 2), "backup_every_s": cfg.backup_interval,
            "mixed_precision": card["training"]["mixed_precision"]}


def run_one(arch: str, mode: str, args: argparse.Namespace) -> dict:
    """One (backbone, mode) measurement, as a row."""
    from training.models.registry import get_architecture

    precision = _precision(args.precision)
    row = {"arch": arch, "mode": mode, "size": args.img_size or get_architecture(arch).input_size,
           "batch": args.batch, "accumulate": args.accumulate, "precision": precision,
           "steps": args.steps, "backend": os.environ["KERAS_BACKEND"], "device": _device()}
    meter = IdleMeter()
    with tempfile.TemporaryDirectory() as tmp:
        files = jpeg_files(args.data, args.n_images or (None if args.data else args.batch * 4), Path(tmp) / "jpegs")
        if mode == "keras":
            row |= run_keras(arch, args, precision)
        elif mode in ("model", "plain"):
            row |= run_model_or_plain(mode, arch, args, files, precision)
        elif mode == "trainer":
            row |= run_trainer(arch, args, args.data or str(Path(tmp) / "jpegs"), Path(tmp), precision)
        else:
            raise SystemExit(f"error: unknown mode {mode!r}; choose from {', '.join(MODES)}")
    row["idle_s"] = meter.stop()
    row["images_per_s"] = round(row["images_per_s"], 2)
    row["epoch_s"] = round(args.epoch_images / row["images_per_s"], 2)
    return row | _peak_memory()


# ------------------------------------------------------------------ driver
def checks(rows: list[dict]) -> dict:
    """Trainer / reference ratios per backbone (medians over repeats) and the resnet50 targets.

    CPU (issue 11): trainer >= 90 % of ``keras``. GPU (docs/scaling.md): trainer >= 90 % of
    ``model`` and >= 2x ``plain``. A target is judged only when its modes were measured.
    """
    import statistics

    out = {}
    for arch in sorted({r["arch"] for r in rows}):
        ips = {}
        for mode in MODES:
            values = [r["images_per_s"] for r in rows
                      if r["arch"] == arch and r["mode"] == mode and "images_per_s" in r]
            if values:
                ips[mode] = statistics.median(values)
        if "trainer" not in ips or len(ips) < 2:
            continue
        ratio = {m: ips["trainer"] / ips[m] for m in ("keras", "model", "plain") if m in ips}
        entry: dict = {f"trainer_vs_{m}": round(v, 3) for m, v in ratio.items()}
        if arch == "resnet50":
            if "keras" in ratio:
                entry["cpu_target_met"] = ratio["keras"] >= 0.9
            if {"model", "plain"} <= set(ratio):
                entry["gpu_target_met"] = ratio["model"] >= 0.9 and ratio["plain"] >= 2.0
        out[arch] = entry
    return out


def _subprocess_row(arch: str, mode: str, argv: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *argv, "--one", f"{arch}:{mode}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"arch": arch, "mode": mode, "error": f"timed out after {timeout:.0f} s"}
    rows = [json.loads(line[5:]) for line in proc.stdout.splitlines() if line.startswith("ROW: ")]
    if proc.returncode != 0 or not rows:
        return {"arch": arch, "mode": mode, "error": proc.stderr.strip().splitlines()[-3:] or ["failed"]}
    return rows[0]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder of JPEGs in class folders (Kermany layout); default: synthetic")
    ap.add_argument("--archs", default=DEFAULT_ARCHS)
    ap.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--repeats", type=int, default=1, help="run the modes this many times, alternating")
    ap.add_argument("--img-size", type=int, help="default: each backbone's own input size")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    ap.add_argument("--steps", type=int, default=30, help="timed train steps (model, plain)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation), >= 1")
    ap.add_argument("--epochs", type=int, default=4, help="trainer epochs (the first is not timed)")
    ap.add_argument("--backup-every", type=float, help="trainer backup interval, s (default: the trainer's)")
    ap.add_argument("--workers", type=int, default=1, help="trainer PyDataset workers")
    ap.add_argument("--n-images", type=int,
                    help="at most this many JPEGs (plain), training rows (trainer) or arrays "
                         "(keras; default: the trainer's training rows with --data, else 32 batches)")
    ap.add_argument("--epoch-images", type=int, default=KERMANY_TRAIN)
    ap.add_argument("--precision", default="auto", help="auto (bf16 on GPU) | float32 | mixed_bfloat16")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per (backbone, mode)")
    ap.add_argument("--budget", type=float, default=0, help="stop starting new runs after this many s (0: none)")
    ap.add_argument("--json", help="write all rows + checks here (rewritten after each run)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: "arch:mode", print its row
    return ap.parse_args(argv)


def _write(path: str | None, rows: list[dict], start: float) -> dict:
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
            "cpu_count": os.cpu_count(), "load_avg": [round(v, 2) for v in os.getloadavg()],
            "backend": os.environ["KERAS_BACKEND"], "wall_s": round(time.perf_counter() - start, 1)}
    result = {"meta": meta, "rows": rows, "checks": checks(rows)}
    if path:
        Path(path).write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.one:
        arch, mode = args.one.split(":")
        print("ROW: " + json.dumps(run_one(arch, mode, args)), flush=True)
        return 0
    start, rows = time.perf_counter(), []
    runs = [(arch, mode) for arch in args.archs.split(",") for _ in range(args.repeats)
            for mode in args.modes.split(",")]
    for arch, mode in runs:
        if args.budget and time.perf_counter() - start > args.budget:
            row = {"arch": arch, "mode": mode, "error": f"not run: --budget {args.budget:.0f} s spent"}
        else:
            row = _subprocess_row(arch, mode, argv, args.timeout)
        print(json.dumps(row), flush=True)
        rows.append(row)
        _write(args.json, rows, start)
    result = _write(args.json, rows, start)
    print(json.dumps({"checks": result["checks"]}))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

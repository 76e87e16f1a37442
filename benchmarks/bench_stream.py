"""Streaming from the cache at scale: peak host memory and images/s vs the number of images.

    python benchmarks/bench_stream.py --work /tmp/stream --sizes 5000,50000,100000 --json out/stream.json

Generates (``benchmarks/synth_nih.py``) an NIH-layout collection of tiny unique PNGs and, per
size N, a preprocessed cache store written directly at ``--size`` px, then runs each phase in
its own process and records its peak RSS (VmHWM):

* ``open``: ``ImageCache.open`` of all N paths (hash check of every file, shard index);
* ``read``: ``open``, then every row batch by batch: evaluation's and prediction's data path;
* ``train``: ``open``, then ``--epochs`` epochs of ``--steps`` batches of the trainer's loop
  (``ArrayBatches`` with ``steps_per_epoch`` → ``engine.loop.fit_batches``, ``--arch`` from
  scratch); images/s of the last epoch. At the smallest N also ``train-memory``: the same on
  the materialised array (the in-memory path before streaming), for the speed ratio.
* ``preprocess`` (``--preprocess N``): cache build of N realistic 1024 px PNGs and DICOMs with
  1 and 2 worker processes: images/s per core.

Deletes the generated data at the end (``--keep`` keeps it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))
import synth_nih  # noqa: E402
from tests.helpers.proc_memory import status_kb  # noqa: E402


def _paths(work: Path, n: int) -> list[str]:
    return [str(synth_nih.row_path(work / "nih", i)) for i in range(n)]


def _open(work: Path, n: int, size: int):
    from training.data.cache import ImageCache
    from training.preprocess import PreprocessConfig

    view, errors = ImageCache(work / "cache" / f"n{n}").open(_paths(work, n), PreprocessConfig(size=size),
                                                             workers=2)
    assert not errors and len(view) == n
    return view


def phase_read(view, batch: int) -> dict:
    t0, total = time.perf_counter(), 0
    for start in range(0, len(view), batch):
        total += int(view[start:start + batch][..., 0].mean() >= 0)
    return {"images_per_s": len(view) / (time.perf_counter() - t0)}


def phase_train(view, args: argparse.Namespace, materialise: bool) -> dict:
    import keras

    from training.engine.data import ArrayBatches
    from training.engine.loop import fit_batches
    from training.models.build import build_model

    images = np.asarray(view) if materialise else view
    targets = (np.random.default_rng(0).random((len(view), 4)) < 0.3).astype(np.float32)
    model = build_model(args.arch, ["a", "b", "c", "d"], "multilabel", args.size, "scratch", None)
    batches = ArrayBatches(images, targets, args.batch, shuffle=True, steps_per_epoch=args.steps)
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.t0)

    fit_batches(model, batches, kind="multilabel", optimizer=keras.optimizers.Adam(1e-3),
                epochs=args.epochs, callbacks=[Timer()])
    return {"images_per_s": args.steps * args.batch / seconds[-1], "epoch_s": seconds}


def phase_preprocess(work: Path, n: int) -> list[dict]:
    from tests.helpers.images import write_xray_dicom
    from training.data.cache import ImageCache
    from training.preprocess import PreprocessConfig

    inputs = {"png 1024 px 8-bit": [], "dicom 1024 px": []}
    for i in range(n):
        png = synth_nih.row_path(work / "real", i)
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(synth_nih.realistic_png(i))
        inputs["png 1024 px 8-bit"].append(str(png))
        inputs["dicom 1024 px"].append(str(write_xray_dicom(work / "dcm" / f"{i}.dcm", 1024, 1024, seed=i)))
    rows = []
    for name, paths in inputs.items():
        for workers in (1, 2):
            with tempfile.TemporaryDirectory(dir=work) as tmp:
                t0 = time.perf_counter()
                ImageCache(tmp).open(paths, PreprocessConfig(size=224), workers=workers)
                rate = len(paths) / (time.perf_counter() - t0)
            rows.append({"phase": "preprocess", "input": name, "n": len(paths), "workers": workers,
                         "images_per_s": round(rate, 1), "per_core": round(rate / workers, 1)})
    return rows


def child(args: argparse.Namespace) -> None:
    """One phase in this process; prints one JSON line with its peak RSS."""
    work, t0 = Path(args.work), time.perf_counter()
    view = _open(work, args.n, args.size)
    out = {"phase": args.phase, "n": args.n, "open_s": round(time.perf_counter() - t0, 2)}
    if args.phase == "read":
        out.update(phase_read(view, args.batch * 4))
    elif args.phase in ("train", "train-memory"):
        out.update(phase_train(view, args, materialise=args.phase == "train-memory"))
    out["peak_rss_mb"] = round(status_kb("VmHWM") / 1024, 1)
    print("RESULT " + json.dumps(out))


def run_phase(args: argparse.Namespace, phase: str, n: int) -> dict:
    argv = [sys.executable, __file__, "--child", "--phase", phase, "--n", str(n), "--work", args.work,
            "--size", str(args.size), "--arch", args.arch, "--batch", str(args.batch),
            "--steps", str(args.steps), "--epochs", str(args.epochs)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{phase} n={n} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(lines[-1][len("RESULT "):])
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=tempfile.gettempdir() + "/cxrlab-stream")
    ap.add_argument("--sizes", default="5000,50000,100000")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="training steps per epoch")
    ap.add_argument("--epochs", type=int, default=2, help="epochs (the last one is timed)")
    ap.add_argument("--phases", default="open,read,train", help="comma-separated")
    ap.add_argument("--preprocess", type=int, default=0, help="realistic images for item 5 (0: skip)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    work, sizes = Path(args.work), sorted(int(s) for s in args.sizes.split(","))
    rows: list[dict] = []
    try:
        t0 = time.perf_counter()
        synth_nih.generate(work / "nih", max(sizes), cache=work / "cache", size=args.size, cache_sizes=tuple(sizes))
        gen = {"phase": "generate", "n": max(sizes), "seconds": round(time.perf_counter() - t0, 1),
               "disk_mb": round(sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 2**20)}
        print(json.dumps(gen), flush=True)
        rows.append(gen)
        for n in sizes:
            for phase in args.phases.split(","):
                rows.append(run_phase(args, phase, n))
        if "train" in args.phases:
            rows.append(run_phase(args, "train-memory", sizes[0]))
        if args.preprocess:
            rows += phase_preprocess(work, args.preprocess)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    meta = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg": list(os.getloadavg()), "argv": sys.argv[1:]}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

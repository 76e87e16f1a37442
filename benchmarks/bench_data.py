"""Data-path benchmark: images/s decoded + preprocessed from files vs read from the cache,
and the trainer's per-epoch path (shuffled uint8 batches of 128 from the loaded images).

    python benchmarks/bench_data.py --data ../shared/data/kermany-pneumonia --n 1000 --size 224

Writes one JSON line per measurement to stdout (and --json FILE). JPEG and PNG come from the
given dataset; DICOM is generated (16-bit, 1024x1024, like a real DX file) into a temp folder.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data.cache import ImageCache  # noqa: E402
from training.engine.data import ArrayBatches  # noqa: E402
from training.preprocess import PreprocessConfig, load_image  # noqa: E402


def _files(root: Path, suffixes: tuple[str, ...], n: int) -> list[str]:
    out = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in suffixes)
    return out[:n]


def _dicoms(n: int, folder: Path) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.helpers.images import write_dicom

    return [str(write_dicom(folder / f"{i}.dcm", h=1024, w=1024, seed=i)) for i in range(n)]


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench(name: str, paths: list[str], cfg: PreprocessConfig, workers: int) -> dict:
    """Single-thread decode, cold cache build (threads), warm cache read."""
    single = _rate(lambda: [load_image(p, cfg) for p in paths], len(paths))
    with tempfile.TemporaryDirectory() as tmp:
        cache = ImageCache(tmp)
        cold = _rate(lambda: cache.load(paths, cfg, workers=workers), len(paths))
        warm = _rate(lambda: cache.load(paths, cfg, workers=workers), len(paths))
        images, _ = cache.load(paths, cfg, workers=workers)
    batches = ArrayBatches(images, np.ones((len(images), 1), "float32"), 128, shuffle=True,
                           sample_weight=np.ones(len(images), "float32"))
    epoch = _rate(lambda: [batches[i] for i in range(len(batches))], len(images))
    return {"input": name, "n": len(paths), "size": cfg.size, "decode_1thread_img_s": round(single, 1),
            "cache_build_img_s": round(cold, 1), "cache_read_img_s": round(warm, 1),
            "batches_img_s": round(epoch, 1), "workers": workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", action="append", default=[])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = PreprocessConfig(size=args.size)
    rows = []
    for root in map(Path, args.data):
        for label, suf in (("jpeg", (".jpg", ".jpeg")), ("png", (".png",))):
            paths = _files(root, suf, args.n)
            if paths:
                rows.append(bench(f"{label} ({root.name})", paths, cfg, args.workers))
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench("dicom 1024px 12-bit (generated)", _dicoms(min(args.n, 200), Path(tmp)), cfg, args.workers))
    meta = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}
    for r in rows:
        print(json.dumps(meta | r))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

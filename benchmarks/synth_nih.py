"""Synthetic collections in the NIH ChestX-ray14 layout, for the streaming benchmark.

    python benchmarks/synth_nih.py --out /tmp/nih --n 200 --realistic       # 1024 px PNGs
    python benchmarks/synth_nih.py --out /tmp/nih --n 100000 --cache /tmp/cache --size 224

``Data_Entry_2017.csv`` (the 2017 header: ``tests/helpers/collections/nih.py``) and
``images_0NN/images/<patient>_<follow-up>.png``, 10,000 images a folder as NIH ships them.

* ``--realistic``: every image a 1024 x 1024 8-bit PNG (NIH's size): what preprocessing
  throughput is measured on. Too slow to write for 100k images here.
* otherwise every image file is a tiny unique PNG (a few hundred bytes) and, with ``--cache``,
  the preprocessed cache store is written directly at ``--size`` px in the layout of
  ``training.data.cache`` (shards + manifests keyed by each file's sha1), so the cache serves
  every image without decoding: the size sweep measures the streaming train/evaluate path,
  not decoding. Several ``--cache-sizes`` write one store per size prefix (first N rows).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.collections.nih import FINDINGS, HEADER, image_name  # noqa: E402
from tests.helpers.images import chest_like  # noqa: E402
from training.data.cache import ImageCache, _Store  # noqa: E402  (_Store: the one shard writer)
from training.preprocess import PreprocessConfig  # noqa: E402

PER_FOLDER = 10_000  # images_001 ... as NIH ships them
PER_PATIENT = 3


def row_path(root: Path, i: int) -> Path:
    """Where image ``i`` lives: ``images_0NN/images/<patient>_<follow-up>.png``."""
    return root / f"images_{i // PER_FOLDER + 1:03d}" / "images" / image_name(i // PER_PATIENT + 1, i % PER_PATIENT)


def stub_png(i: int) -> bytes:
    """A tiny valid PNG unique to ``i`` (its index in the pixels)."""
    pixels = np.frombuffer(int(i).to_bytes(8, "little"), dtype=np.uint8).reshape(2, 4)
    buf = io.BytesIO()
    Image.fromarray(np.kron(pixels, np.ones((4, 2), np.uint8))).save(buf, "PNG")
    return buf.getvalue()


def realistic_png(i: int, side: int = 1024) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chest_like(side, side, seed=i)).save(buf, "PNG")
    return buf.getvalue()


def write_csv(root: Path, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for i in range(n):
        patient, follow_up = i // PER_PATIENT + 1, i % PER_PATIENT
        sex, view = "FM"[patient % 2], "AP" if i % 5 == 4 else "PA"
        lines.append(f"{image_name(patient, follow_up)},{FINDINGS[i % len(FINDINGS)]},{follow_up},"
                     f"{patient},{20 + patient % 60:03d}Y,{sex},{view},1024,1024,0.143,0.143,")
    path = root / "Data_Entry_2017.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(size: int, seed: int = 0, bases: int = 16) -> list[np.ndarray]:
    """A few chest-like rows at ``size`` px; each stored row is one of them, shifted."""
    return [chest_like(size, size, seed=seed + b) for b in range(bases)]


def generate(root: str | Path, n: int, realistic: bool = False, cache: str | Path | None = None,
             size: int = 224, cache_sizes: tuple[int, ...] = ()) -> list[str]:
    """Write the collection (and, with ``cache``, its preprocessed stores); the image paths."""
    root = Path(root)
    write_csv(root, n)
    stores = []
    if cache is not None:
        cfg = PreprocessConfig(size=size)
        for cap in sorted(set(cache_sizes) or {n}):
            folder = ImageCache(Path(cache) / f"n{cap}").store_dir(cfg)
            stores.append((cap, _Store(folder, dataclasses.replace(cfg, channels=1))))
    bases = _rows(size) if stores else []
    paths = []
    for i in range(n):
        path = row_path(root, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = realistic_png(i) if realistic else stub_png(i)
        path.write_bytes(data)
        paths.append(str(path))
        if stores:
            digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
            row = np.roll(bases[i % len(bases)], i % size, axis=1)
            for cap, store in stores:
                if i < cap:
                    store.add(digest, row)
    for _, store in stores:
        store.flush()
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="collection folder")
    ap.add_argument("--n", type=int, required=True, help="images")
    ap.add_argument("--realistic", action="store_true", help="1024 px PNGs (slow)")
    ap.add_argument("--cache", help="cache root: write the preprocessed stores directly")
    ap.add_argument("--size", type=int, default=224, help="preprocessed size of the stores")
    ap.add_argument("--cache-sizes", default="", help="comma-separated N: one store each (default --n)")
    args = ap.parse_args()
    sizes = tuple(int(s) for s in args.cache_sizes.split(",") if s)
    paths = generate(args.out, args.n, args.realistic, args.cache, args.size, sizes)
    print(f"{len(paths)} images in {args.out}")


if __name__ == "__main__":
    main()

"""How well the input gate refuses what the models cannot judge, and how rarely it refuses X-rays.

Runs the app's own gate (``training.gate``: image checks, then each model's feature-space
OOD score, combined by ``verdict.judge``) on image sets, and reports per set the share
refused / warned / accepted, and per model the OOD AUROC of the set against the validation
X-rays (the in-distribution reference; the test X-rays are reported too, out of sample):

* ``val_xray`` / ``test_xray``: the validation / test parts of the models' patient split;
* ``lateral``: ieee8023 rows with view ``L``; ``ct``: its CT slices (never used in training);
* ``photo``: scikit-image's sample pictures (colour, and the colour ones turned gray);
* ``synthetic``: noise (uniform, Gaussian, colour), blanks, gradients, checkerboards, text;
* ``crop``: a corner quarter of test X-rays (not a whole chest).

    python benchmarks/bench_gate.py --models out/trust/models --split out/demo3/split.csv \\
        --data ../shared/data/ieee8023-covid-chestxray --data ../shared/data/kermany-pneumonia \\
        --json out/gate.json
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETS = ("val_xray", "test_xray", "lateral", "ct", "photo", "synthetic", "crop")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def photos() -> Iterator[tuple[str, bytes]]:
    import skimage.data as data
    from skimage.color import rgb2gray

    names = ("astronaut", "brick", "camera", "cell", "checkerboard", "chelsea", "clock", "coffee",
             "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
             "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket", "text")
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = np.asarray(getattr(data, name)())
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 3:
            img = img[..., :3]
            yield f"{name} (colour)", png(img)
            yield f"{name} (gray)", png(np.rint(rgb2gray(img) * 255))
        else:
            yield name, png(img)


def synthetic(seed: int = 0) -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    for i in range(5):
        yield f"uniform noise {i}", png(rng.integers(0, 256, (512, 512)))
        yield f"gaussian noise {i}", png(np.clip(rng.normal(128, 40, (512, 512)), 0, 255))
        yield f"colour noise {i}", png(rng.integers(0, 256, (512, 512, 3)))
        yield f"smooth noise {i}", png(np.asarray(Image.fromarray(
            rng.integers(0, 256, (16, 16)).astype(np.uint8)).resize((512, 512), Image.Resampling.BICUBIC)))
    for value in (0, 128, 255):
        yield f"blank {value}", png(np.full((512, 512), value))
    ramp = np.tile(np.linspace(0, 255, 512), (512, 1))
    yield "horizontal gradient", png(ramp)
    yield "vertical gradient", png(ramp.T)
    yield "radial gradient", png(255 * np.hypot(*np.meshgrid(np.linspace(-1, 1, 512), np.linspace(-1, 1, 512))) / 1.5)
    for cell in (8, 32, 128):
        yield f"checkerboard {cell}", png(((np.indices((512, 512)) // cell).sum(0) % 2) * 255)
    for i, background in enumerate((255, 0, 230)):
        img = Image.new("L", (600, 800), background)
        draw = ImageDraw.Draw(img)
        for line in range(40):
            draw.text((20, 10 + 19 * line), f"Line {line}: lorem ipsum dolor sit amet {i} " * 2,
                      fill=255 - background)
        yield f"text page {i}", png(np.asarray(img))
    yield "1x1", png(np.zeros((1, 1)))
    yield "4000x8 stripe", png(rng.integers(0, 256, (8, 4000)))


def crops(files: list[Path], n: int = 40) -> Iterator[tuple[str, bytes]]:
    from training.preprocess import decode_image, normalise

    for path in files[:n]:
        gray = normalise(decode_image(path), 0.5)
        h, w = gray.shape
        yield f"crop {path.name}", png(np.rint(gray[: h // 2, : w // 2] * 255))


def xray_files(data: list[str], split: str) -> dict[str, list[Path]]:
    import pandas as pd

    df = pd.read_csv(split)
    col = "path" if "path" in df.columns else df.columns[0]
    return {p: [Path(x) for x in df.loc[df["part"] == p, col]] for p in ("val", "test")}


def ieee_rows(root: Path, column: str, values: set[str]) -> list[Path]:
    import pandas as pd

    meta = pd.read_csv(root / "metadata.csv")
    rows = meta[(meta[column].isin(values)) & (meta["folder"] == "images")]
    return [p for p in (root / "images" / f for f in rows["filename"]) if p.is_file()]


def run_one(bank, data: bytes, name: str) -> dict:
    """Image checks, every model's OOD score (even when the checks refuse), the verdict."""
    from training.errors import CXRError
    from training.gate.assess import assess
    from training.gate.checks import inspect

    try:
        facts = inspect(data, name)
    except CXRError as exc:
        return {"name": name, "verdict": "refuse", "codes": ["undecodable"], "scores": {},
                "p_values": {}, "checks_refused": True, "error": str(exc)}
    scores = {}
    checks = assess(facts)
    if min(facts.width, facts.height) >= 8:  # the models need some pixels to say anything
        inputs = bank.prepare(facts.decoded)
        for m in bank.models:
            if m.gate is not None:
                scores[m.name] = float(m.forward(inputs[m.name][None])[1][0])
    verdict = checks if checks.refused else assess(facts, {m.name: (m.gate, scores[m.name])
                                                           for m in bank.models if m.name in scores},
                                                    checks)
    p_values = {m.name: m.gate.p_value(scores[m.name]) for m in bank.models if m.name in scores}
    return {"name": name, "verdict": verdict.verdict, "codes": sorted({r.code for r in verdict.reasons}),
            "scores": scores, "p_values": p_values, "checks_refused": checks.refused}


def auroc(inside: list[float], outside: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(y, np.r_[inside, outside]))


BUDGETS = (0.01, 0.02, 0.03, 0.05, 0.1)


def refused_at(row: dict, budget: float) -> bool:
    """The verdict with another Bonferroni budget (``verdict.REFUSE_ALPHA``) for the models."""
    p = list(row["p_values"].values())
    return bool(row.get("checks_refused")) or (bool(p) and len(p) * min(p) <= budget)


def summarise(rows: dict[str, list[dict]], models: list[str]) -> dict:
    ref = rows.get("val_xray", [])
    out: dict = {"budgets": {str(b): {name: float(np.mean([refused_at(r, b) for r in items]))
                                      for name, items in rows.items()} for b in BUDGETS}}
    for name, items in rows.items():
        n = len(items)
        counts = {v: sum(r["verdict"] == v for r in items) for v in ("accept", "warn", "refuse")}
        entry = {"n": n, **{f"{v}_rate": counts[v] / n if n else None for v in counts},
                 "refused_by_checks": sum(bool(r.get("checks_refused")) for r in items)}
        if name != "val_xray":
            entry["ood_auroc_vs_val"] = {
                m: auroc([r["scores"][m] for r in ref if m in r["scores"]],
                         [r["scores"][m] for r in items if m in r["scores"]])
                for m in models if any(m in r["scores"] for r in items)}
        out[name] = entry
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="models folder (each model with a fitted gate)")
    ap.add_argument("--split", required=True, help="the models' split CSV (val and test parts)")
    ap.add_argument("--data", action="append", required=True, help="dataset folders (ieee8023 first)")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--max-per-set", type=int, default=400)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from app.model_bank import ModelBank

    bank = ModelBank.from_dir(args.models, device="cpu")
    gated = [m.name for m in bank.models if m.gate is not None]
    print(f"{len(bank)} models, gated: {gated}", flush=True)
    parts = xray_files(args.data, args.split)
    ieee = Path(args.data[0])
    sources = {
        "val_xray": lambda: ((str(p), p.read_bytes()) for p in parts["val"]),
        "test_xray": lambda: ((str(p), p.read_bytes()) for p in parts["test"]),
        "lateral": lambda: ((str(p), p.read_bytes()) for p in ieee_rows(ieee, "view", {"L"})),
        "ct": lambda: ((str(p), p.read_bytes()) for p in ieee_rows(ieee, "modality", {"CT"})),
        "photo": lambda: ((n + ".png", b) for n, b in photos()),
        "synthetic": lambda: ((n + ".png", b) for n, b in synthetic()),
        "crop": lambda: ((n + ".png", b) for n, b in crops(parts["test"])),
    }
    rows: dict[str, list[dict]] = {}
    for name in args.sets.split(","):
        start = time.perf_counter()
        items = []
        for i, (label, data) in enumerate(sources[name]()):
            if i >= args.max_per_set:
                break
            items.append(run_one(bank, data, label))
        rows[name] = items
        refused = sum(r["verdict"] == "refuse" for r in items)
        print(f"{name}: {len(items)} images, {refused} refused ({time.perf_counter() - start:.0f} s)", flush=True)
    summary = summarise(rows, gated)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

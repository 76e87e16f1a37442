"""Time the passes after the last epoch on a trained model and its split: the forward pass
called eagerly against compiled once (:mod:`training.engine.forward`), then each pass as the
trainer runs it (precise BN, the BatchNorm health figure, the validation report, the OOD gate).

    python benchmarks/bench_post_training.py demo-output/models/resnet50 --split demo-output/split.csv

The model is changed only in memory (precise BN); nothing is written.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def rate(fn, images: np.ndarray, batch: int) -> float:
    """Images per second of ``fn`` over ``images`` in batches (the first batch, traced, included)."""
    start = time.perf_counter()
    for s in range(0, len(images), batch):
        fn(images[s:s + batch])
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--split", required=True)
    ap.add_argument("--images", type=int, default=512, help="images for the eager/compiled A/B")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here too")
    args = ap.parse_args()

    from training.config import load_config
    from training.engine import batchnorm
    from training.engine.fit import validation_report
    from training.engine.forward import compiled_call
    from training.engine.loop import loss_for
    from training.engine.prepare import prepare
    from training.gate.fit import fit_model_gate
    from training.models.card import load_model
    from training.models.parts import feature_model, gate_layers

    model, card = load_model(args.model)
    cfg = load_config(args.model / "config.yaml", overrides={"split": args.split, "out": "/nonexistent"})
    prep = prepare(cfg)
    train, val = prep.images["train"], prep.images["val"]
    x = np.asarray(train[:args.images])
    fm = feature_model(model, gate_layers(model, card.gradcam_layer))
    # eager first: the compiled call's trace must not warm anything the eager one then uses
    eager = rate(lambda b: fm(b, training=False), x, args.batch)
    compiled = rate(compiled_call(fm, training=False), x, args.batch)
    result = {"model": card.name, "ab_images": len(x), "batch": args.batch,
              "eager_images_per_s": round(eager, 2), "compiled_images_per_s": round(compiled, 2),
              "train_images": len(train), "validation_images": len(val), "passes_s": {}}
    print(f"{card.name}: gate feature pass on {len(x)} training images, batch {args.batch}: "
          f"eager {eager:.1f} images/s, compiled {compiled:.1f} images/s ({compiled / eager:.2f}x)")

    y_val = prep.targets[prep.index["val"]]
    steps = [
        ("precise BN", lambda: batchnorm.precise_bn(model, train, args.batch)),
        ("BN health (2 modes on validation)",
         lambda: batchnorm.mode_losses(model, val, y_val, loss_for(prep.task.kind), args.batch)),
        ("validation report", lambda: validation_report(model, prep, args.batch, cfg.calibration,
                                                          cfg.min_threshold_patients)),
        ("OOD gate (features + fit)", lambda: fit_model_gate(model, train, val, card.gradcam_layer,
                                                              args.batch)),
    ]
    total = 0.0
    for name, step in steps:
        start = time.perf_counter()
        step()
        took = time.perf_counter() - start
        total += took
        result["passes_s"][name] = round(took, 2)
        print(f"  {name:<36} {took:6.1f} s")
    print(f"  {'all passes after the last epoch':<36} {total:6.1f} s "
          f"({len(train)} training / {len(val)} validation images)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

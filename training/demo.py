"""The main job behind ``make demo``: data report, patient split, four models, evaluation.

Online, the four backbones use frozen ImageNet weights with cached features (the
literature's protocol, quick on a laptop CPU). Offline, ImageNet weights cannot be had, so
a small from-scratch setting is used instead; the demo says which one it ran.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from training.models.registry import FOUR

#: Offline fallback: from scratch at a small input size (InceptionV3/Xception need >= 75 px).
SCRATCH_SIZE = 96
SCRATCH_EPOCHS = 3
FROZEN_EPOCHS = 30


@dataclass
class DemoConfig:
    """What the demo runs on and where it writes."""

    data: list[str] = field(default_factory=list)
    out: str = "demo-output"
    task: str = "multilabel"
    img_size: int | None = None
    epochs: int | None = None
    archs: tuple[str, ...] = FOUR
    n_boot: int = 500


def imagenet_available(archs: tuple[str, ...]) -> bool:
    """True when every backbone's ImageNet weights are cached or downloadable now."""
    from training.models.weights import imagenet_obtainable

    return all(imagenet_obtainable(arch) for arch in archs)


def run_demo(cfg: DemoConfig) -> Path:
    """Run every step; returns the output folder. Each step prints where its output is."""
    from training.config import TrainConfig
    from training.data.download import download_ieee8023
    from training.data.formats import load_datasets
    from training.data.report import write_report
    from training.data.splits import make_split, save_split
    from training.data.tasks import get_task
    from training.engine.fit import train_all
    from training.evaluation.compare import compare_models
    from training.evaluation.evaluate import evaluate_model

    out = Path(cfg.out)
    data = [str(d) for d in cfg.data] or [str(download_ieee8023())]
    # Real metadata is never perfectly in sync with its images (ieee8023 lists files it does
    # not ship): the demo skips such rows, counts them in the report, and says so here.
    ds = load_datasets(data, on_error="skip")
    print(f"[1/5] data: {len(ds)} images, {ds.meta['patient'].nunique()} patients from {', '.join(data)}"
          f"; {len(ds.skipped)} rows skipped (listed in the report)")

    split = make_split(ds, get_task(cfg.task), seed=0)
    split_path = out / "split.csv"
    save_split(split, split_path)
    report = write_report(ds, out / "report", split=split)
    print(f"[2/5] dataset report: {report}\n      patient-level split: {split_path}")

    pretrained = imagenet_available(cfg.archs)
    if pretrained:
        setting = dict(mode="frozen", weights="imagenet", augment=False,
                       epochs=cfg.epochs or FROZEN_EPOCHS, img_size=cfg.img_size)
        print("[3/5] training the four backbones: frozen ImageNet weights, cached features")
    else:
        setting = dict(mode="scratch", weights=None, augment=True,
                       epochs=cfg.epochs or SCRATCH_EPOCHS, img_size=cfg.img_size or SCRATCH_SIZE)
        print("[3/5] ImageNet weights cannot be downloaded (offline?): training the four backbones "
              f"FROM SCRATCH at {setting['img_size']} px for {setting['epochs']} epochs instead. "
              "Expect weak models; with internet the demo uses frozen ImageNet backbones.")
    tcfg = replace(TrainConfig(), data=data, task=cfg.task, split=str(split_path),
                   out=str(out / "models"), name=ds.name, on_error="skip", **setting)
    model_dirs = train_all(tcfg, archs=cfg.archs)

    print("[4/5] evaluating each model on the held-back test part (internal, patient-disjoint)")
    for d in model_dirs:
        evaluate_model(str(d), data, split=str(split_path), part="test",
                       out_dir=str(out / "evaluation" / Path(d).name), n_boot=cfg.n_boot,
                       on_error="skip")
        print(f"      {Path(d).name}: {out / 'evaluation' / Path(d).name / 'report.html'}")
    compare_models([str(d) for d in model_dirs], data, str(split_path), part="test", on_error="skip",
                   out_dir=str(out / "compare"), n_boot=cfg.n_boot)
    print(f"[5/5] four-model comparison: {out / 'compare' / 'compare.html'}")
    return out

"""The main job behind ``make demo``: data report, patient split, shortcut check, four models,
evaluation, comparison.

Online, the four backbones use frozen ImageNet weights with cached features (the
literature's protocol, quick on a laptop CPU). Offline, ImageNet weights cannot be had, so
the four are trained from scratch with the measured recipe (docs/results.md): 96 px,
BatchNorm with momentum 0.9 and precise BN, augmentation, class weights. The demo says
which one it ran.

With several data sets (e.g. ieee8023 + Kermany) the task is ``multilabel-within-source``:
each label is trained and scored only within the sources that contrast it, so COVID-19 is
learnt and judged among ieee8023 images only, never as "adult vs pediatric hospital" (the
source probe, run here, shows how easily the image alone tells the two apart). Training on
both sets at once is the CXR-domain pretraining of the offline route in one run: the
normal/pneumonia features learnt on 4,000 Kermany images are shared, in one network, with
the labels only ieee8023 has (a separate `pretrain` on the same training images would only
repeat that training; `pretrain` is for data the demo does not train on).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from training.audits.shortcuts import source_probe
from training.config import DataOptions, TrainConfig, opt, split_commas
from training.data.download import download_ieee8023
from training.data.formats import load_datasets
from training.data.report import write_report
from training.data.spec import DataSpec
from training.data.splits import make_split, save_split
from training.data.tasks import get_task
from training.engine.fit import train_all
from training.evaluation.compare import compare_models
from training.evaluation.evaluate import evaluate_model
from training.models.registry import FOUR
from training.models.weights import imagenet_obtainable

#: Offline setting: from scratch at a small input size (InceptionV3/Xception need >= 75 px)
SCRATCH_SIZE = 96
SCRATCH_EPOCHS = 4
FROZEN_EPOCHS = 30
#: Task of a demo on several data sets (one data set: ``multilabel`` is the same thing)
MULTI_SOURCE_TASK = "multilabel-within-source"


@dataclass
class DemoConfig(DataOptions):
    """What the demo runs on (no --data: the ieee8023 collection, downloaded) and where it writes."""

    out: str = opt("demo-output", "output folder")
    task: str | None = opt(None, "label set (default: multilabel for one data set, "
                           f"{MULTI_SOURCE_TASK} for several)")
    img_size: int | None = opt(None, f"input size (default: offline {SCRATCH_SIZE} px, online "
                               "each backbone's own)")
    epochs: int | None = opt(None, f"epochs (default: offline {SCRATCH_EPOCHS}, online {FROZEN_EPOCHS})")
    archs: tuple[str, ...] = opt(FOUR, "backbones, comma-separated", metavar="A,B")
    n_boot: int = opt(500, "bootstrap resamples of the confidence intervals")
    max_images: int | None = opt(None, "cap on training images per model (quick runs)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.archs = tuple(split_commas(self.archs))


def imagenet_available(archs: tuple[str, ...]) -> bool:
    """True when every backbone's ImageNet weights are cached or downloadable now."""
    return all(imagenet_obtainable(arch) for arch in archs)


def training_setting(cfg: DemoConfig, pretrained: bool) -> tuple[dict, str]:
    """``(TrainConfig fields, what to print)`` for the online or the offline setting."""
    if pretrained:
        setting = dict(mode="frozen", weights="imagenet", augment=False,
                       epochs=cfg.epochs or FROZEN_EPOCHS, img_size=cfg.img_size)
        return setting, "training the four backbones: frozen ImageNet weights, cached features"
    setting = dict(mode="scratch", weights=None, augment=True,
                   epochs=cfg.epochs or SCRATCH_EPOCHS, img_size=cfg.img_size or SCRATCH_SIZE)
    said = ("ImageNet weights cannot be downloaded (offline?): training the four backbones FROM "
            f"SCRATCH with the offline recipe ({setting['img_size']} px, {setting['epochs']} epochs, "
            "precise BatchNorm; docs/results.md). With internet the demo uses frozen ImageNet "
            "backbones.")
    return setting, said


def _shortcut_check(ds, data: DataSpec, split_path: Path, out: Path, n_boot: int) -> None:
    """With several sources: how well the image alone tells them apart (printed, and saved)."""
    if ds.meta["source"].nunique() < 2:
        return
    result = source_probe(data, split_csv=split_path, img_size=64, features="stats",
                          out_dir=out / "shortcuts", n_boot=n_boot)
    print("      " + "\n      ".join(result["summary"]))
    print(f"      labels are kept within source ({MULTI_SOURCE_TASK}): no label can be learnt from "
          f"the source alone. Report: {out / 'shortcuts' / 'source_probe.html'}")


class _Clock:
    """`` [t s]``: seconds since the demo started, for each step's line."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def total(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self) -> str:
        return f" [{self.total():.0f} s]"


def run_demo(cfg: DemoConfig) -> Path:
    """Run every step; returns the output folder. Each step prints where its output is."""
    out = Path(cfg.out)
    clock = _Clock()
    spec = cfg.data_spec if cfg.data else cfg.data_spec.replace(data=(str(download_ieee8023()),))
    data = list(spec.data)
    # Real metadata is never perfectly in sync with its images (ieee8023 lists files it does
    # not ship): on the command line (on_error skip) such rows are skipped, counted in the
    # report, and said here.
    ds = load_datasets(spec)
    several = ds.meta["source"].nunique() > 1
    task = cfg.task or (MULTI_SOURCE_TASK if several else "multilabel")
    print(f"[1/6]{clock()} data: {len(ds)} images, {ds.meta['patient'].nunique()} patients from {', '.join(data)}"
          f"; {len(ds.skipped)} rows skipped (listed in the report); task {task}")

    split = make_split(ds, get_task(task), seed=0)
    split_path = out / "split.csv"
    save_split(split, split_path)
    report = write_report(ds, out / "report", split=split)
    print(f"[2/6]{clock()} dataset report: {report}\n      patient-level split: {split_path}")

    print(f"[3/6]{clock()} shortcut check" + ("" if several else ": one source, nothing to check"))
    _shortcut_check(ds, spec, split_path, out, cfg.n_boot)

    setting, said = training_setting(cfg, imagenet_available(cfg.archs))
    print(f"[4/6]{clock()} {said}")
    tcfg = replace(TrainConfig(), **spec.to_dict(), task=task, split=str(split_path),
                   out=str(out / "models"), name=ds.name, max_images=cfg.max_images, **setting)
    model_dirs = train_all(tcfg, archs=cfg.archs, ds=ds)

    print(f"[5/6]{clock()} evaluating each model on the held-back test part (internal, patient-disjoint)")
    for d in model_dirs:
        evaluate_model(str(d), spec, split=str(split_path), part="test",
                       out_dir=str(out / "evaluation" / Path(d).name), n_boot=cfg.n_boot)
        print(f"      {Path(d).name}: {out / 'evaluation' / Path(d).name / 'report.html'}")
    compare_models([str(d) for d in model_dirs], spec, str(split_path), part="test",
                   out_dir=str(out / "compare"), n_boot=cfg.n_boot)
    print(f"[6/6]{clock()} four-model comparison: {out / 'compare' / 'compare.html'}")
    print(f"demo finished in {clock.total():.0f} s")
    return out

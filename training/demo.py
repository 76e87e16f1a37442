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

A second run with the same config and data reuses what the first made: a model whose card
records this run's recipe, data and split hash (:func:`same_run`), its evaluation on this
split and the comparison of the same models. Delete ``OUT/compare`` to redo the comparison
alone (e.g. after a cxrlab update changed it).
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras

from training.audits.shortcuts import source_probe
from training.config import DataOptions, TrainConfig, opt, split_commas
from training.data.download import download_ieee8023
from training.data.formats import load_datasets
from training.data.report import write_report
from training.data.spec import KEYS as DATA_KEYS
from training.data.spec import DataSpec
from training.data.splits import make_split, save_split, split_hash
from training.data.tasks import get_task
from training.engine.fit import resolved, train_all
from training.errors import ModelCardError
from training.evaluation.compare import compare_models
from training.evaluation.evaluate import evaluate_model
from training.evaluation.evidence import TRAINING_ONLY, EvidenceKind
from training.models.card import CARD_FILE, MODEL_FILE, ModelCard, read_card, update_card
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


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 10 s``, ``1 h 05 min``: a time a person reads at a glance."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class _Clock:
    """`` [t]``: time since the demo started, for each step's line."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def total(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self) -> str:
        return f" [{duration(self.total())}]"


# ---------------------------------------------------------------- reuse of trained models
#: TrainConfig fields that say where a run writes, not what it trains (the data: DataSpec)
WHERE_KEYS = ("out", "name", "split")
#: Settings the card records as the trainer resolved them ("auto" -> what ran), not as asked;
#: the demo leaves them at their defaults
RESOLVED_KEYS = ("feature_cache", "mixed_precision", "distribute")


def recipe(cfg: TrainConfig) -> dict:
    """What a model of ``cfg`` is trained with, as the trainer records it in the card's
    ``training`` ("auto" weights and the default lr resolved), without its data and folders."""
    return {k: v for k, v in resolved(cfg)[0].to_dict().items()
            if k not in WHERE_KEYS + DATA_KEYS + RESOLVED_KEYS}


def same_run(card: ModelCard, cfg: TrainConfig, split_sha: str) -> bool:
    """Whether ``card``'s model was trained with ``cfg``'s recipe, data and the split of hash
    ``split_sha`` (the card's typed records decide, never file dates)."""
    recorded, wanted = card.training.to_json(), recipe(cfg)
    return (card.split.sha256 == split_sha and DataSpec.from_dict(card.training.config) == cfg.data_spec
            and {k: recorded.get(k) for k in wanted} == wanted)


def reusable(model_dir: Path, cfg: TrainConfig, split_sha: str) -> bool:
    """A finished model of exactly this run in ``model_dir`` (an unreadable card: no)."""
    if not ((model_dir / MODEL_FILE).is_file() and (model_dir / CARD_FILE).is_file()):
        return False
    try:
        return same_run(read_card(model_dir), cfg, split_sha)
    except ModelCardError:
        print(f"      {model_dir.name}: its card cannot be read: training it again")
        return False


def mark_reused(model_dir: Path) -> None:
    """Say in the card that this demo took the model as it is (``training.reused``)."""
    card = read_card(model_dir)
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    update_card(model_dir, training=replace(card.training, reused=f"reused by demo at {when} "
                                            "(same config, data and split)"))


# ---------------------------------------------------------------- training progress
def eta_seconds(seconds: float, epochs_done: int, epochs_left: int) -> float | None:
    """Time still to go at the pace so far (``seconds`` for ``epochs_done`` epochs, set-up,
    caching and calibration included); None before the first epoch."""
    return None if epochs_done <= 0 else seconds / epochs_done * epochs_left


class TrainingProgress(keras.callbacks.Callback):
    """One line per epoch: model, epoch, training time so far and the ETA of all trainings."""

    def __init__(self, n_models: int, epochs_per_model: int) -> None:
        super().__init__()
        self.n_models, self.per_model = n_models, epochs_per_model
        self.start = time.perf_counter()
        self.arch, self.started, self.done, self.models_done, self.in_model = "", 0, 0, 0, 0

    def begin(self, arch: str) -> None:
        self.arch, self.in_model, self.started = arch, 0, time.perf_counter()

    def end(self, model_dir: Path) -> None:
        self.models_done += 1
        print(f"      {self.arch}: trained in {duration(time.perf_counter() - self.started)} "
              f"({self.models_done}/{self.n_models}): {model_dir}", flush=True)

    def left(self) -> int:
        """Epochs still planned: the rest of this model's and every later model's."""
        return max(self.per_model - self.in_model, 0) + self.per_model * (self.n_models - self.models_done - 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.done, self.in_model = self.done + 1, self.in_model + 1
        spent = time.perf_counter() - self.start
        eta = eta_seconds(spent, self.done, self.left())
        print(f"\n      {self.arch}: epoch {self.in_model}/{self.per_model}; training so far "
              f"{duration(spent)}; ETA of all {self.n_models} trainings ~{duration(eta or 0)}", flush=True)


def _train_or_reuse(tcfg: TrainConfig, archs: tuple[str, ...], ds, split_path: Path) -> tuple[list[Path], list[Path]]:
    """Every backbone's model folder, and those trained now (the others are reused as they are)."""
    split_sha, out = split_hash(split_path), Path(tcfg.out)
    todo = [a for a in archs if not reusable(out / a, replace(tcfg, arch=a), split_sha)]
    epochs = tcfg.epochs + (tcfg.head_epochs if tcfg.mode == "finetune" else 0)
    progress = TrainingProgress(len(todo), epochs)
    dirs, trained = [], []
    for arch in archs:
        if arch in todo:
            progress.begin(arch)
            d = Path(train_all(tcfg, archs=(arch,), ds=ds, callbacks=[progress])[0])
            progress.end(d)
            trained.append(d)
        else:
            d = out / arch
            mark_reused(d)
            print(f"      {arch}: reused (same config, data and split): {d}")
        dirs.append(d)
    return dirs, trained


# ---------------------------------------------------------------- evaluation, comparison, summary
def _evaluated(model_dir: Path, where: Path, split_sha: str, n_boot: int) -> bool:
    """Whether ``where`` holds this model's evaluation on this split's test part, with ``n_boot``."""
    test = read_card(model_dir).metrics.test
    metrics = where / "metrics.json"
    if test is None or test.split_sha256 != split_sha or test.part != "test" or not metrics.is_file():
        return False
    return json.loads(metrics.read_text(encoding="utf-8")).get("bootstrap", {}).get("n_boot") == n_boot


def _evaluate(dirs: list[Path], trained: list[Path], spec: DataSpec, split_path: Path, out: Path,
              n_boot: int) -> bool:
    """Evaluate each model on the test part (a reused one's evaluation is kept); True if any ran."""
    split_sha, ran = split_hash(split_path), False
    for d in dirs:
        where = out / "evaluation" / d.name
        if d in trained or not _evaluated(d, where, split_sha, n_boot):
            evaluate_model(str(d), spec, split=str(split_path), part="test", out_dir=str(where), n_boot=n_boot)
            ran = True
        else:
            print(f"      {d.name}: evaluation reused (same model, split and bootstrap)")
        print(f"      {d.name}: {where / 'report.html'}")
    return ran


def _compared(where: Path, dirs: list[Path], split_sha: str, n_boot: int) -> bool:
    """Whether ``where`` holds the comparison of exactly these models on this split."""
    path = where / "compare.json"
    if not path.is_file():
        return False
    done = json.loads(path.read_text(encoding="utf-8"))
    names = {read_card(d).name for d in dirs}
    return (done.get("split_sha256") == split_sha and done.get("n_boot") == n_boot
            and {r.get("model") for r in done.get("models", [])} == names)


def summary_lines(dirs: list[Path]) -> list[str]:
    """Per model and output: the internal test ROC-AUC and the transfer status of its card."""
    lines = ["summary: internal test ROC-AUC (95% CI, patient bootstrap) and transfer status"]
    for d in dirs:
        card = read_card(d)
        lines.append(f"  {card.name}")
        for output in card.outputs:
            internal = card.evidence.items(output, EvidenceKind.INTERNAL)
            auc = str(internal[-1].auc) if internal else "not evaluated"
            status = card.evidence.status(output)
            if status == TRAINING_ONLY and not card.evidence.items(output, EvidenceKind.SITE_HELD_OUT):
                status += " (site-held-out: not measured)"
            lines.append(f"    {output:<24} {auc:<28} {status}")
    return lines


def run_demo(cfg: DemoConfig) -> Path:
    """Run every step; returns the output folder. Each step prints where its output is and
    when it ended; models already trained with this config, data and split are reused."""
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
    model_dirs, trained = _train_or_reuse(tcfg, cfg.archs, ds, split_path)

    print(f"[5/6]{clock()} evaluating each model on the held-back test part (internal, patient-disjoint)")
    evaluated = _evaluate(model_dirs, trained, spec, split_path, out, cfg.n_boot)
    where = out / "compare"
    if evaluated or not _compared(where, model_dirs, split_hash(split_path), cfg.n_boot):
        compare_models([str(d) for d in model_dirs], spec, str(split_path), part="test",
                       out_dir=str(where), n_boot=cfg.n_boot)
    else:
        print("      comparison reused (same models, split and bootstrap)")
    print(f"[6/6]{clock()} {len(model_dirs)}-model comparison: {where / 'compare.html'}")
    print("\n".join(summary_lines(model_dirs)))
    print(f"demo finished in {duration(clock.total())}")
    return out

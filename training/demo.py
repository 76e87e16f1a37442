"""The main job behind ``make demo``: data report, patient split (sites held out where the
data has them), four models each evaluated as soon as it is trained, shortcut check,
comparison. With ``--serve`` (``make demo``) the app starts as soon as the first model is
saved (its evaluation follows and appears when it is in the card) and shows the others as
they finish (:mod:`training.demo_server`, the status file of :mod:`training.demo_status`).

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
import math
from dataclasses import dataclass, replace
from pathlib import Path


from training.audits.shortcuts import source_probe
from training.config import DataOptions, TrainConfig, opt, split_commas
from training.data.download import download_ieee8023
from training.data.formats import load_datasets
from training.data.report import write_report
from training.data.site_split import SITE_PART, hold_out_sites
from training.data.spec import KEYS as DATA_KEYS
from training.data.spec import DataSpec
from training.data.splits import make_split, save_split, split_hash
from training.data.tasks import get_task
from training.demo_progress import Clock, TrainingProgress, duration
from training.demo_server import DemoServer, address
from training.demo_status import STATUS_FILE, DemoStatus, StatusFile
from training.engine.fit import resolved, train_all
from training.errors import ModelCardError
from training.evaluation.compare import compare_models
from training.evaluation.evaluate import evaluate_model
from training.evaluation.evidence import EvidenceKind
from training.models.card import CARD_FILE, MODEL_FILE, ModelCard, read_card, update_card
from training.models.registry import FOUR
from training.models.weights import imagenet_obtainable

#: Offline setting: from scratch at a small input size (InceptionV3/Xception need >= 75 px)
SCRATCH_SIZE = 96
SCRATCH_EPOCHS = 4
FROZEN_EPOCHS = 30
#: Epoch times relative to InceptionV3's, from scratch at 96 px on the 2-core CPU (BENCHMARKS.md
#: "First run": InceptionV3 37, ResNet50 19-29 images/s; docs/results.md §3: 88, 42-46, Xception
#: 37, VGG16 21; the 2026-12-06 demos: Xception 2.5-2.8). The demo trains the cheapest first, so
#: the app shows a model sooner (pages keep ``archs``' order), and its ETA weighs each by this.
EPOCH_COST = {"inception_v3": 1.0, "resnet50": 2.0, "xception": 2.5, "vgg16": 4.2}
#: Seconds the first evaluation waits for the app to come up (its start is what the user waits for)
APP_START_WAIT = 120.0
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
    serve: bool = opt(False, "serve the app as soon as the first model is done, show the others as "
                      "they finish, and keep serving after the run (Ctrl-C stops)")
    bind: str = opt("127.0.0.1:8000", "where --serve serves: HOST:PORT or unix:PATH", metavar="ADDR")

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
    # A setting added after the card was written ran at its default then (e.g. augment_strength)
    defaults = TrainConfig().to_dict()
    return (card.split.sha256 == split_sha and DataSpec.from_dict(card.training.config) == cfg.data_spec
            and {k: recorded.get(k, defaults.get(k)) for k in wanted} == wanted)


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


@dataclass
class _Run:
    """What every model step of one demo run shares."""

    spec: DataSpec
    split_path: Path
    out: Path
    n_boot: int
    sites: tuple[str, ...]            # held out for the site-held-out part (may be none)
    status: StatusFile
    server: DemoServer | None         # --serve: started once the first model is done


def _models(tcfg: TrainConfig, archs: tuple[str, ...], ds, run: _Run) -> tuple[list[Path], bool]:
    """Each backbone trained (or reused), served as soon as it is saved, then evaluated at once
    (the app shows its evidence once the evaluation is in its card); reused ones first (ready
    at once), then the quickest to train. Returns the model folders in ``archs`` order and
    whether any evaluation ran."""
    split_sha, models = split_hash(run.split_path), Path(tcfg.out)
    todo = [a for a in archs if not reusable(models / a, replace(tcfg, arch=a), split_sha)]
    epochs = tcfg.epochs + (tcfg.head_epochs if tcfg.mode == "finetune" else 0)
    run.status.update(epochs=epochs)
    # reused first, then the cheapest to train (backbones without a measured cost last)
    order = sorted(archs, key=lambda a: (a in todo, EPOCH_COST.get(a, math.inf)))
    progress = TrainingProgress(len(todo), epochs, run.status,  # unmeasured: counted as ResNet50
                                costs=[EPOCH_COST.get(a, EPOCH_COST["resnet50"]) for a in order if a in todo])
    evaluated = False
    for arch in order:
        d = models / arch
        if arch in todo:
            progress.begin(arch)
            d = Path(train_all(tcfg, archs=(arch,), ds=ds, callbacks=[progress])[0])
            progress.end(d)
        else:
            mark_reused(d)
            print(f"      {arch}: reused (same config, data and split): {d}")
        # Served from the moment it is saved with its card; its evaluations follow and write
        # their evidence into the card, which the app reloads (app/model_watch.py).
        run.status.model_done(arch)
        if run.server is not None:
            first = not run.server.started
            run.server.start(len(run.status.status.done))
            if first:  # the app loads it sooner with the CPU to itself; the evaluation waits
                run.server.wait_up(APP_START_WAIT)
        run.status.update(current=arch, stage="evaluating")
        evaluated |= _evaluate(d, arch in todo, run)
    return [models / a for a in archs], evaluated


# ---------------------------------------------------------------- evaluation, comparison, summary
def _evaluated(model_dir: Path, where: Path, part: str, n_boot: int) -> bool:
    """Whether ``where`` holds this model's evaluation of ``part`` with ``n_boot`` resamples.
    A reused model has this run's split (:func:`same_run`), so an evaluation written after its
    model file is one of this model on this split."""
    metrics = where / "metrics.json"
    if not metrics.is_file() or metrics.stat().st_mtime_ns < (model_dir / MODEL_FILE).stat().st_mtime_ns:
        return False
    done = json.loads(metrics.read_text(encoding="utf-8"))
    return done.get("part") == part and done.get("bootstrap", {}).get("n_boot") == n_boot


def _evaluate(d: Path, fresh: bool, run: _Run) -> bool:
    """Evaluate one model on the internal test part and, with sites held out, on them (a reused
    model's evaluations are kept); True if any ran."""
    parts = [("test", run.out / "evaluation" / d.name)]
    if run.sites:
        parts.append((SITE_PART, run.out / "evaluation-site" / d.name))
    ran = False
    for part, where in parts:
        if fresh or not _evaluated(d, where, part, run.n_boot):
            evaluate_model(str(d), run.spec, split=str(run.split_path), part=part, out_dir=str(where),
                           n_boot=run.n_boot)
            ran = True
        else:
            print(f"      {d.name}: evaluation reused ({part} part; same model, split and bootstrap)")
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


def _auc(card: ModelCard, output: str, kind: EvidenceKind) -> str:
    items = card.evidence.items(output, kind)
    return str(items[-1].auc) if items else "not measured"


def summary_lines(dirs: list[Path]) -> list[str]:
    """Per model and output: the internal test ROC-AUC beside the site-held-out one, and the
    transfer status of its card."""
    lines = ["summary: ROC-AUC (95% CI, patient bootstrap) on the internal test part and on the "
             "held-out sites; transfer status"]
    for d in dirs:
        card = read_card(d)
        lines.append(f"  {card.name}")
        for output in card.outputs:
            lines.append(f"    {output:<24} internal {_auc(card, output, EvidenceKind.INTERNAL):<26} "
                         f"site-held-out {_auc(card, output, EvidenceKind.SITE_HELD_OUT):<26} "
                         f"{card.evidence.status(output)}")
    return lines


# ---------------------------------------------------------------- the run
def _data(cfg: DemoConfig, clock: Clock) -> tuple[DataSpec, object, str]:
    """Step 1: the data (downloaded without --data), and the task."""
    spec = cfg.data_spec if cfg.data else cfg.data_spec.replace(data=(str(download_ieee8023()),))
    # Real metadata is never perfectly in sync with its images (ieee8023 lists files it does
    # not ship): on the command line (on_error skip) such rows are skipped, counted in the
    # report, and said here.
    ds = load_datasets(spec)
    task = cfg.task or (MULTI_SOURCE_TASK if ds.meta["source"].nunique() > 1 else "multilabel")
    print(f"[1/6]{clock()} data: {len(ds)} images, {ds.meta['patient'].nunique()} patients from "
          f"{', '.join(spec.data)}; {len(ds.skipped)} rows skipped (listed in the report); task {task}")
    return spec, ds, task


def _split(ds, task: str, out: Path, clock: Clock) -> tuple[Path, tuple[str, ...]]:
    """Step 2: the patient-level split (sites held out, where the data has them) and the report."""
    held = hold_out_sites(make_split(ds, get_task(task), seed=0), ds, get_task(task))
    split_path = out / "split.csv"
    save_split(held.split, split_path)
    report = write_report(ds, out / "report", split=held.split)
    print(f"[2/6]{clock()} dataset report: {report}\n      patient-level split: {split_path}")
    if held.sites:
        print(f"      held out for the site-held-out evaluation: {', '.join(held.sites)} "
              f"({held.n_images} images, part '{SITE_PART}')")
    return split_path, tuple(held.sites)


def run_demo(cfg: DemoConfig) -> Path:
    """Run every step; returns the output folder. Each step prints where its output is and
    when it ended; models already trained with this config, data and split are reused. With
    ``cfg.serve`` the app starts once the first model is done and the demo then waits on it."""
    out, clock = Path(cfg.out), Clock()
    out.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    status = StatusFile(out / STATUS_FILE, DemoStatus(planned=tuple(cfg.archs), started_at=started))
    server = DemoServer(out, cfg.bind, status.path) if cfg.serve else None
    try:
        _steps(cfg, out, clock, status, server)
    except BaseException:  # Ctrl-C included: the app goes with the demo
        status.update(stage="stopped", finished=True, current=None)
        if server is not None:
            server.stop()
        raise
    status.update(stage="finished", finished=True, current=None, eta_seconds=0.0)
    if server is not None:
        server.wait()
    return out


def _steps(cfg: DemoConfig, out: Path, clock: Clock, status: StatusFile, server: DemoServer | None) -> None:
    spec, ds, task = _data(cfg, clock)
    split_path, sites = _split(ds, task, out, clock)
    setting, said = training_setting(cfg, imagenet_available(cfg.archs))
    print(f"[3/6]{clock()} {said}\n      each model is evaluated as soon as it is trained: on the "
          "held-back test part (internal, patient-disjoint)" + (" and on the held-out sites" if sites else ""))
    tcfg = replace(TrainConfig(), **spec.to_dict(), task=task, split=str(split_path),
                   out=str(out / "models"), name=ds.name, max_images=cfg.max_images, **setting)
    run = _Run(spec, split_path, out, cfg.n_boot, sites, status, server)
    model_dirs, evaluated = _models(tcfg, cfg.archs, ds, run)

    several = ds.meta["source"].nunique() > 1
    print(f"[4/6]{clock()} shortcut check" + ("" if several else ": one source, nothing to check"))
    _shortcut_check(ds, spec, split_path, out, cfg.n_boot)

    status.update(stage="comparing", current=None)
    where = out / "compare"
    if evaluated or not _compared(where, model_dirs, split_hash(split_path), cfg.n_boot):
        compare_models([str(d) for d in model_dirs], spec, str(split_path), part="test",
                       out_dir=str(where), n_boot=cfg.n_boot)
    else:
        print("      comparison reused (same models, split and bootstrap)")
    print(f"[5/6]{clock()} {len(model_dirs)}-model comparison: {where / 'compare.html'}")
    print(f"[6/6]{clock()} " + "\n".join(summary_lines(model_dirs)))
    print(f"demo finished in {duration(clock.total())}" + (f"; the app: {address(cfg.bind)}" if server else ""))

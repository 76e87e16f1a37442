"""Train one model (or the four side by side) from a :class:`~training.config.TrainConfig`.

Each stage is one :func:`training.engine.loop.fit_batches` call (the one training loop); this
module decides the stages, their inputs and callbacks, and what is fitted and saved after them.

Resumable: every fit backs up to ``out/backup`` (``engine.callbacks.Backup``: Keras's
``BackupAndRestore``, atomic, at most every ``cfg.backup_interval`` seconds); batch order and
random state are functions of ``(seed, epoch)`` (see ``engine.data``/``engine.callbacks``), so a
run killed at any point and restarted with the same config ends with the same weights.
Fine-tuning has two stages; ``out/backup/stage1.done`` tells a restarted run that stage 1 is
finished (its weights are in ``out/backup/stage1.weights.h5``).

Backend-portable: only ``keras``/``keras.ops`` are used, except in branches guarded by
``keras.backend.backend() == "tensorflow"`` (op determinism, distribution).

Scale (docs/scaling.md): ``cfg.distribute`` trains data-parallel (``engine.distribute``;
``batch_size`` per replica, lr scaled linearly, only the chief writes ``out``) and
``cfg.accumulate`` accumulates gradients over several batches (same lr, less memory).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import keras

from training import io
from training.config import TrainConfig, dump_config
from training.engine import batchnorm
from training.engine import feature_cache as feats
from training.engine.augment import build_augmentation, with_augmentation
from training.engine.callbacks import BestOnValidation, build_callbacks
from training.engine.data import ArrayBatches, class_balance_weights, keras_input
from training.engine.device import gpus_visible
from training.engine.loop import fit_batches, loss_for
from training.engine.prepare import Prepared, load_data, prepare, resolve_split
from training.engine.distribute import Distribution, make_distribution, worker_out
from training.gate.fit import fit_model_gate
from training.engine.schedule import PerUpdate, warmup_cosine
from training.models.build import unfreeze_backbone
from training.models.card import ModelCard
from training.data.cache import default_cache_dir
from training.data.cached_images import CachedImages
from training.data.splits import split_counts, split_hash
from training.data.tasks import get_task
from training.gate.ood import save_gate
from training.evaluation.posttrain import PostTraining, post_train
from training.evaluation.thresholds import MIN_PATIENTS
from training.models import build
from training.models.build import split_feature_head
from training.models.card import save_model
from training.models.registry import FOUR
from training.models.registry import get_architecture
from training.models.weights import describe_initialisation
from training.models.weights import resolve_auto

log = logging.getLogger(__name__)

#: What a stage trains on: cached images (read per batch) or in-memory cached features
Images = CachedImages | np.ndarray


# ------------------------------------------------------------------ environment
def _set_determinism(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow" and not gpus_visible():
        # CPU kernels are deterministic with this flag at little cost; on GPU it can refuse ops
        # without a deterministic kernel, so there resumes match within float tolerance only.
        import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

        tf.config.experimental.enable_op_determinism()


def _precision_policy(setting: str) -> str | None:
    """The mixed-precision policy to use, or None for float32."""
    on = setting == "on" or (setting == "auto" and gpus_visible())
    if not on:
        return None
    return "mixed_float16" if keras.backend.backend() == "tensorflow" else "mixed_bfloat16"


# ------------------------------------------------------------------ model pieces
def make_optimizer(cfg: TrainConfig, lr: float, steps: int, epochs: int) -> keras.optimizers.Optimizer:
    """The optimizer of ``cfg`` with its warm-up + cosine schedule over ``steps`` batches/epoch.

    With ``cfg.accumulate = k > 1`` Keras sums the gradients of k batches and applies their
    mean once (``gradient_accumulation_steps``), i.e. one update of batch ``k × batch_size``;
    the schedule then counts updates (``ceil(steps / k)`` per epoch, :class:`PerUpdate`).
    """
    k = int(cfg.accumulate)
    schedule: Any = warmup_cosine(lr, -(-int(steps) // k), epochs, cfg.warmup_epochs)
    extra: dict[str, Any] = {}
    if k > 1:
        schedule, extra = PerUpdate(schedule, k), {"gradient_accumulation_steps": k}
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, **extra)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(schedule, **extra)
    return keras.optimizers.SGD(schedule, momentum=0.9, **extra)


def _batches(cfg: TrainConfig, x: Images, y: np.ndarray, train: bool) -> ArrayBatches:
    weights = None
    if train and cfg.balance == "class_weight":
        weights, _ = class_balance_weights(y)
    return ArrayBatches(x, y, cfg.batch_size, shuffle=train, seed=cfg.seed,
                        balanced=train and cfg.balance == "sampler", sample_weight=weights,
                        steps_per_epoch=cfg.steps_per_epoch if train else None, workers=cfg.workers)


@dataclass
class Stage:
    """One ``fit`` call: which model trains on which inputs, for which global epochs."""

    name: str
    fit_model: keras.Model  # what fit() runs (head, or aug wrapper around the model)
    x_train: Images
    x_val: Images
    lr: float
    first_epoch: int
    last_epoch: int  # exclusive


def _run_stage(cfg: TrainConfig, st: Stage, prep: Prepared, kind: str, best: BestOnValidation | None,
               backup: Path, extra_callbacks: Sequence[keras.callbacks.Callback], verbose: int) -> None:
    y = prep.targets
    train = _batches(cfg, st.x_train, y[prep.index["train"]], train=True)
    val = ArrayBatches(st.x_val, y[prep.index["val"]], cfg.batch_size) if len(st.x_val) else None
    cbs = build_callbacks(Path(cfg.out), backup / st.name, [train], [st.fit_model], train.images_per_epoch,
                          st.last_epoch, best, verbose=bool(verbose), extra=extra_callbacks,
                          backup_interval=cfg.backup_interval)
    log.info("stage %s: epochs %d..%d, lr %g, %d training rows", st.name, st.first_epoch + 1,
             st.last_epoch, st.lr, train.n_rows)
    optimizer = make_optimizer(cfg, st.lr, len(train), st.last_epoch - st.first_epoch)
    fit_batches(st.fit_model, train, kind=kind, optimizer=optimizer, epochs=st.last_epoch, val=val,
                initial_epoch=st.first_epoch, callbacks=cbs, metrics=True,
                jit_compile=cfg.jit_compile, verbose=verbose)


def _stage_inputs(cfg: TrainConfig, prep: Prepared, model: keras.Model, use_cache: bool):
    """``(fit_model, x_train, x_val)`` for a frozen-backbone stage (cached features or images)."""
    if use_cache:
        feature_model, head = split_feature_head(model)
        info = {"arch": cfg.arch, "weights": cfg.weights, "size": prep.size,
                "preprocess_key": prep.preprocess.key()}
        root = Path(cfg.cache_dir or default_cache_dir()) / "features"
        x = {p: feats.features_for(feature_model, prep.images[p], info, root, cfg.batch_size)
             for p in ("train", "val")}
        return head, x["train"], x["val"]
    return _train_wrapper(cfg, model), prep.images["train"], prep.images["val"]


def _train_wrapper(cfg: TrainConfig, model: keras.Model) -> keras.Model:
    if not cfg.augment:
        return model
    return with_augmentation(model, build_augmentation(cfg, cfg.seed))


def _fit_all(cfg: TrainConfig, prep: Prepared, model: keras.Model, backup: Path,
             extra_callbacks: Sequence[keras.callbacks.Callback], verbose: int) -> dict[str, Any]:
    """Run the stages of ``cfg.mode``; returns facts for the card (feature cache use, stages)."""
    kind = prep.task.kind
    use_cache, why = feats.decide(cfg.mode, cfg.augment, cfg.feature_cache)
    if cfg.mode == "scratch":
        use_cache, why = False, "mode 'scratch': full passes"
    log.info(why)
    has_val = len(prep.index["val"]) > 0
    if not has_val:
        log.warning("no validation images: no early stopping, final weights kept, no thresholds "
                    "(not estimable: no decisions)")
    best = BestOnValidation(backup / "best.json", backup / "best.weights.h5", "val_loss",
                            cfg.patience, target=model) if has_val else None
    done = backup / "stage1.done"
    first_len = cfg.head_epochs if cfg.mode == "finetune" else cfg.epochs
    if not done.is_file():
        fit_model, xt, xv = _stage_inputs(cfg, prep, model, use_cache)
        if best is not None and use_cache:
            best.target = fit_model  # the head: saving only its weights is much cheaper
        _run_stage(cfg, Stage("stage1", fit_model, xt, xv, cfg.lr, 0, first_len),
                   prep, kind, best, backup, extra_callbacks, verbose)
        if best is not None:
            best.retarget(model)  # best weights now stored for the full model
        if cfg.mode == "finetune":
            model.save_weights(backup / "stage1.weights.h5")
            done.touch()
    elif cfg.mode == "finetune":
        model.load_weights(backup / "stage1.weights.h5")
    if cfg.mode == "finetune" and cfg.epochs > 0:
        unfreeze_backbone(model)
        if best is not None:
            best.start_epoch = first_len
        _run_stage(cfg, Stage("stage2", _train_wrapper(cfg, model), prep.images["train"],
                              prep.images["val"], cfg.finetune_lr, first_len, first_len + cfg.epochs),
                   prep, kind, best, backup, extra_callbacks, verbose)
    if best is not None and best.restore(model) and best.best_epoch is not None:
        log.info("restored the best weights on validation (epoch %d)", best.best_epoch + 1)
    return {"feature_cache": use_cache, "feature_cache_reason": why,
            "best_epoch": None if best is None or best.best_epoch is None else best.best_epoch + 1}


# ------------------------------------------------------------------ after training
def validation_report(model: keras.Model, prep: Prepared, batch_size: int, calibration: str = "auto",
                      min_patients: int = MIN_PATIENTS) -> PostTraining:
    """The post-training step (:func:`~training.evaluation.posttrain.post_train`: calibration,
    Youden thresholds, metrics) on the model's predictions on the validation part."""
    y = prep.targets[prep.index["val"]]
    raw = (np.asarray(model.predict(keras_input(ArrayBatches(prep.images["val"], y, batch_size)), verbose=0))
           if len(y) else np.zeros((0, len(prep.classes))))
    return post_train(y, raw, prep.task.kind, prep.classes, _validation_patients(prep),
                      calibration=calibration, min_patients=min_patients)


def _validation_patients(prep: Prepared) -> np.ndarray | None:
    """Patient ids of the validation rows (calibration's cross-validation keeps them together)."""
    meta = getattr(getattr(prep, "ds", None), "meta", None)
    if meta is None or "patient" not in meta:
        return None
    rows = meta.iloc[prep.index["val"]]
    return np.where(rows["patient"].isna(), rows["path"].astype(str), rows["patient"].astype(str))


def _history(out: Path) -> pd.DataFrame:
    """``history.csv`` with epochs re-done after a resume counted once (the last run wins)."""
    path = out / "history.csv"
    if not path.is_file():
        return pd.DataFrame()
    df = pd.read_csv(path).drop_duplicates("epoch", keep="last").sort_values("epoch")
    io.write_csv(path, df)
    return df


def build_card(cfg: TrainConfig, prep: Prepared, facts: dict, post: PostTraining,
               history: pd.DataFrame, gradcam_layer: str) -> ModelCard:
    """The model card (docs/architecture.md) of a finished run (``post``: its post-training step;
    ``gradcam_layer``: what Grad-CAM explains, ``Architecture.gradcam_layer_for``)."""
    counts = split_counts(prep.split, prep.targets, prep.classes)
    seconds = history["epoch_seconds"].mean() if "epoch_seconds" in history else float("nan")
    return ModelCard(
        name=cfg.run_name,
        architecture=cfg.arch,
        task=cfg.task,
        kind=prep.task.kind,
        outputs=list(prep.classes),
        input_size=prep.size,
        preprocessing=prep.preprocess.to_dict(),
        gradcam_layer=gradcam_layer,
        transfer={"mode": cfg.mode, "weights": cfg.weights},
        initialisation=describe_initialisation(cfg.weights),
        training={**cfg.to_dict(), **facts, "epochs_run": int(len(history)),
                  "seconds_per_epoch": None if np.isnan(seconds) else float(seconds),
                  "train_images_used": int(len(prep.index["train"]))},
        split={"file": str(prep.split_path), "sha256": split_hash(prep.split_path),
               "counts": {p: counts[p]["images"] for p in counts}},
        data={"sources": sorted(prep.ds.meta["source"].astype(str).unique().tolist()),
              "counts": {p: counts[p]["classes"] for p in counts}, "parts": counts,
              "skipped": prep.skipped},
        thresholds=post.thresholds,
        metrics={"validation": post.metrics, "test": {}},
        calibration=post.calibration.to_json(),
    )


# ------------------------------------------------------------------ entry points
def resolved(cfg: TrainConfig) -> tuple[TrainConfig, str | None]:
    """``cfg`` as the trainer runs and records it: "auto" mode/weights resolved (with the note
    saying why when it falls back) and the default lr made explicit. Whoever asks "was this
    model trained with ``cfg``?" (the demo's reuse, a cross-collection fold) compares this."""
    mode, weights, note = resolve_auto(cfg.arch, cfg.mode, cfg.weights)
    cfg = dataclasses.replace(cfg, mode=mode, weights=weights)
    return dataclasses.replace(cfg, lr=cfg.resolved_lr()), note


def train(cfg: TrainConfig, ds=None, callbacks: Iterable[keras.callbacks.Callback] = (),
          verbose: int = 1) -> Path:
    """Train the model of ``cfg``; return its folder (``model.keras``, ``card.json``, ...).

    Restarting an interrupted run with the same config resumes it. ``ds`` (an already loaded
    dataset) and ``callbacks`` (extra, e.g. for tests) are optional.
    """
    cfg, note = resolved(cfg)  # the saved config records the mode, weights and lr used
    if note:
        log.warning(note)
        print(f"WARNING: {note}", file=sys.stderr)
    dist = make_distribution(cfg.distribute)
    with worker_out(cfg.out, dist) as out:
        # Non-chief workers run every step (the collectives need them) but write to ``out``,
        # a temp folder; the chief's ``cfg.out`` gets the one set of outputs.
        _train_in(dataclasses.replace(cfg, out=str(out)), ds, dist, note, list(callbacks), verbose)
    return Path(cfg.out)


def run_facts(cfg: TrainConfig, dist: Distribution) -> dict[str, Any]:
    """How the batch and learning rate were scaled (recorded in the card)."""
    return {"distribute": dist.setting, "replicas": dist.replicas,
            "global_batch": dist.global_batch(cfg.batch_size),
            "effective_batch": dist.global_batch(cfg.batch_size) * int(cfg.accumulate),
            "lr_used": dist.scaled_lr(cfg.resolved_lr(), cfg.scale_lr),
            "finetune_lr_used": dist.scaled_lr(cfg.finetune_lr, cfg.scale_lr)}


def _train_in(cfg: TrainConfig, ds, dist: Distribution, note: str | None,
              callbacks: list[keras.callbacks.Callback], verbose: int) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    backup = out / "backup"
    dump_config(cfg, out / "config.yaml")
    _set_determinism(cfg.seed)
    prep = prepare(cfg, ds)
    scale = run_facts(cfg, dist)
    if dist.replicas > 1:
        log.info("%s over %d replicas: global batch %d, lr %g", dist.setting, dist.replicas,
                 scale["global_batch"], scale["lr_used"])
    # Internally the batch is the global one and the lrs the scaled ones; the saved config
    # keeps what the user asked for (per-replica batch), the card records both.
    run_cfg = dataclasses.replace(cfg, batch_size=scale["global_batch"], lr=scale["lr_used"],
                                  finetune_lr=scale["finetune_lr_used"])
    previous = keras.mixed_precision.dtype_policy()
    policy = _precision_policy(cfg.mixed_precision)
    if policy:
        log.info("mixed precision: %s", policy)
        keras.mixed_precision.set_dtype_policy(policy)
    try:
        with dist.scope():  # variables and optimizer state are created inside the strategy
            model = build.build_model(cfg.arch, prep.classes, prep.task.kind, prep.size, cfg.mode,
                                cfg.weights, seed=cfg.seed)
            if cfg.mode == "scratch":
                batchnorm.set_momentum(model, cfg.bn_momentum)
            facts = _fit_all(run_cfg, prep, model, backup, callbacks, verbose)
            y_val = prep.targets[prep.index["val"]]
            facts["batchnorm"] = batchnorm.settle(
                model, prep.images["train"], prep.images["val"], y_val, loss_for(prep.task.kind),
                run_cfg.batch_size, seed=cfg.seed, precise=cfg.precise_bn)
            post = validation_report(model, prep, run_cfg.batch_size, cfg.calibration,
                                     cfg.min_threshold_patients)
            cam_layer = get_architecture(cfg.arch).gradcam_layer_for(model)
            gate = fit_model_gate(model, prep.images["train"], prep.images["val"], cam_layer,
                                  run_cfg.batch_size)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    facts.update(mixed_precision=policy, **scale)
    card = build_card(cfg, prep, facts, post, _history(out), cam_layer)
    if note:
        card.transfer = dataclasses.replace(card.transfer, note=note)
    card.gate = save_gate(gate, out)  # before the card that names its hash
    save_model(model, card, out)
    shutil.rmtree(backup, ignore_errors=True)


def train_all(cfg: TrainConfig, archs: Sequence[str] | None = None, ds=None,
              callbacks: Iterable[keras.callbacks.Callback] = (), verbose: int = 1) -> list[Path]:
    """Train each of ``archs`` (default the four) with one shared split and the same budget.

    Models go to ``out/<arch>``, named ``<name>-<arch>``; the split is made once (or taken from
    ``cfg.split``) and saved as ``out/split.csv``.
    """
    archs = tuple(archs or FOUR)
    ds = load_data(cfg) if ds is None else ds
    _, split_path = resolve_split(cfg, ds, get_task(cfg.task))
    out, dirs = Path(cfg.out), []
    for arch in archs:
        sub = dataclasses.replace(cfg, arch=arch, out=str(out / arch), split=str(split_path),
                                  name=f"{cfg.run_name}-{arch}")
        dirs.append(train(sub, ds=ds, callbacks=callbacks, verbose=verbose))
    return dirs

"""Callbacks: determinism per epoch, throughput, best-on-validation, logs, backups.

Order matters for a run killed at any moment (see :func:`build_callbacks`): everything that
records an epoch runs *before* :class:`Backup` marks it done, so a resumed run re-does
(identically) at most the epochs since the last backup.

None of these callbacks has a per-batch hook, so Keras dispatches its per-batch callbacks
(the progress bar) asynchronously: on JAX the host never waits for a step to finish before
queueing the next one (Keras's own ``BackupAndRestore`` has a batch hook and turned that off).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import keras

from training import io

log = logging.getLogger(__name__)

_EPOCH_STRIDE = 1 << 20  # seed-state offset per epoch; larger than any steps-per-epoch count


def seed_generators(model: keras.Model) -> list[Any]:
    """Every :class:`keras.random.SeedGenerator` owned by ``model``'s layers (dropout, aug)."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for sg in getattr(layer, "_seed_generators", []):
            if id(sg) not in seen:
                seen.add(id(sg))
                found.append(sg)
    return found


class EpochSync(keras.callbacks.Callback):
    """At each epoch start: tell the datasets the epoch and reset every seed generator.

    Keras does not save seed-generator states in weights/backups, so a resumed run would
    otherwise draw other dropout masks and augmentations. Here both the batch order and the
    random state of epoch ``e`` are functions of ``(seed, e)`` only.
    """

    def __init__(self, datasets: Iterable[Any] = (), models: Iterable[keras.Model] = ()):
        super().__init__()
        self.datasets = list(datasets)
        self.generators = [sg for m in models for sg in seed_generators(m)]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for ds in self.datasets:
            ds.epoch = epoch
        for sg in self.generators:
            # state = [seed, counter]; draws only advance the counter, so state[0] is still the
            # layer's seed whatever ran before (e.g. a finished stage 1 in this process or not).
            state = np.array(keras.ops.convert_to_numpy(sg.state.value))
            state[1] = (epoch + 1) * _EPOCH_STRIDE % (1 << 31)
            sg.state.assign(state)


class Throughput(keras.callbacks.Callback):
    """Adds ``images_per_s`` and ``epoch_seconds`` to the logs and prints them per epoch."""

    def __init__(self, n_images: int, epochs: int, verbose: bool = True):
        super().__init__()
        self.n_images = int(n_images)
        self.epochs = int(epochs)
        self.verbose = verbose
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = max(time.perf_counter() - self._start, 1e-9)
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["images_per_s"] = self.n_images / seconds
        if self.verbose:
            left = (self.epochs - epoch - 1) * seconds
            shown = {k: v for k, v in (logs or {}).items() if k.startswith("val_") or k == "loss"}
            metrics = ", ".join(f"{k} {float(v):.4f}" for k, v in shown.items())
            print(f"epoch {epoch + 1}/{self.epochs}: {metrics}; {self.n_images / seconds:.1f} images/s, "
                  f"{seconds:.1f} s, ETA {left:.0f} s", flush=True)


def _atomic_json(path: Path, data: Any) -> None:
    io.write_json(path, data, indent=None)


class BestOnValidation(keras.callbacks.Callback):
    """Early stopping and best-weights selection on the **validation** metric, resumable.

    The per-epoch history of ``monitor`` (keyed by epoch, so a re-done epoch overwrites itself)
    and the best weights of ``target`` are kept in memory and written to ``state_path`` (JSON)
    and ``weights_path`` by :meth:`persist`: every epoch when ``autosave`` is true, else when
    the :class:`Backup` writes a backup and at the end of each ``fit`` (the trainer's setting:
    writing ~100 MB of weights at every improving epoch would slow short GPU epochs, and state
    written with the backup always matches it). Unlike Keras's ``EarlyStopping`` the state
    survives a kill. Call :meth:`restore` after training to load the best weights. Never give
    it a test metric.
    """

    def __init__(self, state_path: str | Path, weights_path: str | Path, monitor: str = "val_loss",
                 patience: int = 0, target: keras.Model | None = None, autosave: bool = True):
        super().__init__()
        if not monitor.startswith("val_"):
            raise ValueError(f"best-model selection must monitor a validation metric, got {monitor!r}")
        self.state_path, self.weights_path = Path(state_path), Path(weights_path)
        self.monitor, self.patience, self.target = monitor, int(patience), target
        self.autosave = autosave
        #: Patience counts from here at the earliest (a new stage gets its own patience).
        self.start_epoch = 0
        self.history: dict[int, float] = self._load()
        self._best: tuple[keras.Model, list[np.ndarray]] | None = None  # (model, weights) not yet written

    def _load(self) -> dict[int, float]:
        if not self.state_path.is_file():
            return {}
        return {int(k): float(v) for k, v in json.loads(self.state_path.read_text()).items()}

    @property
    def best_epoch(self) -> int | None:
        """Epoch (0-based) with the lowest monitored value so far, or None."""
        if not self.history:
            return None
        return min(self.history, key=lambda e: (self.history[e], e))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(float(value)):
            return
        self.history[epoch] = float(value)
        if self.best_epoch == epoch:
            self.save_best()
        if self.autosave:
            self.persist()
        if self.should_stop(epoch):
            log.info("early stopping at epoch %d: best %s at epoch %d", epoch + 1, self.monitor,
                     self.best_epoch + 1)
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self.persist()

    def should_stop(self, epoch: int) -> bool:
        """Whether ``patience`` epochs passed without improvement (counted from ``start_epoch``)."""
        best = self.best_epoch
        if not self.patience or best is None:
            return False
        return epoch - max(best, self.start_epoch - 1) >= self.patience

    def save_best(self) -> None:
        """Take the current weights of ``target`` as the best (a host copy; written by persist)."""
        model = self.target or self.model
        self._best = (model, [np.array(w) for w in model.get_weights()])

    def persist(self) -> None:
        """Write the best weights (if new) then the history, each atomically."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        if self._best is not None:
            model, weights = self._best
            current = model.get_weights()
            model.set_weights(weights)
            try:
                self.weights_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.weights_path.with_name("tmp_" + self.weights_path.name)
                model.save_weights(tmp)
                io.publish(tmp, self.weights_path, fsync=False)  # open()'s mode, then os.replace
            finally:
                model.set_weights(current)
            self._best = None
        _atomic_json(self.state_path, self.history)  # after the weights: see module docstring

    def retarget(self, target: keras.Model) -> None:
        """Switch to another model (e.g. head → full model), carrying the best weights over."""
        if self.restore():
            self.target = target
            self.save_best()
            self.persist()
        self.target = target

    def restore(self, model: keras.Model | None = None) -> bool:
        """Load the best weights into ``model`` (default ``target``); False when none were saved."""
        model = model or self.target or self.model
        if self._best is not None and self._best[0] is model:
            model.set_weights(self._best[1])
            return True
        self.persist()
        if not self.weights_path.is_file():
            return False
        model.load_weights(self.weights_path)
        return True


class Backup(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` at epoch ends, at most every ``interval`` seconds, atomic.

    A backup holds the weights and the optimizer state (270 MB for ResNet50 with AdamW, 0.5 to
    1.5 s to write on the dev machine: BENCHMARKS.md). Written after every epoch that costs a
    quarter of a ~2 s GPU epoch, so one is written at an epoch end only when ``interval``
    seconds have passed since the last (0: every epoch). A killed run re-does at most those
    seconds plus the epoch in flight, identically (batch order and random state depend only on
    the epoch). Files are written under temporary names and renamed, so a kill during a save
    keeps the previous backup. ``before_save`` callables (e.g. ``BestOnValidation.persist``)
    run first, so their state matches the backup.
    """

    async_safe = True  # only epoch hooks do work (save_freq="epoch")

    def __init__(self, backup_dir: str | Path, interval: float = 0.0, before_save: Iterable[Any] = ()):
        super().__init__(str(backup_dir), save_freq="epoch")
        self.interval = float(interval)
        self.before_save = list(before_save)
        self._last_save = time.monotonic()

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self._last_save = time.monotonic()

    def _save_model(self) -> None:
        if time.monotonic() - self._last_save < self.interval:
            return
        for persist in self.before_save:
            persist()
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "tmp_latest.weights.h5"
        self.model.save_weights(str(tmp), overwrite=True)
        io.publish(tmp, self._weights_path, fsync=False)
        _atomic_json(Path(self._training_metadata_path), {"epoch": self._current_epoch, "batch": 0})
        self._last_save = time.monotonic()


def tensorboard_available() -> bool:
    """TensorBoard logging needs the TF backend and the ``tensorboard`` package."""
    return keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard") is not None


def build_callbacks(out: Path, backup_dir: Path, datasets: list[Any], models: list[keras.Model],
                    n_train: int, epochs: int, best: BestOnValidation | None,
                    verbose: bool = True, extra: Iterable[keras.callbacks.Callback] = (),
                    backup_interval: float = 0.0) -> list:
    """The callback list of one ``fit`` call, in kill-safe order (backup last).

    ``best`` then writes its state together with each backup (``backup_interval`` seconds
    apart at least) and at the end of the fit.
    """
    cbs: list[keras.callbacks.Callback] = [EpochSync(datasets, models), Throughput(n_train, epochs, verbose)]
    if best is not None:
        best.autosave = False
        cbs.append(best)
    cbs.append(keras.callbacks.CSVLogger(str(out / "history.csv"), append=True))
    if tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(str(out / "logs")))
    cbs.extend(extra)
    cbs.append(Backup(backup_dir, backup_interval, [best.persist] if best is not None else []))
    return cbs

"""Callbacks: determinism per epoch, throughput, best-on-validation, logs, backups.

Order matters for a run killed at any moment (see :func:`build_callbacks`): everything that
records an epoch runs *before* :class:`keras.callbacks.BackupAndRestore` marks it done, so a
resumed run re-does (identically) at most the epoch that was in flight.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import keras

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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class BestOnValidation(keras.callbacks.Callback):
    """Early stopping and best-weights selection on the **validation** metric, resumable.

    The per-epoch history of ``monitor`` is kept in ``state_path`` (JSON, keyed by epoch, so a
    re-done epoch overwrites itself) and the best weights of ``target`` in ``weights_path``;
    both survive a kill, unlike Keras's ``EarlyStopping`` state. Call :meth:`restore` after
    training to load the best weights. Never give it a test metric.
    """

    def __init__(self, state_path: str | Path, weights_path: str | Path, monitor: str = "val_loss",
                 patience: int = 0, target: keras.Model | None = None):
        super().__init__()
        if not monitor.startswith("val_"):
            raise ValueError(f"best-model selection must monitor a validation metric, got {monitor!r}")
        self.state_path, self.weights_path = Path(state_path), Path(weights_path)
        self.monitor, self.patience, self.target = monitor, int(patience), target
        #: Patience counts from here at the earliest (a new stage gets its own patience).
        self.start_epoch = 0
        self.history: dict[int, float] = self._load()

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
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        if self.best_epoch == epoch:
            self.save_best()
        _atomic_json(self.state_path, self.history)  # after the weights: see module docstring
        if self.should_stop(epoch):
            log.info("early stopping at epoch %d: best %s at epoch %d", epoch + 1, self.monitor,
                     self.best_epoch + 1)
            self.model.stop_training = True

    def should_stop(self, epoch: int) -> bool:
        """Whether ``patience`` epochs passed without improvement (counted from ``start_epoch``)."""
        best = self.best_epoch
        if not self.patience or best is None:
            return False
        return epoch - max(best, self.start_epoch - 1) >= self.patience

    def save_best(self) -> None:
        """Save the current weights of ``target`` as the best (atomically)."""
        self.weights_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.weights_path.with_name("tmp_" + self.weights_path.name)
        (self.target or self.model).save_weights(tmp)
        os.replace(tmp, self.weights_path)

    def retarget(self, target: keras.Model) -> None:
        """Switch to another model (e.g. head → full model), carrying the best weights over."""
        if self.restore():
            self.target = target
            self.save_best()
        self.target = target

    def restore(self, model: keras.Model | None = None) -> bool:
        """Load the best weights into ``model`` (default ``target``); False when none were saved."""
        if not self.weights_path.is_file():
            return False
        (model or self.target or self.model).load_weights(self.weights_path)
        return True


def tensorboard_available() -> bool:
    """TensorBoard logging needs the TF backend and the ``tensorboard`` package."""
    return keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard") is not None


def build_callbacks(out: Path, backup_dir: Path, datasets: list[Any], models: list[keras.Model],
                    n_train: int, epochs: int, best: BestOnValidation | None,
                    verbose: bool = True, extra: Iterable[keras.callbacks.Callback] = ()) -> list:
    """The callback list of one ``fit`` call, in kill-safe order (backup last)."""
    cbs: list[keras.callbacks.Callback] = [EpochSync(datasets, models), Throughput(n_train, epochs, verbose)]
    if best is not None:
        cbs.append(best)
    cbs.append(keras.callbacks.CSVLogger(str(out / "history.csv"), append=True))
    if tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(str(out / "logs")))
    cbs.extend(extra)
    cbs.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
    return cbs

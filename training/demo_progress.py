"""The demo's progress as it is said: each step's time (:class:`Clock`), durations read at a
glance, and one line per training epoch with the ETA of all trainings (:class:`TrainingProgress`),
also written to the demo's status file for the app's training panel."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import keras

from training.demo_status import StatusFile


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 10 s``, ``1 h 05 min``: a time a person reads at a glance."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Clock:
    """`` [t]``: time since the demo started, for each step's line."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def total(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self) -> str:
        return f" [{duration(self.total())}]"


def eta_seconds(seconds: float, done: float, left: float) -> float | None:
    """Time still to go at the pace so far (``seconds`` for ``done`` units of work, ``left`` to
    go; set-up, caching, calibration and the evaluations between models included); None before
    the first epoch."""
    return None if done <= 0 else seconds / done * left


class TrainingProgress(keras.callbacks.Callback):
    """One line per epoch: model, epoch, training time so far and the ETA of all trainings;
    the same in the demo's status file (``status``), which the app's training panel shows.

    ``costs``: each model's epoch cost relative to the others', in training order (default:
    all equal), so that a quick first model does not make the ETA of slower ones optimistic."""

    def __init__(self, n_models: int, epochs_per_model: int, status: StatusFile | None = None,
                 costs: Sequence[float] | None = None) -> None:
        super().__init__()
        self.n_models, self.per_model, self.status = n_models, epochs_per_model, status
        self.costs = [float(c) for c in costs] if costs is not None else [1.0] * n_models
        if len(self.costs) != n_models:
            raise ValueError(f"costs: one per model ({n_models}), got {len(self.costs)}")
        self.start = time.perf_counter()
        self.arch, self.started, self.done, self.models_done, self.in_model = "", 0, 0, 0, 0
        self.done_cost = 0.0

    def begin(self, arch: str) -> None:
        self.arch, self.in_model, self.started = arch, 0, time.perf_counter()
        if self.status is not None:  # the ETA at the pace so far, now with this model's epochs to go
            eta = eta_seconds(time.perf_counter() - self.start, self.done_cost, self.left_cost())
            self.status.update(current=arch, epoch=0, stage="training", eta_seconds=eta)

    def end(self, model_dir: Path) -> None:
        self.models_done += 1
        print(f"      {self.arch}: trained in {duration(time.perf_counter() - self.started)} "
              f"({self.models_done}/{self.n_models}): {model_dir}", flush=True)

    def left(self) -> int:
        """Epochs still planned: the rest of this model's and every later model's."""
        return max(self.per_model - self.in_model, 0) + self.per_model * (self.n_models - self.models_done - 1)

    def left_cost(self) -> float:
        """:meth:`left` weighted by each model's epoch cost."""
        k = min(self.models_done, self.n_models - 1)
        return (max(self.per_model - self.in_model, 0) * self.costs[k]
                + self.per_model * sum(self.costs[k + 1:]))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.done, self.in_model = self.done + 1, self.in_model + 1
        self.done_cost += self.costs[min(self.models_done, self.n_models - 1)]
        spent = time.perf_counter() - self.start
        eta = eta_seconds(spent, self.done_cost, self.left_cost())
        print(f"\n      {self.arch}: epoch {self.in_model}/{self.per_model}; training so far "
              f"{duration(spent)}; ETA of all {self.n_models} trainings ~{duration(eta or 0)}", flush=True)
        if self.status is not None:
            self.status.update(current=self.arch, epoch=self.in_model, eta_seconds=eta)

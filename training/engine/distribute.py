"""Data-parallel training: pick a strategy, size the global batch, decide who writes.

Settings (``TrainConfig.distribute``):

* ``"none"``: one device.
* ``"mirrored"`` (TensorFlow): ``tf.distribute.MirroredStrategy``, every GPU of one host (or
  the given ``devices``).
* ``"multiworker"`` (TensorFlow): ``tf.distribute.MultiWorkerMirroredStrategy`` across hosts;
  the cluster and this process's role come from the ``TF_CONFIG`` environment variable.
* ``"data_parallel"`` (JAX): ``keras.distribution.DataParallel`` over all (or given) devices.
* ``"auto"``: multiworker when ``TF_CONFIG`` names several workers, else mirrored / data
  parallel when the backend sees more than one GPU, else none.

``TrainConfig.batch_size`` is **per replica**; the global batch is ``batch_size * replicas``
and the learning rate is scaled by ``replicas`` (linear scaling; ``scale_lr=False`` keeps it).
Only the chief (task 0 / process 0) writes to ``out``; other workers run the same collective
steps but write into a temporary folder that is deleted afterwards (the standard TF pattern).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from training.engine.device import gpu_count
from training.errors import CXRError

log = logging.getLogger(__name__)

SETTINGS = ("none", "mirrored", "multiworker", "data_parallel", "auto")
_BACKEND_OF = {"mirrored": "tensorflow", "multiworker": "tensorflow", "data_parallel": "jax"}


@dataclass
class Distribution:
    """The resolved distribution of one run."""

    setting: str  # none | mirrored | multiworker | data_parallel (never "auto")
    replicas: int = 1  # devices taking part in one synchronous step, all workers together
    is_chief: bool = True
    worker_index: int = 0
    strategy: Any = None  # tf.distribute.Strategy or keras.distribution.Distribution

    def scope(self) -> contextlib.AbstractContextManager:
        """Build, compile and fit models inside this (variables mirrored / laid out on devices)."""
        stack = contextlib.ExitStack()
        if self.strategy is not None:
            stack.enter_context(self.strategy.scope())
        if self.setting in ("mirrored", "multiworker"):
            stack.enter_context(_keras_distribute_fixes())
        return stack

    def global_batch(self, per_replica: int) -> int:
        """The batch one step consumes over all replicas."""
        return int(per_replica) * self.replicas

    def scaled_lr(self, lr: float, enabled: bool = True) -> float:
        """Linear scaling rule (Goyal et al. 2017): lr × replicas, or lr unchanged."""
        return float(lr) * (self.replicas if enabled else 1)


@contextlib.contextmanager
def _keras_distribute_fixes() -> Iterator[None]:
    """Work around two Keras 3 (3.15) bugs with ``tf.distribute`` while this context is active.

    1. Reducing scalar logs across workers fails (see ``reduce`` below).
    2. A distributed model is built from the *mean* of the first batch.
    ``TensorFlowTrainer._maybe_symbolic_build`` reduces the first distributed batch with
    ``strategy.reduce("MEAN")`` only to learn its shapes and dtypes; that fails for uint8
    images across workers and for a first batch split unevenly over replicas (e.g. 5
    validation images on 2 replicas). The first replica's shard has the same structure, so it
    is used instead.
    """
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)
    from keras.src.backend.tensorflow import trainer as tf_trainer  # TensorFlow backend only
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer  # TensorFlow backend only

    original = TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def reduce(values, strategy, reduction):
        # Keras 3 reduces scalar logs across workers with axis=0, which fails
        # (tensorflow/tensorflow#72388); axis=None is the mean over replicas it means.
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    def build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, batch)
                break
        return original(self, None, data_batch)

    TensorFlowTrainer._maybe_symbolic_build = build
    tf_trainer.reduce_per_replica = reduce
    try:
        yield
    finally:
        TensorFlowTrainer._maybe_symbolic_build = original
        tf_trainer.reduce_per_replica = original_reduce


# ------------------------------------------------------------------ TF_CONFIG
def read_tf_config(env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` (None when unset), checked for ``cluster`` and ``task``."""
    raw = (os.environ if env is None else env).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CXRError(f"TF_CONFIG is not valid JSON ({exc}). What to do: see docs/scaling.md") from None
    task = conf.get("task") if isinstance(conf, dict) else None
    if not isinstance(conf, dict) or not isinstance(conf.get("cluster"), dict) or not isinstance(task, dict):
        raise CXRError('TF_CONFIG needs {"cluster": {...}, "task": {"type": ..., "index": ...}}. '
                       "What to do: see docs/scaling.md")
    if task.get("type") not in conf["cluster"]:
        raise CXRError(f"TF_CONFIG task type {task.get('type')!r} is not in the cluster "
                       f"{sorted(conf['cluster'])}")
    return conf


def n_workers(conf: dict[str, Any] | None) -> int:
    """Processes taking part in training (chief + workers) in a ``TF_CONFIG``."""
    if not conf:
        return 1
    return sum(len(conf["cluster"].get(k, [])) for k in ("chief", "worker"))


def chief_role(conf: dict[str, Any] | None) -> tuple[bool, int]:
    """``(is_chief, worker_index)``: the chief is task ``chief`` or, without one, worker 0."""
    if not conf:
        return True, 0
    kind, index = conf["task"]["type"], int(conf["task"].get("index", 0))
    has_chief = bool(conf["cluster"].get("chief"))
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return is_chief, index + (1 if has_chief and kind == "worker" else 0)


# ------------------------------------------------------------------ resolve
def resolve_setting(setting: str, backend: str | None = None) -> str:
    """``setting`` with ``"auto"`` decided; a clear error when the backend cannot do it."""
    backend = backend or keras.backend.backend()
    if setting not in SETTINGS:
        raise CXRError(f"config: distribute={setting!r} is not one of {list(SETTINGS)}")
    if setting == "auto":
        if backend == "tensorflow" and n_workers(read_tf_config()) > 1:
            return "multiworker"
        if gpu_count() > 1:
            return {"tensorflow": "mirrored", "jax": "data_parallel"}.get(backend, "none")
        return "none"
    needed = _BACKEND_OF.get(setting)
    if needed and needed != backend:
        raise CXRError(f"distribute={setting!r} needs the {needed} backend, but KERAS_BACKEND is "
                       f"{backend!r}. What to do: use "
                       f"{'mirrored/multiworker' if backend == 'tensorflow' else 'data_parallel'} "
                       f"with {backend}, or set KERAS_BACKEND={needed}")
    return setting


_MADE: dict[tuple, Distribution] = {}


def make_distribution(setting: str = "auto", devices: Sequence[str] | None = None) -> Distribution:
    """The :class:`Distribution` of ``setting``, created once per process and reused.

    Reuse matters: TensorFlow allows one ``MultiWorkerMirroredStrategy`` per process (its
    collectives are configured at creation), and ``train_all`` trains several models.
    """
    resolved = resolve_setting(setting)
    key = (resolved, tuple(devices or ()))
    if key not in _MADE:
        _MADE[key] = _create(resolved, devices)
    return _MADE[key]


def _create(resolved: str, devices: Sequence[str] | None) -> Distribution:
    if resolved == "none":
        return Distribution("none")
    if resolved == "data_parallel":
        return _data_parallel(devices)
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    if resolved == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
        return Distribution("mirrored", strategy.num_replicas_in_sync, strategy=strategy)
    conf = read_tf_config()
    if conf is None:
        raise CXRError("distribute='multiworker' needs TF_CONFIG (cluster + this task). "
                       "What to do: set it on every worker; see docs/scaling.md")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    is_chief, index = chief_role(conf)
    return Distribution("multiworker", strategy.num_replicas_in_sync, is_chief, index, strategy)


def _data_parallel(devices: Sequence[str] | None) -> Distribution:
    import jax  # JAX backend only

    if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):  # several hosts: join the job first
        keras.distribution.initialize()
    dist = keras.distribution.DataParallel(devices=list(devices) if devices else None)
    replicas = len(devices) if devices else len(keras.distribution.list_devices())
    index = jax.process_index()
    return Distribution("data_parallel", replicas, index == 0, index, dist)


# ------------------------------------------------------------------ where this worker writes
@contextlib.contextmanager
def worker_out(out: str | Path, dist: Distribution) -> Iterator[Path]:
    """The folder this process writes to: ``out`` for the chief, else a temp dir (deleted).

    A non-chief worker starts from a copy of the chief's ``backup`` folder when ``out`` is on
    a shared filesystem, so a resumed run restores the same epoch on every worker.
    """
    out = Path(out)
    if dist.is_chief:
        yield out
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"cxrlab-worker{dist.worker_index}-"))
    try:
        if (out / "backup").is_dir():  # the split is remade identically from the seed
            shutil.copytree(out / "backup", tmp / "backup")
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""Batches of uint8 images + targets, deterministic per (seed, epoch) so resumed runs match."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import keras


def usable_rows(targets: np.ndarray) -> np.ndarray:
    """Indices of rows with at least one known target (all-NaN rows teach nothing)."""
    targets = np.asarray(targets, dtype=np.float32)
    return np.flatnonzero(~np.isnan(targets).all(axis=1))


def balanced_weights(targets: np.ndarray) -> np.ndarray:
    """Per-row sampling probabilities that give every class (positive label) equal mass.

    Multilabel rows count once per positive label; rows with no positive (all known
    negatives) form their own group so they are still drawn.
    """
    targets = np.nan_to_num(np.asarray(targets, dtype=np.float32), nan=0.0)
    groups = np.concatenate([targets, (targets.sum(axis=1) == 0)[:, None]], axis=1)
    counts = groups.sum(axis=0)
    present = counts > 0
    per_group = np.where(present, 1.0 / np.maximum(counts, 1) / present.sum(), 0.0)
    weights = groups @ per_group
    return weights / weights.sum()


def epoch_order(n: int, seed: int, epoch: int, probabilities: np.ndarray | None = None) -> np.ndarray:
    """Row order for one epoch: a permutation, or a balanced draw with replacement."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    if probabilities is None:
        return rng.permutation(n)
    return rng.choice(n, size=n, replace=True, p=probabilities)


class ArrayBatches(keras.utils.PyDataset):
    """``(uint8 images, float32 targets)`` batches over cached images (an array or a lazy
    :class:`~training.data.cached_images.CachedImages`: only each batch's rows are read).

    Rows whose targets are all NaN are left out. With ``shuffle`` the order is a function of
    ``(seed, epoch)`` only (``epoch`` is set by :class:`~training.engine.callbacks.EpochSync`),
    so a resumed run sees the same batches; without it (validation/test) rows stay in order and
    values never depend on the batch size. ``balanced`` draws rows class-balanced, with
    replacement. ``sample_weight`` (per row) is yielded as a third element. Images stay
    uint8: the model casts, and host→device traffic is 4x smaller. A model with several inputs
    (e.g. cached features + metadata) gets ``images`` as a tuple of row-aligned arrays.

    ``steps_per_epoch`` (shuffled batches only; for collections where a pass takes hours): an
    epoch is that many batches of an endless stream, the passes ``order(0), order(1), ...``
    laid end to end; epoch ``k`` reads stream batches ``k*N .. (k+1)*N - 1`` (a batch may
    straddle two passes), so the order is still a function of ``(seed, epoch)``.
    """

    def __init__(self, images: np.ndarray | tuple[np.ndarray, ...], targets: np.ndarray,
                 batch_size: int = 32, shuffle: bool = False, balanced: bool = False, seed: int = 0,
                 sample_weight: np.ndarray | None = None, steps_per_epoch: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        for part in images if isinstance(images, tuple) else (images,):
            if len(part) != len(targets):
                raise ValueError(f"inputs ({len(part)} rows) and targets ({len(targets)}) differ in length")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.float32)
        self.rows = usable_rows(self.targets)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle or balanced
        self.seed = int(seed)
        self.epoch = 0
        self._probabilities = balanced_weights(self.targets[self.rows]) if balanced else None
        self._orders: dict[int, np.ndarray] = {}  # the last two passes (a batch may span both)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, np.float32)
        if steps_per_epoch is not None and (int(steps_per_epoch) < 1 or not self.shuffle):
            raise ValueError("steps_per_epoch needs shuffled batches and must be >= 1, got "
                             f"{steps_per_epoch}")
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)

    def __len__(self) -> int:
        if self.steps_per_epoch is not None and len(self.rows):
            return self.steps_per_epoch
        return int(np.ceil(len(self.rows) / self.batch_size))

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Row indices (into ``images``) of one pass over the data, in batch order."""
        epoch = self.epoch if epoch is None else int(epoch)
        if not self.shuffle:
            return self.rows
        if epoch not in self._orders:
            perm = epoch_order(len(self.rows), self.seed, epoch, self._probabilities)
            self._orders = {k: v for k, v in self._orders.items() if k == epoch - 1}
            self._orders[epoch] = self.rows[perm]
        return self._orders[epoch]

    def batch_rows(self, index: int) -> np.ndarray:
        """Row indices of batch ``index`` of the current epoch."""
        if self.steps_per_epoch is None:
            return self.order()[index * self.batch_size:(index + 1) * self.batch_size]
        n, start = len(self.rows), (self.epoch * self.steps_per_epoch + index) * self.batch_size
        parts, pos = [], start
        while pos < start + self.batch_size:
            p, offset = divmod(pos, n)
            take = min(start + self.batch_size - pos, n - offset)
            parts.append(self.order(p)[offset:offset + take])
            pos += take
        return np.concatenate(parts)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range (0..{len(self) - 1})")
        return self.take(self.batch_rows(index))

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(x, targets[, sample_weight])`` of the rows ``idx`` (only those images are read)."""
        if isinstance(self.images, tuple):
            x: np.ndarray | tuple[np.ndarray, ...] = tuple(np.asarray(part[idx]) for part in self.images)
        else:
            x = np.asarray(self.images[idx])
        if self.sample_weight is None:
            return x, self.targets[idx]
        return x, self.targets[idx], self.sample_weight[idx]

    @property
    def images_per_epoch(self) -> int:
        """Rows one epoch reads (the throughput's numerator)."""
        if self.steps_per_epoch is None:
            return len(self.rows)
        return self.steps_per_epoch * self.batch_size

    @property
    def n_rows(self) -> int:
        """Rows used (all-NaN rows excluded)."""
        return len(self.rows)


#: cap on a class weight: ieee8023 + Kermany have 12 fungal, 16 SARS and 16 ARDS images among
#: ~5,000, whose "balanced" weights (72-96) made single batches dominate the loss (spikes).
MAX_CLASS_WEIGHT = 10.0


def class_balance_weights(targets: np.ndarray, max_weight: float = MAX_CLASS_WEIGHT
                          ) -> tuple[np.ndarray, dict[int, float]]:
    """Per-row loss weights and per-class weights, "balanced" as in scikit-learn, capped.

    Class weight = n / (C * count) (:func:`sklearn.utils.class_weight.compute_class_weight`),
    at most ``max_weight``; a row gets the mean weight of its positive classes (multilabel
    rows with no positive get weight 1). All-NaN rows get 0 (they are excluded from batches
    anyway).
    """
    from sklearn.utils.class_weight import compute_class_weight  # scikit-learn: only this step needs it

    targets = np.asarray(targets, dtype=np.float32)
    known = ~np.isnan(targets).all(axis=1)
    pos = np.nan_to_num(targets[known], nan=0.0) == 1
    labels = np.flatnonzero(pos.any(axis=0))
    per_class = np.ones(targets.shape[1], dtype=np.float32)
    if len(labels) > 0:
        rows, cols = np.nonzero(pos)
        per_class[labels] = np.minimum(compute_class_weight("balanced", classes=labels, y=cols), max_weight)
    weights = np.zeros(len(targets), dtype=np.float32)
    n_pos = pos.sum(axis=1)
    weights[known] = np.where(n_pos > 0, (pos * per_class).sum(axis=1) / np.maximum(n_pos, 1), 1.0)
    return weights, {int(c): float(per_class[c]) for c in labels}


def worker_parts(batches: ArrayBatches, worker: int, workers: int, replicas: int
                 ) -> Iterator[tuple[np.ndarray, ...]]:
    """Worker ``worker``'s share of every global batch, one element per local replica.

    Global batch ``g`` (:meth:`ArrayBatches.batch_rows`) is cut into ``replicas`` contiguous
    parts (``np.array_split``: the split ``tf.distribute`` makes of a global batch); worker
    ``w`` owns parts ``w*k .. (w+1)*k - 1`` (``k = replicas / workers``) and reads only their
    images, so the union over workers is exactly the single-process batch.
    """
    local = replicas // workers
    for g in range(len(batches)):
        parts = np.array_split(batches.batch_rows(g), replicas)
        for r in range(worker * local, (worker + 1) * local):
            yield batches.take(parts[r])


def keras_input(batches: ArrayBatches):
    """What ``fit``/``predict`` are given: ``batches`` itself, or on TensorFlow a ``tf.data``
    pipeline over it with autotuning off.

    Why (measured, BENCHMARKS.md "Training throughput on CPU"): Keras wraps a PyDataset (and NumPy arrays) in
    ``tf.data`` with ``prefetch(AUTOTUNE)``, whose autotuning thread sleeps on a timer; the
    destruction of each epoch's iterator waits for it to wake, so the process sat idle for
    seconds at every epoch and validation start. The batches, their order (a function of
    ``(seed, epoch)``: each epoch's iterator is made after ``EpochSync`` set the epoch) and
    the prefetching of two batches are unchanged.

    Training batches under ``MultiWorkerMirroredStrategy`` (the current strategy scope) go
    through ``distribute_datasets_from_function``: each worker reads only its part of every
    global batch (:func:`worker_parts`), instead of reading the whole batch and dropping the
    rest (``tf.distribute``'s data auto-sharding). Validation and prediction keep that path:
    their outputs must come back whole and in order.
    """
    if keras.backend.backend() != "tensorflow":
        return batches
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    if batches.shuffle and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        replicas = strategy.num_replicas_in_sync

        def per_worker(ctx: tf.distribute.InputContext):
            return _dataset(batches, lambda: worker_parts(
                batches, ctx.input_pipeline_id, ctx.num_input_pipelines, replicas),
                len(batches) * replicas // ctx.num_input_pipelines)

        return strategy.distribute_datasets_from_function(per_worker)
    return _dataset(batches, lambda: (batches[i] for i in range(len(batches))), len(batches))


def _dataset(batches: ArrayBatches, generate: Callable[[], Iterator], n: int):
    """A ``tf.data`` pipeline of ``n`` elements from ``generate()``, autotuning off."""
    import tensorflow as tf  # TensorFlow backend only (a JAX run has no TensorFlow)

    def spec(a):  # a tuple of inputs gets a tuple of specs
        if isinstance(a, tuple):
            return tuple(spec(part) for part in a)
        return tf.TensorSpec((None, *np.shape(a)[1:]), tf.as_dtype(np.asarray(a).dtype))

    signature = tuple(spec(a) for a in batches.take(batches.batch_rows(0)[:1]))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n)).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)

"""ArrayBatches: NaN rows out, order a function of (seed, epoch), balanced sampler, weights."""
import numpy as np
import pytest

from training.engine.data import ArrayBatches, balanced_weights, class_balance_weights, usable_rows


def _arrays(n=20, c=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    y = np.eye(c, dtype=np.float32)[rng.integers(0, c, n)]
    return images, y


def _epoch(ds):
    return np.concatenate([ds[i][1] for i in range(len(ds))]), [ds[i][0] for i in range(len(ds))]


def test_all_nan_rows_are_excluded():
    images, y = _arrays(10)
    y[[1, 4]] = np.nan
    y[7, 0] = np.nan  # multilabel: one known label is enough
    assert list(usable_rows(y)) == [0, 2, 3, 5, 6, 7, 8, 9]
    ds = ArrayBatches(images, y, batch_size=3)
    assert ds.n_rows == 8 and len(ds) == 3
    assert not np.isnan(np.concatenate([ds[i][1] for i in range(3)])).all(axis=1).any()


def test_batches_are_uint8_and_aligned():
    images, y = _arrays(7)
    x, t = ArrayBatches(images, y, batch_size=4, shuffle=True, seed=3)[1]
    assert x.dtype == np.uint8 and x.shape == (3, 4, 4, 3) and t.dtype == np.float32
    idx = [int(np.flatnonzero((images == row).all(axis=(1, 2, 3)))[0]) for row in x]
    np.testing.assert_array_equal(y[idx], t)


def test_order_depends_only_on_seed_and_epoch():
    images, y = _arrays(30)
    a, b = ArrayBatches(images, y, 8, shuffle=True, seed=1), ArrayBatches(images, y, 8, shuffle=True, seed=1)
    b.epoch = 2
    b.order()
    b.epoch = 0  # a fresh object and one that saw another epoch agree
    np.testing.assert_array_equal(a.order(), b.order())
    assert sorted(a.order()) == list(range(30))
    assert not np.array_equal(a.order(0), a.order(1))
    assert not np.array_equal(a.order(0), ArrayBatches(images, y, 8, shuffle=True, seed=2).order(0))


def test_evaluation_values_do_not_depend_on_batch_size():
    images, y = _arrays(13)
    t1, x1 = _epoch(ArrayBatches(images, y, 4))
    t2, x2 = _epoch(ArrayBatches(images, y, 5))
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(np.concatenate(x1), np.concatenate(x2))
    np.testing.assert_array_equal(np.concatenate(x1), images)


def test_balanced_sampler_is_balanced_and_deterministic():
    images = np.zeros((100, 2, 2, 3), np.uint8)
    y = np.zeros((100, 2), np.float32)
    y[:90, 0], y[90:, 1] = 1, 1  # 9:1 imbalance
    ds = ArrayBatches(images, y, 100, balanced=True, seed=0)
    minority = np.mean([y[ds.order(e), 1].mean() for e in range(20)])
    assert 0.4 < minority < 0.6
    np.testing.assert_array_equal(ds.order(5), ArrayBatches(images, y, 100, balanced=True, seed=0).order(5))
    np.testing.assert_allclose(balanced_weights(y)[[0, 95]], [1 / 180, 1 / 20])


def test_class_balance_weights_single_and_multilabel():
    y = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [np.nan, np.nan]], np.float32)
    w, per_class = class_balance_weights(y)
    np.testing.assert_allclose(w, [4 / 6, 4 / 6, 4 / 6, 2.0, 0.0], rtol=1e-6)
    assert per_class == pytest.approx({0: 4 / 6, 1: 2.0})
    ml = np.array([[1, np.nan], [0, 0], [1, 1]], np.float32)
    w, _ = class_balance_weights(ml)
    assert w[1] == 1.0 and w[0] > 0 and w[2] > 0


def test_class_weights_are_capped():
    """A label with 1 positive in 200 rows would get weight 100: capped, so a batch holding
    that one row does not dominate the loss."""
    y = np.zeros((200, 2), np.float32)
    y[:, 0], y[0] = 1, [0, 1]
    w, per_class = class_balance_weights(y)
    assert per_class[1] == 10.0 and w[0] == 10.0
    _, uncapped = class_balance_weights(y, max_weight=np.inf)
    assert uncapped[1] == pytest.approx(100.0)


def test_sample_weight_is_yielded():
    images, y = _arrays(6)
    batch = ArrayBatches(images, y, 4, sample_weight=np.arange(6, dtype=np.float32))[0]
    assert len(batch) == 3
    np.testing.assert_array_equal(batch[2], [0, 1, 2, 3])


def test_several_inputs_are_batched_as_a_tuple_with_aligned_rows():
    images, y = _arrays(9)
    meta = np.arange(9, dtype=np.float32)[:, None]
    ds = ArrayBatches((images, meta), y, batch_size=4, shuffle=True, seed=3)
    (x_img, x_meta), targets = ds[0]
    order = ds.order()[:4]
    assert np.array_equal(x_img, images[order]) and np.array_equal(x_meta[:, 0], order)
    assert np.array_equal(targets, y[order])


def test_inputs_of_other_lengths_are_refused():
    images, y = _arrays(9)
    with pytest.raises(ValueError, match="differ in length"):
        ArrayBatches((images, np.zeros((8, 1), np.float32)), y)


def test_steps_per_epoch_reads_an_endless_stream_of_passes():
    images, y = _arrays(10)
    ds = ArrayBatches(images, y, 4, shuffle=True, seed=5, steps_per_epoch=3)
    assert len(ds) == 3 and ds.images_per_epoch == 12
    read = []
    for epoch in range(4):  # 48 rows: passes 0..4 laid end to end, batches straddle passes
        ds.epoch = epoch
        read += [ds.batch_rows(i) for i in range(len(ds))]
    stream = np.concatenate([ds.order(p) for p in range(5)])
    np.testing.assert_array_equal(np.concatenate(read), stream[:48])
    resumed = ArrayBatches(images, y, 4, shuffle=True, seed=5, steps_per_epoch=3)
    resumed.epoch = 2  # a resumed run starting at epoch 2 reads the same batches
    for i in range(3):
        np.testing.assert_array_equal(resumed[i][0], images[read[6 + i]])


@pytest.mark.parametrize("kw", [{"steps_per_epoch": 0, "shuffle": True}, {"steps_per_epoch": 2}])
def test_steps_per_epoch_is_checked(kw):
    images, y = _arrays(10)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        ArrayBatches(images, y, 4, **kw)


def test_batches_over_the_lazy_cache_view_equal_the_array(tmp_path):
    from training.data.cached_images import CachedImages

    images, y = _arrays(20)
    np.save(tmp_path / "s.npy", images[..., 0])
    view = CachedImages([tmp_path / "s.npy"], np.zeros(20), np.arange(20), 4, 3)
    eager = np.repeat(images[..., :1], 3, axis=-1)
    a = ArrayBatches(view, y, 6, shuffle=True, seed=2)
    b = ArrayBatches(eager, y, 6, shuffle=True, seed=2)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][0], b[i][0])


@pytest.mark.parametrize("workers, replicas", [(2, 2), (2, 4), (3, 3)])
def test_each_worker_reads_only_its_part_of_every_global_batch(workers, replicas):
    from training.engine.data import worker_parts

    read: list[int] = []

    class Counting(np.ndarray):  # records the image rows read
        def __getitem__(self, key):
            if isinstance(key, np.ndarray):
                read.extend(key.tolist())
            return np.asarray(self)[key]

    images, y = _arrays(23)
    ds = ArrayBatches(images.view(Counting), y, 8, shuffle=True, seed=4)
    ds.epoch = 1
    per, union = replicas // workers, []
    for w in range(workers):
        read.clear()
        parts = list(worker_parts(ds, w, workers, replicas))
        assert len(parts) == len(ds) * per
        mine = np.concatenate([p for g in range(len(ds))
                               for p in np.array_split(ds.batch_rows(g), replicas)[w * per:(w + 1) * per]])
        assert read == mine.tolist()  # this worker's rows and nothing else
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), images[mine])
        union.append(mine)
    everything = np.concatenate([ds.batch_rows(g) for g in range(len(ds))])
    assert sorted(np.concatenate(union).tolist()) == sorted(everything.tolist())

"""Callbacks: best-on-validation, epoch seeding, kill-safe order, backups at their interval."""
import json

import numpy as np
import pytest
import keras

from training.engine.callbacks import Backup, BestOnValidation, EpochSync, build_callbacks, seed_generators


def _tiny():
    inp = keras.Input((3,))
    x = keras.layers.Dropout(0.5, seed=1)(inp)
    return keras.Model(inp, keras.layers.Dense(1)(x))


def test_best_on_validation_refuses_other_metrics(tmp_path):
    with pytest.raises(ValueError, match="validation"):
        BestOnValidation(tmp_path / "s.json", tmp_path / "b.weights.h5", monitor="loss")


def test_best_weights_patience_and_resume(tmp_path):
    model = _tiny()
    best = BestOnValidation(tmp_path / "s.json", tmp_path / "b.weights.h5", patience=2, target=model)
    best.set_model(model)
    model.stop_training = False  # set by fit() normally
    kept = None
    for epoch, val in enumerate([0.9, 0.5, 0.7]):
        model.layers[-1].kernel.assign(np.full((3, 1), float(epoch), "float32"))
        if epoch == 1:
            kept = model.get_weights()
        best.on_epoch_end(epoch, {"val_loss": val, "loss": 0.1})
    assert best.best_epoch == 1 and not model.stop_training
    # A new object (resumed run) reads the state back; epoch 3 exhausts the patience.
    again = BestOnValidation(tmp_path / "s.json", tmp_path / "b.weights.h5", patience=2, target=model)
    again.set_model(model)
    again.on_epoch_end(3, {"val_loss": 0.6})
    assert model.stop_training and again.best_epoch == 1
    again.start_epoch = 4  # a new stage gets its own patience
    assert not again.should_stop(4)
    assert again.restore(model)
    for a, b in zip(model.get_weights(), kept):
        np.testing.assert_array_equal(a, b)


def test_epoch_sync_sets_epoch_and_resets_seeds():
    model = _tiny()

    class Holder:
        epoch = -1

    holder = Holder()
    sync = EpochSync([holder], [model])
    x = np.ones((4, 3), "float32")
    sync.on_epoch_begin(2)
    a = keras.ops.convert_to_numpy(model(x, training=True))
    sync.on_epoch_begin(3)
    b = keras.ops.convert_to_numpy(model(x, training=True))
    sync.on_epoch_begin(2)
    c = keras.ops.convert_to_numpy(model(x, training=True))
    assert holder.epoch == 2 and len(seed_generators(model)) == 1
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_callback_order_backup_last(tmp_path):
    cbs = build_callbacks(tmp_path, tmp_path / "backup", [], [], 10, 3, None)
    assert isinstance(cbs[-1], keras.callbacks.BackupAndRestore) and isinstance(cbs[-1], Backup)
    assert isinstance(cbs[0], EpochSync)


def test_trainer_callbacks_allow_async_batch_dispatch(tmp_path):
    """Keras dispatches per-batch callbacks asynchronously only if none has a synchronous batch
    hook (keras CallbackList._configure_async_dispatch); one would make JAX wait every step."""
    from keras.src.utils import is_default

    best = BestOnValidation(tmp_path / "s.json", tmp_path / "b.weights.h5")
    for cb in build_callbacks(tmp_path, tmp_path / "backup", [], [], 10, 3, best):
        if isinstance(cb, keras.callbacks.TensorBoard):
            continue  # TensorFlow backend only, where Keras never dispatches asynchronously
        hooks = (cb.on_batch_end, cb.on_train_batch_end, cb.on_test_batch_end)
        assert getattr(cb, "async_safe", False) or all(is_default(h) for h in hooks), type(cb).__name__


def _fitted(tmp_path, interval, best=None, epochs=3):
    model = _tiny()
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    backup = Backup(tmp_path / "backup", interval, [best.persist] if best else [])
    backup.delete_checkpoint = False  # keep it to look at

    class Seen(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.saved = []

        def on_epoch_end(self, epoch, logs=None):
            path = tmp_path / "backup" / "training_metadata.json"
            self.saved.append(json.loads(path.read_text())["epoch"] if path.is_file() else None)

    seen = Seen()
    model.fit(x, y, epochs=epochs, verbose=0, callbacks=[seen, backup])
    return seen.saved, backup


def test_backup_every_epoch_with_zero_interval(tmp_path):
    saved, backup = _fitted(tmp_path, 0.0)
    # ``Seen`` runs before the backup of the same epoch: it sees the previous epoch's backup.
    assert saved == [None, 1, 2]
    meta = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert meta == {"epoch": 3, "batch": 0}
    assert not list((tmp_path / "backup").glob("tmp_*")), "temporary files left behind"


def test_backup_waits_for_its_interval(tmp_path):
    saved, _ = _fitted(tmp_path, 3600.0)
    assert saved == [None, None, None] and not (tmp_path / "backup").exists()


def test_backup_writes_best_state_with_it(tmp_path):
    best = BestOnValidation(tmp_path / "s.json", tmp_path / "b.weights.h5", autosave=False)
    model = _tiny()
    best.set_model(model)
    best.on_epoch_end(0, {"val_loss": 0.5})
    assert not best.state_path.exists() and not best.weights_path.exists()  # held in memory
    kept = model.get_weights()
    model.layers[-1].kernel.assign(np.full((3, 1), 7.0, "float32"))
    best.persist()  # what Backup calls before writing its own files
    assert json.loads(best.state_path.read_text()) == {"0": 0.5}
    # persist() writes the best weights, not the current ones, and leaves the model as it was
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[-1].kernel), np.full((3, 1), 7.0))
    other = _tiny()
    other.load_weights(best.weights_path)
    for a, b in zip(other.get_weights(), kept):
        np.testing.assert_array_equal(a, b)

"""Gradient accumulation: k small batches give the update of one k-times-bigger batch."""
import keras
import numpy as np
import pytest

from training.config import TrainConfig
from training.engine.distribute import Distribution
from training.engine.fit import make_optimizer, run_facts
from training.models.losses import masked_categorical_crossentropy


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    x = keras.layers.Dense(5, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(1))(inp)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax",
                                               kernel_initializer=keras.initializers.GlorotUniform(2))(x))


def _train(batch: int, accumulate: int, optimizer: str, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    cfg = TrainConfig(optimizer=optimizer, accumulate=accumulate, warmup_epochs=1, lr=0.05)
    model = _model()
    steps = int(np.ceil(len(x) / batch))
    model.compile(optimizer=make_optimizer(cfg, cfg.lr, steps, epochs=2), loss=masked_categorical_crossentropy)
    model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_accumulated_small_batches_match_one_big_batch(optimizer):
    """Batch 8 (2 updates/epoch) vs batch 2 × accumulate 4 (8 batches → 2 updates/epoch).

    Same data order, same warm-up + cosine schedule (it counts updates, not batches), so
    the weights agree to float32 rounding: rtol 1e-4 / atol 1e-6 (observed ~1e-7).
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 16)]
    big = _train(8, 1, optimizer, x, y)
    acc = _train(2, 4, optimizer, x, y)
    plain_small = _train(2, 1, optimizer, x, y)
    for a, b in zip(big, acc):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the comparison has teeth: without accumulation batch 2 ends somewhere else
    assert max(np.abs(a - b).max() for a, b in zip(big, plain_small)) > 1e-3


def test_accumulation_is_off_by_default_and_recorded():
    cfg = TrainConfig()
    assert make_optimizer(cfg, 1e-3, 10, 1).gradient_accumulation_steps is None
    cfg = TrainConfig(accumulate=4, batch_size=2)
    assert make_optimizer(cfg, 1e-3, 10, 1).gradient_accumulation_steps == 4
    facts = run_facts(cfg, Distribution("none"))
    assert (facts["global_batch"], facts["effective_batch"], facts["lr_used"]) == (2, 8, 1e-3)


def test_per_update_schedule_round_trips_and_counts_updates():
    from training.engine.schedule import PerUpdate, warmup_cosine

    cfg = TrainConfig(accumulate=3)
    opt = make_optimizer(cfg, 0.1, steps=9, epochs=2)
    assert isinstance(opt._learning_rate, PerUpdate)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    inner = warmup_cosine(0.1, 3, 2, cfg.warmup_epochs)
    for step in (0, 2, 3, 8, 17):
        expected = float(inner(step // 3))
        assert float(again._learning_rate(step)) == pytest.approx(expected)
        assert float(opt._learning_rate(step)) == pytest.approx(expected)

"""The one training loop: every Keras compile/fit goes through engine.loop.fit_batches."""
import ast
from pathlib import Path

import keras
import numpy as np
import pytest

from training.engine.callbacks import EpochSync
from training.engine.data import ArrayBatches
from training.engine.loop import fit_batches, loss_for, use_jit

ROOT = Path(__file__).resolve().parents[3]


def _compile_calls(path: Path) -> list[int]:
    """Lines of ``<x>.compile(...)`` calls other than ``re.compile``."""
    tree = ast.parse(path.read_text(), str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "compile"
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "re")]


def test_only_the_loop_compiles_models():
    found = {str(p.relative_to(ROOT)): lines for pkg in ("training", "app")
             for p in sorted((ROOT / pkg).rglob("*.py")) if (lines := _compile_calls(p))}
    # The one exception: the lung-region experiment's segmentation U-Net (a pixel-wise Dice +
    # BCE loss the classifier loop has no kind for); folding it in needs a "segmentation" kind.
    found.pop("training/lungs/segment.py", None)
    assert found == {"training/engine/loop.py": found.get("training/engine/loop.py", [])}
    assert found["training/engine/loop.py"], "the loop itself must compile"


def _two_input_model():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], out)


def test_fit_batches_trains_a_two_input_model_with_validation():
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(64, 2)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(xa[:, 0] + xb[:, 1] > 0).astype(int)]
    train = ArrayBatches((xa[:48], xb[:48]), y[:48], 16, shuffle=True, seed=1)
    val = ArrayBatches((xa[48:], xb[48:]), y[48:], 16)
    model = _two_input_model()
    hist = fit_batches(model, train, kind="single", optimizer=keras.optimizers.Adam(0.05), epochs=8,
                       val=val, metrics=True)
    assert set(hist) >= {"loss", "accuracy", "val_loss", "val_accuracy"} and len(hist["loss"]) == 8
    assert hist["loss"][-1] < hist["loss"][0]
    assert train.epoch == 7  # the added EpochSync told the batches each epoch


def test_fit_batches_keeps_a_given_epoch_sync_and_skips_empty_validation():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 2)).astype(np.float32))
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    train = ArrayBatches(x, y, 8, shuffle=True)
    empty = ArrayBatches((x[0][:2], x[1][:2]), np.full((2, 2), np.nan, np.float32), 8)
    model = _two_input_model()
    sync = EpochSync([train], [model])
    hist = fit_batches(model, train, kind="single", optimizer=keras.optimizers.SGD(0.01), epochs=3,
                       initial_epoch=1, val=empty, callbacks=[sync])
    assert list(hist) == ["loss"] and len(hist["loss"]) == 2 and train.epoch == 2


def test_settings_are_checked():
    assert use_jit("on") and not use_jit("off")
    with pytest.raises(ValueError, match="jit_compile"):
        use_jit("yes")
    with pytest.raises(ValueError, match="kind"):
        loss_for("regression")

"""End to end: the model the trainer saves is the best-validation epoch's, not the last one's.

A learning rate too high for the tiny head (0.1, no warm-up) makes the validation loss jump
around; the history must then have its minimum before the last epoch (checked: otherwise
the test proves nothing), and the saved model's validation loss, recomputed here from its
own predictions on the validation images, must be that minimum.
"""
import numpy as np
import pandas as pd
import pytest

from tests.helpers.images import stripes_folder
from training.config import TrainConfig
from training.data.cache import ImageCache
from training.engine.fit import train
from training.models.card import load_model

EPOCHS = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("best")
    folder = stripes_folder(root / "data", 12)
    cfg = TrainConfig(data=[str(folder)], task="pneumonia", arch="vgg16", weights=None, img_size=32,
                      parts=(0.5, 0.25, 0.25), mode="frozen", augment=False, epochs=EPOCHS,
                      batch_size=4, lr=0.1, warmup_epochs=0, patience=0,  # patience 0: every epoch runs
                      cache_dir=str(root / "cache"), out=str(root / "run"), seed=0)
    return cfg, train(cfg, verbose=0)


def _cross_entropy(truth: np.ndarray, probs: np.ndarray) -> float:
    """Mean categorical cross-entropy, written out (Keras clips probabilities at 1e-7)."""
    p = np.clip(probs / probs.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.log(p[np.arange(len(truth)), truth])))


def test_saved_model_is_the_best_validation_epoch(run):
    cfg, out = run
    val_loss = pd.read_csv(out / "history.csv")["val_loss"].to_numpy()
    assert len(val_loss) == EPOCHS
    best = int(np.argmin(val_loss))
    assert best < EPOCHS - 1 and val_loss[-1] - val_loss[best] > 1e-3, \
        f"the validation loss must rise after its minimum for this test to mean anything: {val_loss}"

    split = pd.read_csv(out / "split.csv")
    paths = split.loc[split["part"] == "val", "path"].tolist()
    images, _ = ImageCache(cfg.cache_dir).load(paths, cfg.preprocess_config(32))
    truth = np.array(["PNEUMONIA" in p for p in paths], dtype=np.int64)  # outputs: Normal, Pneumonia
    model, _ = load_model(out)
    saved = _cross_entropy(truth, np.asarray(model.predict(images, verbose=0), dtype=np.float64))
    assert saved == pytest.approx(val_loss[best], abs=1e-5)
    assert abs(saved - val_loss[-1]) > 1e-3  # not the last epoch's weights

"""End to end on a tiny separable folder dataset: learning, feature cache, card, resume."""
import json
import logging

import numpy as np
import pandas as pd
import pytest

from tests.helpers.images import stripes_folder
from training.config import TrainConfig
from training.engine import feature_cache as feats
from training.engine.fit import train, train_all
from training.models.build import split_feature_head
from training.models.card import load_model

N_PER_CLASS = 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """NORMAL = horizontal stripes, PNEUMONIA = vertical stripes (one patient per file)."""
    return stripes_folder(tmp_path_factory.mktemp("stripes"), N_PER_CLASS)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _cfg(folder, cache, out, **kw):
    base = dict(data=[str(folder)], task="pneumonia", arch="vgg16", weights=None, img_size=32,
                parts=(0.6, 0.2, 0.2), mode="frozen", augment=False, epochs=3, batch_size=8,
                lr=1e-2, warmup_epochs=0, patience=0, cache_dir=str(cache), out=str(out), seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_frozen_feature_cache_learns_and_saves(folder, cache, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cfg = _cfg(folder, cache, tmp_path / "run", epochs=25, lr=3e-2, batch_size=16)
    out = train(cfg, verbose=0)
    assert "head trained on cached features" in caplog.text
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == 25 and hist["loss"].iloc[-5:].mean() < hist["loss"].iloc[:3].mean()
    assert {"val_loss", "val_accuracy", "images_per_s", "epoch_seconds"} <= set(hist.columns)
    # TensorBoard event files (tensorboard is a pinned requirement, so this is not optional)
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard logs written"
    model, card = load_model(out)
    assert card["outputs"] == ["Normal", "Pneumonia"] and card["kind"] == "single"
    assert card["training"]["feature_cache"] is True and card["training"]["arch"] == "vgg16"
    assert card["split"]["file"].endswith("split.csv") and len(card["split"]["sha256"]) == 64
    assert sum(card["split"]["counts"].values()) == 2 * N_PER_CLASS
    # ~5 validation patients a class: below the default 10, the threshold is not estimable
    thresholds = card["thresholds"]
    assert thresholds["method"] == "youden" and set(thresholds["entries"]) == {"Pneumonia"}
    entry = thresholds["entries"]["Pneumonia"]
    assert entry["status"] == "not_estimable" and entry["value"] is None and card.threshold("Pneumonia") is None
    assert entry["positive_images"] + entry["negative_images"] == card["metrics"]["validation"]["n_images"]
    assert card["metrics"]["validation"]["n_images"] > 0
    assert (out / "config.yaml").is_file() and not (out / "backup").exists()
    # The point-of-use parts: a calibration and an OOD gate fitted on this run's own split.
    assert card.calibration.kind == "single" and card.calibration.method == "temperature"
    from training.gate.ood import load_gate

    gate = load_gate(out, card.gate)
    assert card.gate.fitted_on["validation_images"] == card["metrics"]["validation"]["n_images"]
    assert card.gate.feature_layers[0] == "features" and len(card.gate.feature_layers) == 3
    assert gate.warn_threshold <= gate.threshold
    # `fit-gate` refits it for a saved model from the run's config: the same statistics.
    from training.cli import main

    assert main(["fit-gate", "--model", str(out)]) == 0
    refit = load_model(out)[1].gate
    assert refit.threshold == pytest.approx(card.gate.threshold, rel=1e-4)
    assert (out / "fit-gate.config.yaml").is_file()

    split = pd.read_csv(out / "split.csv")
    from training.data.cache import ImageCache

    paths = split["path"].tolist()
    images, _ = ImageCache(cache).load(paths, cfg.preprocess_config(32))
    probs = model.predict(images, verbose=0)
    truth = np.array(["PNEUMONIA" in p for p in paths])
    for part in ("train", "test"):
        m = (split["part"] == part).to_numpy()
        acc = np.mean((probs[m, 1] > 0.5) == truth[m])
        assert acc >= 0.8, f"{part} accuracy {acc:.2f}: the model did not learn a separable set"

    # The saved full model equals the head on the cached features.
    feature_model, head = split_feature_head(model)
    cached = feats.compute_features(feature_model, images)
    np.testing.assert_allclose(head.predict(cached, verbose=0), probs, atol=1e-5)


class Interrupt(Exception):
    pass


class KillAt:
    """Raises in on_epoch_end of one epoch: before the backup marks that epoch done."""

    def __init__(self, epoch):
        import keras

        class _Cb(keras.callbacks.Callback):
            def on_epoch_end(cb, epoch_, logs=None):
                if epoch_ == epoch:
                    raise Interrupt(epoch_)

        self.callback = _Cb()


@pytest.mark.slow
@pytest.mark.parametrize("interval", [0.0, 1e9])  # a backup after every epoch / none yet in stage 2
def test_resume_matches_uninterrupted(folder, cache, tmp_path, interval):
    """finetune with augmentation: stage 1 (1 epoch) + stage 2 (2 epochs), killed in the last
    epoch, then resumed from the stage-2 backup (interval 0) or from the end of stage 1."""
    kw = dict(mode="finetune", augment=True, head_epochs=1, epochs=2, max_images=16, lr=1e-3,
              finetune_lr=1e-4, warmup_epochs=1, backup_interval=interval)
    ref = train(_cfg(folder, cache, tmp_path / "ref", **kw), verbose=0)
    cfg = _cfg(folder, cache, tmp_path / "resumed", **kw)
    with pytest.raises(Interrupt):
        train(cfg, callbacks=[KillAt(2).callback], verbose=0)
    backup = tmp_path / "resumed" / "backup"
    assert (backup / "stage1.done").is_file()
    assert (backup / "stage2" / "latest.weights.h5").is_file() == (interval == 0)
    out = train(cfg, verbose=0)
    a, _ = load_model(ref)
    b, card = load_model(out)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [0, 1, 2]
    assert card["training"]["feature_cache"] is False  # augmentation → full passes


def test_train_all_shares_one_split(folder, cache, tmp_path):
    cfg = _cfg(folder, cache, tmp_path / "all", epochs=1, name="cmp")
    dirs = train_all(cfg, archs=("vgg16", "resnet50"), verbose=0)
    cards = [json.loads((d / "card.json").read_text()) for d in dirs]
    assert [c["name"] for c in cards] == ["cmp-vgg16", "cmp-resnet50"]
    assert cards[0]["split"]["sha256"] == cards[1]["split"]["sha256"]
    assert (tmp_path / "all" / "split.csv").is_file()

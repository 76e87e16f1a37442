"""The frozen-backbone feature cache: when it is used, its key, and a hit."""

import numpy as np
import pytest
import keras

from training.engine import feature_cache as feats


@pytest.mark.parametrize("mode,augment,setting,expected", [
    ("frozen", False, "auto", True), ("frozen", True, "auto", False), ("frozen", True, "on", True),
    ("scratch", False, "auto", False), ("frozen", False, "off", False), ("finetune", False, "auto", True)])
def test_decide(mode, augment, setting, expected):
    use, why = feats.decide(mode, augment, setting)
    assert use is expected and why


def test_feature_cache_key_and_hit(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    inp = keras.Input((8, 8, 3))
    fm = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(keras.ops.cast(inp, "float32")))
    key = feats.feature_key("vgg16", None, 8, "k1", images)
    assert key != feats.feature_key("vgg16", None, 8, "k2", images)
    assert key != feats.feature_key("vgg16", "imagenet", 8, "k1", images)
    other = images.copy()
    other[0, 0, 0, 0] ^= 1
    assert key != feats.feature_key("vgg16", None, 8, "k1", other)
    first = feats.cached_features(fm, images, key, tmp_path, batch_size=2)
    np.testing.assert_allclose(first, images.reshape(5, -1, 3).mean(axis=1), rtol=1e-5)
    assert isinstance(first, np.memmap)  # read per batch, never held whole
    np.testing.assert_array_equal(first, feats.compute_features(fm, images, batch_size=3))
    monkeypatch.setattr(feats, "feature_batches", lambda *a, **k: pytest.fail("recomputed"))
    np.testing.assert_array_equal(feats.cached_features(fm, images, key, tmp_path), first)


def test_lazy_cache_view_has_the_key_of_its_eager_array(tmp_path):
    from training.data.cached_images import CachedImages

    gray = np.random.default_rng(1).integers(0, 256, (300, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "s.npy", gray)
    view = CachedImages([tmp_path / "s.npy"], np.zeros(300), np.arange(300)[::-1], 4, 3)
    eager = np.repeat(gray[::-1, ..., None], 3, axis=-1)
    assert feats.images_digest(view) == feats.images_digest(eager)  # chunked: 256 rows at a time

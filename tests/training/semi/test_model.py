"""The semi-supervised experiments' small CNN can be saved and served (safe-mode load)."""
import keras
import numpy as np

from training.semi.model import small_cnn


def test_small_cnn_loads_in_safe_mode(tmp_path):
    """Regression: a ``Lambda`` layer made the saved model unloadable with ``safe_mode=True``."""
    model = small_cnn(3, "single", size=32, widths=(4, 8))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.get_layer("gray").output.shape[-1] == 1

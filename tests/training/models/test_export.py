"""SavedModel export: the serving signature gives the Keras model's probabilities."""
import numpy as np
import pytest
import tensorflow as tf

from tests.training.models.conftest import images
from tests.training.models.test_card import make_card
from training.errors import CXRError
from training.models.card import save_model
from training.models.export import export_saved_model


def test_export_matches_the_keras_model(tmp_path, frozen_model):
    model = frozen_model("vgg16")
    model_dir = save_model(model, make_card("vgg16"), tmp_path / "m")
    out = export_saved_model(model_dir, tmp_path / "serving" / "1")
    assert (out / "card.json").is_file() and (out / "saved_model.pb").is_file()
    x = images("vgg16", n=3)
    loaded = tf.saved_model.load(str(out))  # keep a reference: its variables live in it
    served = loaded.serve(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(CXRError, match="already exists"):
        export_saved_model(model_dir, out)

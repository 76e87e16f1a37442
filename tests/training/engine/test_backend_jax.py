"""Backend portability: the same trainer trains under JAX with TensorFlow unimportable (the GPU
machine has JAX only), and the saved model loads under TensorFlow (the app's backend) with the
same predictions."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.no_tensorflow import SOURCE as NO_TENSORFLOW

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")

SCRIPT = NO_TENSORFLOW + """
import json
from pathlib import Path
import keras
import numpy as np
from training.config import TrainConfig
from training.engine.fit import train
from training.models.card import load_model
cfg = TrainConfig(data=[sys.argv[1]], task="pneumonia", arch="vgg16", mode="{mode}", weights=None,
                  img_size=32, epochs=2, batch_size=8, augment={augment}, out=sys.argv[2],
                  cache_dir=sys.argv[3], patience=0)
out = train(cfg, verbose=0)
model, card = load_model(out)
x = np.load(sys.argv[4])
np.save(sys.argv[5], np.asarray(model.predict(x, verbose=0)))
# No callback of the trainer forces a wait for every step (Keras then dispatches async).
from training.engine.callbacks import BestOnValidation, build_callbacks
best = BestOnValidation(Path(sys.argv[2]) / "s.json", Path(sys.argv[2]) / "b.weights.h5")
cbs = build_callbacks(Path(sys.argv[2]), Path(sys.argv[2]) / "bk", [], [], 1, 1, best)
print(json.dumps(dict(card["versions"], async_train=keras.callbacks.CallbackList(cbs)._async_train)))
"""


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls, level in (("NORMAL", 60), ("PNEUMONIA", 190)):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            img = np.clip(level + rng.normal(0, 20, (36, 36)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"img{i:03d}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("mode,augment", [("frozen", False), ("scratch", True)])
def test_trains_under_jax_and_loads_under_tensorflow(tmp_path, mode, augment):
    data = _folder(tmp_path / "data")
    x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(mode=mode, augment=augment), str(data), str(tmp_path / "m"),
         str(tmp_path / "cache"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["backend"] == "jax" and info["async_train"] is True

    from training.models.card import load_model  # this process runs TensorFlow

    model, card = load_model(tmp_path / "m")
    assert card["versions"]["backend"] == "jax" and card["transfer"]["mode"] == mode
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), np.load(tmp_path / "p.npy"),
                               rtol=1e-4, atol=1e-5)

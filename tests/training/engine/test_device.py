"""The one GPU query: by backend, and the boolean the trainer uses."""
import keras

from training.engine import device


def test_gpu_count_follows_the_backend(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    assert device.gpu_count() == 0 and device.gpus_visible() is False


def test_gpus_visible_is_gpu_count_above_zero(monkeypatch):
    monkeypatch.setattr(device, "gpu_count", lambda: 2)
    assert device.gpus_visible() is True
    monkeypatch.setattr(device, "gpu_count", lambda: 0)
    assert device.gpus_visible() is False

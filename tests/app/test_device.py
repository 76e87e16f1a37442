"""``CXRLAB_DEVICE``: checked at start-up; gpu without a GPU stops the app with what to do."""
import pytest

import training.engine.device as engine_device
from app.device import configure_device, require_device
from training.errors import CXRError


@pytest.fixture
def gpus(monkeypatch):
    """Set how many GPUs the backend reports."""
    def seen(n):
        monkeypatch.setattr(engine_device, "gpu_count", lambda: n)
    return seen


def test_settings_are_normalised_and_checked(gpus):
    gpus(0)
    assert require_device(" CPU ") == ("cpu", 0)
    assert require_device("") == ("auto", 0)  # unset: auto
    with pytest.raises(CXRError, match="'tpu' is not one of auto, cpu, gpu"):
        require_device("tpu")


def test_gpu_without_a_gpu_is_refused_with_what_to_do(gpus):
    gpus(0)
    with pytest.raises(CXRError, match="sees no GPU. What to do"):
        require_device("gpu")
    gpus(2)
    assert require_device("gpu") == ("gpu", 2)


def test_configure_device_says_which_device_serves(gpus):
    gpus(0)
    assert configure_device("auto") == "CPU" and configure_device("cpu") == "CPU"
    gpus(1)
    assert configure_device("auto") == "GPU" and configure_device("gpu") == "GPU"

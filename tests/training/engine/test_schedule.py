"""The learning-rate schedule: linear warm-up, then cosine to zero."""
import numpy as np

from training.engine.schedule import warmup_cosine


def test_warmup_then_cosine_to_zero():
    s = warmup_cosine(1e-3, steps_per_epoch=10, epochs=5, warmup_epochs=1)
    lr = np.array([float(s(i)) for i in range(0, 51, 5)])
    assert lr[0] < lr[2] and abs(lr[2] - 1e-3) < 1e-9  # step 10 = end of warm-up
    assert np.all(np.diff(lr[2:]) <= 0) and lr[-1] < 1e-6
    no_warm = warmup_cosine(1e-3, 10, 5, warmup_epochs=0)
    assert abs(float(no_warm(0)) - 1e-3) < 1e-9

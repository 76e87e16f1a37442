"""The in-flight bound (503 beyond it, never a queue) and the per-request deadline."""
import pytest
from werkzeug.exceptions import ServiceUnavailable

from app.limiter import Deadline, DeadlineExceeded, InflightLimiter


def test_slots_beyond_the_limit_are_refused_at_once_and_released():
    limiter = InflightLimiter(1)
    with limiter.slot():
        with pytest.raises(ServiceUnavailable, match=r"busy \(1 prediction") as busy:
            with limiter.slot():
                pass
        assert busy.value.retry_after == 5
    with limiter.slot():  # released on exit
        pass


def test_a_failing_prediction_gives_its_slot_back():
    limiter = InflightLimiter(1)
    with pytest.raises(RuntimeError):
        with limiter.slot():
            raise RuntimeError("model failed")
    with limiter.slot():
        pass


def test_zero_refuses_everything_and_negative_is_an_error():
    with pytest.raises(ServiceUnavailable):
        with InflightLimiter(0).slot():
            pass
    with pytest.raises(ValueError, match="CXRLAB_MAX_INFLIGHT"):
        InflightLimiter(-1)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_deadline_checks_between_stages():
    clock = Clock()
    deadline = Deadline(2.0, clock=clock)
    clock.now = 102.0
    deadline.check("the models")  # exactly at the limit: still allowed
    clock.now = 102.5
    with pytest.raises(DeadlineExceeded, match="limit of 2 s .*stopped before the heatmaps") as late:
        deadline.check("the heatmaps")
    assert late.value.code == 503 and late.value.retry_after == 5

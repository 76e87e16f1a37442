"""Limits that hold: a bound on concurrent predictions (beyond it, 503 instead of a queue)
and a per-request time limit (:class:`Deadline`)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from werkzeug.exceptions import ServiceUnavailable


class InflightLimiter:
    """At most ``limit`` predictions at once (0 refuses all); never blocks."""

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"CXRLAB_MAX_INFLIGHT must be >= 0, got {limit}")
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit) if limit else None

    @contextmanager
    def slot(self) -> Iterator[None]:
        # Refuse at once: a queue of X-rays behind a slow model only grows timeouts.
        if self._sem is None or not self._sem.acquire(blocking=False):
            raise ServiceUnavailable(
                f"The server is busy ({self.limit} prediction(s) already running). "
                "Please try again in a few seconds.",
                retry_after=5,
            )
        try:
            yield
        finally:
            self._sem.release()


class DeadlineExceeded(ServiceUnavailable):
    """A request past ``CXRLAB_REQUEST_TIMEOUT``, stopped before its next stage (503)."""


class Deadline:
    """The time limit of one request, checked between its stages.

    Cooperative: a stage that has started runs to its end, so a request can overrun the
    limit by its longest stage (one forward pass, one model's heatmaps); the decode is
    bounded by the pixel budget instead. gunicorn's ``timeout`` cannot do this for a
    gthread worker: it watches the worker's main loop, not the request threads.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def check(self, stage: str) -> None:
        """Raise :class:`DeadlineExceeded` if the limit has passed, before ``stage`` starts."""
        if self._clock() > self._end:
            raise DeadlineExceeded(
                f"The request took longer than the server's limit of {self.seconds:g} s "
                f"(CXRLAB_REQUEST_TIMEOUT) and was stopped before {stage}. "
                "Try again in a moment, or upload a smaller image.",
                retry_after=5,
            )

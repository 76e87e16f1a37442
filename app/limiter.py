"""A bound on concurrent predictions: beyond it, requests get 503 instead of queueing."""
from __future__ import annotations

import threading
from collections.abc import Iterator
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

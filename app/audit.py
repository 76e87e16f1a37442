"""The audit log: one JSON line per prediction or report, and per refused API call.

On the ``cxrlab.audit`` logger (to stderr, beside gunicorn's own log, unless a deployment's
logging config gives that logger handlers). A line says when, who (API token id, the
authenticating proxy's user, or ``anonymous``), from where, which model versions answered,
what the gate said (its reason codes) and how it ended. It holds no file name, no pixel,
no DICOM tag value and no probability: nothing about the patient.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from app.limiter import DeadlineExceeded
from training.errors import ImageDecodeError

LOGGER = logging.getLogger("cxrlab.audit")


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (servers and tests may swap it after start-up)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def init_app(app: Flask) -> None:
    """Audit lines are always written: gunicorn configures no handler for the app's loggers."""
    if not LOGGER.handlers:
        LOGGER.addHandler(_StderrHandler())
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False   # one line, once: not again through a root handler


@dataclass
class Attempt:
    """What one prediction has told the audit so far (filled in as it runs)."""

    event: str
    user: tuple[str, str]
    started: float = field(default_factory=time.perf_counter)
    gate: dict[str, Any] | None = None
    models: list[dict[str, str | None]] = field(default_factory=list)

    def record(self, prediction: Any, bank: Any) -> None:
        """The gate's verdict and reason codes, and the name and hash of each model that answered."""
        self.gate = {"verdict": prediction.gate.verdict,
                     "reasons": [r.code for r in prediction.gate.reasons]}
        self.models = [{"name": r.name, "model_sha256": bank.get(r.name).card.model_sha256}
                       for r in prediction.models]


def outcome(exc: Exception | None, refused: bool) -> tuple[int, str]:
    """``(HTTP status, outcome)`` of an attempt from how it ended."""
    if exc is None:
        return (422, "refused") if refused else (200, "ok")
    if isinstance(exc, DeadlineExceeded):
        return 503, "timeout"
    if isinstance(exc, ImageDecodeError):
        return 422, "undecodable"
    if isinstance(exc, HTTPException):
        return exc.code or 500, "busy" if exc.code == 503 else "rejected"
    return 500, "error"


def entry(event: str, user: tuple[str, str], status: int, result: str,
          **fields: Any) -> dict[str, Any]:
    """One audit record; ``fields`` adds gate, models, report and seconds where known."""
    return {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event, "user": user[0], "auth": user[1], "method": request.method,
            "endpoint": request.path, "remote_addr": request.remote_addr,
            "status": status, "outcome": result, **fields}


def write(record: dict[str, Any]) -> None:
    LOGGER.info(json.dumps(record, sort_keys=False, separators=(",", ":")))


@contextmanager
def attempt(user: tuple[str, str], report: str | None = None) -> Iterator[Attempt]:
    """Audit the prediction (or report) run inside: one line however it ends."""
    current = Attempt("report" if report else "predict", user)
    try:
        yield current
    except Exception as exc:
        _finish(current, report, exc)
        raise
    _finish(current, report, None)


def _finish(current: Attempt, report: str | None, exc: Exception | None) -> None:
    refused = bool(current.gate and current.gate["verdict"] == "refuse")
    status, result = outcome(exc, refused)
    extra = {"report": report} if report else {}
    write(entry(current.event, current.user, status, result, gate=current.gate,
                models=current.models, **extra,
                seconds=round(time.perf_counter() - current.started, 3)))


def denied(status: int, user: tuple[str, str]) -> None:
    """An API call refused before it ran (no or unknown token: 401; cross-site: 403)."""
    write(entry("denied", user, status, "denied"))

"""Tests that need an outside tool (Chromium, dcmtk, a Docker engine, nginx, ...).

Outside CI a missing tool skips the test (with how to install it); under ``CI=true`` it
fails the test instead, so CI cannot go green by skipping what it was meant to check
(`.ci/run` installs every one of these tools).
"""
from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``, as `.ci/run` is started)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the test here; fail it in CI. Never returns."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}: CI must run this test (.ci/run installs the tool)",
                    pytrace=False)
    pytest.skip(reason)


def require_tool(command: str, install: str) -> str:
    """The path of ``command``, or :func:`unavailable` saying how to install it."""
    path = shutil.which(command) or next(
        (p for p in (f"/usr/sbin/{command}", f"/sbin/{command}") if os.access(p, os.X_OK)), None)
    if path is None:
        unavailable(f"{command} is not installed ({install})")
    return path

"""App settings from ``CXRLAB_*`` environment variables, with safe defaults."""
from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

#: Shown on every page, in every API answer and report.
DISCLAIMER_DETAIL = ("The outputs are not validated for clinical use and must not guide "
                     "diagnosis or treatment.")
DISCLAIMER = f"Research tool, not a diagnostic device. {DISCLAIMER_DETAIL}"


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError as exc:
        raise ValueError(f"{key}={raw!r} is not an integer") from exc


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Flask config keys read from the environment (``env`` defaults to ``os.environ``)."""
    env = os.environ if env is None else env
    secret = env.get("CXRLAB_SECRET_KEY")
    if not secret:
        # Fine for one process; sessions/CSRF tokens die with it and differ per worker.
        log.warning("CXRLAB_SECRET_KEY is not set: using a random key for this process. "
                    "Forms break across restarts and between several workers; set it in production.")
        secret = secrets.token_hex(32)
    return {
        "SECRET_KEY": secret,
        "MODELS_DIR": env.get("CXRLAB_MODELS_DIR", "models"),
        "DEVICE": env.get("CXRLAB_DEVICE", "auto"),
        "MAX_CONTENT_LENGTH": _int(env, "CXRLAB_MAX_UPLOAD_MB", 20) * 1024 * 1024,
        "MAX_INFLIGHT": _int(env, "CXRLAB_MAX_INFLIGHT", 2),
        "COMPARE_DIR": env.get("CXRLAB_COMPARE_DIR", os.path.join("out", "compare")),
        "WARMUP": True,
    }

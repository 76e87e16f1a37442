"""App settings from ``CXRLAB_*`` environment variables, with safe defaults.

Every value is checked here, at start-up: a wrong one stops the app with a message that
names the variable (and never echoes a secret or a token).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from training.errors import CXRError
from training.preprocess import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

#: Shown on every page, in every API answer and report.
DISCLAIMER_DETAIL = ("The outputs are not validated for clinical use and must not guide "
                     "diagnosis or treatment.")
DISCLAIMER = f"Research tool, not a diagnostic device. {DISCLAIMER_DETAIL}"

DEVICES = ("auto", "cpu", "gpu")
#: Shorter API tokens are refused: guessable tokens are no access control.
MIN_TOKEN_LENGTH = 16
#: Token ids appear in the audit log: plain names only.
TOKEN_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_NEW_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ConfigError(CXRError, ValueError):
    """A ``CXRLAB_*`` setting with a wrong value (the message names the variable)."""


def _int(env: Mapping[str, str], key: str, default: int, minimum: int = 0) -> int:
    raw = env.get(key, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{key}={value} must be at least {minimum}")
    return value


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{key}={raw!r} must be a positive number of seconds")
    return value


def _device(env: Mapping[str, str]) -> str:
    raw = env.get("CXRLAB_DEVICE", "") or "auto"
    if raw.strip().lower() not in DEVICES:
        raise ConfigError(f"CXRLAB_DEVICE={raw!r} is not one of {', '.join(DEVICES)}.")
    return raw.strip().lower()


def _secure_cookies(env: Mapping[str, str]) -> bool | Literal["auto"]:
    """``auto`` (default): ``Secure`` when the request came over HTTPS; else always or never."""
    raw = env.get("CXRLAB_SECURE_COOKIES", "").strip().lower() or "auto"
    if raw == "auto":
        return "auto"
    if raw in _TRUE + _FALSE:
        return raw in _TRUE
    raise ConfigError(f"CXRLAB_SECURE_COOKIES={raw!r} is not one of auto, true, false.")


def _header(env: Mapping[str, str], key: str, default: str) -> str:
    raw = env.get(key, "").strip() or default
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", raw):
        raise ConfigError(f"{key}={raw!r} is not an HTTP header name (letters, digits, '-').")
    return raw


def _one_of(env: Mapping[str, str], key: str) -> tuple[str | None, str | None]:
    """``(value, file path)`` of a setting given either inline (``KEY``) or as ``KEY_FILE``."""
    value, path = env.get(key) or None, env.get(f"{key}_FILE") or None
    if value and path:
        raise ConfigError(f"Both {key} and {key}_FILE are set: set only one of them.")
    return value, path


def _read_file(key: str, path: str) -> str:
    """A secret held in a file (compose/Kubernetes secrets); the error names the file, not its content."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}_FILE={path!r} cannot be read ({type(exc).__name__}).") from None
    if not text:
        raise ConfigError(f"{key}_FILE={path!r} is empty.")
    return text


def _secret(env: Mapping[str, str]) -> str:
    value, path = _one_of(env, "CXRLAB_SECRET_KEY")
    secret = _read_file("CXRLAB_SECRET_KEY", path) if path else value
    if not secret:
        # Fine for one process; sessions/CSRF tokens die with it and differ per worker.
        log.warning("CXRLAB_SECRET_KEY is not set: using a random key for this process. "
                    "Forms break across restarts and between several workers; set it in production.")
        secret = secrets.token_hex(32)
    return secret


def token_digest(token: str) -> bytes:
    """What is kept of a token in memory (and compared): its SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_tokens(text: str, source: str = "CXRLAB_API_TOKENS") -> dict[str, bytes]:
    """``id:token`` pairs (separated by commas or new lines; ``#`` starts a comment line) as
    ``{id: token digest}``. Errors name the entry's position or id, never a token."""
    entries = [e.strip() for line in text.splitlines() if not line.strip().startswith("#")
               for e in line.split(",")]
    tokens: dict[str, bytes] = {}
    for number, entry in enumerate((e for e in entries if e), start=1):
        ident, sep, token = (part.strip() for part in entry.partition(":"))
        if not sep or not TOKEN_ID.fullmatch(ident):
            raise ConfigError(f"{source}: entry {number} is not 'id:token' with an id of letters, "
                              "digits, '_', '.', '@' or '-'.")
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise ConfigError(f"{source}: the token of {ident!r} must be at least {MIN_TOKEN_LENGTH} "
                              f"characters without spaces; make one with {_NEW_TOKEN}")
        if ident in tokens:
            raise ConfigError(f"{source}: the id {ident!r} is used twice.")
        digest = token_digest(token)
        if digest in tokens.values():
            raise ConfigError(f"{source}: {ident!r} has the same token as another id; "
                              "give every id its own token (the audit log names the id).")
        tokens[ident] = digest
    return tokens


def _tokens(env: Mapping[str, str]) -> dict[str, bytes]:
    value, path = _one_of(env, "CXRLAB_API_TOKENS")
    if path:
        tokens = parse_tokens(_read_file("CXRLAB_API_TOKENS", path), f"CXRLAB_API_TOKENS_FILE={path!r}")
        if not tokens:
            raise ConfigError(f"CXRLAB_API_TOKENS_FILE={path!r} holds no 'id:token' entry.")
        return tokens
    return parse_tokens(value or "")


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Flask config keys read from the environment (``env`` defaults to ``os.environ``)."""
    env = os.environ if env is None else env
    return {
        "SECRET_KEY": _secret(env),
        "MODELS_DIR": env.get("CXRLAB_MODELS_DIR", "models"),
        "DEVICE": _device(env),
        "MAX_CONTENT_LENGTH": _int(env, "CXRLAB_MAX_UPLOAD_MB", 20, minimum=1) * 1024 * 1024,
        "MAX_INFLIGHT": _int(env, "CXRLAB_MAX_INFLIGHT", 2),
        "MAX_PIXELS": _int(env, "CXRLAB_MAX_PIXELS", DEFAULT_MAX_PIXELS, minimum=1),
        "REQUEST_TIMEOUT": _seconds(env, "CXRLAB_REQUEST_TIMEOUT", 60.0),
        "API_TOKENS": _tokens(env),
        "TRUSTED_PROXIES": _int(env, "CXRLAB_TRUSTED_PROXIES", 0),
        "PROXY_USER_HEADER": _header(env, "CXRLAB_PROXY_USER_HEADER", "X-Forwarded-User"),
        "SECURE_COOKIES": _secure_cookies(env),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "COMPARE_DIR": env.get("CXRLAB_COMPARE_DIR", os.path.join("out", "compare")),
        "WARMUP": True,
        # `cxrlab demo --serve` sets it: serve that run's models as they finish (app/model_watch.py)
        "TRAINING_STATUS": env.get("CXRLAB_TRAINING_STATUS") or None,
    }

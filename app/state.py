"""Accessors for the per-app objects made by :func:`app.create_app`."""
from __future__ import annotations

from flask import current_app

from app.limiter import InflightLimiter
from app.model_bank import ModelBank


def bank() -> ModelBank:
    return current_app.extensions["cxrlab"]["bank"]


def limiter() -> InflightLimiter:
    return current_app.extensions["cxrlab"]["limiter"]


def upload_form():
    """A new instance of this app's upload form (bound to the current request)."""
    return current_app.extensions["cxrlab"]["form"]()

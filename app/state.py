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


def install_bank(extensions: dict, new: ModelBank) -> None:
    """Serve ``new`` and the upload form of its outputs (start-up, and each model a running demo
    adds): one assignment each, so a request keeps the bank it read and never sees a partial one."""
    from app.forms import make_upload_form

    extensions["form"] = make_upload_form([o for m in new for o in m.outputs], new.metadata_features)
    extensions["bank"] = new

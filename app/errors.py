"""Friendly error pages (HTML) and JSON errors (API) for every expected failure."""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from training.errors import ImageDecodeError

log = logging.getLogger(__name__)

TITLES = {
    400: "The request was incomplete",
    404: "Page not found",
    405: "Method not allowed",
    413: "File too large",
    415: "Unsupported file type",
    422: "The image could not be read",
    500: "Something went wrong",
    503: "The server is busy",
}


def _is_api() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def _message(code: int, description: str | None) -> str:
    if code == 413:
        mb = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
        return f"The file is larger than the {mb} MB limit. Upload a smaller image (e.g. a PNG or JPEG export)."
    if code == 400 and isinstance(description, str) and "CSRF" in description:
        return ("The form's security token is missing or expired. Reload the page and upload again.")
    return description or TITLES.get(code, "Error")


def render_error(code: int, description: str | None, headers=None):
    message = _message(code, description)
    if _is_api():
        response = jsonify(error=TITLES.get(code, "Error"), message=message, status=code)
    else:
        response = render_template("error.html", code=code, title=TITLES.get(code, "Error"),
                                   message=message)
    return response, code, headers or {}


def _http(exc: HTTPException):
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "retry-after"}
    return render_error(exc.code or 500, exc.description, headers)


def _csrf(exc: CSRFError):
    return render_error(400, "CSRF: " + (exc.description or ""))


def _decode(exc: ImageDecodeError):
    # The message names the user's own file; it is shown to them, never logged.
    log.info("422 undecodable upload (%d bytes)", request.content_length or 0)
    hint = "Upload an uncorrupted PNG, JPEG or DICOM chest X-ray."
    return render_error(422, f"{exc} {hint}" if hint not in str(exc) else str(exc))


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http(exc)
    log.exception("unexpected error on %s", request.path)
    return render_error(500, InternalServerError.description)


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf)
    app.register_error_handler(ImageDecodeError, _decode)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(Exception, _unexpected)

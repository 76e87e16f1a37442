"""Friendly error pages (HTML) and JSON errors (API) for every expected failure.

No error body or log line holds patient data: a decoder's message may quote a DICOM tag value
or the file's name, so the 422 body keeps only the reason, and an unexpected error is logged
as its type, the route and the frames, without its message.
"""
from __future__ import annotations

import logging
import re
import traceback

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from training.errors import ImageDecodeError
from training.preprocess import error_reason

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


DECODE_HINT = "Upload an uncorrupted PNG, JPEG or DICOM chest X-ray."
#: A decoder's own words in a reason, "(ValueError: ...)" to the end: they may quote a value.
_DETAIL = re.compile(r"\(([A-Z]\w*(?:Error|Exception|Warning)): .*", re.S)


def _is_api() -> bool:
    """JSON for the API, and for a page's script that asks for it (the report download)."""
    if request.path.startswith("/api/") or request.path == "/healthz":
        return True
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


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


def decode_reason(exc: ImageDecodeError) -> str:
    """Why the upload did not decode, without its file name or the decoder's message."""
    text = error_reason(exc)
    if exc.path:
        text = text.replace(exc.path, "the file")  # the user knows which file they sent
    return _DETAIL.sub(r"(\1)", text).strip().rstrip(".") or "the file is not a readable image"


def _decode(exc: ImageDecodeError):
    log.info("422 undecodable upload (%d bytes)", request.content_length or 0)
    reason = decode_reason(exc)
    return render_error(422, f"{reason[:1].upper()}{reason[1:]}. {DECODE_HINT}")


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http(exc)
    # Not log.exception: the message (and a chained one) may quote a tag value or a file
    # name. The type, the route and the frames (code lines, no values) find the bug.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected %s on %s %s\n%s", type(exc).__name__, request.method, request.path, frames)
    return render_error(500, InternalServerError.description)


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf)
    app.register_error_handler(ImageDecodeError, _decode)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(Exception, _unexpected)

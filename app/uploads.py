"""Uploads held in memory only: the X-ray never touches the disk."""
from __future__ import annotations

import io
from typing import IO

from flask import Request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

ALLOWED_EXTENSIONS = ("png", "jpg", "jpeg", "dcm", "dicom")


class InMemoryRequest(Request):
    """Werkzeug spools uploads over 500 KB to a temporary file; keep them in RAM instead.

    ``MAX_CONTENT_LENGTH`` bounds the memory this can take.
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return io.BytesIO()


def extension(filename: str) -> str:
    return filename.rsplit(".", 1)[-1].lower() if "." in filename else ""


def check_type(filename: str) -> None:
    """415 unless the file name has an allowed extension."""
    if extension(filename) not in ALLOWED_EXTENSIONS:
        raise UnsupportedMediaType(
            "This file type is not supported. "
            f"Upload a chest X-ray as {', '.join(ALLOWED_EXTENSIONS).upper()}.")


def read_upload(file: FileStorage | None) -> tuple[bytes, str]:
    """The bytes and file name of an upload (400 if absent, 415 if the type is wrong)."""
    if file is None or not file.filename:
        raise BadRequest("No file was uploaded. Choose a chest X-ray image and submit again.")
    check_type(file.filename)
    return file.read(), file.filename

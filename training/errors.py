"""Errors that name the file, what is wrong, and what to do."""
from __future__ import annotations


class CXRError(Exception):
    """Base class: a user-facing error with a specific, actionable message."""


class DataError(CXRError):
    """Bad input data: missing/unreadable file, bad CSV, unknown label, ...

    ``path`` names the offending file; ``hint`` says what to do.
    """

    def __init__(self, message: str, path: str | None = None, hint: str | None = None):
        self.path = None if path is None else str(path)
        self.hint = hint
        parts = [f"{self.path}: {message}" if self.path else message]
        if hint:
            parts.append(f"What to do: {hint}")
        super().__init__(" ".join(parts))


class ImageDecodeError(DataError):
    """A file that cannot be decoded as an image (truncated, not an image, unsupported)."""


class UnknownLabelError(DataError):
    """A label that the vocabulary or the task does not know."""


class SplitError(CXRError):
    """A split that is inconsistent with the data (patient in two parts, missing rows)."""


class ModelCardError(CXRError):
    """A saved model whose card is missing or inconsistent."""

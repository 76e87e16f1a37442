"""Point-of-use reports for one prediction: a PDF, and for a DICOM upload a DICOM Structured Report.

:func:`build_report` takes the JSON that ``POST /api/predict`` returns (as a dict) and the
uploaded file's bytes, and returns the report's bytes with its MIME type and a download name.
Everything is built in memory; nothing is written to the server. The formats' builders
(:mod:`app.report.pdf`, :mod:`app.report.sr`) are imported on first use, so ``import app.report``
does not load reportlab or highdicom.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from app.config import DISCLAIMER

#: The formats :func:`build_report` knows, with their MIME type and file suffix.
FORMATS: dict[str, tuple[str, str]] = {
    "pdf": ("application/pdf", "-cxrlab-report.pdf"),
    "sr": ("application/dicom", "-cxrlab-sr.dcm"),
}


class ReportError(ValueError):
    """The report cannot be built from this upload/result (the message says why and what to do)."""


def disclaimer(result: dict[str, Any]) -> str:
    """The result's disclaimer; the app's own if the result lacks one (a report never goes without)."""
    return str(result.get("disclaimer") or DISCLAIMER)


def is_dicom(data: bytes, filename: str) -> bool:
    """Whether the upload is DICOM: the rule decoding uses ("DICM" at offset 128, or a
    ``.dcm``/``.dicom`` name), so a file predicted as DICOM is reported as DICOM."""
    from training.preprocess import is_dicom as decoded_as_dicom

    return decoded_as_dicom(data, filename)


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


@contextmanager
def quiet_dicom() -> Iterator[None]:
    """pydicom reads (and makes elements) without value validation while inside.

    pydicom's validation warnings quote the offending value (a birth date, a name) into stderr
    and the log; the reports copy such values, or leave them out and say which. The setting is
    process-wide: concurrent reports share it, and it is restored when the last one leaves.
    (pydicom's writing validation quotes no value; decoding turns reading validation off for
    good, :mod:`training.preprocess`, and is then restored to that.)
    """
    from pydicom import config  # DICOM reports only

    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = config.settings._reading_validation_mode  # None: pydicom's default
            config.settings.reading_validation_mode = config.IGNORE
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                config.settings._reading_validation_mode = _quiet_saved


def download_name(filename: str, suffix: str) -> str:
    """A safe download name: the upload's stem (ASCII letters, digits, ``._-``) plus ``suffix``."""
    # Browsers may send a full Windows path; keep only its last component.
    stem = PurePosixPath(PureWindowsPath(filename or "").name).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80]
    return f"{stem or 'upload'}{suffix}"


def test_summary(test: dict[str, Any] | None) -> str:
    """One line on a model's test-set evaluation: which set, split, size, macro AUC with its CI."""
    if not test or not test.get("test_set"):
        return "no test-set evaluation recorded"
    text = f"{test['test_set']} test set"
    if test.get("split"):
        text += f" ({test['split']})"
    if test.get("n_images") is not None:
        text += f", {test['n_images']} images"
    auc = test.get("macro_auc") or {}
    if auc.get("value") is not None:
        text += f", macro AUC {auc['value']:.3f}"
        if auc.get("low") is not None and auc.get("high") is not None:
            text += f" (95% CI {auc['low']:.3f}-{auc['high']:.3f})"
    if test.get("chance_level"):
        text += ", no better than chance on its test set"
    return text


def build_report(fmt: str, result: dict[str, Any], image_bytes: bytes, filename: str,
                 gray: Any = None) -> tuple[bytes, str, str]:
    """Build one report: ``(payload, mimetype, download_filename)``.

    ``fmt`` is ``"pdf"`` or ``"sr"`` (a DICOM SR, only for a DICOM upload). Raises
    :class:`ValueError` for an unknown format and :class:`ReportError` when this upload cannot
    give that report.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; allowed: {', '.join(sorted(FORMATS))}")
    mimetype, suffix = FORMATS[fmt]
    if fmt == "pdf":
        from app.report import pdf  # reportlab: only when a PDF is asked for

        payload = pdf.build_pdf(result, image_bytes, filename, gray=gray)
    else:
        if not is_dicom(image_bytes, filename):
            raise ReportError("a DICOM Structured Report needs a DICOM upload and this upload is "
                              "not DICOM; ask for format=pdf")
        from app.report import sr  # highdicom/pydicom: only when an SR is asked for

        payload = sr.build_sr(result, image_bytes)
    return payload, mimetype, download_name(filename, suffix)

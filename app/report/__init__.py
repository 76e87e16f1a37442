"""Point-of-use reports for one prediction: a PDF, and for a DICOM upload a DICOM Structured Report.

:func:`build_report` takes the JSON that ``POST /api/predict`` returns (as a dict) and the
uploaded file's bytes, and returns the report's bytes with its MIME type and a download name.
Everything is built in memory; nothing is written to the server. The formats' builders
(:mod:`app.report.pdf`, :mod:`app.report.sr`) are imported on first use, so ``import app.report``
does not load reportlab or highdicom.
"""
from __future__ import annotations

import re
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
    """Whether the upload is DICOM: "DICM" at offset 128, or a ``.dcm`` name.

    The same rule as :func:`training.preprocess.decode_image` (which decoded the upload for the
    prediction), so a file predicted as DICOM is reported as DICOM.
    """
    return data[128:132] == b"DICM" or filename.lower().endswith(".dcm")


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


def build_report(fmt: str, result: dict[str, Any], image_bytes: bytes,
                 filename: str) -> tuple[bytes, str, str]:
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

        payload = pdf.build_pdf(result, image_bytes, filename)
    else:
        if not is_dicom(image_bytes, filename):
            raise ReportError(f"a DICOM Structured Report needs a DICOM upload; {filename} is not "
                              "DICOM; ask for format=pdf")
        from app.report import sr  # highdicom/pydicom: only when an SR is asked for

        payload = sr.build_sr(result, image_bytes, filename)
    return payload, mimetype, download_name(filename, suffix)

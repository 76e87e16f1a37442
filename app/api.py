"""JSON API (CSRF-exempt): predictions, reports, the loaded models, a health check.

The contract (README, "API"): ``POST /api/predict`` returns :func:`app.results.result_json`;
an image the gate refuses gets HTTP 422 with ``gate`` and no probabilities.
``POST /api/report?format=pdf|sr`` returns the report of the same upload (nothing is stored).
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from app import state
from app.cards import public_card
from app.config import DISCLAIMER
from app.report import FORMATS as REPORT_FORMATS, ReportError, build_report
from app.results import result_json
from app.uploads import read_upload

bp = Blueprint("api", __name__)
log = logging.getLogger(__name__)


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


def predict_upload(data: bytes, filename: str, heatmaps: bool, heatmap_class: str | None,
                   metadata: dict | None = None) -> dict:
    """Run the bank on one upload (bounded by the in-flight limiter); the contract dict."""
    bank = state.bank()
    with state.limiter().slot():
        prediction = bank.predict(data, filename, heatmaps=heatmaps, heatmap_class=heatmap_class,
                                  metadata=metadata)
    log.info("predicted %d bytes with %d models in %.2f s (gate: %s)", len(data),
             len(prediction.models), prediction.seconds, prediction.gate.verdict)
    return result_json(prediction, bank, filename)


@bp.post("/api/predict")
def predict():
    """multipart ``file`` (+ ``?heatmaps=1``, ``?heatmap_class=NAME``) -> the gate and every model's outputs."""
    data, filename = read_upload(request.files.get("file"))
    result = predict_upload(data, filename, _flag("heatmaps"), request.args.get("heatmap_class"))
    return jsonify(result), 422 if result["gate"]["verdict"] == "refuse" else 200


@bp.post("/api/report")
def report():
    """multipart ``file`` + ``?format=pdf|sr`` -> ``application/pdf`` or ``application/dicom``."""
    fmt = request.args.get("format", "pdf").lower()
    if fmt not in REPORT_FORMATS:
        raise BadRequest(f"format={fmt!r} is not one of {', '.join(REPORT_FORMATS)}.")
    data, filename = read_upload(request.files.get("file"))
    result = predict_upload(data, filename, True, request.args.get("heatmap_class"))
    if result["gate"]["verdict"] == "refuse":
        return jsonify(result), 422
    return report_response(fmt, result, data, filename)


def report_response(fmt: str, result: dict, data: bytes, filename: str) -> Response:
    """The report file as a download (a DICOM SR of a non-DICOM upload: 400, said why)."""
    try:
        payload, mimetype, name = build_report(fmt, result, data, filename)
    except ReportError as exc:
        raise BadRequest(str(exc)) from None
    return Response(payload, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


@bp.get("/api/models")
def models():
    return jsonify(models=[public_card(m.card) for m in state.bank()], disclaimer=DISCLAIMER)


@bp.get("/healthz")
def healthz():
    bank = state.bank()
    return jsonify(status="ok", models=len(bank), device=bank.device)

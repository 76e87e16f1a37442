"""JSON API: predictions, reports, the loaded models, a health check.

No CSRF token: :mod:`app.security` guards ``/api/*`` instead (API tokens; without them,
cross-site browser requests are refused). Every prediction is audited (:mod:`app.audit`).

The contract (README, "API"): ``POST /api/predict`` returns :func:`app.results.result_json`;
an image the gate refuses gets HTTP 422 with ``gate`` and no probabilities.
``POST /api/report?format=pdf|sr`` returns the report of the same upload (nothing is stored).
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import BadRequest

from app import audit, state
from app.cards import public_card
from app.compare_cases import read_cases
from app.compare_report import load_report
from app.config import DISCLAIMER
from app.limiter import Deadline
from app.metrics_view import without_paths
from app.report import FORMATS as REPORT_FORMATS, ReportError, build_report
from app.results import result_json
from app.security import current_user
from app.uploads import read_upload

bp = Blueprint("api", __name__)


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


@dataclass
class Served:
    """One upload served: the contract dict, and the report when one was asked for."""

    result: dict
    report: tuple[bytes, str, str] | None = None   # (payload, mimetype, download name)

    @property
    def refused(self) -> bool:
        return self.result["gate"]["verdict"] == "refuse"


def serve_upload(data: bytes, filename: str, *, heatmaps: bool, heatmap_class: str | None = None,
                 metadata: dict | None = None, report: str | None = None) -> Served:
    """Everything one upload costs, inside one in-flight slot: the gate, every model and, with
    ``report`` (a format of :data:`REPORT_FORMATS`), the report built from the same decoded image.

    Bounded by ``CXRLAB_MAX_PIXELS`` and, between stages, ``CXRLAB_REQUEST_TIMEOUT`` (503 past
    it); one audit line however it ends."""
    bank, config = state.bank(), current_app.config
    deadline = Deadline(float(config["REQUEST_TIMEOUT"]))
    with audit.attempt(current_user(), report) as audited, state.limiter().slot():
        prediction = bank.predict(data, filename, heatmaps=heatmaps, heatmap_class=heatmap_class,
                                  metadata=metadata, max_pixels=int(config["MAX_PIXELS"]),
                                  deadline=deadline)
        audited.record(prediction, bank)
        result = result_json(prediction, bank, filename)
        served = Served(result)
        if report and not served.refused:
            deadline.check("the report")
            served.report = _build(report, result, data, filename, prediction.gray)
    return served


def _build(fmt: str, result: dict, data: bytes, filename: str, gray) -> tuple[bytes, str, str]:
    """The report, or 400 saying why this upload cannot have it (a DICOM SR of a PNG...)."""
    try:
        return build_report(fmt, result, data, filename, gray=gray)
    except ReportError as exc:
        raise BadRequest(str(exc)) from None


def report_response(served: Served) -> Response:
    """The report of ``served`` as a download."""
    payload, mimetype, name = served.report
    return Response(payload, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


@bp.post("/api/predict")
def predict():
    """multipart ``file`` (+ ``?heatmaps=1``, ``?heatmap_class=NAME``) -> the gate and every model's outputs."""
    data, filename = read_upload(request.files.get("file"))
    served = serve_upload(data, filename, heatmaps=_flag("heatmaps"),
                          heatmap_class=request.args.get("heatmap_class"))
    return jsonify(served.result), 422 if served.refused else 200


@bp.post("/api/report")
def report():
    """multipart ``file`` + ``?format=pdf|sr`` -> ``application/pdf`` or ``application/dicom``."""
    fmt = request.args.get("format", "pdf").lower()
    if fmt not in REPORT_FORMATS:
        raise BadRequest(f"format={fmt!r} is not one of {', '.join(REPORT_FORMATS)}.")
    data, filename = read_upload(request.files.get("file"))
    served = serve_upload(data, filename, heatmaps=True,
                          heatmap_class=request.args.get("heatmap_class"), report=fmt)
    if served.refused:
        return jsonify(served.result), 422
    return report_response(served)


@bp.get("/api/models")
def models():
    return jsonify(models=[public_card(m.card) for m in state.bank()], disclaimer=DISCLAIMER)


@bp.get("/api/compare")
def compare():
    """What /compare shows: compare.json (server paths reduced to names) and cases.json."""
    folder = current_app.config["COMPARE_DIR"]
    report = load_report(folder)
    if report is None or report.summary is None:
        return jsonify(error="No comparison report. What to do: run python -m training compare "
                             "and point CXRLAB_COMPARE_DIR at its output folder."), 404
    return jsonify(summary=without_paths(report.summary), cases=read_cases(folder))


@bp.get("/healthz")
def healthz():
    bank = state.bank()
    return jsonify(status="ok", models=len(bank), device=bank.device)

"""HTML pages: upload, side-by-side result, model cards, the model comparison."""
from __future__ import annotations

import base64
import binascii
import functools
import json
import logging

from flask import Blueprint, abort, current_app, render_template, request
from werkzeug.exceptions import BadRequest

from app import state
from app.api import predict_upload, report_response
from app.cards import metric_rows, short_card
from app.compare_report import load_report
from app.forms import AUTO, ReportForm, metadata_values
from app.metrics_view import test_summary
from app.uploads import ALLOWED_EXTENSIONS, check_type
from training.explain import colour_scale, png_data_uri

bp = Blueprint("views", __name__)
log = logging.getLogger(__name__)


def _index(form, status: int = 200):
    return render_template("index.html", form=form, models=state.bank(),
                           extensions=ALLOWED_EXTENSIONS), status


@bp.get("/")
def index():
    return _index(state.upload_form())


@bp.post("/predict")
def predict():
    form = state.upload_form()
    if not form.validate_on_submit():
        if form.file.data is not None and form.file.data.filename:
            check_type(form.file.data.filename)          # wrong type: 415 page
        if form.file.errors:
            raise BadRequest("No file was uploaded. Choose a chest X-ray image and submit again.")
        return _index(form, 400)
    if not len(state.bank()):
        abort(503, "No models are loaded. Train some first (make demo).")
    upload = form.file.data
    data = upload.read()
    wanted = None if form.heatmap_class.data == AUTO else form.heatmap_class.data
    result = predict_upload(data, upload.filename, True, wanted, metadata_values(form))
    refused = result["gate"]["verdict"] == "refuse"
    # The report form re-posts the upload itself: nothing is kept on the server.
    payload = None if refused else base64.b64encode(data).decode("ascii")
    del data
    return render_template("result.html", result=result, filename=upload.filename,
                           payload=payload, heatmap_class=wanted or "",
                           scale=_colour_scale_uri(), form=state.upload_form()), \
        422 if refused else 200


@functools.lru_cache(maxsize=1)
def _colour_scale_uri() -> str:
    """The heatmaps' colour scale (the same image on every result page: made once)."""
    return png_data_uri(colour_scale())


@bp.post("/report")
def report():
    """The result page's "Download report": the upload comes back base64-encoded in the form."""
    # The upload travels base64-encoded (4/3 of its size) in a form field, not as a file part.
    limit = current_app.config["MAX_CONTENT_LENGTH"] * 4 // 3 + 64 * 1024
    request.max_content_length = request.max_form_memory_size = limit
    form = ReportForm()
    if not form.validate_on_submit():
        raise BadRequest("The report form is incomplete or expired. Upload the image again.")
    try:
        data = base64.b64decode(form.payload.data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("The report form's image is damaged. Upload the image again.") from None
    filename = form.filename.data or "upload"
    check_type(filename)
    result = predict_upload(data, filename, True, form.heatmap_class.data or None)
    if result["gate"]["verdict"] == "refuse":
        abort(422, "The input gate refused this image, so there is no report of model outputs.")
    return report_response(form.format.data, result, data, filename)


@bp.get("/models/<name>")
def model_card(name: str):
    model = state.bank().get(name)
    if model is None:
        abort(404, f"No model named {name!r} is loaded.")
    card = model.card
    return render_template("model.html", model=model, card=card, short=short_card(card),
                           test=test_summary(card),
                           validation=metric_rows(card.validation_metrics),
                           training=json.dumps(card.training, indent=2, default=str))


@bp.get("/compare")
def compare():
    folder = current_app.config["COMPARE_DIR"]
    return render_template("compare.html", report=load_report(folder), folder=folder,
                           models=state.bank())

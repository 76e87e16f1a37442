"""HTML pages: upload, side-by-side result, model cards, the model comparison."""
from __future__ import annotations

import base64
import functools
import json
import logging
import os

from flask import Blueprint, abort, current_app, jsonify, render_template, send_from_directory
from werkzeug.exceptions import BadRequest

from app import state
from app.api import report_response, serve_upload
from app.cards import short_card, validation_rows
from app.compare_cases import case_file, load_cases, pictures
from app.compare_report import load_report
from app.forms import AUTO, UploadForm, metadata_values, report_form, repost_fields
from app.metrics_view import test_summary, without_paths
from app.model_watch import read_progress
from app.report import is_dicom
from app.results import evidence_rows, result_page
from app.uploads import ALLOWED_EXTENSIONS, check_type
from app.imaging import colour_scale, png_data_uri
from training.evaluation.model_plots import plot_file, plot_files

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
    served = serve_upload(data, upload.filename, heatmaps=True, heatmap_class=wanted,
                          metadata=metadata_values(form))
    result, refused = served.result, served.refused
    # The report form re-posts the upload itself (static/result.js): nothing is kept on the server.
    report = None if refused else report_context(data, upload.filename, form)
    del data
    return render_template("result.html", result=result, view=result_page(result), filename=upload.filename,
                           report=report, scale=_colour_scale_uri()), 422 if refused else 200


def report_context(data: bytes, filename: str, form: UploadForm) -> dict:
    """What the result page's report form needs: the upload (base64, turned back into a file
    part by static/result.js), the upload form's other entries, and whether an SR is offered."""
    return {"payload": base64.b64encode(data).decode("ascii"), "fields": repost_fields(form),
            "sr": is_dicom(data, filename)}


@functools.lru_cache(maxsize=1)
def _colour_scale_uri() -> str:
    """The heatmaps' colour scale (the same image on every result page: made once)."""
    return png_data_uri(colour_scale())


@bp.post("/report")
def report():
    """The result page's "Download report": the upload form again, with a format (multipart,
    under the same MAX_CONTENT_LENGTH as the upload; static/result.js posts it)."""
    form = report_form(type(state.upload_form()))()
    if not form.validate_on_submit():
        if form.file.data is not None and form.file.data.filename:
            check_type(form.file.data.filename)          # wrong type: 415
        raise BadRequest("The report form is incomplete or expired. Upload the image again.")
    upload = form.file.data
    data = upload.read()
    wanted = None if form.heatmap_class.data == AUTO else form.heatmap_class.data
    served = serve_upload(data, upload.filename, heatmaps=True, heatmap_class=wanted,
                          metadata=metadata_values(form), report=form.format.data)
    if served.refused:
        abort(422, "The input gate refused this image, so there is no report of model outputs.")
    return report_response(served)


@bp.get("/models/<name>")
def model_card(name: str):
    model = state.bank().get(name)
    if model is None:
        abort(404, f"No model named {name!r} is loaded.")
    card = model.card
    return render_template("model.html", model=model, card=card, short=short_card(card),
                           test=test_summary(card), evidence=evidence_rows(card),
                           plots=plot_files(model.directory),
                           validation=validation_rows(card.validation_metrics),
                           training=json.dumps(without_paths(card.training.to_json()), indent=2, default=str))


@bp.get("/models/<name>/plots/<part>/<file>")
def model_plot(name: str, part: str, file: str):
    """One of the model's evaluation plots (kept in its folder by evaluate): nothing else."""
    model = state.bank().get(name)
    path = plot_file(model.directory, part, file) if model is not None else None
    if path is None:
        abort(404, "This model has no such evaluation plot. What to do: open the model's card page "
                   "and follow its plot links, or run python -m training evaluate on the model.")
    return send_from_directory(os.path.abspath(path.parent), path.name)


@bp.get("/compare")
def compare():
    folder = current_app.config["COMPARE_DIR"]
    report = load_report(folder)
    shown = without_paths(report.summary) if report is not None else None
    return render_template("compare.html", report=report, summary=shown, models=state.bank(),
                           cases=load_cases(folder) if report is not None else [])


@bp.get("/compare/files/<path:name>")
def compare_file(name: str):
    """A picture cases.json names (gallery JPEG, figure PNG): nothing else of the folder."""
    folder = current_app.config["COMPARE_DIR"]
    if name not in pictures(folder):
        abort(404, "The comparison has no such picture.")
    return send_from_directory(os.path.abspath(folder), name)


@bp.get("/compare/cases/<int:case>")
def compare_case(case: int):
    """A gallery case in the normal side-by-side result view: every loaded model runs on it."""
    path = case_file(current_app.config["COMPARE_DIR"], case)
    if path is None:
        abort(404, f"Case {case} is not in the comparison's gallery. What to do: open a case "
                   "from the gallery on /compare, or run python -m training compare again.")
    if not len(state.bank()):
        abort(503, "No models are loaded. Train some first (make demo).")
    name = f"test case {case}{path.suffix.lower()}"   # the file's own name is patient data
    served = serve_upload(path.read_bytes(), name, heatmaps=True)
    return render_template("result.html", result=served.result, view=result_page(served.result),
                           filename=name, report=None, scale=_colour_scale_uri()), 422 if served.refused else 200


@bp.get("/training")
def training_progress():
    """The training panel's record while a demo trains (static/training.js asks every few seconds)."""
    progress = read_progress(current_app.config.get("TRAINING_STATUS"))
    return jsonify(progress.to_json() if progress else {"active": False})

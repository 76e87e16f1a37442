"""HTML pages: upload, side-by-side result, model cards, the model comparison."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, abort, current_app, render_template
from werkzeug.exceptions import BadRequest

from app import state
from app.cards import metric_rows, short_card
from app.compare_report import load_report
from app.forms import AUTO, metadata_values
from app.metrics_view import test_summary
from app.uploads import ALLOWED_EXTENSIONS, check_type

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
    with state.limiter().slot():
        prediction = state.bank().predict(data, upload.filename, heatmaps=True,
                                          heatmap_class=wanted, metadata=metadata_values(form))
    log.info("predicted %d bytes with %d models in %.2f s", len(data), len(prediction.models),
             prediction.seconds)
    del data
    cards = {m.name: short_card(m.card) for m in state.bank()}
    tests = {m.name: test_summary(m.card) for m in state.bank()}
    return render_template("result.html", prediction=prediction, cards=cards, tests=tests,
                           filename=upload.filename, form=state.upload_form())


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

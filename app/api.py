"""JSON API (CSRF-exempt): predictions, the loaded models, a health check."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from app import state
from app.config import DISCLAIMER
from app.cards import public_card, short_card
from app.uploads import read_upload

bp = Blueprint("api", __name__)
log = logging.getLogger(__name__)


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


@bp.post("/api/predict")
def predict():
    """multipart ``file`` (+ ``?heatmaps=1``, ``?heatmap_class=NAME``) -> every model's outputs."""
    data, filename = read_upload(request.files.get("file"))
    bank = state.bank()
    with state.limiter().slot():
        prediction = bank.predict(data, filename, heatmaps=_flag("heatmaps"),
                                  heatmap_class=request.args.get("heatmap_class"))
    log.info("api: predicted %d bytes with %d models in %.2f s", len(data), len(prediction.models),
             prediction.seconds)
    models = []
    for result in prediction.models:
        entry = {
            "name": result.name,
            "architecture": result.architecture,
            "input_size": result.input_size,
            "card": short_card(bank.get(result.name).card),
            "outputs": [vars(o) for o in result.outputs],
            "seconds": round(result.seconds, 4),
        }
        if result.heatmap:
            entry["heatmap"] = result.heatmap
            entry["heatmap_class"] = result.heatmap_class
        models.append(entry)
    return jsonify(models=models, disclaimer=DISCLAIMER)


@bp.get("/api/models")
def models():
    return jsonify(models=[public_card(m.card) for m in state.bank()], disclaimer=DISCLAIMER)


@bp.get("/healthz")
def healthz():
    bank = state.bank()
    return jsonify(status="ok", models=len(bank), device=bank.device)

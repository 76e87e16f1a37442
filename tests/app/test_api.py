"""JSON API: predict (structure, heatmaps, errors, busy), models list, health check."""
from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest

from tests.helpers.images import (
    write_xray_dicom,
    write_xray,
    write_not_image,
    write_truncated,
)


def post(client, path, name=None, data=None, query=""):
    content = data if data is not None else path.read_bytes()
    return client.post(f"/api/predict{query}", data={"file": (io.BytesIO(content), name or path.name)},
                       content_type="multipart/form-data")


def test_predict_structure(client, bank, tmp_path):
    rv = post(client, write_xray(tmp_path / "x.png"))
    assert rv.status_code == 200
    body = rv.get_json()
    assert "not a diagnostic device" in body["disclaimer"]
    assert body["gate"]["verdict"] == "accept" and body["gate"]["reasons"] == []
    assert [m["name"] for m in body["models"]] == [m.name for m in bank]
    for entry, m in zip(body["models"], bank):
        assert entry["architecture"] == m.card["architecture"]
        assert entry["card"]["split_sha256_prefix"] == m.card["split"]["sha256"][:12]
        assert entry["model_sha256"] == m.card.model_sha256
        assert [o["name"] for o in entry["outputs"]] == m.outputs
        for o in entry["outputs"]:
            assert {"name", "probability", "raw_probability", "threshold", "positive",
                    "chance_level", "test_auc", "evidence_status", "held_out", "transfer_note",
                    "greyed"} <= set(o)
            assert 0 <= o["probability"] <= 1 and o["positive"] == (o["probability"] >= o["threshold"])
            assert o["chance_level"] is True               # the tiny models have no test metrics
        assert "heatmaps" not in entry
    assert set(body["agreement"]) == {o for m in bank for o in m.outputs}
    assert rv.headers["Cache-Control"] == "no-store"


def test_calibrated_and_raw_probabilities(client, bank, tmp_path):
    body = post(client, write_xray(tmp_path / "x.png")).get_json()
    by_name = {m["name"]: m for m in body["models"]}
    gated = by_name["tiny-multi"]
    served = bank.get("tiny-multi")
    assert gated["calibration"] == "platt" and gated["gate"]["verdict"] == "ok"
    raw = [o["raw_probability"] for o in gated["outputs"]]
    expected = served.calibrate(raw)
    assert [o["probability"] for o in gated["outputs"]] == pytest.approx(list(expected), abs=1e-9)
    assert any(abs(o["probability"] - o["raw_probability"]) > 1e-3 for o in gated["outputs"])
    plain = by_name["tiny-single"]                     # no calibration in its card: raw = calibrated
    assert plain["calibration"] == "none" and plain["gate"] is None
    assert all(o["probability"] == o["raw_probability"] for o in plain["outputs"])


def test_refused_image_is_422_with_reasons_and_no_probabilities(client, tmp_path):
    from tests.helpers.images import png_bytes

    rv = post(client, None, name="tiny.png", data=png_bytes(np.zeros((1, 1), np.uint8)))
    assert rv.status_code == 422
    body = rv.get_json()
    assert body["gate"]["verdict"] == "refuse" and body["models"] == []
    assert {r["code"] for r in body["gate"]["reasons"]} >= {"too_small"}
    noise = png_bytes(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8))
    rv = post(client, None, name="noise.png", data=noise)          # passes the checks; OOD refuses
    assert rv.status_code == 422
    assert [r["code"] for r in rv.get_json()["gate"]["reasons"]] == ["out_of_distribution"]


def test_predict_with_heatmaps(client, bank, tmp_path):
    from PIL import Image

    rv = post(client, write_xray_dicom(tmp_path / "x.dcm", h=300, w=240), query="?heatmaps=1")
    assert rv.status_code == 200
    for entry, m in zip(rv.get_json()["models"], bank):
        assert set(entry["heatmaps"]) | set(entry["heatmap_notes"]) == set(m.outputs)
        assert entry["heatmap_class"] in m.outputs
        for uri in entry["heatmaps"].values():
            prefix = "data:image/jpeg;base64,"
            assert uri.startswith(prefix)
            img = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))
            assert img.size == (240, 300) and img.mode == "RGB"   # the upload's size, not 32 px


def test_report_endpoint_pdf_and_sr(client, tmp_path):
    dcm = write_xray_dicom(tmp_path / "x.dcm", h=300, w=240)
    pdf = client.post("/api/report?format=pdf", data={"file": (dcm.open("rb"), "x.dcm")},
                      content_type="multipart/form-data")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF") and "attachment" in pdf.headers["Content-Disposition"]
    sr = client.post("/api/report?format=sr", data={"file": (dcm.open("rb"), "x.dcm")},
                     content_type="multipart/form-data")
    assert sr.status_code == 200 and sr.mimetype == "application/dicom"
    assert sr.data[128:132] == b"DICM"
    png = client.post("/api/report?format=sr", data={"file": (write_xray(tmp_path / "x.png").open("rb"), "x.png")},
                      content_type="multipart/form-data")
    assert png.status_code == 400 and "format=pdf" in png.get_json()["message"]
    bad = client.post("/api/report?format=docx", data={"file": (dcm.open("rb"), "x.dcm")},
                      content_type="multipart/form-data")
    assert bad.status_code == 400


def test_predict_errors(client, tmp_path):
    assert post(client, write_not_image(tmp_path / "a.png")).status_code == 422
    truncated = post(client, write_truncated(tmp_path / "b.jpg"))
    message = truncated.get_json()["message"]
    # The user knows which file they sent: an error body never repeats its name.
    assert truncated.status_code == 422 and "b.jpg" not in message and "Upload an uncorrupted" in message
    text = tmp_path / "c.txt"
    text.write_text("x")
    assert post(client, text).status_code == 415
    assert post(client, None, name="noext", data=b"abc").status_code == 415
    missing = client.post("/api/predict", data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and missing.is_json


def test_predict_too_large_is_json_413(make_app):
    client = make_app(MAX_CONTENT_LENGTH=1024 * 1024).test_client()
    rv = post(client, None, name="big.png", data=b"0" * (2 * 1024 * 1024))
    assert rv.status_code == 413 and "1 MB" in rv.get_json()["message"]


def test_in_flight_limit_gives_503(make_app, bank, tmp_path, monkeypatch):
    """With one slot held by a running prediction, the next request is refused at once."""
    app = make_app(MAX_INFLIGHT=1)
    started, release = threading.Event(), threading.Event()
    real = bank.predict

    def slow_predict(*args, **kwargs):
        started.set()
        assert release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(bank, "predict", slow_predict)
    image = write_xray(tmp_path / "x.png")
    results = {}
    worker = threading.Thread(target=lambda: results.update(first=post(app.test_client(), image)))
    worker.start()
    try:
        assert started.wait(10)
        busy = post(app.test_client(), image)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
        assert "busy" in busy.get_json()["message"]
    finally:
        release.set()
        worker.join(10)
    assert results["first"].status_code == 200
    assert post(app.test_client(), image).status_code == 200     # the slot was released


def test_models_list_without_bulky_fields(client, bank):
    body = client.get("/api/models").get_json()
    assert [c["name"] for c in body["models"]] == [m.name for m in bank]
    for card in body["models"]:
        assert "training" not in card and card["preprocessing"]["size"] == card["input_size"]


def test_public_card_drops_long_lists():
    from app.cards import public_card

    card = {"name": "x", "training": {"lr": 1}, "metrics": {"test": {"roc": list(range(500)), "auc": 0.9}}}
    assert public_card(card) == {"name": "x", "metrics": {"test": {"auc": 0.9}}}


def test_healthz(client, bank):
    rv = client.get("/healthz")
    assert rv.status_code == 200 and rv.get_json()["models"] == len(bank)


def test_api_needs_no_csrf_token(app, tmp_path):
    app.config["WTF_CSRF_ENABLED"] = True
    assert post(app.test_client(), write_xray(tmp_path / "x.png")).status_code == 200


def test_api_404_is_json(client):
    rv = client.get("/api/nope")
    assert rv.status_code == 404 and rv.is_json and rv.get_json()["status"] == 404


# ------------------------------------------------------------------ limits that hold

def _slow(monkeypatch, model, seconds: float) -> None:
    """Make one model's forward pass take ``seconds`` longer."""
    import time

    real = model.infer
    monkeypatch.setattr(model, "infer", lambda *xs: time.sleep(seconds) or real(*xs))


def test_request_time_limit_stops_between_stages_and_frees_the_slot(make_app, bank, tmp_path,
                                                                     monkeypatch):
    app = make_app(MAX_INFLIGHT=1, REQUEST_TIMEOUT=0.2)
    image = write_xray(tmp_path / "x.png")
    _slow(monkeypatch, bank.models[0], 0.5)
    rv = post(app.test_client(), image)
    assert rv.status_code == 503 and rv.headers["Retry-After"] == "5"
    message = rv.get_json()["message"]
    assert "longer than the server's limit of 0.2 s (CXRLAB_REQUEST_TIMEOUT)" in message
    assert f"before model {bank.models[1].name}" in message and "x.png" not in message
    monkeypatch.undo()
    assert post(app.test_client(), image).status_code == 200     # the one slot was released


def test_request_time_limit_is_checked_before_the_report(make_app, bank, tmp_path, monkeypatch):
    import time

    app = make_app(REQUEST_TIMEOUT=0.3)
    real = bank.predict
    monkeypatch.setattr(bank, "predict", lambda *a, **k: (real(*a, **k), time.sleep(0.4))[0])
    dcm = write_xray_dicom(tmp_path / "x.dcm", h=300, w=240)
    report = app.test_client().post("/api/report?format=pdf", data={"file": (dcm.open("rb"), "x.dcm")},
                                    content_type="multipart/form-data")
    assert report.status_code == 503 and "before the report" in report.get_json()["message"]
    assert post(app.test_client(), dcm).status_code == 200           # no report asked: served


def test_pixel_budget_setting_is_honoured(make_app, tmp_path):
    image = write_xray(tmp_path / "x.png", h=300, w=300)               # 90 000 px
    assert post(make_app().test_client(), image).status_code == 200
    small = post(make_app(MAX_PIXELS=200 * 200).test_client(), image)
    assert small.status_code == 422 and small.is_json

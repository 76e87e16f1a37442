"""JSON API: predict (structure, heatmaps, errors, busy), models list, health check."""
from __future__ import annotations

import base64
import io
import threading

from tests.helpers.images import (
    write_dicom,
    write_image,
    write_not_image,
    write_truncated,
)


def post(client, path, name=None, data=None, query=""):
    content = data if data is not None else path.read_bytes()
    return client.post(f"/api/predict{query}", data={"file": (io.BytesIO(content), name or path.name)},
                       content_type="multipart/form-data")


def test_predict_structure(client, bank, tmp_path):
    rv = post(client, write_image(tmp_path / "x.png"))
    assert rv.status_code == 200
    body = rv.get_json()
    assert "not a diagnostic device" in body["disclaimer"]
    assert [m["name"] for m in body["models"]] == [m.name for m in bank]
    for entry, m in zip(body["models"], bank):
        assert entry["architecture"] == m.card["architecture"]
        assert entry["card"]["split_sha256_prefix"] == m.card["split"]["sha256"][:12]
        assert [o["name"] for o in entry["outputs"]] == m.outputs
        for o in entry["outputs"]:
            assert set(o) == {"name", "probability", "threshold", "positive"}
            assert 0 <= o["probability"] <= 1 and o["positive"] == (o["probability"] >= o["threshold"])
        assert "heatmap" not in entry
    assert rv.headers["Cache-Control"] == "no-store"


def test_predict_with_heatmaps(client, bank, tmp_path):
    from PIL import Image

    rv = post(client, write_dicom(tmp_path / "x.dcm"), query="?heatmaps=1")
    assert rv.status_code == 200
    for entry, m in zip(rv.get_json()["models"], bank):
        prefix = "data:image/png;base64,"
        assert entry["heatmap"].startswith(prefix)
        img = Image.open(io.BytesIO(base64.b64decode(entry["heatmap"][len(prefix):])))
        assert img.size == (m.card["input_size"],) * 2 and img.mode == "RGB"
        assert entry["heatmap_class"] in m.outputs


def test_predict_errors(client, tmp_path):
    assert post(client, write_not_image(tmp_path / "a.png")).status_code == 422
    truncated = post(client, write_truncated(tmp_path / "b.jpg"))
    assert truncated.status_code == 422 and "b.jpg" in truncated.get_json()["message"]
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
    image = write_image(tmp_path / "x.png")
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
    assert post(app.test_client(), write_image(tmp_path / "x.png")).status_code == 200


def test_api_404_is_json(client):
    rv = client.get("/api/nope")
    assert rv.status_code == 404 and rv.is_json and rv.get_json()["status"] == 404

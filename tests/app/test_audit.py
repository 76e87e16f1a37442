"""The audit log: one JSON line per prediction/report/refused API call, nothing about the patient."""
from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest

from tests.app.conftest import upload
from tests.helpers.images import png_bytes, write_xray

TOKEN = "alice-token-0123456789abcdef"
#: A file name that is patient data: it must never reach the audit log.
PATIENT_NAME = "DOE_JOHN_19700101.png"


class Lines(logging.Handler):
    """The audit lines written while it is attached, parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(record.getMessage())

    @property
    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.raw]


@pytest.fixture
def audit_lines():
    logger = logging.getLogger("cxrlab.audit")
    handler = Lines()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def tokens(text: str = f"alice:{TOKEN}") -> dict[str, bytes]:
    from app.config import parse_tokens

    return parse_tokens(text)


def post(client, data: bytes, path: str = "/api/predict", name: str = PATIENT_NAME, **kwargs):
    return client.post(path, data={"file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data", **kwargs)


def test_api_prediction_line(make_app, bank, audit_lines, tmp_path):
    client = make_app(API_TOKENS=tokens()).test_client()
    rv = post(client, write_xray(tmp_path / "x.png").read_bytes(),
              headers={"Authorization": f"Bearer {TOKEN}"})
    assert rv.status_code == 200
    [line] = audit_lines.records
    assert line["event"] == "predict" and line["user"] == "alice" and line["auth"] == "token"
    assert line["endpoint"] == "/api/predict" and line["method"] == "POST"
    assert line["remote_addr"] == "127.0.0.1"
    assert line["status"] == 200 and line["outcome"] == "ok" and 0 < line["seconds"] < 60
    assert line["gate"] == {"verdict": "accept", "reasons": []}
    assert line["models"] == [{"name": m.name, "model_sha256": m.card.model_sha256} for m in bank]
    assert line["time"].endswith("Z") and "T" in line["time"]
    raw = audit_lines.raw[0]
    assert "DOE" not in raw and ".png" not in raw and TOKEN not in raw
    assert "probability" not in raw


def test_refused_and_undecodable_uploads_are_audited_without_detail(client, audit_lines):
    assert post(client, png_bytes(np.zeros((1, 1), np.uint8))).status_code == 422
    assert post(client, b"not an image at all").status_code == 422
    refused, broken = audit_lines.records
    assert refused["status"] == 422 and refused["outcome"] == "refused"
    assert refused["gate"]["verdict"] == "refuse" and "too_small" in refused["gate"]["reasons"]
    assert refused["models"] == [] and refused["user"] == "anonymous" and refused["auth"] == "none"
    assert broken["status"] == 422 and broken["outcome"] == "undecodable" and broken["gate"] is None
    assert all("DOE" not in raw and "message" not in raw for raw in audit_lines.raw)


def test_page_and_report_lines(client, audit_lines, tmp_path):
    image = write_xray(tmp_path / "x.png")
    assert upload(client, image, name=PATIENT_NAME).status_code == 200
    rv = post(client, image.read_bytes(), path="/api/report?format=pdf")
    assert rv.status_code == 200
    page, report = audit_lines.records
    assert page["event"] == "predict" and page["endpoint"] == "/predict"
    assert report["event"] == "report" and report["report"] == "pdf"
    assert report["endpoint"] == "/api/report" and report["outcome"] == "ok"
    assert all("DOE" not in raw for raw in audit_lines.raw)


def test_proxy_user_and_address_only_behind_a_trusted_proxy(make_app, audit_lines, tmp_path):
    data = write_xray(tmp_path / "x.png").read_bytes()
    headers = {"X-Forwarded-User": "dr.who", "X-Remote-User": "forged", "X-Forwarded-For": "10.1.2.3"}
    post(make_app().test_client(), data, headers=headers)
    post(make_app(TRUSTED_PROXIES=1).test_client(), data, headers=headers)
    post(make_app(TRUSTED_PROXIES=1, PROXY_USER_HEADER="X-Remote-User").test_client(), data,
         headers={"X-Remote-User": "dr.no"})
    direct, proxied, other = audit_lines.records
    assert (direct["user"], direct["auth"], direct["remote_addr"]) == ("anonymous", "none", "127.0.0.1")
    assert (proxied["user"], proxied["auth"], proxied["remote_addr"]) == ("dr.who", "proxy", "10.1.2.3")
    assert (other["user"], other["auth"]) == ("dr.no", "proxy")


def test_refused_api_calls_are_audited(make_app, audit_lines, tmp_path):
    client = make_app(API_TOKENS=tokens()).test_client()
    assert post(client, b"x", headers={"Authorization": "Bearer wrong-token-000000000"}).status_code == 401
    [line] = audit_lines.records
    assert line["event"] == "denied" and line["status"] == 401 and line["user"] == "anonymous"
    assert "wrong-token" not in audit_lines.raw[0]


def test_a_busy_server_is_audited(make_app, audit_lines, tmp_path):
    client = make_app(MAX_INFLIGHT=0).test_client()
    assert post(client, write_xray(tmp_path / "x.png").read_bytes()).status_code == 503
    [line] = audit_lines.records
    assert line["status"] == 503 and line["outcome"] == "busy" and line["models"] == []


def test_audit_goes_to_stderr_as_json(make_app, tmp_path, capsys):
    post(make_app().test_client(), write_xray(tmp_path / "x.png").read_bytes())
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert [x["event"] for x in lines] == ["predict"]

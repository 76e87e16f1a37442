"""The Dockerfile passes hadolint and keeps the deployment promises."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app import docker_engine
from tests.app.docker_engine import compose_command
from tests.helpers.tools import unavailable

ROOT = Path(__file__).resolve().parents[2]


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes():
    binary = _hadolint()
    if binary is None:
        unavailable("hadolint is not installed (pip install -r requirements-dev.txt)")
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
    """The app sits behind the TLS proxy only; models read-only; the secret key is a compose secret."""
    compose = _compose()
    app, proxy = compose["services"]["app"], compose["services"]["proxy"]
    assert app["network_mode"] == "none" and "ports" not in app and "expose" not in app
    assert "${CXRLAB_MODELS:-./models}:/srv/cxrlab/models:ro" in app["volumes"]
    assert app["environment"]["CXRLAB_BIND"] == "unix:/run/cxrlab/gunicorn.sock"
    assert app["environment"]["CXRLAB_TRUSTED_PROXIES"] == 1           # nginx, and only nginx
    assert app["read_only"] is True and app["stop_grace_period"] == "35s"
    assert "socket:/run/cxrlab" in app["volumes"] and "socket:/run/cxrlab:ro" in proxy["volumes"]
    assert "${CXRLAB_HTTPS_PORT:-443}:443" in proxy["ports"]
    assert proxy["depends_on"]["app"]["condition"] == "service_healthy"
    # Secrets are files under /run/secrets, never environment values (docker inspect shows those).
    assert app["secrets"] == ["cxrlab_secret_key"] and proxy["secrets"] == ["htpasswd"]
    assert app["environment"]["CXRLAB_SECRET_KEY_FILE"] == "/run/secrets/cxrlab_secret_key"
    assert not any("SECRET_KEY=" in str(v) or k == "CXRLAB_SECRET_KEY" for k, v in app["environment"].items())
    assert compose["secrets"] == {
        "cxrlab_secret_key": {"file": "${CXRLAB_SECRETS:-./deploy/secrets}/secret_key"},
        "htpasswd": {"file": "${CXRLAB_SECRETS:-./deploy/secrets}/htpasswd"}}


def test_compose_hardening():
    """No capabilities the service does not need, no privilege gain, bounded memory, pids, /tmp."""
    services = _compose()["services"]
    app, proxy = services["app"], services["proxy"]
    for service in (app, proxy):
        assert service["cap_drop"] == ["ALL"]
        assert service["security_opt"] == ["no-new-privileges:true"]
        # docker-compose 1.29 refuses an interpolated (string) pids_limit: a number it must be.
        assert isinstance(service["pids_limit"], int) and 0 < service["pids_limit"] <= 1024
    assert "cap_add" not in app                                     # uid 10001 needs none
    assert sorted(proxy["cap_add"]) == ["CHOWN", "DAC_READ_SEARCH", "NET_BIND_SERVICE", "SETGID", "SETUID"]
    assert app["mem_limit"] == "${CXRLAB_MEM_LIMIT:-6g}" and proxy["mem_limit"] == "256m"
    assert app["tmpfs"] == ["/tmp:size=${CXRLAB_TMP_SIZE:-256m}"]


def _nginx_server_blocks() -> tuple[str, str]:
    """deploy/nginx/cxrlab.conf without comments: (the HTTPS server's own directives, its locations)."""
    text = "\n".join(line.split("#", 1)[0] for line in
                     (ROOT / "deploy" / "nginx" / "cxrlab.conf").read_text().splitlines())
    https = text[text.index("listen 443 ssl;"):]
    first_location = https.index("location ")
    return https[:first_location], https[first_location:]


def test_nginx_asks_for_a_login_except_healthz():
    server, locations = _nginx_server_blocks()
    assert 'auth_basic           "cxrlab";' in server
    assert "auth_basic_user_file /run/secrets/htpasswd;" in server
    # Only /healthz opens: every other location (and any added later) inherits the login.
    opened = re.findall(r"location\s+([^{]+)\{[^}]*auth_basic\s+off;", locations)
    assert [x.strip() for x in opened] == ["= /healthz"]
    # The password stops at the proxy; the login name is set by nginx (clients cannot forge it).
    assert 'proxy_set_header Authorization "";' in server
    assert "proxy_set_header X-Forwarded-User $remote_user;" in server
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in server
    assert "server unix:/run/cxrlab/gunicorn.sock;" in (ROOT / "deploy" / "nginx" / "cxrlab.conf").read_text()
    # proxy_set_header is inherited only by locations that set none of their own.
    assert "proxy_set_header" not in locations


def _nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].lower() in units else int(value)


def test_nginx_limits_in_step_with_the_app():
    """The app's upload limit (for the upload and the report's multipart re-post) fits under
    nginx's body limit with a small margin; nginx waits longer than the app's time limit."""
    from app.config import from_env

    server, _ = _nginx_server_blocks()
    body = _nginx_size(re.search(r"client_max_body_size\s+(\w+);", server).group(1))
    defaults = from_env({"CXRLAB_SECRET_KEY": "x"})
    upload = defaults["MAX_CONTENT_LENGTH"]
    assert upload < body <= upload + 2 * 1024 ** 2, (upload, body)
    read_timeout = int(re.search(r"proxy_read_timeout\s+(\d+)s;", server).group(1))
    assert defaults["REQUEST_TIMEOUT"] < read_timeout <= defaults["REQUEST_TIMEOUT"] + 30


def _compose_config(cmd: list[str], extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXRLAB_")}
    return subprocess.run([*cmd, "-f", str(ROOT / "compose.yaml"), "config"], cwd=ROOT,
                          env={**env, **extra_env}, capture_output=True, text=True, timeout=60, check=False)


def test_compose_config_validates(tmp_path):
    """``docker compose config`` accepts the file and resolves the host-side settings.
    (That ``up`` refuses without the secret files is checked on a real engine:
    test_docker_image.py; ``config`` does not look at them.)"""
    cmd = compose_command()
    if cmd is None:
        unavailable("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install "
                    "docker-compose)")
    import yaml

    ok = _compose_config(cmd, {"CXRLAB_MODELS": str(tmp_path / "m"), "CXRLAB_SECRETS": str(tmp_path / "s"),
                               "CXRLAB_MEM_LIMIT": "3g"})
    assert ok.returncode == 0, ok.stderr
    assert str(tmp_path / "m") in ok.stdout and "/srv/cxrlab/models" in ok.stdout
    resolved = yaml.safe_load(ok.stdout)
    assert {k: v["file"] for k, v in resolved["secrets"].items()} == {
        "cxrlab_secret_key": str(tmp_path / "s" / "secret_key"), "htpasswd": str(tmp_path / "s" / "htpasswd")}
    # docker-compose 1.x keeps "3g"; the compose plugin writes bytes.
    assert str(resolved["services"]["app"]["mem_limit"]) in ("3g", str(3 * 1024 ** 3))
    default = yaml.safe_load(_compose_config(cmd, {}).stdout)
    assert str(default["services"]["app"]["mem_limit"]) in ("6g", str(6 * 1024 ** 3))


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


@pytest.mark.parametrize("ci", [False, True])
@pytest.mark.parametrize("missing", ["docker", "root", "dockerd-fails"])
def test_no_engine_skips_locally_and_fails_in_ci(monkeypatch, tmp_path, missing, ci):
    """Where no engine can start, the real-image tests skip with the reason, and fail with it
    under CI=true (CI must run them: .ci/run installs the engine)."""
    monkeypatch.setattr(docker_engine, "CACHE", tmp_path)
    monkeypatch.setattr(docker_engine.Engine, "answers", lambda self: False)
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    real_which = shutil.which
    if missing == "docker":
        monkeypatch.setattr(docker_engine.shutil, "which", lambda name: None)
    else:
        monkeypatch.setattr(docker_engine.shutil, "which",
                            lambda name: "/bin/false" if name == "dockerd" else real_which(name) or name)
        monkeypatch.setattr(docker_engine.os, "geteuid", lambda: 1000 if missing == "root" else 0)
    with pytest.raises(pytest.fail.Exception if ci else pytest.skip.Exception) as exc:
        docker_engine.require_engine(timeout=10)
    expected = {"docker": "not installed", "root": "needs root", "dockerd-fails": "dockerd exited with 1"}
    assert expected[missing] in str(exc.value) and "no Docker engine can run here" in str(exc.value)

"""The real Docker image, built and run as the README says, alone and behind nginx (compose.yaml).

Needs a Docker engine (started here when none runs: see tests/app/docker_engine.py); skipped
with the reason when none can start, failed under CI=true (tests/helpers/tools.py). No
registry is used: the base images are made from Debian packages and cached in
~/.cache/cxrlab-docker (first run about 5 minutes on 2 cores).
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import ssl
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.app import docker_engine as de
from tests.app.tiny_models import SPECS, write_models
from tests.conftest import KERMANY
from tests.helpers.images import write_xray
from tests.helpers.tools import require_tool, unavailable

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 35            # the README's --stop-timeout: gunicorn's graceful timeout (30 s) + 5
pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1200)]


# --- engine, images, inputs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def engine() -> Iterator[de.Engine]:
    eng = de.require_engine()
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def base(engine) -> str:
    try:
        return de.base_image(engine)
    except de.EngineUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="module")
def image(engine, base) -> Iterator[str]:
    """The project's Dockerfile built on the local base image (removed at the end)."""
    tag = f"cxrlab-test:{uuid.uuid4().hex[:8]}"
    try:
        yield de.build(engine, ROOT, tag, build_args={"BASE_IMAGE": base})
    finally:
        engine.docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Two tiny models with cards, saved by the project's own code (file modes included); no
    OOD gate: fitted on synthetic images, it would refuse the real X-ray this test posts."""
    return write_models(tmp_path_factory.mktemp("docker-bank") / "models", gated=False)


@pytest.fixture(scope="module")
def xray(tmp_path_factory) -> Path:
    """A real chest X-ray from ../shared/data (a generated PNG where absent), under a unique name."""
    folder = tmp_path_factory.mktemp("upload")
    marker = f"upload-{uuid.uuid4().hex}"
    real = sorted((KERMANY / "train").rglob("*.jpeg"))[:1] if (KERMANY / "train").is_dir() else []
    if real:
        return Path(shutil.copyfile(real[0], folder / f"{marker}.jpeg"))
    return write_xray(folder / f"{marker}.png", h=256, w=224)


@contextmanager
def container(engine: de.Engine, *args: str) -> Iterator[str]:
    """``docker run -d ARGS``; the container is removed on exit whatever happened."""
    name = f"cxrlab-test-{uuid.uuid4().hex[:8]}"
    engine.docker("run", "-d", "--name", name, *args)
    try:
        yield name
    finally:
        engine.docker("rm", "-f", "-v", name, check=False)


# --- HTTP through the container -----------------------------------------------------------

def connect(host: str, port: int, tls: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    if tls is not None:
        return http.client.HTTPSConnection(host, port, timeout=120, context=tls)
    return http.client.HTTPConnection(host, port, timeout=120)


def request(conn, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    try:
        conn.request(method, path, body=body, headers=headers or {})
        rv = conn.getresponse()
        return rv.status, {k.lower(): v for k, v in rv.getheaders()}, rv.read()
    finally:
        conn.close()


def multipart(path: Path, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (fields or {}).items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def check_predict_api(open_conn, xray: Path, auth: dict | None = None) -> None:
    body, ctype = multipart(xray)
    status, _, raw = request(open_conn(), "POST", "/api/predict", body, {"Content-Type": ctype, **(auth or {})})
    assert status == 200, raw[:500]
    result = json.loads(raw)
    assert sorted(m["name"] for m in result["models"]) == sorted(s[0] for s in SPECS)


def check_upload_page(open_conn, xray: Path, origin: str, auth: dict | None = None) -> str:
    """GET the upload form (CSRF token + session cookie), POST the X-ray, get the result page;
    returns the session's Set-Cookie header."""
    status, headers, page = request(open_conn(), "GET", "/", headers=auth)
    assert status == 200
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1).decode()
    cookie = headers["set-cookie"].split(";", 1)[0]
    body, ctype = multipart(xray, {"csrf_token": token, "heatmap_class": "auto"})
    status, _, page = request(open_conn(), "POST", "/predict", body,
                              {"Content-Type": ctype, "Cookie": cookie, "Referer": origin + "/", **(auth or {})})
    assert status == 200, page[:500]
    assert all(name.encode() in page for name, *_ in SPECS)
    return headers["set-cookie"]


def assert_no_upload_in_logs(logs: str, xray: Path) -> None:
    assert "POST /api/predict" in logs and "POST /predict" in logs      # the access log was captured
    assert xray.stem not in logs                                        # no file names
    assert "JFIF" not in logs and "\x89PNG" not in logs                 # no image bytes


# --- the image ----------------------------------------------------------------------------

def test_image_holds_only_the_app(engine, image, record_property):
    """No tests, models, data, outputs, git history, compilers or dev requirements; non-root user."""
    assert engine.docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == "10001"
    ours = " -o ".join(f"-name '{n}'" for n in (".git", "*.keras", "*.h5", "card.json", "split*.csv",
                                                "*.jpeg", "*.dcm", "demo-output", ".venv"))
    script = "; ".join([
        "ls -A /srv/cxrlab", "echo ---", "find /srv/cxrlab/models -mindepth 1",
        # Libraries' own sample files (pydicom, h5py) are theirs; anything else would be ours.
        f"find / -xdev -path /opt/venv -prune -o \\( {ours} -o -path /srv/cxrlab/tests "
        "-o -path /srv/cxrlab/out \\) -print",
        "command -v gcc cc g++ || true",
        "pip list --format=freeze | grep -iE '^(pytest|hadolint|playwright)' || true"])
    out = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script).stdout
    top, _, rest = out.partition("---\n")
    assert sorted(top.split()) == sorted(["app", "training", "templates", "static", "models", "wsgi.py",
                                         "gunicorn.conf.py", "healthcheck.py", "requirements.txt"])
    assert rest.strip() == "", f"unexpected files in the image:\n{rest}"
    size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    record_property("image_size_bytes", size)
    print(f"\nimage size: {size / 1e9:.2f} GB ({size} bytes)")


def network_args(engine: de.Engine, port: int, stack: ExitStack) -> list[str]:
    """``-p PORT:8000`` as the README says, on a user-defined network (the engine may have no
    default bridge); ``--network host`` with gunicorn on PORT where no network can be made."""
    name = f"cxrlab-test-{uuid.uuid4().hex[:8]}"
    if engine.docker("network", "create", name, check=False).returncode == 0:
        stack.callback(engine.docker, "network", "rm", name, check=False)
        return ["--network", name, "-p", f"127.0.0.1:{port}:8000"]
    return ["--network", "host", "-e", f"CXRLAB_BIND=127.0.0.1:{port}"]


def test_documented_docker_run(engine, image, models, xray):
    """README: ``docker run --stop-timeout 35 -p 8000:8000 -v "$PWD/models:/srv/cxrlab/models:ro" cxrlab``."""
    port = de.free_port()
    with ExitStack() as stack:
        args = network_args(engine, port, stack)
        name = stack.enter_context(container(
            engine, "--stop-timeout", str(STOP_TIMEOUT), *args,
            "-v", f"{models}:/srv/cxrlab/models:ro", image))
        de.wait_healthy(engine, name)

        def open_conn():
            return connect("127.0.0.1", port)

        status, _, raw = request(open_conn(), "GET", "/healthz")
        assert status == 200 and json.loads(raw)["models"] == len(SPECS)
        check_predict_api(open_conn, xray)
        check_upload_page(open_conn, xray, f"http://127.0.0.1:{port}")

        uids = engine.docker("top", name, "-o", "pid,uid,args").stdout.splitlines()[1:]
        assert uids and all(line.split()[1] == "10001" for line in uids), uids
        write = engine.docker("exec", name, "sh", "-c", "touch /srv/cxrlab/models/x", check=False)
        assert write.returncode != 0 and "Read-only file system" in write.stderr

        t0 = time.monotonic()
        engine.docker("stop", name, timeout=STOP_TIMEOUT + 30)
        assert time.monotonic() - t0 < STOP_TIMEOUT - 2, "docker stop had to kill the container"
        assert de.inspect(engine, name, "{{.State.ExitCode}}") == "0"
        logs = engine.docker("logs", name)
        assert_no_upload_in_logs(logs.stdout + logs.stderr, xray)


# --- compose.yaml: nginx terminating TLS and asking for a login, in front of the app ------

def self_signed_cert(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    de.run_checked(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")], timeout=60)
    # As an operator's key usually is: 0600 and not root's, so nginx's master (root without
    # DAC_OVERRIDE in compose.yaml) reads it with DAC_READ_SEARCH alone.
    (folder / "tls.key").chmod(0o600)
    if os.geteuid() == 0:
        os.chown(folder / "tls.key", 1000, 1000)
    return folder


def write_secrets(folder: Path, users: dict[str, str]) -> Path:
    """compose.yaml's recipe: the secret key, and an htpasswd with one user by ``htpasswd -B``
    (bcrypt) and one by ``openssl passwd -6`` (SHA-512 crypt); folder 0700, files 0644."""
    htpasswd = require_tool("htpasswd", "Debian: apt-get install apache2-utils")
    folder.mkdir(mode=0o700)
    (folder / "secret_key").write_text(secrets.token_hex(32) + "\n")
    (bcrypt_user, bcrypt_pw), (sha_user, sha_pw) = users.items()
    de.run_checked([htpasswd, "-B", "-b", "-c", str(folder / "htpasswd"), bcrypt_user, bcrypt_pw], timeout=60)
    sha = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=sha_pw, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    with open(folder / "htpasswd", "a") as out:
        out.write(f"{sha_user}:{sha}\n")
    for name in ("secret_key", "htpasswd"):
        (folder / name).chmod(0o644)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    return folder


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def nginx_image(engine, base) -> Iterator[str]:
    tag = f"cxrlab-test-nginx:{uuid.uuid4().hex[:8]}"
    try:
        yield de.build(engine, ROOT / "deploy" / "nginx", tag, build_args={"BASE_IMAGE": base})
    finally:
        engine.docker("rmi", "-f", tag, check=False)


def compose_project(engine: de.Engine, cmd: list[str], env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """``compose(*args)`` for a fresh project with ``env`` (the caller's CXRLAB_* left out)."""
    project = [*cmd, "-p", f"cxrlabtest{uuid.uuid4().hex[:8]}", "-f", str(ROOT / "compose.yaml")]
    full = {**{k: v for k, v in engine.env.items() if not k.startswith("CXRLAB_")}, **env}

    def compose(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*project, *args], env=full, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, check=False)

    return compose


@contextmanager
def compose_up(engine: de.Engine, cmd: list[str],
               env: dict[str, str]) -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """``compose up -d`` as a fresh project; yields ``compose(*args)``; ``down -v`` on exit."""
    compose = compose_project(engine, cmd, env)
    try:
        up = compose("up", "-d", "--no-build")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield compose
    finally:
        compose("down", "-v", "--remove-orphans", "-t", str(STOP_TIMEOUT), timeout=STOP_TIMEOUT + 120)


def wait_proxied(open_conn, timeout: float = 30) -> tuple[int, dict, bytes]:
    """GET /healthz through the proxy, retrying while nginx starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return request(open_conn(), "GET", "/healthz")
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def host_config(engine: de.Engine, container: str) -> dict:
    return json.loads(de.inspect(engine, container, "{{json .HostConfig}}"))


def check_hardening(engine: de.Engine, app: str, proxy: str, secret_key: str) -> None:
    """compose.yaml's limits as Docker applied them, and their effect inside the app."""
    app_hc, proxy_hc = host_config(engine, app), host_config(engine, proxy)
    for hc in (app_hc, proxy_hc):
        assert hc["CapDrop"] == ["ALL"] and hc["SecurityOpt"] == ["no-new-privileges:true"], hc
    assert not app_hc["CapAdd"]
    assert sorted(c.removeprefix("CAP_") for c in proxy_hc["CapAdd"]) == [
        "CHOWN", "DAC_READ_SEARCH", "NET_BIND_SERVICE", "SETGID", "SETUID"]
    assert (app_hc["Memory"], app_hc["PidsLimit"]) == (6 * 1024 ** 3, 512)
    assert (proxy_hc["Memory"], proxy_hc["PidsLimit"]) == (256 * 1024 ** 2, 256)
    assert app_hc["ReadonlyRootfs"] is True and app_hc["Tmpfs"] == {"/tmp": "size=256m"}
    status = engine.docker("exec", app, "cat", "/proc/1/status").stdout
    assert re.search(r"^CapBnd:\s+0+$", status, re.M) and re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    tmp = engine.docker("exec", app, "df", "-k", "/tmp").stdout.splitlines()[-1].split()
    assert tmp[0] == "tmpfs" and int(tmp[1]) == 256 * 1024, tmp
    # nginx's workers run unprivileged; only its master is root.
    procs = [line.split(None, 2)[1:] for line in
             engine.docker("top", proxy, "-o", "pid,uid,args").stdout.splitlines()[1:]]
    workers = [uid for uid, args in procs if "worker process" in args]
    assert workers and "0" not in workers, procs
    # The secret key: read by the app from /run/secrets, in no environment variable.
    assert secret_key not in engine.docker("inspect", app).stdout
    digest = engine.docker("exec", app, "python", "-c", "import hashlib; from app.config import from_env; "
                           "print(hashlib.sha256(from_env()['SECRET_KEY'].encode()).hexdigest())").stdout
    assert digest.split()[-1] == hashlib.sha256(secret_key.encode()).hexdigest()


def test_compose_deployment(engine, image, nginx_image, models, xray, tmp_path):
    """HTTPS through nginx (certificate checked against the self-signed CA), a login for the
    pages and the API, the hardening of compose.yaml; the app has no network."""
    cmd = de.compose_command(engine.env)
    if cmd is None:
        unavailable("docker compose is not installed (Debian: apt-get install docker-compose)")
    require_tool("openssl", "Debian: apt-get install openssl")
    certs = self_signed_cert(tmp_path / "certs")
    users = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}
    folder = write_secrets(tmp_path / "secrets", users)
    secret_key = (folder / "secret_key").read_text().strip()
    https, plain = de.free_port(), de.free_port()
    env = {"CXRLAB_IMAGE": image, "CXRLAB_NGINX_IMAGE": nginx_image, "CXRLAB_MODELS": str(models),
           "CXRLAB_CERTS": str(certs), "CXRLAB_SECRETS": str(folder),
           "CXRLAB_HTTPS_PORT": str(https), "CXRLAB_HTTP_PORT": str(plain)}

    # Without its secret files the stack does not start (no random key, no proxy without users).
    (tmp_path / "no-secrets").mkdir()
    refused = compose_project(engine, cmd, {**env, "CXRLAB_SECRETS": str(tmp_path / "no-secrets")})
    try:
        up = refused("up", "-d", "--no-build")
        assert up.returncode != 0 and re.search("secret_key|htpasswd", up.stdout + up.stderr), up.stderr[-2000:]
    finally:
        refused("down", "-v", "--remove-orphans", "-t", "1")

    with compose_up(engine, cmd, env) as compose:
        app = compose("ps", "-q", "app").stdout.strip()
        proxy = compose("ps", "-q", "proxy").stdout.strip()
        de.wait_healthy(engine, app)
        tls = ssl.create_default_context(cafile=str(certs / "tls.crt"))

        def open_conn():
            return connect("localhost", https, tls)

        # /healthz stays open for health checks.
        status, headers, raw = wait_proxied(open_conn)
        assert status == 200 and json.loads(raw)["models"] == len(SPECS), raw[:300]
        assert "max-age" in headers["strict-transport-security"]

        # Without a login (or with a wrong one) nginx answers 401, for the page and the API.
        body, ctype = multipart(xray)
        for method, path, payload, extra in (("GET", "/", None, {}),
                                             ("POST", "/api/predict", body, {"Content-Type": ctype}),
                                             ("GET", "/", None, basic_auth("alice", "wrong-" + users["alice"])),
                                             ("GET", "/", None, basic_auth("bob", users["alice"]))):
            status, headers, _ = request(open_conn(), method, path, payload, extra)
            assert status == 401 and headers["www-authenticate"] == 'Basic realm="cxrlab"', (method, path)

        # With one: the API, the upload form, and the session cookie marked Secure behind TLS.
        alice = basic_auth("alice", users["alice"])
        check_predict_api(open_conn, xray, alice)
        cookie = check_upload_page(open_conn, xray, f"https://localhost:{https}", alice)
        attributes = {a.strip().split("=", 1)[0].lower() for a in cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite"} <= attributes, cookie
        status, _, page = request(open_conn(), "GET", "/", headers=basic_auth("bob", users["bob"]))
        assert status == 200 and b"csrf_token" in page

        status, headers, _ = request(connect("localhost", plain), "GET", "/healthz")
        assert status == 301 and headers["location"].startswith("https://")

        # Reachable only through nginx: no network, no published port, no address.
        assert de.inspect(engine, app, "{{.HostConfig.NetworkMode}}") == "none"
        assert de.inspect(engine, app, "{{json .NetworkSettings.Ports}}") in ("{}", "null")
        assert de.inspect(engine, app, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}") == ""
        check_hardening(engine, app, proxy, secret_key)

        logs = compose("logs", "--no-color", "app")
        assert_no_upload_in_logs(logs.stdout + logs.stderr, xray)
        # The audit log names the proxy's user (X-Forwarded-User, trusted from nginx only).
        audit = [json.loads(line[line.index("{"):]) for line in (logs.stdout + logs.stderr).splitlines()
                 if '"event"' in line]
        assert {(a["event"], a["user"], a["auth"]) for a in audit} >= {("predict", "alice", "proxy")}, audit
        everything = compose("logs", "--no-color")
        for secret in (*users.values(), secret_key):
            assert secret not in everything.stdout + everything.stderr

"""Security headers on every kind of response."""
from __future__ import annotations

import re

import pytest

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
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


# ------------------------------------------------------------------ settings

TOKEN = "alice-token-0123456789abcdef"


def test_new_settings_from_env(tmp_path):
    from app.config import from_env, token_digest

    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    cfg = from_env({"CXRLAB_SECRET_KEY_FILE": str(secret), "CXRLAB_MAX_PIXELS": "1000",
                    "CXRLAB_REQUEST_TIMEOUT": "2.5", "CXRLAB_TRUSTED_PROXIES": "1",
                    "CXRLAB_SECURE_COOKIES": "true", "CXRLAB_DEVICE": "CPU",
                    "CXRLAB_API_TOKENS": f"alice:{TOKEN}, bob:bob-token-0123456789abcdef"})
    assert cfg["SECRET_KEY"] == "from-a-file" and cfg["MAX_PIXELS"] == 1000
    assert cfg["REQUEST_TIMEOUT"] == 2.5 and cfg["TRUSTED_PROXIES"] == 1
    assert cfg["SECURE_COOKIES"] is True and cfg["DEVICE"] == "cpu"
    assert cfg["API_TOKENS"] == {"alice": token_digest(TOKEN),
                                 "bob": token_digest("bob-token-0123456789abcdef")}
    assert TOKEN not in repr(cfg)                      # only digests are kept


def test_setting_defaults():
    from app.config import from_env
    from training.preprocess import DEFAULT_MAX_PIXELS

    cfg = from_env({"CXRLAB_SECRET_KEY": "k"})
    assert cfg["MAX_PIXELS"] == DEFAULT_MAX_PIXELS and cfg["REQUEST_TIMEOUT"] == 60
    assert cfg["API_TOKENS"] == {} and cfg["TRUSTED_PROXIES"] == 0
    assert cfg["SECURE_COOKIES"] == "auto" and cfg["DEVICE"] == "auto"
    assert cfg["PROXY_USER_HEADER"] == "X-Forwarded-User"
    assert cfg["SESSION_COOKIE_HTTPONLY"] is True and cfg["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_tokens_file_with_comments(tmp_path):
    from app.config import from_env, token_digest

    path = tmp_path / "tokens"
    path.write_text(f"# who may call the API\nalice:{TOKEN}\n\nscript-1:script-token-0123456789\n")
    cfg = from_env({"CXRLAB_SECRET_KEY": "k", "CXRLAB_API_TOKENS_FILE": str(path)})
    assert cfg["API_TOKENS"] == {"alice": token_digest(TOKEN),
                                 "script-1": token_digest("script-token-0123456789")}


@pytest.mark.parametrize("env, expected", [
    ({"CXRLAB_API_TOKENS": "alice-without-colon-0123456789"}, "entry 1 is not 'id:token'"),
    ({"CXRLAB_API_TOKENS": "alice:short-secret"}, "at least 16 characters"),
    ({"CXRLAB_API_TOKENS": f"alice:{TOKEN},alice:other-token-0123456789"}, "'alice' is used twice"),
    ({"CXRLAB_API_TOKENS": f"alice:{TOKEN},bob:{TOKEN}"}, "'bob' has the same token"),
    ({"CXRLAB_API_TOKENS": f"al ice:{TOKEN}"}, "entry 1 is not"),
    ({"CXRLAB_API_TOKENS": f"alice:{TOKEN}", "CXRLAB_API_TOKENS_FILE": "/x"}, "Both CXRLAB_API_TOKENS"),
    ({"CXRLAB_API_TOKENS_FILE": "/nonexistent/tokens"}, "cannot be read"),
    ({"CXRLAB_SECRET_KEY": "a", "CXRLAB_SECRET_KEY_FILE": "/x"}, "Both CXRLAB_SECRET_KEY"),
    ({"CXRLAB_SECRET_KEY_FILE": "/nonexistent/secret"}, "CXRLAB_SECRET_KEY_FILE='/nonexistent/secret' cannot"),
    ({"CXRLAB_REQUEST_TIMEOUT": "0"}, "CXRLAB_REQUEST_TIMEOUT='0' must be a positive"),
    ({"CXRLAB_REQUEST_TIMEOUT": "soon"}, "CXRLAB_REQUEST_TIMEOUT='soon' is not a number"),
    ({"CXRLAB_MAX_PIXELS": "0"}, "CXRLAB_MAX_PIXELS=0 must be at least 1"),
    ({"CXRLAB_TRUSTED_PROXIES": "-1"}, "CXRLAB_TRUSTED_PROXIES=-1"),
    ({"CXRLAB_SECURE_COOKIES": "maybe"}, "CXRLAB_SECURE_COOKIES='maybe' is not one of auto"),
    ({"CXRLAB_DEVICE": "tpu"}, "CXRLAB_DEVICE='tpu' is not one of auto, cpu, gpu"),
    ({"CXRLAB_PROXY_USER_HEADER": "X-User: x"}, "is not an HTTP header name"),
])
def test_bad_settings_are_explained_without_echoing_secrets(env, expected):
    from app.config import ConfigError, from_env
    from training.errors import CXRError

    with pytest.raises(ConfigError, match=re.escape(expected)) as caught:
        from_env({"CXRLAB_SECRET_KEY": "k", **env} if "CXRLAB_SECRET_KEY_FILE" not in env else env)
    assert isinstance(caught.value, CXRError) and isinstance(caught.value, ValueError)
    assert TOKEN not in str(caught.value) and "short-secret" not in str(caught.value)


def test_empty_secret_file_is_refused(tmp_path):
    from app.config import ConfigError, from_env

    (tmp_path / "s").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        from_env({"CXRLAB_SECRET_KEY_FILE": str(tmp_path / "s")})


def test_create_app_refuses_a_bad_device_setting(monkeypatch):
    from app import create_app
    from app.config import ConfigError

    monkeypatch.setenv("CXRLAB_DEVICE", "foo")
    with pytest.raises(ConfigError, match="CXRLAB_DEVICE"):
        create_app({"MODEL_BANK": object(), "SECRET_KEY": "t"})


def test_device_gpu_without_a_gpu_stops_start_up(make_app, tmp_path):
    """Also with a pre-loaded bank, and with no model folder at all."""
    from app import create_app
    from training.engine.device import gpu_count
    from training.errors import CXRError

    if gpu_count():
        pytest.skip("this machine has a GPU: CXRLAB_DEVICE=gpu is valid here")
    with pytest.raises(CXRError, match="CXRLAB_DEVICE=gpu but TensorFlow sees no GPU"):
        make_app(DEVICE="gpu")
    with pytest.raises(CXRError, match="CXRLAB_DEVICE=gpu"):
        create_app({"MODELS_DIR": str(tmp_path / "none"), "DEVICE": "gpu", "SECRET_KEY": "t"})


# ------------------------------------------------------------------ API access

def _tokens():
    from app.config import parse_tokens

    return parse_tokens(f"alice:{TOKEN}")


def _post(client, tmp_path, headers=None, path="/api/predict"):
    from tests.helpers.images import write_xray

    image = write_xray(tmp_path / "x.png")
    return client.post(path, data={"file": (image.open("rb"), "x.png")},
                       content_type="multipart/form-data", headers=headers or {})


def test_token_id_compares_every_token():
    from app.config import parse_tokens
    from app.security import token_id

    tokens = parse_tokens(f"alice:{TOKEN},bob:bob-token-0123456789abcdef")
    assert token_id(f"Bearer {TOKEN}", tokens) == "alice"
    assert token_id("bearer bob-token-0123456789abcdef", tokens) == "bob"
    for header in (None, "", TOKEN, f"Basic {TOKEN}", "Bearer ", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"):
        assert token_id(header, tokens) is None


@pytest.mark.parametrize("header", [None, "Bearer not-the-token-0123456789", f"Basic {TOKEN}"])
def test_with_tokens_the_api_needs_one(make_app, tmp_path, header):
    client = make_app(API_TOKENS=_tokens()).test_client()
    headers = {"Authorization": header} if header else {}
    for rv in (_post(client, tmp_path, headers), client.get("/api/models", headers=headers),
               _post(client, tmp_path, headers, "/api/report?format=pdf")):
        assert rv.status_code == 401 and rv.headers["WWW-Authenticate"].startswith("Bearer")
        body = rv.get_json()
        assert body["status"] == 401 and "Authorization: Bearer" in body["message"]
        assert "alice" not in rv.get_data(as_text=True)         # no hint of which ids exist
        assert rv.headers["X-Frame-Options"] == "DENY"          # still a hardened response


def test_with_tokens_a_valid_one_passes_and_health_and_pages_stay_open(make_app, tmp_path):
    from tests.app.conftest import upload
    from tests.helpers.images import write_xray

    client = make_app(API_TOKENS=_tokens()).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert _post(client, tmp_path, auth).status_code == 200
    assert client.get("/api/models", headers=auth).status_code == 200
    assert client.get("/healthz").status_code == 200
    # A valid token is not subject to the cross-site check (a browser cannot send it cross-site).
    assert _post(client, tmp_path, {**auth, "Sec-Fetch-Site": "cross-site"}).status_code == 200
    # The HTML form keeps its CSRF token and needs no API token.
    assert upload(client, write_xray(tmp_path / "p.png")).status_code == 200
    assert upload(client, write_xray(tmp_path / "p.png"), token=False).status_code == 400


@pytest.mark.parametrize("headers, status", [
    ({}, 200),                                                      # curl, scripts
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, 200),
    ({"Origin": "http://localhost"}, 200),                          # a browser without fetch metadata
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),                         # another host of the same site
    ({"Origin": "https://evil.example"}, 403),
    ({"Origin": "http://localhost.evil.example"}, 403),
    ({"Origin": "null"}, 403),                                      # sandboxed frames, data: pages
    ({"Origin": "http://[oops"}, 403),                              # not a URL: not our page
])
def test_without_tokens_cross_site_api_posts_are_refused(client, tmp_path, headers, status):
    rv = _post(client, tmp_path, headers)
    assert rv.status_code == status
    if status == 403:
        assert rv.is_json and "Cross-site requests to the API are refused" in rv.get_json()["message"]


def test_cross_site_get_of_the_model_list_is_harmless_and_allowed(client):
    assert client.get("/api/models", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


# ------------------------------------------------------------------ cookies and the proxy

def _cookie(app, base_url="http://localhost", headers=None) -> str:
    rv = app.test_client().get("/", base_url=base_url, headers=headers or {})
    [cookie] = [v for k, v in rv.headers.items() if k == "Set-Cookie" and v.startswith("session=")]
    return cookie


@pytest.mark.parametrize("config, base_url, headers, secure", [
    ({}, "http://localhost", {}, False),                                         # auto, plain http
    ({}, "https://localhost", {}, True),                                         # auto, TLS
    ({}, "http://localhost", {"X-Forwarded-Proto": "https"}, False),             # untrusted header
    ({"TRUSTED_PROXIES": 1}, "http://localhost", {"X-Forwarded-Proto": "https"}, True),
    ({"TRUSTED_PROXIES": 1}, "http://localhost", {"X-Forwarded-Proto": "http"}, False),
    ({"SECURE_COOKIES": True}, "http://localhost", {}, True),
    ({"SECURE_COOKIES": False}, "https://localhost", {}, False),
])
def test_session_cookie_flags(make_app, config, base_url, headers, secure):
    cookie = _cookie(make_app(**config), base_url, headers)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("; Secure" in cookie) is secure


def test_forms_work_over_https_behind_the_trusted_proxy(make_app, tmp_path):
    """Over HTTPS Flask-WTF also wants a same-origin Referer: the Referrer-Policy lets the
    browser send it (no-referrer would break every form once the app knows it is on HTTPS)."""
    from tests.app.conftest import upload
    from tests.helpers.images import write_xray

    client = make_app(TRUSTED_PROXIES=1).test_client()
    client.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"          # nginx, on every request
    assert client.get("/").headers["Referrer-Policy"] == "same-origin"
    image = write_xray(tmp_path / "x.png")
    missing = upload(client, image)
    assert missing.status_code == 400 and "security token" in missing.get_data(as_text=True)
    client.environ_base["HTTP_REFERER"] = "https://localhost/"       # what the browser sends
    assert upload(client, image).status_code == 200

"""Security on every request: headers, API access control, cookies, the proxy in front.

API access (``/api/*``; ``/healthz`` stays open for health checks):

- with ``CXRLAB_API_TOKENS`` set, a request without a valid ``Authorization: Bearer`` token
  gets 401 (the same answer for a missing, malformed or unknown token);
- without tokens, an API call that changes or costs something (POST) is refused (403) when
  a browser says it comes from another site (``Sec-Fetch-Site``, ``Origin``): the API takes
  no CSRF token, so this is what stops a web page from posting X-rays to it. curl and
  scripts send neither header and keep working.

The HTML pages keep Flask-WTF's CSRF token; log-in for them is the reverse proxy's job.
"""
from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from app import audit
from app.config import token_digest

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Same-origin requests keep their Referer: over HTTPS, Flask-WTF's CSRF check needs it
    # (behind the TLS proxy too, with CXRLAB_TRUSTED_PROXIES); no other site ever gets one.
    "Referrer-Policy": "same-origin",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Fetch-metadata values of a request the API's own origin (or no page at all) made.
SAME_ORIGIN = frozenset({"same-origin", "none"})


def add_headers(response: Response) -> Response:
    for key, value in HEADERS.items():
        response.headers.setdefault(key, value)
    # Results (pages and JSON) describe a patient's image: no browser or proxy may keep them.
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------ who is asking

def token_id(header: str | None, tokens: dict[str, bytes]) -> str | None:
    """The id whose token ``header`` (``Bearer <token>``) carries, else None.

    Compares SHA-256 digests in constant time with every id (no early exit), so neither the
    answer time nor a partial match says which tokens exist.
    """
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    digest = token_digest(token.strip())
    found = None
    for ident, expected in tokens.items():
        if hmac.compare_digest(digest, expected):
            found = ident
    return found


def current_user() -> tuple[str, str]:
    """``(user, how known)``: the API token's id, else the login proxy's user header
    (``CXRLAB_PROXY_USER_HEADER``), else anonymous.

    The header counts only with ``CXRLAB_TRUSTED_PROXIES`` (otherwise anyone could write it),
    and only the one the proxy sets on every request, overwriting what a client sent.
    """
    ident = g.get("cxrlab_token_id")
    if ident:
        return ident, "token"
    config = current_app.config
    if config.get("TRUSTED_PROXIES"):
        user = request.headers.get(config.get("PROXY_USER_HEADER", "X-Forwarded-User"), "").strip()
        if user:
            return user[:128], "proxy"
    return "anonymous", "none"


# ------------------------------------------------------------------ API access

def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    audit.denied(status, current_user())
    response = jsonify(error="Unauthorized" if status == 401 else "Forbidden", message=message,
                       status=status)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _cross_site() -> bool:
    """Whether a browser says this request comes from a page of another origin.

    ``Origin`` is compared by host and port only: behind a TLS proxy without
    ``CXRLAB_TRUSTED_PROXIES`` the app sees http while the browser says https.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in SAME_ORIGIN:
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    try:
        host = urlsplit(origin).netloc.lower()
    except ValueError:      # not a URL at all ("http://[oops"): no page of ours sent it
        return True
    return origin == "null" or host != request.host.lower()


def check_api_access() -> Response | None:
    """The before-request guard of ``/api/*`` (None lets the request through)."""
    if not request.path.startswith("/api/"):
        return None
    tokens = current_app.config.get("API_TOKENS") or {}
    if tokens:
        g.cxrlab_token_id = token_id(request.headers.get("Authorization"), tokens)
        if g.cxrlab_token_id is None:
            return _refusal(401, "This API needs a valid token: send 'Authorization: Bearer "
                                 "<token>' (ask the server's administrator for one).",
                            {"WWW-Authenticate": 'Bearer realm="cxrlab"'})
        return None
    if request.method not in SAFE_METHODS and _cross_site():
        return _refusal(403, "Cross-site requests to the API are refused. Use the upload page, "
                             "or call the API from a script (curl, Python) rather than a web page.")
    return None


# ------------------------------------------------------------------ cookies and the proxy

class SessionInterface(SecureCookieSessionInterface):
    """The session cookie, ``Secure`` also per request with ``CXRLAB_SECURE_COOKIES=auto``."""

    def get_cookie_secure(self, app: Flask) -> bool:
        if app.config.get("SECURE_COOKIES") == "auto":
            return request.is_secure   # https, as the trusted proxy says (ProxyFix)
        return bool(app.config["SESSION_COOKIE_SECURE"])


def init_app(app: Flask) -> None:
    secure = app.config.get("SECURE_COOKIES", "auto")
    app.config["SESSION_COOKIE_SECURE"] = secure is True
    app.session_interface = SessionInterface()
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:
        # Scheme and client address from X-Forwarded-Proto/-For, set by that many proxies.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    app.before_request(check_api_access)
    app.after_request(add_headers)

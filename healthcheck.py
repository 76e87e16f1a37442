"""Container health check: exit 0 when ``GET /healthz`` answers 200 on gunicorn's bind address.

Standard library only (the image has no curl). Reads ``CXRLAB_BIND`` like gunicorn.conf.py:
``HOST:PORT`` (``0.0.0.0``/``::`` are asked on loopback) or ``unix:/path/to.sock``.
Usage: ``python healthcheck.py [--timeout SECONDS]``.
"""
from __future__ import annotations

import http.client
import os
import socket
import sys


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (gunicorn behind a reverse proxy on the same host)."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def bind_address(env=None) -> str:
    """The first address gunicorn binds (same default as gunicorn.conf.py)."""
    env = os.environ if env is None else env
    bind = env.get("CXRLAB_BIND") or f"127.0.0.1:{env.get('PORT', '8000')}"
    return bind.replace(",", " ").split()[0]


def connection(bind: str, timeout: float) -> http.client.HTTPConnection:
    """An HTTP connection to a gunicorn bind address."""
    if bind.startswith("unix:"):
        return UnixHTTPConnection(bind[len("unix:"):], timeout)
    host, _, port = bind.rpartition(":")
    if not host:                              # a bare port
        host = "127.0.0.1"
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def check(bind: str, timeout: float = 4.0) -> tuple[bool, str]:
    """``(healthy, what happened)`` for ``GET /healthz`` at ``bind``."""
    conn = connection(bind, timeout)
    try:
        conn.request("GET", "/healthz", headers={"Host": "localhost"})
        rv = conn.getresponse()
        body = rv.read(2000).decode("utf-8", "replace")
        return rv.status == 200, f"{rv.status} {body.strip()}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    timeout = float(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else 4.0
    bind = bind_address()
    healthy, what = check(bind, timeout)
    print(f"{bind}: {what}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

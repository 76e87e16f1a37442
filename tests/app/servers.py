"""Run the app on loopback for end-to-end tests (gunicorn subprocess or werkzeug thread)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as rv:
                if rv.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url}/healthz not healthy after {timeout} s")


@contextmanager
def gunicorn_server(models_dir: Path, log_path: Path, timeout: float = 90.0) -> Iterator[str]:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free loopback port; stopped on exit."""
    port = free_port()
    env = {**os.environ, "CXRLAB_MODELS_DIR": str(models_dir), "CXRLAB_BIND": f"127.0.0.1:{port}",
           "CXRLAB_SECRET_KEY": "smoke", "CXRLAB_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, timeout=timeout, proc=proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextmanager
def thread_server(app) -> Iterator[str]:
    """The app under werkzeug's threaded server in a background thread."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        wait_healthy(url, timeout=10)
        yield url
    finally:
        server.shutdown()
        thread.join(10)

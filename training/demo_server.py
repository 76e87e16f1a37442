"""The web app as a child process of ``cxrlab demo --serve``: started once the first model is
ready, its address printed when it answers, reported if it stops, stopped with the demo.

It runs the same command as ``make serve`` (``cxrlab serve``), with ``CXRLAB_TRAINING_STATUS``
pointing at the demo's status file, so the app adds each model as the demo finishes it
(``app/model_watch.py``). Its output goes to ``OUT/serve.log``: the demo's terminal stays the
training's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

#: How often the watcher asks the app's health check, and for how long before it says so
POLL_SECONDS = 0.5
PATIENCE_SECONDS = 600.0
LOG_FILE = "serve.log"


def serve_command(out: Path, bind: str) -> list[str]:
    """``cxrlab serve`` for the demo's models and comparison (what ``make serve`` runs)."""
    return [sys.executable, "-m", "training", "serve", "--models-dir", str(out / "models"),
            "--compare-dir", str(out / "compare"), "--bind", bind]


def address(bind: str) -> str:
    """The URL a person opens for ``bind`` (``HOST:PORT``; a unix socket as it is)."""
    return bind if bind.startswith("unix:") else f"http://{bind}"


class DemoServer:
    """One ``cxrlab serve`` child: :meth:`start` (once), :meth:`wait` (foreground), :meth:`stop`."""

    def __init__(self, out: Path, bind: str, status_path: Path) -> None:
        self.out, self.bind, self.status_path = out, bind, status_path
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._up = threading.Event()        # the app answered (or stopped, or never will in time)
        self._waiting = threading.Event()   # the run is over: wait() reports an exit, not the watcher

    @property
    def started(self) -> bool:
        return self.proc is not None

    def start(self, n_ready: int) -> None:
        """Start the app (nothing if it runs already) and watch it from a daemon thread."""
        if self.proc is not None:
            return
        env = {**os.environ, "CXRLAB_TRAINING_STATUS": str(self.status_path)}
        log = self.out / LOG_FILE
        with open(log, "ab") as sink:  # the child keeps its own handle
            self.proc = subprocess.Popen(serve_command(self.out, self.bind), env=env, stdout=sink,
                                         stderr=subprocess.STDOUT)
        print(f"      starting the web app with {n_ready} model(s) ready; the others appear as they "
              f"finish (log: {log})", flush=True)
        threading.Thread(target=self._watch, name="demo-server-watch", daemon=True).start()

    def _watch(self) -> None:
        """Say the address once the app answers; say it if the app stops while the demo runs."""
        up, deadline = self.bind.startswith("unix:"), time.monotonic() + PATIENCE_SECONDS
        if up:  # a unix socket is not polled: nothing to wait for
            self._up.set()
        while not self._stopping.is_set():
            code = self.proc.poll()
            if code is not None:
                self._up.set()  # nothing to wait for any more
                if not (self._stopping.is_set() or self._waiting.is_set()):
                    print(f"\n      the web app stopped (exit code {code}); training goes on. Its log: "
                          f"{self.out / LOG_FILE}. What to do: read the log; after the demo, "
                          f"make serve OUT={self.out}", flush=True)
                return
            if not up and _answers(address(self.bind)):
                up = True
                self._up.set()
                print(f"\n      the app is up: {address(self.bind)}", flush=True)
            if not up and time.monotonic() > deadline:
                up = True
                self._up.set()
                print(f"\n      the web app has not answered in {PATIENCE_SECONDS:.0f} s; its log: "
                      f"{self.out / LOG_FILE}", flush=True)
            self._stopping.wait(POLL_SECONDS)

    def wait_up(self, timeout: float) -> bool:
        """Block until the app answers its health check (then its first models are loaded:
        ``create_app`` loads them before it serves), it stops, or ``timeout`` s pass; whether it answered."""
        return self._up.wait(timeout) and self.proc is not None and self.proc.poll() is None

    def wait(self) -> None:
        """Stay in the foreground while the app runs; Ctrl-C stops it cleanly."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            print(f"the web app is not running (exit code {self.proc.returncode}; log: "
                  f"{self.out / LOG_FILE}). What to do: make serve OUT={self.out}")
            return
        self._waiting.set()
        print(f"serving at {address(self.bind)} (Ctrl-C to stop)", flush=True)
        try:
            code = self.proc.wait()
            if code:
                print(f"the web app stopped (exit code {code}); its log: {self.out / LOG_FILE}")
        except KeyboardInterrupt:
            print("\nstopping the web app")
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the app (SIGTERM: running requests finish), then forget it."""
        self._stopping.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(35)  # gunicorn's graceful timeout is 30 s
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _answers(url: str) -> bool:
    """Whether the app's health check answers 200."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as rv:
            return rv.status == 200
    except OSError:
        return False

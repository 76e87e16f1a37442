"""The models of a demo that is still training, served as they finish, and the training panel.

Active only when ``CXRLAB_TRAINING_STATUS`` names the demo's status file (``cxrlab demo
--serve`` sets it; :mod:`training.demo_status`). A daemon thread of the worker reads the file
every few seconds and loads each model the file lists as done (saved with its card: never a
folder still being written), and again any whose card changed (its evaluations arrive so).
New runtimes are loaded and warmed up off to the side, then one new :class:`ModelBank` replaces the old one
(:func:`app.state.install_bank`): a request keeps the bank it started with, none sees a partial
one. The thread stops once the run is finished and its last models are in.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app import state
from app.device import configure_device
from app.model_bank import ModelBank, warm_up
from training.demo_progress import duration
from training.demo_status import DemoStatus, DemoStatusError, read_status
from training.errors import CXRError
from training.models.card import CARD_FILE
from training.runtime import Runtime, load

log = logging.getLogger(__name__)

#: Seconds between two reads of the status file
POLL_SECONDS = 3.0


@dataclass(frozen=True)
class Progress:
    """What the training panel says while the demo runs."""

    ready: tuple[str, ...]   # the models served now (folder names)
    planned: int
    text: str

    def to_json(self) -> dict:
        return {"active": True, "ready": list(self.ready), "planned": self.planned, "text": self.text}


def progress_of(status: DemoStatus | None) -> Progress | None:
    """The panel's record; None when there is no run or it has finished."""
    if status is None or status.finished:
        return None
    done = status.done
    text = f"{len(done)} of {len(status.planned)} models ready" + (f" ({', '.join(done)})" if done else "")
    if status.stage == "training" and status.current:
        text += f"; training {status.current}: epoch {status.epoch} of {status.epochs}"
    elif status.stage == "evaluating" and status.current:
        text += f"; evaluating {status.current}"
    elif status.stage in ("preparing", "comparing"):
        text += "; preparing the data" if status.stage == "preparing" else "; comparing the models"
    if status.eta_seconds is not None and status.stage != "comparing":
        text += f"; about {duration(status.eta_seconds)} left for the whole run (ETA)"
    return Progress(done, len(status.planned), text + ".")


def read_progress(path: str | None) -> Progress | None:
    """The panel's record from the status file at ``path`` (None: no setting, no run, or finished)."""
    return progress_of(_read(path)) if path else None


def _read(path: str) -> DemoStatus | None:
    try:
        return read_status(path)
    except DemoStatusError as exc:  # a broken file must not break every page
        log.warning("%s", exc)
        return None


def _card_digest(folder: Path) -> str | None:
    """The card's SHA-256 (a new evaluation changes it); None while it cannot be read."""
    try:
        return hashlib.sha256((folder / CARD_FILE).read_bytes()).hexdigest()
    except OSError:
        return None


class ModelWatch:
    """Loads the models a demo's status file lists as done into a new bank of its own."""

    def __init__(self, models_dir: str | Path, status_path: str | Path, device: str = "auto",
                 warmup: bool = True) -> None:
        self.root, self.status_path, self.warmup = Path(models_dir), str(status_path), warmup
        self.loaded: dict[str, tuple[str, Runtime]] = {}   # folder name -> (card digest, runtime)
        self.bank = ModelBank([], configure_device(device), self.root)
        self.finished = False

    def sync(self) -> ModelBank | None:
        """One read of the status file: the new bank when a model was added or reloaded, else None."""
        status = _read(self.status_path)
        if status is None:
            return None
        loaded, changed = dict(self.loaded), False
        for name in status.done:
            digest = _card_digest(self.root / name)
            if digest is None or loaded.get(name, ("",))[0] == digest:
                continue
            try:
                runtime = load(self.root / name)
                if self.warmup:
                    warm_up(runtime)   # before the swap: the first request does not pay for it
            except (CXRError, OSError, ValueError) as exc:
                log.warning("model %s could not be loaded yet (%s): trying again", name, type(exc).__name__)
                continue
            loaded[name], changed = (digest, runtime), True
        self.finished = status.finished and changed is False and set(status.done) <= set(loaded)
        if not changed:
            return None
        self.loaded = loaded
        self.bank = ModelBank([loaded[n][1] for n in sorted(loaded)], self.bank.device, self.root)
        log.info("serving %d model(s) of %d planned", len(self.bank), len(status.planned))
        return self.bank

    def start(self, extensions: dict, interval: float = POLL_SECONDS) -> threading.Thread:
        """Poll from a daemon thread, installing each new bank in ``extensions`` (the app's)."""
        def run() -> None:
            while not self.finished:
                try:
                    new = self.sync()
                    if new is not None:
                        state.install_bank(extensions, new)
                except Exception as exc:  # the watcher must outlive one bad read; no paths logged
                    log.warning("model watch: %s", type(exc).__name__)
                time.sleep(interval)

        thread = threading.Thread(target=run, name="cxrlab-model-watch", daemon=True)
        thread.start()
        return thread


def init_app(app) -> None:
    """The training panel's record on every page (``training_progress``); the watch's thread."""
    path = app.config.get("TRAINING_STATUS")
    app.context_processor(lambda: {"training_progress": read_progress(path)})
    watch = app.extensions["cxrlab"].get("watch")
    if watch is not None:
        watch.start(app.extensions["cxrlab"])

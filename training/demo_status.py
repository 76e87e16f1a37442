"""The demo's progress as one typed record in one file (``OUT/demo-status.json``).

Written atomically by ``cxrlab demo`` (:mod:`training.demo`) at every epoch end and model end,
read by the app (``CXRLAB_TRAINING_STATUS``): its model watcher loads a model only once this
record lists it as done (trained or reused, saved with its card), never a folder that is
still being written (the evaluations that follow update the card, which the watcher
reloads), and its training panel says how far the run is.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from training import io
from training.errors import CXRError

#: The record's file name in the demo's output folder
STATUS_FILE = "demo-status.json"
#: What the demo is doing (``stage``)
STAGES = ("preparing", "training", "evaluating", "comparing", "finished", "stopped")


class DemoStatusError(CXRError):
    """A status file that is not a demo status record."""


@dataclass(frozen=True)
class DemoStatus:
    """Where a demo run stands. Model entries are folder names under the demo's ``models``."""

    planned: tuple[str, ...]             # every model of the run, in training order
    done: tuple[str, ...] = ()           # servable: trained or reused, saved with its card
    current: str | None = None           # the model being trained or evaluated now
    epoch: int = 0                       # epochs of ``current`` finished
    epochs: int = 0                      # epochs per model
    eta_seconds: float | None = None     # time left of the whole run at the pace so far
    started_at: str = ""                 # ISO time the demo started
    stage: str = "preparing"             # one of STAGES
    finished: bool = False               # the run ended (done, or stopped): nothing more will come

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise DemoStatusError(f"demo status: stage {self.stage!r} is not one of {', '.join(STAGES)}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> DemoStatus:
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            fields = {k: v for k, v in raw.items() if k in known}
            fields["planned"] = tuple(str(n) for n in fields["planned"])
            fields["done"] = tuple(str(n) for n in fields.get("done", ()))
            return cls(**fields)
        except (KeyError, TypeError, AttributeError) as exc:
            raise DemoStatusError(f"demo status: not a status record ({type(exc).__name__}). What to "
                                  "do: let `cxrlab demo` write it, or unset CXRLAB_TRAINING_STATUS") from None


def write_status(path: str | os.PathLike, status: DemoStatus) -> Path:
    """Replace the status file in one step (readers see the old record or the new one)."""
    return io.write_json(path, status.to_json())


def read_status(path: str | os.PathLike) -> DemoStatus | None:
    """The record in ``path``; None while there is none yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DemoStatusError(f"demo status {path}: cannot be read ({type(exc).__name__})") from None
    try:
        raw = json.loads(text)
    except ValueError:
        raise DemoStatusError(f"demo status {path}: not JSON. What to do: let `cxrlab demo` write "
                              "it, or unset CXRLAB_TRAINING_STATUS") from None
    if not isinstance(raw, dict):
        raise DemoStatusError(f"demo status {path}: not a JSON object")
    return DemoStatus.from_json(raw)


class StatusFile:
    """The demo's side: the current record, rewritten on every change."""

    def __init__(self, path: str | os.PathLike, status: DemoStatus) -> None:
        self.path, self.status = Path(path), status
        write_status(self.path, status)

    def update(self, **changes) -> DemoStatus:
        """Change some fields and write the record (atomically)."""
        self.status = dataclasses.replace(self.status, **changes)
        write_status(self.path, self.status)
        return self.status

    def model_done(self, name: str) -> DemoStatus:
        """``name`` is finished: listed as done, no longer current."""
        done = self.status.done + (() if name in self.status.done else (name,))
        return self.update(done=done, current=None, epoch=0)

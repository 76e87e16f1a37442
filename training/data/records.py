"""The card's records of the data a model was trained on: the split and a data summary.

Written by the trainer from ``splits.split_hash``/``splits.split_counts`` and the loaded
dataset; validated on load by the card. ``from_json`` raises ValueError naming what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import Any, Mapping


def _object(raw: Any, section: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{section} must be a JSON object, got {type(raw).__name__}")
    return raw


def _counts(raw: Any, section: str) -> dict[str, int]:
    d = _object(raw or {}, section)
    bad = {k: v for k, v in d.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
    if bad:
        raise ValueError(f"{section} must be counts (whole numbers >= 0), got {bad!r}")
    return {str(k): int(v) for k, v in d.items()}


@dataclass(frozen=True)
class SplitRecord:
    """The split file a model was trained with: where, its SHA-256, images per part.

    ``file`` is the path the training machine used (evaluate and calibrate find the split by
    it); pages show :attr:`name` and the hash only, never a server's folders.
    """

    file: str | None = None
    sha256: str | None = None
    counts: dict[str, int] = field(default_factory=dict)   # part -> images

    @classmethod
    def from_json(cls, raw: Any) -> SplitRecord:
        if isinstance(raw, cls):
            return raw
        d = _object(raw or {}, "split")
        sha = d.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
            raise ValueError(f"split sha256 must be 64 hex digits, got {sha!r}")
        file = d.get("file")
        return cls(None if file is None else str(file), sha, _counts(d.get("counts"), "split counts"))

    def to_json(self) -> dict[str, Any]:
        if self.file is None and self.sha256 is None and not self.counts:
            return {}
        return {"file": self.file, "sha256": self.sha256, "counts": dict(self.counts)}

    @property
    def name(self) -> str | None:
        """The file's name without folders ("/" and "\\" both separate)."""
        return PureWindowsPath(str(self.file or "").strip()).name or None


@dataclass(frozen=True)
class DataSummary:
    """What the model was trained on: sources, positives per class per part, rows skipped."""

    sources: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)   # part -> class -> positives
    parts: dict[str, Any] = field(default_factory=dict)   # splits.split_counts: images, patients, ...
    skipped: list[dict[str, Any]] = field(default_factory=list)   # rows that could not be read

    @classmethod
    def from_json(cls, raw: Any) -> DataSummary:
        if isinstance(raw, cls):
            return raw
        d = _object(raw or {}, "data")
        counts = _object(d.get("counts") or {}, "data counts")
        skipped = d.get("skipped") or []
        if not isinstance(skipped, list):
            raise ValueError(f"data skipped must be a list, got {type(skipped).__name__}")
        return cls([str(s) for s in d.get("sources") or []],
                   {str(p): _counts(c, f"data counts of {p!r}") for p, c in counts.items()},
                   dict(_object(d.get("parts") or {}, "data parts")), list(skipped))

    def to_json(self) -> dict[str, Any]:
        if not (self.sources or self.counts or self.parts or self.skipped):
            return {}
        return {"sources": list(self.sources), "counts": self.counts, "parts": self.parts,
                "skipped": self.skipped}

    def images(self, part: str) -> int | None:
        """Images in ``part`` (None when the card does not say)."""
        n = (self.parts.get(part) or {}).get("images") if isinstance(self.parts.get(part), Mapping) else None
        return n if isinstance(n, int) else None

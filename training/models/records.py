"""The card's records of how a model was made: transfer, initialisation, pretraining, training.

Pure dataclasses (no Keras): written by the trainer (``engine.fit.build_card``),
``models.weights.describe_initialisation`` and ``pretrain``; validated on load by the card.
Each has ``from_json`` (ValueError naming what is wrong) and ``to_json`` (the card.json form).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

MODES = ("scratch", "frozen", "finetune")
INIT_KINDS = ("none", "imagenet", "file", "cxr-pretrained", "cxrlab-model")


def _object(raw: Any, section: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{section} must be a JSON object, got {type(raw).__name__}")
    return raw


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _int(v: Any) -> int | None:
    n = _number(v)
    return None if n is None else int(n)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


@dataclass(frozen=True)
class TransferRecord:
    """How the backbone was trained: ``mode`` and the starting ``weights`` (+ a note on a change)."""

    mode: str | None = None
    weights: str | None = None
    note: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> TransferRecord:
        if isinstance(raw, cls):
            return raw
        d = _object(raw or {}, "transfer")
        if d.get("mode") is not None and d["mode"] not in MODES:
            raise ValueError(f"transfer mode {d['mode']!r} is not one of {list(MODES)}")
        return cls(_str(d.get("mode")), _str(d.get("weights")), _str(d.get("note")))

    def to_json(self) -> dict[str, Any]:
        out = {"mode": self.mode, "weights": self.weights}
        return out if self.note is None else {**out, "note": self.note}


@dataclass(frozen=True)
class InitialisationRecord:
    """Where the backbone's weights started (``models.weights.describe_initialisation``)."""

    kind: str
    summary: str
    path: str | None = None              # a weights file or model folder
    name: str | None = None              # the source model's name, architecture and hashes
    architecture: str | None = None
    model_sha256: str | None = None
    card_sha256: str | None = None
    sources: list[str] | None = None     # cxr-pretrained: on what, how many images
    images: int | None = None

    @classmethod
    def from_json(cls, raw: Any) -> InitialisationRecord:
        if isinstance(raw, cls):
            return raw
        d = _object(raw, "initialisation")
        if d.get("kind") not in INIT_KINDS:
            raise ValueError(f"initialisation kind {d.get('kind')!r} is not one of {list(INIT_KINDS)}")
        sources = d.get("sources")
        return cls(d["kind"], str(d.get("summary") or d["kind"]), _str(d.get("path")), _str(d.get("name")),
                   _str(d.get("architecture")), _str(d.get("model_sha256")), _str(d.get("card_sha256")),
                   None if sources is None else [str(s) for s in sources], _int(d.get("images")))

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class PretrainingRecord:
    """A CXR-pretrained backbone (``training.pretrain``): on what data and how many images."""

    sources: list[str]
    images: int
    task: str
    data: list[str] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)   # per split: what was kept out
    config: dict[str, Any] = field(default_factory=dict)     # the PretrainConfig (a note)

    @classmethod
    def from_json(cls, raw: Any) -> PretrainingRecord:
        if isinstance(raw, cls):
            return raw
        d = _object(raw, "pretraining")
        images = _int(d.get("images"))
        if images is None:
            raise ValueError(f"pretraining images must be a number, got {d.get('images')!r}")
        return cls([str(s) for s in d.get("sources") or []], images, str(d.get("task") or ""),
                   [str(s) for s in d.get("data") or []], [dict(e) for e in d.get("excluded") or []],
                   dict(d.get("config") or {}))

    def to_json(self) -> dict[str, Any]:
        return {"data": self.data, "sources": self.sources, "images": self.images, "task": self.task,
                "excluded": self.excluded, "config": self.config}


#: The run facts :class:`TrainingSummary` types; the rest of ``card.training`` is ``config``.
_FACTS = {"epochs_run": _int, "best_epoch": _int, "seconds_per_epoch": _number,
          "train_images_used": _int, "feature_cache": None, "feature_cache_reason": _str,
          "mixed_precision": _str, "distribute": _str, "replicas": _int, "global_batch": _int,
          "effective_batch": _int, "lr_used": _number, "finetune_lr_used": _number,
          "reused": _str}


@dataclass(frozen=True)
class TrainingSummary:
    """How the run went (the card's ``training``).

    ``config``: the full resolved TrainConfig, a free-form note: code reads its data options
    only through ``training.data.spec.DataSpec.from_dict`` and the run's identity through the
    typed fields here. In card.json both are one object, as in version 1.
    """

    arch: str | None = None
    mode: str | None = None
    task: str | None = None
    seed: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None        # 1-based; None without validation images
    seconds_per_epoch: float | None = None
    train_images_used: int | None = None
    feature_cache: bool | None = None
    feature_cache_reason: str | None = None
    mixed_precision: str | None = None
    distribute: str | None = None
    replicas: int | None = None
    global_batch: int | None = None
    effective_batch: int | None = None
    lr_used: float | None = None
    finetune_lr_used: float | None = None
    reused: str | None = None            # a later run took this model as it is: who, when (training.demo)
    batchnorm: dict[str, Any] = field(default_factory=dict)   # what batchnorm.settle did
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any) -> TrainingSummary:
        if isinstance(raw, cls):
            return raw
        d = dict(_object(raw or {}, "training"))
        typed: dict[str, Any] = {k: (conv(d[k]) if conv else d[k]) for k, conv in _FACTS.items() if k in d}
        if typed.get("feature_cache") is not None:
            typed["feature_cache"] = bool(typed["feature_cache"])
        batchnorm = d.get("batchnorm") or {}
        config = {k: v for k, v in d.items() if k not in _FACTS and k != "batchnorm"}
        return cls(arch=_str(d.get("arch")), mode=_str(d.get("mode")), task=_str(d.get("task")),
                   seed=_int(d.get("seed")), batchnorm=dict(_object(batchnorm, "training.batchnorm")),
                   config=config, **typed)

    def to_json(self) -> dict[str, Any]:
        ids = {k: getattr(self, k) for k in ("arch", "mode", "task", "seed") if getattr(self, k) is not None}
        # ``reused`` only once a run reused the model: the cards of every other run stay as they were
        facts = {k: getattr(self, k) for k in _FACTS if k != "reused" or self.reused is not None}
        if all(v is None for v in facts.values()):
            facts = {}   # not written by the trainer (tests, hand-made cards): nothing to say
        extra = {"batchnorm": self.batchnorm} if self.batchnorm else {}
        return {**ids, **self.config, **facts, **extra}  # one object in card.json, as in version 1

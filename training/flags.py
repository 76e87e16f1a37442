"""Command-line flags generated from config dataclasses, and the parsers of compound values.

One flag per dataclass field (help, metavar and flag name from the field's metadata, choices
from ``training.config.CHOICES``), so an option the command line accepts is always a config
field the library honours; and back: the config built from the parsed flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from training.config import CHOICES


def parse_parts(text: str) -> tuple[float, float, float]:
    """``70,10,20`` or ``0.8,0,0.2`` → fractions summing to 1."""
    vals = [float(v) for v in text.split(",")]
    if len(vals) == 2:
        vals = [vals[0], 0.0, vals[1]]
    if len(vals) != 3 or min(vals) < 0 or sum(vals) <= 0:
        raise argparse.ArgumentTypeError("--parts takes TRAIN,VAL,TEST, e.g. 70,10,20 or 80,20")
    total = sum(vals)
    return tuple(v / total for v in vals)  # type: ignore[return-value]


def _flag_type(name: str, hint: Any, repeat: bool) -> tuple[Any, dict[str, Any]]:
    """``(argparse type, extra add_argument kwargs)`` for a config field's type hint."""
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if name == "parts":
        return parse_parts, {}
    if typing.get_origin(base) is tuple:
        return str, {}  # comma-separated; the config splits it
    if typing.get_origin(base) is list:
        # data: repeat the flag; views/modalities: one comma-separated value (the config splits it)
        return str, ({"action": "append"} if repeat else {})
    if base is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    return base, {}


def add_config_args(p: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``config_cls`` (help, metavar and flag name from its metadata,
    choices from ``training.config.CHOICES``); every default is None, so only the flags
    given override the config file and the dataclass defaults."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip or f.metadata.get("cli", True) is False:
            continue
        kind, extra = _flag_type(f.name, hints[f.name], f.metadata.get("repeat", False))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        text = f.metadata.get("help", "")
        if shown not in (None, "") and "default" not in text:
            text += f" (default: {shown})"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": text}
        if kind is not None:
            kw["type"] = kind
        if f.name in CHOICES:
            kw["choices"] = CHOICES[f.name]
        if "metavar" in f.metadata and "choices" not in kw:
            kw["metavar"] = f.metadata["metavar"]
        kw.update(extra)
        p.add_argument(f.metadata.get("flag", "--" + f.name.replace("_", "-")), **kw)


def config_from_args(config_cls: type, args: argparse.Namespace):
    """``config_cls`` from the flags :func:`add_config_args` made (flags not given: its defaults)."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in given.items() if v is not None})

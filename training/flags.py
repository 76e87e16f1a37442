"""Command-line flags generated from config dataclasses, the base of a command, its saved config.

One flag per dataclass field (help, metavar and flag name from the field's metadata, choices
from ``training.config.CHOICES``), so an option the command line accepts is always a config
field the library honours; and back: the config built from the parsed flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from training import io
from training.config import CHOICES
from training.errors import CXRError


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
    """One flag per field of ``config_cls``: help, metavar and flag name from its metadata,
    choices from ``training.config.CHOICES`` (under the field's name or its ``choices`` key).

    Every default is None, so only the flags given override the config file and the dataclass
    defaults. Fields in ``config_cls.REQUIRED`` are required; ``positional`` ones have no dashes.
    """
    hints = typing.get_type_hints(config_cls)
    required = getattr(config_cls, "REQUIRED", ())
    for f in dataclasses.fields(config_cls):
        if f.name in skip or f.metadata.get("cli", True) is False:
            continue
        kind, extra = _flag_type(f.name, hints[f.name], f.metadata.get("repeat", False))
        kw: dict[str, Any] = {"help": _help(f), **({"type": kind} if kind is not None else {})}
        choices = CHOICES.get(f.metadata.get("choices", f.name))
        if choices is not None:
            kw["choices"] = choices
        elif "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        if f.metadata.get("positional"):
            list_valued = typing.get_origin(hints[f.name]) is list
            p.add_argument(f.name, **kw, **({"nargs": "+"} if list_valued else {}))
            continue
        kw.update(dest=f.name, default=None, **extra)
        if f.name in required:
            kw["required"] = True
        p.add_argument(f.metadata.get("flag", "--" + f.name.replace("_", "-")), **kw)


def _help(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    text = f.metadata.get("help", "")
    if shown not in (None, "") and "default" not in text:
        text += f" (default: {shown})"
    return text


#: Command-line defaults that differ from the library's, for every command (a file listed in
#: a real dataset's metadata but missing should not stop a run: it is skipped, warned about
#: and listed in the report or card).
CLI_DEFAULTS: dict[str, Any] = {"on_error": "skip"}


def cli_defaults(config_cls: type) -> dict[str, Any]:
    """The :data:`CLI_DEFAULTS` that are fields of ``config_cls``."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in CLI_DEFAULTS.items() if k in names}


def config_from_args(config_cls: type, args: argparse.Namespace):
    """``config_cls`` from the flags :func:`add_config_args` made (flags not given: the
    command-line defaults, then its own)."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(config_cls)}
    return config_cls(**{**cli_defaults(config_cls), **{k: v for k, v in given.items() if v is not None}})


@dataclass
class Command:
    """Checks shared by every command: required fields given, choices respected."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()
    NAME: ClassVar[str] = "command"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.REQUIRED and value in (None, "", []):
                flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
                raise CXRError(f"{self.NAME} needs {f.name if f.metadata.get('positional') else flag}")
            allowed = CHOICES.get(f.metadata.get("choices", f.name))
            if allowed is not None and value is not None and value not in allowed:
                raise CXRError(f"{self.NAME}: {f.name}={value!r} is not one of {list(allowed)}")

    def run(self) -> int:
        raise NotImplementedError


def save_resolved(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write a command's resolved configuration (a dataclass or a dict) next to its outputs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return io.write_text(out_dir / name, yaml.safe_dump(io.jsonable(values), sort_keys=False))


"""Flags from a config dataclass: one per field, with help, choices, required and positional."""
import argparse
from dataclasses import dataclass
from typing import ClassVar

import pytest

from training.config import opt
from training.flags import Command, add_config_args, config_from_args


@dataclass
class Toy(Command):
    NAME: ClassVar[str] = "toy"
    REQUIRED: ClassVar[tuple[str, ...]] = ("out", "paths")
    paths: list[str] = opt(factory=list, help="inputs", positional=True)
    data: list[str] = opt(factory=list, help="folders", repeat=True)
    on_error: str = opt("skip", "bad rows")
    method: str = opt("auto", "how", choices="calibration")
    fast: bool = opt(False, "hurry")
    size: int | None = opt(None, "px", flag="--img-size")
    out: str | None = opt(None, "where")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_args(p, Toy)
    return p


def test_every_field_becomes_its_flag_and_the_config_comes_back():
    args = _parser().parse_args(["a", "b", "--data", "x", "--data", "y", "--method", "platt",
                                 "--fast", "--img-size", "64", "--out", "o"])
    cfg = config_from_args(Toy, args)
    assert cfg == Toy(paths=["a", "b"], data=["x", "y"], method="platt", fast=True, size=64, out="o")
    assert config_from_args(Toy, _parser().parse_args(["a", "--out", "o"])).on_error == "skip"


def test_choices_come_from_their_key_and_required_flags_are_required(capsys):
    for argv in (["a", "--out", "o", "--method", "magic"], ["a", "--out", "o", "--on-error", "later"], ["a"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(argv)
    err = capsys.readouterr().err
    assert "invalid choice: 'magic'" in err and "invalid choice: 'later'" in err and "--out" in err


def test_help_shows_defaults():
    text = _parser().format_help()
    assert "bad rows (default: skip)" in text and "--img-size SIZE" in text

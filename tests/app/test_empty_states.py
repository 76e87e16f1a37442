"""The empty-state pages (no models, no comparison): every command they print runs as printed."""
from __future__ import annotations

import html
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def printed_commands(page: str) -> list[str]:
    """The lines of the page's command blocks (``<pre class="commands">``)."""
    blocks = re.findall(r'<pre class="commands">(.*?)</pre>', page, flags=re.S)
    return [line.strip() for b in blocks for line in html.unescape(b).splitlines() if line.strip()]


def check_runs_as_printed(line: str) -> None:
    """A ``python -m training`` line parses with the real parser into a valid config (required
    flags given); a ``make`` line names a rule of the Makefile."""
    from training.cli import _command_in, _train_config, build_parser
    from training.commands import COMMANDS
    from training.flags import config_from_args

    words = shlex.split(line)
    if words[0] == "make":
        done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"{line!r}: {done.stderr}"
        return
    assert words[:3] == ["python", "-m", "training"], line
    argv = words[3:]
    args = build_parser(only=_command_in(argv)).parse_args(argv)  # SystemExit on a bad flag
    if args.command == "train-all":
        assert _train_config(args).data, f"{line!r} gives no --data"
    else:
        config_from_args(COMMANDS[args.command], args)  # CXRError when a required field is missing


def test_the_checker_refuses_commands_that_do_not_run():
    from training.errors import CXRError

    for bad in ("python -m training compare --data DIR", "python -m training train-all --out models"):
        with pytest.raises((SystemExit, CXRError, AssertionError)):
            check_runs_as_printed(bad)
    with pytest.raises(AssertionError):
        check_runs_as_printed("make no-such-rule")


def test_no_models_page_gives_commands_that_run_and_the_real_duration(make_app):
    from app.model_bank import ModelBank

    page = make_app(MODEL_BANK=ModelBank([])).test_client().get("/").get_data(as_text=True)
    commands = printed_commands(page)
    assert "No models are loaded" in page and "a few minutes" not in page
    assert "about 35 minutes on a 2-core CPU" in page and "2026-12-01" in page
    assert {"make demo DATA=DIR", "make serve", "python -m training train-all --data DIR --out models",
            "python -m training serve --models-dir models"} == set(commands)
    for line in commands:
        check_runs_as_printed(line)


def test_no_compare_page_gives_commands_that_run(client):
    page = client.get("/compare").get_data(as_text=True)
    commands = printed_commands(page)
    assert any(c.startswith("python -m training compare ") for c in commands)
    for line in commands:
        check_runs_as_printed(line)

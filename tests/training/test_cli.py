"""The command line: train options generated from TrainConfig, so none is accepted and dropped."""
import dataclasses

import pytest

from training.cli import _train_config, build_parser
from training.config import TrainConfig


def test_views_and_modalities_reach_the_config():
    """Regression: `train --views PA` was accepted and silently ignored."""
    args = build_parser().parse_args(["train", "--data", "d", "--views", "PA,AP", "--modalities", "X-ray"])
    cfg = _train_config(args)
    assert cfg.views == ["PA", "AP"] and cfg.modalities == ["X-ray"]


@pytest.mark.parametrize("command", ["train", "train-all"])
def test_every_config_field_is_a_flag(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    dests = {a.dest for a in sub._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= dests


def test_flags_override_file_and_cli_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 4\nlr: 0.01\naugment: false\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--data", "a", "--data", "b",
                                      "--epochs", "6", "--no-precise-bn", "--jit-compile", "on",
                                      "--parts", "80,20", "--format", "folder"])
    cfg = _train_config(args)
    assert (cfg.epochs, cfg.lr, cfg.augment, cfg.precise_bn, cfg.jit_compile) == (6, 0.01, False, False, "on")
    assert cfg.data == ["a", "b"] and cfg.parts == (0.8, 0.0, 0.2) and cfg.fmt == "folder"
    assert cfg.on_error == "skip"  # the command line's default
    args = build_parser().parse_args(["train", "--data", "a", "--on-error", "raise", "--augment"])
    assert _train_config(args).on_error == "raise" and _train_config(args).augment is True


def test_bad_choice_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--jit-compile", "maybe"])
    assert "invalid choice" in capsys.readouterr().err

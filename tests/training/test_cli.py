"""The command line: every command's flags generated from its config, so none is accepted and dropped."""
import dataclasses
from pathlib import Path

import pytest

from training.cli import _train_config, build_parser, main
from training.errors import CXRError
from training.config import TrainConfig
from training.data.spec import DataSpec


def test_views_and_modalities_reach_the_config():
    """Regression: `train --views PA` was accepted and silently ignored."""
    args = build_parser().parse_args(["train", "--data", "d", "--views", "PA,AP", "--modalities", "X-ray"])
    cfg = _train_config(args)
    assert cfg.views == ["PA", "AP"] and cfg.modalities == ["X-ray"]


def _configs():
    from training.clinical.experiments import ExperimentConfig
    from training.demo import DemoConfig
    from training.pretrain import PretrainConfig
    from training.semi.experiment import SemiConfig

    from training.commands import COMMANDS

    return [("train", TrainConfig), ("train-all", TrainConfig), ("pretrain", PretrainConfig),
            ("demo", DemoConfig), ("semi", SemiConfig), ("clinical", ExperimentConfig),
            *COMMANDS.items()]


EXTRA_FLAGS = {"train": {"config"}, "train-all": {"config", "archs"}, "clinical": {"experiment"}}


@pytest.mark.parametrize("command,config", _configs())
def test_every_config_field_is_a_flag(command, config):
    """Regression: hand-kept flag lists left fields out (train --views, semi --views, ...)."""
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    dests = {a.dest for a in sub._actions}
    fields = {f.name for f in dataclasses.fields(config) if f.metadata.get("cli", True) is not False}
    assert fields <= dests
    # ... and back: every flag is a field the command passes on (or one it reads itself)
    assert dests - {"help"} <= fields | EXTRA_FLAGS.get(command, set())


def test_every_command_is_generated_from_a_config():
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    assert commands == {name for name, _ in _configs()}


def test_semi_and_clinical_flags_build_their_configs():
    from training.cli import config_from_args
    from training.clinical.experiments import ExperimentConfig
    from training.semi.experiment import SemiConfig

    args = build_parser().parse_args(["semi", "--data", "a", "--data", "b", "--fractions", "0.25,1",
                                      "--no-augment", "--widths", "8,16", "--format", "folder"])
    cfg = config_from_args(SemiConfig, args)
    assert cfg.data == ["a", "b"] and cfg.fractions == (0.25, 1.0) and cfg.augment is False
    assert cfg.widths == (8, 16) and cfg.fmt == "folder" and cfg.rounds == SemiConfig().rounds
    args = build_parser().parse_args(["clinical", "prognosis", "--data", "d", "--out", "o",
                                      "--fields", "age, sex", "--folds", "3"])
    cfg = config_from_args(ExperimentConfig, args)
    assert cfg.fields == ("age", "sex") and cfg.folds == 3 and cfg.tasks == ExperimentConfig().tasks


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


def test_load_eval_set_gives_the_loader_the_options(monkeypatch, tmp_path):
    import training.evaluation.evalset as evalset
    from training.evaluation.evalset import load_eval_set

    seen = {}

    def loader(spec):
        seen["spec"] = spec
        raise CXRError("stop here")

    monkeypatch.setattr(evalset, "load_datasets", loader)
    from training.models.card import ModelCard

    card = ModelCard("m", "resnet50", "pneumonia", "single", ["Normal", "Pneumonia"], 32, {"size": 32},
                     training={"views": ["AP"], "modalities": None})
    with pytest.raises(CXRError):
        load_eval_set(card, tmp_path, DataSpec(["d"], fmt="folder", modalities=("X-ray",)))
    assert seen["spec"] == DataSpec(("d",), "folder", ("AP",), ("X-ray",), "raise")  # views: the card's


def test_value_errors_are_clear_messages_not_tracebacks(tmp_path, capsys):
    """Regression: `semi --threshold 1.5` (a ValueError in the library) ended in a traceback."""
    assert main(["semi", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--threshold", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "threshold must be in (0, 1]" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--model", "m", "--data", "d", "--out", "o", "--threshold", "foo"])
    assert "invalid choice: 'foo'" in capsys.readouterr().err


def test_help_and_light_commands_do_not_load_keras():
    """The experiment configs' modules load Keras; only their own command pays for that."""
    import subprocess
    import sys

    code = ("import sys\nfrom training.cli import build_parser\n"
            "build_parser(only='').parse_args(['models'])\n"
            "build_parser(only='fit-gate').parse_args(['fit-gate', '--model', 'm'])\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'loaded'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_command_after_the_verbose_flag_gets_its_experiment_flags():
    from training.cli import _command_in

    assert _command_in(["-v", "semi", "--data", "d"]) == "semi" and _command_in(["--help"]) == ""
    args = build_parser(only=_command_in(["-v", "semi", "--rounds", "3"])).parse_args(["-v", "semi", "--rounds", "3"])
    assert args.rounds == 3 and args.verbose


def test_version_names_cxrlab_keras_and_the_backend(capsys):
    import keras

    import training

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    said = capsys.readouterr().out.strip()
    assert said.startswith(f"cxrlab {training.__version__} (keras {keras.__version__}, "
                           f"backend {keras.backend.backend()}")


def test_python_dash_m_training_gives_the_version_too():
    import subprocess
    import sys

    import training

    done = subprocess.run([sys.executable, "-m", "training", "--version"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert done.returncode == 0 and done.stdout.startswith(f"cxrlab {training.__version__} (keras ")

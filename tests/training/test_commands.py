"""The commands of training/commands.py: required fields, options passed on, resolved configs saved."""
from pathlib import Path

import pytest

from training.cli import build_parser, main
from training.data.spec import DataSpec
from training.errors import CXRError


def test_required_fields_are_required_flags_and_checked_in_python(capsys):
    from training.commands import Evaluate, Predict

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--data", "d", "--out", "o"])
    assert "--model" in capsys.readouterr().err
    with pytest.raises(CXRError, match="evaluate needs --model"):
        Evaluate(data=["d"], out="o")
    with pytest.raises(CXRError, match="predict needs paths"):
        Predict(model=["m"], output="p.csv")
    with pytest.raises(CXRError, match="not one of"):
        Evaluate(model="m", data=["d"], out="o", calibration="magic")


def test_commands_save_their_resolved_config(monkeypatch, tmp_path):
    import yaml

    import training.evaluation.predict as predict

    monkeypatch.setattr(predict, "predict_files", lambda models, paths, batch_size: __import__("pandas").DataFrame(
        {"path": paths, "gate": ["accept"] * len(paths)}))
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", "m1", "--model", "m2", "--output", str(out), "--batch-size", "4",
                 "a.png", "b.png"]) == 0
    saved = yaml.safe_load((tmp_path / "p.config.yaml").read_text())
    assert saved == {"paths": ["a.png", "b.png"], "model": ["m1", "m2"], "output": str(out), "batch_size": 4}


def test_serve_execs_gunicorn_with_the_apps_settings(monkeypatch, tmp_path):
    import os

    seen = {}

    def fake_execve(path, argv, env):
        seen.update(argv=argv, env=env)

    monkeypatch.setattr(os, "execve", fake_execve)
    assert main(["serve", "--models-dir", str(tmp_path), "--bind", "127.0.0.1:9009"]) == 0
    assert seen["argv"][1:4] == ["-m", "gunicorn", "-c"] and seen["argv"][-1] == "app:create_app()"
    assert Path(seen["argv"][4]).name == "gunicorn_conf.py" and Path(seen["argv"][4]).is_file()
    assert seen["env"]["CXRLAB_MODELS_DIR"] == str(tmp_path) and seen["env"]["CXRLAB_BIND"] == "127.0.0.1:9009"


# ---------------------------------------------------------------- every data option reaches the loader
#: Every data flag with a value none of them has by default on the command line.
DATA_FLAGS = ["--format", "ieee8023", "--views", "AP, PA", "--modalities", "CT", "--on-error", "raise",
              "--pathologies", "pleural effusion, Nodule", "--uncertain", "ones"]
#: What those flags are as a spec (pathologies canonical, in the order given)
DATA_SPEC = DataSpec(("d",), "ieee8023", ("AP", "PA"), ("CT",), "raise", ("Effusion", "Nodule"), "ones")


class _Loaded(CXRError):
    """Raised by the captured loader: the command stops right after its load step."""


@pytest.fixture
def captured():
    """``load_datasets`` replaced in every module that has it, also those a command imports
    while running (they copy the replaced one from formats); all restored after the test."""
    import sys

    from training.data import formats

    specs, original = [], formats.load_datasets

    def capture(spec):
        specs.append(spec)
        raise _Loaded("loaded")

    def replace_all(old, new) -> None:
        for module in list(sys.modules.values()):
            if getattr(module, "load_datasets", None) is old:
                module.load_datasets = new

    replace_all(original, capture)
    yield specs
    replace_all(capture, original)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny saved model whose card says it was trained on ``trained/`` (views PA, as csv)."""
    from tests.helpers.tiny import tiny_card, tiny_model
    from training.models.card import save_model

    folder = tmp_path_factory.mktemp("m") / "model"
    training = {"data": ["trained"], "fmt": "csv", "views": ["PA"], "modalities": None, "on_error": "raise"}
    save_model(tiny_model(2, "single"), tiny_card("m", "single", ["Normal", "Pneumonia"],
                                                  training=training), folder)
    return folder


def _argv(command: str, out: Path, model: Path) -> list[str]:
    """``command`` with ``--data d``, every data flag, and what else it needs to start."""
    name, *check = command.split(":")
    head = {"clinical": ["clinical", "fusion"], "shortcuts": ["shortcuts", *check]}.get(name, [name])
    needs = {"split": ["--out", str(out / "s.csv")], "evaluate": ["--model", str(model)],
             "compare": ["--model", str(model), "--split", str(out / "s.csv")],
             "calibrate": ["--model", str(model)], "fit-gate": ["--model", str(model)]}
    return [*head, "--data", "d", *DATA_FLAGS, *needs.get(name, ["--out", str(out)]),
            *(["--out", str(out)] if name in ("evaluate", "compare") else [])]


#: Every command that loads data (a new one must be added here: the test below checks the list).
DATA_COMMANDS = ["train", "train-all", "pretrain", "semi", "demo", "clinical", "report", "split",
                 "shortcuts:probe", "shortcuts:loso", "evaluate", "compare", "calibrate", "fit-gate",
                 "cross-collection", "cross-site"]


def test_every_command_with_data_flags_is_checked():
    from training.cli import build_parser

    parser = build_parser()
    with_data = {name for name, sub in parser._subparsers._group_actions[0].choices.items()
                 if "--data" in {o for a in sub._actions for o in a.option_strings}}
    assert with_data == {c.split(":")[0] for c in DATA_COMMANDS}


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_every_command_passes_every_data_option_to_the_loader(command, captured, saved_model, tmp_path):
    """Regression: pretrain dropped --format/--modalities, semi had no --views, demo and the
    shortcut checks passed only on_error, evaluate/compare/calibrate dropped them all once."""
    assert main(_argv(command, tmp_path, saved_model)) == 2  # the captured loader stopped it
    assert captured[0] == DATA_SPEC


@pytest.mark.parametrize("command", ["calibrate", "fit-gate"])
def test_without_data_a_model_is_read_as_trained(command, captured, saved_model):
    """No --data: the card's data and format; the flags given still apply."""
    assert main([command, "--model", str(saved_model), "--modalities", "CT"]) == 2
    assert captured[0] == DataSpec(("trained",), "csv", ("PA",), ("CT",), "skip")


def test_min_threshold_patients_reaches_evaluate(monkeypatch, tmp_path):
    """--min-threshold-patients is passed to the post-training step of `evaluate`."""
    import training.evaluation.evaluate as ev
    from training.cli import main

    seen: dict = {}
    monkeypatch.setattr(ev, "evaluate_model", lambda *a, **k: seen.update(k))
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path), "--out",
                 str(tmp_path / "o"), "--min-threshold-patients", "3"]) == 0
    assert seen["min_patients"] == 3

"""The commands of training/commands.py: required fields, options passed on, resolved configs saved."""
from pathlib import Path

import pytest

from training.cli import build_parser, main
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


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_evaluate_and_compare_pass_the_data_options_on(command, monkeypatch, tmp_path):
    """Regression: `evaluate`/`compare` accepted --format/--views/--modalities and dropped them."""
    import training.evaluation.compare as compare
    import training.evaluation.evaluate as evaluate

    seen = {}
    capture = lambda *a, **kw: seen.update(kw)  # noqa: E731
    monkeypatch.setattr(evaluate, "evaluate_model", capture)
    monkeypatch.setattr(compare, "compare_models", capture)
    argv = [command, "--model", "m", "--data", "d", "--format", "ieee8023", "--views", "PA, AP",
            "--modalities", "X-ray", "--out", str(tmp_path)] + (["--split", "s.csv"] if command == "compare" else [])
    assert main(argv) == 0
    assert seen["fmt"] == "ieee8023" and seen["views"] == ("PA", "AP") and seen["modalities"] == ("X-ray",)


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


def test_calibrate_passes_the_data_options_on_also_without_data(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import training.evaluation.recalibrate as recalibrate

    seen = {}

    def capture(model, **kw):
        seen.update(kw)
        return SimpleNamespace(method="platt", chosen_by="test", validation_ece={})

    monkeypatch.setattr(recalibrate, "recalibrate", capture)
    assert main(["calibrate", "--model", str(tmp_path), "--format", "ieee8023", "--views", "PA",
                 "--method", "platt"]) == 0
    assert seen["data"] is None and seen["fmt"] == "ieee8023" and seen["views"] == ("PA",)
    assert seen["method"] == "platt" and (tmp_path / "calibrate.config.yaml").is_file()

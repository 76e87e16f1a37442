"""TrainConfig: YAML + overrides, unknown keys, validation, round trip."""
import pytest

from training.config import TrainConfig, dump_config, load_config
from training.errors import CXRError


def test_defaults_and_name():
    cfg = TrainConfig(data="d", out="models/k-resnet50")
    assert cfg.data == ["d"] and cfg.parts == (0.7, 0.1, 0.2)
    assert cfg.run_name == "k-resnet50"
    assert TrainConfig(out="x", name="mine").run_name == "mine"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: [a, b]\nepochs: 4\narch: vgg16\nparts: [0.8, 0, 0.2]\nviews: PA,AP\n")
    cfg = load_config(path, {"epochs": 7, "arch": None, "lr": 0.01})
    assert cfg.data == ["a", "b"] and cfg.epochs == 7 and cfg.arch == "vgg16" and cfg.lr == 0.01
    assert cfg.parts == (0.8, 0.0, 0.2) and cfg.views == ["PA", "AP"]


@pytest.mark.parametrize("where", ["yaml", "overrides"])
def test_unknown_keys_are_named(tmp_path, where):
    path = tmp_path / "c.yaml"
    path.write_text("epochz: 3\n" if where == "yaml" else "epochs: 3\n")
    with pytest.raises(CXRError, match="epochz") as err:
        load_config(path, {"epochz": 3} if where == "overrides" else {})
    assert "epochs" in str(err.value)  # lists the valid keys


@pytest.mark.parametrize("bad", [{"balance": "oversample"}, {"parts": (0.5, 0.1, 0.1)},
                                 {"epochs": 0}, {"mode": "partial"}, {"patience": -1},
                                 {"backup_interval": -1}])
def test_invalid_values(bad):
    with pytest.raises(CXRError):
        load_config(None, bad)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(CXRError, match="not found"):
        load_config(tmp_path / "none.yaml", {})
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(CXRError, match="mapping"):
        load_config(tmp_path / "bad.yaml", {})


def test_dump_round_trip(tmp_path):
    cfg = TrainConfig(data=["x"], task="pneumonia", parts=(0.8, 0.0, 0.2), img_size=64)
    assert load_config(dump_config(cfg, tmp_path / "o" / "config.yaml"), {}) == cfg


def test_cli_backup_every_reaches_the_config():
    from training.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "--data", "d", "--backup-every", "0"])
    assert _train_config(args).backup_interval == 0.0
    args = build_parser().parse_args(["train", "--data", "d"])
    assert _train_config(args).backup_interval == 300.0  # default: at most one backup per 5 min


def test_lr_defaults_to_the_backbones_recipe():
    assert TrainConfig(arch="vgg16", mode="scratch").resolved_lr() == 1e-4  # no BatchNorm: 1e-3 fails
    assert TrainConfig(arch="resnet50", mode="scratch").resolved_lr() == 1e-3
    assert TrainConfig(arch="vgg16", mode="frozen").resolved_lr() == 1e-3  # a head
    assert TrainConfig(arch="vgg16", mode="scratch", lr=0.02).resolved_lr() == 0.02

"""training/io.py: atomic writes whose files get the mode a plain ``open()`` would give.

Regression for the Docker image's unprivileged user failing on a read-only models folder:
``card.json`` used to be 0600 (``tempfile.mkstemp`` renamed into place).
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import images as H
from training import io

UMASKS = [0o022, 0o077, 0o002]


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _expect_file(path: Path, mask: int) -> None:
    assert path.is_file(), path
    assert _mode(path) == 0o666 & ~mask, f"{path}: {_mode(path):o} != {0o666 & ~mask:o} (umask {mask:03o})"


def _no_temp_files(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if p.name.startswith(".") or "tmp" in p.name]
    assert left == [], left


def test_umask_is_read_without_changing_it(umask):
    assert io.umask() == umask
    assert io.file_mode() == 0o666 & ~umask and io.dir_mode() == 0o777 & ~umask
    probe = Path(tempfile.mkdtemp()) / "probe"
    try:
        probe.write_text("x")                        # what open() gives, for comparison
        assert _mode(probe) == io.file_mode()
        assert os.umask(umask) == umask              # unchanged by io.umask()
    finally:
        probe.unlink()
        probe.parent.rmdir()


def test_write_bytes_text_json_modes_and_content(tmp_path, umask):
    io.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    io.write_text(tmp_path / "t.txt", "héllo\n")
    io.write_json(tmp_path / "j.json", {"a": np.float32(0.5), "nan": float("nan"), 3: (1, 2),
                                        "p": Path("x/y"), "arr": np.arange(2)})
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((tmp_path / "j.json").read_text()) == {
        "a": 0.5, "nan": None, "3": [1, 2], "p": "x/y", "arr": [0, 1]}
    for name in ("b.bin", "t.txt", "j.json"):
        _expect_file(tmp_path / name, umask)
    # Replacing a 0600 file gives the new file the umask's mode, not the old file's.
    old = tmp_path / "old.json"
    old.write_text("{}")
    old.chmod(0o600)
    io.write_json(old, [1])
    _expect_file(old, umask)
    _no_temp_files(tmp_path)


def test_write_figure_and_csv_modes_and_content(tmp_path, umask):
    import pandas as pd
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    png = io.write_figure(tmp_path / "f.png", fig, dpi=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = io.write_figure(tmp_path / "f.svg", fig)
    assert b"<svg" in svg.read_bytes()[:400]
    csv = io.write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert csv.read_text() == "a,b\n1,x\n2,y\n"
    for path in (png, svg, csv):
        _expect_file(path, umask)
    _no_temp_files(tmp_path)


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = io.write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), io.atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    _no_temp_files(tmp_path)
    with pytest.raises(ValueError, match="'a'"):
        with io.atomic_open(target, "a"):
            pass


def test_publish_gives_mkdtemp_folders_and_library_files_the_umask_mode(tmp_path, umask):
    tmp = Path(tempfile.mkdtemp(dir=tmp_path))       # 0700 whatever the umask
    (tmp / "inner").mkdir()
    (tmp / "inner" / "f").write_bytes(b"x")
    os.chmod(tmp / "inner" / "f", 0o600)
    io.publish(tmp, tmp_path / "final")
    assert _mode(tmp_path / "final") == 0o777 & ~umask
    assert _mode(tmp_path / "final" / "inner") == 0o777 & ~umask
    _expect_file(tmp_path / "final" / "inner" / "f", umask)
    lib = tmp_path / ".lib-file.tmp"
    lib.write_bytes(b"y")
    os.chmod(lib, 0o600)                             # as a library might create it
    io.publish(lib, tmp_path / "lib-file")
    _expect_file(tmp_path / "lib-file", umask)


def test_file_sha256(tmp_path):
    import hashlib

    p = io.write_bytes(tmp_path / "x", b"abc" * 1000)
    assert io.file_sha256(p) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_saved_model_folder_split_cache_and_reports_get_the_umask_mode(tmp_path, umask):
    from tests.helpers.tiny import tiny_card, tiny_model
    from training.data.cache import ImageCache
    from training.data.splits import save_split
    from training.engine.callbacks import BestOnValidation
    from training.engine.feature_cache import cached_features
    from training.evaluation.evaluate import write_json as write_report
    from training.models.card import load_model, save_model, update_card

    # Model folder: model.keras (written by Keras under a temp name) and card.json.
    model = tiny_model(2, "single", seed=0)
    out = save_model(model, tiny_card("m", "single", ["a", "b"], arch="vgg16"), tmp_path / "models" / "m")
    assert _mode(out) == 0o777 & ~umask
    _expect_file(out / "model.keras", umask)
    _expect_file(out / "card.json", umask)
    update_card(out, created="2026-01-01T00:00:00+00:00")  # the rewrite that used to be 0600
    _expect_file(out / "card.json", umask)
    load_model(out)
    _no_temp_files(out)

    # A split CSV.
    df = pd.DataFrame({"path": ["a.png", "b.png"], "patient": ["p1", "p2"], "part": ["train", "test"],
                       "stratum": ["x", "y"]})
    _expect_file(save_split(df, tmp_path / "splits" / "split.csv"), umask)

    # An image-cache shard, its manifest and its config.
    images = [str(H.write_image(tmp_path / "img" / f"{i}.png", seed=i)) for i in range(3)]
    from training.preprocess import PreprocessConfig

    cache = ImageCache(tmp_path / "cache")
    cache.load(images, PreprocessConfig(size=16), workers=1)
    written = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert any(p.suffix == ".npy" for p in written) and any(p.name == "config.json" for p in written)
    for p in written:
        _expect_file(p, umask)

    # A feature cache and the best-weights/state files of a training run.
    feats = cached_features(model, np.zeros((2, 32, 32, 3), np.float32), "k", tmp_path / "features")
    assert feats.shape == (2, 2)
    _expect_file(tmp_path / "features" / "k.npy", umask)
    best = BestOnValidation(tmp_path / "run" / "state.json", tmp_path / "run" / "best.weights.h5",
                            target=model)
    best.set_model(model)
    best.on_epoch_end(0, {"val_loss": 0.5})
    _expect_file(tmp_path / "run" / "state.json", umask)
    _expect_file(tmp_path / "run" / "best.weights.h5", umask)

    # A JSON report (evaluation) and an experiment's results.
    from training.clinical.experiments import write_results

    _expect_file(write_report({"auc": 0.9}, tmp_path / "eval" / "metrics.json"), umask)
    _expect_file(write_results({"x": np.float64(1.0)}, tmp_path / "exp"), umask)
    for folder in ("splits", "features", "run", "eval", "exp"):
        _no_temp_files(tmp_path / folder)

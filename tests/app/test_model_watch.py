"""A demo still training (CXRLAB_TRAINING_STATUS): the app adds each model the status file lists
as done, never a half-written folder, and shows a training panel until the run is finished."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.app.tiny_models import write_models
from training.demo_status import DemoStatus, write_status
from training.models.card import CARD_FILE, MODEL_FILE, read_card, update_card


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Two finished tiny model folders (tiny-multi, tiny-single) to copy from."""
    return write_models(tmp_path_factory.mktemp("watch") / "models", gated=False)


@pytest.fixture
def demo_dir(tmp_path, source) -> Path:
    """A demo output: the first model saved, the second not yet."""
    (tmp_path / "models").mkdir()
    shutil.copytree(source / "tiny-multi", tmp_path / "models" / "tiny-multi")
    return tmp_path


def status(demo_dir: Path, **fields) -> Path:
    path = demo_dir / "demo-status.json"
    write_status(path, DemoStatus(planned=("tiny-multi", "tiny-single"), epochs=4, stage="training", **fields))
    return path


def make_watch(demo_dir: Path, path: Path):
    from app.model_watch import ModelWatch

    return ModelWatch(demo_dir / "models", path, device="cpu", warmup=False)


def test_a_model_listed_as_done_joins_a_new_bank_and_a_half_written_folder_never_does(demo_dir, source):
    path = status(demo_dir, done=("tiny-multi",), current="tiny-single", epoch=1)
    watch = make_watch(demo_dir, path)
    first = watch.sync()
    assert [m.name for m in first] == ["tiny-multi"]
    # the second folder is being written: its model file without a card, and not done yet
    half = demo_dir / "models" / "tiny-single"
    half.mkdir()
    shutil.copy(source / "tiny-single" / MODEL_FILE, half / MODEL_FILE)
    assert watch.sync() is None and watch.bank is first
    # listed as done while its card is still missing (never so from the demo): not loaded, no error
    status(demo_dir, done=("tiny-multi", "tiny-single"))
    assert watch.sync() is None and len(watch.bank) == 1
    shutil.copy(source / "tiny-single" / CARD_FILE, half / CARD_FILE)
    second = watch.sync()
    assert [m.name for m in second] == ["tiny-multi", "tiny-single"] and second is not first
    assert [m.name for m in first] == ["tiny-multi"]          # a reader of the old bank keeps it whole
    assert second.get("tiny-multi") is first.get("tiny-multi")  # unchanged models are not reloaded


def test_a_model_whose_card_changed_is_reloaded(demo_dir):
    watch = make_watch(demo_dir, status(demo_dir, done=("tiny-multi",)))
    old = watch.sync().get("tiny-multi")
    folder = demo_dir / "models" / "tiny-multi"
    update_card(folder, description="evaluated")   # e.g. the demo's evaluation writes the card
    new = watch.sync()
    assert new is not None and new.get("tiny-multi") is not old
    assert new.get("tiny-multi").card.to_json() == read_card(folder).to_json()


@pytest.mark.timeout(120)
def test_the_app_grows_from_one_model_to_two_without_a_restart_and_the_panel_goes(demo_dir, source):
    from app import create_app

    path = status(demo_dir, done=("tiny-multi",), current="tiny-single", epoch=3, eta_seconds=125)
    app = create_app({"SECRET_KEY": "test", "TESTING": True, "MODELS_DIR": str(demo_dir / "models"),
                      "TRAINING_STATUS": str(path), "WARMUP": False, "DEVICE": "cpu",
                      "COMPARE_DIR": str(demo_dir / "compare")})
    client = app.test_client()
    assert client.get("/healthz").get_json()["models"] == 1
    page = client.get("/").get_data(as_text=True)
    assert 'role="status"' in page and "training.js" in page
    assert ("1 of 2 models ready (tiny-multi); training tiny-single: epoch 3 of 4; about 2 min 05 s "
            "left for the whole run (ETA).") in page
    assert client.get("/training").get_json()["ready"] == ["tiny-multi"]

    shutil.copytree(source / "tiny-single", demo_dir / "models" / "tiny-single")
    status(demo_dir, done=("tiny-multi", "tiny-single"), finished=True)
    deadline = time.monotonic() + 60
    while client.get("/healthz").get_json()["models"] < 2:   # the watcher polls every few seconds
        assert time.monotonic() < deadline, "the second model never appeared"
        time.sleep(0.5)
    names = {m["name"] for m in client.get("/api/models").get_json()["models"]}
    assert names == {"tiny-multi", "tiny-single"}
    page = client.get("/").get_data(as_text=True)
    assert "training-progress" not in page and "tiny-single" in page
    assert client.get("/training").get_json() == {"active": False}


def test_without_the_setting_there_is_no_panel_and_no_watch(client):
    assert "training-progress" not in client.get("/").get_data(as_text=True)
    assert client.get("/training").get_json() == {"active": False}
    assert client.application.extensions["cxrlab"]["watch"] is None


def test_the_panel_says_each_stage():
    from app.model_watch import progress_of

    base = DemoStatus(planned=("a", "b"), epochs=4)
    assert progress_of(base).text == "0 of 2 models ready; preparing the data."
    evaluating = DemoStatus(planned=("a", "b"), done=("a",), current="b", stage="evaluating")
    assert progress_of(evaluating).text == "1 of 2 models ready (a); evaluating b."
    comparing = DemoStatus(planned=("a", "b"), done=("a", "b"), stage="comparing", eta_seconds=5)
    assert progress_of(comparing).text == "2 of 2 models ready (a, b); comparing the models."
    assert progress_of(DemoStatus(planned=("a",), finished=True, stage="stopped")) is None


def test_a_broken_status_file_is_refused_by_name_and_hides_the_panel(tmp_path):
    from app.model_watch import read_progress
    from training.demo_status import DemoStatusError, read_status

    path = tmp_path / "demo-status.json"
    assert read_status(path) is None and read_progress(str(path)) is None   # no run yet
    for text in ("not json", "[1]", '{"done": []}', '{"planned": ["a"], "stage": "dancing"}'):
        path.write_text(text)
        with pytest.raises(DemoStatusError, match="demo status"):
            read_status(path)
        assert read_progress(str(path)) is None

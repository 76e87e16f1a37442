"""ModelBank: loading rules, refusal on broken folders, parity with training preprocessing."""
from __future__ import annotations

import json
import shutil

import numpy as np

from training.preprocess import decode_image
import pytest

from app.model_bank import ModelBank, heatmap_index, metadata_vector
from tests.app.tiny_models import SPECS, write_models
from tests.helpers.images import write_xray_dicom, write_xray
from training.errors import ModelCardError


def test_loads_every_model_once_in_folder_order(bank):
    assert [m.name for m in bank] == sorted(name for name, *_ in SPECS)
    assert bank.device == "CPU"
    assert all(m.outputs == m.card["outputs"] for m in bank)


def test_ignores_folders_without_card_or_model(models_dir, tmp_path, caplog):
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-multi", root / "tiny-multi")
    (root / "notes").mkdir()
    caplog.set_level("INFO")
    bank = ModelBank.from_dir(root, device="cpu", warmup=False)
    assert [m.name for m in bank] == ["tiny-multi"]
    assert "ignoring" in caplog.text and "notes" in caplog.text


def test_missing_folder_gives_empty_bank(tmp_path):
    assert len(ModelBank.from_dir(tmp_path / "absent")) == 0


@pytest.mark.parametrize("remove, expected", [("card.json", "no card.json"),
                                              ("model.keras", "no model.keras")])
def test_refuses_half_model_folder(models_dir, tmp_path, remove, expected):
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-single", root / "tiny-single")
    (root / "tiny-single" / remove).unlink()
    with pytest.raises(ModelCardError, match=expected):
        ModelBank.from_dir(root, device="cpu")


def _edit_card(folder, **changes):
    path = folder / "card.json"
    card = json.loads(path.read_text())
    card.update(changes)
    path.write_text(json.dumps(card))


@pytest.mark.parametrize("changes, expected", [
    ({"outputs": ["A", "B", "C"], "thresholds": {"A": .5, "B": .5, "C": .5}}, "outputs"),
    ({"gradcam_layer": "nope"}, "gradcam_layer"),
    ({"metadata_features": ["age"]}, "input"),
    ({"preprocessing": {"size": 32, "bogus": 1}}, "preprocessing"),
])
def test_refuses_inconsistent_card(models_dir, tmp_path, changes, expected):
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-single", root / "tiny-single")
    _edit_card(root / "tiny-single", **changes)
    with pytest.raises(ModelCardError, match=expected):
        ModelBank.from_dir(root, device="cpu", warmup=False)


def test_refuses_duplicate_names(models_dir, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-single", root / "a")
    shutil.copytree(models_dir / "tiny-single", root / "b")
    with pytest.raises(ModelCardError, match="unique"):
        ModelBank.from_dir(root, device="cpu", warmup=False)


def test_create_app_refuses_to_start_on_bad_folder(models_dir, tmp_path):
    from app import create_app

    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-single", root / "x")
    (root / "x" / "card.json").unlink()
    with pytest.raises(ModelCardError):
        create_app({"MODELS_DIR": str(root), "SECRET_KEY": "t"})


def test_bad_device_setting_is_explained():
    from app.model_bank import configure_device
    from training.errors import CXRError

    with pytest.raises(CXRError, match="CXRLAB_DEVICE"):
        configure_device("tpu")


@pytest.mark.parametrize("maker, name", [
    (lambda p: write_xray(p / "x.png", "RGB", 150, 170, seed=3), "x.png"),
    (lambda p: write_xray(p / "x.jpg", "L", 164, 140, seed=4), "x.jpg"),
    (lambda p: write_xray(p / "x16.png", "I;16", 160, 160, seed=5), "x16.png"),
    (lambda p: write_xray_dicom(p / "x.dcm", 140, 156, seed=6), "x.dcm"),
])
def test_parity_with_training_preprocessing_and_direct_model_call(bank, tmp_path, maker, name):
    """The app feeds exactly what training would, and reports exactly what the model says."""
    from training.preprocess import PreprocessConfig, load_image

    path = maker(tmp_path)
    data = path.read_bytes()
    inputs = bank.prepare(decode_image(data, name=name))
    prediction = bank.predict(data, name)
    for m, result in zip(bank, prediction.models):
        cfg = PreprocessConfig.from_dict(m.card["preprocessing"])
        expected = load_image(path, cfg)
        assert inputs[m.name].dtype == np.uint8
        assert inputs[m.name].tobytes() == expected.tobytes()
        direct = np.asarray(m.model(expected[None].astype(np.float32), training=False))[0]
        got = [o.raw_probability for o in result.outputs]
        np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([o.probability for o in result.outputs], m.calibrate(direct),
                                   rtol=1e-5, atol=1e-6)
        assert [o.name for o in result.outputs] == m.outputs


def test_preprocessing_is_shared_between_models_with_the_same_config(models_dir, tmp_path, monkeypatch):
    import training.preprocess as prep

    root = write_models(tmp_path / "m", [("a", "resnet50", "single", ["Normal", "Pneumonia"], {}),
                                         ("b", "xception", "single", ["Normal", "Pneumonia"], {})])
    bank = ModelBank.from_dir(root, device="cpu", warmup=False)
    calls = []
    real = prep.preprocess
    monkeypatch.setattr(prep, "preprocess", lambda *a, **k: calls.append(1) or real(*a, **k))
    inputs = bank.prepare(decode_image(write_xray(tmp_path / "x.png").read_bytes()))
    assert calls == [1] and inputs["a"] is inputs["b"]


def test_upload_is_decoded_once_for_the_gate_and_every_model(bank, tmp_path, monkeypatch):
    import training.preprocess as prep

    assert len({m.preprocess.key() for m in bank}) == 2
    calls = []
    for fn in ("decode_image", "preprocess"):
        real = getattr(prep, fn)
        monkeypatch.setattr(prep, fn, lambda *a, _f=fn, _r=real, **k: calls.append(_f) or _r(*a, **k))
    prediction = bank.predict(write_xray(tmp_path / "x.png").read_bytes(), "x.png")
    assert len(prediction.models) == len(bank)
    assert calls == ["decode_image", "preprocess", "preprocess"]    # one decode, one per config


def test_heatmaps_do_not_change_the_probabilities(bank, tmp_path):
    """Every output gets a map over the upload (or a reason); probabilities are the plain ones."""
    data = write_xray(tmp_path / "x.png", "L", 200, 180, seed=2).read_bytes()
    plain = bank.predict(data, "x.png")
    explained = bank.predict(data, "x.png", heatmaps=True)
    for m, a, b in zip(bank, plain.models, explained.models):
        np.testing.assert_allclose([o.probability for o in b.outputs],
                                   [o.probability for o in a.outputs], rtol=1e-5, atol=1e-6)
        probs = np.array([o.probability for o in b.outputs])
        assert b.heatmap_class == m.outputs[heatmap_index(m.outputs, probs, None)]
        assert set(b.heatmaps) == set(m.outputs)
        for h in b.heatmaps.values():
            assert (h.image is None) != (h.problem is None)
            assert h.image is None or h.image.startswith("data:image/jpeg;base64,")


def test_refused_image_runs_no_model(bank, monkeypatch):
    from tests.helpers.images import png_bytes

    for m in bank:
        monkeypatch.setattr(m, "infer", lambda *a: pytest.fail("a model ran on a refused image"))
    prediction = bank.predict(png_bytes(np.full((300, 300), 7, np.uint8)), "blank.png")
    assert prediction.gate.refused and prediction.models == []


def test_threshold_marks_positive(bank, tmp_path):
    data = write_xray(tmp_path / "x.png").read_bytes()
    for result in bank.predict(data, "x.png").models:
        for o in result.outputs:
            assert o.positive == (o.probability >= o.threshold)
            assert 0.0 <= o.probability <= 1.0


def test_heatmap_class_choice():
    outputs = ["No Finding", "Pneumonia", "COVID-19"]
    probs = np.array([0.9, 0.2, 0.4])
    assert outputs[heatmap_index(outputs, probs, None)] == "COVID-19"   # top non-normal
    assert outputs[heatmap_index(outputs, probs, "Pneumonia")] == "Pneumonia"
    assert outputs[heatmap_index(outputs, probs, "ARDS")] == "COVID-19"  # model lacks it
    assert heatmap_index(["Normal"], np.array([0.3]), None) == 0


def test_metadata_vector_keeps_unknown_as_nan():
    vec = metadata_vector(["age", "sex", "spo2"], {"age": 0, "sex": "F", "spo2": None})
    assert vec.shape == (1, 3) and vec[0, 0] == 0 and vec[0, 1] == 0 and np.isnan(vec[0, 2])

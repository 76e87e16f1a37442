"""ModelBank: loading rules, refusal on broken folders, parity with training preprocessing."""
from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from training.preprocess import decode_image
import pytest

from app.model_bank import ModelBank, heatmap_index
from tests.app.tiny_models import SPECS, THRESHOLDS, write_models
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
    from app.device import configure_device
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
    for fn in ("decode", "preprocess"):
        real = getattr(prep, fn)
        monkeypatch.setattr(prep, fn, lambda *a, _f=fn, _r=real, **k: calls.append(_f) or _r(*a, **k))
    prediction = bank.predict(write_xray(tmp_path / "x.png").read_bytes(), "x.png")
    assert len(prediction.models) == len(bank)
    assert calls == ["decode", "preprocess", "preprocess"]          # one decode, one per config


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


def _decisions(result) -> str:
    """A model's positive outputs as ``cxrlab predict`` writes them (``pred``)."""
    return ";".join(o.name for o in result.outputs if o.positive)


def test_card_thresholds_decide_not_half(bank, tmp_path):
    """Serving 0.5, argmax, or ``p >= t`` per softmax output would each fail here."""
    for seed in range(3):
        data = write_xray(tmp_path / f"x{seed}.png", "L", 180 + 9 * seed, 160, seed=seed).read_bytes()
        served = {r.name: r for r in bank.predict(data, "x.png").models}
        multi, card = served["tiny-multi"], bank.get("tiny-multi").card.thresholds.values()
        for o in multi.outputs:
            assert card[o.name] != 0.5 and o.threshold == card[o.name]
            assert o.positive == (o.probability >= card[o.name])
        flipped = [o.name for o in multi.outputs if (o.probability >= 0.5) != o.positive]
        assert flipped == ["Pneumonia", "COVID-19", "ARDS"]           # what serving 0.5 would change
        assert _decisions(multi) == "Pneumonia;COVID-19"
        single, card = served["tiny-single"], THRESHOLDS["tiny-single"]
        normal, pneumonia = single.outputs
        assert 0.5 < pneumonia.probability < card["Pneumonia"]      # argmax and 0.5: Pneumonia
        assert normal.probability < card["Normal"]                 # per output: nothing positive
        assert (normal.positive, pneumonia.positive) == (True, False)
        assert pneumonia.threshold == card["Pneumonia"]
        assert normal.threshold == pytest.approx(1 - card["Pneumonia"])   # the decision, read on p(Normal)


def test_card_without_thresholds_gives_no_decision_in_the_app_or_the_cli(models_dir, tmp_path):
    """One rule (training.runtime): no thresholds, no decision; the probabilities are shown."""
    from training.evaluation.predict import predict_files

    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-single", root / "tiny-single")
    _edit_card(root / "tiny-single", thresholds=None)
    image = write_xray(tmp_path / "in" / "x.png")
    (result,) = ModelBank.from_dir(root, device="cpu", warmup=False).predict(image.read_bytes(), "x.png").models
    assert [(o.threshold, o.positive) for o in result.outputs] == [(None, None), (None, None)]  # no decision
    row = predict_files([root / "tiny-single"], [image]).iloc[0]
    assert pd.isna(row["pred"]) and np.isfinite(row["prob_Pneumonia"])


def test_cli_predict_and_api_serve_the_same_numbers_and_decisions(models_dir, client, tmp_path):
    """``cxrlab predict`` and ``/api/predict`` on the same models and files: one rule for both."""
    from training.evaluation.predict import predict_files

    folder = tmp_path / "in"
    for seed in range(3):
        write_xray(folder / f"x{seed}.png", "L", 170 + 11 * seed, 150 + 7 * seed, seed=seed)
    write_xray_dicom(folder / "x3.dcm", 176, 160, seed=3)
    names = [name for name, *_ in SPECS]
    cli = predict_files([models_dir / n for n in names], [folder]).set_index("path")
    assert len(cli) == 4 and cli["error"].isna().all()
    for path in cli.index:
        rv = client.post("/api/predict", data={"file": (io.BytesIO(Path(path).read_bytes()), Path(path).name)},
                         content_type="multipart/form-data")
        assert rv.status_code == 200, rv.get_data(as_text=True)[:300]
        body = rv.get_json()
        assert body["gate"]["verdict"] == cli.loc[path, "gate"]
        assert [m["name"] for m in body["models"]] == names
        for m in body["models"]:
            row = cli.loc[path].rename(lambda c, n=m["name"]: c.removeprefix(f"{n}:"))
            for key, column in (("probability", "prob_"), ("raw_probability", "raw_prob_")):
                np.testing.assert_allclose([o[key] for o in m["outputs"]],
                                           [row[column + o["name"]] for o in m["outputs"]], rtol=0, atol=1e-6)
            assert ";".join(o["name"] for o in m["outputs"] if o["positive"]) == row["pred"]


def test_concurrent_predictions_equal_serial_ones(bank, tmp_path):
    """Eight threads on one bank (heatmaps on) give what one thread gives, image by image."""
    from concurrent.futures import ThreadPoolExecutor

    images = [write_xray(tmp_path / f"c{i}.png", "L", 150 + 13 * i, 140 + 5 * i, seed=20 + i).read_bytes()
              for i in range(8)]

    def summary(data: bytes) -> list:
        prediction = bank.predict(data, "x.png", heatmaps=True)
        return [prediction.gate.verdict] + [
            (r.name, [(o.probability, o.raw_probability, o.threshold, o.positive) for o in r.outputs],
             r.heatmap_class, {k: (h.image, h.problem) for k, h in r.heatmaps.items()})
            for r in prediction.models]

    serial = [summary(data) for data in images]
    start = threading.Barrier(len(images))

    def together(data: bytes) -> list:
        start.wait()
        return summary(data)

    with ThreadPoolExecutor(len(images)) as pool:
        parallel = list(pool.map(together, images))
    assert all(len(s) == 1 + len(bank) for s in serial)
    assert all(s[1][3] for s in serial), "the heatmaps were drawn"
    assert parallel == serial


def test_heatmap_class_choice():
    outputs = ["No Finding", "Pneumonia", "COVID-19"]
    probs = np.array([0.9, 0.2, 0.4])
    assert outputs[heatmap_index(outputs, probs, None)] == "COVID-19"   # top non-normal
    assert outputs[heatmap_index(outputs, probs, "Pneumonia")] == "Pneumonia"
    assert outputs[heatmap_index(outputs, probs, "ARDS")] == "COVID-19"  # model lacks it
    assert heatmap_index(["Normal"], np.array([0.3]), None) == 0


class _Clock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_deadline_stops_before_the_next_stage(bank, tmp_path):
    from app.limiter import Deadline, DeadlineExceeded

    data = write_xray(tmp_path / "x.png").read_bytes()
    within = bank.predict(data, "x.png", deadline=Deadline(100.0, clock=_Clock(1.0)))
    assert len(within.models) == len(bank)
    # The clock reads 1 at the start, then 2 (preprocessing), 3 (first model), ...
    with pytest.raises(DeadlineExceeded, match=f"before model {bank.models[0].name}"):
        bank.predict(data, "x.png", deadline=Deadline(1.5, clock=_Clock(1.0)))
    with pytest.raises(DeadlineExceeded, match=f"before the heatmaps of model {bank.models[0].name}"):
        bank.predict(data, "x.png", heatmaps=True,
                     deadline=Deadline(1.5 + len(bank), clock=_Clock(1.0)))
    plain = bank.predict(data, "x.png", deadline=Deadline(1.5 + len(bank), clock=_Clock(1.0)))
    assert len(plain.models) == len(bank)     # without heatmaps there is no later stage


def test_pixel_budget_reaches_the_gate(bank, tmp_path, monkeypatch):
    import app.model_bank as mb

    seen = []
    real = mb.inspect
    monkeypatch.setattr(mb, "inspect", lambda *a, **k: seen.append(k.get("max_pixels")) or real(*a, **k))
    bank.predict(write_xray(tmp_path / "x.png").read_bytes(), "x.png", max_pixels=123_456)
    bank.predict(write_xray(tmp_path / "x.png").read_bytes(), "x.png")
    from training.preprocess import DEFAULT_MAX_PIXELS

    assert seen == [123_456, DEFAULT_MAX_PIXELS]


def test_device_is_configured_even_without_model_folders(tmp_path):
    from training.engine.device import gpu_count
    from training.errors import CXRError

    with pytest.raises(CXRError, match="CXRLAB_DEVICE='tpu'"):
        ModelBank.from_dir(tmp_path / "absent", device="tpu")
    if gpu_count():
        pytest.skip("this machine has a GPU: CXRLAB_DEVICE=gpu is valid here")
    with pytest.raises(CXRError, match="CXRLAB_DEVICE=gpu"):
        ModelBank.from_dir(tmp_path / "absent", device="gpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CXRError, match="CXRLAB_DEVICE=gpu"):
        ModelBank.from_dir(tmp_path / "empty", device="gpu")


#: The demo's four backbones at small input sizes each supports; two multilabel (Platt), two
#: softmax (temperature), so both decision rules and both calibrations are compared.
BACKBONES = [("resnet50", 32, "multilabel"), ("inception_v3", 75, "single"),
             ("xception", 75, "multilabel"), ("vgg16", 32, "single")]


def _backbone_models(root: Path) -> Path:
    """Each demo backbone, random (scratch) weights, saved with calibration and thresholds."""
    from tests.helpers.tiny import tiny_card
    from training.evaluation.calibration import fit_calibration
    from training.models.build import build_model
    from training.models.card import save_model
    from training.models.registry import get_architecture

    rng = np.random.default_rng(0)
    for i, (arch, size, kind) in enumerate(BACKBONES):
        outputs = ["No Finding", "Pneumonia", "COVID-19"] if kind == "multilabel" else ["Normal", "Pneumonia"]
        model = build_model(arch, outputs, kind, input_size=size, mode="scratch", weights=None, seed=i)
        raw = rng.dirichlet(np.ones(len(outputs)), 200) if kind == "single" else rng.uniform(0.01, 0.99, (200, len(outputs)))
        labels = (rng.uniform(size=raw.shape) < raw).astype(float)
        if kind == "single":
            labels = np.eye(len(outputs))[raw.argmax(axis=1)]
        cal = fit_calibration(labels, raw, kind, outputs, "auto")
        card = tiny_card(arch, kind, outputs, arch=arch, size=size, gradcam_layer=get_architecture(arch).gradcam_layer,
                         calibration=cal.to_json(), thresholds={o: 0.3 + 0.1 * j for j, o in enumerate(outputs)},
                         threshold_method="set by the tests (not 0.5)")
        save_model(model, card, root / arch)
    return root


@pytest.mark.slow
def test_cli_and_api_give_identical_outputs_for_every_demo_backbone(make_app, tmp_path):
    """``cxrlab predict`` and ``/api/predict``: one runtime, bit for bit (at the API's batch of one)."""
    from training.evaluation.predict import predict_files

    root = _backbone_models(tmp_path / "models")
    client = make_app(MODEL_BANK=ModelBank.from_dir(root, device="cpu", warmup=False)).test_client()
    folder = tmp_path / "in"
    for seed in range(2):
        write_xray(folder / f"x{seed}.png", "L", 170 + 11 * seed, 150 + 7 * seed, seed=seed)
    write_xray_dicom(folder / "x2.dcm", 176, 160, seed=3)
    names = [arch for arch, *_ in BACKBONES]
    cli = predict_files([root / n for n in names], [folder], batch_size=1).set_index("path")
    assert len(cli) == 3 and cli["error"].isna().all()
    for path in cli.index:
        rv = client.post("/api/predict", data={"file": (io.BytesIO(Path(path).read_bytes()), Path(path).name)},
                         content_type="multipart/form-data")
        assert rv.status_code == 200, rv.get_data(as_text=True)[:300]
        body = rv.get_json()
        assert body["gate"]["verdict"] == cli.loc[path, "gate"]
        assert sorted(m["name"] for m in body["models"]) == sorted(names)
        for m in body["models"]:
            row = cli.loc[path].rename(lambda c, n=m["name"]: c.removeprefix(f"{n}:"))
            for key, column in (("probability", "prob_"), ("raw_probability", "raw_prob_")):
                assert [o[key] for o in m["outputs"]] == [row[column + o["name"]] for o in m["outputs"]]
            assert any(o["probability"] != o["raw_probability"] for o in m["outputs"])  # calibrated
            assert ";".join(o["name"] for o in m["outputs"] if o["positive"]) == row["pred"]

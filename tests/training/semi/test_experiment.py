"""Nested patient-level fractions, and the experiment end to end on a tiny folder dataset."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers.images import write_image
from training.semi.experiment import SemiConfig, cap_patients, nested_fractions, run_experiment


def _patients_and_labels(n_patients: int = 40, seed: int = 0):
    """1-3 images per patient, 3 classes (one per patient), one NaN-free one-hot row each."""
    rng = np.random.default_rng(seed)
    patients, labels = [], []
    for i in range(n_patients):
        cls = i % 3
        for _ in range(rng.integers(1, 4)):
            patients.append(f"p{i:03d}")
            labels.append(np.eye(3)[cls])
    return np.array(patients, dtype=object), np.array(labels, dtype=np.float32)


def test_nested_fractions_are_patient_level_nested_and_stratified():
    patients, labels = _patients_and_labels()
    masks = nested_fractions(patients, labels, (0.1, 0.25, 0.5, 1.0), seed=3)
    frame = pd.DataFrame({"patient": patients})
    previous = np.zeros(len(patients), dtype=bool)
    for f, mask in masks.items():
        # patient-level: a patient's images are all in or all out
        assert frame.assign(m=mask).groupby("patient")["m"].nunique().max() == 1
        assert not (previous & ~mask).any()  # nested: smaller ⊂ larger
        previous = mask
        assert set(labels[mask].argmax(1)) == {0, 1, 2}  # every class from 10 % on
        n_chosen = frame[mask]["patient"].nunique()
        assert abs(n_chosen - f * 40) <= 3  # ceil per stratum
    assert masks[1.0].all()


def test_nested_fractions_depend_on_the_seed_only():
    patients, labels = _patients_and_labels()
    a = nested_fractions(patients, labels, (0.25,), seed=1)[0.25]
    b = nested_fractions(patients, labels, (0.25,), seed=1)[0.25]
    c = nested_fractions(patients, labels, (0.25,), seed=2)[0.25]
    assert (a == b).all() and not (a == c).all()


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError, match="fractions"):
        SemiConfig(data=[], fractions=(0.5, 0.25))
    with pytest.raises(ValueError, match="fractions"):
        SemiConfig(data=[], fractions=(0.0, 1.0))


@pytest.fixture(scope="module")
def tiny_kermany(tmp_path_factory):
    """A Kermany-named class-folder dataset: 24 patients, 2 images each, learnable classes."""
    root = tmp_path_factory.mktemp("kermany")
    for i in range(12):
        for j in range(2):
            write_image(root / "NORMAL" / f"NORMAL2-IM-{i:04d}-{j + 1:04d}.jpeg", seed=100 + 2 * i + j)
            # pneumonia images: a darker, transposed-gradient look (any difference will do)
            path = write_image(root / "PNEUMONIA" / f"person{i}_bacteria_{j}.jpeg", seed=200 + 2 * i + j)
            from PIL import Image

            Image.open(path).transpose(Image.Transpose.ROTATE_180).save(path)
    return root


def test_cap_patients_keeps_whole_patients(tiny_kermany):
    from training.data.formats import load_dataset

    ds = load_dataset(tiny_kermany)
    small = cap_patients(ds, 10, seed=0)
    assert len(small) <= 10
    assert small.meta["patient"].value_counts().eq(2).all()
    assert cap_patients(ds, None, 0) is ds


def test_experiment_end_to_end(tiny_kermany, tmp_path):
    cfg = SemiConfig(data=[str(tiny_kermany)], out=str(tmp_path / "semi"), task="pneumonia",
                     fractions=(0.5, 1.0), img_size=16, rounds=1, threshold=0.5, epochs=1,
                     min_steps=2, batch_size=8, n_boot=50, widths=(4,), augment=False,
                     cache_dir=str(tmp_path / "cache"), parts=(0.5, 0.0, 0.5))
    results = run_experiment(cfg)
    out = tmp_path / "semi"
    saved = json.loads((out / "results.json").read_text())
    assert saved["classes"] == ["Normal", "Pneumonia"] and saved["kind"] == "single"
    assert (out / "label_efficiency.png").stat().st_size > 1000
    split = pd.read_csv(out / "split.csv")
    assert split.groupby("patient")["part"].nunique().max() == 1
    half, full = saved["runs"]
    assert half["fraction"] == 0.5 and full["fraction"] == 1.0
    assert half["labelled"]["images"] < full["labelled"]["images"]
    assert half["pool"] == full["labelled"]["images"] - half["labelled"]["images"]
    assert half["self_training"]["rounds"][0]["pool"] == half["pool"]
    assert "auc_difference" in half
    assert full["pool"] == 0 and full["self_training"]["same_as_supervised"]
    for run in saved["runs"]:
        for key in ("supervised", "self_training"):
            r = run[key]
            assert r["n_images"] == saved["split"]["test"]["images"] > 0
            assert set(r["auc"]) == {"value", "low", "high"}
            assert r["balanced_accuracy"]["value"] is None or 0 <= r["balanced_accuracy"]["value"] <= 1
    assert results["runs"][0]["fraction"] == 0.5


def test_cli_semi_builds_the_config(monkeypatch, tmp_path):
    from training import cli
    from training.semi import experiment

    seen = {}
    monkeypatch.setattr(experiment, "run_experiment", lambda cfg: seen.setdefault("cfg", cfg))
    rc = cli.main(["semi", "--data", "D", "--task", "pneumonia", "--out", str(tmp_path),
                   "--fractions", "0.2,1.0", "--img-size", "48", "--rounds", "3",
                   "--threshold", "0.85", "--max-images", "100"])
    cfg = seen["cfg"]
    assert rc == 0 and cfg.data == ["D"] and cfg.task == "pneumonia"
    assert (cfg.fractions, cfg.img_size, cfg.rounds, cfg.threshold, cfg.max_images) == ((0.2, 1.0), 48, 3, 0.85, 100)
    assert cfg.epochs == SemiConfig(data=[]).epochs  # unset options keep the library defaults
    # not increasing: refused by SemiConfig, a clear message and exit code 2 (no traceback)
    assert cli.main(["semi", "--data", "D", "--out", str(tmp_path), "--fractions", "0.5,0.1"]) == 2

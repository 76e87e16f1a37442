"""Shortcut checks: source probe, leave-one-source-out, lung-restricted evaluation, mask/box loaders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from training.errors import CXRError, DataError
from training.audits import shortcuts as S


def _cxr(sick: bool, gamma: float, seed: int, h: int = 24, w: int = 24) -> np.ndarray:
    """Noise plus a bright top band (wider when sick); ``gamma`` < 1 brightens the mid-tones."""
    rng = np.random.default_rng(seed)
    img = rng.random((h, w)) * 0.4
    img[: int(h * (0.6 if sick else 0.25))] += 0.5
    return (np.clip(img, 0, 1) ** gamma * 255).astype(np.uint8)


def write_source(root: Path, name: str, gamma: float, n_patients: int = 30, seed: int = 0) -> Path:
    """A CSV dataset ``root/name.csv``: 2 images per patient, half the patients with pneumonia."""
    rows = []
    for i in range(n_patients):
        sick = i % 2 == 1
        for j in range(2):
            path = root / name / f"p{i}_{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_cxr(sick, gamma, seed * 10_000 + i * 10 + j), "L").save(path)
            rows.append({"path": str(path), "patient": f"p{i}", "source": name,
                         "label": "Pneumonia" if sick else "No Finding"})
    csv = root / f"{name}.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {"dark": write_source(root, "dark", 1.0, seed=1),
            "bright": write_source(root, "bright", 0.3, seed=2),
            # chance-level checks need more patients: small held-out sets swing far below 0.5
            "same_a": write_source(root, "same_a", 1.0, n_patients=80, seed=4),
            "same_b": write_source(root, "same_b", 1.0, n_patients=80, seed=5),
            "cache": root / "cache"}


FAST = dict(img_size=32, weights=None, features=("stats",), n_boot=200)


# ------------------------------------------------------------------ source probe

def test_probe_separates_sources_that_differ_in_brightness(sources, tmp_path):
    r = S.source_probe([str(sources["dark"]), str(sources["bright"])], out_dir=tmp_path,
                       cache_dir=sources["cache"], **FAST)
    auc = r["metrics"]["roc_auc"]
    assert auc["value"] > 0.95 and auc["low"] > 0.85
    assert r["warning"] is True and r["sources"] == ["bright", "dark"]
    assert r["n_train"] + r["n_test"] == 120 and r["n_test"] > 20
    saved = json.loads((tmp_path / "source_probe.json").read_text())
    assert saved["metrics"]["roc_auc"] == auc
    page = (tmp_path / "source_probe.html").read_text()
    assert "the image alone identifies its source" in page


def test_probe_on_identical_sources_is_near_chance(sources, tmp_path):
    r = S.source_probe([str(sources["same_a"]), str(sources["same_b"])], out_dir=tmp_path,
                       cache_dir=sources["cache"], **FAST)
    auc = r["metrics"]["roc_auc"]
    assert auc["low"] < 0.5 < auc["high"] and auc["value"] < 0.8
    assert r["warning"] is False
    assert "not readily identified" in (tmp_path / "source_probe.html").read_text()


def test_probe_split_is_patient_disjoint_and_reused_from_a_file(sources, tmp_path):
    from training.data.formats import load_datasets
    from training.data.splits import make_split, save_split
    from training.data.tasks import get_task

    data = [str(sources["dark"]), str(sources["bright"])]
    ds = load_datasets(data)
    split = make_split(ds, get_task("pneumonia"), parts=(0.5, 0.0, 0.5), seed=3)
    path = save_split(split, tmp_path / "split.csv")
    r = S.source_probe(data, split_csv=path, out_dir=tmp_path, cache_dir=sources["cache"], **FAST)
    assert r["n_test"] == int((split["part"] == "test").sum())
    assert r["split"] == str(path)


def test_probe_with_backbone_features(sources, tmp_path):
    r = S.source_probe([str(sources["dark"]), str(sources["bright"])], arch="resnet50", img_size=32,
                       weights=None, features="auto", out_dir=tmp_path, cache_dir=sources["cache"],
                       n_boot=50)
    assert r["features"] == ["backbone", "stats"]
    assert r["n_features"] == 2048 + S.HIST_BINS + 10 + 4


def test_probe_needs_two_sources(sources, tmp_path):
    with pytest.raises(DataError, match="one source only"):
        S.source_probe([str(sources["dark"])], out_dir=tmp_path, cache_dir=sources["cache"], **FAST)


def test_unknown_feature_set_is_rejected():
    with pytest.raises(CXRError, match="unknown probe feature set"):
        S.feature_sets(("pixels",), None)


def test_image_statistics_capture_borders_and_size(tmp_path):
    a = np.zeros((2, 20, 20, 3), np.uint8)
    a[1, 2:-2, 2:-2] = 200  # image 1: bright centre, black border
    a[0] = 100
    for i, (w, h) in enumerate([(40, 20), (10, 30)]):
        Image.new("L", (w, h)).save(tmp_path / f"{i}.png")
    f = S.image_statistics(a, [str(tmp_path / "0.png"), str(tmp_path / "1.png")])
    assert f.shape == (2, S.HIST_BINS + 14)
    assert np.allclose(f[:, :S.HIST_BINS].sum(axis=1), 1.0)
    top_mean = S.HIST_BINS  # first border statistic
    assert f[0, top_mean] == pytest.approx(100 / 255) and f[1, top_mean] < f[1, -6]
    assert f[0, -4:-1].tolist() == [40, 20, 2] and f[1, -4:-1].tolist() == pytest.approx([10, 30, 1 / 3])


# ------------------------------------------------------------------ leave one source out

def test_leave_one_source_out_tests_each_source_externally(sources, tmp_path):
    data = [str(sources["dark"]), str(sources["bright"])]
    r = S.leave_one_source_out(data, task="pneumonia", out_dir=tmp_path, cache_dir=sources["cache"], **FAST)
    assert set(r["folds"]) == {"internal", "dark", "bright"}
    for s in ("dark", "bright"):
        fold = r["folds"][s]
        assert fold["test_set"] == "external" and fold["n_test"] == 60 and fold["n_test_patients"] == 30
        assert fold["n_train"] < 60  # the other source's train+val only
        assert fold["metrics"]["roc_auc"]["low"] is not None
    assert r["folds"]["internal"]["test_set"] == "internal"
    assert r["folds"]["internal"]["metrics"]["roc_auc"]["value"] > 0.8
    assert (tmp_path / "leave_one_source_out.html").is_file()


def test_leave_one_source_out_uses_a_given_trainer(sources, tmp_path):
    seen = []

    def constant(train, test, task):
        seen.append((set(train.meta["source"]), set(test.meta["source"]), set(train.meta["part"])))
        return np.full((len(test), 2), 0.5)

    r = S.leave_one_source_out([str(sources["dark"]), str(sources["bright"])], task="pneumonia",
                               out_dir=tmp_path, trainer=constant, n_boot=50)
    assert ({"bright"}, {"dark"}) in [(a, b) for a, b, _ in seen]
    assert all("test" not in parts for _, _, parts in seen)
    assert r["folds"]["dark"]["metrics"]["roc_auc"]["value"] == 0.5


def test_leave_one_source_out_rejects_multilabel_and_one_source(sources, tmp_path):
    with pytest.raises(CXRError, match="single-label task"):
        S.leave_one_source_out([str(sources["dark"])], task="multilabel", out_dir=tmp_path)
    with pytest.raises(DataError, match="one source only"):
        S.leave_one_source_out([str(sources["dark"])], out_dir=tmp_path, trainer=lambda *a: None)


def test_fit_probe_leaves_unseen_classes_at_zero():
    x = np.random.default_rng(0).normal(size=(20, 3))
    p = S.fit_probe(x, np.array([0, 2] * 10), x[:4], 3)
    assert p.shape == (4, 3) and (p[:, 1] == 0).all() and np.allclose(p.sum(axis=1), 1)
    with pytest.raises(CXRError, match="at least 2 classes"):
        S.fit_probe(x, np.zeros(20), x, 2)


# ------------------------------------------------------------------ masks and boxes

def test_apply_mask_zeroes_outside_and_keeps_inside():
    gray = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    out = S.apply_mask(gray, mask)
    assert (out[mask] == gray[mask]).all() and (out[~mask] == 0).all()
    with pytest.raises(ValueError, match="does not match"):
        S.apply_mask(gray, mask.T)


def test_boxes_mask_clips_to_the_image():
    m = S.boxes_mask([(1.2, 0.5, 3.0, 2.0), (8, 8, 20, 20)], (10, 10))
    assert m[0:2, 1:3].all() and m[8:, 8:].all() and m.sum() == 4 + 4


def test_read_mask_resizes_to_the_image(tmp_path):
    big = np.zeros((40, 60), np.uint8)
    big[:, :30] = 255  # left half
    Image.fromarray(big).save(tmp_path / "m.png")
    m = S.read_mask(tmp_path / "m.png", (4, 6))
    assert m.shape == (4, 6) and m[:, :3].all() and not m[:, 3:].any()


def make_ieee(root: Path, n_patients: int = 16) -> Path:
    """A tiny ieee8023 folder: images 32x40, full-image masks at 2x, lung boxes at 2x.

    The lungs look alike in both classes; only a border marker (outside the boxes) differs.
    """
    rows, ann, images = [], [], []
    (root / S.MASKS_DIR).mkdir(parents=True)
    (root / "images").mkdir()
    for i in range(n_patients):
        sick = i % 2 == 1
        name = f"case{i}.png"
        img = _cxr(False, 1.0, 77 + i, h=32, w=40)
        img[:, :4] = 255 if sick else 0  # a border marker that gives the label away
        Image.fromarray(img, "L").save(root / "images" / name)
        rows.append({"patientid": str(i), "finding": "COVID-19" if sick else "No Finding",
                     "view": "PA", "modality": "X-ray", "folder": "images", "filename": name})
        suffix = "_mask.png.png" if i == 0 else "_mask.png"  # one oddly named mask, as upstream
        Image.fromarray(np.full((64, 80), 255, np.uint8)).save(root / S.MASKS_DIR / f"case{i}{suffix}")
        images.append({"id": i + 1, "file_name": name, "width": 80, "height": 64})
        ann += [{"image_id": i + 1, "bbox": [16, 8, 24, 48], "category_id": 1},
                {"image_id": i + 1, "bbox": [44, 8, 24, 48], "category_id": 2}]
    ann.append({"image_id": 1, "bbox": [None] * 4, "category_id": 1})  # unusable, as upstream
    images.append({"id": 99, "file_name": "absent.png", "width": 10, "height": 10})
    ann.append({"image_id": 99, "bbox": [0, 0, 5, 5], "category_id": 1})
    Image.new("L", (8, 8)).save(root / S.MASKS_DIR / "gone_mask.png")  # its image is absent
    (root / S.MASKS_DIR / "README.md").write_text("masks\n")
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    (root / S.BOXES_FILE).write_text(json.dumps({"images": images, "annotations": ann}))
    return root


@pytest.fixture(scope="module")
def ieee(tmp_path_factory):
    return make_ieee(tmp_path_factory.mktemp("ieee") / "covid-chestxray-dataset")


def test_find_lung_masks_matches_images_by_stem(ieee):
    found = S.find_lung_masks(ieee)
    assert len(found) == 16
    assert found[str(ieee / "images" / "case0.png")].name == "case0_mask.png.png"


def test_read_lung_boxes_scales_to_the_stored_image(ieee):
    boxes = S.read_lung_boxes(ieee)
    assert len(boxes) == 16  # the None box and the absent image are left out
    assert boxes[str(ieee / "images" / "case3.png")] == [(8.0, 4.0, 20.0, 28.0), (22.0, 4.0, 34.0, 28.0)]


def test_lung_restricted_eval(ieee, tmp_path):
    from tests.training.evaluation.conftest import save_tiny
    from training.data.formats import load_dataset

    ds = load_dataset(ieee)
    split = ds.meta[["path", "patient"]].assign(part="test", stratum="x")
    split.loc[split["patient"].isin(["ieee8023:0", "ieee8023:1"]), "part"] = "train"
    split.to_csv(tmp_path / "split.csv", index=False)
    model = save_tiny(tmp_path / "models", "m", "single", ["Normal", "Pneumonia"], "pneumonia",
                      tmp_path / "split.csv", ["ieee8023"])
    r = S.lung_restricted_eval(model, ieee, tmp_path / "out", n_boot=100)
    masks, boxes = r["regions"]["masks"], r["regions"]["boxes"]
    assert masks["n_images"] == boxes["n_images"] == 14 and masks["n_patients"] == 14
    assert "2 images of train/val patients left out" in r["selection"]
    full_mask = masks["per_output"]["Pneumonia"]
    assert full_mask["full"] == full_mask["restricted"]  # a whole-image mask changes nothing
    assert full_mask["difference"]["diff"] == 0
    box = boxes["per_output"]["Pneumonia"]
    assert box["full"]["value"] == full_mask["full"]["value"]
    assert box["full"]["value"] > 0.9  # the marker column gives the label away ...
    assert box["difference"]["diff"] < 0  # ... and the boxes cut it off
    assert (tmp_path / "out" / "lung_restricted.html").is_file()
    with pytest.raises(CXRError, match="unknown lung region"):
        S.lung_restricted_eval(model, ieee, tmp_path / "out", regions=("ribs",))


@pytest.mark.realdata
def test_real_ieee8023_masks_and_boxes(ieee8023_dir):
    from training.preprocess import decode_image

    masks = S.find_lung_masks(ieee8023_dir)
    assert len(masks) == 198  # 209 mask files: 7 name absent images, 4 are duplicate names
    boxes = S.read_lung_boxes(ieee8023_dir)
    assert len(boxes) == 157 and all(len(b) == 2 for b in boxes.values())
    path = next(iter(boxes))
    gray = decode_image(path)
    m = S.boxes_mask(boxes[path], gray.shape)
    assert 0.2 < m.mean() < 0.9
    for path, b in list(boxes.items())[:20]:
        w, h = S.original_size(path)
        assert all(-1 <= x0 < x1 <= w + 1 and -1 <= y0 < y1 <= h + 1 for x0, y0, x1, y1 in b)
    mpath = next(iter(masks))
    gray = decode_image(mpath)
    assert 0.1 < S.read_mask(masks[mpath], gray.shape).mean() < 0.9

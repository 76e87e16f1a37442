"""The lungs-only check: masks and boxes, and a saved model's AUC on the lungs vs the full image."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from training.errors import CXRError
from tests.training.audits.conftest import cxr_image
from training.audits import lungs as S
from training.audits.probe_features import original_size


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
        img = cxr_image(False, 1.0, 77 + i, h=32, w=40)
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


def test_annotations_are_keyed_by_resolved_paths_like_the_loaders(ieee, monkeypatch):
    # A relative --ieee8023 once matched no image: the loaders resolve their root, so must these.
    monkeypatch.chdir(ieee.parent)
    relative = Path(ieee.name)
    assert str(ieee.resolve() / "images" / "case0.png") in S.find_lung_masks(relative)
    assert str(ieee.resolve() / "images" / "case3.png") in S.read_lung_boxes(relative)


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
        w, h = original_size(path)
        assert all(-1 <= x0 < x1 <= w + 1 and -1 <= y0 < y1 <= h + 1 for x0, y0, x1, y1 in b)
    mpath = next(iter(masks))
    gray = decode_image(mpath)
    assert 0.1 < S.read_mask(masks[mpath], gray.shape).mean() < 0.9

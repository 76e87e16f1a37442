"""A generated mini ieee8023 folder: images with two dark "lungs", their lungVAE masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

H, W = 48, 40


def lung_mask(h: int = H, w: int = W) -> np.ndarray:
    """Two rectangles, left and right of the midline: about 40 % of the image."""
    m = np.zeros((h, w), dtype=bool)
    m[h // 6: 5 * h // 6, w // 10: 9 * w // 20] = True
    m[h // 6: 5 * h // 6, 11 * w // 20: 9 * w // 10] = True
    return m


def chest(seed: int) -> np.ndarray:
    """Bright body, darker lungs, a bright "marker" in the top-left corner, noise."""
    rng = np.random.default_rng(seed)
    img = 170 + rng.normal(0, 10, (H, W))
    img[lung_mask()] -= 90
    img[:4, :4] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def mini_ieee(tmp_path: Path) -> Path:
    """6 images of 3 patients (PNG and JPEG), each with a mask; metadata.csv as ieee8023's."""
    root = tmp_path / "ieee8023"
    (root / "images").mkdir(parents=True)
    masks = root / "annotations" / "lungVAE-masks"
    masks.mkdir(parents=True)
    rows = []
    for i in range(6):
        name = f"case{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(chest(i)).save(root / "images" / name)
        Image.fromarray(lung_mask().astype(np.uint8) * 255).save(masks / f"case{i}_mask.png")
        rows.append({"patientid": str(i // 2), "finding": "Pneumonia/Viral/COVID-19", "view": "PA",
                     "modality": "X-ray", "location": "Milan, Italy", "filename": name})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root

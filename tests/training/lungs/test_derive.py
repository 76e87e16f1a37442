"""Derived lung datasets keep ieee8023's layout; crops and blanking follow the mask."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.training.lungs.conftest import H, W, lung_mask
from training.errors import CXRError
from training.lungs.derive import VARIANTS, blank_outside, crop, derive, plausible


def test_derive_writes_the_layout_with_the_same_names(mini_ieee, tmp_path):
    report = derive(mini_ieee, tmp_path / "derived", lambda gray: lung_mask(32, 32))
    names = sorted(p.name for p in (mini_ieee / "images").iterdir())
    for v in VARIANTS:
        out = tmp_path / "derived" / v
        assert sorted(p.name for p in (out / "images").iterdir()) == names
        pd.testing.assert_frame_equal(pd.read_csv(out / "metadata.csv"), pd.read_csv(mini_ieee / "metadata.csv"))
    assert report.n_images == 6 and report.n_unreadable == 0 and report.n_plausible == 6
    cropped = np.asarray(Image.open(tmp_path / "derived" / "lungcrop" / "images" / "case1.png"))
    assert cropped.shape[0] < H and cropped.shape[1] <= W
    masked = np.asarray(Image.open(tmp_path / "derived" / "lungmask" / "images" / "case1.png"))
    assert masked.shape == (H, W) and masked[:4, :4].max() == 0  # the corner marker is gone


def test_implausible_masks_leave_the_image_unchanged(mini_ieee, tmp_path):
    report = derive(mini_ieee, tmp_path / "d", lambda gray: np.zeros((32, 32), bool))
    assert report.n_plausible == 0 and report.plausible_fraction == 0.0
    for v in VARIANTS:
        for name in ("case0.jpg", "case1.png"):
            assert (tmp_path / "d" / v / "images" / name).read_bytes() == (mini_ieee / "images" / name).read_bytes()


def test_plausible_area_range():
    m = np.zeros((10, 10), bool)
    assert not plausible(m)
    m[:4] = True
    assert plausible(m)
    m[:] = True
    assert not plausible(m)


def test_crop_adds_the_margin_and_blanking_keeps_the_lungs():
    gray = np.arange(100 * 100, dtype=np.float32).reshape(100, 100) + 5
    mask = np.zeros((100, 100), bool)
    mask[20:60, 30:70] = True  # 40 x 40: 10 % = 4 px each side
    assert crop(gray, mask).shape == (48, 48)
    small = np.zeros((20, 20), bool)
    small[5:15, 5:15] = True
    out = blank_outside(gray, small)
    assert out[0, 99] == 5 and out[50, 50] == gray[50, 50]  # outside: the minimum; inside kept


def test_output_inside_the_source_is_refused(mini_ieee):
    with pytest.raises(CXRError, match="What to do"):
        derive(mini_ieee, mini_ieee / "derived", lambda g: np.zeros((8, 8), bool))

"""Drawing for the pages: the upload at display size, Grad-CAM maps placed on it (as layers
the page stacks, or blended for the API and reports), colour scales, data URIs.

Grad-CAM itself (the maps, and when a map would mislead) is :mod:`training.explain`; this
module only turns a map and the decoded upload into pixels a browser shows.
"""
from __future__ import annotations

import base64
import functools
import io
from dataclasses import asdict, dataclass

import numpy as np

#: The longest side of the upload as the pages show it (pixels).
DISPLAY_SIDE = 512


@dataclass(frozen=True)
class Box:
    """Where a model's map lies on the display image, in display pixels."""

    top: int
    left: int
    height: int
    width: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@functools.lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """``cmap`` as a (256, 3) float32 table: a lookup is much cheaper than calling matplotlib."""
    from matplotlib import colormaps  # heatmap colours only

    return (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def colourise(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """``heatmap`` (H, W) in [0, 1] in colour ``cmap``: uint8 RGB (a page's heatmap layer)."""
    return np.rint(_colours(heatmap, cmap)).astype(np.uint8)


def _colours(heatmap: np.ndarray, cmap: str) -> np.ndarray:
    return _lut(cmap)[np.rint(np.clip(heatmap, 0.0, 1.0) * 255.0).astype(np.uint8)]


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4,
            cmap: str = "jet") -> np.ndarray:
    """Blend ``heatmap`` (H, W) in [0, 1] in colour ``cmap`` over an image; uint8 RGB."""
    image = np.asarray(image_uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3].astype(np.float32)
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} does not match image {image.shape[:2]}")
    blended = (1.0 - alpha) * image + alpha * _colours(heatmap, cmap)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def png_data_uri(image_uint8: np.ndarray, compress_level: int = 1) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 image (for inline HTML/JSON).

    Level 1 by default: on a few-hundred-pixel overlay it is several times faster than
    PIL's default 6 for a slightly larger file.
    """
    from PIL import Image  # image files only here

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image_uint8, dtype=np.uint8)).save(buffer, "PNG",
                                                                 compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def jpeg_data_uri(image_uint8: np.ndarray, quality: int = 85) -> str:
    """A ``data:image/jpeg;base64,...`` URI: display-size overlays are 5-10× smaller than PNG."""
    from PIL import Image  # image files only here

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image_uint8, dtype=np.uint8)).save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def display_image(gray: np.ndarray, max_side: int = DISPLAY_SIDE) -> np.ndarray:
    """The decoded upload (``preprocess.decode_image``) at display size, uint8 RGB.

    One picture for every model: its grey levels are the default preprocessing's percentile
    clip (for the eye, not any model's input)."""
    from PIL import Image  # image files only here

    from training.preprocess import PreprocessConfig, normalise

    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shown = Image.fromarray(normalise(gray, PreprocessConfig().clip_percentile)).resize(
        size, Image.Resampling.BILINEAR)
    base = np.rint(np.clip(np.asarray(shown), 0, 1) * 255).astype(np.uint8)
    return np.repeat(base[..., None], 3, axis=-1)


def cam_region(cam: np.ndarray, shape: tuple[int, int], cfg) -> np.ndarray:
    """The part of ``cam`` (model input S×S) that shows the upload of ``shape`` (H, W).

    ``cfg`` is the model's ``PreprocessConfig``: with ``resize="pad"`` the padding is cut off;
    with ``"crop"`` the model saw the centre square only, which the whole map covers."""
    cam = np.asarray(cam, np.float32)
    if cfg.resize == "crop":
        return cam
    (h, w), s = shape, cam.shape[0]
    scale = s / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (s - nh) // 2, (s - nw) // 2
    return cam[top:top + nh, left:left + nw]


def cam_box(display: tuple[int, int], cfg) -> Box:
    """Where :func:`cam_region` lies on a display image of ``display`` (H, W) pixels."""
    dh, dw = display
    if cfg.resize == "crop":  # the centre square
        side = min(dh, dw)
        return Box((dh - side) // 2, (dw - side) // 2, side, side)
    return Box(0, 0, dh, dw)


def blend(base: np.ndarray, region: np.ndarray, box: Box, alpha: float = 0.4,
          cmap: str = "jet") -> np.ndarray:
    """``region`` (:func:`cam_region`) resized bilinearly into ``box`` and blended over
    ``base`` (:func:`display_image`): the overlay the API and the reports carry."""
    from PIL import Image  # image files only here

    resized = Image.fromarray(np.ascontiguousarray(region, np.float32)).resize(
        (box.width, box.height), Image.Resampling.BILINEAR)
    heat = np.clip(np.asarray(resized), 0.0, 1.0)
    rows, cols = slice(box.top, box.top + box.height), slice(box.left, box.left + box.width)
    out = base.copy()
    out[rows, cols] = overlay(base[rows, cols], heat, alpha, cmap)
    return out


def colour_scale(cmap: str = "jet", width: int = 256, height: int = 12) -> np.ndarray:
    """The heatmap colour scale as an image (low → high, left → right)."""
    row = _lut(cmap)[np.linspace(0, 255, width).astype(np.uint8)]
    return np.repeat(row[None], height, axis=0).astype(np.uint8)

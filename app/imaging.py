"""Drawing for the pages: heatmaps over the upload at display size, colour scales, data URIs.

Grad-CAM itself (the maps, and when a map would mislead) is :mod:`training.explain`; this
module only turns a map and the decoded upload into pixels a browser shows.
"""
from __future__ import annotations

import base64
import functools
import io

import numpy as np


@functools.lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """``cmap`` as a (256, 3) float32 table: a lookup is much cheaper than calling matplotlib."""
    from matplotlib import colormaps  # heatmap colours only

    return (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4,
            cmap: str = "jet") -> np.ndarray:
    """Blend ``heatmap`` (H, W) in [0, 1] in colour ``cmap`` over an image; uint8 RGB."""
    image = np.asarray(image_uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3].astype(np.float32)
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} does not match image {image.shape[:2]}")
    colour = _lut(cmap)[np.rint(np.clip(heatmap, 0.0, 1.0) * 255.0).astype(np.uint8)]
    blended = (1.0 - alpha) * image + alpha * colour
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


def display_overlay(gray: np.ndarray, cam: np.ndarray, cfg, max_side: int = 512,
                    alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """``cam`` (model input S×S) drawn over the *uploaded* image at display resolution.

    ``gray`` is the decoded upload (``preprocess.decode_image``), ``cfg`` the model's
    ``PreprocessConfig``: the map is cut to the region the model saw (its padding removed;
    with ``resize="crop"`` only the centre square carries a map) and resized bilinearly.
    """
    from PIL import Image  # image files only here

    from training.preprocess import normalise  # display only: the upload's own grey levels

    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    dw, dh = max(1, round(w * scale)), max(1, round(h * scale))
    shown = Image.fromarray(normalise(gray, cfg.clip_percentile)).resize((dw, dh), Image.Resampling.BILINEAR)
    base = np.rint(np.clip(np.asarray(shown), 0, 1) * 255).astype(np.uint8)
    base = np.repeat(base[..., None], 3, axis=-1)
    heat, (top, left) = _cam_on_display(np.asarray(cam, np.float32), (h, w), (dh, dw), cfg)
    out = base.copy()
    hh, ww = heat.shape
    out[top:top + hh, left:left + ww] = overlay(base[top:top + hh, left:left + ww], heat, alpha, cmap)
    return out


def _cam_on_display(cam: np.ndarray, shape: tuple[int, int], display: tuple[int, int],
                    cfg) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of ``cam`` that shows the image, resized to its place on the display."""
    from PIL import Image  # image files only here

    (h, w), (dh, dw), s = shape, display, cam.shape[0]
    if cfg.resize == "crop":  # the model saw the centre square only
        side = min(dh, dw)
        region, place = cam, ((dh - side) // 2, (dw - side) // 2)
        size = (side, side)
    else:  # "pad": the image sits centred in the square, the rest is padding
        scale = s / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (s - nh) // 2, (s - nw) // 2
        region, place, size = cam[top:top + nh, left:left + nw], (0, 0), (dh, dw)
    resized = Image.fromarray(np.ascontiguousarray(region)).resize((size[1], size[0]),
                                                                  Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized), 0.0, 1.0), place


def colour_scale(cmap: str = "jet", width: int = 256, height: int = 12) -> np.ndarray:
    """The heatmap colour scale as an image (low → high, left → right)."""
    row = _lut(cmap)[np.linspace(0, 255, width).astype(np.uint8)]
    return np.repeat(row[None], height, axis=0).astype(np.uint8)

"""Derived lung-region datasets in ieee8023's layout, from a lung segmentation model.

Two variants of every image, each its own dataset (``metadata.csv`` copied, ``images/``
rewritten under the same file names, so every loader, split and command works unchanged):

* ``lungcrop``: cropped to the predicted lungs' bounding box plus a margin;
* ``lungmask``: everything outside the predicted lungs (dilated a little) set to black, which
  also removes the text and markers that let a model learn the source.

An image whose predicted lungs are implausible (area outside 15-70 % of the image) is kept
unchanged in both, and counted: a wrong mask would blank or crop away the lungs themselves.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from training.errors import CXRError
from training.preprocess import decode_image, normalise

log = logging.getLogger(__name__)

VARIANTS = ("lungcrop", "lungmask")
PLAUSIBLE_AREA = (0.15, 0.70)
CROP_MARGIN = 0.10  # of the box's width / height, each side
DILATE = 0.03  # of the mask's side: the lung edge itself stays visible


@dataclass(frozen=True)
class DeriveReport:
    """Counts of one derivation (no file names: they can identify patients)."""

    n_images: int
    n_plausible: int
    n_unreadable: int

    @property
    def plausible_fraction(self) -> float:
        return self.n_plausible / max(1, self.n_images - self.n_unreadable)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "plausible_fraction": round(self.plausible_fraction, 4),
                "plausible_area": list(PLAUSIBLE_AREA)}


def plausible(mask: np.ndarray) -> bool:
    """Whether a lung mask covers 15-70 % of its image."""
    return PLAUSIBLE_AREA[0] <= float(np.mean(mask)) <= PLAUSIBLE_AREA[1]


def upsample(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized (nearest) to ``shape`` ``(h, w)``."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.NEAREST)) > 127


def crop(gray: np.ndarray, mask: np.ndarray, margin: float = CROP_MARGIN) -> np.ndarray:
    """``gray`` cut to ``mask``'s bounding box (same shape as ``gray``) plus ``margin`` each side."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    dy, dx = margin * (rows[-1] - rows[0] + 1), margin * (cols[-1] - cols[0] + 1)
    r0, r1 = max(0, int(rows[0] - dy)), min(gray.shape[0], int(np.ceil(rows[-1] + 1 + dy)))
    c0, c1 = max(0, int(cols[0] - dx)), min(gray.shape[1], int(np.ceil(cols[-1] + 1 + dx)))
    return gray[r0:r1, c0:c1]


def blank_outside(gray: np.ndarray, mask: np.ndarray, dilate: float = DILATE) -> np.ndarray:
    """``gray`` (native scale) with everything outside the dilated ``mask`` set to its minimum."""
    from scipy import ndimage

    grown = ndimage.binary_dilation(mask, iterations=max(1, round(dilate * mask.shape[0])))
    return np.where(upsample(grown, gray.shape), gray, gray.min())


def write_gray(gray: np.ndarray, path: Path) -> None:
    """8-bit grey in the format the file name says (JPEG at quality 95, else PNG)."""
    img = Image.fromarray(np.rint(normalise(gray, 0.0) * 255).astype(np.uint8))
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    img.save(path, format="JPEG" if jpeg else "PNG", **({"quality": 95} if jpeg else {}))


def derive(root: str | Path, out_root: str | Path, lungs: Callable[[np.ndarray], np.ndarray]) -> DeriveReport:
    """Write ``out_root/lungcrop`` and ``out_root/lungmask`` from the dataset at ``root``.

    ``lungs(gray)`` returns a boolean lung mask of any size (e.g. a bound
    :func:`training.lungs.segment.predict_mask`). Unreadable images are left out and counted.
    """
    root, out_root = Path(root), Path(out_root)
    if out_root.resolve().is_relative_to(root.resolve()):
        raise CXRError(f"{out_root}: the derived datasets would land inside the source dataset. "
                       "What to do: pass an output folder outside it")
    dirs = {v: out_root / v for v in VARIANTS}
    for d in dirs.values():
        (d / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "metadata.csv", d / "metadata.csv")
    files = sorted(p for p in (root / "images").iterdir() if p.is_file())
    ok = unreadable = 0
    for path in files:
        try:
            gray = decode_image(path)
        except (CXRError, ValueError):
            unreadable += 1
            continue
        small = lungs(gray)
        if not plausible(small):  # the file itself, byte for byte
            for d in dirs.values():
                shutil.copyfile(path, d / "images" / path.name)
            continue
        ok += 1
        write_gray(crop(gray, upsample(small, gray.shape)), dirs["lungcrop"] / "images" / path.name)
        write_gray(blank_outside(gray, small), dirs["lungmask"] / "images" / path.name)
    report = DeriveReport(len(files), ok, unreadable)
    log.info("derived lung datasets: %d images, %.1f %% with a plausible lung mask, %d unreadable",
             report.n_images, 100 * report.plausible_fraction, report.n_unreadable)
    return report

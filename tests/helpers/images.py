"""Generators of tiny test images (PNG/JPEG in every mode, 16-bit, DICOM, broken files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def gradient(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A deterministic float image in [0, 1] with structure (not constant)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = (x / max(w - 1, 1)) * 0.6 + (y / max(h - 1, 1)) * 0.3 + rng.random((h, w)) * 0.1
    return img.astype(np.float32)


def write_image(path: str | Path, mode: str = "L", h: int = 48, w: int = 64, seed: int = 0,
                fmt: str | None = None) -> Path:
    """Write a PNG/JPEG in PIL ``mode`` ("L", "RGB", "RGBA", "P", "I;16"); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = gradient(h, w, seed)
    if mode == "I;16":
        img = Image.fromarray((g * 65535).astype(np.uint16))
    else:
        img = Image.fromarray((g * 255).astype(np.uint8), "L").convert(mode)
    fmt = fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    img.save(path, fmt)
    return path


def write_dicom(path: str | Path, h: int = 48, w: int = 64, seed: int = 0, bits_stored: int = 12,
                photometric: str = "MONOCHROME2", patient_name: str = "Doe^Jane") -> Path:
    """Write a minimal valid DICOM (uint16 pixels, ``bits_stored`` significant bits)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = "TEST-0001"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    pixels = (gradient(h, w, seed) * (2**bits_stored - 1)).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_truncated(path: str | Path, mode: str = "L") -> Path:
    """A PNG/JPEG cut in half: the header is valid, the data is not."""
    path = Path(path)
    tmp = write_image(path, mode)
    data = tmp.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_image(path: str | Path) -> Path:
    """A file with an image extension that holds text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not an image\n")
    return path


def stripes(vertical: bool, seed: int, size: int = 40) -> np.ndarray:
    """Random-period stripes plus noise: horizontal vs vertical is a learnable class."""
    rng = np.random.default_rng(seed)
    period = rng.integers(6, 10)
    phase = rng.integers(0, period)
    line = ((np.arange(size) + phase) % period < period // 2).astype(float)
    img = np.tile(line, (size, 1)) if vertical else np.tile(line[:, None], (1, size))
    img = 0.7 * img + 0.3 * rng.random((size, size))
    return (img * 255).astype(np.uint8)


def stripes_folder(root: str | Path, n_per_class: int = 24) -> Path:
    """A class-folder dataset: NORMAL = horizontal stripes, PNEUMONIA = vertical (a patient each)."""
    root = Path(root)
    for cls, vertical in (("NORMAL", False), ("PNEUMONIA", True)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(stripes(vertical, i + 100 * vertical)).save(root / cls / f"img{i:03d}.png")
    return root


def chest_like(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """A crude frontal-chest-like uint8 image: bright body and mediastinum, two dark lungs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.full((h, w), 40.0)
    img[((x - 0.5) / 0.45) ** 2 + ((y - 0.55) / 0.5) ** 2 < 1] = 170.0        # body
    for cx in (0.28, 0.72):                                                   # lungs
        img[((x - cx) / 0.15) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1] = 70.0
    img[(np.abs(x - 0.5) < 0.06) & (y > 0.1)] = 210.0                         # mediastinum, spine
    img += rng.normal(0, 8, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG file bytes of a uint8 (H, W) or (H, W, 3) array."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_xray(path: str | Path, mode: str = "L", h: int = 192, w: int = 160, seed: int = 0,
               fmt: str | None = None) -> Path:
    """:func:`write_image` with :func:`chest_like` content, big enough for the input gate."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = chest_like(h, w, seed)
    img = Image.fromarray((g.astype(np.uint16) * 257)) if mode == "I;16" else Image.fromarray(g, "L").convert(mode)
    fmt = fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    img.save(path, fmt)
    return path


def write_xray_dicom(path: str | Path, h: int = 192, w: int = 160, seed: int = 0, **tags) -> Path:
    """:func:`write_dicom` with :func:`chest_like` pixels (8 significant bits) and ``tags``."""
    import pydicom

    path = write_dicom(path, h=h, w=w, seed=seed, bits_stored=8,
                       **{k: tags.pop(k) for k in ("photometric", "patient_name") if k in tags})
    ds = pydicom.dcmread(path)
    ds.PixelData = chest_like(h, w, seed).astype(np.uint16).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def edit_dicom(path: Path, out: Path, **changes) -> Path:
    """A copy of the DICOM at ``path`` with ``changes`` (keyword=value) applied, saved to ``out``."""
    import pydicom  # DICOM fixtures only

    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(out)
    return out

"""The one preprocessing of a chest X-ray, shared by training and the web app.

``load_image(source, cfg)`` = ``preprocess(decode_image(source), cfg)``:

* :func:`decode_image` turns a JPEG / PNG (Pillow) or DICOM (pydicom) file or its bytes into a
  float32 2-D grayscale array in the image's own intensity scale;
* :func:`preprocess` clips to percentiles, rescales to [0, 1], optionally applies CLAHE,
  resizes keeping the aspect ratio (zero pad or centre crop to a square), and returns
  ``uint8 (size, size, channels)``.

Everything is deterministic: the same bytes and config give byte-identical output.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from training.errors import CXRError, DataError, ImageDecodeError

#: Bump whenever the output of :func:`preprocess` / :func:`decode_image` changes for the same
#: config: it is part of :meth:`PreprocessConfig.key`, so every cache is rebuilt.
PREPROCESS_VERSION = 1

#: Pillow formats accepted (the JPEG opener also handles multi-picture "MPO" phone JPEGs).
PIL_FORMATS = ("PNG", "JPEG")

#: Fixed resampling filter: antialiased when shrinking, no overshoot, deterministic.
RESAMPLE = Image.Resampling.BILINEAR

# ITU-R 601 luma, the weights Pillow's convert("L") uses, applied in float (no 8-bit rounding).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_DECODE_HINT = ("check that it is a complete JPEG, PNG or DICOM file; re-export or re-download it "
                "(when loading a dataset, --on-error skip leaves such files out and reports them)")


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of :func:`preprocess`; saved in every model card and keying the image cache."""

    size: int = 224
    clip_percentile: float = 0.5
    resize: Literal["pad", "crop"] = "pad"
    clahe: bool = False
    clahe_clip: float = 0.01
    channels: int = 3

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.size, int) and not isinstance(self.size, bool) and self.size > 0,
             f"size must be a positive integer, got {self.size!r}"),
            (_is_number(self.clip_percentile) and 0 <= self.clip_percentile < 50,
             f"clip_percentile must be in [0, 50), got {self.clip_percentile!r}"),
            (self.resize in ("pad", "crop"), f"resize must be 'pad' or 'crop', got {self.resize!r}"),
            (isinstance(self.clahe, bool), f"clahe must be true or false, got {self.clahe!r}"),
            (_is_number(self.clahe_clip) and 0 < self.clahe_clip <= 1,
             f"clahe_clip must be in (0, 1], got {self.clahe_clip!r}"),
            (self.channels in (1, 3) and not isinstance(self.channels, bool),
             f"channels must be 1 or 3, got {self.channels!r}"),
        ]
        errors = [msg for ok, msg in checks if not ok]
        if errors:
            raise ValueError("invalid preprocessing config: " + "; ".join(errors))
        # Store floats as floats so 0 and 0.0 give the same dict, JSON and key().
        object.__setattr__(self, "clip_percentile", float(self.clip_percentile))
        object.__setattr__(self, "clahe_clip", float(self.clahe_clip))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the model card's ``preprocessing`` entry)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessConfig":
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing parameter(s) {unknown}; "
                             f"known ones are {sorted(known)}")
        return cls(**d)

    def key(self) -> str:
        """Short stable hash of the parameters and :data:`PREPROCESS_VERSION`."""
        payload = {**self.to_dict(), "version": PREPROCESS_VERSION}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------- decoding

def read_source(source: str | Path | bytes, name: str | None = None) -> tuple[bytes, str]:
    """The bytes of ``source`` and the name to use in messages (``name`` or the path)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<uploaded bytes>"
    path = Path(source)
    label = name or str(path)
    try:
        return path.read_bytes(), label
    except FileNotFoundError:
        raise DataError("file not found", path=label,
                        hint="check the path and that the data folder is mounted") from None
    except IsADirectoryError:
        raise DataError("is a directory, not an image file", path=label,
                        hint="point to an image file") from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", path=label,
                        hint="check the file's permissions and the disk") from None


def decode_image(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Decode a JPEG, PNG or DICOM into a float32 2-D grayscale array (native intensities).

    ``source`` is a path or the file's bytes; ``name`` names it in errors (uploads). DICOM is
    recognised by "DICM" at offset 128, or by a ``.dcm`` path/name (files without the preamble).
    Colour is reduced to luma; alpha is dropped (X-rays are opaque, and the few transparent
    pixels in public sets are black underneath). EXIF orientation is applied. DICOM gets its
    modality LUT (rescale), VOI LUT / window, and MONOCHROME1 inversion (bone bright).
    Raises :class:`ImageDecodeError` (or :class:`DataError` for an unreadable path).
    """
    data, label = read_source(source, name)
    if not data:
        raise ImageDecodeError("the file is empty (0 bytes)", path=label, hint=_DECODE_HINT)
    try:
        if _is_dicom(data, label):
            gray = _decode_dicom(data)
        else:
            gray = _decode_pil(data)
    except ImageDecodeError as exc:
        raise ImageDecodeError(error_reason(exc), path=label, hint=_DECODE_HINT) from None
    except CXRError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any decoder failure means "not a usable image"
        raise ImageDecodeError(f"cannot decode the image ({type(exc).__name__}: {exc})",
                               path=label, hint=_DECODE_HINT) from exc
    if gray.ndim != 2 or gray.size == 0:
        raise ImageDecodeError(f"decoded to an unusable array of shape {gray.shape}",
                               path=label, hint=_DECODE_HINT)
    return np.ascontiguousarray(gray, dtype=np.float32)


def error_reason(exc: DataError) -> str:
    """The message of a :class:`DataError` without its path prefix and hint suffix."""
    text = str(exc)
    if exc.path and text.startswith(f"{exc.path}: "):
        text = text[len(exc.path) + 2:]
    if exc.hint and text.endswith(f" What to do: {exc.hint}"):
        text = text[: -len(f" What to do: {exc.hint}")]
    return text


def _is_dicom(data: bytes, label: str) -> bool:
    return data[128:132] == b"DICM" or label.lower().endswith(".dcm")


def _decode_pil(data: bytes) -> np.ndarray:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A global switch someone flipped would make truncated files decode silently.
        raise CXRError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so truncated images would "
                       "be accepted silently; remove the code that sets it")
    try:
        img = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError("not a JPEG, PNG or DICOM image (unrecognised content)") from None
    _check_pixels(img)
    img.load()  # decode now, inside the caller's try: truncation raises here
    img = ImageOps.exif_transpose(img)
    return _pil_to_gray(img)


def _check_pixels(img: Image.Image) -> None:
    """Refuse decompression bombs (Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise ImageDecodeError(
            f"image is {img.width}x{img.height} pixels, more than the {limit} allowed "
            "(possible decompression bomb)")


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32)
    if mode in ("LA", "La"):
        return np.asarray(img)[..., 0].astype(np.float32)
    if mode in ("P", "PA"):
        img = img.convert("RGBA")  # RGBA, not RGB: keeps Pillow quiet about palette transparency
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode not in ("RGB", "RGBA", "RGBX", "RGBa"):
        raise ImageDecodeError(f"unsupported image mode {mode!r}")
    rgb = np.asarray(img)[..., :3].astype(np.float32)
    return rgb @ _LUMA


def _decode_dicom(data: bytes) -> np.ndarray:
    import pydicom  # DICOM input only
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array  # DICOM input only

    force = data[128:132] != b"DICM"  # old files without the preamble, named *.dcm
    ds = pydicom.dcmread(io.BytesIO(data), force=force)
    if "PixelData" not in ds:
        raise ImageDecodeError("DICOM file has no pixel data (not an image object)")
    try:
        arr = pixel_array(ds, index=0)  # first frame only; BitsStored is applied by pydicom
    except (NotImplementedError, RuntimeError) as exc:
        raise ImageDecodeError(
            f"cannot decode DICOM pixel data with transfer syntax "
            f"{ds.file_meta.get('TransferSyntaxUID', '?')} ({exc}); install a decoder plugin "
            "(pylibjpeg, gdcm) or convert the file to uncompressed DICOM or PNG") from None
    if ds.get("SamplesPerPixel", 1) > 1:  # colour DICOM (pydicom already converted YBR to RGB)
        return arr[..., :3].astype(np.float32) @ _LUMA
    arr = apply_modality_lut(arr, ds)
    arr = apply_voi_lut(arr, ds, index=0)
    arr = np.asarray(arr, dtype=np.float32)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr  # low values are white in MONOCHROME1
    return arr


# ----------------------------------------------------------------------------- preprocessing

def preprocess(gray: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Normalise, [CLAHE], resize and pad/crop a 2-D image to ``uint8 (size, size, channels)``."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"preprocess expects a non-empty 2-D grayscale array, got {gray.shape}")
    x = normalise(gray, cfg.clip_percentile)
    if cfg.clahe and x.any():  # CLAHE would turn a blank (constant) image into noise
        from skimage.exposure import equalize_adapthist  # CLAHE only

        x = equalize_adapthist(x, clip_limit=cfg.clahe_clip).astype(np.float32)
    x = _resize_square(x, cfg.size, cfg.resize)
    out = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(out[..., None], cfg.channels, axis=-1)


def normalise(gray: np.ndarray, clip_percentile: float) -> np.ndarray:
    """Clip to the p-th / (100-p)-th percentiles and rescale to [0, 1] (constant -> zeros)."""
    x = np.asarray(gray, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("image contains NaN or infinite values")
    lo, hi = np.percentile(x, [clip_percentile, 100.0 - clip_percentile])
    if not hi > lo:
        return np.zeros(x.shape, dtype=np.float32)
    return np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0, dtype=np.float32)


def _resize_square(x: np.ndarray, size: int, how: str) -> np.ndarray:
    """Aspect-preserving resize to ``size``: zero pad (centred) or centre crop."""
    h, w = x.shape
    img = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32))  # mode "F"
    if how == "crop":
        side = min(h, w)
        left, top = (w - side) / 2, (h - side) / 2
        # resize(box=) crops and resamples in one pass, sampling the exact centre square.
        return np.asarray(img.resize((size, size), RESAMPLE, box=(left, top, left + side,
                                                                   top + side)))
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(img.resize((new_w, new_h), RESAMPLE))
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def load_image(source: str | Path | bytes, cfg: PreprocessConfig,
               name: str | None = None) -> np.ndarray:
    """Decode and preprocess a file or uploaded bytes: ``uint8 (size, size, channels)``."""
    return preprocess(decode_image(source, name), cfg)

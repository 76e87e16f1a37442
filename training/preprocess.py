"""The one preprocessing of a chest X-ray, shared by training and the web app.

``load_image(source, cfg)`` = ``preprocess(decode_image(source), cfg)``: :func:`decode` turns a
JPEG / PNG (Pillow) or DICOM (pydicom) file or its bytes, once, into a float32 grey array in its
own intensity scale plus what the input gate needs; :func:`preprocess` clips to percentiles,
rescales to [0, 1], [CLAHE], resizes keeping the aspect ratio (zero pad or centre crop) to
``uint8 (size, size, channels)``. The same bytes and config give byte-identical output.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# is_dicom and DEFAULT_MAX_PIXELS are part of this module's decode API (pp.is_dicom: the rule).
from training.dicom import is_dicom, read_dicom
from training.errors import CXRError, DataError, ImageDecodeError
from training.pixels import BLOCK_PIXELS, DEFAULT_MAX_PIXELS, LUMA, by_rows, check_size

__all__ = ["DEFAULT_MAX_PIXELS", "DecodedImage", "PreprocessConfig", "decode", "decode_image",
           "is_dicom", "load_image", "normalise", "preprocess", "read_source"]

#: Bump whenever the output of :func:`preprocess` / :func:`decode_image` changes for the same
#: config: it is part of :meth:`PreprocessConfig.key`, so every cache is rebuilt.
PREPROCESS_VERSION = 1

#: Pillow formats accepted (the JPEG opener also handles multi-picture "MPO" phone JPEGs).
PIL_FORMATS = ("PNG", "JPEG")

#: Fixed resampling filter: antialiased when shrinking, no overshoot, deterministic.
RESAMPLE = Image.Resampling.BILINEAR

#: Pillow modes reduced to grey through RGB (the others are grey: 1, L, LA, I, I;16, F).
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})

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

@dataclass
class DecodedImage:
    """One decoded file, shared by the gate, preprocessing, heatmaps and reports (decoded once)."""

    gray: np.ndarray                             # float32 (H, W), the image's own intensities
    colour_preview: np.ndarray | None = None     # uint8 (h, w, 3) of a colour PNG/JPEG, if asked
    dicom_tags: dict[str, Any] = field(default_factory=dict)  # training.dicom.DICOM_TAGS of a DICOM


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


def decode(source: str | Path | bytes, name: str | None = None, *, max_pixels: int | None = None,
           preview_size: int | None = None) -> DecodedImage:
    """Decode a JPEG, PNG or DICOM (path or bytes; ``name`` names it in errors) once.

    Over ``max_pixels`` (None: :data:`DEFAULT_MAX_PIXELS`; DICOM: rows x columns x frames x
    samples) is refused from the header, before any pixel allocation; a DICOM's first frame only
    is decoded. Colour becomes luma; alpha is dropped (X-rays are opaque); EXIF orientation is
    applied; DICOM gets its modality LUT, VOI LUT / window, MONOCHROME1 inversion (bone bright).
    ``preview_size``: also a uint8 RGB thumbnail of a colour PNG/JPEG."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    data, label = read_source(source, name)
    dicom = is_dicom(data, label)
    try:
        if not data:
            raise ImageDecodeError("the file is empty (0 bytes)")
        out = _decode_dicom(data, limit) if dicom else _decode_pil(data, limit, preview_size)
        if out.gray.ndim != 2 or out.gray.size == 0:
            raise ImageDecodeError(f"decoded to an unusable array of shape {out.gray.shape}")
        if not (np.isfinite(out.gray.min()) and np.isfinite(out.gray.max())):  # NaN: min is NaN
            raise ImageDecodeError("the image holds NaN or infinite values")
    except ImageDecodeError as exc:
        raise ImageDecodeError(error_reason(exc), path=label, hint=_DECODE_HINT) from None
    except CXRError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any decoder failure means "not a usable image"
        # pydicom's messages can quote tag values ("Unable to convert '1970-01-01' to 'DA'")
        detail = type(exc).__name__ if dicom else f"{type(exc).__name__}: {exc}"
        raise ImageDecodeError(f"cannot decode the image ({detail})", path=label,
                               hint=_DECODE_HINT) from (None if dicom else exc)
    return out


def decode_image(source: str | Path | bytes, name: str | None = None, *,
                 max_pixels: int | None = None) -> np.ndarray:
    """:func:`decode`'s float32 2-D grayscale array (native intensities)."""
    return decode(source, name, max_pixels=max_pixels).gray


def error_reason(exc: DataError) -> str:
    """The message of a :class:`DataError` without its path prefix and hint suffix."""
    text = str(exc).removeprefix(f"{exc.path}: " if exc.path else "")
    return text.removesuffix(f" What to do: {exc.hint}" if exc.hint else "")


def _decode_dicom(data: bytes, limit: int) -> DecodedImage:
    gray, tags = read_dicom(data, limit)
    return DecodedImage(gray, dicom_tags=tags)


def _decode_pil(data: bytes, limit: int, preview_size: int | None) -> DecodedImage:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A global switch someone flipped would make truncated files decode silently.
        raise CXRError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so truncated images would "
                       "be accepted silently; remove the code that sets it")
    try:
        img = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError("not a JPEG, PNG or DICOM image (unrecognised content)") from None
    limit = min(limit, Image.MAX_IMAGE_PIXELS or limit)
    check_size(img.width * img.height, f"{img.width}x{img.height}", limit)
    img.load()  # decode now, inside the caller's try: truncation raises here
    ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when there is no rotation
    if img.mode not in COLOUR_MODES:  # grey; LA: the first channel
        return DecodedImage(_pil_rows(img, lambda a: a[..., 0] if a.ndim == 3 else a))
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # RGBA, not RGB: keeps Pillow quiet about palette transparency
    if img.mode not in ("RGB", "RGBX", "RGBa"):
        img = img.convert("RGB")   # RGBA drops alpha exactly; CMYK, YCbCr, LAB, HSV convert
    gray = _pil_rows(img, lambda a: a[..., :3].astype(np.float32) @ LUMA)
    if not preview_size:
        return DecodedImage(gray)
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    rgb.thumbnail((preview_size, preview_size), Image.Resampling.BILINEAR)  # in place: ours
    return DecodedImage(gray, np.asarray(rgb, dtype=np.uint8))


def _pil_rows(img: Image.Image, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """float32 grey of ``img``, converting one crop of rows at a time."""
    return by_rows(img.height, img.width, lambda top, end: convert(np.asarray(
        img.crop((0, top, img.width, end)))))


# ----------------------------------------------------------------------------- preprocessing

def preprocess(gray: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Normalise, [CLAHE], resize and pad/crop a 2-D image to ``uint8 (size, size, channels)``."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"preprocess expects a non-empty 2-D grayscale array, got {gray.shape}")
    if cfg.clahe:
        x = normalise(gray, cfg.clip_percentile)
        if x.any():  # CLAHE would turn a blank (constant) image into noise
            from skimage.exposure import equalize_adapthist  # CLAHE only

            x = equalize_adapthist(x, clip_limit=cfg.clahe_clip).astype(np.float32)
        img = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32))  # mode "F"
    else:
        img = _normalised_image(gray, cfg.clip_percentile)
    x = _resize_square(img, cfg.size, cfg.resize)
    out = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(out[..., None], cfg.channels, axis=-1)


def normalise(gray: np.ndarray, clip_percentile: float) -> np.ndarray:
    """Clip to the p-th / (100-p)-th percentiles and rescale to [0, 1] (constant -> zeros)."""
    x = np.asarray(gray, dtype=np.float32)
    lo, hi = _clip_range(x, clip_percentile)
    return _rescale(x, lo, hi) if hi > lo else np.zeros(x.shape, dtype=np.float32)


def _clip_range(x: np.ndarray, clip_percentile: float) -> tuple[float, float]:
    if not (np.isfinite(x.min()) and np.isfinite(x.max())):  # NaN: min is NaN
        raise ValueError("image contains NaN or infinite values")
    if clip_percentile == 0:  # the 0th / 100th percentiles are exactly min and max: no copy
        return float(x.min()), float(x.max())
    lo, hi = np.percentile(x, [clip_percentile, 100.0 - clip_percentile])
    return float(lo), float(hi)


def _rescale(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``clip((x - lo) / (hi - lo), 0, 1)`` in float32 into one new array (no temporaries)."""
    out = np.subtract(x, np.float32(lo), dtype=np.float32)
    np.divide(out, np.float32(hi - lo), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def _normalised_image(gray: np.ndarray, clip_percentile: float) -> Image.Image:
    """:func:`normalise` into the resize's Pillow "F" image a block of rows at a time: the
    full-size float result exists once, in Pillow, not also in numpy."""
    x = np.asarray(gray, dtype=np.float32)
    lo, hi = _clip_range(x, clip_percentile)
    img = Image.new("F", x.shape[::-1], 0.0)
    for top in range(0, x.shape[0] * (hi > lo), step := max(1, BLOCK_PIXELS // x.shape[1])):
        img.paste(Image.fromarray(_rescale(x[top:top + step], lo, hi)), (0, top))
    return img


def _resize_square(img: Image.Image, size: int, how: str) -> np.ndarray:
    """Aspect-preserving resize of a mode "F" image to ``size``: zero pad (centred) or centre crop."""
    w, h = img.size
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

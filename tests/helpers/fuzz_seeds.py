"""Seed files for the upload fuzz campaign: real JPEG/PNG X-rays, generated images and DICOMs.

Every seed is small (at most 512 px a side) so thousands of mutants run in minutes. The DICOMs
cover what an upload may be: MONOCHROME1/2 at 8 and 16 bits, signed with rescale and window,
RGB, multi-frame, implicit VR, deflated, no preamble, and the compressed transfer syntaxes
this environment can write (RLE natively, JPEG baseline and JPEG 2000 through Pillow,
JPEG-LS when pyjpegls is installed). Without ``../shared/data`` the generated images stand in.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.images import chest_like

FORMATS = ("jpeg", "png", "dicom")
SUFFIX = {"jpeg": "jpg", "png": "png", "dicom": "dcm"}
#: One file per (format, Pillow mode) from each real collection: the modes uploads come in.
REAL_KINDS = (("JPEG", "L"), ("JPEG", "RGB"), ("PNG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"))
H, W = 256, 224  # generated seeds: over the gate's 128 px minimum, small enough to be fast


@dataclass(frozen=True)
class Seed:
    """A seed file: ``fmt`` one of :data:`FORMATS`; ``filename`` the name it is uploaded as."""

    name: str
    fmt: str
    data: bytes
    filename: str


def _seed(name: str, fmt: str, data: bytes, filename: str | None = None) -> Seed:
    return Seed(name, fmt, data, filename or f"{name}.{SUFFIX[fmt]}")


# ------------------------------------------------------------------------------ real files

def real_seeds(data_root: Path) -> list[Seed]:
    """A few real X-rays: one per :data:`REAL_KINDS` from ieee8023, two Kermany JPEGs."""
    seeds = []
    images = data_root / "ieee8023-covid-chestxray" / "images"
    if images.is_dir():
        wanted = set(REAL_KINDS)
        for path in sorted(images.iterdir()):
            with Image.open(path) as img:
                kind = (img.format, img.mode)
            if kind in wanted and max(img.size) <= 512:
                wanted.discard(kind)
                seeds.append(_seed(f"ieee8023/{path.name}", "jpeg" if kind[0] == "JPEG" else "png",
                                   path.read_bytes(), path.name))
            if not wanted:
                break
    for cls in ("NORMAL", "PNEUMONIA"):
        folder = data_root / "kermany-pneumonia" / "train" / cls
        if folder.is_dir():
            path = min(folder.glob("*.jpeg"), default=None)
            if path is not None:
                seeds.append(_seed(f"kermany/{path.name}", "jpeg", path.read_bytes(), path.name))
    return seeds


# ------------------------------------------------------------------------- generated images

def pil_bytes(img: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save)
    return buffer.getvalue()


def image_seeds() -> list[Seed]:
    """Generated PNGs (L, RGB, RGBA, palette, 16-bit, 1-bit) and JPEGs (grey, colour,
    progressive, EXIF-rotated, CMYK): the Pillow paths an upload can take."""
    grey = Image.fromarray(chest_like(H, W, seed=3))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    return [
        _seed("gen-png-L", "png", pil_bytes(grey, "PNG")),
        _seed("gen-png-RGB", "png", pil_bytes(grey.convert("RGB"), "PNG")),
        _seed("gen-png-RGBA", "png", pil_bytes(grey.convert("RGBA"), "PNG")),
        _seed("gen-png-P", "png", pil_bytes(grey.convert("P"), "PNG")),
        _seed("gen-png-I16", "png", pil_bytes(Image.fromarray(chest_like(H, W, 4).astype(np.uint16) * 257), "PNG")),
        _seed("gen-png-1bit", "png", pil_bytes(grey.convert("1"), "PNG")),
        _seed("gen-jpeg-L", "jpeg", pil_bytes(grey, "JPEG", quality=90)),
        _seed("gen-jpeg-RGB", "jpeg", pil_bytes(grey.convert("RGB"), "JPEG", quality=90)),
        _seed("gen-jpeg-progressive", "jpeg", pil_bytes(grey, "JPEG", progressive=True)),
        _seed("gen-jpeg-exif", "jpeg", pil_bytes(grey, "JPEG", exif=exif.tobytes())),
        _seed("gen-jpeg-CMYK", "jpeg", pil_bytes(grey.convert("CMYK"), "JPEG")),
    ]


# ---------------------------------------------------------------------------------- DICOM

def dicom_dataset(pixels: np.ndarray, syntax: str, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
             signed: bool = False, **tags):
    """A Digital X-Ray dataset holding ``pixels`` ((H,W), (H,W,3) or (F,H,W)), uncompressed."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix=None, entropy_srcs=["fuzz", str(pixels.shape)])
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("seed.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(prefix=None, entropy_srcs=["fuzz-study"])
    ds.SeriesInstanceUID = generate_uid(prefix=None, entropy_srcs=["fuzz-series"])
    # The patient and study modules a report copies (fuzzed like every other element).
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Fuzz^Seed", "FUZZ-0001", "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20200101", "120000", "A1", "1"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    colour = pixels.ndim == 3 and pixels.shape[-1] == 3
    frames = pixels.shape[0] if pixels.ndim == 3 and not colour else None
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    if frames:
        ds.NumberOfFrames = frames
    ds.PhotometricInterpretation = "RGB" if colour else photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def dicom_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def encapsulated(ds, syntax: str, frame: bytes, photometric: str) -> bytes:
    """``ds`` with one frame already compressed by Pillow (JPEG, JPEG 2000)."""
    from pydicom.encaps import encapsulate

    ds.file_meta.TransferSyntaxUID = syntax
    ds.PhotometricInterpretation = photometric
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01" if syntax.endswith(".50") else "00"
    return dicom_bytes(ds)


def dicom_seeds() -> list[Seed]:
    """Generated DICOMs; compressed ones only where this environment has the encoder."""
    from pydicom import uid

    img8 = chest_like(H, W, seed=5)
    img12 = img8.astype(np.uint16) * 16
    out = {
        "dcm-mono2-u16": dicom_bytes(dicom_dataset(img12, uid.ExplicitVRLittleEndian, bits_stored=12)),
        "dcm-mono1-u8": dicom_bytes(dicom_dataset(255 - img8, uid.ExplicitVRLittleEndian, "MONOCHROME1")),
        "dcm-mono2-s16-lut": dicom_bytes(dicom_dataset(img12.astype(np.int16) - 2048, uid.ExplicitVRLittleEndian, signed=True,
                                            bits_stored=12, RescaleSlope="0.5", RescaleIntercept="-100",
                                            WindowCenter="-50", WindowWidth="900")),
        "dcm-rgb": dicom_bytes(dicom_dataset(np.repeat(img8[..., None], 3, -1), uid.ExplicitVRLittleEndian)),
        "dcm-multiframe": dicom_bytes(dicom_dataset(np.stack([img8, img8[::-1], 255 - img8]), uid.ExplicitVRLittleEndian)),
        "dcm-implicit": dicom_bytes(dicom_dataset(img12, uid.ImplicitVRLittleEndian, bits_stored=12)),
        "dcm-deflated": dicom_bytes(dicom_dataset(img12, uid.DeflatedExplicitVRLittleEndian, bits_stored=12)),
    }
    for name, pixels, syntax in (("dcm-rle-u16", img12, uid.RLELossless),
                                 ("dcm-rle-rgb", np.repeat(img8[..., None], 3, -1), uid.RLELossless),
                                 ("dcm-jpegls", img12, uid.JPEGLSLossless)):
        ds = dicom_dataset(pixels, uid.ExplicitVRLittleEndian, bits_stored=12 if pixels.dtype == np.uint16 else None)
        try:
            ds.compress(syntax, generate_instance_uid=False)
        except (RuntimeError, NotImplementedError, ValueError):  # no encoder plugin here
            continue
        out[name] = dicom_bytes(ds)
    grey = Image.fromarray(img8)
    out["dcm-jpeg-baseline"] = encapsulated(dicom_dataset(img8, uid.ExplicitVRLittleEndian), uid.JPEGBaseline8Bit,
                                             pil_bytes(grey, "JPEG", quality=90), "MONOCHROME2")
    try:
        j2k = pil_bytes(grey, "JPEG2000", no_jp2=True, irreversible=False)
        out["dcm-j2k"] = encapsulated(dicom_dataset(img8, uid.ExplicitVRLittleEndian), uid.JPEG2000Lossless, j2k,
                                       "MONOCHROME2")
    except (OSError, KeyError):  # Pillow built without OpenJPEG
        pass
    seeds = [_seed(name, "dicom", data) for name, data in out.items()]
    # Old files without the 128-byte preamble are read as DICOM by their name.
    seeds.append(_seed("dcm-no-preamble", "dicom", out["dcm-mono2-u16"][132:]))
    return seeds


def deflate_bomb() -> Seed:
    """A deflated DICOM whose 64 MB private element compresses to ~64 KB (a hostile seed)."""
    from pydicom import uid

    ds = dicom_dataset(chest_like(H, W, seed=6), uid.DeflatedExplicitVRLittleEndian)
    ds.add_new(0x00091010, "LO", "FUZZ")  # private creator
    ds.add_new(0x00091011, "OB", bytes(64 << 20))
    data = dicom_bytes(ds)
    return _seed("hostile-deflate-bomb", "dicom", data)


def hostile_seeds() -> list[Seed]:
    """The known hostile files (tests/helpers/hostile.py) over the fuzz budget, and the deflate bomb."""
    from tests.helpers import hostile

    return [
        _seed("hostile-rle-bomb", "dicom", hostile.rle_bomb_dicom()),          # the 662-byte file
        _seed("hostile-many-frames", "dicom", hostile.many_frames_dicom(rows=256, columns=256)),
        _seed("hostile-short-pixels", "dicom", hostile.short_pixel_dicom()),
        _seed("hostile-no-preamble", "dicom", hostile.dicom_without_preamble(), "hostile-no-preamble.dicom"),
        _seed("hostile-odd-tags", "dicom", hostile.odd_tags_dicom()),
        _seed("hostile-png-bomb", "png", hostile.png_bomb(4_000_000)),
        _seed("hostile-one-bit-png", "png", hostile.one_bit_png(2400, 2400)),
        deflate_bomb(),
    ]


def all_seeds(data_root: Path | None, hostile: bool = True) -> list[Seed]:
    """Real seeds (when ``data_root`` has them), generated images and DICOMs, [hostile files]."""
    real = real_seeds(data_root) if data_root is not None and data_root.is_dir() else []
    return real + image_seeds() + dicom_seeds() + (hostile_seeds() if hostile else [])

"""Hostile upload files, built in memory: for the decode tests, the fuzz campaign and benchmarks.

Each maker returns the file's bytes. The DICOMs are written with pydicom, the bombs with a
streaming PNG writer (rows are compressed as they are made, so a 1.6-gigapixel bomb costs
its compressed size, not its pixels, to build).
"""
from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from tests.helpers.images import chest_like

#: Tag values of :func:`odd_tags_dicom` that must never reach a log, warning, stderr or error.
ODD_TAG_VALUES = ("Doe^Jane", "1970-01-01", "ACME-SECRET-7731", "Hospital-Ward-Sekret",
                  "PID-9932-XYZ", "DS-SECRET-42")
_DS_PLACEHOLDER = b"12345678.125"  # a valid DS as long as ODD_TAG_VALUES[5], swapped in after writing

XRAY_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


# ------------------------------------------------------------------------------- DICOM

@contextmanager
def _lenient_writing() -> Iterator[None]:
    """Let pydicom store invalid values (real archives hold them; pydicom 3 raises by default)."""
    from pydicom import config

    with config.disable_value_validation():
        yield


def _dataset(rows: int, columns: int, syntax: str, bits: int = 16, samples: int = 1) -> Any:
    """A minimal DX dataset with file meta; the caller sets PixelData."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRAY_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["cxrlab-hostile"])
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = XRAY_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    return ds


def _dicom_bytes(ds: Any, preamble: bool = True) -> bytes:
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        ds.preamble = None
        ds.save_as(buffer, enforce_file_format=False)  # no preamble, no "DICM"
    return buffer.getvalue()


def rle_bomb_dicom(rows: int = 40000, columns: int = 40000) -> bytes:
    """RLE Lossless DICOM declaring ``rows`` x ``columns`` 8-bit pixels with a few bytes of data.

    The issue's file: ~660 bytes that made pydicom allocate 1.6 GB before finding the data short.
    """
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    ds = _dataset(rows, columns, RLELossless, bits=8)
    segment = bytes([0x81, 0]) * 8  # "repeat 0 128 times", eight times: far short of the frame
    header = struct.pack("<16L", 1, 64, *[0] * 14)  # one segment, starting after the header
    ds.PixelData = encapsulate([header + segment])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _dicom_bytes(ds)


def codestream_bomb_dicom(syntax: str = "jpeg", side: int = 9000) -> bytes:
    """A 64 x 64 DICOM whose compressed frame's own header declares ``side`` x ``side``.

    ``syntax``: "jpeg" (Baseline, SOF0) or "j2k" (JPEG 2000, SIZ); the frame is a Pillow-made
    64 x 64 codestream with its size fields rewritten, so a decoder would allocate ``side``^2.
    ``side=64``: an honest compressed DICOM (a seed for mutation).
    """
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    buffer = io.BytesIO()
    Image.fromarray(chest_like(64, 64)).save(buffer, "JPEG" if syntax == "jpeg" else "JPEG2000",
                                             **({} if syntax == "jpeg" else {"no_jp2": True}))
    frame = bytearray(buffer.getvalue())
    if syntax == "jpeg":
        struct.pack_into(">HH", frame, frame.find(b"\xff\xc0") + 5, side, side)
    else:
        struct.pack_into(">II", frame, frame.find(b"\xff\x51") + 6, side, side)  # Xsiz, Ysiz
    ds = _dataset(64, 64, JPEGBaseline8Bit if syntax == "jpeg" else JPEG2000Lossless, bits=8)
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _dicom_bytes(ds)


def uncompressed_dicom(rows: int, columns: int, pixels: np.ndarray | None = None,
                       frames: int | None = None, data_bytes: int | None = None,
                       preamble: bool = True, **tags) -> bytes:
    """Explicit VR Little Endian 16-bit DICOM; ``data_bytes`` cuts the pixel data short.

    ``pixels`` (uint16-castable, ``rows`` x ``columns``) defaults to a smooth gradient; ``frames``
    declares NumberOfFrames (only the given pixels are stored, once per frame up to 4 frames).
    """
    from pydicom.uid import ExplicitVRLittleEndian

    ds = _dataset(rows, columns, ExplicitVRLittleEndian)
    if pixels is None:
        y, x = np.ogrid[0:rows, 0:columns]
        pixels = (x * 3 + y * 2) % 4096
    raw = np.asarray(pixels, dtype=np.uint16).tobytes()
    if frames is not None:
        ds.NumberOfFrames = frames
        raw *= min(frames, 4)
    ds.PixelData = raw if data_bytes is None else raw[:data_bytes]
    with _lenient_writing():
        for key, value in tags.items():
            setattr(ds, key, value)
    return _dicom_bytes(ds, preamble)


def deflate_bomb_dicom(inflated: int = 256 << 20) -> bytes:
    """A valid Deflated Explicit VR Little Endian DICOM (64 x 64) whose dataset inflates to
    ``inflated`` bytes more: a private OB element of zeros after the pixel data, ~1000x smaller
    in the file (pydicom inflates the whole dataset before reading any of it)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = _dataset(64, 64, DeflatedExplicitVRLittleEndian)
    ds.PixelData = chest_like(64, 64).astype(np.uint16).tobytes()
    small = _dicom_bytes(ds)
    meta_end = 144 + int.from_bytes(small[140:144], "little")  # after (0002,0000) group length
    dataset = zlib.decompress(small[meta_end:], -zlib.MAX_WBITS)
    creator = struct.pack("<HH2sH", 0x7FE1, 0x0010, b"LO", 4) + b"BOMB"
    element = struct.pack("<HH2sHI", 0x7FE1, 0x1010, b"OB", 0, inflated)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(dataset + creator + element)]
    parts += [deflater.compress(bytes(1 << 20)) for _ in range(inflated >> 20)]
    parts += [deflater.compress(bytes(inflated % (1 << 20))), deflater.flush()]
    return small[:meta_end] + b"".join(parts)


def many_frames_dicom(frames: int = 100_000, rows: int = 512, columns: int = 512) -> bytes:
    """A DICOM declaring ``frames`` frames of ``rows`` x ``columns``, holding one frame's data."""
    return uncompressed_dicom(rows, columns, frames=frames, data_bytes=rows * columns * 2)


def short_pixel_dicom(rows: int = 6000, columns: int = 6000, data_bytes: int = 1024) -> bytes:
    """Uncompressed DICOM whose pixel data holds ``data_bytes`` bytes of the frame it declares."""
    return uncompressed_dicom(rows, columns, pixels=np.zeros((1, data_bytes // 2)),
                              data_bytes=data_bytes)


def dicom_without_preamble(rows: int = 256, columns: int = 256) -> bytes:
    """A valid chest-like DICOM without the 128-byte preamble and "DICM" (named ``*.dicom``)."""
    return uncompressed_dicom(rows, columns, pixels=chest_like(rows, columns), preamble=False,
                              BitsStored=8, HighBit=7)


def odd_tags_dicom(rows: int = 256, columns: int = 256) -> bytes:
    """A chest-like DICOM with patient data, non-conformant values and odd private tags.

    Every string in :data:`ODD_TAG_VALUES` is in it; none may be echoed by the decoder.
    """
    from pydicom.uid import ExplicitVRLittleEndian

    ds = _dataset(rows, columns, ExplicitVRLittleEndian, bits=16)
    ds.BitsStored, ds.HighBit = 8, 7
    ds.PixelData = chest_like(rows, columns).astype(np.uint16).tobytes()
    with _lenient_writing():
        ds.PatientName = ODD_TAG_VALUES[0]
        ds.PatientBirthDate = ODD_TAG_VALUES[1]                  # DA must be YYYYMMDD
        ds.PatientID = ODD_TAG_VALUES[4] + "-" * 70               # LO longer than 64
        ds.InstitutionalDepartmentName = ODD_TAG_VALUES[3] + "\x07"  # a control character
        ds.StudyDate = "yesterday"
        ds.AcquisitionDateTime = "2020-13-45T99"
        block = ds.private_block(0x0099, "ACME 1.1", create=True)
        block.add_new(0x10, "LO", ODD_TAG_VALUES[2])
        block.add_new(0x11, "DS", _DS_PLACEHOLDER.decode())
        block.add_new(0x12, "UN", b"\xff\xfe" + ODD_TAG_VALUES[2].encode())
    # pydicom cannot hold a non-numeric DS even unvalidated: write it into the bytes instead
    return _dicom_bytes(ds).replace(_DS_PLACEHOLDER, ODD_TAG_VALUES[5].encode(), 1)


# ------------------------------------------------------------------------------- PNG

def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def streamed_png(width: int, height: int, row: Callable[[int], bytes], bit_depth: int = 8,
                 colour_type: int = 0) -> bytes:
    """A PNG whose filtered rows (filter byte 0 + ``row(y)``) are deflated as they are made."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(b"\0" + row(y)) for y in range(height)]
    parts.append(compressor.flush())
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def _square(pixels: int) -> int:
    return max(1, math.isqrt(max(pixels - 1, 0)) + 1)


def png_bomb(pixels: int, colour_type: int = 0, bit_depth: int = 8) -> bytes:
    """A black square PNG of at least ``pixels`` pixels; deflate makes it ~1000x smaller."""
    side = _square(pixels)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    zero = bytes(math.ceil(side * channels * bit_depth / 8))
    return streamed_png(side, side, lambda _: zero, bit_depth, colour_type)


def one_bit_png(width: int, height: int) -> bytes:
    """A 1-bit PNG, top half black and bottom half white (9400 x 9400 is ~11 kB)."""
    black, white = bytes(math.ceil(width / 8)), b"\xff" * math.ceil(width / 8)
    return streamed_png(width, height, lambda y: black if y < height // 2 else white, bit_depth=1)

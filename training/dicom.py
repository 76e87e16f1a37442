"""Reading a DICOM upload or file safely: the one DICOM rule, the header (size, acquisition
tags) checked against the pixel budget before any pixel is allocated, then the first frame
only, as a float32 grey image. No message quotes a tag value (patient data)."""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from training.errors import ImageDecodeError
from training.pixels import by_rows, check_size, luma

#: The acquisition tags of a DICOM that :func:`read_dicom` reports (strings; plus SamplesPerPixel).
DICOM_TAGS = ("Modality", "ViewPosition", "BodyPartExamined", "PhotometricInterpretation",
              "PresentationLUTShape", "ImageLaterality")

_DEFLATED = b"1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian

# JPEG start-of-frame markers (lossless and DCT; 0xF7: JPEG-LS), which declare the frame's size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}


def is_dicom(data: bytes, name: str = "") -> bool:
    """The one DICOM rule: "DICM" at offset 128, or a ``.dcm``/``.dicom`` name (no preamble)."""
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def _dicom_stage(what: str, call: Callable[[], Any]) -> Any:
    """``call()``; a failure is a decode error naming ``what`` and the exception type only."""
    try:
        return call()
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a hostile file can raise anything here
        raise ImageDecodeError(f"cannot {what} ({type(exc).__name__})") from None


def read_dicom(data: bytes, limit: int) -> tuple[np.ndarray, dict[str, Any]]:
    """``(grey first frame, DICOM_TAGS)``: header first (size, tags), then the first frame."""
    import pydicom  # DICOM input only
    from pydicom.encaps import get_frame  # DICOM input only

    # Value validation off, process-wide and for good: pydicom's warnings and log lines quote
    # tag values (patient data); restoring it after each read would race with other threads.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    data = _inflated(data, limit)
    force = data[128:132] != b"DICM"  # old files without the preamble, named *.dcm / *.dicom
    header = _dicom_stage("read the DICOM header", lambda: pydicom.dcmread(
        io.BytesIO(data), stop_before_pixels=True, force=force))
    check_size(*_dicom_stage("read the DICOM's image size", lambda: _dicom_size(header)), limit)
    tags: dict[str, Any] = _dicom_stage("read the DICOM's tags", lambda: {
        key: str(header.get(key, "") or "").strip() for key in DICOM_TAGS})
    tags["SamplesPerPixel"] = int(header.get("SamplesPerPixel") or 1)  # checked: 1 or 3
    ds = _dicom_stage("read the DICOM file", lambda: pydicom.dcmread(io.BytesIO(data), force=force))
    if "PixelData" in ds and ds["PixelData"].is_undefined_length:  # compressed: its own header too
        frame = _dicom_stage("read the first compressed frame", lambda: get_frame(
            ds.PixelData, 0, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
        declared = _dicom_stage("read the compressed frame's header", lambda: _codestream_size(frame))
        check_size(*(declared or (0, "")), limit)
        if declared and not frame.rstrip(b"\0").endswith(b"\xff\xd9"):
            # Cut short: some decoders (CharLS for JPEG-LS) spend seconds before giving up.
            raise ImageDecodeError("the compressed frame is truncated (no end-of-image marker)")
    return _dicom_gray(ds), tags


def _inflated(data: bytes, limit: int) -> bytes:
    """A Deflated Explicit VR Little Endian file's dataset, inflated to at most 4 bytes per pixel
    of the budget + 1 MB, as a bare dataset (pydicom would inflate all of it first: a bomb)."""
    at, syntax = (132 if data[128:132] == b"DICM" else 0), b""
    while data[at:at + 2] == b"\x02\x00" and at + 8 <= len(data):  # file meta: explicit VR LE
        long = data[at + 4:at + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN")
        value = at + (12 if long else 8)
        size = int.from_bytes(data[value - 4:value] if long else data[at + 6:at + 8], "little")
        if data[at + 2:at + 4] == b"\x10\x00":  # (0002,0010) Transfer Syntax UID
            syntax = data[value:value + size].rstrip(b"\0 ")
        at = value + size
    if syntax != _DEFLATED:
        return data
    cap = 4 * limit + (1 << 20)
    dataset = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[at:], cap + 1)
    if len(dataset) > cap:
        raise ImageDecodeError(f"the deflated DICOM inflates to more than {cap} bytes, more than "
                               "its pixel budget can hold (possible decompression bomb)")
    return dataset


def _dicom_size(ds: Any) -> tuple[int, str]:
    """``(pixels, description)``: Rows x Columns x NumberOfFrames x SamplesPerPixel, checked."""
    keys = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel")
    dims = [ds.get(key) for key in keys]
    dims[2:] = [1 if v in (None, "") else v for v in dims[2:]]  # absent: one frame, one sample
    bad = [key for key, v in zip(keys, dims) if not isinstance(v, int) or v < 1]
    if bad:
        raise ImageDecodeError(f"the DICOM header has no valid {' / '.join(bad)} (missing, zero "
                               "or not one whole number)")
    if dims[3] not in (1, 3) or ds.get("BitsAllocated") not in (1, 8, 16, 32):
        raise ImageDecodeError("the DICOM header declares an unsupported pixel layout "
                               "(SamplesPerPixel must be 1 or 3, BitsAllocated 1, 8, 16 or 32)")
    rows, columns, frames, samples = map(int, dims)
    return rows * columns * frames * samples, f"{columns}x{rows}, {frames} frame(s) of {samples} sample(s)"


def _codestream_size(frame: bytes) -> tuple[int, str] | None:
    """Samples a JPEG / JPEG-LS (SOF) or JPEG 2000 (SIZ) frame's header declares: what its
    decoder allocates, whatever Rows and Columns say (None: not one of those codestreams)."""
    at = frame.find(b"\xff\x4f\xff\x51") if frame[4:8] == b"jP  " else 0  # J2K (in a JP2?)
    if frame[at:at + 4] == b"\xff\x4f\xff\x51":  # SOC, SIZ: Xsiz Ysiz XOsiz YOsiz ... Csiz
        x, y, x0, y0 = struct.unpack(">4I", frame[at + 8:at + 24])
        samples = int.from_bytes(frame[at + 40:at + 42], "big")
        return (x - x0) * (y - y0) * samples, f"{x - x0}x{y - y0} (its JPEG 2000 header)"
    at = 2 if frame[:2] == b"\xff\xd8" else len(frame)  # JPEG SOI, then marker segments
    while at + 10 <= len(frame) and frame[at] == 0xFF:
        if frame[at + 1] in _SOF:
            rows, columns, samples = struct.unpack(">HHB", frame[at + 5:at + 10])
            return rows * columns * samples, f"{columns}x{rows} (its JPEG header)"
        at += 2 + int.from_bytes(frame[at + 2:at + 4], "big")
    return None


def _dicom_gray(ds: Any) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
    from pydicom.uid import (UID, AllTransferSyntaxes, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                             ImplicitVRLittleEndian)

    if "PixelData" not in ds:
        raise ImageDecodeError("DICOM file has no pixel data (not an image object)")
    if "TransferSyntaxUID" not in ds.file_meta:  # a bare dataset: the encoding it was read in
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    named = syntax.name if syntax in AllTransferSyntaxes else "(not a standard one)"
    if not _dicom_stage(f"find a decoder for {named}", lambda: get_decoder(syntax).is_available):
        raise ImageDecodeError(
            f"no decoder installed for DICOM transfer syntax {named}; install a decoder plugin "
            "(pylibjpeg, gdcm) or convert the file to uncompressed DICOM or PNG")
    arr = _dicom_stage(  # the first frame only; pydicom applies BitsStored
        f"decode the DICOM pixel data ({named})", lambda: pixel_array(ds, index=0))
    del ds.PixelData  # the encoded bytes are no longer needed: free them before the float copy
    if int(ds.get("SamplesPerPixel") or 1) > 1:  # colour (pydicom converted YBR to RGB)
        return luma(arr)
    gray = _dicom_stage("apply the DICOM's rescale and window", lambda: by_rows(
        *arr.shape[:2], lambda top, end: apply_voi_lut(apply_modality_lut(arr[top:end], ds), ds,
                                                       index=0)))
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        np.subtract(gray.max() + gray.min(), gray, out=gray)  # low values are white
    return gray

"""DICOM tag-level mutations for the fuzz campaign (used by :mod:`tests.helpers.mutate`).

A DICOM file is split into its elements (file meta always explicit VR little endian; the data
set explicit or implicit VR little endian, encapsulated pixel data kept as one undefined-length
value), one element is changed, and the file is written back with valid lengths, so pydicom
reads the changed value instead of stopping at broken framing. Big-endian and deflated data
sets are left to the byte-level mutations. Each op returns ``(bytes, description)`` or None.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field, replace

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: Transfer syntaxes a header may claim (whatever the pixel data really is), and garbage.
SYNTAXES = (IMPLICIT_LE, EXPLICIT_LE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
            "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
            "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.100", "1.2.3.4", "", "\xff\xfe")
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_VRS = (b"US", b"SS", b"UL", b"SL", b"CS", b"IS", b"DS", b"UI", b"OB", b"OW", b"UN", b"SQ", b"UT",
        b"FD", b"FL", b"AT", b"\0\0", b"zz")
PIXEL_DATA, META_LENGTH, SYNTAX = 0x7FE00010, 0x00020000, 0x00020010
#: Unsigned-short image attributes and values that break size arithmetic or bit layouts.
US_TAGS = {"Rows": 0x00280010, "Columns": 0x00280011, "SamplesPerPixel": 0x00280002,
           "PlanarConfiguration": 0x00280006, "BitsAllocated": 0x00280100, "BitsStored": 0x00280101,
           "HighBit": 0x00280102, "PixelRepresentation": 0x00280103}
US_VALUES = (0, 1, 2, 3, 4, 7, 8, 12, 15, 16, 17, 24, 32, 33, 64, 255, 256, 4096, 9000, 32768, 40000, 65535)
#: Text attributes (tag, VR) and values: odd numbers, non-numbers, NaN/inf, multi-values, empty.
_NUMBERS = ("0", "-1", "1", "1e38", "-1e38", "3.5e38", "1e-45", "NaN", "inf", "-inf", "1\\2", "abc", "")
TEXT_TAGS = {
    "NumberOfFrames": (0x00280008, b"IS", ("0", "1", "2", "3", "-1", "65535", "2147483647",
                                           "99999999999", "1.5", "abc", "")),
    "PhotometricInterpretation": (0x00280004, b"CS", ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL",
                                                      "YBR_FULL_422", "PALETTE COLOR", "YBR_RCT", "YBR_ICT",
                                                      "HSV", "ARGB", "", "\xff\xfe")),
    "RescaleSlope": (0x00281053, b"DS", _NUMBERS),
    "RescaleIntercept": (0x00281052, b"DS", _NUMBERS),
    "WindowCenter": (0x00281050, b"DS", _NUMBERS),
    "WindowWidth": (0x00281051, b"DS", _NUMBERS),
    "VOILUTFunction": (0x00281056, b"CS", ("LINEAR", "SIGMOID", "LINEAR_EXACT", "BOGUS", "")),
    "PresentationLUTShape": (0x20500020, b"CS", ("INVERSE", "IDENTITY", "")),
    "Modality": (0x00080060, b"CS", ("DX", "CR", "CT", "", "\xff")),
}
#: Length-field values: small, odd, just past a boundary, "undefined", huge.
LENGTHS = (0, 1, 2, 3, 7, 255, 256, 4095, 65535, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF)
UINT32 = (0, 1, 2, 3, 4, 15, 16, 64, 255, 65535, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF)


@dataclass
class Elem:
    """One element; ``length`` overrides the encoded length field (a length mutation)."""

    tag: int
    vr: bytes | None  # None in an implicit-VR data set
    value: bytes
    undefined: bool = False
    length: int | None = None


@dataclass
class DicomFile:
    """A parsed file: preamble ("" or 128 bytes + DICM), meta and body elements, unparsed rest."""

    preamble: bytes
    meta: list[Elem]
    body: list[Elem] = field(default_factory=list)
    rest: bytes = b""
    explicit: bool = True
    fix_meta_length: bool = True


def _read(data: bytes, at: int, explicit: bool) -> tuple[Elem, int] | None:
    """The element at ``at`` and the offset after it; None where framing ends."""
    if at + 8 > len(data):
        return None
    group, elem = struct.unpack("<HH", data[at:at + 4])
    tag, vr = group << 16 | elem, data[at + 4:at + 6] if explicit else None
    if not explicit:
        length, start = struct.unpack("<I", data[at + 4:at + 8])[0], at + 8
    elif vr in _LONG_VRS:
        if at + 12 > len(data):
            return None
        length, start = struct.unpack("<I", data[at + 8:at + 12])[0], at + 12
    else:
        length, start = struct.unpack("<H", data[at + 6:at + 8])[0], at + 8
    if length == 0xFFFFFFFF:  # undefined length: only encapsulated pixel data, kept whole
        return (Elem(tag, vr, data[start:], True), len(data)) if tag == PIXEL_DATA else None
    if start + length > len(data):
        return None
    return Elem(tag, vr, data[start:start + length]), start + length


def parse(data: bytes) -> DicomFile | None:
    """Split a little-endian DICOM file into elements; None when it is not one."""
    at = 132 if data[128:132] == b"DICM" else 0
    dcm = DicomFile(data[:at], [])
    while at + 8 <= len(data) and data[at:at + 2] == b"\x02\x00":
        got = _read(data, at, True)
        if got is None:
            return None
        dcm.meta.append(got[0])
        at = got[1]
    syntax = next((e.value.rstrip(b"\0 ").decode("latin-1") for e in dcm.meta if e.tag == SYNTAX), None)
    if syntax is None or syntax in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        return None  # big endian or deflated: byte mutations only
    dcm.explicit = syntax != IMPLICIT_LE
    while (got := _read(data, at, dcm.explicit)) is not None:
        dcm.body.append(got[0])
        at = got[1]
    dcm.rest = data[at:]
    return dcm


def _encode(e: Elem, explicit: bool) -> bytes:
    n = len(e.value) if e.length is None else e.length
    n = 0xFFFFFFFF if e.undefined and e.length is None else n
    head = struct.pack("<HH", e.tag >> 16, e.tag & 0xFFFF)
    if not explicit:
        return head + struct.pack("<I", n & 0xFFFFFFFF) + e.value
    vr = e.vr or b"UN"
    if vr in _LONG_VRS:
        return head + vr + b"\0\0" + struct.pack("<I", n & 0xFFFFFFFF) + e.value
    return head + vr + struct.pack("<H", n & 0xFFFF) + e.value[:0xFFFF]


def write(dcm: DicomFile) -> bytes:
    """The file's bytes; the meta group length follows the meta elements unless it was mutated."""
    if dcm.fix_meta_length:
        others = [e for e in dcm.meta if e.tag != META_LENGTH]
        meta = b"".join(_encode(e, True) for e in others)
        if len(others) < len(dcm.meta):
            meta = _encode(Elem(META_LENGTH, b"UL", struct.pack("<I", len(meta))), True) + meta
    else:
        meta = b"".join(_encode(e, True) for e in dcm.meta)
    return dcm.preamble + meta + b"".join(_encode(e, dcm.explicit) for e in dcm.body) + dcm.rest


def _set(elems: list[Elem], tag: int, vr: bytes, value: bytes) -> None:
    """Set ``tag`` (added in tag order when absent)."""
    for i, e in enumerate(elems):
        if e.tag == tag:
            elems[i] = replace(e, value=value, length=None)
            return
    elems.append(Elem(tag, vr, value))
    elems.sort(key=lambda e: e.tag)


def _text(value: str) -> bytes:
    raw = value.encode("latin-1")
    return raw + b" " * (len(raw) % 2)


# ---------------------------------------------------------------------------------- the ops

def _op(data: bytes, rng: random.Random, change) -> tuple[bytes, str] | None:
    dcm = parse(data)
    if dcm is None or not dcm.body:
        return None
    desc = change(dcm, rng)
    return None if desc is None else (write(dcm), "dicom: " + desc)


def us_op(data: bytes, rng: random.Random):
    """Rows, Columns, SamplesPerPixel, BitsAllocated... set to an odd value."""
    def change(dcm: DicomFile, rng: random.Random) -> str:
        name = rng.choice(sorted(US_TAGS))
        value = rng.choice(US_VALUES)
        _set(dcm.body, US_TAGS[name], b"US", struct.pack("<H", value))
        return f"{name} = {value}"
    return _op(data, rng, change)


def text_op(data: bytes, rng: random.Random):
    """NumberOfFrames, PhotometricInterpretation, rescale and window values set oddly."""
    def change(dcm: DicomFile, rng: random.Random) -> str:
        name = rng.choice(sorted(TEXT_TAGS))
        tag, vr, values = TEXT_TAGS[name]
        value = rng.choice(values)
        _set(dcm.body, tag, vr, _text(value))
        return f"{name} = {value!r}"
    return _op(data, rng, change)


def syntax_op(data: bytes, rng: random.Random):
    """The transfer syntax the header claims, whatever the pixel data is."""
    def change(dcm: DicomFile, rng: random.Random) -> str:
        uid = rng.choice(SYNTAXES)
        raw = uid.encode("latin-1")
        _set(dcm.meta, SYNTAX, b"UI", raw + b"\0" * (len(raw) % 2))
        return f"TransferSyntaxUID = {uid!r}"
    return _op(data, rng, change)


def bomb_op(data: bytes, rng: random.Random):
    """A declared size far over any budget (the issue's 40000 x 40000 file), frames and samples."""
    def change(dcm: DicomFile, rng: random.Random) -> str:
        side = rng.choice((9000, 20000, 40000, 65535))
        _set(dcm.body, US_TAGS["Rows"], b"US", struct.pack("<H", side))
        _set(dcm.body, US_TAGS["Columns"], b"US", struct.pack("<H", side))
        desc = f"Rows = Columns = {side}"
        if rng.random() < 0.3:
            frames = rng.choice(("2", "100", "2147483647"))
            _set(dcm.body, TEXT_TAGS["NumberOfFrames"][0], b"IS", _text(frames))
            desc += f", NumberOfFrames = {frames}"
        return desc
    return _op(data, rng, change)


def element_op(data: bytes, rng: random.Random):
    """Any element (meta or data set): garbage value, odd length, other VR, dropped or doubled."""
    def change(dcm: DicomFile, rng: random.Random) -> str | None:
        elems = rng.choice((dcm.meta, dcm.body, dcm.body))
        choices = [i for i, e in enumerate(elems) if e.tag != PIXEL_DATA]
        if not choices:
            return None
        i = rng.choice(choices)
        e = elems[i]
        dcm.fix_meta_length = dcm.fix_meta_length and e.tag != META_LENGTH
        how = rng.choice(("garbage", "odd", "vr", "drop", "duplicate", "length"))
        if how == "garbage":
            elems[i] = replace(e, value=bytes(rng.randrange(256) for _ in range(rng.randint(0, 17))))
        elif how == "odd":
            elems[i] = replace(e, value=e.value[:-1] if e.value and rng.random() < 0.5 else e.value + b"\0")
        elif how == "vr" and e.vr is not None:
            elems[i] = replace(e, vr=rng.choice(_VRS))
        elif how == "drop":
            del elems[i]
        elif how == "length":
            elems[i] = replace(e, length=rng.choice(LENGTHS))
        else:
            how = "duplicate"
            elems.insert(i, e)
        return f"{how} element ({e.tag >> 16:04X},{e.tag & 0xFFFF:04X})"
    return _op(data, rng, change)


def _items(value: bytes) -> list[bytes] | None:
    """The fragments of encapsulated pixel data (offset table first), without the delimiter."""
    items, at = [], 0
    while at + 8 <= len(value):
        tag, length = struct.unpack("<II", value[at:at + 8])
        if tag != 0xE000FFFE:  # (FFFE,E000) item; anything else ends the sequence
            break
        items.append(value[at + 8:at + 8 + length])
        at += 8 + length
    return items or None


def _join(items: list[bytes]) -> bytes:
    out = b"".join(struct.pack("<II", 0xE000FFFE, len(it)) + it for it in items)
    return out + struct.pack("<II", 0xE0DDFFFE, 0)


def pixels_op(data: bytes, rng: random.Random):
    """Pixel data cut, padded or emptied; fragments dropped, doubled or their headers overwritten."""
    def change(dcm: DicomFile, rng: random.Random) -> str | None:
        i = next((k for k, e in enumerate(dcm.body) if e.tag == PIXEL_DATA), None)
        if i is None:
            return None
        e = dcm.body[i]
        items = _items(e.value) if e.undefined else None
        if items is None:
            n = len(e.value)
            cut = rng.choice((0, 1, n // 2, max(n - 1, 0), n + 1, 2 * n))
            dcm.body[i] = replace(e, value=(e.value * 2)[:cut])
            return f"pixel data {n} -> {cut} bytes"
        k = rng.randrange(len(items))
        how = rng.choice(("drop", "duplicate", "header", "header", "cut"))
        if how == "drop":
            del items[k]
        elif how == "duplicate":
            items.insert(k, items[k])
        elif how == "cut":
            items[k] = items[k][: rng.randrange(len(items[k]) + 1)]
        else:  # RLE header (segment count, offsets), JPEG/J2K size fields: all in the first bytes
            frag = bytearray(items[k].ljust(64, b"\0"))
            at = 4 * rng.randrange(16)
            value = rng.choice(UINT32)
            frag[at:at + 4] = struct.pack("<I", value)
            items[k] = bytes(frag)
            how = f"header uint32 @{at} = {value} in"
        dcm.body[i] = replace(e, value=_join(items))
        return f"{how} fragment {k} of {len(items)}"
    return _op(data, rng, change)


#: The DICOM ops, weighted by repetition (sizes and pixel data are what the issue is about).
DICOM_OPS = (us_op, us_op, text_op, text_op, syntax_op, bomb_op, element_op, element_op,
             pixels_op, pixels_op)

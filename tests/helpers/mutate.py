"""A seeded mutator for the upload fuzz campaign: byte, PNG-chunk, JPEG-segment and DICOM-tag level.

``mutate(data, fmt, rng)`` applies one to three mutations to a seed file and returns a
:class:`Mutant` whose ``steps`` describe each one, so a case is reproducible from its seed file
and ``random.Random`` seed, and readable in a report. Format-aware mutations keep the file
parseable one level deeper than random bytes would: PNG chunks get their CRC fixed (mostly),
JPEG segments keep their framing, DICOM elements are re-encoded with valid lengths (unless the
mutation is the length itself), so the decoders' size, frame and codec logic is reached.
"""
from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from tests.helpers.mutate_dicom import DICOM_OPS

#: Values that trip size and sign arithmetic (0, 1, powers of two and their neighbours, maxima).
INT8 = (0, 1, 2, 3, 4, 7, 8, 15, 16, 127, 128, 255)
INT16 = (0, 1, 2, 3, 8, 12, 16, 17, 32, 128, 255, 256, 4096, 9000, 32767, 32768, 40000, 65535)
INT32 = INT16 + (65536, 1 << 20, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)

Step = tuple[bytes, str]           # the mutated bytes and what was done
Op = Callable[[bytes, random.Random], Step | None]   # None: does not apply to this file


@dataclass(frozen=True)
class Mutant:
    """A mutated file and the mutations that made it (in order)."""

    data: bytes
    steps: tuple[str, ...]


def mutate(data: bytes, fmt: str, rng: random.Random, max_steps: int = 3) -> Mutant:
    """One to ``max_steps`` mutations of ``data`` (a ``fmt`` file: "png", "jpeg" or "dicom")."""
    aware = FORMAT_OPS.get(fmt, ())
    n = 1 + (rng.random() < 0.4) + (rng.random() < 0.15)
    steps = []
    for _ in range(min(n, max_steps)):
        result = rng.choice(aware)(data, rng) if aware and rng.random() < 0.7 else None
        for _attempt in range(8):  # a format op may not apply (no SOF, a deflated DICOM): bytes then
            if result is not None:
                data, step = result
                steps.append(step)
                break
            result = rng.choice(BYTE_OPS)(data, rng)
    return Mutant(data, tuple(steps))


# ------------------------------------------------------------------------------ raw bytes

def _span(data: bytes, rng: random.Random, most: int = 64) -> tuple[int, int]:
    start = rng.randrange(len(data))
    return start, min(len(data), start + rng.randint(1, most))


def flip_bytes(data: bytes, rng: random.Random) -> Step | None:
    if not data:
        return None
    out = bytearray(data)
    where = sorted(rng.randrange(len(out)) for _ in range(rng.randint(1, 8)))
    for i in where:
        out[i] ^= rng.randint(1, 255)
    return bytes(out), f"flip bytes at {where}"


def truncate(data: bytes, rng: random.Random) -> Step | None:
    if len(data) < 2:
        return None
    # Half the cuts near the end: the header stays valid and the decoder runs out mid-image.
    cut = rng.randrange(len(data)) if rng.random() < 0.5 else len(data) - rng.randint(1, min(len(data) - 1, 512))
    return data[:cut], f"truncate to {cut} of {len(data)} bytes"


def duplicate_span(data: bytes, rng: random.Random) -> Step | None:
    if not data:
        return None
    a, b = _span(data, rng, 256)
    return data[:b] + data[a:b] + data[b:], f"duplicate bytes {a}:{b}"


def delete_span(data: bytes, rng: random.Random) -> Step | None:
    if len(data) < 2:
        return None
    a, b = _span(data, rng)
    return data[:a] + data[b:], f"delete bytes {a}:{b}"


def overwrite_int(data: bytes, rng: random.Random) -> Step | None:
    width, fmt = rng.choice(((1, "B"), (2, ">H"), (2, "<H"), (4, ">I"), (4, "<I")))
    if len(data) < width:
        return None
    at = rng.randrange(len(data) - width + 1)
    value = rng.choice(INT8 if width == 1 else INT16 if width == 2 else INT32)
    return data[:at] + struct.pack(fmt, value) + data[at + width:], f"write {fmt} {value} at {at}"


BYTE_OPS: tuple[Op, ...] = (flip_bytes, truncate, duplicate_span, delete_span, overwrite_int)


# ------------------------------------------------------------------------------------ PNG

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes) -> list[bytes] | None:
    """The raw chunks (length + type + data + CRC) after the signature; trailing bytes kept."""
    if not data.startswith(PNG_SIG):
        return None
    chunks, at = [], len(PNG_SIG)
    while at + 12 <= len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        end = at + 12 + length
        if end > len(data):
            break
        chunks.append(data[at:end])
        at = end
    if at < len(data):
        chunks.append(data[at:])
    return chunks or None


def _png_chunk(ctype: bytes, body: bytes, crc: bool = True) -> bytes:
    value = zlib.crc32(ctype + body) if crc else zlib.crc32(ctype + body) ^ 1
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", value & 0xFFFFFFFF)


def _png_join(chunks: list[bytes]) -> bytes:
    return PNG_SIG + b"".join(chunks)


def png_chunk_op(data: bytes, rng: random.Random) -> Step | None:
    """Duplicate, drop or swap a chunk, or corrupt its length field."""
    chunks = _png_chunks(data)
    if chunks is None:
        return None
    i = rng.randrange(len(chunks))
    name = chunks[i][4:8].decode("latin-1")
    how = rng.choice(("duplicate", "drop", "swap", "length"))
    if how == "duplicate":
        chunks.insert(i, chunks[i])
    elif how == "drop":
        del chunks[i]
    elif how == "swap" and i + 1 < len(chunks):
        chunks[i], chunks[i + 1] = chunks[i + 1], chunks[i]
    else:
        how, value = "length", rng.choice(INT32)
        chunks[i] = struct.pack(">I", value) + chunks[i][4:]
        return _png_join(chunks), f"png: {name} #{i} length field = {value}"
    return _png_join(chunks), f"png: {how} {name} #{i}"


def png_ihdr_op(data: bytes, rng: random.Random) -> Step | None:
    """A header field (size, bit depth, colour type, interlace) set to an odd value, CRC fixed."""
    chunks = _png_chunks(data)
    if not chunks or chunks[0][4:8] != b"IHDR" or len(chunks[0]) < 25:
        return None
    body = bytearray(chunks[0][8:-4])
    field = rng.choice(("width", "height", "size", "depth", "colour", "interlace"))
    if field in ("width", "height", "size"):
        value = rng.choice(INT32)
        for off in {"width": (0,), "height": (4,), "size": (0, 4)}[field]:
            body[off:off + 4] = struct.pack(">I", value)
    else:
        value = rng.choice(INT8)
        body[{"depth": 8, "colour": 9, "interlace": 12}[field]] = value
    chunks[0] = _png_chunk(b"IHDR", bytes(body))
    return _png_join(chunks), f"png: IHDR {field} = {value}"


def png_body_op(data: bytes, rng: random.Random) -> Step | None:
    """Random bytes inside one chunk's data, the CRC recomputed (so the decoder reads them)."""
    chunks = _png_chunks(data)
    if chunks is None:
        return None
    i = rng.randrange(len(chunks))
    ctype, body = chunks[i][4:8], bytearray(chunks[i][8:-4])
    if len(body) == 0 or len(chunks[i]) < 12:
        return None
    for _ in range(rng.randint(1, 8)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    crc = rng.random() < 0.8
    chunks[i] = _png_chunk(ctype, bytes(body), crc)
    return _png_join(chunks), f"png: garble {ctype.decode('latin-1')} #{i} data (crc {'fixed' if crc else 'bad'})"


def png_insert_op(data: bytes, rng: random.Random) -> Step | None:
    """A new ancillary chunk after IHDR: text, palette, transparency, EXIF, or a zlib bomb."""
    chunks = _png_chunks(data)
    if chunks is None:
        return None
    kind = rng.choice(("tEXt", "zTXt", "iCCP", "PLTE", "tRNS", "eXIf", "sBIT", "bogus"))
    if kind in ("zTXt", "iCCP"):
        # A few KB that inflate to 64 MB: text and profiles are inflated whole by some readers.
        body = b"bomb\0\0" + zlib.compress(b"\0" * (64 << 20), 9)
    elif kind == "eXIf":
        body = b"MM\0*\0\0\0\x08" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    else:
        body = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 3, 255, 768, 769))))
    chunks.insert(1, _png_chunk(kind.encode() if kind != "bogus" else b"xYzW", body))
    return _png_join(chunks), f"png: insert {kind} chunk ({len(body)} bytes)"


# ----------------------------------------------------------------------------------- JPEG

#: Markers without a length field (TEM, RSTn, SOI, EOI).
_NO_LENGTH = {0x01, *range(0xD0, 0xDA)}
#: Start-of-frame markers (every coding process; not DHT C4, JPG C8, DAC CC).
SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_segments(data: bytes) -> list[bytes] | None:
    """``[SOI, segment, ..., SOS segment, scan data + rest]`` (raw bytes), or None."""
    if not data.startswith(b"\xff\xd8"):
        return None
    parts, at = [data[:2]], 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in _NO_LENGTH:
            parts.append(data[at:at + 2])
            at += 2
            continue
        end = at + 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
        parts.append(data[at:end])
        at = end
        if marker == 0xDA:  # the entropy-coded data follows: kept as one tail
            break
    if at < len(data):
        parts.append(data[at:])
    return parts if len(parts) > 2 else None


def jpeg_segment_op(data: bytes, rng: random.Random) -> Step | None:
    """Duplicate or drop a marker segment, or corrupt its length field."""
    parts = _jpeg_segments(data)
    if parts is None:
        return None
    i = rng.randrange(1, len(parts))
    seg = parts[i]
    name = f"{seg[1]:02X}" if seg[:1] == b"\xff" and len(seg) > 1 else "scan"
    how = rng.choice(("duplicate", "drop", "length")) if name != "scan" else "duplicate"
    if how == "duplicate":
        parts.insert(i, seg)
    elif how == "drop":
        del parts[i]
    else:
        if len(seg) < 4 or seg[1] in _NO_LENGTH:
            return None
        value = rng.choice(INT16)
        parts[i] = seg[:2] + struct.pack(">H", value) + seg[4:]
        return b"".join(parts), f"jpeg: segment FF{name} #{i} length = {value}"
    return b"".join(parts), f"jpeg: {how} segment {name} #{i}"


def jpeg_sof_op(data: bytes, rng: random.Random) -> Step | None:
    """The frame header's precision, height, width, component count or sampling set oddly."""
    parts = _jpeg_segments(data)
    if parts is None:
        return None
    frames = [i for i, p in enumerate(parts) if len(p) >= 10 and p[0] == 0xFF and p[1] in SOF]
    if not frames:
        return None
    i = frames[0]
    seg = bytearray(parts[i])
    field = rng.choice(("precision", "height", "width", "size", "components", "sampling"))
    if field == "precision":
        value = seg[4] = rng.choice(INT8)
    elif field == "components":
        value = seg[9] = rng.choice((0, 1, 2, 3, 4, 5, 255))
    elif field == "sampling" and len(seg) > 11:
        value = seg[11] = rng.randrange(256)
    else:
        value = rng.choice(INT16)
        for off in {"height": (5,), "width": (7,), "size": (5, 7)}.get(field, (5,)):
            seg[off:off + 2] = struct.pack(">H", value)
    parts[i] = bytes(seg)
    return b"".join(parts), f"jpeg: SOF{seg[1] - 0xC0} {field} = {value}"


def jpeg_payload_op(data: bytes, rng: random.Random) -> Step | None:
    """Random bytes inside a table / application segment's payload (framing kept)."""
    parts = _jpeg_segments(data)
    if parts is None:
        return None
    tables = [i for i, p in enumerate(parts) if len(p) > 4 and p[0] == 0xFF and p[1] not in _NO_LENGTH]
    if not tables:
        return None
    i = rng.choice(tables)
    seg = bytearray(parts[i])
    for _ in range(rng.randint(1, 6)):
        seg[rng.randrange(4, len(seg))] = rng.randrange(256)
    parts[i] = bytes(seg)
    return b"".join(parts), f"jpeg: garble segment FF{seg[1]:02X} #{i} payload"


FORMAT_OPS: dict[str, tuple[Op, ...]] = {
    "png": (png_chunk_op, png_ihdr_op, png_ihdr_op, png_body_op, png_insert_op),
    "jpeg": (jpeg_segment_op, jpeg_sof_op, jpeg_sof_op, jpeg_payload_op),
    "dicom": DICOM_OPS,
}

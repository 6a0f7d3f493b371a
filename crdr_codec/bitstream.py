"""The .crdr container: a small fixed header followed by one range-coded payload.

Layout (all integers little-endian; see docs/FORMAT.md for the full description)::

    offset  size  field
    0       4     magic  b"CRDR"
    4       1     format version (currently 1)
    5       4     model id: first 4 bytes of the SHA-256 fingerprint of the weights
    9       2     q code (uint16); q = code / 16000, the exact value the encoder used
    11      1-5   image height, unsigned LEB128
    ..      1-5   image width,  unsigned LEB128
    ..      4     CRC-32 of all header bytes before it and of the payload
    ..      ...   payload: 32-bit little-endian words of one range coder stream

For a Kodak-sized image the header is 4+1+4+2+2+2+4 = 19 bytes. Only the standard
library is used, so ``crdr info`` never has to import torch.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .config import Q_CODE_SCALE, Q_MAX
from .errors import BitstreamError

MAGIC = b"CRDR"
VERSION = 1
MODEL_ID_BYTES = 4
MAX_DIM = 1 << 24  # 16,777,216 pixels per side; far beyond any real photo

_FIXED = struct.Struct("<4sB4sH")  # magic, version, model id, q code


@dataclass(frozen=True)
class Header:
    """Decoded header fields of a .crdr file."""

    model_id: bytes  # MODEL_ID_BYTES bytes
    q_code: int
    height: int
    width: int
    version: int = VERSION

    @property
    def q(self) -> float:
        return self.q_code / Q_CODE_SCALE

    def to_json(self) -> dict:
        return {
            "format_version": self.version,
            "model_id": self.model_id.hex(),
            "q": self.q,
            "q_code": self.q_code,
            "height": self.height,
            "width": self.width,
        }


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_leb128(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(5):
        if pos + i >= len(buf):
            raise BitstreamError("truncated .crdr header")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos + i + 1
    raise BitstreamError("corrupt .crdr header (bad image size field)")


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise a header and payload into the bytes of a .crdr file."""
    if len(header.model_id) != MODEL_ID_BYTES:
        raise ValueError("model_id must be 4 bytes")
    if not (0 <= header.q_code <= int(Q_MAX * Q_CODE_SCALE)):
        raise ValueError(f"q code out of range: {header.q_code}")
    for dim in (header.height, header.width):
        if not (1 <= dim <= MAX_DIM):
            raise ValueError(f"image dimension out of range: {dim}")
    if len(payload) % 4:
        raise ValueError("payload must be whole 32-bit words")
    head = b"".join(
        (
            _FIXED.pack(MAGIC, VERSION, header.model_id, header.q_code),
            _leb128(header.height - 1),
            _leb128(header.width - 1),
        )
    )
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, struct.pack("<I", crc), payload))


def unpack(data: bytes, check_payload: bool = True) -> tuple[Header, bytes]:
    """Parse a .crdr file. Raises BitstreamError for anything that is not a valid file.

    Args:
        data: the whole file.
        check_payload: verify the payload's CRC-32 (skip only for header-only reads).
    Returns:
        (header, payload bytes)
    """
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a .crdr file (wrong magic bytes)")
    if len(data) < _FIXED.size:
        raise BitstreamError("truncated .crdr file (header incomplete)")
    _, version, model_id, q_code = _FIXED.unpack_from(data, 0)
    if version != VERSION:
        raise BitstreamError(
            f"unsupported .crdr format version {version} (this crdr reads version {VERSION})"
        )
    if q_code > int(Q_MAX * Q_CODE_SCALE):
        raise BitstreamError(f"corrupt .crdr header (q code {q_code} out of range)")
    h, pos = _read_leb128(data, _FIXED.size)
    w, pos = _read_leb128(data, pos)
    h, w = h + 1, w + 1
    if h > MAX_DIM or w > MAX_DIM:
        raise BitstreamError("corrupt .crdr header (image size out of range)")
    if len(data) < pos + 4:
        raise BitstreamError("truncated .crdr file (header incomplete)")
    (crc,) = struct.unpack_from("<I", data, pos)
    payload = data[pos + 4 :]
    header = Header(model_id=model_id, q_code=q_code, height=h, width=w, version=version)
    if check_payload:
        if len(payload) % 4:
            raise BitstreamError("truncated .crdr file (payload incomplete)")
        if zlib.crc32(payload, zlib.crc32(data[:pos])) != crc:
            raise BitstreamError("corrupt .crdr file (checksum mismatch)")
    return header, payload


def header_size(header: Header) -> int:
    return _FIXED.size + len(_leb128(header.height - 1)) + len(_leb128(header.width - 1)) + 4

"""The .crdr container, format version 2: a fixed header, the image size, optional
sections, then one range-coded payload.

Layout (all integers little-endian; see docs/FORMAT.md for the full description)::

    offset  size  field
    0       4     magic  b"CRDR"
    4       1     format version (2)
    5       4     model id: first 4 bytes of the SHA-256 fingerprint of the weights
    9       2     q code (uint16); q = code / 16000, the exact value the encoder used
    11      4     latent check: CRC-32 of the coded integer symbols (uint32)
    15      4     CRC-32 of every byte of the file except these four
    19      1-5   image height - 1, unsigned LEB128 (minimal encoding)
    ..      1-5   image width - 1,  unsigned LEB128
    ..      1     section count n (LEB128, 0..64)
    ..      ...   n sections: tag (LEB128) = type << 1 | critical, length (LEB128), data
    ..      ...   payload: 32-bit little-endian words of one range coder stream, to the end

A file without sections and a Kodak-sized image has a 24-byte header; :func:`pack` also
writes a payload-length section first (3-6 bytes), so that a reader can tell a truncated
file, and by how many bytes, from a corrupt one. The CRC sits at a fixed offset, so it is
verified before any variable-length field is interpreted.
Only the standard library is used, so ``crdr info`` never has to import torch.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .config import BETA_MAX, Q_CODE_SCALE, Q_MAX
from .errors import BitstreamError

MAGIC = b"CRDR"
VERSION = 2
MODEL_ID_BYTES = 4
MAX_DIM = 1 << 24  # 16,777,216 pixels per side; far beyond any real photo

_FIXED = struct.Struct("<4sB4sHII")  # magic, version, model id, q code, latent check, CRC
FIXED_SIZE = _FIXED.size  # 19
_CRC_OFFSET = 15  # the CRC covers data[:15] and data[19:]
_LEB_MAX_BYTES = 5

#: Sections: at most this many, with at most this many data bytes in all.
MAX_SECTIONS = 64
MAX_SECTION_BYTES = (1 << 24) - 1  # under 16 MiB
#: Largest section type: its tag (type << 1 | critical) is a LEB128 of at most 5 bytes.
MAX_SECTION_TYPE = (1 << (7 * _LEB_MAX_BYTES - 1)) - 1

# Section types (the tag is type << 1 | critical; type 0 is reserved).
SECTION_ICC = 1  # ICC colour profile of the original image (raw profile bytes)
SECTION_EXIF = 2  # EXIF block (TIFF header onwards, as Pillow's Image.info["exif"])
SECTION_XMP = 3  # XMP packet (UTF-8 XML)
SECTION_COLOUR_MODE = 4  # 1 byte: 0 = RGB, 1 = grayscale (all three channels equal)
SECTION_SUGGESTED_BETA = 5  # uint16: the sender's suggested beta, code / 1000
SECTION_Q_MAP = 6  # reserved: spatially varying q (not implemented; refused if critical)
SECTION_PAYLOAD_LENGTH = 7  # the payload's length in bytes, LEB128 (tells truncated from corrupt)

SECTION_NAMES = {
    SECTION_ICC: "icc-profile",
    SECTION_EXIF: "exif",
    SECTION_XMP: "xmp",
    SECTION_COLOUR_MODE: "colour-mode",
    SECTION_SUGGESTED_BETA: "suggested-beta",
    SECTION_Q_MAP: "q-map",
    SECTION_PAYLOAD_LENGTH: "payload-length",
}
#: Types this version reads (and validates). Anything else is skipped when not
#: critical and refused when critical; the reserved q map counts as unknown.
IMPLEMENTED = frozenset(SECTION_NAMES) - {SECTION_Q_MAP}

COLOUR_MODES = {0: "rgb", 1: "grayscale"}
BETA_CODE_SCALE = 1000

V1_MESSAGE = (
    "this file uses .crdr format version 1, which this crdr no longer reads (it reads "
    f"version {VERSION}); decode it with crdr <= 0.1 and re-encode the image"
)


@dataclass(frozen=True)
class Header:
    """Decoded header fields of a .crdr file."""

    model_id: bytes  # MODEL_ID_BYTES bytes
    q_code: int
    height: int
    width: int
    check: int  # CRC-32 of the coded integer symbols (compared after entropy decoding)
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
            "latent_check": f"{self.check:08x}",
        }


@dataclass(frozen=True)
class Section:
    """One optional section: its type, whether a reader must understand it, its bytes."""

    type: int
    critical: bool
    data: bytes

    @property
    def name(self) -> str:
        return SECTION_NAMES.get(self.type, f"unknown-{self.type}")

    @property
    def known(self) -> bool:
        return self.type in IMPLEMENTED

    def value(self):
        """The decoded value of a known small section (colour mode, suggested beta,
        payload length); None for the others."""
        if self.type == SECTION_COLOUR_MODE:
            return COLOUR_MODES[self.data[0]]
        if self.type == SECTION_SUGGESTED_BETA:
            return int.from_bytes(self.data, "little") / BETA_CODE_SCALE
        if self.type == SECTION_PAYLOAD_LENGTH:
            return _payload_length(self.data)
        return None

    def to_json(self) -> dict:
        d = {"type": self.type, "name": self.name, "critical": self.critical, "bytes": len(self.data)}
        v = self.value() if self.known else None
        if v is not None:
            d["value"] = v
        return d


def colour_mode_section(grayscale: bool) -> Section:
    return Section(SECTION_COLOUR_MODE, False, bytes([1 if grayscale else 0]))


def suggested_beta_section(beta: float) -> Section:
    if not (0.0 <= beta <= BETA_MAX):
        raise ValueError(f"suggested beta out of range: {beta}")
    return Section(SECTION_SUGGESTED_BETA, False, round(beta * BETA_CODE_SCALE).to_bytes(2, "little"))


def payload_length_section(n: int) -> Section:
    """The section declaring a payload of ``n`` bytes (:func:`pack` writes it itself)."""
    if n < 0:
        raise ValueError(f"payload length out of range: {n}")
    s = Section(SECTION_PAYLOAD_LENGTH, False, _leb128(n))
    _check_section_value(s)
    return s


# --------------------------------------------------------------------------- LEB128
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


class _Truncated(BitstreamError):
    """A field runs past the end of the data (a likely truncated file).

    Raised by :func:`_parse_sections` with what it knows of the cut: ``sections``, those
    read whole before it, and ``missing``, the header bytes missing after it (exact when
    ``exact``, else a lower bound).
    """

    sections: tuple = ()
    missing = 1
    exact = False


def _read_leb128(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    for i in range(_LEB_MAX_BYTES):
        if pos + i >= len(buf):
            raise _Truncated("truncated .crdr file (header incomplete)")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if i and byte == 0:  # a trailing zero group: not the minimal encoding
                raise BitstreamError(f"corrupt .crdr header (bad {what} field)")
            return value, pos + i + 1
    raise BitstreamError(f"corrupt .crdr header (bad {what} field)")


# --------------------------------------------------------------------------- sections
def _payload_length(data: bytes) -> int:
    """The value of a payload-length section; ValueError unless it is a single LEB128
    number (minimal, at most 5 bytes) of whole 32-bit words."""
    try:
        n, end = _read_leb128(data, 0, "payload length")
    except BitstreamError:
        end = -1
    if end != len(data) or n % 4:
        raise ValueError("payload length must be one minimal LEB128 number of at most "
                         f"{_LEB_MAX_BYTES} bytes, a multiple of 4")
    return n


def _declared_length(sections) -> int | None:
    """The payload length a file declares: the value of its first payload-length section,
    when this reader knows the type; None without one (a file of an older crdr) or when
    its value is malformed (a damaged file)."""
    for s in sections:
        if s.type == SECTION_PAYLOAD_LENGTH and s.known:
            try:
                return _payload_length(s.data)
            except ValueError:
                return None
    return None


def _check_section_value(s: Section) -> None:
    """Validate a section of a known type; raises ValueError with the reason."""
    if s.type == SECTION_COLOUR_MODE:
        if len(s.data) != 1 or s.data[0] not in COLOUR_MODES:
            raise ValueError("colour mode must be one byte, 0 (RGB) or 1 (grayscale)")
    elif s.type == SECTION_SUGGESTED_BETA:
        if len(s.data) != 2 or int.from_bytes(s.data, "little") > round(BETA_MAX * BETA_CODE_SCALE):
            raise ValueError(f"suggested beta must be a uint16 code of at most "
                             f"{round(BETA_MAX * BETA_CODE_SCALE)}")
    elif s.type == SECTION_PAYLOAD_LENGTH:
        _payload_length(s.data)


def _section_bytes(sections) -> bytes:
    sections = list(sections)
    if len(sections) > MAX_SECTIONS:
        raise ValueError(f"at most {MAX_SECTIONS} sections, got {len(sections)}")
    out = [_leb128(len(sections))]
    total = 0
    seen: set[int] = set()
    for s in sections:
        if not isinstance(s, Section):
            raise TypeError(f"expected a Section, got {type(s).__name__}")
        if not (1 <= s.type <= MAX_SECTION_TYPE):
            raise ValueError(f"section type out of range: {s.type}")
        if s.known:
            if s.type in seen:
                raise ValueError(f"section {s.name} given twice")
            seen.add(s.type)
            _check_section_value(s)
        data = bytes(s.data)
        total += len(data)
        if total > MAX_SECTION_BYTES:
            raise ValueError(f"sections hold more than {MAX_SECTION_BYTES:,} bytes")
        out += [_leb128(s.type << 1 | bool(s.critical)), _leb128(len(data)), data]
    return b"".join(out)


def _parse_sections(data: bytes, pos: int) -> tuple[list[Section], int]:
    count, pos = _read_leb128(data, pos, "section count")
    if count > MAX_SECTIONS:
        raise BitstreamError(f"corrupt .crdr header ({count} sections; at most {MAX_SECTIONS})")
    sections: list[Section] = []
    total = 0
    for i in range(count):
        later = count - 1 - i  # each takes at least 2 bytes (tag and length)
        try:
            tag, pos = _read_leb128(data, pos, "section tag")
            length, pos = _read_leb128(data, pos, "section length")
        except _Truncated as e:
            e.sections, e.missing = tuple(sections), 1 + 2 * later
            raise
        if tag >> 1 == 0:
            raise BitstreamError("corrupt .crdr header (section type 0 is reserved)")
        total += length
        if total > MAX_SECTION_BYTES:
            raise BitstreamError(
                f"corrupt .crdr header (sections of more than {MAX_SECTION_BYTES:,} bytes)")
        if pos + length > len(data):
            e = _Truncated("truncated .crdr file (a section runs past the end of the file)")
            e.sections, e.missing = tuple(sections), pos + length - len(data) + 2 * later
            e.exact = later == 0
            raise e
        sections.append(Section(tag >> 1, bool(tag & 1), data[pos : pos + length]))
        pos += length
    return sections, pos


def _check_sections(sections: list[Section]) -> None:
    seen: set[int] = set()
    for s in sections:
        if not s.known:
            if s.critical:
                what = ("a q map section (type 6), which this crdr does not implement"
                        if s.type == SECTION_Q_MAP else
                        f"an unknown critical section (type {s.type})")
                raise BitstreamError(
                    f"cannot decode this .crdr file: it has {what}; a newer crdr may read it")
            continue  # unknown and not critical: skipped
        if s.type in seen:
            raise BitstreamError(f"corrupt .crdr header (section {s.name} appears twice)")
        seen.add(s.type)
        try:
            _check_section_value(s)
        except ValueError as e:
            raise BitstreamError(f"corrupt .crdr header (section {s.name}: {e})") from None


# --------------------------------------------------------------------------- pack
def pack(header: Header, payload: bytes, sections=(), *, payload_length: bool = True) -> bytes:
    """Serialise a header, optional sections and a payload into the bytes of a .crdr file.

    Args:
        header: the fields (``header.version`` is ignored; version 2 is written).
        payload: the range coder's words (a multiple of 4 bytes).
        sections: :class:`Section` objects, written in the order given. A payload-length
            section among them is dropped: the payload's length is written by ``pack``.
        payload_length: write a payload-length section (before the others), so that a
            reader can tell a truncated file from a corrupt one; False writes a file as
            crdr did before that section existed.
    """
    if len(header.model_id) != MODEL_ID_BYTES:
        raise ValueError("model_id must be 4 bytes")
    if not (0 <= header.q_code <= int(Q_MAX * Q_CODE_SCALE)):
        raise ValueError(f"q code out of range: {header.q_code}")
    if not (0 <= header.check <= 0xFFFFFFFF):
        raise ValueError(f"latent check out of range: {header.check}")
    for dim in (header.height, header.width):
        if not (1 <= dim <= MAX_DIM):
            raise ValueError(f"image dimension out of range: {dim}")
    if len(payload) % 4:
        raise ValueError("payload must be whole 32-bit words")
    sections = [s for s in sections if getattr(s, "type", None) != SECTION_PAYLOAD_LENGTH]
    if payload_length:
        sections.insert(0, payload_length_section(len(payload)))
    fixed = _FIXED.pack(MAGIC, VERSION, header.model_id, header.q_code, header.check, 0)
    rest = b"".join(
        (_leb128(header.height - 1), _leb128(header.width - 1), _section_bytes(sections), payload)
    )
    crc = zlib.crc32(rest, zlib.crc32(fixed[:_CRC_OFFSET]))
    return b"".join((fixed[:_CRC_OFFSET], struct.pack("<I", crc), rest))


# --------------------------------------------------------------------------- unpack
def _bytes(n: int) -> str:
    return f"{n:,} byte" + ("" if n == 1 else "s")


def _damage(data: bytes) -> str:
    """What is wrong with a file whose CRC does not match, as far as its structure and
    its declared payload length tell: truncated (and by how many bytes), bytes appended,
    or else corrupt."""
    try:
        _, _, sections, pos = _parse_body(data)
    except _Truncated as e:  # cut inside the header
        declared = _declared_length(e.sections)
        if declared is None:
            return str(e)
        return (f"truncated .crdr file: {'' if e.exact else 'at least '}"
                f"{_bytes(e.missing + declared)} missing (cut in the header, before the "
                f"{declared:,}-byte payload)")
    except BitstreamError:
        return "corrupt .crdr file (checksum mismatch)"
    declared, have = _declared_length(sections), len(data) - pos
    if declared is not None and have < declared:
        return (f"truncated .crdr file: {_bytes(declared - have)} missing (the payload has "
                f"{have:,} of {declared:,} bytes)")
    if declared is not None and have > declared:
        return (f"corrupt .crdr file: {_bytes(have - declared)} appended after its end (the "
                f"payload has {have:,} bytes; the file declares {declared:,})")
    if declared is None and have % 4:
        return "truncated .crdr file (payload incomplete)"
    return "corrupt .crdr file (checksum mismatch)"


def _parse_body(data: bytes) -> tuple[int, int, list[Section], int]:
    """(height, width, sections, payload offset) from the variable part of the header."""
    h, pos = _read_leb128(data, FIXED_SIZE, "image size")
    w, pos = _read_leb128(data, pos, "image size")
    h, w = h + 1, w + 1
    if h > MAX_DIM or w > MAX_DIM:
        raise BitstreamError("corrupt .crdr header (image size out of range)")
    sections, pos = _parse_sections(data, pos)
    return h, w, sections, pos


def unpack(data: bytes, check_payload: bool = True) -> tuple[Header, bytes, tuple[Section, ...]]:
    """Parse a .crdr file. Raises BitstreamError for anything that is not a valid file.

    Args:
        data: the whole file.
        check_payload: verify the CRC-32 over the whole file and the payload's length
            (skip only for quick header-only reads of files known to be intact).
    Returns:
        (header, payload bytes, sections in file order). Unknown non-critical sections
        are included (with ``known == False``) so tools can list or copy them; decoders
        ignore them. An unknown critical section makes the file unreadable.
    """
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a .crdr file (wrong magic bytes)")
    if len(data) < 5:
        raise BitstreamError("truncated .crdr file (header incomplete)")
    version = data[4]
    if version == 1:
        raise BitstreamError(V1_MESSAGE)
    if version != VERSION:
        raise BitstreamError(
            f"unsupported .crdr format version {version} (this crdr reads version {VERSION})"
        )
    if len(data) < FIXED_SIZE:
        raise BitstreamError("truncated .crdr file (header incomplete)")
    _, _, model_id, q_code, check, crc = _FIXED.unpack_from(data, 0)
    if check_payload and zlib.crc32(data[FIXED_SIZE:], zlib.crc32(data[:_CRC_OFFSET])) != crc:
        raise BitstreamError(_damage(data))
    if q_code > int(Q_MAX * Q_CODE_SCALE):
        raise BitstreamError(f"corrupt .crdr header (q code {q_code} out of range)")
    h, w, sections, pos = _parse_body(data)
    _check_sections(sections)
    payload = data[pos:]
    if check_payload and len(payload) % 4:
        raise BitstreamError("corrupt .crdr file (payload is not whole 32-bit words)")
    declared = _declared_length(sections)
    if check_payload and declared is not None and declared != len(payload):
        # a valid CRC over a wrong length: made so, not damaged
        raise BitstreamError(f"corrupt .crdr file (the payload has {len(payload):,} bytes; "
                             f"its payload-length section says {declared:,})")
    header = Header(model_id=model_id, q_code=q_code, height=h, width=w, check=check,
                    version=version)
    return header, payload, tuple(sections)


def header_size(header: Header, sections=()) -> int:
    """Bytes before the payload of a file with this header and these sections."""
    return (FIXED_SIZE + len(_leb128(header.height - 1)) + len(_leb128(header.width - 1))
            + len(_section_bytes(sections)))


def file_info(data: bytes) -> dict:
    """What ``crdr info`` shows of a whole .crdr file: the header fields, the sizes of the
    file, the header (with the sections) and the payload, bits per pixel and the sections.

    Raises:
        BitstreamError: ``data`` is not a valid .crdr file (see :func:`unpack`).
    """
    header, payload, sections = unpack(data)
    return {**header.to_json(), "file_bytes": len(data),
            "header_bytes": header_size(header, sections), "payload_bytes": len(payload),
            "bpp": len(data) * 8 / (header.height * header.width),
            "sections": [s.to_json() for s in sections]}


def read_info(source) -> dict:
    """The header fields and sections of a .crdr file (its path or its bytes), as shown
    by ``crdr info --json``; needs no model and no torch."""
    import os

    if isinstance(source, (bytes, bytearray, memoryview)):
        return file_info(bytes(source))
    with open(os.fspath(source), "rb") as f:
        return file_info(f.read())

"""The .crdr container (format version 2): fields, sections, CRC, refusals."""

import struct
import zlib

import pytest

from crdr_codec import bitstream
from crdr_codec.bitstream import Header, Section, pack, unpack
from crdr_codec.errors import BitstreamError

MODEL = b"\xaa\xbb\xcc\xdd"
PAYLOAD = b"\x01\x02\x03\x04" * 5


def _header(h=512, w=768, q_code=40000, check=0x12345678):
    return Header(model_id=MODEL, q_code=q_code, height=h, width=w, check=check)


def _file(h=512, w=768, q_code=40000, payload=PAYLOAD, sections=(), check=0x12345678):
    return pack(_header(h, w, q_code, check), payload, sections)


def _recrc(data: bytes | bytearray) -> bytes:
    """The file with its CRC-32 recomputed (as a forger would)."""
    data = bytearray(data)
    crc = zlib.crc32(bytes(data[19:]), zlib.crc32(bytes(data[:15])))
    data[15:19] = struct.pack("<I", crc)
    return bytes(data)


def test_round_trip_fields():
    data = _file()
    header, payload, sections = unpack(data)
    assert (header.height, header.width, header.q, header.model_id) == (512, 768, 2.5, MODEL)
    assert header.check == 0x12345678 and header.version == 2
    assert payload == PAYLOAD and sections == ()


def test_fixed_layout():
    data = _file(h=40, w=56, payload=b"")
    assert data[:4] == b"CRDR" and data[4] == 2
    assert data[5:9] == MODEL
    assert struct.unpack_from("<H", data, 9)[0] == 40000
    assert struct.unpack_from("<I", data, 11)[0] == 0x12345678
    assert struct.unpack_from("<I", data, 15)[0] == zlib.crc32(data[19:], zlib.crc32(data[:15]))
    assert data[19:] == bytes([39, 55, 0])  # height-1, width-1, no sections


@pytest.mark.parametrize("h,w,size", [(1, 1, 22), (512, 768, 24), (6000, 4000, 24),
                                      (100000, 3, 24), (3000000, 3, 25)])
def test_fixed_overhead_is_small(h, w, size):
    data = _file(h, w, payload=b"")
    assert len(data) == size <= 28
    assert bitstream.header_size(unpack(data)[0]) == size


def test_sections_round_trip():
    secs = [
        Section(bitstream.SECTION_ICC, False, b"icc profile bytes" * 10),
        Section(bitstream.SECTION_EXIF, False, b"Exif\0\0MM"),
        Section(bitstream.SECTION_XMP, False, b"<x:xmpmeta/>"),
        bitstream.colour_mode_section(grayscale=True),
        bitstream.suggested_beta_section(3.84),
        Section(1000, False, b""),  # unknown, empty, not critical
    ]
    data = _file(sections=secs)
    header, payload, sections = unpack(data)
    assert list(sections) == secs and payload == PAYLOAD
    assert bitstream.header_size(header, sections) == len(data) - len(PAYLOAD)
    assert sections[3].value() == "grayscale" and sections[4].value() == 3.84
    assert [s.known for s in sections] == [True] * 5 + [False]
    assert sections[5].to_json() == {"type": 1000, "name": "unknown-1000", "critical": False, "bytes": 0}


def test_section_tag_and_length_encoding():
    data = _file(h=1, w=1, payload=b"", sections=[Section(5, True, b"\x00\x01")])
    # count 1, tag 5 << 1 | 1 = 11, length 2, data
    assert data[21:] == bytes([1, 11, 2, 0, 1])


def test_unknown_non_critical_section_is_skipped():
    data = _file(sections=[Section(77, False, b"future data"), bitstream.colour_mode_section(False)])
    header, payload, sections = unpack(data)
    assert payload == PAYLOAD and header.width == 768
    assert [s.type for s in sections] == [77, 4]


@pytest.mark.parametrize("type_, what", [(77, "type 77"), (bitstream.SECTION_Q_MAP, "q map")])
def test_unknown_critical_section_is_refused(type_, what):
    data = _file(sections=[Section(type_, True, b"must understand")])
    with pytest.raises(BitstreamError, match=what) as e:
        unpack(data)
    assert "\n" not in str(e.value)


def test_known_critical_section_is_read():
    data = _file(sections=[Section(bitstream.SECTION_ICC, True, b"profile")])
    assert unpack(data)[2][0].critical


@pytest.mark.parametrize("section", [
    Section(bitstream.SECTION_COLOUR_MODE, False, b"\x02"),
    Section(bitstream.SECTION_COLOUR_MODE, False, b"\x00\x00"),
    Section(bitstream.SECTION_SUGGESTED_BETA, False, (6000).to_bytes(2, "little")),
    Section(0, False, b""),
])
def test_invalid_sections_are_not_written(section):
    with pytest.raises(ValueError):
        _file(sections=[section])


def _forge_sections(body: bytes, payload: bytes = PAYLOAD) -> bytes:
    """A file whose section area is ``body`` (count included), with a valid CRC."""
    data = bytearray(_file(payload=b""))
    assert data[23] == 0  # the count byte of a 512x768 file without sections
    return _recrc(bytes(data[:23]) + body + payload)


@pytest.mark.parametrize("body, match", [
    (bytes([1, 4 << 1, 1, 7]), "colour-mode"),  # colour mode 7
    (bytes([2, 4 << 1, 1, 0, 4 << 1, 1, 1]), "twice"),
    (bytes([1, 0, 0]), "type 0"),
    (bytes([65]), "65 sections"),
    (bytes([1, 8, 0x80, 0x80, 0x80, 0x80, 0x80]), "section length"),  # 6-byte LEB128
    (bytes([1, 8, 0x81, 0x00]), "section length"),  # not the minimal encoding
])
def test_malformed_sections_are_refused(body, match):
    with pytest.raises(BitstreamError, match=match):
        unpack(_forge_sections(body))


def test_section_running_past_the_end_is_truncated():
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(_forge_sections(bytes([1, 2 << 1]) + bitstream._leb128(1000), payload=b"abcd"))


def test_sections_are_bounded():
    big = bitstream.MAX_SECTION_BYTES + 1
    # A forged length over the bound is refused without reading (or having) the data.
    with pytest.raises(BitstreamError, match="sections of more than"):
        unpack(_forge_sections(bytes([1, 2 << 1]) + bitstream._leb128(big)))
    with pytest.raises(ValueError):
        _file(sections=[Section(2, False, bytes(big))])
    with pytest.raises(ValueError):
        _file(sections=[Section(100 + i, False, b"") for i in range(bitstream.MAX_SECTIONS + 1)])


def test_wrong_magic():
    with pytest.raises(BitstreamError, match="not a .crdr file"):
        unpack(b"PNG!" + _file()[4:])
    with pytest.raises(BitstreamError, match="not a .crdr file"):
        unpack(b"")


def test_unknown_version():
    data = bytearray(_file())
    data[4] = 99
    with pytest.raises(BitstreamError, match="version 99"):
        unpack(bytes(data))


def test_version_1_file_names_the_old_release():
    # A real version-1 file: 17-byte header (CRC after the sizes), then the payload.
    head = b"CRDR" + bytes([1]) + MODEL + struct.pack("<H", 32000) + bytes([39, 55])
    v1 = head + struct.pack("<I", zlib.crc32(PAYLOAD, zlib.crc32(head))) + PAYLOAD
    with pytest.raises(BitstreamError) as e:
        unpack(v1)
    msg = str(e.value)
    assert "format version 1" in msg and "crdr <= 0.1" in msg and "re-encode" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("cut", [3, 4, 8, 12, 16, 18, 19, 20, 21, 22, 23, 25, 30])
def test_truncated(cut):
    with pytest.raises(BitstreamError, match="truncated|corrupt|not a .crdr"):
        unpack(_file()[:cut])


def test_truncated_payload_is_reported_as_truncated():
    data = _file()
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(data[:-1])
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(_file(sections=[Section(2, False, b"x" * 40)])[:40])


def test_every_single_byte_flip_is_detected():
    data = _file(sections=[bitstream.colour_mode_section(False), Section(9, False, b"abc")])
    for i in range(5, len(data)):  # (magic and version have their own errors)
        for bit in (0x01, 0x10, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            with pytest.raises(BitstreamError, match="corrupt|truncated"):
                unpack(bytes(bad))


def test_extra_bytes_are_detected():
    with pytest.raises(BitstreamError, match="corrupt|truncated"):
        unpack(_file() + b"\0\0\0\0")


def test_q_code_out_of_range_is_rejected():
    data = bytearray(_file())
    data[9:11] = (65000).to_bytes(2, "little")
    with pytest.raises(BitstreamError, match="q code"):
        unpack(_recrc(data))


def test_size_out_of_range_is_rejected():
    data = _file(payload=b"")
    body = bitstream._leb128(1 << 25) + bitstream._leb128(767) + b"\0"  # height 2**25 + 1
    with pytest.raises(BitstreamError, match="image size"):
        unpack(_recrc(data[:19] + body))


def test_check_value_is_covered_by_the_crc():
    data = bytearray(_file())
    data[11] ^= 1
    with pytest.raises(BitstreamError, match="checksum"):
        unpack(bytes(data))
    header, _, _ = unpack(_recrc(data))  # a forged check value passes the container...
    assert header.check == 0x12345678 ^ 1  # ...and is caught by the decoder (test_hostile)


def test_header_only_read_skips_the_crc():
    data = bytearray(_file())
    data[-1] ^= 1
    header, payload, _ = unpack(bytes(data), check_payload=False)
    assert header.width == 768 and len(payload) == len(PAYLOAD)


def test_pack_validates_fields():
    with pytest.raises(ValueError):
        pack(Header(b"abc", 0, 1, 1, 0), b"")
    with pytest.raises(ValueError):
        pack(_header(check=1 << 32), b"")
    with pytest.raises(ValueError):
        pack(_header(check=-1), b"")
    with pytest.raises(ValueError):
        pack(_header(), b"abc")
    with pytest.raises(ValueError):
        pack(_header(h=0), b"")

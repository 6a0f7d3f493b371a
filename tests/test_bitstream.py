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


def _file(h=512, w=768, q_code=40000, payload=PAYLOAD, sections=(), check=0x12345678,
          payload_length=True):
    return pack(_header(h, w, q_code, check), payload, sections, payload_length=payload_length)


def _old_file(**kw) -> bytes:
    """A file as crdr wrote it before the payload-length section (like tests/golden/)."""
    return _file(payload_length=False, **kw)


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
    assert payload == PAYLOAD and sections == (bitstream.payload_length_section(len(PAYLOAD)),)
    assert sections[0].value() == len(PAYLOAD) and sections[0].name == "payload-length"
    assert unpack(_old_file())[1:] == (PAYLOAD, ())


def test_fixed_layout():
    data = _file(h=40, w=56, payload=b"")
    assert data[:4] == b"CRDR" and data[4] == 2
    assert data[5:9] == MODEL
    assert struct.unpack_from("<H", data, 9)[0] == 40000
    assert struct.unpack_from("<I", data, 11)[0] == 0x12345678
    assert struct.unpack_from("<I", data, 15)[0] == zlib.crc32(data[19:], zlib.crc32(data[:15]))
    # height-1, width-1, 1 section: tag 7 << 1 = 14 (payload-length), length 1, value 0
    assert data[19:] == bytes([39, 55, 1, 14, 1, 0])
    assert _old_file(h=40, w=56, payload=b"")[19:] == bytes([39, 55, 0])  # no sections


@pytest.mark.parametrize("h,w,size", [(1, 1, 22), (512, 768, 24), (6000, 4000, 24),
                                      (100000, 3, 24), (3000000, 3, 25)])
def test_fixed_overhead_is_small(h, w, size):
    data = _old_file(h=h, w=w, payload=b"")
    assert len(data) == size <= 28
    assert bitstream.header_size(unpack(data)[0]) == size
    # the payload-length section adds 2 bytes + the length's LEB128 (1 byte up to 127)
    header, _, sections = unpack(_file(h, w, payload=b""))
    assert bitstream.header_size(header, sections) == size + 3


@pytest.mark.parametrize("n, extra", [(0, 3), (124, 3), (128, 4), (16380, 4), (16384, 5),
                                      ((1 << 21) - 4, 5), (1 << 21, 6)])
def test_payload_length_section_size(n, extra):
    assert len(pack(_header(), bytes(n))) - n == 24 + extra


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
    assert list(sections) == [bitstream.payload_length_section(len(PAYLOAD))] + secs
    assert payload == PAYLOAD
    assert bitstream.header_size(header, sections) == len(data) - len(PAYLOAD)
    sections = sections[1:]
    assert sections[3].value() == "grayscale" and sections[4].value() == 3.84
    assert [s.known for s in sections] == [True] * 5 + [False]
    assert sections[5].to_json() == {"type": 1000, "name": "unknown-1000", "critical": False, "bytes": 0}


def test_section_tag_and_length_encoding():
    data = _old_file(h=1, w=1, payload=b"", sections=[Section(5, True, b"\x00\x01")])
    # count 1, tag 5 << 1 | 1 = 11, length 2, data
    assert data[21:] == bytes([1, 11, 2, 0, 1])
    data = _file(h=1, w=1, payload=b"", sections=[Section(5, True, b"\x00\x01")])
    # the payload-length section comes first: tag 7 << 1 = 14, length 1, value 0
    assert data[21:] == bytes([2, 14, 1, 0, 11, 2, 0, 1])


def test_unknown_non_critical_section_is_skipped():
    data = _file(sections=[Section(77, False, b"future data"), bitstream.colour_mode_section(False)])
    header, payload, sections = unpack(data)
    assert payload == PAYLOAD and header.width == 768
    assert [s.type for s in sections] == [7, 77, 4]


@pytest.mark.parametrize("type_, what", [(77, "type 77"), (bitstream.SECTION_Q_MAP, "q map")])
def test_unknown_critical_section_is_refused(type_, what):
    data = _file(sections=[Section(type_, True, b"must understand")])
    with pytest.raises(BitstreamError, match=what) as e:
        unpack(data)
    assert "\n" not in str(e.value)


def test_known_critical_section_is_read():
    data = _file(sections=[Section(bitstream.SECTION_ICC, True, b"profile")])
    assert unpack(data)[2][1].critical


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
    data = bytearray(_old_file(payload=b""))
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


# --------------------------------------------------------------- payload-length section
def _broken_crc(data: bytes) -> bytes:
    """``data`` with a CRC that no longer matches (as after any accident)."""
    return data[:15] + bytes([data[15] ^ 0xFF]) + data[16:]


def _message(data: bytes) -> str:
    with pytest.raises(BitstreamError) as e:
        unpack(data)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_pack_unpack_round_trip_with_payload_length():
    secs = [Section(bitstream.SECTION_ICC, False, b"p" * 30), bitstream.colour_mode_section(True)]
    data = _file(payload=PAYLOAD * 10, sections=secs)
    header, payload, sections = unpack(data)
    assert sections[0] == bitstream.payload_length_section(200) and list(sections[1:]) == secs
    assert sections[0].to_json() == {"type": 7, "name": "payload-length", "critical": False,
                                     "bytes": 2, "value": 200}
    # The section given back to pack is replaced by the one pack writes: the same bytes.
    assert pack(header, payload, sections) == data
    assert pack(header, payload, list(sections)[::-1]) == _file(payload=PAYLOAD * 10,
                                                                sections=secs[::-1])
    # An old file repacked gains the section; its header otherwise unchanged.
    old = _old_file(payload=PAYLOAD * 10, sections=secs)
    assert pack(*unpack(old)) == data
    assert pack(header, payload, sections, payload_length=False) == old


# A file with the payload-length section, then an ICC profile and an EXIF block (last).
SECS = [Section(bitstream.SECTION_ICC, False, b"p" * 30), Section(bitstream.SECTION_EXIF, False, b"e" * 50)]
BIG = bytes(range(200)) * 2  # a 400-byte payload (a 2-byte LEB128 length)


def test_truncated_payload_says_how_many_bytes_are_missing():
    data = _file(payload=BIG, sections=SECS)
    start = len(data) - len(BIG)
    for cut in range(start, len(data)):
        have, missing = cut - start, len(data) - cut
        msg = _message(data[:cut])
        s = "" if missing == 1 else "s"
        assert msg == (f"truncated .crdr file: {missing:,} byte{s} missing "
                       f"(the payload has {have:,} of 400 bytes)"), (cut, msg)


def test_truncated_sections_say_how_many_bytes_are_missing():
    data = _file(payload=BIG, sections=SECS)
    pl_end = 24 + 4  # 19 fixed, 2 + 2 sizes, 1 count; the payload-length section: 14, 2, 0x90 0x03
    assert data[24:28] == bytes([14, 2, 0x90, 0x03])
    exif_data = len(data) - len(BIG) - 50
    for cut in range(pl_end, len(data) - len(BIG)):
        msg = _message(data[:cut])
        missing = len(data) - cut
        if cut >= exif_data:  # inside the last section's data: exact
            assert msg == (f"truncated .crdr file: {missing:,} bytes missing (cut in the header, "
                           "before the 400-byte payload)"), (cut, msg)
        else:  # the sections after the cut are not known yet: a lower bound
            assert msg.startswith("truncated .crdr file: at least "), (cut, msg)
            assert "before the 400-byte payload" in msg
            bound = int(msg.split("at least ")[1].split(" ")[0].replace(",", ""))
            assert 400 < bound <= missing, (cut, msg)
    # Before the payload-length section is whole, no length is known: as for an old file.
    for cut in range(19, pl_end):
        assert _message(data[:cut]).startswith("truncated .crdr file ("), cut


def test_appended_bytes_are_named():
    data = _file(payload=BIG)
    for extra in (b"\0", b"\0\0\0\0", b"x" * 1000):
        assert _message(data + extra) == (
            f"corrupt .crdr file: {len(extra):,} byte{'s' if len(extra) > 1 else ''} appended "
            f"after its end (the payload has {400 + len(extra):,} bytes; the file declares 400)")


def test_damage_without_a_length_change_is_corrupt():
    data = bytearray(_file(payload=BIG))
    data[-10] ^= 0x20
    assert _message(bytes(data)) == "corrupt .crdr file (checksum mismatch)"


@pytest.mark.parametrize("cut", [4, 8, 12])
def test_forged_payload_length_with_a_valid_crc_is_corrupt(cut):
    data = _file(payload=BIG)
    # Cut and re-CRC'd, or the declared length changed and re-CRC'd: made, not damaged.
    msg = _message(_recrc(data[:-cut]))
    assert msg == (f"corrupt .crdr file (the payload has {400 - cut} bytes; its payload-length "
                   "section says 400)")
    forged = bytearray(data)
    assert forged[24:28] == bytes([14, 2, 0x90, 0x03])
    forged[26] = 0x90 + cut  # declares 400 + cut
    assert "payload-length section says" in _message(_recrc(forged))
    assert "truncated" in _message(bytes(forged))  # the same bytes with a broken CRC


@pytest.mark.parametrize("body", [
    bytes([1, 14, 0]),  # empty
    bytes([1, 14, 2, 0x94, 0x00]),  # 20, not the minimal encoding
    bytes([1, 14, 2, 20, 0]),  # a byte after the number
    bytes([1, 14, 1, 21]),  # not whole 32-bit words
    bytes([1, 14, 6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),  # 6-byte LEB128
])
def test_malformed_payload_length_is_refused(body):
    msg = _message(_forge_sections(body))
    assert msg.startswith("corrupt .crdr header (section payload-length: payload length must be")
    # With a broken CRC a malformed length is not believed: corrupt, as before.
    assert _message(_broken_crc(_forge_sections(body))) == "corrupt .crdr file (checksum mismatch)"


def test_payload_length_twice_is_refused():
    assert "twice" in _message(_forge_sections(bytes([2, 14, 1, 20, 14, 1, 20])))


def test_huge_declared_length_allocates_nothing():
    # 2**35 - 4: the largest length a 5-byte LEB128 holds; the file has 20 payload bytes.
    body = bytes([1, 14, 5, 0xFC, 0xFF, 0xFF, 0xFF, 0x7F])
    assert _payload_length_of(body) == (1 << 35) - 4
    msg = _message(_broken_crc(_forge_sections(body)))
    assert msg == (f"truncated .crdr file: {(1 << 35) - 24:,} bytes missing "
                   f"(the payload has 20 of {(1 << 35) - 4:,} bytes)")
    assert "payload-length section says" in _message(_forge_sections(body))


def _payload_length_of(body: bytes) -> int:
    return Section(bitstream.SECTION_PAYLOAD_LENGTH, False, body[3:]).value()


def test_payload_length_section_is_not_written_wrong():
    with pytest.raises(ValueError):
        bitstream.payload_length_section(-4)
    with pytest.raises(ValueError):
        bitstream.payload_length_section(21)
    with pytest.raises(ValueError):
        bitstream.payload_length_section(1 << 35)  # more than 5 LEB128 bytes


def test_old_files_keep_their_messages():
    """Files without the section (all files before it, like tests/golden/): as before."""
    data = _old_file(payload=BIG)
    assert _message(data[:-4]) == "corrupt .crdr file (checksum mismatch)"
    assert _message(data[:-1]) == "truncated .crdr file (payload incomplete)"
    assert _message(data + b"\0\0\0\0") == "corrupt .crdr file (checksum mismatch)"
    # A valid CRC: nothing to compare against (the decoder refuses the short payload).
    assert unpack(_recrc(data[:-4]))[1] == BIG[:-4]


def test_an_older_reader_skips_the_section(monkeypatch):
    """A crdr that does not know type 7 (removed from IMPLEMENTED) skips it as an unknown
    non-critical section: the files stay readable by older versions."""
    data = _file(payload=BIG, sections=SECS)
    monkeypatch.setattr(bitstream, "IMPLEMENTED", bitstream.IMPLEMENTED - {7})
    header, payload, sections = unpack(data)
    assert payload == BIG and list(sections[1:]) == SECS
    assert not sections[0].known and sections[0].name == "payload-length"
    assert sections[0].to_json() == {"type": 7, "name": "payload-length", "critical": False,
                                     "bytes": 2}
    # ...and, not knowing the length, it says what it said before.
    assert _message(data[:-4]) == "corrupt .crdr file (checksum mismatch)"
    assert _message(data[:-1]) == "truncated .crdr file (payload incomplete)"

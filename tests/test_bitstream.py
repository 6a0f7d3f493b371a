import pytest

from crdr_codec import bitstream
from crdr_codec.bitstream import Header, pack, unpack
from crdr_codec.errors import BitstreamError


def _file(h=512, w=768, q_code=40000, payload=b"\x01\x02\x03\x04" * 5):
    return pack(Header(model_id=b"\xaa\xbb\xcc\xdd", q_code=q_code, height=h, width=w), payload)


def test_round_trip_fields():
    data = _file()
    header, payload = unpack(data)
    assert (header.height, header.width, header.q, header.model_id) == (512, 768, 2.5, b"\xaa\xbb\xcc\xdd")
    assert payload == b"\x01\x02\x03\x04" * 5


@pytest.mark.parametrize("h,w,size", [(1, 1, 17), (512, 768, 19), (6000, 4000, 19), (100000, 3, 19), (3000000, 3, 20)])
def test_fixed_overhead_is_small(h, w, size):
    data = _file(h, w, payload=b"")
    assert len(data) == size <= 24
    assert bitstream.header_size(unpack(data)[0]) == size


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


@pytest.mark.parametrize("cut", [3, 8, 12, 16, 21, 22])
def test_truncated(cut):
    with pytest.raises(BitstreamError):
        unpack(_file()[:cut])


def test_every_single_byte_flip_is_detected():
    data = _file()
    for i in range(5, len(data)):  # (magic and version have their own errors)
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(BitstreamError, match="corrupt"):
            unpack(bytes(bad))


def test_q_code_out_of_range_is_rejected():
    data = bytearray(_file())
    data[9:11] = (65000).to_bytes(2, "little")
    with pytest.raises(BitstreamError, match="q code"):
        unpack(bytes(data))

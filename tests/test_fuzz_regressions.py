"""Inputs from fuzzing the .crdr parser and decoder (fuzz/README.md), decoded through the
real API and the command line: each ends in a result or one ``crdr: error:`` line (exit
code 1), never a traceback, within a time bound.

* tests/fuzz/*.crdr: every input that once failed (fuzz/decode.py found them; they are
  stored as the file the fuzzer decoded, i.e. retargeted to the tiny model with a valid
  CRC), with the outcome each must have now. Two findings of the same review (an EXIF
  block or XMP packet over 64 KB, written into a JPEG) need files too large to keep: they
  are made here, from images a camera or editor can produce.
* Edge cases derived from the seeds (truncations, checksum, payload, model id, sizes,
  sections), which did not fail but mark the borders the fuzzer explored.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import natural_image

from crdr_codec import bitstream
from crdr_codec.cli import main
from crdr_codec.errors import CrdrError

FUZZ = Path(__file__).parent / "fuzz"
SEEDS = Path(__file__).resolve().parent.parent / "fuzz" / "seeds"
#: Each API call and each command must end within this many seconds (all are
#: milliseconds to a second on the tiny model; a hang would show here).
TIME_BOUND = 20.0
#: Image formats `crdr decode` writes, each with its own way of carrying metadata.
FORMATS = ("png", "jpg", "webp", "tif", "bmp", "ppm")

#: The failing inputs and what each must do now: per command (`info`, or `decode` to an
#: extension), None for success or the words of its one-line error.
FOUND = {
    # Pillow's TIFF writer parses the EXIF block (the other formats copy it): a damaged one
    # raised SyntaxError from `crdr decode f.crdr out.tif`.
    "tiff-damaged-exif.crdr": {"tif": "EXIF block is damaged", "png": None, "jpg": None,
                               "info": None},
    # an EXIF tag whose value Pillow's TIFF writer cannot pack raised struct.error
    "tiff-exif-tag-not-writable.crdr": {"tif": "EXIF block is damaged", "png": None,
                                        "info": None},
    # an unknown section of type >= 2^31 (the format allows up to 2^34 - 1): `crdr info`
    # raised ValueError when it measured the header again with bitstream.pack
    "info-section-type-over-2-31.crdr": {"info": None, "png": "truncated or forged"},
}


@pytest.fixture(autouse=True)
def _hermetic_env(hermetic_models):
    """Nothing from the user's environment, no shipped models (conftest.py)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model's package (what the fuzzer decoded with) and its codec."""
    from crdr_codec.codec import Codec

    path = shutil.copy(Path(__file__).parent / "data" / "tiny.crdrm",
                       tmp_path_factory.mktemp("models") / "tiny.crdrm")
    return str(path), Codec(path, device="cpu")


def _api(codec, data: bytes) -> str | None:
    """Everything the API does with a file; None if it decoded, else the CrdrError's
    message (any other exception fails the test)."""
    t0 = time.monotonic()
    try:
        bitstream.read_info(data)
        rgb = codec.decode(data, 3.84)
        codec.decode_image(data)
    except CrdrError as e:
        msg = str(e)
    else:
        header = bitstream.unpack(data)[0]
        assert rgb.shape == (header.height, header.width, 3) and rgb.dtype == np.uint8
        msg = None
    assert time.monotonic() - t0 < TIME_BOUND
    return msg


def _cli(runner, args) -> str | None:
    """Run `crdr ARGS`; None on success, else its one error line (anything else fails)."""
    t0 = time.monotonic()
    res = runner.invoke(main, [str(a) for a in args])
    assert time.monotonic() - t0 < TIME_BOUND
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output + res.stderr
    if res.exit_code == 0:
        return None
    assert res.exit_code == 1, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdr: error:"), res.stderr
    return lines[0]


def _decode_cli(runner, tmp_path, weights, data: bytes, ext: str) -> str | None:
    src = tmp_path / "in.crdr"
    src.write_bytes(data)
    out = tmp_path / f"out.{ext}"
    out.unlink(missing_ok=True)
    msg = _cli(runner, ["decode", src, out, "--weights", weights, "--beta", "3.84"])
    assert out.exists() == (msg is None)  # no partial file on an error
    return msg


def _clean(runner, tmp_path, tiny, data: bytes, formats=FORMATS) -> None:
    """The API and every command end cleanly on ``data``, and agree on it."""
    weights, codec = tiny
    api = _api(codec, data)
    src = tmp_path / "info.crdr"
    src.write_bytes(data)
    _cli(runner, ["info", src])
    for ext in formats:
        msg = _decode_cli(runner, tmp_path, weights, data, ext)
        if api is not None:  # what the API refuses, the command refuses too
            assert msg is not None, ext


# ------------------------------------------------------------ inputs that once failed
def test_every_finding_is_listed():
    assert sorted(p.name for p in FUZZ.glob("*.crdr")) == sorted(FOUND)


@pytest.mark.parametrize("name", sorted(FOUND))
def test_found_input_ends_cleanly(runner, tmp_path, tiny, name):
    data = (FUZZ / name).read_bytes()
    _clean(runner, tmp_path, tiny, data)
    for what, words in FOUND[name].items():
        if what == "info":
            src = tmp_path / "info.crdr"
            src.write_bytes(data)
            msg = _cli(runner, ["info", src])
        else:
            msg = _decode_cli(runner, tmp_path, tiny[0], data, what)
        if words is None:
            assert msg is None, (what, msg)
        else:
            assert msg is not None and words.lower() in msg.lower(), (what, msg)


def test_section_types_up_to_the_format_limit_round_trip():
    """The type of the finding above: bitstream.pack now writes every type a reader
    accepts (a 5-byte tag), and refuses larger ones."""
    data = (FUZZ / "info-section-type-over-2-31.crdr").read_bytes()
    header, payload, sections = bitstream.unpack(data)
    assert max(s.type for s in sections) >= 1 << 31
    assert bitstream.pack(header, payload, sections, payload_length=False) == data
    top = bitstream.Section(bitstream.MAX_SECTION_TYPE, False, b"")
    packed = bitstream.pack(header, payload, [top])  # after the payload-length section
    assert bitstream.unpack(packed)[2][1:] == (top,)
    assert bitstream.read_info(packed)["sections"][1]["type"] == bitstream.MAX_SECTION_TYPE
    critical = bitstream.pack(header, payload, [dataclasses.replace(top, critical=True)])
    with pytest.raises(CrdrError, match="unknown critical section"):
        bitstream.unpack(critical)
    with pytest.raises(ValueError, match="section type out of range"):
        bitstream.pack(header, payload, [bitstream.Section(bitstream.MAX_SECTION_TYPE + 1,
                                                           False, b"")])


def _big_metadata_png(tmp_path, what: str) -> Path:
    """A PNG whose EXIF block or XMP packet is over 64 KB (long descriptions, an editor's
    history), as cameras and editors write them."""
    rgb = natural_image(24, 40, seed=3)
    path = tmp_path / f"big-{what}.png"
    if what == "exif":
        ex = Image.Exif()
        ex[0x010E] = "a long description " * 3700  # ImageDescription, about 70 KB
        Image.fromarray(rgb).save(path, exif=ex)
    else:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
                      + "<!-- an editor's history -->" * 2500 + "</x:xmpmeta>")
        Image.fromarray(rgb).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("what", ["exif", "xmp"])
def test_metadata_too_large_for_jpeg_is_one_line(runner, tmp_path, tiny, what):
    """Found while writing the fuzzer (its inputs stay under 4 KB): `crdr decode f.crdr
    out.jpg` of a file whose EXIF block or XMP packet is over 64 KB raised Pillow's
    ValueError. Now one line names it; the other formats carry it."""
    weights, codec = tiny
    png = _big_metadata_png(tmp_path, what)
    crdr = tmp_path / "big.crdr"
    assert _cli(runner, ["encode", png, crdr, "--weights", weights]) is None
    data = crdr.read_bytes()
    assert len(data) > 65536
    msg = _decode_cli(runner, tmp_path, weights, data, "jpg")
    name = "EXIF block" if what == "exif" else "XMP packet"
    assert msg is not None and f"its {name}" in msg and "does not fit into a JPEG" in msg
    assert "--strip" in msg
    out = tmp_path / "out.jpg"
    assert _cli(runner, ["decode", crdr, out, "--weights", weights, "--strip"]) is None
    for ext in ("png", "webp", "tif"):
        assert _decode_cli(runner, tmp_path, weights, data, ext) is None, ext
    assert _api(codec, data) is None


# ------------------------------------------------------------ edge cases of the seeds
def _fix_crc(data: bytes) -> bytes:
    """``data`` with a valid CRC (bytes 15..18: CRC-32 of data[:15] + data[19:])."""
    crc = zlib.crc32(data[19:], zlib.crc32(data[:15]))
    return data[:15] + crc.to_bytes(4, "little") + data[19:]


@pytest.fixture(scope="module")
def seed() -> bytes:
    """A seed of the tiny model with every kind of section (fuzz/make_seeds.py)."""
    return (SEEDS / "tiny_40x56_q2_meta.crdr").read_bytes()


def test_seed_decodes(runner, tmp_path, tiny, seed):
    assert _api(tiny[1], seed) is None
    for ext in FORMATS:
        assert _decode_cli(runner, tmp_path, tiny[0], seed, ext) is None, ext


def test_every_truncation_is_refused_by_the_api(tiny, seed):
    for n in range(len(seed)):
        msg = _api(tiny[1], seed[:n])
        assert msg is not None and ("truncated" in msg or "corrupt" in msg
                                    or "not a .crdr" in msg), (n, msg)


@pytest.mark.parametrize("n", [0, 3, 4, 5, 18, 19, 21, 100, -4, -1])
def test_truncation_is_one_line(runner, tmp_path, tiny, seed, n):
    _clean(runner, tmp_path, tiny, seed[:n], formats=("png",))


def _edge_case(seed: bytes, case: str) -> bytes:
    header, payload, sections = bitstream.unpack(seed)

    def forged(**fields) -> bytes:
        return bitstream.pack(dataclasses.replace(header, **fields), payload, sections)

    def with_sections(*extra, keep=lambda s: True) -> bytes:
        return bitstream.pack(header, payload, [s for s in sections if keep(s)] + list(extra))

    words = bytearray(payload)
    words[len(words) // 2] ^= 0x10
    return {
        "wrong-crc": lambda: seed[:15] + bytes([seed[15] ^ 1]) + seed[16:],
        "wrong-magic": lambda: b"CRDX" + seed[4:],
        "version-1": lambda: _fix_crc(seed[:4] + b"\x01" + seed[5:]),
        "version-3": lambda: _fix_crc(seed[:4] + b"\x03" + seed[5:]),
        "other-model": lambda: _fix_crc(seed[:5] + b"\x00\x11\x22\x33" + seed[9:]),
        "q-code-over-4": lambda: _fix_crc(seed[:9] + (64001).to_bytes(2, "little") + seed[11:]),
        "latent-check": lambda: forged(check=header.check ^ 1),
        "payload-bit": lambda: bitstream.pack(header, bytes(words), sections),
        "payload-extra-word": lambda: bitstream.pack(header, payload + b"\0\0\0\0", sections),
        "payload-odd-bytes": lambda: _fix_crc(seed + b"\0"),
        "payload-empty": lambda: bitstream.pack(header, b"", sections),
        "size-over-limit": lambda: forged(height=1 << 24, width=1 << 24),
        "size-1x1": lambda: forged(height=1, width=1),  # also 64x64 after padding: same symbols
        "size-one-more-z-row": lambda: forged(height=header.height + 64),
        "critical-unknown-section": lambda: with_sections(bitstream.Section(40, True, b"x")),
        "q-map-section": lambda: with_sections(
            bitstream.Section(bitstream.SECTION_Q_MAP, True, b"")),
        "largest-section-type": lambda: with_sections(
            bitstream.Section(bitstream.MAX_SECTION_TYPE, False, b"skipped")),
        "non-minimal-leb128": lambda: _fix_crc(seed[:19] + bytes([seed[19] | 0x80, 0]) + seed[20:]),
        "grayscale-of-colour": lambda: with_sections(
            bitstream.colour_mode_section(True),
            keep=lambda s: s.type != bitstream.SECTION_COLOUR_MODE),
    }[case]()


EDGE_OUTCOMES = {  # None: decodes; else words of the error
    "wrong-crc": "checksum", "wrong-magic": "not a .crdr file", "version-1": "version 1",
    "version-3": "unsupported", "other-model": "model", "q-code-over-4": "q code",
    "latent-check": "check value", "payload-bit": "corrupt", "payload-extra-word": "corrupt",
    "payload-odd-bytes": "32-bit words", "payload-empty": "corrupt",
    "size-over-limit": "pixel limit", "size-1x1": None, "size-one-more-z-row": "corrupt",
    "critical-unknown-section": "unknown critical section", "q-map-section": "q map",
    "largest-section-type": None, "non-minimal-leb128": "bad image size",
    "grayscale-of-colour": None,
}


@pytest.mark.parametrize("case", sorted(EDGE_OUTCOMES))
def test_seed_edge_case(runner, tmp_path, tiny, seed, case):
    data = _edge_case(seed, case)
    api = _api(tiny[1], data)
    words = EDGE_OUTCOMES[case]
    if words is None:
        assert api is None, api
    else:
        assert api is not None and words.lower() in api.lower(), api
    msg = _decode_cli(runner, tmp_path, tiny[0], data, "png")
    assert (msg is None) == (words is None), msg
    if words is not None and case != "other-model":  # the command searches for the model
        assert words.lower() in msg.lower(), msg

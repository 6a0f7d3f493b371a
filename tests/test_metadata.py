"""What travels besides pixels: ICC profile, EXIF (orientation reset), XMP, grayscale."""

from __future__ import annotations

from PIL import Image, ImageCms

from conftest import natural_image
from crdr_codec import bitstream
from crdr_codec.cli import main

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "TestCam"
    return ex.tobytes()


def _run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def _round_trip(runner, tiny_weights, tmp_path, im: Image.Image, save_kw: dict, out_name="out.png",
                encode_extra=(), decode_extra=()):
    src = tmp_path / ("in.jpg" if "xmp" in save_kw else "in.png")
    im.save(src, **save_kw)
    enc, out = tmp_path / "a.crdr", tmp_path / out_name
    # --force: a test makes several round trips with the same file names
    res = _run(runner, "encode", src, enc, "--weights", tiny_weights, "--force", *encode_extra)
    assert res.exit_code == 0, res.stderr
    res = _run(runner, "decode", enc, out, "--weights", tiny_weights, "--force", *decode_extra)
    assert res.exit_code == 0, res.stderr
    return enc, Image.open(out)


def test_icc_profile_and_exif_travel_and_orientation_is_reset(runner, tiny_weights, tmp_path):
    im = Image.fromarray(natural_image(48, 32))
    enc, out = _round_trip(runner, tiny_weights, tmp_path, im,
                           {"icc_profile": ICC, "exif": _exif(6)})
    assert out.info.get("icc_profile") == ICC
    ex = out.getexif()
    assert ex.get(0x010F) == "TestCam" and ex.get(0x0112) == 1
    assert out.size == (48, 32)  # orientation 6 was applied to the pixels at encode time
    _, _, sections = bitstream.unpack(enc.read_bytes())
    assert {s.name for s in sections} == {"icc-profile", "exif"}


def test_xmp_travels_into_jpeg(runner, tiny_weights, tmp_path):
    im = Image.fromarray(natural_image(32, 32))
    _, out = _round_trip(runner, tiny_weights, tmp_path, im, {"xmp": XMP, "quality": 95},
                         out_name="out.jpg")
    assert out.info.get("xmp") == XMP


def test_grayscale_comes_back_as_one_channel(runner, tiny_weights, tmp_path):
    gray = Image.fromarray(natural_image(40, 40)[:, :, 1])
    _, out = _round_trip(runner, tiny_weights, tmp_path, gray, {})
    assert out.mode == "L"
    # --strip drops metadata, not the colour mode (which is about the pixels)
    _, out = _round_trip(runner, tiny_weights, tmp_path, gray, {}, encode_extra=["--strip"])
    assert out.mode == "L"


def test_strip_drops_metadata(runner, tiny_weights, tmp_path):
    im = Image.fromarray(natural_image(32, 32))
    enc, out = _round_trip(runner, tiny_weights, tmp_path, im, {"icc_profile": ICC},
                           encode_extra=["--strip"])
    assert not bitstream.unpack(enc.read_bytes())[2]
    assert "icc_profile" not in out.info
    enc, out = _round_trip(runner, tiny_weights, tmp_path, im, {"icc_profile": ICC},
                           decode_extra=["--strip"])
    assert "icc_profile" not in out.info

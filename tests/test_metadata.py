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
    assert {s.name for s in sections} == {"payload-length", "icc-profile", "exif"}


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
    assert [s.name for s in bitstream.unpack(enc.read_bytes())[2]] == ["payload-length"]
    assert "icc_profile" not in out.info
    enc, out = _round_trip(runner, tiny_weights, tmp_path, im, {"icc_profile": ICC},
                           decode_extra=["--strip"])
    assert "icc_profile" not in out.info


def test_xmp_travels_into_tiff(runner, tiny_weights, tmp_path):
    """As into PNG, JPEG and WebP: TIFF keeps XMP as its tag 700, beside the EXIF."""
    im = Image.fromarray(natural_image(32, 32))
    _, out = _round_trip(runner, tiny_weights, tmp_path, im,
                         {"xmp": XMP, "quality": 95, "exif": _exif(1)}, out_name="out.tif")
    assert out.format == "TIFF"
    assert out.info.get("xmp") == XMP
    assert out.getexif().get(0x010F) == "TestCam"


def test_only_descriptive_tags_of_a_tiff_are_carried(runner, tiny_weights, tmp_path):
    """A float TIFF's first IFD also lays out its pixels (BitsPerSample, SampleFormat,
    StripOffsets, ...): those are not EXIF of the picture and must not reach the decoded
    file; its description, camera and artist do."""
    import numpy as np

    from crdr_codec.metadata import STRUCTURAL_TAGS

    src = tmp_path / "float.tif"
    arr = natural_image(24, 40)[:, :, 0].astype(np.float32) / 255
    Image.fromarray(arr, mode="F").save(src, tiffinfo={270: "a float picture", 271: "TestCam",
                                                       315: "Someone"})
    with Image.open(src) as im:  # (the input does have them)
        assert {258, 273, 279, 339} <= set(im.getexif())
    enc, out = tmp_path / "a.crdr", tmp_path / "out.png"
    assert _run(runner, "encode", src, enc, "--weights", tiny_weights).exit_code == 0
    assert _run(runner, "decode", enc, out, "--weights", tiny_weights).exit_code == 0
    with Image.open(out) as im:
        ex = im.getexif()
    assert not STRUCTURAL_TAGS & set(ex), sorted(ex)
    for tag in (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 339):
        assert tag not in ex, tag
    assert ex.get(270) == "a float picture" and ex.get(271) == "TestCam"
    assert ex.get(315) == "Someone"

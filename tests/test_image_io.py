"""Tests of crdr_codec.image_io and crdr_codec.fileutil: what users rely on when crdr
reads their images and writes its outputs."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, features

from crdr_codec.errors import CrdrError, ImageError
from crdr_codec.fileutil import OutputError, atomic_write_bytes, atomic_writer
from crdr_codec.image_io import (
    PrecisionWarning,
    crop,
    encode_image_bytes,
    format_from_extension,
    pad_to_multiple,
    read_image,
    to_input,
    to_uint8,
    write_image,
)


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h: int, w: int) -> np.ndarray:
    """A gradient image JPEG reproduces closely."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                     np.full_like(x, 128)], axis=2).astype(np.uint8)


def _png_bytes(w: int, h: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A minimal PNG (Pillow cannot write 16-bit RGB)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _listdir(path) -> list[str]:
    return sorted(os.listdir(path))


# ----------------------------------------------------------------------- reading


LOSSLESS = ["png", "tiff", "bmp", "ppm"] + (["webp"] if features.check("webp") else [])


@pytest.mark.parametrize("ext", LOSSLESS)
def test_lossless_formats_round_trip_exactly(tmp_path, ext):
    rgb = _noise(5, 7)
    p = tmp_path / f"x.{ext}"
    write_image(p, rgb)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("ext", ["jpg", "jpeg", "JPG"])
def test_jpeg_round_trip_is_close(tmp_path, ext):
    rgb = _smooth(16, 24)
    p = tmp_path / f"x.{ext}"
    write_image(p, rgb)
    with Image.open(p) as im:
        assert im.format == "JPEG"
    out = read_image(p)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 3


def test_read_from_bytes(tmp_path):
    rgb = _noise(3, 4)
    out = read_image(encode_image_bytes(rgb, "png"))
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_becomes_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    p = tmp_path / "g.png"
    Image.fromarray(gray).save(p)
    out = read_image(p)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_bilevel_becomes_rgb(tmp_path):
    p = tmp_path / "b.png"
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1").save(p)
    np.testing.assert_array_equal(read_image(p)[0], [[0, 0, 0], [255, 255, 255]])


def test_palette_becomes_rgb(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0])
    im.putdata([0, 1, 2])
    p = tmp_path / "p.png"
    im.save(p)
    np.testing.assert_array_equal(
        read_image(p)[0], [[10, 20, 30], [200, 100, 50], [0, 255, 0]]
    )


def test_cmyk_becomes_rgb(tmp_path):
    p = tmp_path / "c.tif"
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(p)
    np.testing.assert_array_equal(read_image(p)[0, 0], [255, 0, 0])


def test_exif_orientation_is_applied(tmp_path):
    # 16 wide, 8 high: left half red, right half blue. Orientation 6 means "rotate
    # 90 degrees clockwise to display": 8 wide, 16 high, red on top.
    rgb = np.zeros((8, 16, 3), np.uint8)
    rgb[:, :8] = (255, 0, 0)
    rgb[:, 8:] = (0, 0, 255)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    im.save(p, quality=95, exif=exif.tobytes())
    out = read_image(p)
    assert out.shape == (16, 8, 3)
    assert out[2, 4, 0] > 200 and out[2, 4, 2] < 60  # top: red
    assert out[13, 4, 2] > 200 and out[13, 4, 0] < 60  # bottom: blue


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_gray_is_scaled_with_warning(tmp_path, ext):
    a = np.array([[65535, 257 * 100, 0, 255, 256]], dtype=np.uint16)
    p = tmp_path / f"g16.{ext}"
    Image.fromarray(a).save(p)
    with pytest.warns(PrecisionWarning, match="16-bit image reduced to 8 bits"):
        out = read_image(p)
    np.testing.assert_array_equal(out[0, :, 0], [255, 100, 0, 0, 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_rgb_is_scaled_with_warning(tmp_path):
    a = np.array([[[65535, 257 * 100, 0], [257 * 7, 65280, 255]]], dtype=">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in a)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png_bytes(2, 1, 16, 2, raw))
    with pytest.warns(PrecisionWarning, match=r"rgb16\.png: 16-bit"):
        out = read_image(p)
    np.testing.assert_array_equal(out[0], [[255, 100, 0], [7, 255, 0]])


def test_8bit_image_gives_no_warning(tmp_path):
    p = tmp_path / "x.png"
    write_image(p, _noise(2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(p)


def _rgba_file(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = _noise(2, 3)
    rgba[..., 3] = 7
    p = tmp_path / "a.png"
    Image.fromarray(rgba).save(p)
    return p, rgba


def test_alpha_is_refused_by_default(tmp_path):
    p, _ = _rgba_file(tmp_path)
    with pytest.raises(ImageError, match="alpha channel.*--alpha drop") as e:
        read_image(p)
    assert "a.png" in str(e.value)


def test_alpha_drop_keeps_colour_values(tmp_path):
    p, rgba = _rgba_file(tmp_path)
    np.testing.assert_array_equal(read_image(p, alpha="drop"), rgba[..., :3])


def test_gray_alpha_and_palette_transparency_count_as_alpha(tmp_path):
    la = tmp_path / "la.png"
    Image.new("LA", (2, 2), (50, 0)).save(la)
    pt = tmp_path / "pt.png"
    im = Image.new("P", (2, 2))
    im.putpalette([1, 2, 3, 4, 5, 6])
    im.save(pt, transparency=0)
    for p in (la, pt):
        with pytest.raises(ImageError, match="alpha"):
            read_image(p)
    np.testing.assert_array_equal(read_image(la, alpha="drop")[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(read_image(pt, alpha="drop")[0, 0], [1, 2, 3])


def test_unknown_alpha_mode(tmp_path):
    p, _ = _rgba_file(tmp_path)
    with pytest.raises(ValueError):
        read_image(p, alpha="blend")


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path)


@pytest.mark.parametrize("data", [b"", b"this is not an image at all", b"\x89PNG\r\n\x1a\n"])
def test_garbage_is_not_an_image(tmp_path, data):
    p = tmp_path / "junk.png"
    p.write_bytes(data)
    with pytest.raises(ImageError, match="junk.png: not a readable image"):
        read_image(p)
    if data:
        with pytest.raises(ImageError, match="<stdin>: not a readable image"):
            read_image(data)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated_file_is_not_an_image(tmp_path, fmt):
    data = encode_image_bytes(_noise(64, 64), fmt)
    p = tmp_path / "cut.img"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.img: not a readable image"):
        read_image(p)


def test_decompression_bomb_is_refused(tmp_path):
    # Header claims 25000 x 25000 (625 MP); nothing is decoded before the refusal.
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_bytes(25000, 25000, 8, 2, b"\x00" * 16))
    with pytest.raises(ImageError, match="bomb.png: 25000x25000 image is over the pixel limit"):
        read_image(p)


def test_input_file_is_not_modified(tmp_path):
    p = tmp_path / "in.jpg"
    im = Image.fromarray(_smooth(8, 8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(p, exif=exif.tobytes())
    os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = p.read_bytes(), p.stat().st_mtime_ns
    read_image(p)
    assert (p.read_bytes(), p.stat().st_mtime_ns) == before


def test_errors_are_crdr_errors():
    assert issubclass(ImageError, CrdrError)
    assert issubclass(OutputError, CrdrError) and issubclass(OutputError, OSError)


# ----------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "name, fmt",
    [("a.png", "png"), ("a.JPG", "jpeg"), ("a.jpeg", "jpeg"), ("a.webp", "webp"),
     ("a.tif", "tiff"), ("a.tiff", "tiff"), ("a.bmp", "bmp"), ("a.ppm", "ppm")],
)
def test_format_from_extension(name, fmt):
    assert format_from_extension(name) == fmt


@pytest.mark.parametrize("name", ["out.xyz", "out", "out.crdr", "out.gif"])
def test_unknown_extension(tmp_path, name):
    if "." in name:  # an extension of no format crdr writes: say so, and list them
        what = (rf"cannot write '{name}': \.{name.split('.')[1]} is not a supported image "
                r"format; crdr writes png, jpeg, webp, tiff, bmp or ppm \(\.png, \.jpg")
    else:
        what = "cannot tell the image format from 'out' \\(no extension\\); use .png"
    with pytest.raises(ImageError, match=what):
        format_from_extension(name)
    with pytest.raises(ImageError, match=what.replace("'out", "'.*out")):
        write_image(tmp_path / name, _noise(2, 2))
    assert _listdir(tmp_path) == []


def test_write_image_uses_extension_and_explicit_format(tmp_path):
    rgb = _noise(3, 3)
    for name, pil in [("x.png", "PNG"), ("x.jpg", "JPEG"), ("x.tif", "TIFF"), ("x.bmp", "BMP")]:
        write_image(tmp_path / name, rgb)
        with Image.open(tmp_path / name) as im:
            assert im.format == pil
    write_image(tmp_path / "forced.img", rgb, format="png")
    with Image.open(tmp_path / "forced.img") as im:
        assert im.format == "PNG"
    assert sorted(_listdir(tmp_path)) == ["forced.img", "x.bmp", "x.jpg", "x.png", "x.tif"]


def test_encode_image_bytes():
    rgb = _noise(2, 3)
    assert encode_image_bytes(rgb, "png").startswith(b"\x89PNG")
    assert encode_image_bytes(rgb, "JPG").startswith(b"\xff\xd8")
    with pytest.raises(ImageError, match="unsupported image format 'gif2'; crdr writes png, "):
        encode_image_bytes(rgb, "gif2")


def test_write_rejects_wrong_arrays(tmp_path):
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", np.zeros((2, 2), np.uint8))


def test_write_to_missing_directory(tmp_path):
    target = tmp_path / "missing" / "x.png"
    with pytest.raises(OutputError, match="cannot write '.*missing/x.png': No such file"):
        write_image(target, _noise(2, 2))
    with pytest.raises(CrdrError, match="missing/x.crdr"):
        atomic_write_bytes(tmp_path / "missing" / "x.crdr", b"abc")


def test_write_below_a_file_or_onto_a_directory(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_bytes(tmp_path / "file" / "x.crdr", b"abc")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match="Is a directory"):
        write_image(tmp_path / "dir", _noise(2, 2), format="png")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only directories")
def test_write_to_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            atomic_write_bytes(ro / "x.crdr", b"abc")
    finally:
        ro.chmod(0o700)


def test_atomic_write_bytes(tmp_path):
    p = tmp_path / "x.crdr"
    atomic_write_bytes(p, b"first")
    atomic_write_bytes(str(p), b"second")
    assert p.read_bytes() == b"second"
    assert _listdir(tmp_path) == ["x.crdr"]


def test_new_files_get_umask_permissions(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    mask = os.umask(0o022)
    os.umask(mask)
    p = tmp_path / "x.crdr"
    atomic_write_bytes(p, b"abc")
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_writer_keeps_extension_and_renames(tmp_path):
    p = tmp_path / "out.png"
    with atomic_writer(p) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert tmp.endswith(".png") and os.path.basename(tmp).startswith(".")
        Image.new("RGB", (1, 1)).save(tmp)
        assert not p.exists()
    assert _listdir(tmp_path) == ["out.png"]


def test_failure_leaves_no_partial_output_and_old_file_intact(tmp_path):
    p = tmp_path / "out.png"
    with pytest.raises(RuntimeError):
        with atomic_writer(p) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise RuntimeError("boom")
    assert _listdir(tmp_path) == []

    p.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(p) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise KeyboardInterrupt
    assert p.read_bytes() == b"old"
    assert _listdir(tmp_path) == ["out.png"]


def test_write_image_failure_during_encoding(tmp_path, monkeypatch):
    p = tmp_path / "x.png"
    p.write_bytes(b"old")

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OutputError, match="cannot write '.*x.png': No space left"):
        write_image(p, _noise(2, 2))
    assert p.read_bytes() == b"old"
    assert _listdir(tmp_path) == ["x.png"]


# ----------------------------------------------------------------------- tensors


def test_tensor_conventions_and_exact_round_trip():
    rgb = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3).copy()
    rgb[..., 1] = rgb[..., 1][::-1]
    x = to_input(rgb)
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out, rgb)


def test_torch_conversions_are_the_numpy_ones():
    """Training and evaluation convert images with the same numbers as the runtime."""
    torch = pytest.importorskip("torch")
    from crdr_codec.image_io import to_tensor

    rgb = _noise(37, 53, seed=2)
    x = to_tensor(rgb)
    assert x.dtype == torch.float32 and np.array_equal(x.numpy(), to_input(rgb))
    y = torch.linspace(-1.2, 1.2, 3 * 37 * 53).reshape(1, 3, 37, 53)
    np.testing.assert_array_equal(to_uint8(y), to_uint8(y.numpy()))
    np.testing.assert_array_equal(pad_to_multiple(x, 64).numpy(), pad_to_multiple(to_input(rgb), 64))


def test_to_uint8_clamps_and_rounds():
    x = np.repeat(np.array([-3.0, -1.0, 0.0, 1.0, 5.0, np.nan], np.float32).reshape(1, 1, 1, 6), 3, axis=1)
    np.testing.assert_array_equal(to_uint8(x)[0, :, 0], [0, 0, 128, 255, 255, 128])


@pytest.mark.parametrize("h, w", [(1, 1), (17, 33), (65, 7), (64, 128)])
def test_pad_and_crop(h, w):
    rgb = _noise(h, w, seed=h * 1000 + w)
    x = to_input(rgb)
    y = pad_to_multiple(x, 64)
    H, W = y.shape[-2:]
    assert H % 64 == 0 and W % 64 == 0 and 0 <= H - h < 64 and 0 <= W - w < 64
    # Padding replicates the last row and column.
    assert np.array_equal(y[..., h:, :w], np.broadcast_to(x[..., h - 1 :, :], (1, 3, H - h, w)))
    assert np.array_equal(y[..., :h, w:], np.broadcast_to(x[..., :, w - 1 :], (1, 3, h, W - w)))
    np.testing.assert_array_equal(to_uint8(crop(y, h, w)), rgb)


def test_crop_rejects_growing():
    with pytest.raises(ValueError):
        crop(np.zeros((1, 3, 4, 4), np.float32), 5, 4)


def test_fully_opaque_alpha_is_accepted(tmp_path):
    rgba = np.zeros((3, 2, 4), np.uint8)
    rgba[..., :3] = _noise(3, 2)
    rgba[..., 3] = 255
    p = tmp_path / "opaque.png"
    Image.fromarray(rgba).save(p)
    np.testing.assert_array_equal(read_image(p), rgba[..., :3])

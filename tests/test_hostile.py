"""Hostile, damaged and oversized inputs cost nothing and never decode into garbage;
weights are found by the model id in the header.

Forged files are made with bitstream.pack, so their CRC is valid: what refuses them
is the decoder's own checks (pixel limit, payload lower bound, the coder's data-left-
over check, the latent check value), not the container's checksum.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import HAVE_TORCH, natural_image

#: the tiny models come as torch weights files where torch is installed, else as packages
EXT = ".pt" if HAVE_TORCH else ".crdrm"
from crdr_codec import bitstream, weights_search
from crdr_codec.cli import main
from crdr_codec.errors import BitstreamError, CrdrError, ImageError, LimitError, ModelMismatchError
from crdr_codec.limits import DEFAULT_MAX_PIXELS
from crdr_codec.runtime import latent as coding


def crdr(runner, *args, input=None):
    return runner.invoke(main, [str(a) for a in args], input=input)


def assert_one_line_error(res, *words: str) -> str:
    assert res.exit_code == 1, (res.exit_code, res.stdout, res.stderr, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdr: error:"), res.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _hermetic_env(hermetic_models):
    """Nothing from the user's environment, no shipped models (conftest.py)."""


@pytest.fixture(scope="module")
def sample(codec) -> bytes:
    """A real 40x56 file from the tiny model."""
    return codec.encode(natural_image(40, 56), 2.0).data


def _forge(sample: bytes, *, height=None, width=None, payload=None, check=None,
           sections=None) -> bytes:
    """``sample`` with some fields replaced, re-packed with a valid CRC."""
    h, p, s = bitstream.unpack(sample)
    h = bitstream.Header(model_id=h.model_id, q_code=h.q_code,
                         height=h.height if height is None else height,
                         width=h.width if width is None else width,
                         check=h.check if check is None else check)
    return bitstream.pack(h, p if payload is None else payload, s if sections is None else sections)


class _NoModelWork:
    """Replaces decode_latent: records a call instead of decoding."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        raise AssertionError("decode_latent must not run for this file")


# --------------------------------------------------------------- latent check value
def test_header_carries_the_latent_check(codec, sample):
    header, payload, _ = bitstream.unpack(sample)
    m = codec.model
    y_hat, check = coding.decode_latent(m.entropy, m.tables, m.config.num_slices, payload, 64, 64)
    assert check == header.check


def test_check_value_mismatch_is_refused(codec, sample):
    header, _, _ = bitstream.unpack(sample)
    bad = _forge(sample, check=header.check ^ 0x00010000)
    with pytest.raises(BitstreamError, match="check value"):
        codec.decode(bad)


# --------------------------------------------------------------- forged sizes
def test_forged_huge_dimensions_are_refused_fast(codec, sample, monkeypatch):
    spy = _NoModelWork()
    monkeypatch.setattr(coding, "decode_latent", spy)
    forged = _forge(sample, height=30000, width=30000, payload=b"\0\0\0\0")
    # 19 fixed + 3 + 3 (sizes) + 1 (section count) + 3 (payload-length section) + 4
    assert len(forged) == 33
    t0 = time.perf_counter()
    with pytest.raises(LimitError) as e:
        codec.decode(forged)
    assert time.perf_counter() - t0 < 1.0
    assert spy.calls == 0
    msg = str(e.value)
    assert "30000x30000" in msg and f"{DEFAULT_MAX_PIXELS:,}" in msg and "--max-pixels" in msg


def test_payload_lower_bound_is_checked_before_decoding(codec, sample, monkeypatch):
    spy = _NoModelWork()
    asked = []

    def min_payload_bytes(tables, h, w):
        asked.append((h, w))
        return 4096

    monkeypatch.setattr(coding, "decode_latent", spy)
    monkeypatch.setattr(coding, "min_payload_bytes", min_payload_bytes)
    forged = _forge(sample, height=8000, width=7990, payload=b"\0" * 8)  # under the pixel limit
    t0 = time.perf_counter()
    with pytest.raises(BitstreamError, match="at least 4,096 bytes"):
        codec.decode(forged)
    assert time.perf_counter() - t0 < 1.0
    assert asked == [(8000, 8000)] and spy.calls == 0  # padded sizes


def test_real_payload_lower_bound_refuses_a_tiny_payload(codec, sample, monkeypatch):
    need = coding.min_payload_bytes(codec.model.tables, 4096, 4096)
    if need <= 4:
        pytest.skip("this entropy model gives no payload lower bound yet")
    spy = _NoModelWork()
    monkeypatch.setattr(coding, "decode_latent", spy)
    with pytest.raises(BitstreamError, match="at least"):
        codec.decode(_forge(sample, height=4096, width=4096, payload=b"\0\0\0\0"))
    assert spy.calls == 0


def test_max_pixels_counts_padded_pixels(tiny_weights, sample):
    from crdr_codec.codec import Codec

    # 40x56 is processed as 64x64 = 4096 pixels.
    with pytest.raises(LimitError, match="4,096 pixels"):
        Codec(tiny_weights, device="cpu", max_pixels=4095).decode(sample)
    assert Codec(tiny_weights, device="cpu", max_pixels=4096).decode(sample).shape == (40, 56, 3)
    with pytest.raises(LimitError):
        Codec(tiny_weights, device="cpu", max_pixels=4095).encode(natural_image(40, 56))
    with pytest.raises(LimitError):
        Codec(tiny_weights, device="cpu", max_pixels=0)


# --------------------------------------------------------------- damaged payloads
def _refused(codec, data: bytes) -> None:
    """Decoding must raise BitstreamError: never return an image."""
    with pytest.raises(BitstreamError):
        out = codec.decode(data)
        pytest.fail(f"decoded into an image of shape {out.shape}")


def test_empty_payload_is_refused(codec, sample):
    _refused(codec, _forge(sample, payload=b""))


@pytest.mark.parametrize("seed", range(8))
def test_garbage_payload_is_refused(codec, sample, seed):
    n = len(bitstream.unpack(sample)[1]) // 4
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**32, size=max(n + seed - 4, 1), dtype=np.uint64).astype("<u4")
    _refused(codec, _forge(sample, payload=words.tobytes()))


@pytest.mark.parametrize("words", [1, 2, 5])
def test_truncated_payload_is_refused(codec, sample, words):
    payload = bitstream.unpack(sample)[1]
    _refused(codec, _forge(sample, payload=payload[: -4 * words]))


@pytest.mark.parametrize("words", [1, 2, 3, 8])
@pytest.mark.parametrize("fill", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x12\x34\x56\x78"],
                         ids=["zeros", "ones", "pattern"])
def test_extended_payload_is_refused(codec, sample, words, fill):
    payload = bitstream.unpack(sample)[1]
    _refused(codec, _forge(sample, payload=payload + fill * words))


def test_runtime_error_in_decoding_is_not_relabelled(codec, sample, monkeypatch):
    """An out-of-memory error or a bug is not a corrupt file."""

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(coding, "decode_latent", boom)
    with pytest.raises(RuntimeError, match="simulated") as e:
        codec.decode(sample)
    assert not isinstance(e.value, CrdrError)


def test_runtime_error_reaches_the_cli_unlabelled(runner, tiny_weights, sample, tmp_path,
                                                  monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(coding, "decode_latent", boom)
    src = tmp_path / "x.crdr"
    src.write_bytes(sample)
    res = crdr(runner, "decode", src, tmp_path / "x.png", "--weights", tiny_weights)
    assert isinstance(res.exception, RuntimeError)  # a traceback, not "crdr: error: corrupt"
    assert "crdr: error" not in res.stderr
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------- the CLI, decode side
def test_cli_refuses_forged_huge_file_before_loading_any_model(runner, tiny_weights, sample,
                                                                tmp_path, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("no weights may be loaded for this file")

    monkeypatch.setattr(weights_search, "load_file", no_load)
    forged = tmp_path / "forged.crdr"
    forged.write_bytes(_forge(sample, height=30000, width=30000, payload=b"\0\0\0\0"))
    t0 = time.perf_counter()
    res = crdr(runner, "decode", forged, tmp_path / "out.png", "--weights", tiny_weights)
    assert time.perf_counter() - t0 < 1.0
    assert_one_line_error(res, "forged.crdr", "30000x30000", "--max-pixels")
    assert not (tmp_path / "out.png").exists()


def test_cli_forged_file_in_a_real_process_does_not_import_torch(tiny_weights, sample, tmp_path):
    forged = tmp_path / "forged.crdr"
    forged.write_bytes(_forge(sample, height=30000, width=30000, payload=b"\0\0\0\0"))
    code = textwrap.dedent(f"""
        import sys, time
        from crdr_codec.cli import main
        t0 = time.perf_counter()
        try:
            main(["decode", {str(forged)!r}, {str(tmp_path / "out.png")!r},
                  "--weights", {tiny_weights!r}])
        except SystemExit as e:
            print("EXIT", e.code, "TORCH", "torch" in sys.modules,
                  "SECONDS", round(time.perf_counter() - t0, 3))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[:4] == ["EXIT", "1", "TORCH", "False"], (proc.stdout, proc.stderr)
    assert float(last[5]) < 1.0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--max-pixels" in lines[0] and "forged.crdr" in lines[0]


def test_cli_max_pixels_option(runner, tiny_weights, sample, tmp_path):
    src = tmp_path / "x.crdr"
    src.write_bytes(sample)
    res = crdr(runner, "decode", src, tmp_path / "x.png", "--weights", tiny_weights,
               "--max-pixels", 4095)
    assert_one_line_error(res, "x.crdr", "--max-pixels")
    res = crdr(runner, "decode", src, tmp_path / "x.png", "--weights", tiny_weights,
               "--max-pixels", 4096)
    assert res.exit_code == 0, res.stderr
    res = crdr(runner, "decode", src, tmp_path / "y.png", "--max-pixels", 0)
    assert res.exit_code == 2 and "max-pixels" in res.stderr  # click's usage error


@pytest.mark.parametrize("command", ["decode", "info"])
def test_cli_version_1_file(runner, tiny_weights, tmp_path, command):
    head = b"CRDR\x01" + b"\xaa\xbb\xcc\xdd" + struct.pack("<H", 32000) + bytes([39, 55])
    payload = b"\x01\x02\x03\x04" * 8
    v1 = tmp_path / "old.crdr"
    v1.write_bytes(head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload)
    args = [v1, tmp_path / "x.png", "--weights", tiny_weights] if command == "decode" else [v1]
    res = crdr(runner, command, *args)
    assert_one_line_error(res, "old.crdr", "format version 1", "crdr <= 0.1", "re-encode")


def test_cli_unknown_critical_section(runner, tiny_weights, sample, tmp_path):
    p = tmp_path / "new.crdr"
    p.write_bytes(_forge(sample, sections=[bitstream.Section(40, True, b"x")]))
    res = crdr(runner, "decode", p, tmp_path / "x.png", "--weights", tiny_weights)
    assert_one_line_error(res, "new.crdr", "critical", "type 40")
    # A non-critical one is skipped: the file decodes.
    p.write_bytes(_forge(sample, sections=[bitstream.Section(40, False, b"x")]))
    res = crdr(runner, "decode", p, tmp_path / "x.png", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr


# --------------------------------------------------------------- truncated files
def test_files_declare_their_payload_length(sample):
    header, payload, sections = bitstream.unpack(sample)
    assert sections[0].type == bitstream.SECTION_PAYLOAD_LENGTH
    assert sections[0].value() == len(payload)


@pytest.mark.parametrize("command", ["decode", "info"])
def test_cli_truncated_file_says_how_many_bytes_are_missing(runner, tiny_weights, sample,
                                                            tmp_path, command):
    n = len(bitstream.unpack(sample)[1])
    p = tmp_path / "cut.crdr"
    for missing in (1, 4, n // 2, n):  # n: the whole payload is gone
        p.write_bytes(sample[:-missing])
        args = [p, tmp_path / "x.png", "--weights", tiny_weights] if command == "decode" else [p]
        res = crdr(runner, command, *args)
        s = "" if missing == 1 else "s"
        assert_one_line_error(res, "cut.crdr", "truncated", f"{missing:,} byte{s} missing",
                              f"the payload has {n - missing:,} of {n:,} bytes")
        assert not (tmp_path / "x.png").exists()
    p.write_bytes(sample + b"\0" * 8)
    res = crdr(runner, command, *([p, tmp_path / "x.png", "--weights", tiny_weights]
                                  if command == "decode" else [p]))
    assert_one_line_error(res, "cut.crdr", "8 bytes appended")


def test_an_older_reader_decodes_a_file_with_the_section(codec, sample, monkeypatch):
    """A crdr that does not know the payload-length section (its type removed from
    IMPLEMENTED) skips it as unknown and non-critical: the same image."""
    expected = codec.decode(sample)
    monkeypatch.setattr(bitstream, "IMPLEMENTED",
                        bitstream.IMPLEMENTED - {bitstream.SECTION_PAYLOAD_LENGTH})
    assert not bitstream.unpack(sample)[2][0].known
    assert np.array_equal(codec.decode(sample), expected)


def test_a_file_without_the_section_decodes(codec, sample):
    """Files written before the section (as tests/golden/ are) decode to the same image."""
    header, payload, sections = bitstream.unpack(sample)
    old = bitstream.pack(header, payload, sections, payload_length=False)
    assert len(old) == len(sample) - len(sections[0].data) - 2
    assert bitstream.unpack(old)[2] == sections[1:]
    assert np.array_equal(codec.decode(old), codec.decode(sample))


# --------------------------------------------------------------- the CLI, encode side
def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (solid black); its pixel data is a
    stub, which is never read because the size is refused first."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


def test_encode_refuses_a_huge_image_from_its_header(runner, tiny_weights, tmp_path):
    from crdr_codec.image_io import read_image

    src = tmp_path / "huge.png"
    src.write_bytes(_png_claiming(20000, 20000))
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match="huge.png: 20000x20000 image is over the pixel limit"):
        read_image(src)
    assert time.perf_counter() - t0 < 1.0
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # restored

    out = tmp_path / "huge.crdr"
    t0 = time.perf_counter()
    res = crdr(runner, "encode", src, out, "--weights", tiny_weights)
    assert time.perf_counter() - t0 < 2.0  # including loading the (tiny) model
    assert_one_line_error(res, "huge.png", "20000x20000", "--max-pixels")
    assert not out.exists()


def test_encode_max_pixels_option(runner, tiny_weights, tmp_path):
    src = tmp_path / "solid.png"
    Image.new("RGB", (1500, 1000), (40, 90, 200)).save(src)  # 1536 x 1024 padded
    res = crdr(runner, "encode", src, tmp_path / "a.crdr", "--weights", tiny_weights,
               "--max-pixels", 1_000_000)
    assert_one_line_error(res, "solid.png", "1500x1000", "1,572,864", "--max-pixels")
    # A 1 x 2000 strip is processed as 64 x 2048.
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 2000)).save(strip)
    res = crdr(runner, "encode", strip, tmp_path / "b.crdr", "--weights", tiny_weights,
               "--max-pixels", 100_000)
    assert_one_line_error(res, "strip.png", "131,072")
    res = crdr(runner, "encode", strip, tmp_path / "b.crdr", "--weights", tiny_weights,
               "--max-pixels", 131_072)
    assert res.exit_code == 0, res.stderr


def test_pillow_bomb_check_uses_our_limit(tmp_path, monkeypatch):
    """While pixels are decoded, Pillow's own bomb check runs at our limit, and its
    warning or error becomes our one-line refusal."""
    import warnings

    from crdr_codec.image_io import read_image

    src = tmp_path / "small.png"
    Image.new("RGB", (30, 20)).save(src)
    seen = []
    real_load = Image.Image.load

    def load(self):
        seen.append(Image.MAX_IMAGE_PIXELS)
        warnings.warn("Image size (600 pixels) exceeds limit", Image.DecompressionBombWarning)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", load)
    with pytest.raises(ImageError) as e:
        read_image(src, max_pixels=12345)
    assert seen[0] == 12345
    msg = str(e.value)
    assert msg.startswith(f"{src}: image is over the pixel limit of 12,345")
    assert "--max-pixels" in msg and "\n" not in msg
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # restored


# --------------------------------------------------------------- weights by model id
@pytest.fixture
def two_models(codec, tiny_weights, other_weights, tmp_path):
    """Files from two models, and folders holding their weights."""
    from crdr_codec.codec import Codec

    other = Codec(other_weights, device="cpu")
    a = tmp_path / "a.crdr"
    a.write_bytes(codec.encode(natural_image(24, 40, seed=1), 1.0).data)
    b = tmp_path / "b.crdr"
    b.write_bytes(other.encode(natural_image(40, 24, seed=2), 3.0).data)
    tiny_dir, other_dir = tmp_path / "w-tiny", tmp_path / "w-other"
    tiny_dir.mkdir()
    other_dir.mkdir()
    shutil.copy(tiny_weights, tiny_dir / f"tiny{EXT}")
    shutil.copy(other_weights, other_dir / f"other{EXT}")
    return a, b, tiny_dir, other_dir, codec.model_id.hex(), other.model_id.hex()


def _count_loads(monkeypatch) -> list:
    """Names of the model files loaded (a weights file's id is read without loading it)."""
    loaded = []
    real = weights_search.load_file

    def counting(path, *args, **kwargs):
        loaded.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(weights_search, "load_file", counting)
    return loaded


def test_weights_found_via_crdr_weights_path(runner, two_models, tmp_path, monkeypatch):
    a, b, tiny_dir, other_dir, _, _ = two_models
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("CRDR_WEIGHTS_PATH", os.pathsep.join([str(tmp_path / "missing"),
                                                             str(other_dir), str(tiny_dir)]))
    a2, b2 = tmp_path / "a2.crdr", tmp_path / "b2.crdr"
    shutil.copy(a, a2)
    shutil.copy(b, b2)
    loaded = _count_loads(monkeypatch)
    res = crdr(runner, "decode", a, b, a2, b2, "-o", out, "--quiet")
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(out)) == ["a.png", "a2.png", "b.png", "b2.png"]
    # a: other's id is read without loading it (and noted), then tiny's matches and is
    # loaded; b: other's id is known, so it is loaded without trying anything else.
    # Each model is loaded once.
    assert loaded == [f"tiny{EXT}", f"other{EXT}"]


def test_weights_found_via_weights_folder(runner, two_models, tmp_path, monkeypatch):
    a, b, tiny_dir, other_dir, _, _ = two_models
    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(tiny_dir / f"tiny{EXT}", both / f"tiny{EXT}")
    shutil.copy(other_dir / f"other{EXT}", both / f"other{EXT}")
    (both / f"broken{EXT}").write_bytes(b"not weights")
    res = crdr(runner, "decode", b, tmp_path / "b.png", "--weights", both)
    assert res.exit_code == 0, res.stderr
    with Image.open(tmp_path / "b.png") as im:
        assert im.size == (24, 40)


def test_weights_file_of_another_model_falls_back_to_the_search_path(
        runner, two_models, other_weights, tmp_path, monkeypatch):
    a, _, tiny_dir, _, _, _ = two_models
    monkeypatch.setenv("CRDR_WEIGHTS_PATH", str(tiny_dir))
    res = crdr(runner, "decode", a, tmp_path / "a.png", "--weights", other_weights)
    assert res.exit_code == 0, res.stderr


def test_no_matching_weights_names_the_id_and_the_places(runner, two_models, other_weights,
                                                        tmp_path, monkeypatch):
    a, _, _, other_dir, tiny_id, _ = two_models
    (other_dir / f"broken{EXT}").write_bytes(b"not weights")
    monkeypatch.setenv("CRDR_WEIGHTS_PATH", str(other_dir))
    res = crdr(runner, "decode", a, tmp_path / "a.png", "--weights", other_weights)
    line = assert_one_line_error(res, "a.crdr", tiny_id, other_weights, str(other_dir),
                                 weights_search.package_models_dir().name, "--weights",
                                 "CRDR_WEIGHTS_PATH", "1 file there could not be read")
    assert "Traceback" not in line


def test_missing_weights_argument_is_an_error(runner, two_models, tmp_path):
    res = crdr(runner, "decode", two_models[0], tmp_path / "a.png", "--weights",
               tmp_path / "nope.pt")
    assert_one_line_error(res, "nope.pt", "not found")


def test_model_id_cache_avoids_loading_every_candidate(two_models, monkeypatch):
    _, _, tiny_dir, other_dir, tiny_id, other_id = two_models
    env = {"CRDR_WEIGHTS_PATH": os.pathsep.join([str(other_dir), str(tiny_dir)]),
           "CRDR_CACHE_DIR": os.environ["CRDR_CACHE_DIR"]}
    loaded = _count_loads(monkeypatch)
    _, fp, path = weights_search.WeightsSearch(env=env).find(bytes.fromhex(tiny_id))
    assert fp[:4].hex() == tiny_id and path.name == f"tiny{EXT}"
    assert loaded == [f"tiny{EXT}"]  # other's id is read without loading it
    assert weights_search.cache_path(env).is_file()

    loaded.clear()  # a new process: the cache says where tiny's weights are
    _, fp, path = weights_search.WeightsSearch(env=env).find(bytes.fromhex(tiny_id))
    assert path.name == f"tiny{EXT}" and loaded == [f"tiny{EXT}"]

    # A changed file is not trusted from the cache: its id is read again (now other's), so
    # it is not loaded; tiny's model is still found, as the package exported from it on
    # first use (a user's files outlive the weights file they were written with).
    shutil.copy(other_dir / f"other{EXT}", tiny_dir / f"tiny{EXT}")
    loaded.clear()
    if HAVE_TORCH:
        _, fp, path = weights_search.WeightsSearch(env=env).find(bytes.fromhex(tiny_id))
        assert fp[:4].hex() == tiny_id
        assert path == weights_search.exported_dir(env) / f"{tiny_id}.crdrm"
        assert loaded == [f"{tiny_id}.crdrm"]
        for f in weights_search.exported_dir(env).iterdir():
            f.unlink()
    with pytest.raises(ModelMismatchError, match=tiny_id):
        weights_search.WeightsSearch(env=env).find(bytes.fromhex(tiny_id))


def test_corrupt_cache_is_ignored(two_models, monkeypatch):
    _, _, tiny_dir, _, tiny_id, _ = two_models
    env = {"CRDR_WEIGHTS_PATH": str(tiny_dir), "CRDR_CACHE_DIR": os.environ["CRDR_CACHE_DIR"]}
    cache = weights_search.cache_path(env)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("{not json")
    _, fp, _ = weights_search.WeightsSearch(env=env).find(bytes.fromhex(tiny_id))
    assert fp[:4].hex() == tiny_id

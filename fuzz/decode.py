"""Coverage-guided fuzzing of the .crdr parser and decoder with atheris (libFuzzer).

    python fuzz/decode.py [--model tiny|lite] [CORPUS_DIR ...] [libFuzzer flags]

Each input is a byte string read as a .crdr file, by everything the product path does with
an untrusted file:

* ``bitstream.unpack`` (with and without the payload check) and ``bitstream.read_info``
  (what ``crdr info`` shows); a file they accept must pack back to the same bytes (the
  format's fields have one encoding only, docs/FORMAT.md);
* ``Codec.decode_latent`` (model id, pixel limit, payload bound, range decoder, the
  integer entropy networks, the symbols' check value) and, when that succeeds,
  ``Codec.decode`` and ``Codec.decode_image`` at a beta taken from the input;
* the metadata sections carried into each output format ``crdr decode`` writes (the
  ICC profile, EXIF and XMP go to Pillow as they are in the file).

Every input is tried as it is, and again retargeted: magic, version and model id set to
the loaded model's and the CRC fixed, so mutations get past the checksum and reach the
range decoder and the integer networks (the first try covers the refusals of bad magic,
versions, models and checksums).

Allowed outcomes: success, or a :class:`~crdr_codec.errors.CrdrError` (what the command
line prints as one ``crdr: error:`` line). Any other exception is a finding (atheris
prints its traceback and writes the input as ``crash-*``), and so is a hang (libFuzzer's
``-timeout``) or a memory blow-up (``-rss_limit_mb``).

``--model`` (or ``$CRDR_FUZZ_MODEL``) picks the model package: ``tiny`` (tests/data/
tiny.crdrm, fast; the default) or ``lite`` (the shipped model, whose files are
tests/golden/*.crdr). Seeds: fuzz/seeds/ and the golden files (fuzz/README.md).
"""

from __future__ import annotations

import ctypes
import os
import sys
import zlib
from pathlib import Path

# One thread for numpy's BLAS and ONNX Runtime: the fuzzer runs as several processes.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import atheris  # noqa: E402

# The libraries under crdr are imported first, so only crdr's own code is instrumented.
import click  # noqa: E402, F401
import constriction  # noqa: E402, F401
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402, F401
from PIL import Image  # noqa: E402, F401

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


_hook_checked = None  # the comparison hook _release_cmp_results last installed or checked


def _release_cmp_results() -> bool:
    """Work around a reference leak of atheris' comparison hook; True if it leaks here.

    Instrumented code calls ``atheris._trace_cmp`` for every comparison, and atheris 3.0
    keeps one reference to each result that is not a bool: numpy's element-wise
    comparisons (the range decoder's ``idx == i``) then leak about 40-100 KB per decode
    with the lite model, which libFuzzer's -rss_limit_mb would report as a blow-up of
    crdr. Where a probe shows the extra reference, a wrapper releases it. ``atheris.Fuzz``
    installs its own hook when it starts, so this runs from the first input on.
    """
    global _hook_checked
    native = atheris._trace_cmp
    probe = np.zeros(4)
    traced, plain = native(probe, 0, 2, 0, False), probe == 0
    if sys.getrefcount(traced) != sys.getrefcount(plain) + 1:
        _hook_checked = native
        return False
    ctypes.pythonapi.Py_DecRef(ctypes.py_object(traced))

    def trace_cmp(obj1, obj2, op, counter, is_const):
        result = native(obj1, obj2, op, counter, is_const)
        if type(result) is not bool:
            ctypes.pythonapi.Py_DecRef(ctypes.py_object(result))
        return result

    atheris._trace_cmp = _hook_checked = trace_cmp
    return True

with atheris.instrument_imports(include=["crdr_codec"]):
    from crdr_codec import bitstream, metadata
    from crdr_codec.codec import Codec
    from crdr_codec.errors import CrdrError
    from crdr_codec.image_io import encode_image_bytes
    from crdr_codec.limits import padded_pixels
    from crdr_codec.runtime import coder, entropy, latent, model  # noqa: F401
    from crdr_codec import weights_search  # noqa: F401 (Codec imports it when built)

MODELS = {
    "tiny": ROOT / "tests" / "data" / "tiny.crdrm",
    "lite": ROOT / "weights" / "crdr-lite.crdrm",
}
#: Pixel limit (after padding to multiples of 64) per model: each input costs at most
#: milliseconds (tiny) or a few hundred (lite; the golden files are at most 192x256).
MAX_PIXELS = {"tiny": 256 * 256, "lite": 192 * 256}
#: Betas for the decode of a file whose latent decoded (chosen by the input's last byte).
BETAS = (0.0, 1.0, 3.84, 5.12)
#: Formats whose writers get the file's metadata, on a small image.
FORMATS = ("png", "jpeg", "webp", "tiff", "bmp", "ppm")
_SMALL = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
_CRC_AT = 15  # bitstream: the CRC-32 at data[15:19] covers data[:15] + data[19:]

CODEC: Codec | None = None


def _model_name(argv: list[str]) -> tuple[str, list[str]]:
    """The --model value (removed from argv; kept in the environment for -jobs workers)."""
    name = os.environ.get("CRDR_FUZZ_MODEL", "tiny")
    rest = [argv[0]]
    args = iter(argv[1:])
    for a in args:
        if a == "--model":
            name = next(args, "")
        elif a.startswith("--model="):
            name = a.split("=", 1)[1]
        else:
            rest.append(a)
    if name not in MODELS:
        sys.exit(f"fuzz/decode.py: --model must be one of {', '.join(MODELS)}, got {name!r}")
    os.environ["CRDR_FUZZ_MODEL"] = name
    return name, rest


def load(name: str) -> Codec:
    """The codec the fuzzer decodes with (a small pixel limit, one thread)."""
    global CODEC
    with atheris.instrument_imports(include=["crdr_codec"]):
        CODEC = Codec(MODELS[name], device="cpu", max_pixels=MAX_PIXELS[name], threads=1)
        CODEC.model.entropy, CODEC.model.tables  # built once, not per input  # noqa: B018
    return CODEC


def retarget(data: bytes, model_id: bytes) -> bytes | None:
    """``data`` with the magic, version and model id of a file of ``model_id`` and a valid
    CRC (None if too short to hold the fixed header)."""
    if len(data) < bitstream.FIXED_SIZE:
        return None
    head = bitstream.MAGIC + bytes([bitstream.VERSION]) + model_id + data[9:_CRC_AT]
    rest = data[bitstream.FIXED_SIZE:]
    crc = zlib.crc32(rest, zlib.crc32(head))
    return head + crc.to_bytes(4, "little") + rest


def check_parse(data: bytes) -> tuple | None:
    """The container parser and ``crdr info``; the parsed file, or None if refused."""
    try:
        bitstream.unpack(data, check_payload=False)
    except CrdrError:
        pass
    try:
        header, payload, sections = bitstream.unpack(data)
    except CrdrError:
        return None
    # an accepted file has one encoding only: it packs back to the same bytes (pack
    # writes a payload-length section first when the file has one: where the file has it
    # elsewhere, the same fields must come back)
    length = bitstream.SECTION_PAYLOAD_LENGTH
    has_length = any(s.type == length for s in sections)
    again = bitstream.pack(header, payload, sections, payload_length=has_length)
    if again != data:
        if not (has_length and sections[0].type != length):
            raise AssertionError(f"unpack accepted a file that packs to other bytes "
                                 f"({len(data)} -> {len(again)} bytes)")
        h2, p2, s2 = bitstream.unpack(again)
        rest = [s for s in sections if s.type != length]
        if (h2, p2, [s for s in s2 if s.type != length]) != (header, payload, rest):
            raise AssertionError("unpack accepted a file that packs to other fields")
    info = bitstream.read_info(data)
    if info["header_bytes"] + info["payload_bytes"] != len(data):
        raise AssertionError(f"read_info: header and payload sizes do not add up: {info}")
    return header, payload, sections


def check_metadata(sections) -> None:
    """What ``crdr decode`` writes of a file's sections, into every output format."""
    meta = metadata.from_sections(sections)
    if not (meta.icc or meta.exif or meta.xmp or meta.grayscale):
        return
    for fmt in FORMATS:
        try:
            encode_image_bytes(_SMALL, fmt, meta)
        except CrdrError:
            pass


def check_decode(data: bytes) -> None:
    """The decoder: the latent, then (if it decoded) the image at a beta from the input."""
    try:
        lat = CODEC.decode_latent(data)
    except CrdrError:
        return
    h = lat.header
    if padded_pixels(h.width, h.height) > CODEC.max_pixels:
        raise AssertionError(f"decoded a {h.width}x{h.height} file over the pixel limit")
    beta = BETAS[data[-1] % len(BETAS)]
    try:
        rgb = CODEC.decode(data, beta)
        im = CODEC.decode_image(data, beta)
    except CrdrError:
        raise AssertionError("decode refused a file whose latent decoded") from None
    if rgb.shape != (h.height, h.width, 3) or rgb.dtype != np.uint8:
        raise AssertionError(f"decode returned {rgb.dtype} {rgb.shape} for a "
                             f"{h.width}x{h.height} file")
    if im.size != (h.width, h.height):
        raise AssertionError(f"decode_image returned a {im.size} image for a "
                             f"{h.width}x{h.height} file")


#: $CRDR_FUZZ_RSS_MB: a limit on this process's *current* resident memory, checked every
#: 64 inputs (a finding when over). libFuzzer's -rss_limit_mb reads the peak RSS, which a
#: process started from a large one (pytest, after a long test session) inherits through
#: exec; the smoke test therefore turns that off and sets this instead.
RSS_LIMIT_MB = float(os.environ.get("CRDR_FUZZ_RSS_MB", "0"))
_calls = [0]


def _check_rss() -> None:
    _calls[0] += 1
    if RSS_LIMIT_MB and _calls[0] % 64 == 0:
        with open("/proc/self/statm") as f:
            rss_mb = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        if rss_mb > RSS_LIMIT_MB:
            raise MemoryError(f"resident memory {rss_mb:.0f} MB is over {RSS_LIMIT_MB:g} MB")


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    _check_rss()
    if atheris._trace_cmp is not _hook_checked:
        _release_cmp_results()
    for candidate in (data, retarget(data, CODEC.model_id)):
        if candidate is None or (candidate is not data and candidate == data):
            continue
        parsed = check_parse(candidate)
        if parsed is not None:
            check_metadata(parsed[2])
        check_decode(candidate)


def main() -> None:
    name, argv = _model_name(sys.argv)
    load(name)
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

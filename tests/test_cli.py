"""Tests of the `crdr` command line: what users rely on when they run it.

Most tests drive the click group in-process through CliRunner (stdout and stderr are
kept apart); a few run a real `python -m crdr_codec.cli` process to check exit codes,
stderr and which heavy modules get imported.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crdr_codec import __version__
from crdr_codec.cli import main

from conftest import HAVE_TORCH, natural_image


# ----------------------------------------------------------------------- helpers
def _one_thread_env() -> dict:
    """Environment for subprocesses running torch (read at call time, so the
    monkeypatched variables of _hermetic_env reach them)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def crdr(runner, *args, input=None):
    """Run `crdr ARGS...` in-process."""
    return runner.invoke(main, [str(a) for a in args], input=input)


def save_png(path, h: int, w: int, seed: int = 0) -> str:
    Image.fromarray(natural_image(h, w, seed)).save(path)
    return str(path)


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image file, as PIL reports it."""
    with Image.open(path) as im:
        return im.size


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def info_json(runner, path) -> dict:
    res = crdr(runner, "info", "--json", path)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def assert_one_line_error(res, *words: str, code: int = 1) -> None:
    """Exit code 1 (or ``code``), a single 'crdr: error:' line on stderr naming each of
    ``words``."""
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr, res.exception)
    # A CrdrError must not escape as an exception (that would be a traceback).
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("crdr: error:"), lines[0]
    assert "Traceback" not in res.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


def assert_usage_error(res, *words: str) -> None:
    """A usage error: exit code 2 (as click's own), one 'crdr: error:' line."""
    assert_one_line_error(res, *words, code=2)


@pytest.fixture(scope="module")
def encoded(tiny_weights, tmp_path_factory) -> tuple[str, str]:
    """(png path, crdr path) of a 40x56 image encoded once at q=2 (treat as read-only)."""
    from click.testing import CliRunner

    d = tmp_path_factory.mktemp("encoded")
    src = save_png(d / "img.png", 40, 56)
    dst = str(d / "img.crdr")
    res = crdr(CliRunner(), "encode", src, dst, "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    return src, dst


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The tiny model runs fastest on one thread (and other jobs may share the CPU)."""
    torch = pytest.importorskip("torch") if HAVE_TORCH else None
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch, tmp_path):
    """No weights search path or default weights from the user's environment, and the
    model-id cache in a temporary folder (never ~/.cache)."""
    monkeypatch.delenv("CRDR_WEIGHTS_PATH", raising=False)
    monkeypatch.delenv("CRDR_WEIGHTS", raising=False)
    monkeypatch.setenv("CRDR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def out_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# ------------------------------------------------------------------ round trip
def test_encode_decode_round_trip_and_info(runner, tiny_weights, png, out_dir):
    enc = out_dir / "img.crdr"
    res = crdr(runner, "encode", png, enc, "--q", "2.5", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""  # messages go to stderr, never mixed with data
    assert enc.read_bytes()[:4] == b"CRDR"

    dec = out_dir / "img.png"
    res = crdr(runner, "decode", enc, dec, "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    assert image_size(dec) == image_size(png) == (56, 40)

    meta = info_json(runner, enc)
    assert meta["file_bytes"] == enc.stat().st_size
    assert (meta["width"], meta["height"]) == (56, 40)
    assert meta["q"] == 2.5

    # 22 bytes + the payload-length section: tag, length, the length (LEB128)
    n = meta["payload_bytes"]
    header = 22 + 2 + (1 if n < 128 else 2 if n < 16384 else 3)
    assert meta["format_version"] == 2 and meta["header_bytes"] == header
    assert n == meta["file_bytes"] - header
    assert len(meta["latent_check"]) == 8
    assert meta["sections"] == [{"type": 7, "name": "payload-length", "critical": False,
                                 "bytes": header - 24, "value": n}]

    res = crdr(runner, "info", enc)
    assert res.exit_code == 0, res.stderr
    assert "56x40" in res.stdout
    assert "q=2.5" in res.stdout
    assert f"payload {n}), model {meta['model_id']}, payload-length={n}" in res.stdout
    assert f"{enc.stat().st_size} bytes" in res.stdout


def test_fractional_q_is_stored_exactly(runner, tiny_weights, png, out_dir):
    enc = out_dir / "img.crdr"
    res = crdr(runner, "encode", png, enc, "--q", "1.37", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    meta = info_json(runner, enc)
    assert meta["q"] == 1.37
    assert meta["q"] == meta["q_code"] / 16000
    assert meta["q_code"] == 21920


@pytest.mark.parametrize(
    "command, option, value",
    [
        ("encode", "--q", "-1"),
        ("encode", "--q", "4.5"),
        ("encode", "--q", "nan"),
        ("encode", "--refine", "-1"),
        ("encode", "--refine", "1001"),
        ("decode", "--beta", "6"),
        ("decode", "--beta", "nan"),
    ],
)
def test_out_of_range_parameter_is_refused(runner, tiny_weights, encoded, out_dir,
                                           command, option, value):
    src, crdr_file = encoded
    inp, out = (src, out_dir / "x.crdr") if command == "encode" else (crdr_file, out_dir / "x.png")
    res = crdr(runner, command, inp, out, f"{option}={value}", "--weights", tiny_weights)
    assert_usage_error(res, option.lstrip("-"))
    assert os.listdir(out_dir) == []


def test_beta_changes_pixels_not_the_file(runner, tiny_weights, encoded, out_dir):
    _, enc = encoded
    before = Path(enc).read_bytes()
    outs = {}
    for beta in ("0", "5.12"):
        outs[beta] = out_dir / f"b{beta}.png"
        res = crdr(runner, "decode", enc, outs[beta], "--beta", beta, "--weights", tiny_weights)
        assert res.exit_code == 0, res.stderr
        assert f"beta={beta}" in res.stderr
    assert Path(enc).read_bytes() == before
    a, b = pixels(outs["0"]), pixels(outs["5.12"])
    assert a.shape == b.shape == (40, 56, 3)
    assert not np.array_equal(a, b)

    # Decoding is deterministic: the same beta gives the same pixels again.
    again = out_dir / "again.png"
    assert crdr(runner, "decode", enc, again, "--weights", tiny_weights).exit_code == 0
    assert np.array_equal(pixels(again), a)


# ------------------------------------------------------------------ batch mode
def test_batch_encode_reports_bad_inputs_and_keeps_going(runner, tiny_weights, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a = save_png(src / "a.png", 40, 56, seed=1)
    b = save_png(src / "b.png", 24, 70, seed=2)
    bad = src / "bad.png"
    bad.write_text("this is not an image\n")
    missing = src / "missing.png"
    enc_dir, dec_dir = tmp_path / "enc", tmp_path / "dec"
    enc_dir.mkdir()
    dec_dir.mkdir()

    res = crdr(runner, "encode", a, bad, b, missing, "-o", enc_dir, "--weights", tiny_weights)
    assert res.exit_code == 1
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("crdr: error:")]
    assert len(errors) == 2, res.stderr
    assert "bad.png" in errors[0] and "missing.png" in errors[1]
    assert "2 of 4" in res.stderr
    assert sorted(os.listdir(enc_dir)) == ["a.crdr", "b.crdr"]  # no partial or temp files

    crdr_files = sorted(str(p) for p in enc_dir.glob("*.crdr"))
    res = crdr(runner, "decode", *crdr_files, "-o", dec_dir, "--format", "png",
               "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(dec_dir)) == ["a.png", "b.png"]
    assert image_size(dec_dir / "a.png") == (56, 40)
    assert image_size(dec_dir / "b.png") == (70, 24)


def test_batch_name_collision_is_refused(runner, tiny_weights, tmp_path, out_dir):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    p1 = save_png(tmp_path / "x" / "img.png", 16, 16)
    p2 = save_png(tmp_path / "y" / "img.png", 16, 16, seed=1)
    res = crdr(runner, "encode", p1, p2, "-o", out_dir, "--weights", tiny_weights)
    assert_usage_error(res, "img.crdr")
    assert os.listdir(out_dir) == []


def test_batch_output_folder_is_created(runner, tiny_weights, png, tmp_path):
    """`crdr encode *.png -o out/` (the README's first batch command) with no out/ yet:
    the folder and its parents are made, as `crdr eval -o` does; decode too."""
    out = tmp_path / "new" / "deeper" / "out"
    res = crdr(runner, "encode", png, "-o", f"{out}/", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    assert os.listdir(out) == ["img.crdr"]
    dec = tmp_path / "dec" / "ed"
    res = crdr(runner, "decode", out / "img.crdr", "-o", dec, "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    assert os.listdir(dec) == ["img.png"]
    # a usage error is found before anything is made
    res = crdr(runner, "encode", png, "-", "-o", tmp_path / "not-made", "--weights", tiny_weights)
    assert res.exit_code == 2 and not (tmp_path / "not-made").exists()
    # a file where the folder should be: one line naming it
    (tmp_path / "afile").write_text("x")
    res = crdr(runner, "encode", png, "-o", tmp_path / "afile", "--weights", tiny_weights)
    assert res.exit_code == 2 and "afile" in res.stderr  # click's own check
    res = crdr(runner, "encode", png, "-o", tmp_path / "afile" / "sub", "--weights", tiny_weights)
    assert_one_line_error(res, "afile")


def _no_model(monkeypatch):
    """Any model work fails the test's command loudly (``Codec`` is where it starts)."""
    import crdr_codec.codec

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(crdr_codec.codec, "Codec", no_load)


def _unwritable_folder(tmp_path) -> Path:
    """A folder no file can be created in, even by root: /proc (chmod does not stop
    root), else a chmod 500 folder."""
    if os.path.isdir("/proc/self") and os.geteuid() == 0:
        return Path("/proc")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return ro


@pytest.mark.parametrize("command", ["encode", "decode"])
@pytest.mark.parametrize("how", ["batch", "single"])
def test_unwritable_output_is_found_before_any_model_work(runner, tiny_weights, encoded,
                                                          tmp_path, monkeypatch, command, how):
    inp = encoded[0] if command == "encode" else encoded[1]
    ro = _unwritable_folder(tmp_path)
    _no_model(monkeypatch)
    args = ["-o", ro] if how == "batch" else [ro / ("x.crdr" if command == "encode" else "x.png")]
    res = crdr(runner, command, inp, *args, "--weights", tiny_weights)
    assert_one_line_error(res, str(ro), "cannot write")
    assert "loaded" not in res.stderr
    assert not any(p.name.startswith(".crdr-check") for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_skip_existing_resumes_a_batch(runner, tiny_weights, tmp_path, command):
    src = tmp_path / "src"
    src.mkdir()
    names = [save_png(src / f"{n}.png", 24, 32, seed=i) for i, n in enumerate("abc")]
    out = tmp_path / "out"
    if command == "decode":
        assert crdr(runner, "encode", *names, "-o", src, "--weights", tiny_weights).exit_code == 0
        names = [str(src / f"{n}.crdr") for n in "abc"]
    ext = ".crdr" if command == "encode" else ".png"
    # an interrupted batch: a is done, b too (with other bytes, which must be kept)
    res = crdr(runner, command, names[0], "-o", out, "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    (out / f"b{ext}").write_bytes(b"done before")
    before = (out / f"a{ext}").stat().st_mtime_ns

    res = crdr(runner, command, *names, "-o", out, "--weights", tiny_weights)
    assert res.exit_code == 1  # without the option every done file is an error
    assert res.stderr.count("already exists") == 2
    (out / f"c{ext}").unlink()  # (c was done by that run: interrupted before it instead)

    res = crdr(runner, command, *names, "-o", out, "--skip-existing", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3, res.stderr
    assert lines[0].startswith("[1/3] ") and f"a{ext}: skipped (exists)" in lines[0]
    assert lines[1].startswith("[2/3] ") and f"b{ext}: skipped (exists)" in lines[1]
    assert lines[2].startswith("[3/3] ") and "skipped" not in lines[2]
    assert (out / f"b{ext}").read_bytes() == b"done before"
    assert (out / f"a{ext}").stat().st_mtime_ns == before
    assert sorted(os.listdir(out)) == [f"{n}{ext}" for n in "abc"]

    # a single file too
    res = crdr(runner, command, names[0], out / f"a{ext}", "--skip-existing",
               "--weights", tiny_weights)
    assert res.exit_code == 0 and "skipped (exists)" in res.stderr, res.stderr

    # not with --force: a usage error
    res = crdr(runner, command, *names, "-o", out, "--skip-existing", "--force",
               "--weights", tiny_weights)
    assert_usage_error(res, "--force", "--skip-existing")


def test_batch_usage_errors(runner, tiny_weights, png, out_dir):
    """Errors in the command line itself exit 2, as the README says (and click's do)."""
    res = crdr(runner, "encode", png, "-", "-o", out_dir, "--weights", tiny_weights)
    assert_usage_error(res, "stdin")
    res = crdr(runner, "encode", png, png, png, "--weights", tiny_weights)  # no -o
    assert_usage_error(res, "-o DIR")
    res = crdr(runner, "encode", png, "--weights", tiny_weights)  # no output at all
    assert_usage_error(res, "OUTPUT")
    res = crdr(runner, "encode", png, out_dir / "x.crdr", "--q", "2", "--bpp", "0.3",
               "--weights", tiny_weights)
    assert_usage_error(res, "--q", "--bpp")
    res = crdr(runner, "encode", png, out_dir / "x.png", "--weights", tiny_weights)
    assert_usage_error(res, ".crdr")
    res = crdr(runner, "decode", png, out_dir / "x.jpg", "--format", "png",
               "--weights", tiny_weights)
    assert_usage_error(res, "--format")
    res = crdr(runner, "encode", png, out_dir / "x.crdr", "--alpha", "keep")  # click's own
    assert res.exit_code == 2
    assert os.listdir(out_dir) == []


# ------------------------------------------------------------ stdin and stdout
def test_stdin_to_stdout_round_trip(runner, tiny_weights, png):
    png_bytes = Path(png).read_bytes()
    res = crdr(runner, "encode", "-", "-", "--weights", tiny_weights, input=png_bytes)
    assert res.exit_code == 0, res.stderr
    data = res.stdout_bytes
    assert data[:4] == b"CRDR"

    res = crdr(runner, "info", "--json", "-", input=data)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["file_bytes"] == len(data)

    res = crdr(runner, "decode", "-", "-", "--format", "png", "--weights", tiny_weights,
               input=data)
    assert res.exit_code == 0, res.stderr
    out = res.stdout_bytes
    assert out[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "PNG"
        assert im.size == (56, 40)


# ----------------------------------------------------------------------- errors
def test_missing_input(runner, tiny_weights, tmp_path, out_dir):
    res = crdr(runner, "encode", tmp_path / "nope.png", out_dir / "x.crdr",
               "--weights", tiny_weights)
    assert_one_line_error(res, "nope.png", "no such file")
    assert os.listdir(out_dir) == []

    res = crdr(runner, "decode", tmp_path / "nope.crdr", out_dir / "x.png",
               "--weights", tiny_weights)
    assert_one_line_error(res, "nope.crdr", "no such file")
    assert os.listdir(out_dir) == []


def test_input_is_not_an_image(runner, tiny_weights, tmp_path, out_dir):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"hello, not a png")
    res = crdr(runner, "encode", bad, out_dir / "x.crdr", "--weights", tiny_weights)
    assert_one_line_error(res, "bad.png", "not a readable image")
    assert os.listdir(out_dir) == []


def _corrupt(data: bytes, how: str) -> bytes:
    # 4 magic + 1 version + 4 model id + 2 q + 4 check + 4 CRC + 1 + 1 (40x56) + 1 count
    # + the payload-length section (3-5 bytes): the payload starts by byte 27
    header = 27
    if how == "truncated_header":
        return data[:10]
    if how == "truncated_payload":
        return data[:-1]
    if how == "truncated_word":
        return data[:-4]
    if how == "flipped_payload_byte":
        i = header + (len(data) - header) // 2
        return data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]
    if how == "wrong_magic":
        return b"CRDX" + data[4:]
    if how == "png_instead":
        return b"\x89PNG\r\n\x1a\n" + data[8:]
    if how == "empty":
        return b""
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["truncated_header", "truncated_payload", "truncated_word", "flipped_payload_byte",
     "wrong_magic", "png_instead", "empty"],
)
def test_corrupt_crdr_file(runner, tiny_weights, encoded, tmp_path, out_dir, how):
    bad = tmp_path / "bad.crdr"
    bad.write_bytes(_corrupt(Path(encoded[1]).read_bytes(), how))
    res = crdr(runner, "decode", bad, out_dir / "x.png", "--weights", tiny_weights)
    assert_one_line_error(res, "crdr")
    assert re.search(r"truncated|corrupt|not a \.crdr file", res.stderr), res.stderr
    assert os.listdir(out_dir) == []  # no output, no temporary file

    res = crdr(runner, "info", bad)
    assert_one_line_error(res, "bad.crdr")


def test_corrupt_file_in_a_real_process(tiny_weights, encoded, tmp_path, out_dir):
    bad = tmp_path / "bad.crdr"
    bad.write_bytes(_corrupt(Path(encoded[1]).read_bytes(), "flipped_payload_byte"))
    proc = subprocess.run(
        [sys.executable, "-m", "crdr_codec.cli", "decode", str(bad), str(out_dir / "x.png"),
         "--weights", tiny_weights],
        capture_output=True, text=True, timeout=120, env=_one_thread_env(),
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdr: error:"), proc.stderr
    assert "corrupt" in lines[0]
    assert os.listdir(out_dir) == []


def test_decode_with_the_wrong_model(runner, tiny_weights, other_weights, encoded, out_dir):
    model_id = info_json(runner, encoded[1])["model_id"]
    res = crdr(runner, "decode", encoded[1], out_dir / "x.png", "--weights", other_weights)
    # The one line names the file, the model id it needs, and where it looked.
    assert_one_line_error(res, "img.crdr", model_id, "--weights", other_weights,
                          "CRDR_WEIGHTS_PATH")
    assert os.listdir(out_dir) == []


def test_info_shows_sections(runner, encoded, tmp_path):
    from crdr_codec import bitstream

    header, payload, _ = bitstream.unpack(Path(encoded[1]).read_bytes())
    p = tmp_path / "meta.crdr"
    p.write_bytes(bitstream.pack(header, payload, [
        bitstream.Section(bitstream.SECTION_ICC, False, b"p" * 100),
        bitstream.suggested_beta_section(3.84),
        bitstream.Section(300, False, b"later"),
    ]))
    meta = info_json(runner, p)
    n = len(payload)
    length = 2 + len(bitstream.payload_length_section(n).data)
    assert meta["header_bytes"] == 22 + length + (1 + 1 + 100) + (1 + 1 + 2) + (2 + 1 + 5)
    assert [s["name"] for s in meta["sections"]] == ["payload-length", "icc-profile",
                                                    "suggested-beta", "unknown-300"]
    assert meta["sections"][0]["value"] == n == meta["payload_bytes"]
    assert meta["sections"][2]["value"] == 3.84
    res = crdr(runner, "info", p)
    assert res.exit_code == 0, res.stderr
    assert (f"payload-length={n}, icc-profile (100 bytes), suggested-beta=3.84, "
            "unknown-300 (5 bytes)") in res.stdout


def test_batch_decode_errors_name_each_file(runner, tiny_weights, encoded, tmp_path, out_dir):
    data = Path(encoded[1]).read_bytes()
    good = tmp_path / "good.crdr"
    good.write_bytes(data)
    cut = tmp_path / "cut.crdr"
    cut.write_bytes(data[:-3])
    old = tmp_path / "old.crdr"
    old.write_bytes(data[:4] + b"\x01" + data[5:])
    res = crdr(runner, "decode", cut, good, old, "-o", out_dir, "--weights", tiny_weights)
    assert res.exit_code == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("crdr: error:")]
    assert len(errors) == 2, res.stderr
    assert "cut.crdr" in errors[0] and "truncated" in errors[0] and "3 bytes missing" in errors[0]
    assert "old.crdr" in errors[1] and "version 1" in errors[1] and "crdr <= 0.1" in errors[1]
    assert "2 of 3" in res.stderr
    assert os.listdir(out_dir) == ["good.png"]


def test_bad_weights_file(runner, png, tmp_path, out_dir):
    res = crdr(runner, "encode", png, out_dir / "x.crdr", "--weights", tmp_path / "nope.pt")
    assert_one_line_error(res, "weights", "nope.pt")
    assert "img.png" not in res.stderr  # the weights are wrong, not the input
    # A file that is not a weights file (torch's own error spans several lines).
    res = crdr(runner, "encode", png, out_dir / "x.crdr", "--weights", png)
    assert_one_line_error(res, "weights")
    assert os.listdir(out_dir) == []


def test_unavailable_device(runner, tiny_weights, png, out_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("ONNX Runtime's CUDA provider is installed")
    res = crdr(runner, "encode", png, out_dir / "x.crdr", "--device", "cuda",
               "--weights", tiny_weights)
    assert_one_line_error(res, "cuda")
    assert os.listdir(out_dir) == []


def test_missing_weights_are_found_before_torch_is_imported(png, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from crdr_codec.cli import main
        try:
            main(["encode", {png!r}, {str(tmp_path / "x.crdr")!r}, "--weights", "nope.pt"])
        except SystemExit as e:
            print(e.code, "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.stdout.split() == ["1", "False"], (out.stdout, out.stderr)
    assert out.stderr.strip() == "crdr: error: weights file not found: nope.pt (--weights)"


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_output_folder_does_not_exist(runner, tiny_weights, encoded, tmp_path, command):
    inp = encoded[0] if command == "encode" else encoded[1]
    out = tmp_path / "nope" / ("x.crdr" if command == "encode" else "x.png")
    res = crdr(runner, command, inp, out, "--weights", tiny_weights)
    assert_one_line_error(res, "does not exist")
    assert not out.parent.exists()


def test_unknown_output_extension_fails_before_any_work(runner, encoded, tmp_path, out_dir):
    # A weights path that does not exist: the extension must be rejected before the
    # model is even loaded (so a typo costs nothing).
    res = crdr(runner, "decode", encoded[1], out_dir / "out.xyz",
               "--weights", tmp_path / "no-such-weights.pt")
    assert_usage_error(res, "out.xyz", ".png")
    assert "weights" not in res.stderr
    assert os.listdir(out_dir) == []

    res = crdr(runner, "decode", encoded[1], out_dir / "out.png", "--format", "xyz",
               "--weights", tmp_path / "no-such-weights.pt")
    assert_usage_error(res, "xyz")
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("how", ["name", "format"])
def test_gif_output_is_unsupported_and_the_formats_are_listed(runner, tiny_weights, encoded,
                                                              out_dir, how):
    args = [out_dir / "out.gif"] if how == "name" else ["-o", out_dir, "--format", "gif"]
    res = crdr(runner, "decode", encoded[1], *args, "--weights", tiny_weights)
    assert_usage_error(res, "gif", "unsupported", "png, jpeg, webp, tiff, bmp or ppm")
    assert "cannot tell" not in res.stderr
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_output_equal_to_input_is_refused(runner, tiny_weights, encoded, tmp_path, command):
    original = Path(encoded[0] if command == "encode" else encoded[1])
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    inp = d / original.name
    shutil.copyfile(original, inp)
    before = inp.read_bytes()
    same = d / "sub" / ".." / original.name  # the same file, spelled differently
    res = crdr(runner, command, inp, same, "--weights", tiny_weights)
    assert_one_line_error(res, "input")
    assert inp.read_bytes() == before
    assert sorted(os.listdir(d)) == sorted(["sub", original.name])


def test_input_files_are_never_modified(runner, tiny_weights, png, out_dir):
    st = os.stat(png)
    data = Path(png).read_bytes()
    enc = out_dir / "x.crdr"
    assert crdr(runner, "encode", png, enc, "--weights", tiny_weights).exit_code == 0
    assert Path(png).read_bytes() == data
    assert os.stat(png).st_mtime_ns == st.st_mtime_ns

    st, data = os.stat(enc), enc.read_bytes()
    assert crdr(runner, "decode", enc, out_dir / "x.png", "--weights", tiny_weights).exit_code == 0
    assert enc.read_bytes() == data
    assert os.stat(enc).st_mtime_ns == st.st_mtime_ns


# ------------------------------------------------------------------ rate target
def test_bpp_target(runner, tiny_weights, tmp_path, out_dir):
    h, w = 64, 96
    src = save_png(tmp_path / "img.png", h, w, seed=3)

    def file_bpp(path) -> float:
        return os.path.getsize(path) * 8 / (h * w)

    bpps = {}
    for q in ("0", "4"):
        p = out_dir / f"q{q}.crdr"
        assert crdr(runner, "encode", src, p, "--q", q, "--weights", tiny_weights).exit_code == 0
        bpps[q] = file_bpp(p)
    # (The tiny random test model need not give smaller files at lower q.)
    lo, hi = sorted(bpps.values())
    assert lo < hi
    target = (lo + hi) / 2

    out = out_dir / "target.crdr"
    res = crdr(runner, "encode", src, out, "--bpp", f"{target:.6f}", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    assert lo <= file_bpp(out) <= target
    m = re.search(r"q=([0-9.]+)", res.stderr)
    assert m, res.stderr
    assert float(m.group(1)) == pytest.approx(info_json(runner, out)["q"], abs=1e-4)
    # the result line says how many encodes the search took (the former bisection: 11)
    m = re.search(r"\(--bpp [0-9.]+: (\d+) encodes?\)", res.stderr)
    assert m, res.stderr
    assert 1 <= int(m.group(1)) < 11

    for bad in ("0", "-1", "nan", "inf"):
        res = crdr(runner, "encode", src, out_dir / "bad.crdr", f"--bpp={bad}",
                   "--weights", tiny_weights)
        assert_usage_error(res, "--bpp")
    assert not (out_dir / "bad.crdr").exists()


# ----------------------------------------------------------------------- alpha
def test_alpha_refused_unless_dropped(runner, tiny_weights, tmp_path, out_dir):
    rgba = np.dstack([natural_image(20, 30), np.full((20, 30), 255, np.uint8)])
    rgba[:5, :5, 3] = 0
    src = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(src)

    enc = out_dir / "alpha.crdr"
    res = crdr(runner, "encode", src, enc, "--weights", tiny_weights)
    assert_one_line_error(res, "alpha.png", "--alpha drop")
    assert os.listdir(out_dir) == []

    res = crdr(runner, "encode", src, enc, "--alpha", "drop", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    dec = out_dir / "alpha.png"
    assert crdr(runner, "decode", enc, dec, "--weights", tiny_weights).exit_code == 0
    assert image_size(dec) == (30, 20)


# ------------------------------------------------------------------- odd sizes
@pytest.mark.parametrize("h, w", [(1, 1), (17, 33), (65, 7), (1000, 3), (3, 1000)])
def test_odd_sizes_round_trip(runner, tiny_weights, tmp_path, h, w):
    src = save_png(tmp_path / "in.png", h, w)
    enc, dec = tmp_path / "x.crdr", tmp_path / "x.png"
    res = crdr(runner, "encode", src, enc, "--q", "0.5", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    res = crdr(runner, "decode", enc, dec, "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    assert image_size(dec) == (w, h)
    assert pixels(dec).shape == (h, w, 3)


# -------------------------------------------------------- startup and imports
def test_version(runner):
    res = crdr(runner, "--version")
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0] == f"crdr {__version__}"  # more: test_cli_users.py


def _run_python(code: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, env=_one_thread_env())
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


_CALL_MAIN = """
    import sys
    from crdr_codec.cli import main

    def crdr(*args):
        try:
            main(list(args), standalone_mode=False)
        except SystemExit as e:
            assert not e.code, e.code
"""


def test_help_info_and_version_do_not_import_torch(encoded):
    proc = _run_python(_CALL_MAIN + f"""
    crdr("--help")
    crdr("encode", "--help")
    crdr("--version")
    crdr("info", {encoded[1]!r})
    crdr("info", "--json", {encoded[1]!r})
    print("TORCH", "torch" in sys.modules)
    """)
    assert "Usage:" in proc.stdout
    assert f"crdr {__version__}" in proc.stdout
    assert "56x40" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "TORCH False"


def test_encode_decode_and_view_do_not_import_torch(tiny_package, png, tmp_path):
    """The product path runs on the runtime alone, also where torch is installed."""
    enc, dec = tmp_path / "x.crdr", tmp_path / "x.png"
    (tmp_path / "b").mkdir()
    _run_python(_CALL_MAIN + f"""
    crdr("encode", {png!r}, {str(enc)!r}, "--weights", {tiny_package!r}, "--quiet")
    crdr("decode", {str(enc)!r}, {str(dec)!r}, "--weights", {tiny_package!r}, "--quiet")
    crdr("encode", {png!r}, "-o", {str(tmp_path / "b")!r}, "--bpp", "3", "--weights",
         {tiny_package!r}, "--quiet")
    from crdr_codec import Codec
    from crdr_codec.view.command import open_session
    codec = Codec({tiny_package!r})
    codec.decode(codec.encode(codec.decode(open({str(enc)!r}, "rb").read()), 1).data, 3)
    session = open_session({str(enc)!r}, {png!r}, weights={tiny_package!r})
    session.image(3.84)
    mods = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "compressai", "onnx"))
    assert not mods, mods
    """)
    assert image_size(dec) == (56, 40)


@pytest.mark.parametrize("second", ["b.png", "x.jpg", "notes.txt"])
def test_encode_refuses_an_output_that_is_not_crdr(runner, tiny_weights, png, tmp_path, second):
    """`crdr encode a.png b.png` (a forgotten -o) once wrote .crdr bytes over b.png."""
    other = tmp_path / second
    Image.fromarray(natural_image(16, 16)).save(other) if second != "notes.txt" else other.write_text("keep")
    before = other.read_bytes()
    res = crdr(runner, "encode", png, other, "--weights", tiny_weights)
    assert res.exit_code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and second in lines[0] and ".crdr" in lines[0]
    assert other.read_bytes() == before


def test_decode_format_must_agree_with_the_output_extension(runner, encoded, tmp_path):
    _, src = encoded
    out = tmp_path / "out.png"
    res = crdr(runner, "decode", src, out, "--format", "jpeg")
    assert res.exit_code != 0 and "out.png" in res.stderr and "jpeg" in res.stderr
    assert not out.exists()


def test_unknown_format_names_no_made_up_file(runner, encoded, tmp_path):
    _, src = encoded
    res = crdr(runner, "decode", src, "-o", tmp_path, "--format", "gif")
    assert res.exit_code != 0 and "gif" in res.stderr and "x.gif" not in res.stderr


def test_missing_input_is_reported_without_loading_the_model(runner, tmp_path, monkeypatch):
    import crdr_codec.codec

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(crdr_codec.codec, "Codec", no_load)
    for bad in (tmp_path / "missing.png", tmp_path):
        res = crdr(runner, "encode", bad, tmp_path / "x.crdr")
        assert res.exit_code == 1 and str(bad) in res.stderr and "loaded" not in res.stderr


def test_binary_output_to_a_terminal_is_refused(encoded, monkeypatch):
    from crdr_codec.cli import common
    from crdr_codec.errors import CrdrError

    monkeypatch.setattr(common.sys.stdout, "isatty", lambda: True, raising=False)
    with pytest.raises(CrdrError, match="terminal"):
        common.refuse_terminal("-")
    common.refuse_terminal("out.png")  # a file is fine


def test_short_q_and_threads(runner, tiny_weights, png, tmp_path):
    a, b = tmp_path / "a.crdr", tmp_path / "b.crdr"
    assert crdr(runner, "encode", png, a, "-q", "1.5", "--weights", tiny_weights).exit_code == 0
    res = crdr(runner, "encode", png, b, "--q", "1.5", "--threads", "1", "--weights", tiny_weights)
    assert res.exit_code == 0 and a.read_bytes() == b.read_bytes()
    res = crdr(runner, "decode", a, tmp_path / "a.png", "--threads", "0", "--weights", tiny_weights)
    assert res.exit_code == 2  # click's usage error: at least 1


def test_jpeg_quality_of_decoded_files(runner, tiny_weights, encoded, out_dir):
    _, src = encoded
    sizes = {}
    for q in (None, "95", "30"):
        out = out_dir / f"q{q}.jpg"
        extra = [] if q is None else ["--jpeg-quality", q]
        res = crdr(runner, "decode", src, out, *extra, "--weights", tiny_weights)
        assert res.exit_code == 0, res.stderr
        sizes[q] = out.stat().st_size
    assert sizes[None] == sizes["95"] > sizes["30"]  # 95 stays the default
    res = crdr(runner, "decode", src, "-o", out_dir / "b", "--format", "jpeg",
               "--jpeg-quality", "30", "--weights", tiny_weights)
    assert res.exit_code == 0 and (out_dir / "b" / "img.jpg").stat().st_size == sizes["30"]
    for bad in ("0", "101", "high"):
        res = crdr(runner, "decode", src, out_dir / "x.jpg", "--jpeg-quality", bad,
                   "--weights", tiny_weights)
        assert res.exit_code == 2 and "--jpeg-quality" in res.stderr, res.stderr
    res = crdr(runner, "decode", src, out_dir / "x.png", "--jpeg-quality", "50",
               "--weights", tiny_weights)
    assert_usage_error(res, "--jpeg-quality", "JPEG")
    assert not (out_dir / "x.jpg").exists() and not (out_dir / "x.png").exists()


def test_torch_commands_name_the_extra_when_torch_is_missing(runner, png, tmp_path, monkeypatch):
    """Without the train extra, what needs torch stops with one line naming the extra, and
    the product path still works."""
    import crdr_codec.extras as extras

    monkeypatch.setattr(extras, "missing", lambda module: module in ("torch", "onnx"))
    (tmp_path / "w.pt").write_bytes(b"x")
    cases = [
        (["train", "--stage", "1", "--run-dir", tmp_path / "run"], "crdr[train]"),
        (["eval", tmp_path, "-o", tmp_path / "ev"], "crdr[train,eval]"),
        (["bench", png], "crdr[train,eval]"),
        (["export", tmp_path / "w.pt"], "crdr[train]"),
        (["encode", png, tmp_path / "r.crdr", "--refine", "2"], "crdr[train]"),
    ]
    for args, extra in cases:
        res = crdr(runner, *args)
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1, (args, res.stderr)
        assert "torch" in lines[0] and extra in lines[0], (args, lines[0])
    assert not (tmp_path / "r.crdr").exists()
    res = crdr(runner, "encode", png, tmp_path / "ok.crdr", "--q", "1")
    assert res.exit_code == 0, res.stderr


def test_ray_without_ray_installed_is_one_line(monkeypatch, tmp_path):
    """--ray where ray is not installed (made so here: import ray fails): one line naming
    the extra, exit 1, nothing written."""
    import sys

    from click.testing import CliRunner

    from crdr_codec.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    src = tmp_path / "a.png"
    src.write_bytes(b"not read")
    for cmd in ("encode", "decode"):
        res = CliRunner().invoke(main, [cmd, str(src), "-o", str(tmp_path / cmd), "--ray"])
        assert res.exit_code == 1
        assert res.output == ("crdr: error: --ray needs ray, which is not installed: "
                              "pip install 'crdr[ray]'\n")
    res = CliRunner().invoke(main, ["encode", str(src), str(tmp_path / "a.crdr"), "--ray"])
    assert res.exit_code == 2 and "--ray needs -o DIR" in res.output
